// Package fallback answers for a downstream that failed: when a call ends in a failure or one of our
// policies' rejections (breaker open, bulkhead full, budget spent, timeout), the fallback func gets the
// request and the error and may return a substitute answer (the gateway's stale catalog copy) or a
// different error (orders' pending_payment). Business outcomes pass through untouched — the callee
// answered — and so does the caller's own cancellation: nobody is waiting for a substitute.
package fallback

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
)

// Func produces the answer for a failed call. err is the failure; returning it unchanged declines.
type Func func(ctx context.Context, request any, err error) (any, error)

// Fallback is the policy. Build it with New; it is safe for concurrent use if f is.
type Fallback struct {
	f         Func
	opts      policy.Options
	fallbacks prometheus.Counter
}

// New returns a fallback policy calling f.
func New(f Func, o policy.Options) *Fallback {
	o = o.WithDefaults()
	return &Fallback{f: f, opts: o,
		fallbacks: policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resilience_fallbacks_total", ConstLabels: o.Labels(),
			Help: "Failed calls to a downstream handed to a fallback.",
		})),
	}
}

// Middleware applies the fallback to an endpoint.
func (f *Fallback) Middleware(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		resp, err := next(ctx, request)
		if err == nil {
			return resp, nil
		}
		switch policy.Classify(ctx, err) {
		case policy.Failure, policy.Rejected:
			f.fallbacks.Inc()
			f.opts.EmitContext(ctx, policy.Event{Policy: "fallback", Kind: policy.EventFallback, Err: err.Error()})
			return f.f(ctx, request, err)
		}
		return resp, err
	}
}
