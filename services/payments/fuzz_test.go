package payments_test

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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// The fuzz targets drive payments as cmd/payments serves it (Open over a temp-dir database, the
// platform's full handler: request ids, deadlines, routing, decoding, validation, the service and its
// store). Each fuzz process builds one service and every iteration reuses it: no property depends on
// what earlier iterations stored. Properties, whatever the input: no panic, no 5xx (but a 504 the
// caller's own short X-Deadline-Ms explains), every error in the shop's shape with a code, every
// success decoding strictly into the documented type and agreeing with the request.
// Seeds: testdata/fuzz/<target>/; scripts/fuzz.sh runs the targets.

type fuzzPayments struct {
	handler http.Handler
	keys    atomic.Int64 // numbers the charges the harness makes itself
}

// fuzzHarnessOrder is the order of every payment the harness makes, so listing it has answers.
const fuzzHarnessOrder = "fuzz-harness"

func newFuzzPayments(f *testing.F) *fuzzPayments {
	f.Helper()
	cfg := payments.Config{
		Addr: ":0", DBPath: filepath.Join(f.TempDir(), "payments.db"), DeclineOverCents: payments.DefaultDeclineOverCents,
	}
	svc, closer, err := payments.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := closer.Close(); err != nil {
			f.Errorf("close payments: %v", err)
		}
	})
	return &fuzzPayments{handler: svc.Handler()}
}

func (p *fuzzPayments) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.handler.ServeHTTP(rec, r)
	return rec
}

// charge makes a fresh payment of the harness's order with card (a declining card makes it declined).
func (p *fuzzPayments) charge(t *testing.T, card string) string {
	t.Helper()
	body := fmt.Sprintf(`{"order_id":%q,"amount_cents":1999,"card_number":%q}`, fuzzHarnessOrder, card)
	r := platformtest.Request(http.MethodPost, "/payments", "", []byte(body))
	r.Header.Set(platform.HeaderIdempotencyKey, fmt.Sprintf("fuzz-harness-%d", p.keys.Add(1)))
	rec := p.serve(r)
	var pay payments.Payment
	if rec.Code != http.StatusCreated || platform.DecodeStrict(rec.Body.Bytes(), &pay) != nil {
		t.Fatalf("harness charge: HTTP %d %s", rec.Code, rec.Body)
	}
	return pay.ID
}

func FuzzCharge(f *testing.F) {
	svc := newFuzzPayments(f)
	f.Fuzz(func(t *testing.T, key, deadline string, body []byte) {
		key, ok1 := platformtest.WireHeader(key)
		deadline, ok2 := platformtest.WireHeader(deadline)
		if !ok1 || !ok2 {
			return // no HTTP request can carry these header values
		}
		r := platformtest.Request(http.MethodPost, "/payments", "", body)
		platformtest.SetHeader(r, platform.HeaderIdempotencyKey, key)
		platformtest.SetHeader(r, platform.HeaderDeadline, deadline)
		rec := svc.serve(r)
		if !platformtest.CheckAnswer(t, rec, platformtest.ShortDeadline(deadline)) {
			return
		}
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 201 or 200 (a replay)", rec.Code)
		}
		var req payments.ChargeRequest
		if err := platform.DecodeStrict(body, &req); err != nil {
			t.Fatalf("HTTP %d for a body the strict decoder refuses (%v)", rec.Code, err)
		}
		var p payments.Payment
		platformtest.DecodeAnswer(t, rec, &p)
		// A replay answers the key's payment, whose body had the same fingerprint: the same rules hold.
		wantStatus, wantReason := payments.StatusCaptured, ""
		switch {
		case req.AmountCents > payments.DefaultDeclineOverCents:
			wantStatus, wantReason = payments.StatusDeclined, payments.DeclineAmountOverLimit
		case req.CardNumber == payments.DecliningCard:
			wantStatus, wantReason = payments.StatusDeclined, payments.DeclineCardDeclined
		}
		if p.ID == "" || p.OrderID != req.OrderID || p.AmountCents != req.AmountCents || p.AmountCents <= 0 ||
			p.Status != wantStatus || p.DeclineReason != wantReason || p.CreatedAt.IsZero() {
			t.Fatalf("payment %+v for charge %+v; want %s %q", p, req, wantStatus, wantReason)
		}
	})
}

// Markers in a fuzzed id stand for a fresh payment's id, so the fuzzer reaches the paths of existing
// payments although their ids are random.
const (
	capturedMarker = "@captured"
	declinedMarker = "@declined"
)

func FuzzPaymentID(f *testing.F) {
	svc := newFuzzPayments(f)
	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		if strings.Contains(id, capturedMarker) {
			id = strings.ReplaceAll(id, capturedMarker, svc.charge(t, ""))
		}
		if strings.Contains(id, declinedMarker) {
			id = strings.ReplaceAll(id, declinedMarker, svc.charge(t, payments.DecliningCard))
		}
		var r *http.Request
		switch route % 3 {
		case 0:
			r = platformtest.Request(http.MethodGet, "/payments/"+id, "/payments/"+url.PathEscape(id), nil)
		case 1:
			r = platformtest.Request(http.MethodPost, "/payments/"+id+"/refund", "/payments/"+url.PathEscape(id)+"/refund", body)
		default:
			r = platformtest.Request(http.MethodGet, "/payments", "", nil)
			r.URL.RawQuery = url.Values{"order_id": {id}}.Encode()
		}
		rec := svc.serve(r)
		if !platformtest.CheckAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		if route%3 == 2 {
			var list payments.ListPaymentsResponse
			platformtest.DecodeAnswer(t, rec, &list)
			for i, p := range list.Payments {
				if p.OrderID != id || (i > 0 && p.CreatedAt.Before(list.Payments[i-1].CreatedAt)) {
					t.Fatalf("payments of order %q, oldest first: %+v", id, list.Payments)
				}
			}
			return
		}
		var p payments.Payment
		platformtest.DecodeAnswer(t, rec, &p)
		if p.ID != id || (route%3 == 1 && p.Status != payments.StatusRefunded) {
			t.Fatalf("%s %s answered %+v", r.Method, r.URL.Path, p)
		}
	})
}
