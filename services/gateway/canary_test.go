package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/discovery/canary"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/catalog"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/platform"
)

const registry = "http://127.0.0.1:2379"

func TestConfigFromEnvCatalogCanary(t *testing.T) {
	base := map[string]string{"SERVICE_AUTH": "off", "REGISTRY_ENDPOINTS": registry}
	with := func(vars map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range vars {
			m[k] = v
		}
		return m
	}
	t.Run("off without a canary version", func(t *testing.T) {
		for _, vars := range []map[string]string{base, {"SERVICE_AUTH": "off", "GATEWAY_CATALOG_CANARY_WEIGHT": "ten"}} {
			env := platform.EnvFrom(vars)
			cfg := ConfigFromEnv(env)
			if err := env.Err(); err != nil || cfg.CatalogCanary != nil {
				t.Fatalf("%v: canary %+v, error %v; want off and no error (nothing else is read)", vars, cfg.CatalogCanary, err)
			}
		}
	})
	t.Run("on", func(t *testing.T) {
		env := platform.EnvFrom(with(map[string]string{
			"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_WEIGHT": "20",
			"GATEWAY_CATALOG_CANARY_ROLLBACK_SECONDS": "3", "GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_P99": "0s",
		}))
		cfg := ConfigFromEnv(env)
		if err := env.Err(); err != nil {
			t.Fatal(err)
		}
		c := cfg.CatalogCanary
		if c == nil || c.Stable != "v1" || c.Canary != "v2" || c.Weight != 20 || c.Rollback.Seconds != 3 ||
			c.Rollback.MaxP99 != 0 || c.Rollback.MaxErrorRate != 0.05 || c.Rollback.MinRequests != 5 {
			t.Fatalf("canary %+v", c)
		}
	})
	for _, tc := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"no registry", map[string]string{"SERVICE_AUTH": "off", "GATEWAY_CATALOG_CANARY_VERSION": "v2"}, "needs REGISTRY_ENDPOINTS"},
		{"weight not a number", with(map[string]string{"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_WEIGHT": "ten"}), `GATEWAY_CATALOG_CANARY_WEIGHT="ten"`},
		{"weight over 100", with(map[string]string{"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_WEIGHT": "150"}), "canary weight 150"},
		{"canary is the stable version", with(map[string]string{"GATEWAY_CATALOG_CANARY_VERSION": "v1"}), "two distinct version names"},
		{"same as a set stable version", with(map[string]string{"GATEWAY_CATALOG_CANARY_VERSION": "v3", "GATEWAY_CATALOG_CANARY_STABLE_VERSION": "v3"}), "two distinct version names"},
		{"error rate over 1", with(map[string]string{"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_ERROR_RATE": "5"}), "GATEWAY_CATALOG_CANARY_"},
		{"p99 not a duration", with(map[string]string{"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_P99": "fast"}), "GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_P99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := platform.EnvFrom(tc.vars)
			ConfigFromEnv(env)
			if err := env.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestOpenRefusesACanaryWithoutDiscovery(t *testing.T) {
	cfg := testConfig(newFakeClock())
	c := canary.DefaultConfig()
	cfg.CatalogCanary = &c
	_, _, err := Open(t.Context(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "REGISTRY_ENDPOINTS") {
		t.Fatalf("Open: %v, want the canary refused without discovery", err)
	}
}

// catalogVersion is one version of the catalog: it answers GET /products with one product named after
// it, or fails with status when set.
type catalogVersion struct {
	name   string
	calls  atomic.Int32
	status atomic.Int32
	srv    *httptest.Server
}

func newCatalogVersion(t *testing.T, name string) *catalogVersion {
	v := &catalogVersion{name: name}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.calls.Add(1)
		if s := v.status.Load(); s != 0 {
			platform.WriteError(w, platform.Errorf(int(s), "unavailable", "%s is broken", name))
			return
		}
		platform.WriteJSON(w, http.StatusOK, catalog.ListProductsResponse{Products: []catalog.Product{{ID: "p-" + name, Name: name}}})
	}))
	t.Cleanup(v.srv.Close)
	return v
}

// canaryGateway is the gateway assembled as Open does with a canary, over two catalog versions reached
// through balancers over fixed instances instead of the registry.
type canaryGateway struct {
	*testGateway
	router *canary.Router
	v1, v2 *catalogVersion
	logs   *safeWriter
}

func newCanaryGateway(t *testing.T, cc canary.Config) *canaryGateway {
	t.Helper()
	clk := newFakeClock()
	cfg := testConfig(clk)
	reg := prometheus.NewRegistry()
	logs := &safeWriter{w: &bytes.Buffer{}}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	policies, err := buildPolicies(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { policies.Close() })
	v1, v2 := newCatalogVersion(t, "v1"), newCatalogVersion(t, "v2")
	o := policy.Options{Registerer: reg, Service: "gateway", Clock: clock.NewFake(clk.Now())}
	balancer := func(link, url string) *discovery.Balancer {
		o := o
		o.Downstream = link
		b, err := discovery.NewBalancer(sd.FixedInstancer{url}, discovery.DefaultBalancerConfig(), o, logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}
	o.Downstream = LinkCatalog
	router, err := canary.New(balancer(LinkCatalog, v1.srv.URL), balancer(discovery.VersionedLink(LinkCatalog, "v2"), v2.srv.URL), cc, o, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	cat, err := catalogclient.New(v1.srv.URL, withLink(nil, policies, discovery.Balanced(router), LinkCatalog, func(*platform.ClientConfig) {})...)
	if err != nil {
		t.Fatal(err)
	}
	shop := newFakeShop(clk)
	svc, err := assemble(cfg, policies, cat, shop, shop, logger, reg, router)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &canaryGateway{testGateway: &testGateway{shop: shop, clock: clk, svc: svc, srv: srv, reg: reg},
		router: router, v1: v1, v2: v2, logs: logs}
}

// products answers which version served GET /api/products.
func (g *canaryGateway) products(t *testing.T, token string, headers ...string) string {
	t.Helper()
	a := g.do(t, "GET", "/api/products", nil, append(bearer(token), headers...)...)
	if a.status != http.StatusOK {
		t.Fatalf("GET /api/products: %d %s", a.status, a.body)
	}
	var list ProductList
	a.decode(t, &list)
	if len(list.Products) != 1 {
		t.Fatalf("products %s", a.body)
	}
	return list.Products[0].Name
}

func TestCanaryHeaderRouting(t *testing.T) {
	for _, weight := range []int{0, 100} {
		cc := canary.DefaultConfig()
		cc.Weight = weight
		g := newCanaryGateway(t, cc)
		tok := g.mint(t, "alice")
		for _, tc := range []struct {
			header string
			want   string // "": the weight decides
		}{
			{"true", "v2"}, {"TRUE", "v2"}, {" True ", "v2"},
			{"", ""}, {"false", ""}, {"1", ""}, {"yes", ""}, {"v2", ""},
		} {
			var headers []string
			if tc.header != "" {
				headers = []string{canary.Header, tc.header}
			}
			want := tc.want
			if want == "" {
				want = map[int]string{0: "v1", 100: "v2"}[weight]
			}
			if got := g.products(t, tok, headers...); got != want {
				t.Errorf("weight %d, X-Canary %q: served by %s, want %s", weight, tc.header, got, want)
			}
		}
	}
}

func TestCanaryWeightedSplitThroughTheGateway(t *testing.T) {
	cc := canary.DefaultConfig()
	n := 0
	cc.Rand = func(k int) int { n++; return (n - 1) % k } // 0, 1, …, 99: exactly weight of every 100
	g := newCanaryGateway(t, cc)
	tok := g.mint(t, "alice")
	served := map[string]int{}
	for i := 0; i < 200; i++ {
		served[g.products(t, tok)]++
	}
	if served["v2"] != 20 || served["v1"] != 180 {
		t.Fatalf("served %v, want v1 180, v2 20", served)
	}
}

// mintAdmin issues an admin token as `gateway admin-token` does.
func (g *testGateway) mintAdmin(t *testing.T, subject string) string {
	t.Helper()
	auth, err := NewAuthenticator([]byte(testSecret), "resilience-lab", g.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(subject, time.Hour, AdminRole)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func TestCanaryAdminAPI(t *testing.T) {
	g := newCanaryGateway(t, canary.DefaultConfig())
	admin, user := g.mintAdmin(t, "ops"), g.token(t, "alice")
	for _, tc := range []struct {
		name, method, body string
		headers            []string
		status             int
		code               string
		weight             int // the router's weight after the call
	}{
		{"no token", "GET", "", nil, 401, CodeMissingToken, 10},
		{"no token, put", "PUT", `{"weight":0}`, nil, 401, CodeMissingToken, 10},
		{"bad token", "PUT", `{"weight":0}`, bearer("not.a.token"), 401, CodeInvalidToken, 10},
		{"basic auth", "GET", "", []string{"Authorization", "Basic b3BzOm9wcw=="}, 401, CodeInvalidToken, 10},
		{"user token", "PUT", `{"weight":0}`, bearer(user), 403, CodeForbidden, 10},
		{"user token, get", "GET", "", bearer(user), 403, CodeForbidden, 10},
		{"admin get", "GET", "", bearer(admin), 200, "", 10},
		{"admin, weight over 100", "PUT", `{"weight":101}`, bearer(admin), 400, "invalid_argument", 10},
		{"admin, negative weight", "PUT", `{"weight":-5}`, bearer(admin), 400, "invalid_argument", 10},
		{"admin, weight not a number", "PUT", `{"weight":"ten"}`, bearer(admin), 400, "wrong_type", 10},
		{"admin, no weight", "PUT", `{}`, bearer(admin), 400, "invalid_argument", 10},
		{"admin, malformed", "PUT", `{"weight":`, bearer(admin), 400, "malformed_json", 10},
		{"admin, post", "POST", `{"weight":5}`, bearer(admin), 405, "method_not_allowed", 10},
		{"admin put", "PUT", `{"weight":25}`, bearer(admin), 200, "", 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			a := g.do(t, tc.method, AdminCanaryRoute, body, tc.headers...)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if tc.code != "" {
				if code := a.errorCode(t); code != tc.code {
					t.Fatalf("code %s, want %s", code, tc.code)
				}
			} else {
				var st canary.Status
				a.decode(t, &st)
				if st.Weight != tc.weight || st.Stable != "v1" || st.Canary != "v2" {
					t.Fatalf("status %+v", st)
				}
			}
			if tc.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if got := g.router.Status().Weight; got != tc.weight {
				t.Fatalf("weight %d after the call, want %d", got, tc.weight)
			}
		})
	}

	// The change is on /metrics, the refusals are counted, and the admin's change is logged with who made it.
	metrics := g.do(t, "GET", "/metrics", nil)
	for _, want := range []string{
		`canary_weight_ratio{downstream="gateway-catalog",service="gateway"} 0.25`,
		`canary_rollbacks_total{downstream="gateway-catalog",service="gateway"} 0`,
		`gateway_admin_auth_failures_total{code="forbidden"} 2`,
		`gateway_admin_auth_failures_total{code="missing_token"} 2`,
		`gateway_admin_auth_failures_total{code="invalid_token"} 2`,
	} {
		if !strings.Contains(string(metrics.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	logs := g.logs.String()
	if !strings.Contains(logs, `"msg":"admin call","subject":"ops","method":"PUT","path":"/admin/canary/catalog","status":200`) ||
		!strings.Contains(logs, `"msg":"canary weight set","downstream":"gateway-catalog","canary":"v2","from":10,"to":25`) {
		t.Errorf("admin change not logged:\n%s", logs)
	}
	// Traffic follows a new weight at once.
	if err := g.router.SetWeight(100); err != nil {
		t.Fatal(err)
	}
	if got := g.products(t, g.mint(t, "alice")); got != "v2" {
		t.Fatalf("weight 100: served by %s", got)
	}
}

func TestNoCanaryNoAdminRoute(t *testing.T) {
	g := newTestGateway(t, nil)
	a := g.do(t, "GET", AdminCanaryRoute, nil, bearer(g.mintAdmin(t, "ops"))...)
	if a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
		t.Fatalf("%d %s, want a 404 without a canary", a.status, a.body)
	}
}

// Dev tokens never carry the admin role: asking for one is a 400, and Issue knows no other role.
func TestDevTokensCannotBeAdmin(t *testing.T) {
	g := newTestGateway(t, nil)
	a := g.do(t, "POST", "/api/token", map[string]any{"subject": "mallory", "roles": []string{"admin"}})
	if a.status != http.StatusBadRequest || a.errorCode(t) != "unknown_field" {
		t.Fatalf("%d %s, want 400 unknown_field", a.status, a.body)
	}
	auth, err := NewAuthenticator([]byte(testSecret), "resilience-lab", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Issue("ops", time.Hour, "root"); err == nil {
		t.Fatal("Issue accepted an unknown role")
	}
}

func TestAdminTokenCommand(t *testing.T) {
	run := func(vars map[string]string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := AdminToken(args, platform.EnvFrom(vars), &out, &errOut)
		return code, strings.TrimSpace(out.String()), errOut.String()
	}
	code, tok, _ := run(map[string]string{"GATEWAY_JWT_SECRET": testSecret}, "-subject", "ops", "-ttl", "10m")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	auth, err := NewAuthenticator([]byte(testSecret), "resilience-lab", nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := auth.verify(tok); id.err != nil || id.subject != "ops" || !id.has(AdminRole) {
		t.Fatalf("token %q verified as %+v", tok, id)
	}
	code, tok, stderr := run(nil)
	if code != 0 || !strings.Contains(stderr, "public dev secret") {
		t.Fatalf("without a secret: exit %d, stderr %q", code, stderr)
	}
	dev, err := NewAuthenticator([]byte(DevJWTSecret), "resilience-lab", nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := dev.verify(tok); id.err != nil || id.subject != "admin" || !id.has(AdminRole) {
		t.Fatalf("dev-secret token verified as %+v", id)
	}
	for _, bad := range [][]string{{"-ttl", "48h"}, {"-subject", "a b"}, {"-bogus"}} {
		if code, _, stderr := run(map[string]string{"GATEWAY_JWT_SECRET": testSecret}, bad...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", bad, code, stderr)
		}
	}
	if code, _, stderr := run(map[string]string{"GATEWAY_JWT_SECRET": "short"}); code != 2 || !strings.Contains(stderr, "at least") {
		t.Errorf("short secret: exit %d, stderr %q", code, stderr)
	}
}

func TestCanaryMetricsOnTheGatewayRegistryAreLintClean(t *testing.T) {
	g := newCanaryGateway(t, canary.DefaultConfig())
	tok := g.mint(t, "alice")
	g.products(t, tok, canary.Header, "true")
	g.products(t, tok)
	problems, err := testutil.GatherAndLint(g.reg, "canary_weight_ratio", "canary_rollbacks_total", "canary_requests_total", "gateway_admin_auth_failures_total")
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

// safeWriter serialises the log lines the servers' goroutines write while the test reads them.
type safeWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *safeWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *safeWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
