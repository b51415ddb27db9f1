package breaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	errTransport = errors.New("dial tcp: connection refused")
	err503       = platform.Errorf(http.StatusServiceUnavailable, "unavailable", "down")
	err409       = platform.Conflict("out_of_stock", "no stock")
)

// eventually polls cond: hystrix-go counts on a goroutine of its own, so a trip shows a moment after the
// failure that caused it. The timeout is generous; it is a wait, not an assertion on timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type harness struct {
	b      *Breaker
	clock  *clock.Fake
	reg    *prometheus.Registry
	events []policy.Event
	mu     sync.Mutex
}

func newHarness(t *testing.T, backend Backend, cfg Config) *harness {
	t.Helper()
	h := &harness{clock: clock.NewFake(t0), reg: prometheus.NewRegistry()}
	cfg.Backend = backend
	b, err := New(cfg, policy.Options{
		Clock: h.clock, Registerer: h.reg, Service: "orders", Downstream: "orders-payments",
		Hook: func(e policy.Event) { h.mu.Lock(); h.events = append(h.events, e); h.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	return h
}

// call sends one call whose endpoint returns err; it reports the error seen and whether the endpoint ran.
func (h *harness) call(ctx context.Context, err error) (error, bool) {
	ran := false
	e := h.b.Middleware(func(ctx context.Context, _ any) (any, error) {
		ran = true
		if err != nil {
			return nil, err
		}
		return "ok", nil
	})
	_, got := e(ctx, nil)
	return got, ran
}

func (h *harness) stateChanges() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		if e.Kind == policy.EventStateChange {
			out = append(out, fmt.Sprintf("%s→%s@%s", e.From, e.To, e.Time.Sub(t0)))
		}
	}
	return out
}

var tableConfig = Config{FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second, SleepWindow: 5 * time.Second, HalfOpenProbes: 1}

// TestStateTransitions runs one table against both backends: every transition, the counting rule
// (business outcomes are successes, the caller's cancellation is neither) and the sleep window on the
// injected clock.
func TestStateTransitions(t *testing.T) {
	type step struct {
		name      string
		advance   time.Duration // move the clock first
		err       error         // what the endpoint returns
		cancelled bool          // the caller's context is cancelled
		wantErr   error         // nil: the endpoint's own error comes back
		wantRan   bool
		wantState State
	}
	steps := []step{
		{name: "success", wantRan: true, wantState: Closed},
		{name: "success", wantRan: true, wantState: Closed},
		{name: "transport failure, 3 done: below min requests", err: errTransport, wantRan: true, wantState: Closed},
		{name: "business 409 counts as success: 1/4 failed", err: err409, wantRan: true, wantState: Closed},
		{name: "caller cancelled: not counted", err: context.Canceled, cancelled: true, wantRan: true, wantState: Closed},
		{name: "503: 2/5 failed", err: err503, wantRan: true, wantState: Closed},
		{name: "503: 3/6 failed reaches the ratio: open", err: err503, wantRan: true, wantState: Open},
		{name: "open: rejected without calling", wantErr: ErrOpen, wantState: Open},
		{name: "still open just before the sleep window ends", advance: 5*time.Second - time.Millisecond, wantErr: ErrOpen, wantState: Open},
		{name: "sleep window over: a failed probe opens again", advance: time.Millisecond, err: errTransport, wantRan: true, wantState: Open},
		{name: "open again for a full sleep window", advance: 4 * time.Second, wantErr: ErrOpen, wantState: Open},
		{name: "a successful probe closes", advance: time.Second, wantRan: true, wantState: Closed},
		{name: "counts start afresh once closed", err: errTransport, wantRan: true, wantState: Closed},
	}
	for _, backend := range []Backend{Gobreaker, Hystrix} {
		t.Run(string(backend), func(t *testing.T) {
			h := newHarness(t, backend, tableConfig)
			for i, s := range steps {
				h.clock.Advance(s.advance)
				ctx := context.Background()
				if s.cancelled {
					c, cancel := context.WithCancel(ctx)
					cancel()
					ctx = c
				}
				if s.wantState == Open && backend == Hystrix && s.wantRan && i > 0 && steps[i-1].wantState == Closed {
					// hystrix counts asynchronously: wait until this failure is counted and trips it.
					_, ran := h.call(ctx, s.err)
					if !ran {
						t.Fatalf("step %d %s: endpoint not called", i, s.name)
					}
					eventually(t, "hystrix to trip", func() bool { return h.b.State() == Open })
					continue
				}
				got, ran := h.call(ctx, s.err)
				want := s.wantErr
				if want == nil {
					want = s.err
				}
				if !errors.Is(got, want) || (want == nil && got != nil) {
					t.Fatalf("step %d %s: err = %v, want %v", i, s.name, got, want)
				}
				if ran != s.wantRan {
					t.Fatalf("step %d %s: endpoint ran = %v, want %v", i, s.name, ran, s.wantRan)
				}
				if st := h.b.State(); st != s.wantState {
					t.Fatalf("step %d %s: state = %s, want %s", i, s.name, st, s.wantState)
				}
			}
			wantChanges := []string{"closed→open@0s", "open→half-open@5s", "half-open→open@5s", "open→half-open@10s", "half-open→closed@10s"}
			if got := h.stateChanges(); fmt.Sprint(got) != fmt.Sprint(wantChanges) {
				t.Fatalf("state changes = %v, want %v", got, wantChanges)
			}
			if v := testutil.ToFloat64(h.b.transitions.WithLabelValues("closed", "open")); v != 1 {
				t.Fatalf("closed→open transitions = %v, want 1", v)
			}
			if v := testutil.ToFloat64(h.b.rejected); v != 3 {
				t.Fatalf("rejected = %v, want 3", v)
			}
			if v := testutil.ToFloat64(h.b.stateGauge); v != float64(Closed) {
				t.Fatalf("state gauge = %v, want 0", v)
			}
		})
	}
}

// TestOpenToHalfOpenWithoutCalls: State applies the due move itself, so /debug/resilience is current.
func TestOpenToHalfOpenWithoutCalls(t *testing.T) {
	for _, backend := range []Backend{Gobreaker, Hystrix} {
		t.Run(string(backend), func(t *testing.T) {
			cfg := tableConfig
			cfg.MinRequests = 1
			h := newHarness(t, backend, cfg)
			h.call(context.Background(), errTransport)
			eventually(t, "open", func() bool { return h.b.State() == Open })
			snap := h.b.Snapshot()
			if snap.OpenUntil == nil || !snap.OpenUntil.Equal(t0.Add(5*time.Second)) {
				t.Fatalf("open_until = %v, want %v", snap.OpenUntil, t0.Add(5*time.Second))
			}
			h.clock.Advance(5 * time.Second)
			if st := h.b.State(); st != HalfOpen {
				t.Fatalf("state = %s, want half-open", st)
			}
			if snap := h.b.Snapshot(); snap.State != "half-open" || snap.OpenUntil != nil {
				t.Fatalf("snapshot = %+v", snap)
			}
		})
	}
}

// TestHalfOpenProbes: while half-open, only HalfOpenProbes calls go through at once; the rest fail fast.
func TestHalfOpenProbes(t *testing.T) {
	for _, tc := range []struct {
		backend Backend
		// gobreaker closes after HalfOpenProbes consecutive successes, hystrix-go on the first one.
		successesToClose int
	}{{Gobreaker, 3}, {Hystrix, 1}} {
		t.Run(string(tc.backend), func(t *testing.T) {
			cfg := tableConfig
			cfg.MinRequests, cfg.HalfOpenProbes = 1, 3
			h := newHarness(t, tc.backend, cfg)
			h.call(context.Background(), errTransport)
			eventually(t, "open", func() bool { return h.b.State() == Open })
			h.clock.Advance(cfg.SleepWindow)

			release := make(chan struct{})
			entered := make(chan struct{}, 3)
			probe := h.b.Middleware(func(ctx context.Context, _ any) (any, error) {
				entered <- struct{}{}
				<-release
				return "ok", nil
			})
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for range 3 {
				wg.Add(1)
				go func() { defer wg.Done(); _, err := probe(context.Background(), nil); errs <- err }()
			}
			for range 3 {
				<-entered
			}
			if err, ran := h.call(context.Background(), nil); !errors.Is(err, ErrOpen) || ran {
				t.Fatalf("fourth call while 3 probes are out: err = %v, ran = %v; want ErrOpen, not run", err, ran)
			}
			if st := h.b.State(); st != HalfOpen {
				t.Fatalf("state with probes out = %s, want half-open", st)
			}
			for i := 1; i <= 3; i++ {
				release <- struct{}{}
				if err := <-errs; err != nil {
					t.Fatalf("probe %d: %v", i, err)
				}
				want := HalfOpen
				if i >= tc.successesToClose {
					want = Closed
				}
				eventually(t, "probe to be recorded", func() bool { return h.b.State() == want })
			}
			wg.Wait()
		})
	}
}

// TestHalfOpenBusinessAndCancel: a business answer to a probe proves the callee healthy; a probe the
// caller cancelled proves nothing and frees its slot.
func TestHalfOpenBusinessAndCancel(t *testing.T) {
	for _, backend := range []Backend{Gobreaker, Hystrix} {
		t.Run(string(backend), func(t *testing.T) {
			cfg := tableConfig
			cfg.MinRequests = 1
			h := newHarness(t, backend, cfg)
			h.call(context.Background(), errTransport)
			eventually(t, "open", func() bool { return h.b.State() == Open })
			h.clock.Advance(cfg.SleepWindow)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, ran := h.call(ctx, context.Canceled); !ran {
				t.Fatal("cancelled probe not run")
			}
			if st := h.b.State(); st != HalfOpen {
				t.Fatalf("after a cancelled probe: %s, want half-open", st)
			}
			if err, ran := h.call(context.Background(), err409); !ran || !errors.Is(err, err409) {
				t.Fatalf("business probe: err = %v, ran = %v", err, ran)
			}
			if st := h.b.State(); st != Closed {
				t.Fatalf("after a business probe: %s, want closed", st)
			}
		})
	}
}

// TestRejectionsAreNotFailures: a bulkhead's (or any policy's) rejection below the breaker says nothing
// about the callee.
func TestRejectionsAreNotFailures(t *testing.T) {
	for _, backend := range []Backend{Gobreaker, Hystrix} {
		t.Run(string(backend), func(t *testing.T) {
			cfg := tableConfig
			cfg.MinRequests = 1
			h := newHarness(t, backend, cfg)
			full := &policy.Rejection{Policy: "bulkhead", Reason: "full"}
			for range 10 {
				h.call(context.Background(), full)
			}
			// A marker failure proves hystrix has drained everything reported before it.
			h.call(context.Background(), errTransport)
			eventually(t, "the marker failure to trip", func() bool { return h.b.State() == Open })
			if v := testutil.ToFloat64(h.b.transitions.WithLabelValues("closed", "open")); v != 1 {
				t.Fatalf("trips = %v", v)
			}
		})
	}
}

func TestHystrixBreakersAreIsolated(t *testing.T) {
	cfg := tableConfig
	cfg.MinRequests = 1
	a := newHarness(t, Hystrix, cfg)
	b := newHarness(t, Hystrix, cfg)
	if a.b.hx.name == b.b.hx.name {
		t.Fatalf("two breakers share the hystrix command %q", a.b.hx.name)
	}
	a.call(context.Background(), errTransport)
	eventually(t, "a to trip", func() bool { return a.b.State() == Open })
	if err, ran := b.call(context.Background(), nil); err != nil || !ran {
		t.Fatalf("b affected by a: err = %v, ran = %v", err, ran)
	}
	if st := b.b.State(); st != Closed {
		t.Fatalf("b = %s, want closed", st)
	}
}

func TestConfigValidate(t *testing.T) {
	good := tableConfig
	good.Backend = Gobreaker
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"backend":      func(c *Config) { c.Backend = "resilience4j" },
		"ratio zero":   func(c *Config) { c.FailureRatio = 0 },
		"ratio > 1":    func(c *Config) { c.FailureRatio = 1.5 },
		"min requests": func(c *Config) { c.MinRequests = 0 },
		"window":       func(c *Config) { c.Window = 0 },
		"sleep window": func(c *Config) { c.SleepWindow = 0 },
		"probes":       func(c *Config) { c.HalfOpenProbes = 0 },
	} {
		c := good
		mutate(&c)
		if _, err := New(c, policy.Options{}); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}

// TestConcurrentCalls runs mixed outcomes from many goroutines through both backends, for the race
// detector: every call is either run or rejected, and the state stays a valid one.
func TestConcurrentCalls(t *testing.T) {
	for _, backend := range []Backend{Gobreaker, Hystrix} {
		t.Run(string(backend), func(t *testing.T) {
			b, err := New(Config{Backend: backend, FailureRatio: 0.5, MinRequests: 5, Window: time.Second,
				SleepWindow: time.Millisecond, HalfOpenProbes: 2}, policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var ran, rejected, total atomic.Int64
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 200 {
						total.Add(1)
						_, err := b.Middleware(func(context.Context, any) (any, error) {
							ran.Add(1)
							if (g+i)%3 == 0 {
								return nil, errTransport
							}
							return "ok", nil
						})(context.Background(), nil)
						if errors.Is(err, ErrOpen) {
							rejected.Add(1)
						}
						_ = b.State()
					}
				}()
			}
			wg.Wait()
			if ran.Load()+rejected.Load() != total.Load() {
				t.Fatalf("ran %d + rejected %d != %d calls", ran.Load(), rejected.Load(), total.Load())
			}
			if s := b.State(); s != Closed && s != Open && s != HalfOpen {
				t.Fatalf("state %d", s)
			}
		})
	}
}
