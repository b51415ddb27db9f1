// Package discoverytest runs services registered in an embedded etcd and a caller balancing over them.
package discoverytest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/discovery/etcdtest"
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/catalog"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/platform"
)

// Two catalog replicas register themselves; a caller wired as orders is (the link's policies, then
// discovery) spreads its calls over both, keeps succeeding once one answers 5xx (retries go to the
// other, the bad one is ejected), and goes on with the cached set while the registry is down.
func TestDiscoveryBalancesAcrossRegisteredReplicas(t *testing.T) {
	registry := etcdtest.Start(t)
	endpoints := registry.Endpoints()[0]
	dir := t.TempDir()
	fronts := map[string]*swappable{}
	urls := map[string]string{}
	for _, id := range []string{"c1", "c2"} {
		front := &swappable{}
		srv := httptest.NewServer(front)
		t.Cleanup(srv.Close)
		env := platform.EnvFrom(map[string]string{
			"CATALOG_DB": filepath.Join(dir, id+".db"), "REGISTRY_ENDPOINTS": endpoints,
			"SERVICE_ADVERTISE_URL": srv.URL, "SERVICE_INSTANCE_ID": id, "SERVICE_AUTH": "off",
		})
		cfg := catalog.ConfigFromEnv(env)
		if err := env.Err(); err != nil {
			t.Fatal(err)
		}
		svc, closer, err := catalog.Open(context.Background(), cfg, platform.NewLogger(t.Output(), "catalog", slog.LevelWarn), platform.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closer.Close() })
		front.set(svc.Handler())
		fronts[id], urls[id] = front, srv.URL
	}

	// The caller: the orders-catalog link's policies under discovery, seeded with one replica only, so
	// reaching the other proves the registry was read.
	env := platform.EnvFrom(map[string]string{"REGISTRY_ENDPOINTS": endpoints, "SERVICE_ADVERTISE_URL": "http://127.0.0.1:1"})
	rcfg := resilience.ServiceConfigFromEnv(env, "orders", "orders-catalog")
	dcfg := discovery.ServiceConfigFromEnv(env, "orders", false, map[string]discovery.SeededLink{
		"orders-catalog": {Service: "catalog", Seed: urls["c1"]}})
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	policies, err := rcfg.Build(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { policies.Close() })
	logger := platform.NewLogger(t.Output(), "orders", slog.LevelWarn)
	disc, err := dcfg.Start("orders", reg, policies.Events(), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disc.Close() })
	cat, err := catalogclient.New(urls["c1"], policies.Client("orders-catalog"), disc.Client("orders-catalog"))
	if err != nil {
		t.Fatal(err)
	}
	bal := disc.Balancer("orders-catalog")
	waitUntil(t, "both replicas known", func() bool { return len(bal.Snapshot().Instances) == 2 })

	callAll := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := cat.ListProducts(context.Background()); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
	}
	callAll(20)
	for id, u := range urls {
		if got := instanceRequests(t, reg, u, "success"); got == 0 {
			t.Errorf("replica %s got no successful call of 20", id)
		}
	}

	// c2 answers 5xx: every call still succeeds (the retry goes to c1) and c2 gets ejected.
	fronts["c2"].set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		platform.WriteJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]string{"code": "boom", "message": "bad replica"}})
	}))
	callAll(40)
	if instanceRequests(t, reg, urls["c2"], "failure") == 0 {
		t.Fatal("the failing replica got no call")
	}
	if !ejected(bal, urls["c2"]) {
		t.Fatalf("c2 not ejected after 40 calls: %+v", bal.Snapshot())
	}

	// Registry down: the cached set serves on.
	registry.Stop()
	before := instanceRequests(t, reg, urls["c1"], "success")
	callAll(20)
	if got := instanceRequests(t, reg, urls["c1"], "success"); got < before+20 {
		t.Errorf("c1 successes %v → %v during the registry outage, want +20", before, got)
	}
}

// waitFor bounds every wait; generous, as a loaded 2-core machine is slow, never an assertion.
const waitFor = 30 * time.Second

// swappable is an http.Handler whose target can be replaced, so a replica can turn bad behind its address.
type swappable struct{ h atomic.Pointer[http.Handler] }

func (s *swappable) set(h http.Handler) { s.h.Store(&h) }

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) { (*s.h.Load()).ServeHTTP(w, r) }

func ejected(b *discovery.Balancer, instance string) bool {
	for _, i := range b.Snapshot().Instances {
		if i.Instance == instance || i.Instance+"/" == instance || i.Instance == instance+"/" {
			return i.EjectedUntil != nil
		}
	}
	return false
}

// instanceRequests reads discovery_instance_requests_total of one instance and outcome.
func instanceRequests(t *testing.T, reg *prometheus.Registry, instance, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "discovery_instance_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "outcome") == outcome && (label(m, "instance") == instance || label(m, "instance") == instance+"/") {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
