package e2e

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/discovery/canary"
	"github.com/resilience-lab/lab/discovery/etcdtest"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/platform"
)

// countingFront counts the product lists a catalog instance serves and can turn it bad (5xx).
type countingFront struct {
	swappable
	lists  atomic.Int64
	broken atomic.Bool
}

func (f *countingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/products" {
		f.lists.Add(1)
		if f.broken.Load() {
			platform.WriteError(w, platform.Errorf(http.StatusInternalServerError, "internal", "catalog v2 is broken"))
			return
		}
	}
	f.swappable.ServeHTTP(w, r)
}

// TestGatewayCatalogCanary runs catalog v1 and v2 registered in an embedded etcd and the gateway with
// GATEWAY_CATALOG_CANARY_VERSION=v2, everything built by its own ConfigFromEnv and Open: the weighted
// split over 1000 calls, X-Canary routing, then v2 answering 5xx until the rule (on a fake clock) rolls
// it back, and every call after it served by v1.
func TestGatewayCatalogCanary(t *testing.T) {
	registry := etcdtest.Start(t)
	endpoints := registry.Endpoints()[0]
	dir := t.TempDir()
	fronts := map[string]*countingFront{}
	for _, version := range []string{"v1", "v2"} {
		front := &countingFront{}
		srv := (&shop{t: t}).serve(front)
		cfg := configFrom(t, map[string]string{
			"CATALOG_DB": filepath.Join(dir, "catalog-"+version+".db"), "REGISTRY_ENDPOINTS": endpoints,
			"SERVICE_ADVERTISE_URL": srv.URL, "SERVICE_INSTANCE_ID": "catalog-" + version, "SERVICE_VERSION": version,
		}, catalog.ConfigFromEnv)
		svc, closer, err := catalog.Open(context.Background(), cfg, platform.NewLogger(t.Output(), "catalog-"+version, slog.LevelWarn), platform.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closer.Close() })
		front.set(svc.Handler())
		fronts[version] = front
	}
	v1, v2 := fronts["v1"], fronts["v2"]

	const jwtSecret = "e2e-secret-e2e-secret-e2e-secret-0123"
	cfg := configFrom(t, map[string]string{
		"REGISTRY_ENDPOINTS": endpoints, "CATALOG_URL": "http://127.0.0.1:1", // the seed: the registry has the real ones
		"ORDERS_URL": "http://127.0.0.1:1", "PAYMENTS_URL": "http://127.0.0.1:1",
		"GATEWAY_DEV_TOKENS": "true", "GATEWAY_JWT_SECRET": jwtSecret,
		"GATEWAY_RATE_LIMIT_RPS": "100000", "GATEWAY_RATE_LIMIT_BURST": "100000",
		// Failing canary calls reach the user (no stale copy), so they can be counted at the gateway.
		"GATEWAY_STALE_CATALOG": "false",
		// The link's policies as in the stack, with shorter retry backoffs only to keep the test fast.
		"GATEWAY_CATALOG_RETRY_BASE_DELAY": "1ms", "GATEWAY_CATALOG_RETRY_MAX_DELAY": "5ms",
		"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_ROLLBACK_SECONDS": "3",
	}, gateway.ConfigFromEnv)
	if c := cfg.CatalogCanary; c == nil || c.Stable != "v1" || c.Canary != "v2" || c.Weight != 10 {
		t.Fatalf("canary config %+v", c)
	}
	// A seeded generator: the split is random as in production, and the test repeatable.
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(9, 10))
	cfg.CatalogCanary.Rand = func(n int) int { mu.Lock(); defer mu.Unlock(); return rng.IntN(n) }
	fake := clock.NewFake(time.Now())
	cfg.CanaryClock = fake
	reg := platform.NewRegistry()
	svc, closer, err := gateway.Open(context.Background(), cfg, platform.NewLogger(t.Output(), "gateway", slog.LevelWarn), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	s := &shop{t: t, http: &http.Client{Timeout: waitFor}}
	s.gateway = s.serve(svc.Handler())

	waitUntil(t, "the gateway to know catalog v1 and v2", func() bool {
		var d struct{ Balancers []discovery.BalancerSnapshot }
		s.must(t, http.StatusOK, "GET", "/debug/discovery", "", "", nil, &d)
		known := map[string]int{}
		for _, b := range d.Balancers {
			known[b.Downstream] = len(b.Instances)
		}
		return known[gateway.LinkCatalog] == 1 && known[discovery.VersionedLink(gateway.LinkCatalog, "v2")] == 1
	})
	user := s.token(t, "e2e-canary")
	list := func(headers ...string) int {
		t.Helper()
		req, err := http.NewRequest("GET", s.gateway.URL+"/api/products", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+user)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	counts := func() (int64, int64) { return v1.lists.Load(), v2.lists.Load() }

	// 90/10: over 1000 calls the canary's share is Binomial(1000, 0.1): mean 100, sd 9.5; ±5 sd is
	// [53, 147], a bound a correct split leaves with probability under 1e-6.
	const calls = 1000
	for i := 0; i < calls; i++ {
		if st := list(); st != http.StatusOK {
			t.Fatalf("call %d: %d", i, st)
		}
	}
	n1, n2 := counts()
	if n1+n2 != calls || n2 < 53 || n2 > 147 {
		t.Fatalf("split: v1 %d, v2 %d of %d calls; want all served, v2 in [53, 147]", n1, n2, calls)
	}
	t.Logf("weight 10: v1 served %d, v2 %d of %d calls", n1, n2, calls)

	// X-Canary: true goes to v2 every time; any other value is the normal split.
	before1, before2 := counts()
	for i := 0; i < 50; i++ {
		if st := list(canary.Header, "true"); st != http.StatusOK {
			t.Fatalf("X-Canary call %d: %d", i, st)
		}
	}
	if a1, a2 := counts(); a1 != before1 || a2 != before2+50 {
		t.Fatalf("X-Canary: true: v1 +%d, v2 +%d of 50 calls; want all on v2", a1-before1, a2-before2)
	}
	fake.Advance(time.Second) // judges the healthy traffic so far: no rollback
	if st := gatewayStatus(t, s, jwtSecret); st.RolledBack != nil || st.Weight != 10 {
		t.Fatalf("healthy canary: %+v", st)
	}

	// v2 turns bad. Each simulated second carries 200 calls (≈ 20 to the canary, over the 5 a second
	// is judged on); three bad seconds in a row roll it back.
	v2.broken.Store(true)
	failed, seconds := 0, 0
	for gatewayStatus(t, s, jwtSecret).RolledBack == nil && seconds < 10 {
		for i := 0; i < 200; i++ {
			if list() != http.StatusOK {
				failed++
			}
		}
		fake.Advance(time.Second)
		seconds++
	}
	st := gatewayStatus(t, s, jwtSecret)
	if st.RolledBack == nil || st.Weight != 0 || seconds != 3 || !strings.Contains(st.RolledBack.Reason, "error rate 1.000") {
		t.Fatalf("after %d bad seconds: %+v (rollback %+v)", seconds, st, st.RolledBack)
	}
	// The failed calls are the canary's share of 600: Binomial(600, 0.1), mean 60, sd 7.3; ±5 sd. The
	// link's retries cannot save them: they stay on the version the call was routed to.
	if failed < 23 || failed > 97 {
		t.Fatalf("%d calls failed over 3 s at 10%% of 200 calls/s; want about 60", failed)
	}
	t.Logf("bad canary at 10%% of 200 calls/s: rolled back after %d s (simulated), %d of %d calls failed", seconds, failed, seconds*200)
	metrics := s.call(t, "GET", "/metrics", "", "", nil)
	for _, want := range []string{
		`canary_rollbacks_total{downstream="gateway-catalog",service="gateway"} 1`,
		`canary_weight_ratio{downstream="gateway-catalog",service="gateway"} 0`,
	} {
		if !strings.Contains(string(metrics.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// After the rollback every call goes to v1 and succeeds.
	before1, before2 = counts()
	for i := 0; i < 200; i++ {
		if st := list(); st != http.StatusOK {
			t.Fatalf("call %d after the rollback: %d", i, st)
		}
	}
	if a1, a2 := counts(); a2 != before2 || a1 != before1+200 {
		t.Fatalf("after the rollback v1 +%d, v2 +%d of 200 calls; want all on v1", a1-before1, a2-before2)
	}

	// v2 fixed, an operator re-arms it at 10 % through the admin API.
	v2.broken.Store(false)
	if st := putWeight(t, s, jwtSecret, 10); st.Weight != 10 || st.RolledBack != nil {
		t.Fatalf("after PUT weight 10: %+v", st)
	}
}

// adminToken mints an admin token as `gateway admin-token` does.
func adminToken(t *testing.T, secret string) string {
	t.Helper()
	auth, err := gateway.NewAuthenticator([]byte(secret), "resilience-lab", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue("e2e-ops", time.Minute, gateway.AdminRole)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func gatewayStatus(t *testing.T, s *shop, secret string) canary.Status {
	t.Helper()
	var st canary.Status
	s.must(t, http.StatusOK, "GET", gateway.AdminCanaryRoute, adminToken(t, secret), "", nil, &st)
	return st
}

func putWeight(t *testing.T, s *shop, secret string, w int) canary.Status {
	t.Helper()
	var st canary.Status
	s.must(t, http.StatusOK, "PUT", gateway.AdminCanaryRoute, adminToken(t, secret), "", map[string]int{"weight": w}, &st)
	return st
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
