// Package retry retries failed calls with capped exponential backoff and full jitter, within a retry
// budget. Only failures are retried (transport errors, 5xx, 408, 429, per-attempt timeouts): never a
// business outcome, never a policy's rejection (an open breaker or a full bulkhead would only be
// hammered), never after the caller gave up. Wrap only idempotent operations: the Link does that.
//
// The per-attempt timeout is the timeout policy placed inside the retry (the Link's order does): each
// attempt gets its own deadline, while the caller's deadline bounds them all — no retry is scheduled
// whose backoff would end past it.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// ErrBudgetExhausted is wrapped around a call's last failure when a retry was due but the budget had
// none left. errors.Is finds it, and errors.As still finds the failure (e.g. the callee's *platform.Error).
var ErrBudgetExhausted = errors.New("retry budget exhausted")

type budgetError struct{ last error }

func (e *budgetError) Error() string   { return ErrBudgetExhausted.Error() + ": " + e.last.Error() }
func (e *budgetError) Unwrap() []error { return []error{ErrBudgetExhausted, e.last} }

// Config are the retry's settings.
type Config struct {
	MaxAttempts int           // attempts in all, the first included; 1 turns retries off
	BaseDelay   time.Duration // the backoff cap of the first retry; doubles per retry …
	MaxDelay    time.Duration // … up to this
	Budget      BudgetConfig
	// Rand returns a uniform integer in [0, n); nil: math/rand/v2. Tests pin it to check the bounds.
	Rand func(n int64) int64
}

// Retry is the policy. Build it with New; it is safe for concurrent use.
type Retry struct {
	cfg    Config
	opts   policy.Options
	clock  clock.Clock
	budget *Budget
	rand   func(int64) int64

	attempts  prometheus.Counter
	exhausted prometheus.Counter
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	if c.MaxAttempts < 1 || c.BaseDelay < 0 || c.MaxDelay < c.BaseDelay {
		return fmt.Errorf("retry: want max attempts >= 1 and 0 <= base delay (%s) <= max delay (%s), got %d attempts",
			c.BaseDelay, c.MaxDelay, c.MaxAttempts)
	}
	return c.Budget.validate()
}

// New builds a retry policy with its own budget, whose timer runs until Close.
func New(cfg Config, o policy.Options) (*Retry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o = o.WithDefaults()
	budget, err := NewBudget(cfg.Budget, o.Clock)
	if err != nil {
		return nil, err
	}
	r := &Retry{cfg: cfg, opts: o, clock: o.Clock, budget: budget, rand: cfg.Rand}
	if r.rand == nil {
		r.rand = rand.Int64N
	}
	labels := o.Labels()
	r.attempts = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_retry_attempts_total", ConstLabels: labels,
		Help: "Retries sent to a downstream (attempts after the first).",
	}))
	r.exhausted = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_retry_budget_exhausted_total", ConstLabels: labels,
		Help: "Retries to a downstream not sent because the retry budget was spent.",
	}))
	return r, nil
}

// Close stops the budget's timer.
func (r *Retry) Close() { r.budget.Stop() }

// Budget is the retry budget; the hedge policy draws from the same one.
func (r *Retry) Budget() *Budget { return r.budget }

// Backoff is the delay before retry n (n >= 1): full jitter, uniform in [0, min(MaxDelay, BaseDelay ×
// 2^(n-1))] — "Exponential Backoff And Jitter", AWS Architecture Blog, 2015. Full jitter spreads the
// retries of many callers that failed together, so they do not return in synchronised waves.
func (r *Retry) Backoff(n int) time.Duration {
	ceiling := r.cfg.BaseDelay
	for i := 1; i < n && ceiling < r.cfg.MaxDelay; i++ {
		ceiling *= 2
	}
	if ceiling > r.cfg.MaxDelay {
		ceiling = r.cfg.MaxDelay
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(r.rand(int64(ceiling) + 1))
}

// Middleware applies the retry to an endpoint.
func (r *Retry) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	if r.cfg.MaxAttempts <= 1 {
		return next
	}
	return func(ctx context.Context, request any) (any, error) {
		r.budget.Deposit()
		resp, err := next(ctx, request)
		for attempt := 2; err != nil && attempt <= r.cfg.MaxAttempts; attempt++ {
			if policy.Classify(ctx, err) != policy.Failure {
				break
			}
			delay := r.Backoff(attempt - 1)
			if dl, ok := ctx.Deadline(); ok && !r.clock.Now().Add(delay).Before(dl) {
				break // the caller's deadline would pass before the retry is even sent
			}
			if !r.budget.Withdraw() {
				r.exhausted.Inc()
				r.opts.EmitContext(ctx, policy.Event{Policy: "retry", Kind: policy.EventBudget, Attempt: attempt, Err: err.Error()})
				return nil, &budgetError{last: err}
			}
			r.attempts.Inc()
			r.opts.EmitContext(ctx, policy.Event{Policy: "retry", Kind: policy.EventRetry, Attempt: attempt, Delay: delay, Err: err.Error()})
			if werr := r.wait(ctx, delay); werr != nil {
				return nil, werr
			}
			resp, err = next(ctx, request)
		}
		return resp, err
	}
}

func (r *Retry) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Snapshot is the retry's settings and its budget's live state.
type Snapshot struct {
	MaxAttempts int            `json:"max_attempts"`
	BaseDelay   string         `json:"base_delay"`
	MaxDelay    string         `json:"max_delay"`
	Budget      BudgetSnapshot `json:"budget"`
}

func (r *Retry) Snapshot() Snapshot {
	return Snapshot{MaxAttempts: r.cfg.MaxAttempts, BaseDelay: r.cfg.BaseDelay.String(),
		MaxDelay: r.cfg.MaxDelay.String(), Budget: r.budget.Snapshot()}
}
