package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

const testSecret = "test-secret-test-secret-test-secret-0123"

// fakeClock is the gateway's settable clock (Config.Now: token times).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeShop implements Catalog, Orders and Payments in memory; the *Err fields make a call fail, and a
// nil-returning block func makes it wait for its context instead.
type fakeShop struct {
	mu       sync.Mutex
	products map[string]catalog.Product
	orders   map[string]orders.Order
	payments map[string]payments.Payment
	placed   []orders.PlaceOrderRequest
	keys     map[string]string // order id → idempotency key it was placed with
	clock    *fakeClock

	productErr  map[string]error // by product id
	listErr     error
	orderErr    error
	paymentErr  error
	blockCalls  bool // every call waits until its context ends
	placeAnswer *orders.Order
}

func newFakeShop(clock *fakeClock) *fakeShop {
	now := clock.Now().Add(-time.Hour)
	return &fakeShop{
		clock: clock,
		keys:  map[string]string{},
		products: map[string]catalog.Product{
			"p-1": {ID: "p-1", Name: "Kettle", PriceCents: 2500, Stock: 10},
			"p-2": {ID: "p-2", Name: "Teapot", PriceCents: 1500, Stock: 3},
		},
		orders: map[string]orders.Order{
			"o-alice": {ID: "o-alice", CustomerID: "alice", Status: orders.StatusConfirmed, TotalCents: 6500,
				Items:     []orders.Item{{ProductID: "p-1", Quantity: 2}, {ProductID: "p-2", Quantity: 1}},
				PaymentID: "pay-alice", CreatedAt: now, UpdatedAt: now},
			"o-bob": {ID: "o-bob", CustomerID: "bob", Status: orders.StatusConfirmed, TotalCents: 2500,
				Items: []orders.Item{{ProductID: "p-1", Quantity: 1}}, PaymentID: "pay-bob", CreatedAt: now, UpdatedAt: now},
		},
		payments: map[string]payments.Payment{
			"pay-alice": {ID: "pay-alice", OrderID: "o-alice", AmountCents: 6500, Status: payments.StatusCaptured, CreatedAt: now},
			"pay-bob":   {ID: "pay-bob", OrderID: "o-bob", AmountCents: 2500, Status: payments.StatusCaptured, CreatedAt: now},
		},
		productErr: map[string]error{},
	}
}

func (f *fakeShop) wait(ctx context.Context) error {
	f.mu.Lock()
	block := f.blockCalls
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeShop) ListProducts(ctx context.Context) ([]catalog.Product, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var ps []catalog.Product
	for _, p := range f.products {
		ps = append(ps, p)
	}
	return ps, nil
}

func (f *fakeShop) GetProduct(ctx context.Context, id string) (catalog.Product, error) {
	if err := f.wait(ctx); err != nil {
		return catalog.Product{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.productErr[id]; err != nil {
		return catalog.Product{}, err
	}
	p, ok := f.products[id]
	if !ok {
		return catalog.Product{}, platform.NotFound("product %s not found", id)
	}
	return p, nil
}

func (f *fakeShop) PlaceOrder(ctx context.Context, req orders.PlaceOrderRequest) (orders.Order, bool, error) {
	if err := f.wait(ctx); err != nil {
		return orders.Order{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.placed = append(f.placed, req)
	if f.orderErr != nil {
		return orders.Order{}, false, f.orderErr
	}
	if f.placeAnswer != nil {
		return *f.placeAnswer, false, nil
	}
	for _, o := range f.orders {
		if o.CustomerID == req.CustomerID && f.keys[o.ID] == req.IdempotencyKey {
			return o, false, nil
		}
	}
	now := f.clock.Now()
	o := orders.Order{ID: fmt.Sprint("o-new-", len(f.orders)), CustomerID: req.CustomerID, Items: req.Items,
		Status: orders.StatusConfirmed, CreatedAt: now, UpdatedAt: now}
	f.orders[o.ID], f.keys[o.ID] = o, req.IdempotencyKey
	return o, true, nil
}

func (f *fakeShop) GetOrder(ctx context.Context, id string) (orders.Order, error) {
	if err := f.wait(ctx); err != nil {
		return orders.Order{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.orderErr != nil {
		return orders.Order{}, f.orderErr
	}
	o, ok := f.orders[id]
	if !ok {
		return orders.Order{}, platform.NotFound("order %s does not exist in table orders", id)
	}
	return o, nil
}

func (f *fakeShop) ListOrders(ctx context.Context, customerID string) ([]orders.Order, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.orderErr != nil {
		return nil, f.orderErr
	}
	var os []orders.Order
	for _, o := range f.orders {
		if o.CustomerID == customerID {
			os = append(os, o)
		}
	}
	return os, nil
}

func (f *fakeShop) GetPayment(ctx context.Context, id string) (payments.Payment, error) {
	if err := f.wait(ctx); err != nil {
		return payments.Payment{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paymentErr != nil {
		return payments.Payment{}, f.paymentErr
	}
	p, ok := f.payments[id]
	if !ok {
		return payments.Payment{}, platform.NotFound("payment %s not found", id)
	}
	return p, nil
}

func (f *fakeShop) set(fn func(*fakeShop)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func testConfig(clock *fakeClock) Config {
	return Config{
		CatalogURL: "http://127.0.0.1:1", OrdersURL: "http://127.0.0.1:1", PaymentsURL: "http://127.0.0.1:1",
		JWTSecret: testSecret, JWTIssuer: "resilience-lab", DevTokens: true, TokenTTL: time.Hour,
		RateLimitRPS: 1000, RateLimitBurst: 1000, RateLimitMaxClients: 1000,
		DetailsPartTimeout: 5 * time.Second, Now: clock.Now, StaleCatalog: true,
		// The links' policies are built (and shown on /debug/resilience) though the fakes bypass them.
		Resilience: resilience.ServiceConfig{Links: map[string]resilience.LinkConfig{
			LinkCatalog: resilience.DefaultLinkConfig(), LinkOrders: resilience.DefaultLinkConfig(),
			LinkPayments: resilience.DefaultLinkConfig(),
		}},
	}
}

// testGateway is an assembled gateway over a fakeShop, served by httptest.
type testGateway struct {
	shop  *fakeShop
	clock *fakeClock
	svc   *platform.Service
	srv   *httptest.Server
	reg   *prometheus.Registry
}

func newTestGateway(t *testing.T, tweak func(*Config)) *testGateway {
	t.Helper()
	clock := newFakeClock()
	cfg := testConfig(clock)
	if tweak != nil {
		tweak(&cfg)
	}
	shop := newFakeShop(clock)
	reg := prometheus.NewRegistry()
	policies, err := buildPolicies(cfg, reg)
	if err != nil {
		t.Fatalf("policies: %v", err)
	}
	t.Cleanup(func() { policies.Close() })
	svc, err := assemble(cfg, policies, shop, shop, shop, slog.New(slog.DiscardHandler), reg, nil)
	if err != nil {
		t.Fatalf("assemble: %v", err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &testGateway{shop: shop, clock: clock, svc: svc, srv: srv, reg: reg}
}

// mint issues a token for subject without the gateway, so no request spends a rate limit bucket.
func (g *testGateway) mint(t *testing.T, subject string) string {
	t.Helper()
	auth, err := NewAuthenticator([]byte(testSecret), "resilience-lab", g.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue(subject, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the code of a JSON error answer, failing the test if the body has another shape.
func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var body struct {
		Error *platform.Error `json:"error"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil || body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("answer %d is not the JSON error shape: %s", a.status, a.body)
	}
	return body.Error.Code
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// do sends one request; headers are name/value pairs.
func (g *testGateway) do(t *testing.T, method, path string, body any, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, g.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := g.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// token gets a dev token for subject from the gateway.
func (g *testGateway) token(t *testing.T, subject string) string {
	t.Helper()
	a := g.do(t, "POST", "/api/token", map[string]any{"subject": subject})
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	var tok Token
	a.decode(t, &tok)
	return tok.Token
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }
