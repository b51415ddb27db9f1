// Package adaptive is a concurrency limit that finds its own level, by AIMD as TCP's congestion
// window: every call that completes in time while the limit is in use raises it by 1/limit (about +1
// per limit's worth of calls); every failure or call slower than Latency cuts it by the Backoff factor.
// Calls over the limit are rejected at once with ErrLimited (client side) or 503 (server side), so a
// callee that slows down sees less concurrency instead of a growing queue.
package adaptive

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// ErrLimited is returned when the calls in flight are at the current limit.
var ErrLimited error = &policy.Rejection{Policy: "adaptive", Reason: "concurrency limit reached"}

// Config are the limiter's settings.
type Config struct {
	Initial int           // the starting limit
	Min     int           // never below (>= 1)
	Max     int           // never above
	Backoff float64       // multiplicative decrease, 0 < b < 1
	Latency time.Duration // a call slower than this counts as a congestion signal
}

// Limiter is the policy. Build it with New; it is safe for concurrent use.
type Limiter struct {
	cfg   Config
	opts  policy.Options
	clock clock.Clock

	mu       sync.Mutex
	limit    float64
	inFlight int

	limitGauge prometheus.Gauge
	rejected   prometheus.Counter
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	if c.Min < 1 || c.Max < c.Min || c.Initial < c.Min || c.Initial > c.Max || !(c.Backoff > 0 && c.Backoff < 1) || c.Latency <= 0 {
		return fmt.Errorf("adaptive limit: want 1 <= min <= initial <= max, 0 < backoff < 1 and latency > 0, got %+v", c)
	}
	return nil
}

// New builds a limiter.
func New(cfg Config, o policy.Options) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o = o.WithDefaults()
	l := &Limiter{cfg: cfg, opts: o, clock: o.Clock, limit: float64(cfg.Initial)}
	labels := o.Labels()
	l.limitGauge = policy.Register(o.Registerer, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "resilience_adaptive_limit", ConstLabels: labels,
		Help: "Current adaptive concurrency limit.",
	}))
	l.rejected = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_adaptive_rejected_total", ConstLabels: labels,
		Help: "Calls rejected because the adaptive concurrency limit was reached.",
	}))
	l.limitGauge.Set(l.limit)
	return l, nil
}

// Limit is the current limit, rounded down.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

func (l *Limiter) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight >= int(l.limit) {
		return false
	}
	l.inFlight++
	return true
}

// release records how a call went and moves the limit.
func (l *Limiter) release(took time.Duration, o policy.Outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	used := l.inFlight
	l.inFlight--
	before := int(l.limit)
	switch {
	case o == policy.Failure || took > l.cfg.Latency:
		l.limit = math.Max(float64(l.cfg.Min), l.limit*l.cfg.Backoff)
	case (o == policy.Success || o == policy.Business) && 2*used >= before:
		// Only raise a limit that is being used; an idle one would grow without evidence.
		l.limit = math.Min(float64(l.cfg.Max), l.limit+1/l.limit)
	}
	if after := int(l.limit); after != before {
		l.limitGauge.Set(float64(after))
		l.opts.Emit(policy.Event{Policy: "adaptive", Kind: policy.EventStateChange,
			From: fmt.Sprint(before), To: fmt.Sprint(after)})
	}
}

func (l *Limiter) reject(ctx context.Context) {
	l.rejected.Inc()
	if l.opts.Observed(ctx) {
		l.opts.EmitContext(ctx, policy.Event{Policy: "adaptive", Kind: policy.EventRejection, Err: ErrLimited.Error()})
	}
}

// Middleware applies the limit to an endpoint (client side).
func (l *Limiter) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		if !l.acquire() {
			l.reject(ctx)
			return nil, ErrLimited
		}
		start := l.clock.Now()
		resp, err := next(ctx, request)
		l.release(l.clock.Now().Sub(start), policy.Classify(ctx, err))
		return resp, err
	}
}

// Handler applies the limit to a server: over the limit it answers 503 with Retry-After; a 5xx answer
// counts as a failure.
func (l *Limiter) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.acquire() {
			l.reject(r.Context())
			w.Header().Set("Retry-After", "1")
			platform.WriteError(w, platform.Errorf(http.StatusServiceUnavailable, "overloaded", "the server is at its concurrency limit; retry later"))
			return
		}
		start := l.clock.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		o := policy.Success
		if sw.status >= 500 {
			o = policy.Failure
		} else if r.Context().Err() != nil {
			o = policy.Cancelled
		}
		l.release(l.clock.Now().Sub(start), o)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.status, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Snapshot is the limiter's settings and live state.
type Snapshot struct {
	Limit    int    `json:"limit"`
	InFlight int    `json:"in_flight"`
	Min      int    `json:"min"`
	Max      int    `json:"max"`
	Latency  string `json:"latency"`
}

func (l *Limiter) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Snapshot{Limit: int(l.limit), InFlight: l.inFlight, Min: l.cfg.Min, Max: l.cfg.Max, Latency: l.cfg.Latency.String()}
}
