package resilience

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/afex/hystrix-go/hystrix"
	"github.com/failsafe-go/failsafe-go"
	fsbulkhead "github.com/failsafe-go/failsafe-go/bulkhead"
	fsbreaker "github.com/failsafe-go/failsafe-go/circuitbreaker"
	fsretry "github.com/failsafe-go/failsafe-go/retrypolicy"
	fstimeout "github.com/failsafe-go/failsafe-go/timeout"
	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/services/platform"
)

// The three contenders run the same four policies — breaker, bulkhead, retry, timeout — with the
// lab's default settings around a trivial endpoint, on the success path.

var benchResponse = &product{ID: "p1"}

func trivial(ctx context.Context, _ any) (any, error) { return benchResponse, nil }

func benchConfig() LinkConfig {
	c := DefaultLinkConfig() // gobreaker, bulkhead 64, 3 attempts with budget, 1s timeout; hedge and adaptive off
	return c
}

func labChain(b *testing.B, cfg LinkConfig, next endpoint.Endpoint) (*Link, endpoint.Endpoint) {
	l, err := NewLink("bench-lab", cfg, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return l, l.Policies()("get_product", true)(next)
}

func failsafeExecutor(cfg LinkConfig) (failsafe.Executor[any], fsbreaker.CircuitBreaker[any]) {
	rp := fsretry.NewBuilder[any]().
		WithMaxAttempts(cfg.Retry.MaxAttempts).
		WithBackoff(cfg.Retry.BaseDelay, cfg.Retry.MaxDelay).
		WithJitterFactor(1).
		AbortIf(func(_ any, err error) bool { return platform.IsBusiness(err) }).
		AbortOnErrors(fsbreaker.ErrOpen, fsbulkhead.ErrFull). // as ours: rejections are not retried
		Build()
	cb := fsbreaker.NewBuilder[any]().
		WithFailureRateThreshold(cfg.Breaker.FailureRatio, uint(cfg.Breaker.MinRequests), cfg.Breaker.Window).
		WithDelay(cfg.Breaker.SleepWindow).
		WithSuccessThreshold(uint(cfg.Breaker.HalfOpenProbes)).
		HandleIf(func(_ any, err error) bool { return err != nil && !platform.IsBusiness(err) }).
		Build()
	bh := fsbulkhead.NewBuilder[any](uint(cfg.Bulkhead.MaxConcurrent)).WithMaxWaitTime(cfg.Bulkhead.MaxWait).Build()
	to := fstimeout.New[any](cfg.Timeout)
	return failsafe.With[any](rp, cb, bh, to), cb
}

func hystrixCommand(cfg LinkConfig) string {
	name := "bench:" + platform.NewID()
	hystrix.ConfigureCommand(name, hystrix.CommandConfig{
		Timeout: int(cfg.Timeout.Milliseconds()),
		// hystrix-go hands a pool ticket back on a goroutine after Do returns, so a tight loop drains a
		// pool of 64; a large pool keeps the benchmark on the success path.
		MaxConcurrentRequests:  1 << 20,
		RequestVolumeThreshold: cfg.Breaker.MinRequests,
		SleepWindow:            int(cfg.Breaker.SleepWindow.Milliseconds()),
		ErrorPercentThreshold:  int(cfg.Breaker.FailureRatio * 100),
	})
	return name
}

// BenchmarkChain: breaker + bulkhead + retry + timeout on the success path, ours against failsafe-go
// and hystrix-go (whose Do has no retry: it is breaker, concurrency pool and timeout).
func BenchmarkChain(b *testing.B) {
	cfg := benchConfig()
	ctx := context.Background()
	b.Run("lab", func(b *testing.B) {
		_, e := labChain(b, cfg, trivial)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("failsafe", func(b *testing.B) {
		ex, _ := failsafeExecutor(cfg)
		ex = ex.WithContext(ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ex.GetWithExecution(func(exec failsafe.Execution[any]) (any, error) {
				return trivial(exec.Context(), nil)
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hystrix", func(b *testing.B) {
		name := hystrixCommand(cfg)
		b.ReportAllocs()
		for b.Loop() {
			if err := hystrix.DoC(ctx, name, func(ctx context.Context) error {
				_, err := trivial(ctx, nil)
				return err
			}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var errDown = errors.New("connection refused")

func failing(context.Context, any) (any, error) { return nil, errDown }

// BenchmarkOpenBreaker: the cost of a call rejected by an open breaker (the path taken during an outage).
func BenchmarkOpenBreaker(b *testing.B) {
	cfg := benchConfig()
	cfg.Breaker.SleepWindow = time.Hour // stays open for the whole run
	ctx := context.Background()
	b.Run("lab", func(b *testing.B) {
		l, e := labChain(b, cfg, failing)
		for l.Breaker().State() != breaker.Open {
			_, _ = e(ctx, nil)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e(ctx, nil); !errors.Is(err, breaker.ErrOpen) {
				b.Fatal(err)
			}
		}
	})
	b.Run("failsafe", func(b *testing.B) {
		ex, cb := failsafeExecutor(cfg)
		cb.Open()
		ex = ex.WithContext(ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ex.GetWithExecution(func(exec failsafe.Execution[any]) (any, error) {
				return failing(exec.Context(), nil)
			}); !errors.Is(err, fsbreaker.ErrOpen) {
				b.Fatal(err)
			}
		}
	})
}
