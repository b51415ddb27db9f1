package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// version is a stand-in for one version's balancer: its endpoint answers with its name, or fails with
// the status the test sets.
type fakeVersion struct {
	name   string
	status atomic.Int32
	calls  atomic.Int32
}

func (v *fakeVersion) Endpoint(string, sd.Factory) endpoint.Endpoint {
	return func(context.Context, any) (any, error) {
		v.calls.Add(1)
		if s := v.status.Load(); s != 0 {
			return nil, platform.Errorf(int(s), "broken", "%s fails", v.name)
		}
		return v.name, nil
	}
}

type routerSetup struct {
	r              *Router
	stable, canary *fakeVersion
	fake           *clock.Fake
	reg            *prometheus.Registry
	events         *[]policy.Event
	logs           *bytes.Buffer
	e              endpoint.Endpoint
}

// sequence returns 0, 1, …, 99, 0, …: a pinned split where weight w sends exactly w of every 100 calls
// to the canary.
func sequence() func(int) int {
	var mu sync.Mutex
	i := 0
	return func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		v := i % n
		i++
		return v
	}
}

func newRouter(t *testing.T, cfg Config) routerSetup {
	t.Helper()
	s := routerSetup{stable: &fakeVersion{name: "v1"}, canary: &fakeVersion{name: "v2"},
		fake: clock.NewFake(time.Unix(1_800_000_000, 0)), reg: prometheus.NewRegistry(),
		events: &[]policy.Event{}, logs: &bytes.Buffer{}}
	if cfg.Rand == nil {
		cfg.Rand = sequence()
	}
	logger := slog.New(slog.NewJSONHandler(s.logs, nil))
	r, err := New(s.stable, s.canary, cfg, policy.Options{Clock: s.fake, Registerer: s.reg, Service: "gateway",
		Downstream: "gateway-catalog", Hook: func(e policy.Event) { *s.events = append(*s.events, e) }}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	s.r = r
	s.e = r.Endpoint("list_products", nil)
	return s
}

func (s routerSetup) calls(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, _ = s.e(ctx, struct{}{})
	}
}

func TestWeightedSplit(t *testing.T) {
	for _, w := range []int{0, 10, 50, 100} {
		cfg := DefaultConfig()
		cfg.Weight = w
		s := newRouter(t, cfg)
		s.calls(t, context.Background(), 1000)
		if got := int(s.canary.calls.Load()); got != 10*w {
			t.Errorf("weight %d: canary got %d of 1000 calls, want %d", w, got, 10*w)
		}
		if got := testutil.ToFloat64(s.r.m.weight); got != float64(w)/100 {
			t.Errorf("weight %d: canary_weight_ratio = %v", w, got)
		}
	}
}

func TestHeaderRouting(t *testing.T) {
	for _, tc := range []struct {
		header string
		canary bool
	}{
		{"true", true}, {"TRUE", true}, {" true ", true}, {"false", false}, {"", false}, {"1", false}, {"yes", false},
	} {
		cfg := DefaultConfig()
		cfg.Weight = 0
		s := newRouter(t, cfg)
		var routed any
		h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			routed, _ = s.e(req.Context(), struct{}{})
		}))
		req := httptest.NewRequest(http.MethodGet, "/api/products", nil)
		if tc.header != "" {
			req.Header.Set(Header, tc.header)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		if want := map[bool]string{true: "v2", false: "v1"}[tc.canary]; routed != want {
			t.Errorf("X-Canary %q: routed to %v, want %s", tc.header, routed, want)
		}
	}
}

func TestRetriesStayOnTheFirstAttemptsVersion(t *testing.T) {
	draws := []int{0, 99} // first draw: canary (0 < 10), second: stable
	for _, scoped := range []bool{true, false} {
		cfg := DefaultConfig()
		i := 0
		cfg.Rand = func(int) int { v := draws[i%2]; i++; return v }
		s := newRouter(t, cfg)
		twice := func(next endpoint.Endpoint) endpoint.Endpoint { // a retry policy, as far as routing can tell
			return func(ctx context.Context, req any) (any, error) {
				_, _ = next(ctx, req)
				return next(ctx, req)
			}
		}
		e := twice(s.e)
		if scoped {
			e = discovery.Scope(e)
		}
		_, _ = e(context.Background(), struct{}{})
		sameVersion := s.canary.calls.Load() == 2 && s.stable.calls.Load() == 0
		if sameVersion != scoped {
			t.Errorf("scoped %v: canary %d, stable %d calls", scoped, s.canary.calls.Load(), s.stable.calls.Load())
		}
	}
}

func rollbackConfig() Config {
	cfg := DefaultConfig()
	cfg.Rollback = RollbackConfig{Seconds: 3, MaxErrorRate: 0.05, MaxP99: 500 * time.Millisecond, MinRequests: 5}
	return cfg
}

func TestRollbackOnErrorRate(t *testing.T) {
	s := newRouter(t, rollbackConfig())
	s.canary.status.Store(http.StatusServiceUnavailable)
	canaryCtx := WithRequested(context.Background(), true)
	for sec := 1; sec <= 3; sec++ {
		s.calls(t, canaryCtx, 10)
		s.fake.Advance(time.Second)
		if rolled := s.r.Status().RolledBack != nil; rolled != (sec == 3) {
			t.Fatalf("after %d bad seconds rolled back = %v; want it after the 3rd only", sec, rolled)
		}
	}
	st := s.r.Status()
	if st.Weight != 0 || st.RolledBack.FromWeight != 10 || !strings.Contains(st.RolledBack.Reason, "error rate 1.000 > 0.050") {
		t.Fatalf("status %+v, rollback %+v", st, st.RolledBack)
	}
	if got := testutil.ToFloat64(s.r.m.rollbacks); got != 1 {
		t.Fatalf("canary_rollbacks_total = %v", got)
	}
	if got := testutil.ToFloat64(s.r.m.weight); got != 0 {
		t.Fatalf("canary_weight_ratio = %v after the rollback", got)
	}
	if len(*s.events) != 1 || (*s.events)[0].Kind != EventRollback || (*s.events)[0].From != "10" {
		t.Fatalf("events %+v", *s.events)
	}
	if !strings.Contains(s.logs.String(), `"msg":"canary rolled back"`) {
		t.Fatalf("no rollback log line in %s", s.logs)
	}
	// Weighted traffic now all goes to the stable version; asking for the canary still reaches it.
	before := s.canary.calls.Load()
	s.calls(t, context.Background(), 100)
	if s.canary.calls.Load() != before {
		t.Fatal("weighted calls reached the rolled-back canary")
	}
	s.calls(t, canaryCtx, 1)
	if s.canary.calls.Load() != before+1 {
		t.Fatal("X-Canary: true no longer reaches the canary")
	}
}

func TestRollbackOnP99(t *testing.T) {
	s := newRouter(t, rollbackConfig())
	for sec := 0; sec < 3; sec++ {
		for i := 0; i < 100; i++ {
			took := 10 * time.Millisecond
			if i < 2 { // 2% of the calls are slow: over the p99
				took = 800 * time.Millisecond
			}
			s.r.observe(canary, policy.Success, took)
		}
		s.fake.Advance(time.Second)
	}
	st := s.r.Status()
	if st.RolledBack == nil || !strings.Contains(st.RolledBack.Reason, "p99") {
		t.Fatalf("want a p99 rollback, got %+v", st)
	}
}

func TestFastEnoughCanaryIsKept(t *testing.T) {
	s := newRouter(t, rollbackConfig())
	for sec := 0; sec < 10; sec++ {
		for i := 0; i < 100; i++ {
			took := 10 * time.Millisecond
			if i == 0 { // 1% slow: the p99 is still fast
				took = 800 * time.Millisecond
			}
			outcome := policy.Success
			if i < 5 { // 5% failures: at the threshold, not over it
				outcome = policy.Failure
			}
			s.r.observe(canary, outcome, took)
		}
		s.fake.Advance(time.Second)
	}
	if st := s.r.Status(); st.RolledBack != nil || st.Weight != 10 {
		t.Fatalf("a canary within its thresholds was rolled back: %+v", st.RolledBack)
	}
}

func TestQuietSecondsAndGoodSecondsEndARun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		calls []int // canary calls per second, all failing
	}{
		{"a quiet second in the middle", []int{10, 10, 2, 10, 10}},
		{"the caller giving up is not judged", nil},
	} {
		s := newRouter(t, rollbackConfig())
		s.canary.status.Store(http.StatusInternalServerError)
		canaryCtx := WithRequested(context.Background(), true)
		for _, n := range tc.calls {
			s.calls(t, canaryCtx, n)
			s.fake.Advance(time.Second)
		}
		if tc.calls == nil {
			gone, cancel := context.WithCancel(canaryCtx)
			cancel()
			for sec := 0; sec < 5; sec++ {
				s.calls(t, gone, 10)
				s.fake.Advance(time.Second)
			}
		}
		if st := s.r.Status(); st.RolledBack != nil {
			t.Errorf("%s: rolled back: %+v", tc.name, st.RolledBack)
		}
	}
}

func TestSetWeightRearmsTheRule(t *testing.T) {
	s := newRouter(t, rollbackConfig())
	s.canary.status.Store(http.StatusInternalServerError)
	canaryCtx := WithRequested(context.Background(), true)
	for sec := 0; sec < 3; sec++ {
		s.calls(t, canaryCtx, 10)
		s.fake.Advance(time.Second)
	}
	if s.r.Status().RolledBack == nil {
		t.Fatal("not rolled back")
	}
	if err := s.r.SetWeight(20); err != nil {
		t.Fatal(err)
	}
	if st := s.r.Status(); st.Weight != 20 || st.RolledBack != nil {
		t.Fatalf("after SetWeight(20): %+v", st)
	}
	for sec := 0; sec < 3; sec++ {
		s.calls(t, canaryCtx, 10)
		s.fake.Advance(time.Second)
	}
	if st := s.r.Status(); st.Weight != 0 || st.RolledBack == nil || st.RolledBack.FromWeight != 20 {
		t.Fatalf("the re-armed rule did not roll back again: %+v", st)
	}
	if got := testutil.ToFloat64(s.r.m.rollbacks); got != 2 {
		t.Fatalf("canary_rollbacks_total = %v, want 2", got)
	}
	if err := s.r.SetWeight(101); err == nil {
		t.Fatal("SetWeight(101) accepted")
	}
}

func TestAdminHandler(t *testing.T) {
	for _, tc := range []struct {
		name, method, contentType, body string
		status                          int
		code                            string
		weight                          int
	}{
		{"get", http.MethodGet, "", "", 200, "", 10},
		{"set", http.MethodPut, "application/json", `{"weight": 25}`, 200, "", 25},
		{"zero", http.MethodPut, "", `{"weight":0}`, 200, "", 0},
		{"over 100", http.MethodPut, "", `{"weight": 101}`, 400, "invalid_argument", 10},
		{"negative", http.MethodPut, "", `{"weight": -1}`, 400, "invalid_argument", 10},
		{"missing", http.MethodPut, "", `{}`, 400, "invalid_argument", 10},
		{"null", http.MethodPut, "", `{"weight": null}`, 400, "invalid_argument", 10},
		{"wrong type", http.MethodPut, "", `{"weight": "ten"}`, 400, "wrong_type", 10},
		{"fraction", http.MethodPut, "", `{"weight": 10.5}`, 400, "wrong_type", 10},
		{"unknown field", http.MethodPut, "", `{"weight": 5, "ratio": 0.05}`, 400, "unknown_field", 10},
		{"malformed", http.MethodPut, "", `{"weight":`, 400, "malformed_json", 10},
		{"two values", http.MethodPut, "", `{"weight":5}{"weight":6}`, 400, "malformed_json", 10},
		{"empty", http.MethodPut, "", ``, 400, "empty_body", 10},
		{"not json", http.MethodPut, "text/plain", `weight=5`, 415, "unsupported_media_type", 10},
		{"post", http.MethodPost, "", `{"weight": 5}`, 405, "method_not_allowed", 10},
		{"delete", http.MethodDelete, "", ``, 405, "method_not_allowed", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRouter(t, DefaultConfig())
			req := httptest.NewRequest(tc.method, "/admin/canary/catalog", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			s.r.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code != "" {
				var body struct {
					Error platform.Error `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != tc.code {
					t.Fatalf("body %s (%v), want code %s", rec.Body, err, tc.code)
				}
			} else {
				var st Status
				if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Weight != tc.weight || st.Canary != "v2" {
					t.Fatalf("body %s (%v)", rec.Body, err)
				}
			}
			if got := s.r.Status().Weight; got != tc.weight {
				t.Fatalf("weight %d after the call, want %d", got, tc.weight)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"rule off needs no min requests", func(c *Config) { c.Rollback = RollbackConfig{} }, true},
		{"same versions", func(c *Config) { c.Canary = c.Stable }, false},
		{"empty version", func(c *Config) { c.Stable = "" }, false},
		{"weight over 100", func(c *Config) { c.Weight = 101 }, false},
		{"error rate over 1", func(c *Config) { c.Rollback.MaxErrorRate = 1.5 }, false},
		{"negative seconds", func(c *Config) { c.Rollback.Seconds = -1 }, false},
		{"no min requests", func(c *Config) { c.Rollback.MinRequests = 0 }, false},
	} {
		c := DefaultConfig()
		tc.modify(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"GATEWAY_CATALOG_CANARY_WEIGHT": "20", "GATEWAY_CATALOG_CANARY_ROLLBACK_SECONDS": "10",
		"GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_P99": "250ms", "GATEWAY_CATALOG_CANARY_VERSION": "v3",
	})
	c := ConfigFromEnv(env, "gateway-catalog")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Weight != 20 || c.Rollback.Seconds != 10 || c.Rollback.MaxP99 != 250*time.Millisecond || c.Canary != "v3" || c.Stable != "v1" {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []map[string]string{
		{"GATEWAY_CATALOG_CANARY_WEIGHT": "110"},
		{"GATEWAY_CATALOG_CANARY_WEIGHT": "ten"},
		{"GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_ERROR_RATE": "2"},
		{"GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_P99": "fast"},
		{"GATEWAY_CATALOG_CANARY_VERSION": "v1"},
	} {
		env := platform.EnvFrom(bad)
		ConfigFromEnv(env, "gateway-catalog")
		if env.Err() == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestMetricsArePromlintClean(t *testing.T) {
	s := newRouter(t, rollbackConfig())
	s.canary.status.Store(http.StatusInternalServerError)
	s.calls(t, WithRequested(context.Background(), true), 10)
	s.calls(t, context.Background(), 10)
	problems, err := testutil.GatherAndLint(s.reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("promlint: %+v", problems)
	}
}

// TestBadCanaryRolledBackOverRealInstances runs the whole path: two discovery.Balancers over real HTTP
// replicas (v1 healthy, v2 answering 503), the router at 10%, and the rule on a fake clock.
func TestBadCanaryRolledBackOverRealInstances(t *testing.T) {
	v1, v2 := replica(t, http.StatusOK), replica(t, http.StatusServiceUnavailable)
	fake := clock.NewFake(time.Now())
	o := policy.Options{Clock: fake, Registerer: prometheus.NewRegistry(), Service: "gateway", Downstream: "gateway-catalog"}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	balancer := func(u string) *discovery.Balancer {
		b, err := discovery.NewBalancer(sd.FixedInstancer{u}, discovery.DefaultBalancerConfig(), o, logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}
	cfg := rollbackConfig()
	cfg.Rand = sequence()
	r, err := New(balancer(v1.URL), balancer(v2.URL), cfg, o, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client := platform.NewHTTPClient()
	e := discovery.Scope(r.Endpoint("list_products", discovery.URLFactory(func(base *url.URL) endpoint.Endpoint {
		return platform.ClientEndpoint[struct{}, map[string]string](client, base, http.MethodGet, func(struct{}) string { return "products" })
	})))
	failed, seconds := 0, 0
	for r.Status().RolledBack == nil && seconds < 20 {
		for i := 0; i < 100; i++ { // 100 calls a second, 10 of them to the canary
			if _, err := e(context.Background(), struct{}{}); err != nil {
				failed++
			}
		}
		fake.Advance(time.Second)
		seconds++
	}
	if st := r.Status(); st.RolledBack == nil || seconds != 3 || failed != 30 {
		t.Fatalf("rolled back %+v after %d s with %d failed calls; want after 3 s, 30 failed (10%% of 300)", st.RolledBack, seconds, failed)
	}
	t.Logf("bad canary at 10%% of 100 calls/s: rolled back after %d s, %d calls affected", seconds, failed)
	for i := 0; i < 100; i++ {
		if _, err := e(context.Background(), struct{}{}); err != nil {
			t.Fatalf("after the rollback: %v", err)
		}
	}
}

func replica(t *testing.T, status int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if status != http.StatusOK {
			platform.WriteError(w, platform.Errorf(status, "unavailable", "down"))
			return
		}
		platform.WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	}))
	t.Cleanup(srv.Close)
	return srv
}
