package orders_test

import (
	"bytes"
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
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

	r := fuzzRequest(http.MethodPost, "/orders", "",
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
		key, ok1 := wireHeader(key)
		deadline, ok2 := wireHeader(deadline)
		if !ok1 || !ok2 {
			return // no HTTP request can carry these header values
		}
		r := fuzzRequest(http.MethodPost, "/orders", "", body)
		setHeader(r, platform.HeaderIdempotencyKey, key)
		setHeader(r, platform.HeaderDeadline, deadline)
		rec := shop.serve(r)
		short := shortDeadline(deadline)
		if !checkAnswer(t, rec, short) {
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
		decodeAnswer(t, rec, &o)
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
			r = fuzzRequest(http.MethodGet, "/orders", "", nil)
			r.URL.RawQuery = url.Values{"customer_id": {v}}.Encode()
		} else {
			r = fuzzRequest(http.MethodGet, "/orders/"+v, "/orders/"+url.PathEscape(v), nil)
		}
		rec := shop.serve(r)
		if !checkAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		if !byCustomer {
			var o orders.Order
			decodeAnswer(t, rec, &o)
			if o.ID != v {
				t.Fatalf("GET /orders/%s answered order %+v", v, o)
			}
			return
		}
		var list orders.ListOrdersResponse
		decodeAnswer(t, rec, &list)
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

// ---- what every fuzz target checks (the same helpers sit in each service's fuzz_test.go) ----------

// fuzzRequest builds a request as the server would parse it off the wire: rawPath, when set, is the
// escaped form of path (ids with '/', '%' or non-ASCII bytes).
func fuzzRequest(method, path, rawPath string, body []byte) *http.Request {
	r := httptest.NewRequest(method, "/", bytes.NewReader(body))
	r.URL.Path, r.URL.RawPath = path, rawPath
	r.RequestURI = r.URL.RequestURI()
	r.Header.Set("Content-Type", "application/json")
	return r
}

// wireHeader returns v as net/http hands a header value to handlers (surrounding blanks trimmed), or
// false when no HTTP request can carry it (control bytes).
func wireHeader(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return "", false
		}
	}
	return strings.Trim(v, " \t"), true
}

func setHeader(r *http.Request, name, v string) {
	if v != "" {
		r.Header.Set(name, v)
	}
}

// shortDeadline reports whether an X-Deadline-Ms value is a budget a request may really exhaust, so a
// 504 deadline_exceeded is the right answer; a minute is far beyond any fuzz iteration.
func shortDeadline(v string) bool {
	ms, err := strconv.ParseInt(v, 10, 64)
	return err == nil && ms >= 0 && ms < 60_000
}

type wireError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkAnswer asserts what holds for any input and reports whether the answer is a success, whose body
// the caller then decodes into the route's documented type. A 3xx is ServeMux sending a path that needs
// cleaning (/a/../b) to its clean form: routing, not an error.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, deadlineMayPass bool) bool {
	t.Helper()
	switch {
	case rec.Code >= 200 && rec.Code < 300:
		return true
	case rec.Code >= 300 && rec.Code < 400:
		if rec.Header().Get("Location") == "" {
			t.Fatalf("HTTP %d without a Location: %q", rec.Code, rec.Body)
		}
		return false
	case rec.Code >= 500 && !(rec.Code == http.StatusGatewayTimeout && deadlineMayPass):
		t.Fatalf("HTTP %d for caller input: %q", rec.Code, rec.Body)
	}
	var e wireError
	if err := platform.DecodeStrict(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == "" {
		t.Fatalf("HTTP %d without the error shape {\"error\":{\"code\",\"message\"}}: %q (%v)", rec.Code, rec.Body, err)
	}
	if rec.Code == http.StatusGatewayTimeout && e.Error.Code != "deadline_exceeded" {
		t.Fatalf("HTTP 504 with code %q, want deadline_exceeded", e.Error.Code)
	}
	return false
}

// decodeAnswer decodes a success strictly (no unknown fields, one JSON value) into v.
func decodeAnswer(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("HTTP %d with Content-Type %q", rec.Code, ct)
	}
	if err := platform.DecodeStrict(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("HTTP %d body is not a %T: %v: %q", rec.Code, v, err, rec.Body)
	}
}
