package orders_test

import (
	"cmp"
	"context"
	"github.com/resilience-lab/lab/services/platform/platformtest"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// The fuzz targets drive orders as cmd/orders serves it (Open over a temp-dir database, the platform's
// full handler) with the real catalog and payments behind loopback httptest servers, so every accepted
// order runs its saga for real. Each fuzz process builds this shop once and every iteration reuses it;
// the seeded stock is large enough that iterations never run it out. Properties, whatever the input: no
// panic, no 5xx (but a 504 the caller's own short X-Deadline-Ms explains), every error in the shop's
// shape with a code, every success decoding strictly into the documented type and agreeing with the
// request. Seeds: testdata/fuzz/<target>/; scripts/fuzz.sh runs the targets.

// fuzzCustomer owns the order the harness places, so lookups have something to find.
const fuzzCustomer = "fuzz-harness"

type fuzzOrders struct {
	handler http.Handler
	orderID string // the harness's confirmed order
}

func newFuzzOrders(f *testing.F) *fuzzOrders {
	f.Helper()
	ctx, dir, logger := context.Background(), f.TempDir(), slog.New(slog.DiscardHandler)
	serve := func(svc *platform.Service, closer interface{ Close() error }) string {
		srv := httptest.NewServer(svc.Handler())
		f.Cleanup(func() {
			srv.Close()
			if err := closer.Close(); err != nil {
				f.Errorf("close %s: %v", svc.Name, err)
			}
		})
		return srv.URL
	}
	cat, catCloser, err := catalog.Open(ctx, catalog.Config{Addr: ":0", DB: filepath.Join(dir, "catalog.db"), Seed: true,
		SeedStock: 1 << 40, ReservationTTL: time.Hour, SweepInterval: time.Hour}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	catURL := serve(cat, catCloser)
	pay, payCloser, err := payments.Open(ctx, payments.Config{Addr: ":0", DBPath: filepath.Join(dir, "payments.db"),
		DeclineOverCents: payments.DefaultDeclineOverCents}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	payURL := serve(pay, payCloser)
	ord, ordCloser, err := orders.Open(ctx, orders.Config{Addr: ":0", DB: filepath.Join(dir, "orders.db"),
		CatalogURL: catURL, PaymentsURL: payURL, ResumeInterval: time.Hour, ResumeGrace: time.Minute,
		SagaTimeout: 30 * time.Second}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := ordCloser.Close(); err != nil {
			f.Errorf("close orders: %v", err)
		}
	})
	s := &fuzzOrders{handler: ord.Handler()}

	r := platformtest.Request(http.MethodPost, "/orders", "",
		[]byte(`{"customer_id":"`+fuzzCustomer+`","items":[{"product_id":"p-mug","quantity":1}]}`))
	r.Header.Set(platform.HeaderIdempotencyKey, "fuzz-harness-1")
	rec := s.serve(r)
	var o orders.Order
	if rec.Code != http.StatusCreated || platform.DecodeStrict(rec.Body.Bytes(), &o) != nil || o.Status != orders.StatusConfirmed {
		f.Fatalf("harness order: HTTP %d %s", rec.Code, rec.Body)
	}
	s.orderID = o.ID
	return s
}

func (s *fuzzOrders) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, r)
	return rec
}

var orderStatuses = []orders.Status{orders.StatusPending, orders.StatusReserved, orders.StatusPendingPayment,
	orders.StatusCharged, orders.StatusCompensating, orders.StatusConfirmed, orders.StatusRejected, orders.StatusCancelled}

func FuzzPlaceOrder(f *testing.F) {
	shop := newFuzzOrders(f)
	f.Fuzz(func(t *testing.T, key, deadline string, body []byte) {
		key, ok1 := platformtest.WireHeader(key)
		deadline, ok2 := platformtest.WireHeader(deadline)
		if !ok1 || !ok2 {
			return // no HTTP request can carry these header values
		}
		r := platformtest.Request(http.MethodPost, "/orders", "", body)
		platformtest.SetHeader(r, platform.HeaderIdempotencyKey, key)
		platformtest.SetHeader(r, platform.HeaderDeadline, deadline)
		rec := shop.serve(r)
		short := platformtest.ShortDeadline(deadline)
		if !platformtest.CheckAnswer(t, rec, short) {
			return
		}
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 201 or 200 (a repeat)", rec.Code)
		}
		var req orders.PlaceOrderRequest
		if err := platform.DecodeStrict(body, &req); err != nil {
			t.Fatalf("HTTP %d for a body the strict decoder refuses (%v)", rec.Code, err)
		}
		var o orders.Order
		platformtest.DecodeAnswer(t, rec, &o)
		// A repeat may list the lines in another order: they are the same request.
		byProduct := func(a, b orders.Item) int { return cmp.Compare(a.ProductID, b.ProductID) }
		got, asked := slices.Clone(o.Items), slices.Clone(req.Items)
		slices.SortFunc(got, byProduct)
		slices.SortFunc(asked, byProduct)
		if o.ID == "" || o.CustomerID != req.CustomerID || !slices.Equal(got, asked) || !slices.Contains(orderStatuses, o.Status) ||
			o.CreatedAt.IsZero() || o.UpdatedAt.Before(o.CreatedAt) {
			t.Fatalf("order %+v for request %+v", o, req)
		}
		// Without a budget the caller may exhaust, the saga runs to its end before the answer.
		if !short && !o.Status.Terminal() {
			t.Fatalf("order answered in flight: %+v", o)
		}
		if o.Status == orders.StatusConfirmed && (o.ReservationID == "" || o.PaymentID == "" || o.TotalCents <= 0) {
			t.Fatalf("confirmed order without its reservation, payment or total: %+v", o)
		}
	})
}

// orderMarker in a fuzzed id stands for the harness's order, whose id is random.
const orderMarker = "@order"

func FuzzOrderLookup(f *testing.F) {
	shop := newFuzzOrders(f)
	f.Fuzz(func(t *testing.T, byCustomer bool, v string) {
		v = strings.ReplaceAll(v, orderMarker, shop.orderID)
		var r *http.Request
		if byCustomer {
			r = platformtest.Request(http.MethodGet, "/orders", "", nil)
			r.URL.RawQuery = url.Values{"customer_id": {v}}.Encode()
		} else {
			r = platformtest.Request(http.MethodGet, "/orders/"+v, "/orders/"+url.PathEscape(v), nil)
		}
		rec := shop.serve(r)
		if !platformtest.CheckAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		if !byCustomer {
			var o orders.Order
			platformtest.DecodeAnswer(t, rec, &o)
			if o.ID != v {
				t.Fatalf("GET /orders/%s answered order %+v", v, o)
			}
			return
		}
		var list orders.ListOrdersResponse
		platformtest.DecodeAnswer(t, rec, &list)
		if len(list.Orders) > orders.ListLimit {
			t.Fatalf("%d orders listed, the limit is %d", len(list.Orders), orders.ListLimit)
		}
		for i, o := range list.Orders {
			if o.CustomerID != v || (i > 0 && o.CreatedAt.After(list.Orders[i-1].CreatedAt)) {
				t.Fatalf("orders of %q, newest first: %+v", v, list.Orders)
			}
		}
	})
}
