package adaptive

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

func setup(t *testing.T, cfg Config) (*Limiter, *clock.Fake) {
	t.Helper()
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := New(cfg, policy.Options{Clock: fake})
	if err != nil {
		t.Fatal(err)
	}
	return l, fake
}

var cfg = Config{Initial: 4, Min: 1, Max: 8, Backoff: 0.5, Latency: 100 * time.Millisecond}

func TestAIMD(t *testing.T) {
	l, fake := setup(t, cfg)
	ok := func(took time.Duration) func(context.Context, any) (any, error) {
		return func(context.Context, any) (any, error) { fake.Advance(took); return nil, nil }
	}
	fail := func(context.Context, any) (any, error) { return nil, errors.New("reset") }

	// An idle limit does not grow: one call at a time never uses half of 4.
	for range 20 {
		_, _ = l.Middleware(ok(time.Millisecond))(context.Background(), nil)
	}
	if l.Limit() != 4 {
		t.Fatalf("idle limit moved to %d", l.Limit())
	}
	// A failure halves it; so does a slow success.
	_, _ = l.Middleware(fail)(context.Background(), nil)
	if l.Limit() != 2 {
		t.Fatalf("after a failure: %d, want 2", l.Limit())
	}
	_, _ = l.Middleware(ok(200*time.Millisecond))(context.Background(), nil)
	if l.Limit() != 1 {
		t.Fatalf("after a slow call: %d, want 1", l.Limit())
	}
	_, _ = l.Middleware(fail)(context.Background(), nil)
	if l.Limit() != 1 {
		t.Fatalf("below min: %d", l.Limit())
	}
	// Used and fast, it climbs back by about one per limit's worth of calls, up to max.
	for range 100 {
		_, _ = l.Middleware(ok(time.Millisecond))(context.Background(), nil)
	}
	if got := l.Limit(); got < 2 || got > cfg.Max {
		t.Fatalf("after recovery: %d", got)
	}
	// Business answers are healthy; the caller's cancellation says nothing.
	before := l.Limit()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = l.Middleware(func(context.Context, any) (any, error) { return nil, context.Canceled })(cancelled, nil)
	_, _ = l.Middleware(func(context.Context, any) (any, error) { return nil, platform.NotFound("x") })(context.Background(), nil)
	if l.Limit() < before {
		t.Fatalf("cancelled or business call lowered the limit: %d < %d", l.Limit(), before)
	}
}

func TestRejectsAtTheLimit(t *testing.T) {
	l, _ := setup(t, Config{Initial: 1, Min: 1, Max: 1, Backoff: 0.5, Latency: time.Second})
	entered, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = l.Middleware(func(context.Context, any) (any, error) { close(entered); <-release; return nil, nil })(context.Background(), nil)
	}()
	<-entered
	if _, err := l.Middleware(func(context.Context, any) (any, error) { return nil, nil })(context.Background(), nil); !errors.Is(err, ErrLimited) {
		t.Fatalf("err = %v, want ErrLimited", err)
	}
	rec := httptest.NewRecorder()
	l.Handler(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("server side: %d %v", rec.Code, rec.Header())
	}
	if testutil.ToFloat64(l.rejected) != 2 {
		t.Fatalf("rejected = %v", testutil.ToFloat64(l.rejected))
	}
	close(release)
	if _, err := New(Config{Initial: 0, Min: 0, Max: 1, Backoff: 0.5, Latency: time.Second}, policy.Options{}); err == nil {
		t.Fatal("min 0 accepted")
	}
}
