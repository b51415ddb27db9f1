package discovery

import (
	"context"
	"sync"

	"github.com/go-kit/kit/endpoint"

	"github.com/resilience-lab/lab/services/platform"
)

// A call scope is what the attempts of one logical call share: the hosts already tried (so a retry or a
// hedge goes to another instance, as Envoy's previous_hosts retry predicate does), the caller's own
// context (so the balancer tells a per-attempt timeout, a failure of the instance, from the caller giving
// up), and sticky per-call choices such as the canary's version.
type callScope struct {
	ctx context.Context

	mu     sync.Mutex
	tried  []*host
	sticky map[any]any
}

type scopeKey struct{}

// Scope opens a call scope around next. It must sit above the retry (and hedge) policy, so that every
// attempt of one call shares it: Policies places it outermost.
func Scope(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		return next(context.WithValue(ctx, scopeKey{}, &callScope{ctx: ctx}), request)
	}
}

// Policies wraps a typed client's policy chain (for instance resilience.Link.Policies()) in Scope, the
// one way to use a Balancer under resilience policies:
//
//	scope → fallback → retry → [hedge] → breaker → bulkhead → [adaptive] → timeout → balancer → instance
//
// inner may be nil (no policies).
func Policies(inner platform.PolicyFunc) platform.PolicyFunc {
	return func(op string, idempotent bool) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			if inner != nil {
				next = inner(op, idempotent)(next)
			}
			return Scope(next)
		}
	}
}

func scopeFrom(ctx context.Context) *callScope {
	s, _ := ctx.Value(scopeKey{}).(*callScope)
	return s
}

// CallerContext returns the context the call's scope was opened with — the caller's, before any
// per-attempt timeout — or ctx when there is no scope.
func CallerContext(ctx context.Context) context.Context {
	if s := scopeFrom(ctx); s != nil {
		return s.ctx
	}
	return ctx
}

// Sticky returns the value of key chosen by the call's first attempt, calling choose once per call;
// without a scope it calls choose every time. A canary router uses it so that a call's retries stay on
// the version its first attempt was routed to.
func Sticky[T any](ctx context.Context, key any, choose func() T) T {
	s := scopeFrom(ctx)
	if s == nil {
		return choose()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.sticky[key].(T); ok {
		return v
	}
	v := choose()
	if s.sticky == nil {
		s.sticky = map[any]any{}
	}
	s.sticky[key] = v
	return v
}

func (s *callScope) add(h *host) {
	s.mu.Lock()
	s.tried = append(s.tried, h)
	s.mu.Unlock()
}

func (s *callScope) has(h *host) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tried {
		if t == h {
			return true
		}
	}
	return false
}
