// Package e2e runs the shop's order flow end to end in one process: catalog, payments, orders and the
// gateway, each assembled by its own Open on an httptest server with a SQLite database in a temp dir, and
// driven only through the gateway's public API (plus the payments client to count payments).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// waitFor bounds every wait on the shop; generous, as a loaded 2-core machine is slow, never an assertion.
const waitFor = 30 * time.Second

// opener is the Open function every service has.
type opener func(ctx context.Context, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error)

// swappable is an http.Handler whose target can be replaced, so a service can be "restarted" behind the
// same address. With no target it drops the connection unanswered, as a dead process would.
type swappable struct{ h atomic.Pointer[http.Handler] }

func (s *swappable) set(h http.Handler) {
	if h == nil {
		s.h.Store(nil)
		return
	}
	s.h.Store(&h)
}

func (s *swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// shop is the four services running in-process.
type shop struct {
	t        *testing.T
	dir      string
	payments *httptest.Server
	catalog  *httptest.Server
	orders   *httptest.Server
	gateway  *httptest.Server

	catalogFront swappable
	catalogAPI   http.Handler // what catalogFront serves while the catalog is up
	ordersFront  swappable
	ordersCloser io.Closer
	ordersEnv    map[string]string
	paymentsAPI  *paymentsclient.Client
	http         *http.Client
}

// startShop starts catalog, payments, orders and the gateway. paymentsWrap (may be nil) wraps the
// payments handler, so a test can intercept calls the saga makes.
func startShop(t *testing.T, paymentsWrap func(http.Handler) http.Handler) *shop {
	t.Helper()
	s := &shop{t: t, dir: t.TempDir(), http: &http.Client{Timeout: waitFor}}

	catSvc := s.open("catalog", func(ctx context.Context, l *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
		return catalog.Open(ctx, configFrom(t, map[string]string{
			"CATALOG_DB": filepath.Join(s.dir, "catalog.db"), "CATALOG_SEED_STOCK": "50",
		}, catalog.ConfigFromEnv), l, reg)
	})
	s.catalogAPI = catSvc.Handler()
	s.catalogFront.set(s.catalogAPI)
	s.catalog = s.serve(&s.catalogFront)

	paySvc := s.open("payments", func(ctx context.Context, l *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
		return payments.Open(ctx, configFrom(t, map[string]string{
			"PAYMENTS_DB": filepath.Join(s.dir, "payments.db"),
		}, payments.ConfigFromEnv), l, reg)
	})
	var payHandler http.Handler = paySvc.Handler()
	if paymentsWrap != nil {
		payHandler = paymentsWrap(payHandler)
	}
	s.payments = s.serve(payHandler)

	s.orders = s.serve(&s.ordersFront)
	s.ordersEnv = map[string]string{
		"ORDERS_DB":    filepath.Join(s.dir, "orders.db"),
		"CATALOG_URL":  s.catalog.URL,
		"PAYMENTS_URL": s.payments.URL,
	}
	s.startOrders(nil)

	gwSvc := s.open("gateway", func(ctx context.Context, l *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
		return gateway.Open(ctx, configFrom(t, map[string]string{
			"CATALOG_URL": s.catalog.URL, "ORDERS_URL": s.orders.URL, "PAYMENTS_URL": s.payments.URL,
			"GATEWAY_DEV_TOKENS": "true", "GATEWAY_JWT_SECRET": "e2e-secret-e2e-secret-e2e-secret-0123",
		}, gateway.ConfigFromEnv), l, reg)
	})
	s.gateway = s.serve(gwSvc.Handler())

	// The test reads payments as orders does, with orders' service token.
	pc, err := paymentsclient.New(s.payments.URL, platform.ServiceAuth{Secret: []byte(e2eServiceSecret)}.Client("orders", "payments"))
	if err != nil {
		t.Fatal(err)
	}
	s.paymentsAPI = pc
	return s
}

// configFrom reads a service's configuration from vars the way its main does, failing on a bad value.
func configFrom[C any](t *testing.T, vars map[string]string, from func(*platform.Env) C) C {
	t.Helper()
	// Every hop carries a real service token, as in the stacks.
	withSecret := map[string]string{"SERVICE_TOKEN_SECRET": e2eServiceSecret}
	for k, v := range vars {
		withSecret[k] = v
	}
	vars = withSecret
	env := platform.EnvFrom(vars)
	cfg := from(env)
	if err := env.Err(); err != nil {
		t.Fatalf("configuration %v: %v", vars, err)
	}
	return cfg
}

// e2eServiceSecret signs the service tokens of the in-process shop (test only).
const e2eServiceSecret = "e2e-only-service-token-secret-0123456789abcdef"

// open runs a service's Open and closes it when the test ends (after its server, registered later).
func (s *shop) open(name string, open opener) *platform.Service {
	s.t.Helper()
	svc, closer, err := open(context.Background(), platform.NewLogger(s.t.Output(), name, slog.LevelWarn), platform.NewRegistry())
	if err != nil {
		s.t.Fatalf("open %s: %v", name, err)
	}
	s.t.Cleanup(func() {
		if err := closer.Close(); err != nil {
			s.t.Errorf("close %s: %v", name, err)
		}
	})
	return svc
}

func (s *shop) serve(h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	s.t.Cleanup(srv.Close)
	return srv
}

// startOrders opens orders on its database behind the orders address; extra overrides its env.
func (s *shop) startOrders(extra map[string]string) {
	s.t.Helper()
	vars := map[string]string{}
	for k, v := range s.ordersEnv {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg := configFrom(s.t, vars, orders.ConfigFromEnv)
	svc, closer, err := orders.Open(context.Background(), cfg, platform.NewLogger(s.t.Output(), "orders", slog.LevelWarn), platform.NewRegistry())
	if err != nil {
		s.t.Fatalf("open orders: %v", err)
	}
	s.ordersCloser = closer
	s.t.Cleanup(func() { s.stopOrders() })
	s.ordersFront.set(svc.Handler())
}

// stopOrders stops orders the way the process would on shutdown: running sagas are cut short where
// they are and left in the database for the next start. The address then drops every connection.
func (s *shop) stopOrders() {
	s.ordersFront.set(nil)
	if s.ordersCloser != nil {
		if err := s.ordersCloser.Close(); err != nil {
			s.t.Errorf("close orders: %v", err)
		}
		s.ordersCloser = nil
	}
}

// answer is a gateway response.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	a.decode(t, &body)
	return body.Error.Code
}

// call sends one request to the gateway.
func (s *shop) call(t *testing.T, method, path, token, idempotencyKey string, body any) answer {
	t.Helper()
	a, err := s.send(method, path, token, idempotencyKey, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return a
}

// send sends one request to the gateway; unlike call it may run outside the test's goroutine.
func (s *shop) send(method, path, token, idempotencyKey string, body any) (answer, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.gateway.URL+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if idempotencyKey != "" {
		req.Header.Set(platform.HeaderIdempotencyKey, idempotencyKey)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// must sends one request and requires status want.
func (s *shop) must(t *testing.T, want int, method, path, token, key string, body, out any) {
	t.Helper()
	a := s.call(t, method, path, token, key, body)
	if a.status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, a.status, want, a.body)
	}
	if out != nil {
		a.decode(t, out)
	}
}

func (s *shop) token(t *testing.T, subject string) string {
	t.Helper()
	var tok gateway.Token
	s.must(t, http.StatusOK, "POST", "/api/token", "", "", map[string]any{"subject": subject}, &tok)
	return tok.Token
}

func (s *shop) stock(t *testing.T, token, productID string) int64 {
	t.Helper()
	var p catalog.Product
	s.must(t, http.StatusOK, "GET", "/api/products/"+productID, token, "", nil, &p)
	return p.Stock
}

func orderBody(productID string, quantity int64, card string) map[string]any {
	b := map[string]any{"items": []map[string]any{{"product_id": productID, "quantity": quantity}}}
	if card != "" {
		b["card_number"] = card
	}
	return b
}

// inStock picks a product with stock from the catalog.
func (s *shop) inStock(t *testing.T, token string) catalog.Product {
	t.Helper()
	var list catalog.ListProductsResponse
	s.must(t, http.StatusOK, "GET", "/api/products", token, "", nil, &list)
	for _, p := range list.Products {
		if p.Stock >= 10 {
			return p
		}
	}
	t.Fatalf("no product with stock in %+v", list.Products)
	return catalog.Product{}
}

func TestOrderFlow(t *testing.T) {
	s := startShop(t, nil)
	alice := s.token(t, "e2e-alice")
	product := s.inStock(t, alice)

	t.Run("happy path", func(t *testing.T) {
		before := s.stock(t, alice, product.ID)
		var o orders.Order
		s.must(t, http.StatusCreated, "POST", "/api/orders", alice, platform.NewID(), orderBody(product.ID, 2, ""), &o)
		if o.Status != orders.StatusConfirmed || o.PaymentID == "" || o.CustomerID != "e2e-alice" ||
			o.TotalCents != 2*product.PriceCents {
			t.Fatalf("order %+v, want confirmed for %d cents with a payment", o, 2*product.PriceCents)
		}
		if after := s.stock(t, alice, product.ID); after != before-2 {
			t.Errorf("stock %d → %d, want -2", before, after)
		}
		var p payments.Payment
		s.must(t, http.StatusOK, "GET", "/api/payments/"+o.PaymentID, alice, "", nil, &p)
		if p.Status != payments.StatusCaptured || p.AmountCents != o.TotalCents || p.OrderID != o.ID {
			t.Errorf("payment %+v", p)
		}
		var d gateway.OrderDetails
		s.must(t, http.StatusOK, "GET", "/api/orders/"+o.ID+"/details", alice, "", nil, &d)
		if d.Degraded || len(d.Problems) != 0 || d.Order.ID != o.ID || d.Payment == nil || d.Payment.ID != o.PaymentID ||
			len(d.Items) != 1 || d.Items[0].Product == nil || d.Items[0].Product.ID != product.ID || d.Items[0].Quantity != 2 {
			t.Errorf("details %+v", d)
		}
		var list orders.ListOrdersResponse
		s.must(t, http.StatusOK, "GET", "/api/orders", alice, "", nil, &list)
		if len(list.Orders) == 0 || list.Orders[0].ID != o.ID {
			t.Errorf("alice's orders %+v, want %s first", list.Orders, o.ID)
		}

		bob := s.token(t, "e2e-bob")
		for _, path := range []string{"/api/orders/" + o.ID, "/api/orders/" + o.ID + "/details", "/api/payments/" + o.PaymentID} {
			if a := s.call(t, "GET", path, bob, "", nil); a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
				t.Errorf("bob GET %s: %d %s, want 404", path, a.status, a.body)
			}
		}
	})

	t.Run("payment declined", func(t *testing.T) {
		before := s.stock(t, alice, product.ID)
		var o orders.Order
		s.must(t, http.StatusCreated, "POST", "/api/orders", alice, platform.NewID(),
			orderBody(product.ID, 3, payments.DecliningCard), &o)
		if o.Status != orders.StatusRejected || o.Reason != payments.DeclineCardDeclined {
			t.Fatalf("order %+v, want rejected with %s", o, payments.DeclineCardDeclined)
		}
		if after := s.stock(t, alice, product.ID); after != before {
			t.Errorf("stock %d → %d: the reservation was not released", before, after)
		}
		ps, err := s.paymentsAPI.ListByOrder(context.Background(), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Status == payments.StatusCaptured {
				t.Errorf("money captured for a declined order: %+v", p)
			}
		}
	})

	t.Run("out of stock", func(t *testing.T) {
		before := s.stock(t, alice, "p-sold-out")
		var o orders.Order
		s.must(t, http.StatusCreated, "POST", "/api/orders", alice, platform.NewID(), orderBody("p-sold-out", 1, ""), &o)
		if o.Status != orders.StatusRejected || o.Reason != "out_of_stock" || o.PaymentID != "" {
			t.Fatalf("order %+v, want rejected out_of_stock without a payment", o)
		}
		if after := s.stock(t, alice, "p-sold-out"); after != before {
			t.Errorf("sold-out stock %d → %d", before, after)
		}
		var d gateway.OrderDetails
		s.must(t, http.StatusOK, "GET", "/api/orders/"+o.ID+"/details", alice, "", nil, &d)
		if d.Degraded || d.Payment != nil {
			t.Errorf("details of a rejected order %+v", d)
		}
	})

	t.Run("same Idempotency-Key twice makes one order", func(t *testing.T) {
		carol := s.token(t, "e2e-carol")
		before := s.stock(t, carol, product.ID)
		key := platform.NewID()
		var first, again orders.Order
		s.must(t, http.StatusCreated, "POST", "/api/orders", carol, key, orderBody(product.ID, 1, ""), &first)
		s.must(t, http.StatusOK, "POST", "/api/orders", carol, key, orderBody(product.ID, 1, ""), &again)
		if again.ID != first.ID || again.PaymentID != first.PaymentID || first.Status != orders.StatusConfirmed {
			t.Fatalf("first %+v, again %+v", first, again)
		}
		// A new key is a new order again (201), and the repeat left no trace on later orders.
		var next orders.Order
		s.must(t, http.StatusCreated, "POST", "/api/orders", carol, platform.NewID(), orderBody(product.ID, 1, ""), &next)
		if next.ID == first.ID {
			t.Fatalf("a new key answered the old order %s", next.ID)
		}
		var list orders.ListOrdersResponse
		s.must(t, http.StatusOK, "GET", "/api/orders", carol, "", nil, &list)
		if len(list.Orders) != 2 {
			t.Errorf("carol has %d orders, want 2 (one per key)", len(list.Orders))
		}
		if after := s.stock(t, carol, product.ID); after != before-2 {
			t.Errorf("stock %d → %d, want -2 (one per key)", before, after)
		}
		ps, err := s.paymentsAPI.ListByOrder(context.Background(), first.ID)
		if err != nil || len(ps) != 1 {
			t.Errorf("payments of the order: %+v %v, want exactly one", ps, err)
		}
		// The same key with another body is refused, not a second order.
		a := s.call(t, "POST", "/api/orders", carol, key, orderBody(product.ID, 5, ""))
		if a.status != http.StatusConflict || a.errorCode(t) != "idempotency_key_reused" {
			t.Errorf("reused key with another body: %d %s", a.status, a.body)
		}
	})
}

// chargeGate intercepts POST /payments. While holding, a charge is announced on arrived and kept until
// its caller gives up; it is then forwarded to payments anyway, so the money is taken but the answer is
// lost, and landed is closed: the worst moment for the caller to die.
type chargeGate struct {
	next    http.Handler
	holding atomic.Bool
	arrived chan string // the held charge's order id
	landed  chan struct{}
	once    sync.Once
}

func (g *chargeGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/payments" || !g.holding.Load() {
		g.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		platform.WriteError(w, platform.BadRequest("malformed_json", "unreadable body"))
		return
	}
	var charge payments.ChargeRequest
	_ = json.Unmarshal(body, &charge)
	g.arrived <- charge.OrderID
	<-r.Context().Done()
	late := r.Clone(context.WithoutCancel(r.Context()))
	late.Body = io.NopCloser(bytes.NewReader(body))
	g.next.ServeHTTP(httptest.NewRecorder(), late)
	g.once.Do(func() { close(g.landed) })
}

func TestCrashBetweenSagaStepsIsResumed(t *testing.T) {
	gate := &chargeGate{arrived: make(chan string, 1), landed: make(chan struct{})}
	s := startShop(t, func(h http.Handler) http.Handler { gate.next = h; return gate })
	dave := s.token(t, "e2e-dave")
	product := s.inStock(t, dave)
	before := s.stock(t, dave, product.ID)

	gate.holding.Store(true)
	type result struct {
		answer
		err error
	}
	placed := make(chan result, 1)
	go func() {
		a, err := s.send("POST", "/api/orders", dave, platform.NewID(), orderBody(product.ID, 4, ""))
		placed <- result{a, err}
	}()

	var orderID string
	select {
	case orderID = <-gate.arrived: // the order is stored as reserved; its charge is in flight
	case <-time.After(waitFor):
		t.Fatal("the saga never charged")
	}
	// Orders dies mid-saga: its charge call is cut, the order stays reserved in its database.
	s.stopOrders()
	select {
	case <-gate.landed: // payments took the money; orders never heard
	case <-time.After(waitFor):
		t.Fatal("the held charge was never forwarded")
	}
	gate.holding.Store(false)
	var a result
	select {
	case a = <-placed:
	case <-time.After(waitFor):
		t.Fatal("the gateway never answered the order placed during the crash")
	}
	if a.err != nil {
		t.Fatalf("order placed during the crash: %v", a.err)
	}
	if a.status != http.StatusBadGateway || a.errorCode(t) != gateway.CodeUpstreamUnavailable {
		t.Errorf("order placed during the crash: %d %s, want 502 upstream_unavailable", a.status, a.body)
	}
	if n := s.stock(t, dave, product.ID); n != before-4 {
		t.Errorf("stock while the order is stuck %d, want %d held", n, before-4)
	}

	// Restart orders on the same database; its resumer drives the order on at once.
	s.startOrders(map[string]string{"ORDERS_RESUME_INTERVAL": "50ms", "ORDERS_RESUME_GRACE": "0s"})
	var o orders.Order
	deadline := time.Now().Add(waitFor)
	for {
		s.must(t, http.StatusOK, "GET", "/api/orders/"+orderID, dave, "", nil, &o)
		if o.Status.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order still %s after restart", o.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o.Status != orders.StatusConfirmed || o.PaymentID == "" {
		t.Fatalf("resumed order %+v, want confirmed", o)
	}
	ps, err := s.paymentsAPI.ListByOrder(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].ID != o.PaymentID || ps[0].Status != payments.StatusCaptured {
		t.Errorf("payments %+v, want the one captured before the crash", ps)
	}
	if n := s.stock(t, dave, product.ID); n != before-4 {
		t.Errorf("stock %d → %d, want -4 exactly once", before, n)
	}
	var d gateway.OrderDetails
	s.must(t, http.StatusOK, "GET", "/api/orders/"+o.ID+"/details", dave, "", nil, &d)
	if d.Degraded || d.Payment == nil || d.Payment.Status != payments.StatusCaptured {
		t.Errorf("details %+v", d)
	}
}

// TestCatalogDownServesTheStaleCatalog: while the catalog is gone the gateway answers product reads
// with what it last saw, marked stale, and what it never saw as the failure it is; once the catalog is
// back the answers are fresh again. /debug/resilience shows the gateway's links and their failures.
func TestCatalogDownServesTheStaleCatalog(t *testing.T) {
	s := startShop(t, nil)
	erin := s.token(t, "e2e-erin")
	stale := func(t *testing.T, a answer, want bool) {
		t.Helper()
		var body struct {
			Stale bool `json:"stale"`
		}
		a.decode(t, &body)
		if a.status != http.StatusOK || body.Stale != want || (a.header.Get("Warning") == gateway.StaleWarning) != want {
			t.Fatalf("%d Warning %q %s, want 200 with stale %v", a.status, a.header.Get("Warning"), a.body, want)
		}
	}

	a := s.call(t, "GET", "/api/products", erin, "", nil)
	stale(t, a, false)
	var fresh gateway.ProductList
	a.decode(t, &fresh)
	if len(fresh.Products) < 2 {
		t.Fatalf("catalog %+v, want the seeded products", fresh.Products)
	}
	first, second := fresh.Products[0], fresh.Products[1]
	stale(t, s.call(t, "GET", "/api/products/"+first.ID, erin, "", nil), false)

	s.catalogFront.set(nil) // the catalog drops every connection
	a = s.call(t, "GET", "/api/products", erin, "", nil)
	stale(t, a, true)
	var cached gateway.ProductList
	a.decode(t, &cached)
	if len(cached.Products) != len(fresh.Products) || cached.Products[0] != first {
		t.Errorf("stale list %+v, want the last one %+v", cached.Products, fresh.Products)
	}
	for _, p := range []catalog.Product{first, second} { // second was only seen in the list
		a := s.call(t, "GET", "/api/products/"+p.ID, erin, "", nil)
		stale(t, a, true)
		var got gateway.Product
		if a.decode(t, &got); got.Product != p {
			t.Errorf("stale product %+v, want %+v", got.Product, p)
		}
	}
	if a := s.call(t, "GET", "/api/products/p-never-seen", erin, "", nil); a.status != http.StatusBadGateway ||
		a.errorCode(t) != gateway.CodeUpstreamUnavailable {
		t.Errorf("a product never seen: %d %s, want 502", a.status, a.body)
	}

	resp, err := s.http.Get(s.gateway.URL + "/debug/resilience")
	if err != nil {
		t.Fatal(err)
	}
	var snap resilience.DebugSnapshot
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]resilience.LinkSnapshot{}
	for _, l := range snap.Links {
		links[l.Name] = l
	}
	cat, ok := links[gateway.LinkCatalog]
	if len(links) != 3 || !ok || cat.Calls["failure"] == 0 || !slices.Contains(cat.HedgedOps, "list_products") {
		t.Errorf("gateway links %+v, want three with gateway-catalog's failures counted", snap.Links)
	}

	s.catalogFront.set(s.catalogAPI)
	stale(t, s.call(t, "GET", "/api/products", erin, "", nil), false)
}
