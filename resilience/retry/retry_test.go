package retry

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/resilience/timeout"
	"github.com/resilience-lab/lab/services/platform"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	err503 = platform.Errorf(http.StatusServiceUnavailable, "unavailable", "down")
	err409 = platform.Conflict("out_of_stock", "no stock")
)

func base() Config {
	return Config{MaxAttempts: 3, BaseDelay: 0, MaxDelay: 0, Budget: BudgetConfig{Ratio: 0.2, MinPerSec: 10, Window: 10 * time.Second}}
}

type recorder struct {
	mu     sync.Mutex
	events []policy.Event
}

func (r *recorder) hook(e policy.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) kinds(k policy.EventKind) []policy.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []policy.Event
	for _, e := range r.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func build(t *testing.T, cfg Config, c clock.Clock, rec *recorder) *Retry {
	t.Helper()
	o := policy.Options{Clock: c, Service: "orders", Downstream: "orders-payments"}
	if rec != nil {
		o.Hook = rec.hook
	}
	r, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// failing returns an endpoint that returns errs in turn (nil: success) and counts its calls.
func failing(calls *atomic.Int32, errs ...error) func(context.Context, any) (any, error) {
	return func(ctx context.Context, _ any) (any, error) {
		n := int(calls.Add(1)) - 1
		if n < len(errs) && errs[n] != nil {
			return nil, errs[n]
		}
		return "ok", nil
	}
}

func TestRetriesOnlyFailures(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		errs      []error
		wantCalls int32
		wantErr   error
	}{
		{"503 then success", context.Background(), []error{err503}, 2, nil},
		{"transport errors up to max attempts", context.Background(), []error{errors.New("reset"), errors.New("reset"), errors.New("reset")}, 3, nil},
		{"408 and 429 are retryable", context.Background(), []error{platform.Errorf(408, "timeout", "t"), platform.Errorf(429, "rate", "r")}, 3, nil},
		{"business 409 is not retried", context.Background(), []error{err409}, 1, err409},
		{"a rejection is not retried", context.Background(), []error{&policy.Rejection{Policy: "breaker", Reason: "open"}}, 1, nil},
		{"the caller's cancellation is not retried", cancelled, []error{context.Canceled}, 1, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			r := build(t, base(), clock.NewFake(t0), nil)
			_, err := r.Middleware(failing(&calls, tc.errs...))(tc.ctx, nil)
			if got := calls.Load(); got != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", got, tc.wantCalls)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := testutil.ToFloat64(r.attempts); got != float64(tc.wantCalls-1) {
				t.Fatalf("retry attempts metric = %v, want %d", got, tc.wantCalls-1)
			}
		})
	}
}

func TestJitterBounds(t *testing.T) {
	cfg := base()
	cfg.BaseDelay, cfg.MaxDelay = 100*time.Millisecond, time.Second
	var pinned int64
	cfg.Rand = func(n int64) int64 { return min(pinned, n-1) }
	r := build(t, cfg, nil, nil)
	for _, tc := range []struct {
		n        int
		wantCeil time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {60, time.Second}} {
		pinned = 0
		if got := r.Backoff(tc.n); got != 0 {
			t.Fatalf("retry %d: lowest draw = %s, want 0 (full jitter)", tc.n, got)
		}
		pinned = 1 << 62
		if got := r.Backoff(tc.n); got != tc.wantCeil {
			t.Fatalf("retry %d: highest draw = %s, want %s", tc.n, got, tc.wantCeil)
		}
	}
	// With the real source every delay stays within [0, ceiling] and the draws spread over the range.
	cfg.Rand = nil
	r = build(t, cfg, nil, nil)
	var low, high int
	for range 10000 {
		d := r.Backoff(3)
		if d < 0 || d > 400*time.Millisecond {
			t.Fatalf("delay %s out of [0, 400ms]", d)
		}
		if d < 200*time.Millisecond {
			low++
		} else {
			high++
		}
	}
	if low < 4000 || high < 4000 {
		t.Fatalf("draws not spread over the range: %d below half, %d above", low, high)
	}
}

func TestBackoffWaitsOnTheClock(t *testing.T) {
	cfg := base()
	cfg.BaseDelay, cfg.MaxDelay = 100*time.Millisecond, time.Second
	cfg.Rand = func(n int64) int64 { return n - 1 } // always the ceiling: 100ms, then 200ms
	fake := clock.NewFake(t0)
	rec := &recorder{}
	r := build(t, cfg, fake, rec)
	var calls atomic.Int32
	budgetTimer := fake.Pending() // the budget's own bucket timer
	done := make(chan error, 1)
	go func() {
		_, err := r.Middleware(failing(&calls, err503, err503))(context.Background(), nil)
		done <- err
	}()
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond} {
		if !fake.BlockUntil(budgetTimer+1, 10*time.Second) {
			t.Fatalf("retry %d never waited", i+1)
		}
		if got := calls.Load(); got != int32(i+1) {
			t.Fatalf("calls before the wait = %d, want %d", got, i+1)
		}
		fake.Advance(want - time.Nanosecond)
		if got := calls.Load(); got != int32(i+1) {
			t.Fatalf("retry %d sent before its backoff ended", i+1)
		}
		fake.Advance(time.Nanosecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	retries := rec.kinds(policy.EventRetry)
	if len(retries) != 2 || retries[0].Delay != 100*time.Millisecond || retries[1].Delay != 200*time.Millisecond ||
		retries[0].Attempt != 2 || !retries[1].Time.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("retry events = %+v", retries)
	}
}

func TestBudgetExhaustion(t *testing.T) {
	cfg := base()
	cfg.MaxAttempts = 2
	cfg.Budget = BudgetConfig{Ratio: 0, MinPerSec: 0.2, Window: 10 * time.Second} // a floor of 2 retries per 10s
	fake := clock.NewFake(t0)
	rec := &recorder{}
	r := build(t, cfg, fake, rec)
	var calls atomic.Int32
	e := r.Middleware(failing(&calls, err503, err503, err503, err503, err503, err503, err503))
	for i := range 2 {
		if _, err := e(context.Background(), nil); errors.Is(err, ErrBudgetExhausted) {
			t.Fatalf("call %d: budget exhausted too early", i)
		}
	}
	if calls.Load() != 4 {
		t.Fatalf("calls = %d, want 4 (two calls, two retries)", calls.Load())
	}
	_, err := e(context.Background(), nil)
	if !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("err = %v, want ErrBudgetExhausted", err)
	}
	if pe, ok := platform.AsError(err); !ok || pe.Status != 503 {
		t.Fatalf("the callee's failure must stay visible under ErrBudgetExhausted: %v", err)
	}
	if calls.Load() != 5 || testutil.ToFloat64(r.exhausted) != 1 || len(rec.kinds(policy.EventBudget)) != 1 {
		t.Fatalf("calls = %d, exhausted = %v", calls.Load(), testutil.ToFloat64(r.exhausted))
	}
	// The window slides: ten seconds on, the retries made have aged out.
	fake.Advance(10 * time.Second)
	if left := r.Budget().Left(); left != 2 {
		t.Fatalf("budget left after the window = %d, want 2", left)
	}
}

func TestBudgetRatio(t *testing.T) {
	fake := clock.NewFake(t0)
	b, err := NewBudget(BudgetConfig{Ratio: 0.2, MinPerSec: 0, Window: 10 * time.Second}, fake)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b.Deposit()
		fake.Advance(500 * time.Millisecond) // spread over half the window
	}
	if left := b.Left(); left != 2 {
		t.Fatalf("left = %d, want 2 (20%% of 10 calls)", left)
	}
	if !b.Withdraw() || !b.Withdraw() || b.Withdraw() {
		t.Fatal("want exactly two withdrawals")
	}
	fake.Advance(5*time.Second + time.Second) // the first calls age out of the window
	if s := b.Snapshot(); s.Calls >= 10 || s.Retries != 2 {
		t.Fatalf("snapshot after sliding = %+v", s)
	}
	if _, err := NewBudget(BudgetConfig{Ratio: -1, Window: time.Second}, nil); err == nil {
		t.Fatal("negative ratio accepted")
	}
}

func TestNoRetryPastTheCallersDeadline(t *testing.T) {
	cfg := base()
	cfg.BaseDelay, cfg.MaxDelay = 2*time.Hour, 2*time.Hour
	cfg.Rand = func(n int64) int64 { return n - 1 }
	start := time.Now()
	r := build(t, cfg, clock.NewFake(start), nil)
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(time.Hour))
	defer cancel()
	var calls atomic.Int32
	_, err := r.Middleware(failing(&calls, err503))(ctx, nil)
	if calls.Load() != 1 || !errors.Is(err, err503) {
		t.Fatalf("calls = %d, err = %v: a 2h backoff must not be scheduled within a 1h deadline", calls.Load(), err)
	}
}

// TestPerAttemptTimeout: a timeout policy inside the retry bounds each attempt; the retry sends another.
func TestPerAttemptTimeout(t *testing.T) {
	fake := clock.NewFake(t0)
	r := build(t, base(), fake, nil)
	to := timeout.New(100*time.Millisecond, policy.Options{Clock: fake})
	var calls atomic.Int32
	e := r.Middleware(to.Middleware(func(ctx context.Context, _ any) (any, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // the first attempt hangs until its own deadline
			return nil, ctx.Err()
		}
		return "ok", nil
	}))
	budgetTimer := fake.Pending()
	done := make(chan error, 1)
	go func() { _, err := e(context.Background(), nil); done <- err }()
	if !fake.BlockUntil(budgetTimer+1, 10*time.Second) {
		t.Fatal("first attempt never armed its deadline")
	}
	fake.Advance(100 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("err = %v, want the second attempt's success", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("calls = %d, want 2", calls.Load())
	}
}

func TestOffAndValidation(t *testing.T) {
	cfg := base()
	cfg.MaxAttempts = 1
	var calls atomic.Int32
	r := build(t, cfg, nil, nil)
	if _, err := r.Middleware(failing(&calls, err503))(context.Background(), nil); !errors.Is(err, err503) || calls.Load() != 1 {
		t.Fatalf("max attempts 1: calls = %d, err = %v", calls.Load(), err)
	}
	for _, bad := range []Config{{MaxAttempts: 0}, {MaxAttempts: 2, BaseDelay: time.Second, MaxDelay: time.Millisecond}} {
		bad.Budget = base().Budget
		if _, err := New(bad, policy.Options{}); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
