// Package breaker is a circuit breaker with two interchangeable backends, sony/gobreaker/v2 and
// afex/hystrix-go, behind one type and one rule for what counts:
//
//   - a success or a business outcome (4xx but 408/429) counts as a success: the callee is healthy;
//   - a transport error, a 5xx, 408, 429 or a per-attempt timeout counts as a failure;
//   - the caller's own cancellation and our own rejections (bulkhead full…) count as neither.
//
// Closed, the backend counts outcomes in its window and trips to open when at least MinRequests calls
// completed and the failure ratio reached FailureRatio. Open, calls fail fast with ErrOpen for
// SleepWindow. Then it is half-open: HalfOpenProbes calls go through; a failed probe opens it again, and
// success closes it (gobreaker needs HalfOpenProbes consecutive successes, hystrix-go closes on the
// first).
//
// Both libraries read the wall clock themselves, so the Breaker keeps the open interval with its
// injected clock (a gate in front of the backend, also the fast path of a rejection). With the real
// clock the backend's own open timer is the sleep window too and the two agree; when a test injects a
// clock, the backend's timer is cut to its minimum so advancing the injected clock is all it takes.
package breaker

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// State of a breaker. The values are those of the resilience_breaker_state gauge.
type State int32

const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Backend names a breaker implementation.
type Backend string

const (
	Gobreaker Backend = "gobreaker"
	Hystrix   Backend = "hystrix"
)

// ErrOpen is returned, without calling the endpoint, while the breaker is open or while all of its
// half-open probes are out.
var ErrOpen error = &policy.Rejection{Policy: "breaker", Reason: "circuit breaker is open"}

// Config are the breaker's settings.
type Config struct {
	Backend        Backend
	FailureRatio   float64       // trip when failures/completed calls in the window reach this (0 < r <= 1)
	MinRequests    int           // … and at least this many calls completed in the window
	Window         time.Duration // the closed-state counting window (gobreaker; hystrix-go's is fixed at 10s)
	SleepWindow    time.Duration // how long it stays open before probing
	HalfOpenProbes int           // calls let through while half-open
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	switch {
	case c.Backend != Gobreaker && c.Backend != Hystrix:
		return fmt.Errorf("breaker backend %q: want %s or %s", c.Backend, Gobreaker, Hystrix)
	case !(c.FailureRatio > 0 && c.FailureRatio <= 1):
		return fmt.Errorf("breaker failure ratio %v: want 0 < ratio <= 1", c.FailureRatio)
	case c.MinRequests < 1:
		return fmt.Errorf("breaker min requests %d: want >= 1", c.MinRequests)
	case c.Window <= 0:
		return fmt.Errorf("breaker window %s: want > 0", c.Window)
	case c.SleepWindow < time.Millisecond:
		return fmt.Errorf("breaker sleep window %s: want >= 1ms", c.SleepWindow)
	case c.HalfOpenProbes < 1:
		return fmt.Errorf("breaker half-open probes %d: want >= 1", c.HalfOpenProbes)
	}
	return nil
}

// Breaker is a circuit breaker for one downstream. Build it with New; it is safe for concurrent use.
type Breaker struct {
	cfg   Config
	opts  policy.Options
	clock clock.Clock

	// openUntil is the clock's UnixNano at which the sleep window ends, 0 unless open: one atomic load
	// is all a closed breaker costs before the backend.
	openUntil atomic.Int64
	state     atomic.Int32

	gb *gobreakerBackend
	hx *hystrixBackend

	stateGauge  prometheus.Gauge
	transitions *prometheus.CounterVec
	rejected    prometheus.Counter
}

// New builds a breaker. The hystrix backend registers a uniquely named command in hystrix-go's
// process-wide registry (see hystrix.go for what that costs).
func New(cfg Config, o policy.Options) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o = o.WithDefaults()
	b := &Breaker{cfg: cfg, opts: o, clock: o.Clock}
	labels := o.Labels()
	b.stateGauge = policy.Register(o.Registerer, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "resilience_breaker_state", ConstLabels: labels,
		Help: "Circuit breaker state of a downstream: 0 closed, 1 half-open, 2 open.",
	}))
	b.transitions = policy.Register(o.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilience_breaker_transitions_total", ConstLabels: labels,
		Help: "Circuit breaker state changes of a downstream, by from and to state.",
	}, []string{"from", "to"}))
	b.rejected = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_breaker_rejected_total", ConstLabels: labels,
		Help: "Calls to a downstream rejected by its open circuit breaker.",
	}))
	b.stateGauge.Set(float64(Closed))
	_, realClock := o.Clock.(clock.Real)
	switch cfg.Backend {
	case Gobreaker:
		b.gb = newGobreaker(cfg, realClock, b.transition)
	case Hystrix:
		b.hx = newHystrix(cfg, o, b.sleepWindowOver, b.transition)
	}
	return b, nil
}

// Middleware applies the breaker to an endpoint.
func (b *Breaker) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		if b.gateClosed() {
			return nil, b.reject(ctx)
		}
		var (
			resp any
			err  error
		)
		run := func() policy.Outcome {
			resp, err = next(ctx, request)
			return policy.Classify(ctx, err)
		}
		var admitted bool
		if b.gb != nil {
			admitted = b.gb.execute(run)
		} else {
			admitted = b.hx.execute(run)
		}
		if !admitted {
			return nil, b.reject(ctx)
		}
		return resp, err
	}
}

// gateClosed reports whether the breaker is open and its sleep window not over.
func (b *Breaker) gateClosed() bool {
	until := b.openUntil.Load()
	return until != 0 && b.clock.Now().UnixNano() < until
}

func (b *Breaker) sleepWindowOver() bool { return !b.gateClosed() }

func (b *Breaker) reject(ctx context.Context) error {
	b.rejected.Inc()
	if b.opts.Observed(ctx) {
		b.opts.EmitContext(ctx, policy.Event{Policy: "breaker", Kind: policy.EventRejection, Err: ErrOpen.Error()})
	}
	return ErrOpen
}

// transition is called by the backend, serialised by its lock, whenever its state changes.
func (b *Breaker) transition(from, to State) {
	if to == Open {
		b.openUntil.Store(b.clock.Now().Add(b.cfg.SleepWindow).UnixNano())
	} else {
		b.openUntil.Store(0)
	}
	b.state.Store(int32(to))
	b.stateGauge.Set(float64(to))
	b.transitions.WithLabelValues(from.String(), to.String()).Inc()
	b.opts.Emit(policy.Event{Policy: "breaker", Kind: policy.EventStateChange, From: from.String(), To: to.String()})
}

// State returns the current state after applying the transitions that are due: both libraries move
// lazily, on the next call, so State asks them to look now.
func (b *Breaker) State() State {
	switch State(b.state.Load()) {
	case Closed:
		if b.hx != nil {
			b.hx.checkTrip()
		}
	case Open:
		if b.sleepWindowOver() {
			if b.gb != nil {
				b.gb.refresh()
			} else {
				b.hx.startHalfOpen()
			}
		}
	}
	return State(b.state.Load())
}

// Snapshot is the breaker's settings and live state.
type Snapshot struct {
	Backend        Backend    `json:"backend"`
	State          string     `json:"state"`
	OpenUntil      *time.Time `json:"open_until,omitempty"`
	FailureRatio   float64    `json:"failure_ratio"`
	MinRequests    int        `json:"min_requests"`
	Window         string     `json:"window"`
	SleepWindow    string     `json:"sleep_window"`
	HalfOpenProbes int        `json:"half_open_probes"`
	// Counts in the current window, where the backend tells them (gobreaker).
	Successes *uint32 `json:"successes,omitempty"`
	Failures  *uint32 `json:"failures,omitempty"`
	// HystrixCommand is the command name in hystrix-go's registry.
	HystrixCommand string `json:"hystrix_command,omitempty"`
}

func (b *Breaker) Snapshot() Snapshot {
	s := Snapshot{
		Backend: b.cfg.Backend, State: b.State().String(), FailureRatio: b.cfg.FailureRatio,
		MinRequests: b.cfg.MinRequests, Window: b.cfg.Window.String(), SleepWindow: b.cfg.SleepWindow.String(),
		HalfOpenProbes: b.cfg.HalfOpenProbes,
	}
	if until := b.openUntil.Load(); until != 0 {
		t := time.Unix(0, until).UTC()
		s.OpenUntil = &t
	}
	if b.gb != nil {
		c := b.gb.cb.Counts()
		s.Successes, s.Failures = &c.TotalSuccesses, &c.TotalFailures
	} else {
		s.Window = "10s (fixed by hystrix-go)"
		s.HystrixCommand = b.hx.name
	}
	return s
}
