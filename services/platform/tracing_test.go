package platform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-lab/lab/services/platform"
)

// recorder is an SDK provider exporting every ended span at once into memory.
func recorder(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// waitSpans waits until exp holds n spans: a server span ends after its answer was sent.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exp.GetSpans()
		if len(spans) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans after 10s, want %d: %v", len(spans), n, spans)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(spans))
	return tracetest.SpanStub{}
}

func tracedService(t *testing.T, tp trace.TracerProvider, api http.Handler) *httptest.Server {
	t.Helper()
	s := &platform.Service{Name: "test", API: api, Registry: platform.NewRegistry(), Tracing: tp,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// TestTraceCrossesAHop runs two services with their own providers, as two processes would: the caller's
// server span, its client span and the callee's server span form one trace, joined by the traceparent
// header alone, and the caller answers the trace id.
func TestTraceCrossesAHop(t *testing.T) {
	callerTP, callerSpans := recorder(t)
	calleeTP, calleeSpans := recorder(t)
	calleeMux := http.NewServeMux()
	calleeMux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	callee := tracedService(t, calleeTP, calleeMux)
	client := platform.NewHTTPClient() // no tracing setup: it follows the caller's span
	callerMux := http.NewServeMux()
	callerMux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", callee.URL+"/items/7", nil)
		resp, err := client.Do(req)
		if err != nil {
			platform.EncodeError(r.Context(), err, w)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	})
	caller := tracedService(t, callerTP, callerMux)

	resp, err := http.Get(caller.URL + "/orders/42")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cs := waitSpans(t, callerSpans, 2)
	server := spanNamed(t, cs, "GET /orders/{id}")
	clientSpan := spanNamed(t, cs, "HTTP GET")
	calleeServer := spanNamed(t, waitSpans(t, calleeSpans, 1), "GET /items/{id}")

	traceID := server.SpanContext.TraceID()
	if got := resp.Header.Get(platform.HeaderTraceID); got != traceID.String() {
		t.Errorf("%s = %q, want %s", platform.HeaderTraceID, got, traceID)
	}
	if server.SpanKind != trace.SpanKindServer || clientSpan.SpanKind != trace.SpanKindClient || calleeServer.SpanKind != trace.SpanKindServer {
		t.Errorf("kinds %v %v %v", server.SpanKind, clientSpan.SpanKind, calleeServer.SpanKind)
	}
	if clientSpan.Parent.SpanID() != server.SpanContext.SpanID() || clientSpan.SpanContext.TraceID() != traceID {
		t.Errorf("the client span is not the child of the caller's server span")
	}
	if !calleeServer.Parent.IsRemote() || calleeServer.Parent.SpanID() != clientSpan.SpanContext.SpanID() ||
		calleeServer.SpanContext.TraceID() != traceID {
		t.Errorf("the callee's span is not the remote child of the client span: parent %v", calleeServer.Parent)
	}
	attrs := map[string]string{}
	for _, kv := range calleeServer.Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["http.route"] != "/items/{id}" || attrs["http.response.status_code"] != "204" || attrs["request_id"] == "" {
		t.Errorf("callee span attributes %v", attrs)
	}
}

// TestTraceparentPassesThroughWithTracingOff: a service with no provider records nothing, yet a
// caller's trace id reaches its callees and comes back in X-Trace-Id; without one there is no trace id.
func TestTraceparentPassesThroughWithTracingOff(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var seen atomic.Value
	callee := tracedService(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("traceparent"))
		w.WriteHeader(http.StatusNoContent)
	}))
	client := platform.NewHTTPClient()
	caller := tracedService(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", callee.URL+"/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			platform.EncodeError(r.Context(), err, w)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))

	req, _ := http.NewRequest("GET", caller.URL+"/y", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(platform.HeaderTraceID); got != traceID {
		t.Errorf("%s = %q, want the caller's %s", platform.HeaderTraceID, got, traceID)
	}
	if tp, _ := seen.Load().(string); !strings.Contains(tp, traceID) {
		t.Errorf("the callee got traceparent %q, want trace %s", tp, traceID)
	}

	resp, err = http.Get(caller.URL + "/y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(platform.HeaderTraceID); got != "" {
		t.Errorf("no tracing and no traceparent, yet %s = %q", platform.HeaderTraceID, got)
	}
	if tp, _ := seen.Load().(string); tp != "" {
		t.Errorf("the callee got traceparent %q from an untraced call", tp)
	}
}

func TestTracingConfigFromEnv(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		errHas string
	}{
		{"default off", nil, ""},
		{"stdout", map[string]string{"OTEL_TRACES_EXPORTER": "stdout"}, ""},
		{"otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ""},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"otlp endpoint without scheme", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"ratio above 1", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"ratio not a number", map[string]string{"OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := platform.EnvFrom(c.env)
			cfg := platform.TracingConfigFromEnv(env)
			err := env.Err()
			if c.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := cfg.NewTracerProvider("test"); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("error %v, want one naming %s", err, c.errHas)
			}
		})
	}
}

// TestExporters sends a span through the stdout and the OTLP exporter (to a local stand-in collector).
func TestExporters(t *testing.T) {
	var stdout bytes.Buffer
	tp, shutdown, err := platform.TracingConfig{Exporter: platform.TraceExporterStdout, SampleRatio: 1, Stdout: &stdout}.NewTracerProvider("catalog")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "work")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	written := stdout.String()
	var got struct{ Name string }
	if err := json.NewDecoder(strings.NewReader(written)).Decode(&got); err != nil || got.Name != "work" {
		t.Fatalf("stdout exporter wrote %q (%v)", written, err)
	}
	if !strings.Contains(written, `"service.name"`) || !strings.Contains(written, `"catalog"`) {
		t.Errorf("the span's resource does not name the service: %s", written)
	}

	posts := make(chan string, 4)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts <- r.Method + " " + r.URL.Path
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	tp, shutdown, err = platform.TracingConfig{Exporter: platform.TraceExporterOTLP, Endpoint: collector.URL, SampleRatio: 1}.NewTracerProvider("orders")
	if err != nil {
		t.Fatal(err)
	}
	_, span = tp.Tracer("test").Start(context.Background(), "work")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-posts:
		if p != "POST /v1/traces" {
			t.Errorf("the collector got %s, want POST /v1/traces", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the OTLP exporter sent nothing")
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	tp, _ := recorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	header := platform.TraceParent(ctx)
	if !strings.HasPrefix(header, "00-"+span.SpanContext().TraceID().String()+"-") {
		t.Fatalf("TraceParent = %q", header)
	}
	remote := trace.SpanContextFromContext(platform.WithTraceParent(context.Background(), header))
	if !remote.IsRemote() || remote.TraceID() != span.SpanContext().TraceID() || remote.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("round trip gave %v", remote)
	}
	if platform.TraceParent(context.Background()) != "" {
		t.Error("a context with no span has a traceparent")
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-zz"} {
		if sc := trace.SpanContextFromContext(platform.WithTraceParent(context.Background(), bad)); sc.IsValid() {
			t.Errorf("invalid traceparent %q gave %v", bad, sc)
		}
	}
}

func TestLogsCarryTheTraceID(t *testing.T) {
	tp, _ := recorder(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	var buf bytes.Buffer
	platform.NewLogger(&buf, "test", slog.LevelInfo).InfoContext(ctx, "hello")
	if !strings.Contains(buf.String(), `"trace_id":"`+span.SpanContext().TraceID().String()+`"`) {
		t.Errorf("log line %s lacks the trace id", buf.String())
	}
}

// TestRouteSurvivesACopiedRequest: a handler that hands the service's JSONMux a copy of the request (as
// the gateway's token check does) still leaves the matched route on the server span and the metrics.
func TestRouteSurvivesACopiedRequest(t *testing.T) {
	tp, exp := recorder(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	api := platform.JSONMux(mux)
	type key struct{}
	copying := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), key{}, "x")))
	})
	srv := tracedService(t, tp, copying)
	resp, err := http.Get(srv.URL + "/things/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spanNamed(t, waitSpans(t, exp, 1), "GET /things/{id}")
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `route="GET /things/{id}"`; !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s", want)
	}
}
