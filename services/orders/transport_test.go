package orders_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/orders/client"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// serveWithFakes runs the orders service over in-memory dependencies behind an httptest server.
func serveWithFakes(t *testing.T) (*httptest.Server, *orders.FakeCatalog, *orders.FakePayments) {
	t.Helper()
	cat := orders.NewFakeCatalog(
		catalog.Product{ID: "p-mug", PriceCents: 1450, Stock: 100},
		catalog.Product{ID: "p-kettle", PriceCents: 5900, Stock: 2},
	)
	pay := orders.NewFakePayments()
	cfg := orders.Config{Addr: ":0", DB: filepath.Join(t.TempDir(), "orders.db"), ResumeInterval: time.Hour,
		ResumeGrace: 2 * time.Second, SagaTimeout: 30 * time.Second, Now: orders.NewClock().Now}
	svc, closer, err := orders.Open(context.Background(), orders.WithDependencies(cfg, cat, pay),
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		closer.Close()
	})
	return srv, cat, pay
}

func newClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHTTPThroughClient(t *testing.T) {
	srv, cat, pay := serveWithFakes(t)
	c := newClient(t, srv.URL)
	ctx := context.Background()

	req := orders.PlaceOrderRequest{CustomerID: "c1", IdempotencyKey: "k1", CardNumber: "4242424242424242",
		Items: []orders.Item{{ProductID: "p-mug", Quantity: 2}}}
	o, created, err := c.PlaceOrder(ctx, req)
	if err != nil || !created || o.Status != orders.StatusConfirmed || o.TotalCents != 2900 || o.CustomerID != "c1" {
		t.Fatalf("PlaceOrder = %+v, %v; want confirmed 2900", o, err)
	}
	orders.CheckConsistent(t, o, cat, pay)
	again, created, err := c.PlaceOrder(ctx, req)
	if err != nil || created || again.ID != o.ID {
		t.Fatalf("repeat = %+v, created %v, %v; want the existing order %s", again, created, err, o.ID)
	}
	req.Items[0].Quantity = 3
	_, _, err = c.PlaceOrder(ctx, req)
	if e, ok := platform.AsError(err); !ok || e.Status != http.StatusConflict || e.Code != "idempotency_key_reused" {
		t.Errorf("same key, other body: %v, want 409 idempotency_key_reused", err)
	}

	rejected, _, err := c.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: "c1", IdempotencyKey: "k2",
		Items: []orders.Item{{ProductID: "p-kettle", Quantity: 3}}})
	if err != nil || rejected.Status != orders.StatusRejected || rejected.Reason != "out_of_stock" {
		t.Errorf("out of stock = %+v, %v; want 201 rejected out_of_stock", rejected, err)
	}
	declined, _, err := c.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: "c2", IdempotencyKey: "k1",
		CardNumber: payments.DecliningCard, Items: []orders.Item{{ProductID: "p-kettle", Quantity: 1}}})
	if err != nil || declined.Status != orders.StatusRejected || declined.Reason != "card_declined" {
		t.Errorf("declined = %+v, %v; want rejected card_declined", declined, err)
	}
	orders.CheckConsistent(t, declined, cat, pay)

	got, err := c.GetOrder(ctx, o.ID)
	if err != nil || got.ID != o.ID || got.Status != orders.StatusConfirmed || got.PaymentID != o.PaymentID {
		t.Errorf("GetOrder = %+v, %v", got, err)
	}
	_, err = c.GetOrder(ctx, "nope")
	if e, ok := platform.AsError(err); !ok || e.Status != http.StatusNotFound || e.Code != "not_found" {
		t.Errorf("GetOrder(unknown) = %v, want 404 not_found", err)
	}
	list, err := c.ListOrders(ctx, "c1")
	if err != nil || len(list) != 2 || list[0].ID != rejected.ID || list[1].ID != o.ID {
		t.Errorf("ListOrders(c1) = %+v, %v; want the rejected then the confirmed order", list, err)
	}
	if list, err := c.ListOrders(ctx, "c3"); err != nil || list == nil || len(list) != 0 {
		t.Errorf("ListOrders(c3) = %v, %v; want an empty list", list, err)
	}
	_, err = c.ListOrders(ctx, "")
	if e, ok := platform.AsError(err); !ok || e.Status != http.StatusBadRequest {
		t.Errorf("ListOrders(\"\") = %v, want 400", err)
	}
}

// TestHTTPStatuses checks the codes a client cannot see: 201 for a new order, 200 for its repeat.
func TestHTTPStatuses(t *testing.T) {
	srv, _, _ := serveWithFakes(t)
	body := `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":1}]}`
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		r, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(platform.HeaderIdempotencyKey, "key-1")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var o orders.Order
		err = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode != want || err != nil || o.Status != orders.StatusConfirmed {
			t.Errorf("request %d: %d %+v (%v), want %d confirmed", i, resp.StatusCode, o, err, want)
		}
	}
}

func TestHTTPBadInput(t *testing.T) {
	srv, cat, _ := serveWithFakes(t)
	const valid = `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":1}]}`
	item := `{"product_id":"p-mug","quantity":1}`
	manyItems := `{"customer_id":"c1","items":[` + strings.TrimSuffix(strings.Repeat(`{"product_id":"p","quantity":1},`, 51), ",") + `]}`
	cases := []struct {
		name        string
		method      string
		path        string
		body        string
		key         string
		contentType string
		wantStatus  int
		wantCode    string
	}{
		{name: "malformed JSON", body: `{"customer_id":`, wantStatus: 400, wantCode: "malformed_json"},
		{name: "not JSON", body: `customer=c1`, wantStatus: 400, wantCode: "malformed_json"},
		{name: "empty body", body: ``, wantStatus: 400, wantCode: "empty_body"},
		{name: "two values", body: valid + valid, wantStatus: 400, wantCode: "malformed_json"},
		{name: "unknown field", body: `{"customer_id":"c1","items":[` + item + `],"coupon":"x"}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "key in body", body: `{"customer_id":"c1","items":[` + item + `],"IdempotencyKey":"x"}`, wantStatus: 400, wantCode: "unknown_field"},
		{name: "quantity as string", body: `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":"1"}]}`, wantStatus: 400, wantCode: "wrong_type"},
		{name: "fractional quantity", body: `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":1.5}]}`, wantStatus: 400, wantCode: "wrong_type"},
		{name: "items not a list", body: `{"customer_id":"c1","items":{}}`, wantStatus: 400, wantCode: "wrong_type"},
		{name: "customer as number", body: `{"customer_id":7,"items":[` + item + `]}`, wantStatus: 400, wantCode: "wrong_type"},
		{name: "zero quantity", body: `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":0}]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "negative quantity", body: `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":-3}]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "huge quantity", body: `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":10001}]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "quantity overflows int64", body: `{"customer_id":"c1","items":[{"product_id":"p-mug","quantity":99999999999999999999}]}`, wantStatus: 400, wantCode: "wrong_type"},
		{name: "no items", body: `{"customer_id":"c1","items":[]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "items null", body: `{"customer_id":"c1","items":null}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "51 items", body: manyItems, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "duplicate product", body: `{"customer_id":"c1","items":[` + item + `,` + item + `]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "no customer", body: `{"items":[` + item + `]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "customer too long", body: `{"customer_id":"` + strings.Repeat("c", 129) + `","items":[` + item + `]}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "bad card", body: `{"customer_id":"c1","items":[` + item + `],"card_number":"4242-4242-4242"}`, wantStatus: 400, wantCode: "invalid_argument"},
		{name: "body over 1 MiB", body: `{"customer_id":"` + strings.Repeat("c", platform.MaxBodyBytes) + `"}`, wantStatus: 413, wantCode: "body_too_large"},
		{name: "missing Idempotency-Key", body: valid, key: "-", wantStatus: 400, wantCode: "missing_idempotency_key"},
		{name: "Idempotency-Key too long", body: valid, key: strings.Repeat("k", 256), wantStatus: 400, wantCode: "invalid_argument"},
		{name: "text/plain body", body: valid, contentType: "text/plain", wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "unknown order", method: "GET", path: "/orders/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "order id too long", method: "GET", path: "/orders/" + strings.Repeat("o", 129), wantStatus: 400, wantCode: "invalid_argument"},
		{name: "list without customer", method: "GET", path: "/orders", wantStatus: 400, wantCode: "invalid_argument"},
		{name: "list with empty customer", method: "GET", path: "/orders?customer_id=", wantStatus: 400, wantCode: "invalid_argument"},
		{name: "unknown route", method: "GET", path: "/nope", wantStatus: 404, wantCode: "not_found"},
		{name: "wrong method", method: "DELETE", path: "/orders/x", wantStatus: 405, wantCode: "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method, path := c.method, c.path
			if method == "" {
				method, path = http.MethodPost, "/orders"
			}
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader(c.body)
			}
			r, err := http.NewRequest(method, srv.URL+path, body)
			if err != nil {
				t.Fatal(err)
			}
			ct := c.contentType
			if ct == "" {
				ct = "application/json"
			}
			r.Header.Set("Content-Type", ct)
			switch c.key {
			case "-":
			case "":
				r.Header.Set(platform.HeaderIdempotencyKey, "key-"+c.name)
			default:
				r.Header.Set(platform.HeaderIdempotencyKey, c.key)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Error platform.Error }
			decErr := json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != c.wantStatus || decErr != nil || e.Error.Code != c.wantCode || e.Error.Message == "" {
				t.Errorf("%s %s: %d %+v (decode %v), want %d %s", method, path, resp.StatusCode, e.Error, decErr, c.wantStatus, c.wantCode)
			}
		})
	}
	if n := cat.Calls("reserve"); n != 0 {
		t.Errorf("bad requests reached the catalog %d times", n)
	}
}

func TestHTTPHealthAndMetrics(t *testing.T) {
	srv, _, _ := serveWithFakes(t)
	c := newClient(t, srv.URL)
	if _, _, err := c.PlaceOrder(context.Background(), orders.PlaceOrderRequest{CustomerID: "c1", IdempotencyKey: "k",
		Items: []orders.Item{{ProductID: "p-mug", Quantity: 1}}}); err != nil {
		t.Fatal(err)
	}
	for path, wants := range map[string][]string{
		"/readyz": {`"db":"ok"`},
		"/metrics": {"orders_placed_total 1", `orders_completed_total{status="confirmed"} 1`,
			`orders_saga_steps_total{outcome="ok",step="commit"} 1`, "orders_in_flight 0"},
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
}
