package payments

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/platform"
)

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

type fixture struct {
	svc *service
	reg *prometheus.Registry
	dir string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := openStore(context.Background(), filepath.Join(dir, "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	m, err := newDomainMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{svc: newService(st, DefaultDeclineOverCents, func() time.Time { return testNow }, m), reg: reg, dir: dir}
}

// counter returns the value of the counter name whose labels include want.
func counter(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, want)
	return 0
}

func wantErrorCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	e, ok := platform.AsError(err)
	if !ok {
		t.Fatalf("err = %v, want *platform.Error %d %s", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("err = %d %s (%s), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
}

func TestChargeOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		req        ChargeRequest
		wantStatus Status
		wantReason string
	}{
		{"small amount is captured", ChargeRequest{OrderID: "o1", AmountCents: 1}, StatusCaptured, ""},
		{"amount at the limit is captured", ChargeRequest{OrderID: "o1", AmountCents: DefaultDeclineOverCents}, StatusCaptured, ""},
		{"amount over the limit is declined", ChargeRequest{OrderID: "o1", AmountCents: DefaultDeclineOverCents + 1}, StatusDeclined, DeclineAmountOverLimit},
		{"good card is captured", ChargeRequest{OrderID: "o1", AmountCents: 500, CardNumber: "4242424242424242"}, StatusCaptured, ""},
		{"declining card is declined", ChargeRequest{OrderID: "o1", AmountCents: 500, CardNumber: DecliningCard}, StatusDeclined, DeclineCardDeclined},
		{"amount limit is checked before the card", ChargeRequest{OrderID: "o1", AmountCents: MaxAmountCents, CardNumber: DecliningCard}, StatusDeclined, DeclineAmountOverLimit},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.req.IdempotencyKey = fmt.Sprintf("key-%d", i)
			p, created, err := f.svc.Charge(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !created || p.Status != tc.wantStatus || p.DeclineReason != tc.wantReason {
				t.Fatalf("got created=%v status=%s reason=%q, want created status=%s reason=%q", created, p.Status, p.DeclineReason, tc.wantStatus, tc.wantReason)
			}
			if p.ID == "" || p.OrderID != tc.req.OrderID || p.AmountCents != tc.req.AmountCents || !p.CreatedAt.Equal(testNow) {
				t.Fatalf("payment = %+v, want a new id, order o1, amount %d, created at %v", p, tc.req.AmountCents, testNow)
			}
			if got := counter(t, f.reg, "payments_charges_total", map[string]string{"outcome": string(tc.wantStatus)}); got != 1 {
				t.Fatalf("payments_charges_total{outcome=%s} = %v, want 1", tc.wantStatus, got)
			}
			stored, err := f.svc.GetPayment(context.Background(), p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored != p {
				t.Fatalf("stored %+v, charged %+v", stored, p)
			}
		})
	}
}

func TestChargeReplayAndReuse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := ChargeRequest{OrderID: "o1", AmountCents: 1500, CardNumber: "4242424242424242", IdempotencyKey: "charge:o1"}
	first, created, err := f.svc.Charge(ctx, req)
	if err != nil || !created {
		t.Fatalf("first charge: created=%v err=%v", created, err)
	}
	again, created, err := f.svc.Charge(ctx, req)
	if err != nil || created {
		t.Fatalf("replay: created=%v err=%v, want the stored payment", created, err)
	}
	if again != first {
		t.Fatalf("replay = %+v, want %+v", again, first)
	}
	for _, other := range []ChargeRequest{
		{OrderID: "o2", AmountCents: 1500, CardNumber: "4242424242424242"},
		{OrderID: "o1", AmountCents: 1501, CardNumber: "4242424242424242"},
		{OrderID: "o1", AmountCents: 1500},
		{OrderID: "o1", AmountCents: 1500, CardNumber: DecliningCard},
	} {
		other.IdempotencyKey = req.IdempotencyKey
		_, _, err := f.svc.Charge(ctx, other)
		wantErrorCode(t, err, http.StatusConflict, "idempotency_key_reused")
	}
	list, err := f.svc.ListPayments(ctx, "o1")
	if err != nil || len(list) != 1 {
		t.Fatalf("payments of o1 = %v (err %v), want exactly the first", list, err)
	}
	if got := counter(t, f.reg, "payments_charges_total", map[string]string{"outcome": "captured"}); got != 1 {
		t.Fatalf("payments_charges_total{captured} = %v, want 1 (replays are not charges)", got)
	}
}

func TestChargeConcurrentSameKeyCreatesOnePayment(t *testing.T) {
	f := newFixture(t)
	const callers = 32
	req := ChargeRequest{OrderID: "o-concurrent", AmountCents: 700, IdempotencyKey: "same-key"}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		created int
		start   = make(chan struct{})
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p, c, err := f.svc.Charge(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[p.ID]++
			if c {
				created++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(ids) != 1 || created != 1 {
		t.Fatalf("ids = %v, created = %d; want one payment created once", ids, created)
	}
	list, err := f.svc.ListPayments(context.Background(), req.OrderID)
	if err != nil || len(list) != 1 {
		t.Fatalf("stored payments = %v (err %v), want 1", list, err)
	}
}

func TestChargeRejectsBadInput(t *testing.T) {
	valid := ChargeRequest{OrderID: "o1", AmountCents: 100, CardNumber: "4242424242424242", IdempotencyKey: "k"}
	tests := []struct {
		name   string
		change func(*ChargeRequest)
		code   string
	}{
		{"missing key", func(r *ChargeRequest) { r.IdempotencyKey = "" }, "missing_idempotency_key"},
		{"key too long", func(r *ChargeRequest) { r.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyLen+1) }, "invalid_argument"},
		{"key with control character", func(r *ChargeRequest) { r.IdempotencyKey = "k\x01" }, "invalid_argument"},
		{"key with non-ASCII", func(r *ChargeRequest) { r.IdempotencyKey = "kä" }, "invalid_argument"},
		{"empty order id", func(r *ChargeRequest) { r.OrderID = "" }, "invalid_argument"},
		{"order id too long", func(r *ChargeRequest) { r.OrderID = strings.Repeat("o", MaxOrderIDLen+1) }, "invalid_argument"},
		{"zero amount", func(r *ChargeRequest) { r.AmountCents = 0 }, "invalid_argument"},
		{"negative amount", func(r *ChargeRequest) { r.AmountCents = -5 }, "invalid_argument"},
		{"amount over the maximum", func(r *ChargeRequest) { r.AmountCents = MaxAmountCents + 1 }, "invalid_argument"},
		{"card with letters", func(r *ChargeRequest) { r.CardNumber = "4242abcd42424242" }, "invalid_argument"},
		{"card with spaces", func(r *ChargeRequest) { r.CardNumber = "4242 4242 4242 4242" }, "invalid_argument"},
		{"card too short", func(r *ChargeRequest) { r.CardNumber = "42424242424" }, "invalid_argument"},
		{"card too long", func(r *ChargeRequest) { r.CardNumber = "42424242424242424242" }, "invalid_argument"},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := valid
			tc.change(&req)
			_, _, err := f.svc.Charge(context.Background(), req)
			wantErrorCode(t, err, http.StatusBadRequest, tc.code)
		})
	}
	// The bounds themselves are accepted.
	edge := valid
	edge.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyLen)
	edge.OrderID = strings.Repeat("o", MaxOrderIDLen)
	edge.AmountCents = MaxAmountCents
	edge.CardNumber = "424242424242"
	if _, _, err := f.svc.Charge(context.Background(), edge); err != nil {
		t.Fatalf("charge at the bounds: %v", err)
	}
	if list, _ := f.svc.ListPayments(context.Background(), "o1"); len(list) != 0 {
		t.Fatalf("rejected charges stored payments: %v", list)
	}
}

func TestRefund(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	captured, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o1", AmountCents: 900, IdempotencyKey: "a"})
	if err != nil {
		t.Fatal(err)
	}
	declined, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o1", AmountCents: 900, CardNumber: DecliningCard, IdempotencyKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p, err := f.svc.Refund(ctx, captured.ID)
		if err != nil {
			t.Fatalf("refund #%d: %v", i+1, err)
		}
		want := captured
		want.Status = StatusRefunded
		if p != want {
			t.Fatalf("refund #%d = %+v, want %+v", i+1, p, want)
		}
	}
	if got := counter(t, f.reg, "payments_refunds_total", nil); got != 1 {
		t.Fatalf("payments_refunds_total = %v, want 1 (repeats are not refunds)", got)
	}
	_, err = f.svc.Refund(ctx, declined.ID)
	wantErrorCode(t, err, http.StatusConflict, "not_refundable")
	if p, _ := f.svc.GetPayment(ctx, declined.ID); p.Status != StatusDeclined {
		t.Fatalf("declined payment after a refused refund: %+v", p)
	}
	_, err = f.svc.Refund(ctx, "unknown")
	wantErrorCode(t, err, http.StatusNotFound, "not_found")

	// A replay of the charge's key answers the payment as it is now.
	p, created, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o1", AmountCents: 900, IdempotencyKey: "a"})
	if err != nil || created || p.Status != StatusRefunded {
		t.Fatalf("replay after refund: %+v created=%v err=%v", p, created, err)
	}
}

func TestGetAndListPayments(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.svc.GetPayment(ctx, "unknown")
	wantErrorCode(t, err, http.StatusNotFound, "not_found")

	list, err := f.svc.ListPayments(ctx, "o1")
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("payments of an order without any = %#v (err %v), want an empty non-nil list", list, err)
	}
	tick := testNow
	f.svc.now = func() time.Time { tick = tick.Add(time.Second); return tick }
	var want []Payment
	for i, order := range []string{"o1", "o2", "o1", "o1"} {
		p, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: order, AmountCents: int64(100 + i), IdempotencyKey: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if order == "o1" {
			want = append(want, p)
		}
	}
	list, err = f.svc.ListPayments(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("payments of o1 = %+v, want oldest first %+v", list, want)
	}
	for _, bad := range []string{"", strings.Repeat("o", MaxOrderIDLen+1)} {
		_, err := f.svc.ListPayments(ctx, bad)
		wantErrorCode(t, err, http.StatusBadRequest, "invalid_argument")
	}
}

func TestStoreSurvivesReopen(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o1", AmountCents: 300, IdempotencyKey: "persist"})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.store.Close()

	// Reopening runs the migrations again, which must be a no-op on a migrated database.
	st, err := openStore(ctx, filepath.Join(f.dir, "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.payment(ctx, p.ID)
	if err != nil || got != p {
		t.Fatalf("after reopen: %+v (err %v), want %+v", got, err, p)
	}
	_, fp, created, err := st.createPayment(ctx, "persist", "other", Payment{ID: "x", OrderID: "o1", AmountCents: 1, Status: StatusCaptured, CreatedAt: testNow})
	if err != nil || created || fp != requestFingerprint(ChargeRequest{OrderID: "o1", AmountCents: 300}) {
		t.Fatalf("idempotency key lost across reopen: created=%v fingerprint=%s err=%v", created, fp, err)
	}
}

func TestOpenStoreRejectsBadPath(t *testing.T) {
	for _, path := range []string{"", "a.db?mode=ro", "a#b.db"} {
		if st, err := openStore(context.Background(), path); err == nil {
			st.Close()
			t.Errorf("openStore(%q) succeeded, want an error", path)
		}
	}
}
