// Package hedge sends a second copy of an idempotent read when the first has not answered within Delay
// (set it near the callee's p95 latency): the first answer wins and the other attempt's context is
// cancelled, so the loser stops at the callee too. It trims tail latency at the price of extra load,
// which the retry budget bounds when one is given. A failed attempt does not win while the other is
// still out; a failure before Delay ends the call (retrying is the retry policy's job).
package hedge

import (
	"context"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// Budget limits hedges; *retry.Budget is one.
type Budget interface{ Withdraw() bool }

// Hedge is the policy. Build it with New; it is safe for concurrent use.
type Hedge struct {
	delay  time.Duration
	budget Budget
	opts   policy.Options
	clock  clock.Clock

	hedges prometheus.Counter
	wins   prometheus.Counter
}

// New returns a hedging policy; delay <= 0 turns it off. budget may be nil (no limit).
func New(delay time.Duration, budget Budget, o policy.Options) *Hedge {
	o = o.WithDefaults()
	labels := o.Labels()
	return &Hedge{delay: delay, budget: budget, opts: o, clock: o.Clock,
		hedges: policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resilience_hedges_total", ConstLabels: labels,
			Help: "Hedged attempts sent to a downstream because the first had not answered within the hedge delay.",
		})),
		wins: policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resilience_hedge_wins_total", ConstLabels: labels,
			Help: "Calls to a downstream answered by the hedged attempt rather than the first.",
		})),
	}
}

type attempt struct {
	resp  any
	err   error
	hedge bool
}

// Middleware applies hedging to an endpoint.
func (h *Hedge) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	if h.delay <= 0 {
		return next
	}
	return func(ctx context.Context, request any) (any, error) {
		results := make(chan attempt, 2) // buffered: a loser finishing late never blocks
		run := func(hedge bool) context.CancelFunc {
			actx, cancel := context.WithCancel(ctx)
			go func() {
				resp, err := next(actx, request)
				results <- attempt{resp, err, hedge}
			}()
			return cancel
		}
		cancelFirst := run(false)
		defer cancelFirst()
		timer := h.clock.NewTimer(h.delay)
		defer timer.Stop()
		outstanding, hedged := 1, false
		var last attempt
		for {
			select {
			case <-timer.C():
				if h.budget != nil && !h.budget.Withdraw() {
					continue
				}
				hedged = true
				outstanding++
				h.hedges.Inc()
				h.opts.EmitContext(ctx, policy.Event{Policy: "hedge", Kind: policy.EventHedge, Attempt: 2, Delay: h.delay})
				defer run(true)()
			case a := <-results:
				outstanding--
				last = a
				won := a.err == nil || policy.Classify(ctx, a.err) != policy.Failure
				if won || outstanding == 0 && (hedged || timer.Stop()) {
					if a.hedge && won {
						h.wins.Inc()
					}
					return a.resp, a.err // the deferred cancels stop the loser
				}
			case <-ctx.Done():
				if outstanding == 0 {
					return last.resp, last.err
				}
				return nil, ctx.Err()
			}
		}
	}
}

// Snapshot is the policy's settings.
type Snapshot struct {
	Delay string `json:"delay"`
}

func (h *Hedge) Snapshot() Snapshot { return Snapshot{Delay: h.delay.String()} }
