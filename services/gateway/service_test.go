package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/platform"
)

var errBreakerOpen = errors.New("breaker: open")

func TestMapDownstreamError(t *testing.T) {
	isOpen := func(err error) bool { return errors.Is(err, errBreakerOpen) }
	cases := []struct {
		name    string
		err     error
		status  int
		code    string
		message string // when set, the exact message
	}{
		{"business 409 passes through", platform.Conflict("out_of_stock", "p-1 has 0 left"), 409, "out_of_stock", "p-1 has 0 left"},
		{"404 passes through", platform.NotFound("product p-9 not found"), 404, "not_found", "product p-9 not found"},
		{"400 passes through", platform.BadRequest("invalid_argument", "quantity"), 400, "invalid_argument", "quantity"},
		{"4xx without the shop's shape hides its raw body",
			&platform.Error{Status: 418, Code: "upstream_418", Message: "<html>stack trace at db.go:12</html>"},
			418, "upstream_418", "the orders service rejected the request"},
		{"500 is a bad gateway", platform.Errorf(500, "internal", "sql: database is locked"), 502, CodeUpstreamUnavailable, ""},
		{"503 is a bad gateway", platform.Errorf(503, "upstream_503", "no healthy upstream"), 502, CodeUpstreamUnavailable, ""},
		{"504 is a timeout", platform.Errorf(504, "deadline_exceeded", "late"), 504, CodeDeadlineExceeded, ""},
		{"transport error", &url.Error{Op: "Get", URL: "http://10.0.0.7:8082/orders/x", Err: errors.New("connection refused")},
			502, CodeUpstreamUnavailable, ""},
		{"undecodable answer", fmt.Errorf("decode /orders/x answer: %w", errors.New("invalid character '<'")), 502, CodeUpstreamUnavailable, ""},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), 504, CodeDeadlineExceeded, ""},
		{"cancelled caller", context.Canceled, 499, "cancelled", ""},
		{"circuit open", fmt.Errorf("orders: %w", errBreakerOpen), 503, CodeCircuitOpen, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := MapDownstreamError(LinkOrders, tc.err, isOpen)
			if got.Status != tc.status || got.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", got.Status, got.Code, tc.status, tc.code)
			}
			if tc.message != "" && got.Message != tc.message {
				t.Errorf("message %q, want %q", got.Message, tc.message)
			}
			if tc.status >= 500 {
				for _, leak := range []string{"10.0.0.7", "sql", "refused", "invalid character", "healthy"} {
					if strings.Contains(got.Message, leak) {
						t.Errorf("message %q leaks %q", got.Message, leak)
					}
				}
			}
		})
	}
	if got := MapDownstreamError(LinkOrders, errBreakerOpen, nil); got.Status != 502 {
		t.Errorf("without a hook an open breaker is %d, want 502", got.Status)
	}
}

func TestGatewayDownstreamFailures(t *testing.T) {
	g := newTestGateway(t, nil) // Config.IsCircuitOpen nil: the resilience breaker's rejection is 503

	alice := g.token(t, "alice")
	cases := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"orders 500", platform.Errorf(500, "internal", "boom"), 502, CodeUpstreamUnavailable},
		{"orders unreachable", &url.Error{Op: "Get", URL: "http://x", Err: errors.New("dial tcp: refused")}, 502, CodeUpstreamUnavailable},
		{"orders deadline", context.DeadlineExceeded, 504, CodeDeadlineExceeded},
		{"breaker open", fmt.Errorf("orders: %w", breaker.ErrOpen), 503, CodeCircuitOpen},
		{"bulkhead full is not an open circuit", &policy.Rejection{Policy: "bulkhead", Reason: "full"}, 502, CodeUpstreamUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g.shop.set(func(f *fakeShop) { f.orderErr = tc.err })
			defer g.shop.set(func(f *fakeShop) { f.orderErr = nil })
			for _, path := range []string{"/api/orders", "/api/orders/o-alice", "/api/orders/o-alice/details"} {
				a := g.do(t, "GET", path, nil, bearer(alice)...)
				if a.status != tc.status || a.errorCode(t) != tc.code {
					t.Errorf("GET %s: %d %s, want %d %s", path, a.status, a.body, tc.status, tc.code)
				}
			}
		})
	}

	t.Run("request deadline while the order hangs", func(t *testing.T) {
		g.shop.set(func(f *fakeShop) { f.blockCalls = true })
		defer g.shop.set(func(f *fakeShop) { f.blockCalls = false })
		a := g.do(t, "GET", "/api/orders/o-alice", nil, append(bearer(alice), platform.HeaderDeadline, "50")...)
		if a.status != http.StatusGatewayTimeout || a.errorCode(t) != CodeDeadlineExceeded {
			t.Fatalf("%d %s, want 504", a.status, a.body)
		}
	})
}

func TestOwnership(t *testing.T) {
	g := newTestGateway(t, nil)
	alice := g.token(t, "alice")

	missing := g.do(t, "GET", "/api/orders/o-none", nil, bearer(alice)...)
	foreign := g.do(t, "GET", "/api/orders/o-bob", nil, bearer(alice)...)
	if missing.status != 404 || foreign.status != 404 {
		t.Fatalf("missing %d, foreign %d, want 404 both", missing.status, foreign.status)
	}
	// The answers differ only by the id the caller sent, so existence cannot be told apart.
	if strings.ReplaceAll(string(foreign.body), "o-bob", "X") != strings.ReplaceAll(string(missing.body), "o-none", "X") {
		t.Errorf("foreign %s and missing %s answers differ", foreign.body, missing.body)
	}
	if strings.Contains(string(missing.body), "table") {
		t.Errorf("the downstream's 404 message leaked: %s", missing.body)
	}
	if a := g.do(t, "GET", "/api/orders/o-bob/details", nil, bearer(alice)...); a.status != 404 || a.errorCode(t) != "not_found" {
		t.Errorf("foreign details: %d %s", a.status, a.body)
	}
	for _, id := range []string{"pay-bob", "pay-none"} {
		if a := g.do(t, "GET", "/api/payments/"+id, nil, bearer(alice)...); a.status != 404 || a.errorCode(t) != "not_found" {
			t.Errorf("payment %s: %d %s, want 404", id, a.status, a.body)
		}
	}

	a := g.do(t, "GET", "/api/payments/pay-alice", nil, bearer(alice)...)
	if a.status != 200 {
		t.Fatalf("own payment: %d %s", a.status, a.body)
	}
	a = g.do(t, "GET", "/api/orders", nil, bearer(alice)...)
	var list orders.ListOrdersResponse
	a.decode(t, &list)
	if len(list.Orders) != 1 || list.Orders[0].ID != "o-alice" {
		t.Errorf("alice's list: %+v", list.Orders)
	}
	// Defence in depth: a downstream that returns another customer's order in a list is filtered.
	svc := NewService(g.shop, &leakyOrders{g.shop}, g.shop, testConfig(g.clock), prometheus.NewRegistry(), discardLogger())
	mine, err := svc.ListOrders(context.Background(), "alice")
	if err != nil || len(mine) != 1 || mine[0].ID != "o-alice" {
		t.Errorf("ListOrders over a leaky downstream: %+v %v", mine, err)
	}
}

// leakyOrders answers ListOrders with every order, whoever it belongs to.
type leakyOrders struct{ *fakeShop }

func (l *leakyOrders) ListOrders(ctx context.Context, _ string) ([]orders.Order, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []orders.Order
	for _, o := range l.orders {
		all = append(all, o)
	}
	return all, nil
}

func TestPlaceOrderForwardsAsSubject(t *testing.T) {
	g := newTestGateway(t, nil)
	alice, bob := g.token(t, "alice"), g.token(t, "bob")
	body := map[string]any{"items": []map[string]any{{"product_id": "p-1", "quantity": 2}}, "card_number": "4242424242424242"}

	var first, bobs, again orders.Order
	a := g.do(t, "POST", "/api/orders", body, append(bearer(alice), platform.HeaderIdempotencyKey, "k-1")...)
	if a.status != http.StatusCreated {
		t.Fatalf("place: %d %s", a.status, a.body)
	}
	a.decode(t, &first)
	g.clock.Advance(time.Second)
	a = g.do(t, "POST", "/api/orders", body, append(bearer(bob), platform.HeaderIdempotencyKey, "k-1")...)
	if a.status != http.StatusCreated {
		t.Fatalf("bob's order with alice's key: %d %s", a.status, a.body)
	}
	a.decode(t, &bobs)
	a = g.do(t, "POST", "/api/orders", body, append(bearer(alice), platform.HeaderIdempotencyKey, "k-1")...)
	if a.status != http.StatusOK {
		t.Fatalf("repeated key: %d, want 200: %s", a.status, a.body)
	}
	a.decode(t, &again)
	if again.ID != first.ID || bobs.ID == first.ID || bobs.CustomerID != "bob" {
		t.Errorf("first %s, repeat %s, bob's %s (%s)", first.ID, again.ID, bobs.ID, bobs.CustomerID)
	}
	if a := g.do(t, "POST", "/api/orders", body, append(bearer(alice), platform.HeaderIdempotencyKey, "k-new")...); a.status != http.StatusCreated {
		t.Fatalf("a new key after a repeat: %d, want 201", a.status)
	}

	g.shop.mu.Lock()
	placed := append([]orders.PlaceOrderRequest(nil), g.shop.placed...)
	g.shop.mu.Unlock()
	if len(placed) != 4 {
		t.Fatalf("placed %d orders, want 4", len(placed))
	}
	if placed[0].CustomerID != "alice" || placed[1].CustomerID != "bob" || placed[0].CardNumber != "4242424242424242" {
		t.Errorf("forwarded %+v", placed)
	}
	if placed[0].IdempotencyKey == placed[1].IdempotencyKey {
		t.Error("two customers' equal keys collide downstream")
	}
	if placed[0].IdempotencyKey != placed[2].IdempotencyKey {
		t.Error("the same customer's repeated key changed downstream, so the retry is not idempotent")
	}

	t.Run("an answer for another customer is never handed out", func(t *testing.T) {
		g.shop.set(func(f *fakeShop) { o := f.orders["o-bob"]; f.placeAnswer = &o })
		defer g.shop.set(func(f *fakeShop) { f.placeAnswer = nil })
		a := g.do(t, "POST", "/api/orders", body, append(bearer(alice), platform.HeaderIdempotencyKey, "k-2")...)
		if a.status != http.StatusBadGateway || strings.Contains(string(a.body), "o-bob") {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})
	t.Run("a business rejection passes through", func(t *testing.T) {
		g.shop.set(func(f *fakeShop) {
			f.orderErr = platform.Conflict("idempotency_key_reused", "the key was used with another body")
		})
		defer g.shop.set(func(f *fakeShop) { f.orderErr = nil })
		a := g.do(t, "POST", "/api/orders", body, append(bearer(alice), platform.HeaderIdempotencyKey, "k-3")...)
		if a.status != http.StatusConflict || a.errorCode(t) != "idempotency_key_reused" {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})
}

func TestOrderDetails(t *testing.T) {
	t.Run("complete", func(t *testing.T) {
		g := newTestGateway(t, nil)
		a := g.do(t, "GET", "/api/orders/o-alice/details", nil, bearer(g.token(t, "alice"))...)
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		var d OrderDetails
		a.decode(t, &d)
		if d.Degraded || len(d.Problems) != 0 || d.Payment == nil || d.Payment.ID != "pay-alice" {
			t.Fatalf("details %+v", d)
		}
		if len(d.Items) != 2 || d.Items[0].Product == nil || d.Items[0].Product.Name != "Kettle" ||
			d.Items[1].Product == nil || d.Items[1].Product.ID != "p-2" || d.Items[0].Quantity != 2 {
			t.Fatalf("items %+v", d.Items)
		}
		if strings.Contains(string(a.body), "problems") {
			t.Errorf("problems present in a complete answer: %s", a.body)
		}
	})

	t.Run("catalog and payments down", func(t *testing.T) {
		g := newTestGateway(t, nil)
		g.shop.set(func(f *fakeShop) {
			f.productErr["p-2"] = platform.Errorf(500, "internal", "database is locked")
			f.paymentErr = &url.Error{Op: "Get", URL: "http://payments", Err: errors.New("connection reset")}
		})
		a := g.do(t, "GET", "/api/orders/o-alice/details", nil, bearer(g.token(t, "alice"))...)
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		var d OrderDetails
		a.decode(t, &d)
		if !d.Degraded || d.Payment != nil || d.Order.ID != "o-alice" {
			t.Fatalf("details %+v", d)
		}
		if d.Items[0].Product == nil || d.Items[1].Product != nil || d.Items[1].ProductID != "p-2" || d.Items[1].Quantity != 1 {
			t.Fatalf("items %+v", d.Items)
		}
		want := map[string]bool{"product/p-2/" + CodeUpstreamUnavailable: true, "payment/pay-alice/" + CodeUpstreamUnavailable: true}
		for _, p := range d.Problems {
			key := p.Part + "/" + p.ID + "/" + p.Code
			if !want[key] {
				t.Errorf("unexpected problem %+v", p)
			}
			delete(want, key)
			if strings.Contains(p.Message, "locked") || strings.Contains(p.Message, "reset") {
				t.Errorf("problem leaks internals: %+v", p)
			}
		}
		if len(want) != 0 {
			t.Errorf("missing problems %v in %s", want, a.body)
		}
		for _, part := range []string{"product", "payment"} {
			if n := counterValue(t, g.reg, "gateway_details_degraded_parts_total", "part", part); n != 1 {
				t.Errorf("degraded %s counter %v, want 1", part, n)
			}
		}
	})

	t.Run("a slow part is cut off by its budget", func(t *testing.T) {
		clock := newFakeClock()
		shop := newFakeShop(clock)
		cfg := testConfig(clock)
		cfg.DetailsPartTimeout = 20 * time.Millisecond
		// The order answers; every product and payment call hangs until its context ends.
		svc := NewService(shop, &orderOnly{shop}, shop, cfg, prometheus.NewRegistry(), discardLogger())
		shop.set(func(f *fakeShop) { f.blockCalls = true })
		d, err := svc.OrderDetails(context.Background(), "alice", "o-alice")
		if err != nil {
			t.Fatal(err)
		}
		if !d.Degraded || len(d.Problems) != 3 || d.Problems[0].Code != CodeDeadlineExceeded {
			t.Fatalf("details %+v", d)
		}
	})

	t.Run("a rejected order without payment is not degraded", func(t *testing.T) {
		g := newTestGateway(t, nil)
		g.shop.set(func(f *fakeShop) {
			f.orders["o-rej"] = orders.Order{ID: "o-rej", CustomerID: "alice", Status: orders.StatusRejected,
				Items: []orders.Item{{ProductID: "p-1", Quantity: 1}}, Reason: "out_of_stock"}
		})
		a := g.do(t, "GET", "/api/orders/o-rej/details", nil, bearer(g.token(t, "alice"))...)
		var d OrderDetails
		a.decode(t, &d)
		if a.status != 200 || d.Degraded || d.Payment != nil || strings.Contains(string(a.body), `"payment":`) {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})
}

// orderOnly answers GetOrder even while the fake blocks every other call.
type orderOnly struct{ *fakeShop }

func (o *orderOnly) GetOrder(_ context.Context, id string) (orders.Order, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.orders[id], nil
}

// counterValue reads one labelled counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
