package catalog_test

import (
	"context"
	"fmt"
	"github.com/resilience-lab/lab/services/platform/platformtest"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/platform"
)

// The fuzz targets drive the catalog as cmd/catalog serves it (Open over a temp-dir database, the
// platform's full handler: request ids, deadlines, routing, decoding, validation, the service and its
// store). Each fuzz process builds one catalog and every iteration reuses it; the seeded stock is large
// enough that iterations never run it out. Properties, whatever the input: no panic, no 5xx (but a 504
// the caller's own short X-Deadline-Ms explains), every error in the shop's shape with a code, every
// success decoding strictly into the documented type and agreeing with the request.
// Seeds: testdata/fuzz/<target>/; scripts/fuzz.sh runs the targets.

// fuzzStock is the seeded stock of each product: quantities are at most catalog.MaxQuantity per line.
const fuzzStock = 1 << 40

type fuzzCatalog struct {
	handler http.Handler
	orders  atomic.Int64 // numbers the reservations the harness makes itself
}

func newFuzzCatalog(f *testing.F) *fuzzCatalog {
	f.Helper()
	cfg := catalog.Config{
		Addr: ":0", DB: filepath.Join(f.TempDir(), "catalog.db"), Seed: true, SeedStock: fuzzStock,
		ReservationTTL: time.Hour, SweepInterval: time.Hour,
	}
	svc, closer, err := catalog.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := closer.Close(); err != nil {
			f.Errorf("close catalog: %v", err)
		}
	})
	return &fuzzCatalog{handler: svc.Handler()}
}

func (c *fuzzCatalog) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	c.handler.ServeHTTP(rec, r)
	return rec
}

// heldReservation makes a fresh held reservation, so commit and release have a live target whatever
// earlier iterations did to theirs.
func (c *fuzzCatalog) heldReservation(t *testing.T) string {
	t.Helper()
	body := fmt.Sprintf(`{"order_id":"fuzz-harness-%d","items":[{"product_id":"p-mug","quantity":1}]}`, c.orders.Add(1))
	rec := c.serve(platformtest.Request(http.MethodPost, "/reservations", "", []byte(body)))
	var r catalog.Reservation
	if rec.Code != http.StatusCreated || platform.DecodeStrict(rec.Body.Bytes(), &r) != nil {
		t.Fatalf("harness reservation: HTTP %d %s", rec.Code, rec.Body)
	}
	return r.ID
}

func FuzzReserve(f *testing.F) {
	cat := newFuzzCatalog(f)
	f.Fuzz(func(t *testing.T, requestID, deadline, contentType string, body []byte) {
		requestID, ok1 := platformtest.WireHeader(requestID)
		deadline, ok2 := platformtest.WireHeader(deadline)
		contentType, ok3 := platformtest.WireHeader(contentType)
		if !ok1 || !ok2 || !ok3 {
			return // no HTTP request can carry these header values
		}
		r := platformtest.Request(http.MethodPost, "/reservations", "", body)
		platformtest.SetHeader(r, platform.HeaderRequestID, requestID)
		platformtest.SetHeader(r, platform.HeaderDeadline, deadline)
		r.Header.Del("Content-Type")
		platformtest.SetHeader(r, "Content-Type", contentType)
		rec := cat.serve(r)
		platformtest.CheckRequestID(t, rec, requestID)
		if !platformtest.CheckAnswer(t, rec, platformtest.ShortDeadline(deadline)) {
			return
		}
		var req catalog.ReserveRequest
		if err := platform.DecodeStrict(body, &req); err != nil {
			t.Fatalf("HTTP %d for a body the strict decoder refuses (%v)", rec.Code, err)
		}
		var res catalog.Reservation
		platformtest.DecodeAnswer(t, rec, &res)
		if res.ID == "" || res.OrderID != req.OrderID || res.ExpiresAt.IsZero() {
			t.Fatalf("reservation %+v does not answer order %q", res, req.OrderID)
		}
		switch rec.Code {
		case http.StatusCreated: // a new reservation holds exactly the lines asked for
			if res.Status != catalog.ReservationHeld || len(res.Items) != len(req.Items) {
				t.Fatalf("new reservation %+v for request %+v", res, req)
			}
			var total int64
			for i, it := range res.Items {
				if it.ProductID != req.Items[i].ProductID || it.Quantity != req.Items[i].Quantity || it.UnitPriceCents <= 0 {
					t.Fatalf("line %d is %+v, asked %+v", i, it, req.Items[i])
				}
				total += it.Quantity * it.UnitPriceCents
			}
			if total != res.TotalCents {
				t.Fatalf("total_cents %d, the lines add up to %d", res.TotalCents, total)
			}
		case http.StatusOK: // a repeat for the order: its first reservation
		default:
			t.Fatalf("HTTP %d, want 201 or 200", rec.Code)
		}
	})
}

// Routes whose id travels in the path; the fuzzer picks one with route % len(idRoutes).
var idRoutes = []struct{ method, prefix, suffix string }{
	{http.MethodGet, "/products/", ""},
	{http.MethodGet, "/reservations/", ""},
	{http.MethodPost, "/reservations/", "/commit"},
	{http.MethodPost, "/reservations/", "/release"},
}

// heldMarker in a fuzzed id stands for a fresh held reservation's id, so the fuzzer reaches the paths of
// existing reservations although their ids are random.
const heldMarker = "@held"

func FuzzPathID(f *testing.F) {
	cat := newFuzzCatalog(f)
	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		rt := idRoutes[int(route)%len(idRoutes)]
		if strings.Contains(id, heldMarker) {
			id = strings.ReplaceAll(id, heldMarker, cat.heldReservation(t))
		}
		var b []byte
		if rt.method == http.MethodPost {
			b = body
		}
		r := platformtest.Request(rt.method, rt.prefix+id+rt.suffix, rt.prefix+url.PathEscape(id)+rt.suffix, b)
		rec := cat.serve(r)
		if !platformtest.CheckAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		if rt.prefix == "/products/" {
			var p catalog.Product
			platformtest.DecodeAnswer(t, rec, &p)
			if p.ID != id || p.PriceCents <= 0 || p.Stock < 0 {
				t.Fatalf("product %+v for id %q", p, id)
			}
			return
		}
		var res catalog.Reservation
		platformtest.DecodeAnswer(t, rec, &res)
		want := map[string]catalog.ReservationStatus{"/commit": catalog.ReservationCommitted, "/release": catalog.ReservationReleased}[rt.suffix]
		if res.ID != id || (want != "" && res.Status != want) {
			t.Fatalf("%s %s answered %+v", rt.method, r.URL.Path, res)
		}
	})
}
