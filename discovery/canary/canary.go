// Package canary splits a downstream's calls between its stable version and a canary: a weighted split
// (e.g. 90/10) settable at run time, header routing (X-Canary: true always goes to the canary), and an
// automatic rollback rule that sets the canary's weight to 0 when its error rate or p99 latency stays
// over a threshold for N consecutive seconds, logging its decision and counting it in a metric.
//
// A Router is a discovery.EndpointSource over two others (one discovery.Balancer per version), so a
// typed client is built on it exactly as on a single Balancer.
package canary

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// Header asks for the canary: a request carrying "X-Canary: true" is routed to it whatever the weight.
const Header = "X-Canary"

// RollbackConfig is the automatic rollback rule. Each second of canary traffic is judged on its own: it
// is bad when it had at least MinRequests calls and either their failure rate (policy.Classify's
// failures over calls) exceeded MaxErrorRate or their p99 latency exceeded MaxP99. Seconds consecutive
// bad seconds set the canary's weight to 0. A second with fewer calls is not judged and ends a run.
type RollbackConfig struct {
	Seconds      int // 0: the rule is off
	MaxErrorRate float64
	MaxP99       time.Duration // 0: latency is not judged
	MinRequests  int
}

// Config are a Router's settings.
type Config struct {
	Stable, Canary string // version names, for logs and metric labels (v1, v2)
	Weight         int    // percent of calls routed to the canary, 0..100
	Rollback       RollbackConfig
	// Rand returns a uniform integer in [0, n); nil: math/rand/v2. Tests pin the split.
	Rand func(n int) int
}

// DefaultConfig is what a canary gets with no variable set; docs/patterns/canary.md says why.
func DefaultConfig() Config {
	return Config{Stable: "v1", Canary: "v2", Weight: 10,
		Rollback: RollbackConfig{Seconds: 5, MaxErrorRate: 0.05, MaxP99: 500 * time.Millisecond, MinRequests: 5}}
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	if c.Stable == "" || c.Canary == "" || c.Stable == c.Canary {
		return fmt.Errorf("canary: want two distinct version names, got %q and %q", c.Stable, c.Canary)
	}
	if err := validWeight(c.Weight); err != nil {
		return err
	}
	r := c.Rollback
	if r.Seconds < 0 || r.MaxErrorRate < 0 || r.MaxErrorRate > 1 || r.MaxP99 < 0 || (r.Seconds > 0 && r.MinRequests < 1) {
		return fmt.Errorf("canary rollback: want seconds >= 0, max error rate in [0, 1], max p99 >= 0 and min requests >= 1, got %+v", r)
	}
	return nil
}

func validWeight(w int) error {
	if w < 0 || w > 100 {
		return fmt.Errorf("canary weight %d: want a percent in [0, 100]", w)
	}
	return nil
}

// Router routes each call to the stable version or the canary. It is safe for concurrent use; Close
// stops its rule.
type Router struct {
	cfg            Config
	stable, canary discovery.EndpointSource
	po             policy.Options
	logger         *slog.Logger
	rand           func(int) int
	m              metrics

	mu         sync.Mutex
	weight     int
	rolledBack *Rollback
	second     window // the canary's calls in the current second
	streak     int    // consecutive bad seconds
	tick       clock.Timer
	closed     bool
}

// Rollback is the rule's last decision.
type Rollback struct {
	Time       time.Time `json:"time"`
	FromWeight int       `json:"from_weight"`
	Reason     string    `json:"reason"`
}

type version int

const (
	stable version = iota
	canary
)

// New builds a router between stable and canary. o gives the clock the rule runs on and the metric
// labels (service: the caller, downstream: the link).
func New(stableSrc, canarySrc discovery.EndpointSource, cfg Config, o policy.Options, logger *slog.Logger) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, stable: stableSrc, canary: canarySrc, po: o.WithDefaults(), logger: logger,
		rand: cfg.Rand, weight: cfg.Weight, second: newWindow()}
	if r.rand == nil {
		r.rand = rand.IntN
	}
	r.m = newMetrics(r.po, cfg)
	r.m.weight.Set(float64(cfg.Weight) / 100)
	if cfg.Rollback.Seconds > 0 {
		r.tick = r.po.Clock.AfterFunc(time.Second, r.judge)
	}
	return r, nil
}

// Close stops the rollback rule. Routing goes on.
func (r *Router) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.tick != nil {
		r.tick.Stop()
	}
}

var _ discovery.EndpointSource = (*Router)(nil)

type stickyVersion struct{}

// Endpoint returns operation op's endpoint: each call goes to one version — the canary when the caller
// asked for it (WithRequested, Middleware), else the canary with the weight's probability. Under
// discovery.Scope a call's retries stay on the version its first attempt went to, as a mesh routes a
// request once and retries within the chosen destination.
func (r *Router) Endpoint(op string, f sd.Factory) endpoint.Endpoint {
	targets := [2]endpoint.Endpoint{stable: r.stable.Endpoint(op, f), canary: r.canary.Endpoint(op, f)}
	return func(ctx context.Context, request any) (any, error) {
		v := discovery.Sticky(ctx, stickyVersion{}, func() version { return r.route(ctx) })
		start := r.po.Clock.Now()
		resp, err := targets[v](ctx, request)
		r.observe(v, discovery.Classify(ctx, err), r.po.Clock.Now().Sub(start))
		return resp, err
	}
}

func (r *Router) route(ctx context.Context) version {
	if Requested(ctx) {
		return canary
	}
	r.mu.Lock()
	w := r.weight
	r.mu.Unlock()
	if w > 0 && r.rand(100) < w {
		return canary
	}
	return stable
}

func (r *Router) observe(v version, o policy.Outcome, took time.Duration) {
	r.m.requests[v][o].Inc()
	if v != canary || (o != policy.Success && o != policy.Business && o != policy.Failure) {
		return // the caller giving up or our own rejection says nothing about the canary
	}
	r.mu.Lock()
	r.second.add(o == policy.Failure, took)
	r.mu.Unlock()
}

// judge closes the current second, judges it, and rolls the canary back after enough bad ones in a row.
func (r *Router) judge() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.tick = r.po.Clock.AfterFunc(time.Second, r.judge)
	rule := r.cfg.Rollback
	calls := r.second.calls
	var reasons []string
	if calls >= rule.MinRequests {
		if rate := float64(r.second.failures) / float64(calls); rate > rule.MaxErrorRate {
			reasons = append(reasons, fmt.Sprintf("error rate %.3f > %.3f", rate, rule.MaxErrorRate))
		}
		if p99 := r.second.p99(); rule.MaxP99 > 0 && p99 > rule.MaxP99 {
			reasons = append(reasons, fmt.Sprintf("p99 %s > %s", p99, rule.MaxP99))
		}
	}
	r.second.reset()
	if len(reasons) == 0 {
		r.streak = 0
		r.m.streak.Set(0)
		return
	}
	r.streak++
	r.m.streak.Set(float64(r.streak))
	if r.streak < rule.Seconds || r.weight == 0 {
		return
	}
	rb := &Rollback{Time: r.po.Clock.Now(), FromWeight: r.weight,
		Reason: fmt.Sprintf("%s for %d consecutive seconds (%d calls in the last)", strings.Join(reasons, ", "), r.streak, calls)}
	r.rolledBack, r.weight, r.streak = rb, 0, 0
	r.m.weight.Set(0)
	r.m.streak.Set(0)
	r.m.rollbacks.Inc()
	r.logger.Warn("canary rolled back", "downstream", r.po.Downstream, "canary", r.cfg.Canary,
		"from_weight", rb.FromWeight, "reason", rb.Reason)
	r.po.Emit(policy.Event{Policy: "canary", Kind: EventRollback, From: fmt.Sprint(rb.FromWeight), To: "0", Err: rb.Reason})
}

// EventRollback is the kind of the event a rollback emits (policy "canary").
const EventRollback policy.EventKind = "rollback"

// SetWeight sets the canary's share of the calls (percent) and re-arms the rule after a rollback.
func (r *Router) SetWeight(w int) error {
	if err := validWeight(w); err != nil {
		return err
	}
	r.mu.Lock()
	from := r.weight
	r.weight, r.streak = w, 0
	if w > 0 {
		r.rolledBack = nil
	}
	r.mu.Unlock()
	r.m.weight.Set(float64(w) / 100)
	r.logger.Info("canary weight set", "downstream", r.po.Downstream, "canary", r.cfg.Canary, "from", from, "to", w)
	return nil
}

// Status is the router's live state, as its admin handler serves it.
type Status struct {
	Stable     string     `json:"stable"`
	Canary     string     `json:"canary"`
	Weight     int        `json:"weight"`
	RolledBack *Rollback  `json:"rolled_back"` // null: no rollback since the weight was last set
	Rule       RuleStatus `json:"rule"`
}

// RuleStatus is the rollback rule's settings.
type RuleStatus struct {
	Seconds      int     `json:"seconds"` // 0: off
	MaxErrorRate float64 `json:"max_error_rate"`
	MaxP99       string  `json:"max_p99"`
	MinRequests  int     `json:"min_requests"`
}

// Status returns the current weight and the last rollback.
func (r *Router) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	rule := r.cfg.Rollback
	return Status{Stable: r.cfg.Stable, Canary: r.cfg.Canary, Weight: r.weight, RolledBack: r.rolledBack,
		Rule: RuleStatus{Seconds: rule.Seconds, MaxErrorRate: rule.MaxErrorRate, MaxP99: rule.MaxP99.String(), MinRequests: rule.MinRequests}}
}

// window holds one second of canary calls.
type window struct {
	calls, failures int
	latency         *hdrhistogram.Histogram // microseconds
}

func newWindow() window {
	return window{latency: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 2)}
}

func (w *window) add(failed bool, took time.Duration) {
	w.calls++
	if failed {
		w.failures++
	}
	_ = w.latency.RecordValue(max(1, min(took.Microseconds(), w.latency.HighestTrackableValue())))
}

func (w *window) p99() time.Duration {
	return time.Duration(w.latency.ValueAtQuantile(99)) * time.Microsecond
}

func (w *window) reset() {
	w.calls, w.failures = 0, 0
	w.latency.Reset()
}

type requestedKey struct{}

// WithRequested returns ctx marked as asking for the canary (or not).
func WithRequested(ctx context.Context, canary bool) context.Context {
	return context.WithValue(ctx, requestedKey{}, canary)
}

// Requested reports whether the call asked for the canary.
func Requested(ctx context.Context) bool {
	v, _ := ctx.Value(requestedKey{}).(bool)
	return v
}

// Middleware marks the request's context with its X-Canary header ("true", any case: canary), so the
// calls its handler makes route accordingly.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.EqualFold(strings.TrimSpace(req.Header.Get(Header)), "true") {
			req = req.WithContext(WithRequested(req.Context(), true))
		}
		next.ServeHTTP(w, req)
	})
}

type metrics struct {
	weight    prometheus.Gauge
	rollbacks prometheus.Counter
	streak    prometheus.Gauge
	requests  [2][len(policy.Outcomes)]prometheus.Counter
}

func newMetrics(o policy.Options, cfg Config) metrics {
	labels := o.Labels()
	reg := o.Registerer
	m := metrics{
		weight: policy.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_weight_ratio", ConstLabels: labels,
			Help: "Share of a downstream's calls routed to its canary by weight (0 after a rollback).",
		})),
		rollbacks: policy.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canary_rollbacks_total", ConstLabels: labels,
			Help: "Automatic rollbacks of a downstream's canary (its weight set to 0).",
		})),
		streak: policy.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canary_unhealthy_streak_seconds", ConstLabels: labels,
			Help: "Consecutive seconds the canary has been over its error-rate or p99 threshold.",
		})),
	}
	requests := policy.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canary_requests_total", ConstLabels: labels,
		Help: "Attempts routed to each version of a downstream, by outcome (success, business, failure, cancelled, rejected).",
	}, []string{"version", "outcome"}))
	for v, name := range [2]string{stable: cfg.Stable, canary: cfg.Canary} {
		for _, o := range policy.Outcomes {
			m.requests[v][o] = requests.WithLabelValues(name, o.String())
		}
	}
	return m
}
