package platform

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// HeaderTraceID carries the trace id of a request back to its caller (32 hex digits), so a load driver
// can cite the trace of a slow request. It is set whenever the request belongs to a trace: one the
// caller started (a traceparent header), or one this service started because tracing is on.
const HeaderTraceID = "X-Trace-Id"

// Trace exporters OTEL_TRACES_EXPORTER accepts.
const (
	TraceExporterNone   = "none"
	TraceExporterOTLP   = "otlp"
	TraceExporterStdout = "stdout"
)

// tracerName is the instrumentation scope of the spans this package starts.
const tracerName = "github.com/resilience-lab/lab/services/platform"

// traceContext is the W3C Trace Context propagator (traceparent, tracestate). It is stateless, so one
// value serves every service without any process-wide registration.
var traceContext = propagation.TraceContext{}

// TracingConfig chooses where a service's spans go. Tracing is off by default: the provider is then
// otel's no-op, which records nothing and costs next to nothing, while a traceparent a caller sends is
// still passed on to the callees.
type TracingConfig struct {
	// Exporter is OTEL_TRACES_EXPORTER: none (default), otlp (OTLP over HTTP) or stdout (JSON lines).
	Exporter string
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, the collector's base URL (default http://localhost:4318;
	// spans go to its /v1/traces). otlp only.
	Endpoint string
	// SampleRatio is OTEL_TRACES_SAMPLER_ARG: the share of new traces recorded (default 1). A request
	// that arrives with a traceparent follows its caller's sampling decision.
	SampleRatio float64
	// Provider, when set, is used as is and Exporter is ignored (tests: an SDK provider with an
	// in-memory exporter).
	Provider trace.TracerProvider
	// Stdout is where the stdout exporter writes; nil means os.Stdout.
	Stdout io.Writer
}

// TracingConfigFromEnv reads OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_TRACES_SAMPLER_ARG.
func TracingConfigFromEnv(env *Env) TracingConfig {
	c := TracingConfig{
		Exporter:    strings.ToLower(env.String("OTEL_TRACES_EXPORTER", TraceExporterNone)),
		Endpoint:    env.String("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
		SampleRatio: env.Float("OTEL_TRACES_SAMPLER_ARG", 1),
	}
	if err := c.validate(); err != nil {
		env.Fail("%v", err)
	}
	return c
}

func (c TracingConfig) validate() error {
	switch c.Exporter {
	case "", TraceExporterNone, TraceExporterStdout:
	case TraceExporterOTLP:
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT=%q: want http(s)://host:port", c.Endpoint)
		}
	default:
		return fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none, otlp or stdout", c.Exporter)
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%v: want a ratio in [0, 1]", c.SampleRatio)
	}
	return nil
}

// NewTracerProvider builds the provider c describes for service. shutdown flushes the spans still
// buffered and stops the exporter; call it after the server has drained.
func (c TracingConfig) NewTracerProvider(service string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	noShutdown := func(context.Context) error { return nil }
	if c.Provider != nil {
		return c.Provider, noShutdown, nil
	}
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	var exporter sdktrace.SpanExporter
	switch c.Exporter {
	case "", TraceExporterNone:
		return noop.NewTracerProvider(), noShutdown, nil
	case TraceExporterStdout:
		w := c.Stdout
		if w == nil {
			w = os.Stdout
		}
		exporter, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case TraceExporterOTLP:
		exporter, err = otlptracehttp.New(context.Background(),
			otlptracehttp.WithEndpointURL(strings.TrimSuffix(c.Endpoint, "/")+"/v1/traces"))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trace exporter %s: %w", c.Exporter, err)
	}
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))),
	)
	return sdk, sdk.Shutdown, nil
}

// tracing starts the server span of each request: it continues the caller's trace (traceparent) or
// starts one, names the span after the route that matched, and answers the trace id in X-Trace-Id.
func tracing(tp trace.TracerProvider, next http.Handler) http.Handler {
	tracer := tp.Tracer(tracerName)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := traceContext.Extract(withRouteHolder(r.Context()), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if sc := span.SpanContext(); sc.HasTraceID() {
			w.Header().Set(HeaderTraceID, sc.TraceID().String())
		}
		if !span.IsRecording() {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		span.SetAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPathKey.String(r.URL.Path),
			attribute.String("request_id", RequestID(ctx)))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		r = r.WithContext(ctx)
		next.ServeHTTP(sw, r)
		// The route is known only once a mux matched it.
		if pattern := routePattern(r); pattern != "" {
			name := pattern
			if !strings.HasPrefix(name, r.Method+" ") {
				name = r.Method + " " + name
			}
			span.SetName(name)
			span.SetAttributes(semconv.HTTPRouteKey.String(strings.TrimPrefix(pattern, r.Method+" ")))
		}
		span.SetAttributes(semconv.HTTPResponseStatusCodeKey.Int(sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(sw.status))
		}
	})
}

// clientSpan starts the client span of one outgoing request and writes its trace context into the
// request's headers. The provider is tp, or else the one of the caller's span, so a typed client needs
// no tracing setup of its own: inside a traced request its calls are traced. When nothing would record
// the span, none is started (nil) and the caller's trace context, if any, is passed on as it is.
func clientSpan(tp trace.TracerProvider, r *http.Request) (*http.Request, trace.Span) {
	ctx := r.Context()
	if tp == nil {
		parent := trace.SpanFromContext(ctx)
		if !parent.IsRecording() {
			traceContext.Inject(ctx, propagation.HeaderCarrier(r.Header))
			return r, nil
		}
		tp = parent.TracerProvider()
	}
	ctx, span := tp.Tracer(tracerName).Start(ctx, "HTTP "+r.Method, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.ServerAddressKey.String(r.URL.Host), semconv.URLPathKey.String(r.URL.Path))
	}
	r = r.WithContext(ctx)
	traceContext.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return r, span
}

// endClientSpan records how the request went on span (nil: none) and ends it.
func endClientSpan(span trace.Span, resp *http.Response, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		switch {
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		default:
			span.SetAttributes(semconv.HTTPResponseStatusCodeKey.Int(resp.StatusCode))
			// As policy.Classify: a business 4xx is an answer, not a failure of the call.
			if resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests {
				span.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode))
			}
		}
	}
	span.End()
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when ctx belongs to no trace
// (events carry it so a consumer's work joins the trace of the request that caused the event).
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// WithTraceParent returns ctx carrying the remote span context of traceparent; an invalid or empty value
// leaves ctx as it is, as W3C Trace Context asks of a malformed header.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// FlushTracing runs the shutdown NewTracerProvider returned, giving the exporter at most 5 s to send
// what it still holds: a collector that is down must not hold up a service's exit.
func FlushTracing(shutdown func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return shutdown(ctx)
}
