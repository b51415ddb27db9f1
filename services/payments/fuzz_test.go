package payments_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
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
	r := fuzzRequest(http.MethodPost, "/payments", "", []byte(body))
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
		key, ok1 := wireHeader(key)
		deadline, ok2 := wireHeader(deadline)
		if !ok1 || !ok2 {
			return // no HTTP request can carry these header values
		}
		r := fuzzRequest(http.MethodPost, "/payments", "", body)
		setHeader(r, platform.HeaderIdempotencyKey, key)
		setHeader(r, platform.HeaderDeadline, deadline)
		rec := svc.serve(r)
		if !checkAnswer(t, rec, shortDeadline(deadline)) {
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
		decodeAnswer(t, rec, &p)
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
			r = fuzzRequest(http.MethodGet, "/payments/"+id, "/payments/"+url.PathEscape(id), nil)
		case 1:
			r = fuzzRequest(http.MethodPost, "/payments/"+id+"/refund", "/payments/"+url.PathEscape(id)+"/refund", body)
		default:
			r = fuzzRequest(http.MethodGet, "/payments", "", nil)
			r.URL.RawQuery = url.Values{"order_id": {id}}.Encode()
		}
		rec := svc.serve(r)
		if !checkAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		if route%3 == 2 {
			var list payments.ListPaymentsResponse
			decodeAnswer(t, rec, &list)
			for i, p := range list.Payments {
				if p.OrderID != id || (i > 0 && p.CreatedAt.Before(list.Payments[i-1].CreatedAt)) {
					t.Fatalf("payments of order %q, oldest first: %+v", id, list.Payments)
				}
			}
			return
		}
		var p payments.Payment
		decodeAnswer(t, rec, &p)
		if p.ID != id || (route%3 == 1 && p.Status != payments.StatusRefunded) {
			t.Fatalf("%s %s answered %+v", r.Method, r.URL.Path, p)
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
