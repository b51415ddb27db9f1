package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/platform"
)

var errRefused = &url.Error{Op: "Get", URL: "http://catalog/products", Err: errors.New("dial tcp: connection refused")}

// failCatalog makes every catalog call of the fake shop fail with err.
func failCatalog(g *testGateway, err error) {
	g.shop.set(func(f *fakeShop) {
		f.listErr = err
		for id := range f.products {
			f.productErr[id] = err
		}
	})
}

// isStale checks a product answer is fresh or stale as want says, by its body and its Warning header.
func isStale(t *testing.T, a answer, want bool) {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("%d %s, want 200", a.status, a.body)
	}
	var body struct {
		Stale *bool `json:"stale"`
	}
	a.decode(t, &body)
	warning := a.header.Get("Warning")
	switch {
	case want && (body.Stale == nil || !*body.Stale || warning != StaleWarning):
		t.Errorf("want a stale answer (\"stale\": true, Warning %s), got Warning %q: %s", StaleWarning, warning, a.body)
	case !want && (body.Stale != nil || warning != ""):
		t.Errorf("want a fresh answer without \"stale\" nor Warning, got Warning %q: %s", warning, a.body)
	}
}

func sortedProducts(ps []catalog.Product) []catalog.Product {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b catalog.Product) int { return strings.Compare(a.ID, b.ID) })
	return ps
}

func TestStaleCatalog(t *testing.T) {
	t.Run("the catalog fails: the last answers, marked stale", func(t *testing.T) {
		g := newTestGateway(t, nil)
		alice := bearer(g.token(t, "alice"))
		list := g.do(t, "GET", "/api/products", nil, alice...)
		isStale(t, list, false)
		var fresh ProductList
		list.decode(t, &fresh)
		// p-1 changes after the list and is read on its own: the newer answer is the one kept.
		g.shop.set(func(f *fakeShop) { p := f.products["p-1"]; p.Stock = 7; f.products["p-1"] = p })
		isStale(t, g.do(t, "GET", "/api/products/p-1", nil, alice...), false)

		failCatalog(g, errRefused)
		a := g.do(t, "GET", "/api/products", nil, alice...)
		isStale(t, a, true)
		var stale ProductList
		a.decode(t, &stale)
		if !slices.Equal(sortedProducts(stale.Products), sortedProducts(fresh.Products)) {
			t.Errorf("stale list %+v, want the last one %+v", stale.Products, fresh.Products)
		}
		for id, wantStock := range map[string]int64{"p-1": 7, "p-2": 3} { // p-2 only from the list
			a := g.do(t, "GET", "/api/products/"+id, nil, alice...)
			isStale(t, a, true)
			var p Product
			a.decode(t, &p)
			if p.ID != id || p.Stock != wantStock {
				t.Errorf("stale %s: %+v, want stock %d", id, p, wantStock)
			}
		}
		if n := counterValue(t, g.reg, "gateway_stale_answers_total", "op", "list_products"); n != 1 {
			t.Errorf("stale list answers %v, want 1", n)
		}
		if n := counterValue(t, g.reg, "gateway_stale_answers_total", "op", "get_product"); n != 2 {
			t.Errorf("stale product answers %v, want 2", n)
		}

		// Back: fresh answers, and the list read now replaces what was kept.
		g.shop.set(func(f *fakeShop) {
			f.listErr = nil
			clear(f.productErr)
			p := f.products["p-1"]
			p.Stock = 5
			f.products["p-1"] = p
		})
		isStale(t, g.do(t, "GET", "/api/products", nil, alice...), false)
		failCatalog(g, errRefused)
		var p Product
		a = g.do(t, "GET", "/api/products/p-1", nil, alice...)
		isStale(t, a, true)
		if a.decode(t, &p); p.Stock != 5 {
			t.Errorf("stale p-1 stock %d, want 5 from the newest list", p.Stock)
		}
	})

	t.Run("what is not an outage is answered as without a cache", func(t *testing.T) {
		g := newTestGateway(t, nil)
		alice := bearer(g.token(t, "alice"))
		isStale(t, g.do(t, "GET", "/api/products", nil, alice...), false)
		isStale(t, g.do(t, "GET", "/api/products/p-1", nil, alice...), false)
		cases := []struct {
			name    string
			err     error
			path    string
			headers []string
			status  int
			code    string
		}{
			{"a product the catalog does not know", nil, "/api/products/p-9", nil, 404, "not_found"},
			{"a business 404 of a cached product", platform.NotFound("product p-1 not found"), "/api/products/p-1", nil, 404, "not_found"},
			{"a bad request to the catalog", platform.BadRequest("invalid_argument", "bad id"), "/api/products/p-1", nil, 400, "invalid_argument"},
			{"the caller's own deadline", nil, "/api/products", []string{platform.HeaderDeadline, "50"}, 504, CodeDeadlineExceeded},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				g.shop.set(func(f *fakeShop) {
					f.productErr["p-1"] = tc.err
					f.blockCalls = tc.headers != nil
				})
				defer g.shop.set(func(f *fakeShop) { delete(f.productErr, "p-1"); f.blockCalls = false })
				a := g.do(t, "GET", tc.path, nil, append(alice, tc.headers...)...)
				if a.status != tc.status || a.errorCode(t) != tc.code || a.header.Get("Warning") != "" {
					t.Fatalf("%d %s (Warning %q), want %d %s", a.status, a.body, a.header.Get("Warning"), tc.status, tc.code)
				}
			})
		}
	})

	t.Run("nothing cached: the downstream error", func(t *testing.T) {
		g := newTestGateway(t, nil)
		alice := bearer(g.token(t, "alice"))
		failCatalog(g, errRefused)
		for _, path := range []string{"/api/products", "/api/products/p-1"} {
			if a := g.do(t, "GET", path, nil, alice...); a.status != http.StatusBadGateway || a.errorCode(t) != CodeUpstreamUnavailable {
				t.Errorf("GET %s: %d %s, want 502", path, a.status, a.body)
			}
		}
		// A product read one by one does not make a list.
		g.shop.set(func(f *fakeShop) { delete(f.productErr, "p-2") })
		isStale(t, g.do(t, "GET", "/api/products/p-2", nil, alice...), false)
		if a := g.do(t, "GET", "/api/products", nil, alice...); a.status != http.StatusBadGateway {
			t.Errorf("list with only a product cached: %d %s, want 502", a.status, a.body)
		}
	})

	t.Run("policy rejections are answered from the cache too", func(t *testing.T) {
		g := newTestGateway(t, nil)
		alice := bearer(g.token(t, "alice"))
		isStale(t, g.do(t, "GET", "/api/products", nil, alice...), false)
		open := fmt.Errorf("catalog: %w", breaker.ErrOpen)
		failCatalog(g, open)
		g.shop.set(func(f *fakeShop) { f.productErr["p-9"] = open })
		isStale(t, g.do(t, "GET", "/api/products", nil, alice...), true)
		isStale(t, g.do(t, "GET", "/api/products/p-2", nil, alice...), true)
		if a := g.do(t, "GET", "/api/products/p-9", nil, alice...); a.status != http.StatusServiceUnavailable || a.errorCode(t) != CodeCircuitOpen {
			t.Errorf("uncached product behind an open breaker: %d %s, want 503 circuit_open", a.status, a.body)
		}
	})

	t.Run("GATEWAY_STALE_CATALOG=false", func(t *testing.T) {
		g := newTestGateway(t, func(c *Config) { c.StaleCatalog = false })
		alice := bearer(g.token(t, "alice"))
		isStale(t, g.do(t, "GET", "/api/products", nil, alice...), false)
		failCatalog(g, errRefused)
		if a := g.do(t, "GET", "/api/products", nil, alice...); a.status != http.StatusBadGateway {
			t.Errorf("%d %s, want 502 without the stale catalog", a.status, a.body)
		}
	})
}

func TestServesStaleFollowsTheFallbackRule(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"transport error", context.Background(), errRefused, true},
		{"5xx", context.Background(), platform.Errorf(503, "unavailable", "down"), true},
		{"429", context.Background(), platform.Errorf(429, "rate_limited", "slow down"), true},
		{"breaker open", context.Background(), breaker.ErrOpen, true},
		{"bulkhead full", context.Background(), &policy.Rejection{Policy: "bulkhead", Reason: "full"}, true},
		{"404", context.Background(), platform.NotFound("no such product"), false},
		{"the caller went away", cancelled, context.Canceled, false},
	} {
		if got := servesStale(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCatalogCacheIsBounded(t *testing.T) {
	c := newCatalogCache()
	for i := range staleProductsMax + 100 {
		c.putProduct(catalog.Product{ID: fmt.Sprint("p-", i)})
	}
	if n := len(c.products); n != staleProductsMax {
		t.Fatalf("%d products kept, want %d", n, staleProductsMax)
	}
	last := fmt.Sprint("p-", staleProductsMax+99)
	if p, ok := c.product(last); !ok || p.ID != last {
		t.Errorf("the newest product %s was not kept", last)
	}
	c.putList([]catalog.Product{{ID: "p-listed"}})
	if len(c.products) != 0 {
		t.Errorf("%d single products outlived a newer list", len(c.products))
	}
	if _, ok := c.product("p-listed"); !ok {
		t.Error("a listed product is not answered")
	}
}

// fakeCatalog is a catalog HTTP server whose answers can be switched to 500; it counts the calls that
// reached it.
type fakeCatalog struct {
	failing atomic.Bool
	calls   atomic.Int64
}

func (c *fakeCatalog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.calls.Add(1)
	if c.failing.Load() {
		platform.WriteError(w, platform.Errorf(http.StatusInternalServerError, "internal", "database is locked"))
		return
	}
	p := catalog.Product{ID: "p-1", Name: "Kettle", PriceCents: 2500, Stock: 10}
	switch r.URL.Path {
	case "/products":
		platform.WriteJSON(w, http.StatusOK, catalog.ListProductsResponse{Products: []catalog.Product{p}})
	case "/products/p-1":
		platform.WriteJSON(w, http.StatusOK, p)
	default:
		platform.WriteError(w, platform.NotFound("no product %s", r.URL.Path))
	}
}

// TestCircuitOpenThroughARealLink runs the gateway as Open builds it, in front of a catalog server, with
// the gateway-catalog link's breaker on a fake clock: failures open it, an open breaker is answered 503
// circuit_open without calling the catalog (or from the stale copy when there is one), and after the
// sleep window a successful probe closes it.
func TestCircuitOpenThroughARealLink(t *testing.T) {
	cat := &fakeCatalog{}
	catSrv := httptest.NewServer(cat)
	t.Cleanup(catSrv.Close)

	fake := clock.NewFake(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	link := resilience.DefaultLinkConfig()
	link.Breaker.MinRequests, link.Breaker.FailureRatio, link.Breaker.SleepWindow = 3, 0.5, 5*time.Second
	link.Retry.MaxAttempts = 1 // every call is one breaker sample
	link.Timeout = 0           // a deadline on the fake clock would mean nothing to the real transport
	cfg := testConfig(newFakeClock())
	cfg.CatalogURL = catSrv.URL
	cfg.Resilience.Links = map[string]resilience.LinkConfig{LinkCatalog: link}
	cfg.linkOptions = map[string][]resilience.Option{LinkCatalog: {resilience.WithClock(fake)}}
	cfg.IsCircuitOpen = nil // the default: the breaker's own rejection

	reg := prometheus.NewRegistry()
	svc, closer, err := Open(t.Context(), cfg, discardLogger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	g := &testGateway{srv: srv, reg: reg}
	alice := bearer(g.token(t, "alice"))

	isStale(t, g.do(t, "GET", "/api/products", nil, alice...), false)
	cat.failing.Store(true)
	// With the list's success, two failures trip it. p-2 was never seen: nothing stale answers for it.
	for i := range 2 {
		if a := g.do(t, "GET", "/api/products/p-2", nil, alice...); a.status != http.StatusBadGateway {
			t.Fatalf("failure %d: %d %s, want 502", i+1, a.status, a.body)
		}
	}
	reached := cat.calls.Load()
	a := g.do(t, "GET", "/api/products/p-2", nil, alice...)
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != CodeCircuitOpen {
		t.Fatalf("behind the open breaker: %d %s, want 503 circuit_open", a.status, a.body)
	}
	isStale(t, g.do(t, "GET", "/api/products", nil, alice...), true)
	if n := cat.calls.Load(); n != reached {
		t.Errorf("the open breaker let %d calls reach the catalog", n-reached)
	}

	cat.failing.Store(false)
	fake.Advance(5 * time.Second) // the sleep window is over: the next call is the probe
	isStale(t, g.do(t, "GET", "/api/products", nil, alice...), false)
	if a := g.do(t, "GET", "/api/products/p-1", nil, alice...); a.status != http.StatusOK {
		t.Fatalf("after recovery: %d %s", a.status, a.body)
	}
	if n := counterValue(t, reg, "resilience_breaker_transitions_total", "to", "open"); n != 1 {
		t.Errorf("breaker opened %v times, want 1", n)
	}
}
