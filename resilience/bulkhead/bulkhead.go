// Package bulkhead caps the calls in flight to one downstream, so a slow callee ties up at most
// MaxConcurrent of the caller's goroutines and connections. A call beyond the cap waits up to MaxWait
// for a slot (0: it does not wait) and is then rejected with ErrFull, without reaching the callee.
package bulkhead

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// ErrFull is returned when no slot freed up within MaxWait.
var ErrFull error = &policy.Rejection{Policy: "bulkhead", Reason: "too many calls in flight"}

// Config are the bulkhead's settings.
type Config struct {
	MaxConcurrent int           // slots; 0 turns the bulkhead off
	MaxWait       time.Duration // how long a call may queue for a slot
}

// Bulkhead is the policy. Build it with New; it is safe for concurrent use.
type Bulkhead struct {
	cfg   Config
	opts  policy.Options
	clock clock.Clock
	slots chan struct{} // a buffered channel as a semaphore: a send takes a slot, a receive frees one

	rejected prometheus.Counter
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	if c.MaxConcurrent < 0 || c.MaxWait < 0 {
		return fmt.Errorf("bulkhead: max concurrent %d and max wait %s must not be negative", c.MaxConcurrent, c.MaxWait)
	}
	return nil
}

// New builds a bulkhead.
func New(cfg Config, o policy.Options) (*Bulkhead, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o = o.WithDefaults()
	b := &Bulkhead{cfg: cfg, opts: o, clock: o.Clock}
	b.slots = make(chan struct{}, cfg.MaxConcurrent)
	labels := o.Labels()
	b.rejected = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_bulkhead_rejected_total", ConstLabels: labels,
		Help: "Calls to a downstream rejected because its bulkhead was full for longer than the max wait.",
	}))
	// The gauge reads the semaphore when scraped: nothing to update on the hot path.
	policy.Register(o.Registerer, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "resilience_bulkhead_in_flight", ConstLabels: labels,
		Help: "Calls to a downstream holding a bulkhead slot.",
	}, func() float64 { return float64(len(b.slots)) }))
	return b, nil
}

// Middleware applies the bulkhead to an endpoint.
func (b *Bulkhead) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	if b.cfg.MaxConcurrent == 0 {
		return next
	}
	return func(ctx context.Context, request any) (any, error) {
		if err := b.acquire(ctx); err != nil {
			return nil, err
		}
		defer func() { <-b.slots }()
		return next(ctx, request)
	}
}

func (b *Bulkhead) acquire(ctx context.Context) error {
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	if b.cfg.MaxWait <= 0 {
		return b.reject(ctx)
	}
	start := b.clock.Now()
	timer := b.clock.NewTimer(b.cfg.MaxWait)
	defer timer.Stop()
	select {
	case b.slots <- struct{}{}:
		b.opts.Record(ctx, policy.Event{Policy: "bulkhead", Kind: policy.EventWait, Delay: b.clock.Now().Sub(start)})
		return nil
	case <-timer.C():
		return b.reject(ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Bulkhead) reject(ctx context.Context) error {
	b.rejected.Inc()
	if b.opts.Observed(ctx) {
		b.opts.EmitContext(ctx, policy.Event{Policy: "bulkhead", Kind: policy.EventRejection, Err: ErrFull.Error()})
	}
	return ErrFull
}

// InFlight is the number of calls holding a slot.
func (b *Bulkhead) InFlight() int { return len(b.slots) }

// Snapshot is the bulkhead's settings and live state.
type Snapshot struct {
	MaxConcurrent int    `json:"max_concurrent"`
	MaxWait       string `json:"max_wait"`
	InFlight      int    `json:"in_flight"`
}

func (b *Bulkhead) Snapshot() Snapshot {
	return Snapshot{MaxConcurrent: b.cfg.MaxConcurrent, MaxWait: b.cfg.MaxWait.String(), InFlight: b.InFlight()}
}
