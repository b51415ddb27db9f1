// Package timeout bounds each call with a deadline on its context. The deadline travels with the
// request: platform.PropagatingTransport sends what is left of it as X-Deadline-Ms and the callee's
// server turns that into its own context deadline, so no hop works past its caller's deadline.
//
// The policy is cooperative: it cancels the call's context at the deadline and returns ErrTimeout when
// the call then fails; it does not abandon a call that ignores its context (every call in the lab goes
// through net/http, which honours it).
package timeout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// ErrTimeout is returned (wrapping the call's own error) when the call failed after its deadline
// passed. It also matches context.DeadlineExceeded, so platform.EncodeError maps it to 504.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string        { return "timeout: the call exceeded its deadline" }
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout is the policy. Build it with New; it is safe for concurrent use.
type Timeout struct {
	d        time.Duration
	opts     policy.Options
	clock    clock.Clock
	timeouts prometheus.Counter
}

// New returns a policy that gives each call at most d (d <= 0: the policy is off and passes calls
// through).
func New(d time.Duration, o policy.Options) *Timeout {
	o = o.WithDefaults()
	return &Timeout{
		d: d, opts: o, clock: o.Clock,
		timeouts: policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "resilience_timeouts_total",
			Help:        "Calls to a downstream that failed after the timeout policy's deadline passed.",
			ConstLabels: o.Labels(),
		})),
	}
}

// Duration is the configured timeout.
func (t *Timeout) Duration() time.Duration { return t.d }

// Middleware applies the policy to an endpoint.
func (t *Timeout) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	if t.d <= 0 {
		return next
	}
	return func(ctx context.Context, request any) (any, error) {
		deadline := t.clock.Now().Add(t.d)
		if parent, ok := ctx.Deadline(); ok && !parent.After(deadline) {
			// The caller's deadline comes first and already bounds the call: no context of our own.
			return next(ctx, request)
		}
		dctx := newDeadlineCtx(ctx, deadline, t.clock)
		resp, err := next(dctx, request)
		if dctx.finish(err != nil) && !platform.IsBusiness(err) {
			t.timeouts.Inc()
			t.opts.EmitContext(ctx, policy.Event{Policy: "timeout", Kind: policy.EventTimeout, Err: err.Error()})
			if !errors.Is(err, ErrTimeout) {
				err = fmt.Errorf("%w after %s: %w", ErrTimeout, t.d, err)
			}
		}
		return resp, err
	}
}

// Snapshot is the policy's settings.
type Snapshot struct {
	Timeout string `json:"timeout"`
}

func (t *Timeout) Snapshot() Snapshot { return Snapshot{Timeout: t.d.String()} }
