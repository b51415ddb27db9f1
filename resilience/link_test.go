package resilience

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// httpClock is a fake clock for tests that send real HTTP: it starts at the wall clock's now because
// the transport turns the context deadline into X-Deadline-Ms with the wall clock.
func httpClock() (*clock.Fake, time.Time) {
	now := time.Now()
	return clock.NewFake(now), now
}

type product struct {
	ID string `json:"id"`
}

// callee is a test server answering with the status the test sets.
type callee struct {
	status atomic.Int32
	hits   atomic.Int32
	srv    *httptest.Server
}

func newCallee(t *testing.T) *callee {
	c := &callee{}
	c.status.Store(200)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		switch s := int(c.status.Load()); {
		case s == 200:
			platform.WriteJSON(w, 200, product{ID: "p1"})
		case s >= 400 && s < 500:
			platform.WriteError(w, platform.Errorf(s, "out_of_stock", "none left"))
		default:
			platform.WriteError(w, platform.Errorf(s, "internal", "broken"))
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *callee) endpoint(t *testing.T) endpoint.Endpoint {
	u, err := platform.ParseBaseURL(c.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return platform.ClientEndpoint[struct{}, product](platform.NewHTTPClient(), u, http.MethodGet, func(struct{}) string { return "products/p1" })
}

type events struct {
	mu  sync.Mutex
	all []policy.Event
}

func (e *events) hook(ev policy.Event) { e.mu.Lock(); e.all = append(e.all, ev); e.mu.Unlock() }
func (e *events) of(kind policy.EventKind) []policy.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []policy.Event
	for _, ev := range e.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func testConfig() LinkConfig {
	c := DefaultLinkConfig()
	c.Breaker.MinRequests = 4
	c.Retry.BaseDelay, c.Retry.MaxDelay = 0, 0 // retries back to back: the clock is fake
	return c
}

func calls(t *testing.T, l *Link, outcome string) float64 {
	t.Helper()
	return l.Snapshot().Calls[outcome]
}

// TestBusinessOutcomesNeverTripOrRetry: through the whole chain and real HTTP, 409s are answers.
func TestBusinessOutcomesNeverTripOrRetry(t *testing.T) {
	c := newCallee(t)
	c.status.Store(409)
	fake, _ := httpClock()
	l, err := NewLink("orders-catalog", testConfig(), prometheus.NewRegistry(), WithClock(fake))
	if err != nil {
		t.Fatal(err)
	}
	e := l.Policies()("get_product", true)(c.endpoint(t))
	for range 20 {
		_, err := e(context.Background(), struct{}{})
		if pe, ok := platform.AsError(err); !ok || pe.Status != 409 || pe.Code != "out_of_stock" {
			t.Fatalf("err = %v, want the callee's 409", err)
		}
	}
	if c.hits.Load() != 20 {
		t.Fatalf("callee hits = %d, want 20 (no retries)", c.hits.Load())
	}
	if st := l.Breaker().State(); st != breaker.Closed {
		t.Fatalf("breaker = %s after business outcomes", st)
	}
	if calls(t, l, "business") != 20 {
		t.Fatalf("calls = %v", l.Snapshot().Calls)
	}
}

// TestTransportFailuresRetryTripAndFallBack: 503s are retried (idempotent op), trip the breaker, and
// then the open breaker rejects fast and the fallback answers.
func TestTransportFailuresRetryTripAndFallBack(t *testing.T) {
	c := newCallee(t)
	c.status.Store(503)
	ev := &events{}
	fake, t0 := httpClock()
	l, err := NewLink("gateway-catalog", testConfig(), prometheus.NewRegistry(), WithClock(fake), WithEvents(ev.hook),
		WithFallback("get_product", func(ctx context.Context, req any, err error) (any, error) {
			return &product{ID: "stale"}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	get := l.Policies()("get_product", true)(c.endpoint(t))
	resp, err := get(context.Background(), struct{}{})
	if err != nil || resp.(*product).ID != "stale" {
		t.Fatalf("resp = %v, err = %v: want the fallback's answer", resp, err)
	}
	// 3 attempts, then 1 more call's first attempt reaches min requests (4) with 100% failures.
	if c.hits.Load() != 3 {
		t.Fatalf("hits = %d, want 3 attempts", c.hits.Load())
	}
	_, _ = get(context.Background(), struct{}{})
	if st := l.Breaker().State(); st != breaker.Open {
		t.Fatalf("breaker = %s, want open", st)
	}
	hits := c.hits.Load()
	// A non-idempotent op with no fallback: not retried, rejected by the open breaker.
	post := l.Policies()("reserve", false)(c.endpoint(t))
	if _, err := post(context.Background(), struct{}{}); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen", err)
	}
	if c.hits.Load() != hits {
		t.Fatal("the open breaker let a call through")
	}
	// The second call's retry met the breaker it had just tripped, so it ended rejected too.
	if calls(t, l, "rejected") != 2 || calls(t, l, "failure") != 1 || hits != 4 {
		t.Fatalf("calls = %v", l.Snapshot().Calls)
	}
	if n := len(ev.of(policy.EventRetry)); n < 3 {
		t.Fatalf("retry events = %d", n)
	}
	changes := ev.of(policy.EventStateChange)
	if len(changes) != 1 || changes[0].From != "closed" || changes[0].To != "open" || !changes[0].Time.Equal(t0) ||
		changes[0].Service != "gateway" || changes[0].Downstream != "gateway-catalog" {
		t.Fatalf("state changes = %+v", changes)
	}
	if len(ev.of(policy.EventFallback)) != 2 || len(ev.of(policy.EventRejection)) < 1 {
		t.Fatalf("events = %+v", ev.all)
	}
	// The callee recovers; after the sleep window a probe closes the breaker.
	c.status.Store(200)
	fake.Advance(DefaultLinkConfig().Breaker.SleepWindow)
	if resp, err := get(context.Background(), struct{}{}); err != nil || resp.(*product).ID != "p1" {
		t.Fatalf("probe: %v %v", resp, err)
	}
	if st := l.Breaker().State(); st != breaker.Closed {
		t.Fatalf("breaker = %s after a good probe", st)
	}
}

func TestNonIdempotentCallsAreNotRetried(t *testing.T) {
	c := newCallee(t)
	c.status.Store(502)
	fake, _ := httpClock()
	l, err := NewLink("orders-payments", testConfig(), nil, WithClock(fake))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Policies()("charge", false)(c.endpoint(t))(context.Background(), struct{}{}); err == nil {
		t.Fatal("want the 502")
	}
	if c.hits.Load() != 1 {
		t.Fatalf("hits = %d, want 1", c.hits.Load())
	}
}

func TestCallerAlreadyGone(t *testing.T) {
	c := newCallee(t)
	l, err := NewLink("orders-payments", testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Policies()("get_payment", true)(c.endpoint(t))(ctx, struct{}{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if c.hits.Load() != 0 || calls(t, l, "cancelled") != 1 {
		t.Fatalf("hits = %d, calls = %v", c.hits.Load(), l.Snapshot().Calls)
	}
}

func TestHedgingOnlyForNamedReads(t *testing.T) {
	cfg := testConfig()
	cfg.HedgeDelay = 10 * time.Millisecond
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := NewLink("gateway-catalog", cfg, nil, WithClock(fake), WithHedgedOps("list_products"))
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	slow := func(ctx context.Context, _ any) (any, error) {
		if attempts.Add(1) == 1 {
			<-ctx.Done() // the first attempt hangs until it loses
			return nil, ctx.Err()
		}
		return "fast", nil
	}
	before := fake.Pending() // the retry budget's bucket timer
	done := make(chan any, 1)
	go func() { resp, _ := l.Policies()("list_products", true)(slow)(context.Background(), nil); done <- resp }()
	// Two more timers: the hedge delay and the first attempt's deadline.
	if !fake.BlockUntil(before+2, 10*time.Second) {
		t.Fatal("hedge never armed")
	}
	fake.Advance(10 * time.Millisecond)
	if resp := <-done; resp != "fast" {
		t.Fatalf("resp = %v, want the hedge's", resp)
	}
	if got := l.Snapshot().HedgedOps; len(got) != 1 || got[0] != "list_products" {
		t.Fatalf("hedged ops = %v", got)
	}
}

func TestDebugHandler(t *testing.T) {
	pay := testConfig()
	pay.Breaker.Backend = breaker.Hystrix
	pay.Adaptive.Max = 32
	cfg := ServiceConfig{Service: "orders", Server: ServerConfigFromEnv(platform.EnvFrom(nil), "orders"),
		Links: map[string]LinkConfig{"orders-catalog": testConfig(), "orders-payments": pay}}
	p, err := cfg.Build(nil, map[string][]Option{"orders-payments": {WithFallback("charge", func(ctx context.Context, _ any, err error) (any, error) { return nil, err })}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := httptest.NewRecorder()
	p.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/resilience", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var got DebugSnapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Server == nil || got.Server.Shed.MaxInFlight != 256 || len(got.Links) != 2 {
		t.Fatalf("%s", rec.Body.String())
	}
	a, b := got.Links[0], got.Links[1]
	if a.Name != "orders-catalog" || a.Breaker == nil || a.Breaker.Backend != breaker.Gobreaker || a.Breaker.State != "closed" ||
		a.Bulkhead.MaxConcurrent != 64 || a.Retry.MaxAttempts != 3 || a.Retry.Budget.Left != 100 || a.Timeout.Timeout != "1s" ||
		a.Adaptive != nil || a.Service != "orders" {
		t.Fatalf("orders-catalog: %+v", a)
	}
	if b.Breaker.Backend != breaker.Hystrix || !strings.HasPrefix(b.Breaker.HystrixCommand, "lab:orders-orders-payments:") ||
		b.Adaptive == nil || b.Adaptive.Limit != 16 || len(b.Fallbacks) != 1 {
		t.Fatalf("orders-payments: %+v", b)
	}
	for _, key := range []string{`"state"`, `"in_flight"`, `"left"`, `"calls"`} {
		if !bytes.Contains(rec.Body.Bytes(), []byte(key)) {
			t.Errorf("body lacks %s", key)
		}
	}
}

// TestMetricsArePromlintClean builds every policy on one registry, exercises them, and lints what a
// scrape would return. Two links on one registry must share the metric families.
func TestMetricsArePromlintClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.HedgeDelay, cfg.Adaptive.Max = time.Millisecond, 10
	a, err := NewLink("gateway-catalog", cfg, reg, WithHedgedOps("get_product"),
		WithFallback("get_product", func(ctx context.Context, _ any, err error) (any, error) { return nil, err }))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Breaker.Backend = breaker.Hystrix
	b, err := NewLink("gateway-orders", cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer("gateway", ServerConfig{}, reg)
	if err != nil {
		t.Fatal(err)
	}
	_ = srv
	c := newCallee(t)
	c.status.Store(500)
	for _, l := range []*Link{a, b} {
		e := l.Policies()("get_product", true)(c.endpoint(t))
		for range 5 {
			_, _ = e(context.Background(), struct{}{})
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	want := []string{
		"resilience_breaker_state", "resilience_breaker_transitions_total", "resilience_breaker_rejected_total",
		"resilience_calls_total", "resilience_bulkhead_in_flight", "resilience_bulkhead_rejected_total",
		"resilience_retry_attempts_total", "resilience_retry_budget_exhausted_total", "resilience_timeouts_total",
		"resilience_fallbacks_total", "resilience_hedges_total", "resilience_hedge_wins_total",
		"resilience_adaptive_limit", "resilience_adaptive_rejected_total",
		"resilience_rate_limited_total", "resilience_shed_total", "resilience_shed_in_flight",
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if strings.HasPrefix(mf.GetName(), "resilience_") && labels["service"] != "gateway" {
				t.Errorf("%s lacks service=gateway: %v", mf.GetName(), labels)
			}
		}
	}
	for _, n := range want {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	if n := testutil.CollectAndCount(reg, "resilience_calls_total"); n != 10 {
		t.Errorf("resilience_calls_total series = %d, want 5 outcomes × 2 links", n)
	}
}
