package resilience

import (
	"context"
	"sort"
	"strings"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-lab/lab/resilience/adaptive"
	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/resilience/bulkhead"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/fallback"
	"github.com/resilience-lab/lab/resilience/hedge"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/resilience/retry"
	"github.com/resilience-lab/lab/resilience/timeout"
	"github.com/resilience-lab/lab/services/platform"
)

// Option configures a Link or a Server.
type Option func(*options)

type options struct {
	clock     clock.Clock
	hook      policy.Hook
	service   string
	fallbacks map[string]fallback.Func
	hedged    map[string]bool
}

// WithClock makes every policy read time from c (tests: a *clock.Fake).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithEvents sends every policy's events (state changes, rejections, retries, fallbacks, timeouts,
// hedges), each timestamped by the clock, to h. h must be quick and must not call back into the link.
func WithEvents(h policy.Hook) Option { return func(o *options) { o.hook = h } }

// WithService sets the metric label service (default: the link name up to its first dash).
func WithService(name string) Option { return func(o *options) { o.service = name } }

// WithFallback makes failed calls of operation op (failures and rejections, never business outcomes)
// answer with f.
func WithFallback(op string, f fallback.Func) Option {
	return func(o *options) {
		if o.fallbacks == nil {
			o.fallbacks = map[string]fallback.Func{}
		}
		o.fallbacks[op] = f
	}
}

// WithHedgedOps names the read operations that may be hedged when the link's hedge delay is set.
// Hedging is opt-in per operation because an idempotent write would still be sent twice.
func WithHedgedOps(ops ...string) Option {
	return func(o *options) {
		if o.hedged == nil {
			o.hedged = map[string]bool{}
		}
		for _, op := range ops {
			o.hedged[op] = true
		}
	}
}

// Link is the policy chain of one caller → callee link, shared by all operations of the callee's
// client: one breaker, one bulkhead, one retry budget per downstream.
type Link struct {
	name string
	cfg  LinkConfig
	o    options
	po   policy.Options

	breaker  *breaker.Breaker // nil: off
	bulkhead *bulkhead.Bulkhead
	adaptive *adaptive.Limiter // nil: off
	timeout  *timeout.Timeout
	retry    *retry.Retry
	hedge    *hedge.Hedge

	calls [len(policy.Outcomes)]prometheus.Counter
}

// NewLink builds the policies of link name from cfg, with metrics on reg (nil: not exported).
func NewLink(name string, cfg LinkConfig, reg prometheus.Registerer, opts ...Option) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Link{name: name, cfg: cfg}
	for _, opt := range opts {
		opt(&l.o)
	}
	if l.o.service == "" {
		l.o.service, _, _ = strings.Cut(name, "-")
	}
	l.po = policy.Options{Clock: l.o.clock, Registerer: reg, Service: l.o.service, Downstream: name, Hook: l.o.hook}.WithDefaults()
	var err error
	if cfg.Breaker.Backend != BreakerOff {
		if l.breaker, err = breaker.New(cfg.Breaker, l.po); err != nil {
			return nil, err
		}
	}
	if l.bulkhead, err = bulkhead.New(cfg.Bulkhead, l.po); err != nil {
		return nil, err
	}
	if cfg.Adaptive.Max > 0 {
		if l.adaptive, err = adaptive.New(cfg.adaptiveConfig(), l.po); err != nil {
			return nil, err
		}
	}
	l.timeout = timeout.New(cfg.Timeout, l.po)
	if l.retry, err = retry.New(cfg.Retry, l.po); err != nil {
		return nil, err
	}
	// Hedges draw from the retry budget, so together they stay within its share of the traffic.
	l.hedge = hedge.New(cfg.HedgeDelay, l.retry.Budget(), l.po)
	calls := policy.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilience_calls_total", ConstLabels: l.po.Labels(),
		Help: "Calls to a downstream through its policy chain, by outcome (success, business, failure, cancelled, rejected), before any fallback.",
	}, []string{"outcome"}))
	for _, o := range policy.Outcomes {
		l.calls[o] = calls.WithLabelValues(o.String())
	}
	return l, nil
}

// Close stops the link's timers (the retry budget's). Calls still work after Close, with a budget
// frozen in its last period. hystrix-go's command cannot be removed (see breaker).
func (l *Link) Close() { l.retry.Close() }

// Name is the link's name.
func (l *Link) Name() string { return l.name }

// Breaker is the link's breaker, nil when off.
func (l *Link) Breaker() *breaker.Breaker { return l.breaker }

// Policies returns the chain for the link's typed client, in the one order (see the package doc):
// fallback → retry → hedge → breaker → bulkhead → adaptive → timeout → transport. Retry and hedging
// apply to idempotent operations only, hedging to the operations named by WithHedgedOps.
func (l *Link) Policies() platform.PolicyFunc {
	return func(op string, idempotent bool) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			e := l.timeout.Middleware(next)
			if l.adaptive != nil {
				e = l.adaptive.Middleware(e)
			}
			e = l.bulkhead.Middleware(e)
			if l.breaker != nil {
				e = l.breaker.Middleware(e)
			}
			if idempotent && l.o.hedged[op] {
				e = l.hedge.Middleware(e)
			}
			if idempotent {
				e = l.retry.Middleware(e)
			}
			e = l.observe(op, e)
			if f, ok := l.o.fallbacks[op]; ok {
				e = fallback.New(f, l.po).Middleware(e)
			}
			return e
		}
	}
}

// observe counts each call by outcome and turns away a call whose caller already gave up. Inside a
// recorded trace it wraps the call in a span named "<link> <op>", on which the policies inside record
// their decisions (retry attempts, rejections, waits, timeouts) and under which each attempt's HTTP
// client span hangs; outside one it costs a context lookup.
func (l *Link) observe(op string, next endpoint.Endpoint) endpoint.Endpoint {
	name := l.name + " " + op
	return func(ctx context.Context, request any) (any, error) {
		if err := ctx.Err(); err != nil {
			l.calls[policy.Cancelled].Inc()
			return nil, err
		}
		var span trace.Span
		if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
			ctx, span = parent.TracerProvider().Tracer(tracerName).Start(ctx, name, trace.WithAttributes(
				attribute.String("resilience.link", l.name), attribute.String("resilience.operation", op)))
		}
		resp, err := next(ctx, request)
		outcome := policy.Classify(ctx, err)
		l.calls[outcome].Inc()
		if span != nil {
			span.SetAttributes(attribute.String("resilience.outcome", outcome.String()))
			if outcome == policy.Failure || outcome == policy.Rejected {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
		return resp, err
	}
}

// tracerName is the instrumentation scope of the link spans.
const tracerName = "github.com/resilience-lab/lab/resilience"

// LinkSnapshot is a link's settings and live state, as /debug/resilience serves it.
type LinkSnapshot struct {
	Name       string             `json:"name"`
	Service    string             `json:"service"`
	Downstream string             `json:"downstream"`
	Breaker    *breaker.Snapshot  `json:"breaker"` // null: off
	Bulkhead   bulkhead.Snapshot  `json:"bulkhead"`
	Adaptive   *adaptive.Snapshot `json:"adaptive"` // null: off
	Retry      retry.Snapshot     `json:"retry"`
	Timeout    timeout.Snapshot   `json:"timeout"`
	Hedge      hedge.Snapshot     `json:"hedge"`
	HedgedOps  []string           `json:"hedged_ops"`
	Fallbacks  []string           `json:"fallback_ops"`
	Calls      map[string]float64 `json:"calls"`
}

// Snapshot returns the link's settings and live state.
func (l *Link) Snapshot() LinkSnapshot {
	s := LinkSnapshot{
		Name: l.name, Service: l.po.Service, Downstream: l.po.Downstream,
		Bulkhead: l.bulkhead.Snapshot(), Retry: l.retry.Snapshot(), Timeout: l.timeout.Snapshot(),
		Hedge: l.hedge.Snapshot(), HedgedOps: sortedKeys(l.o.hedged), Fallbacks: sortedKeys(l.o.fallbacks),
		Calls: map[string]float64{},
	}
	if l.breaker != nil {
		b := l.breaker.Snapshot()
		s.Breaker = &b
	}
	if l.adaptive != nil {
		a := l.adaptive.Snapshot()
		s.Adaptive = &a
	}
	for _, o := range policy.Outcomes {
		var m dto.Metric
		if l.calls[o].Write(&m) == nil {
			s.Calls[o.String()] = m.GetCounter().GetValue()
		}
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
