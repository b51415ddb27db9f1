package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// Products of the fake catalog; initialStock is their stock before any order.
var testProducts = []catalog.Product{
	{ID: "p-mug", Name: "Mug", PriceCents: 1450, Stock: 10},
	{ID: "p-kettle", Name: "Kettle", PriceCents: 5900, Stock: 5},
	{ID: "p-roaster", Name: "Roaster", PriceCents: 49900, Stock: 10},
}

func initialStock(id string) int64 {
	for _, p := range testProducts {
		if p.ID == id {
			return p.Stock
		}
	}
	return -1
}

const grace = 2 * time.Second

// harness runs the orders service over fakes on a database file that survives re-opening.
type harness struct {
	t     *testing.T
	cat   *FakeCatalog
	pay   *FakePayments
	clock *Clock
	db    string
	app   *app
	reg   *prometheus.Registry
	// tweak, when set, adjusts the configuration open uses.
	tweak func(*Config)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := setup(t, testProducts...)
	h.open(nil)
	return h
}

// setup builds a harness over fakes holding products without opening the service.
func setup(t *testing.T, products ...catalog.Product) *harness {
	return &harness{t: t, cat: NewFakeCatalog(products...), pay: NewFakePayments(), clock: NewClock(),
		db: filepath.Join(t.TempDir(), "orders.db")}
}

// open (re)starts the service on the harness's database; afterStep is the crash hook.
func (h *harness) open(afterStep func(Order) error) *app {
	h.t.Helper()
	cfg := Config{Addr: ":0", DB: h.db, ResumeInterval: time.Hour, ResumeGrace: grace, SagaTimeout: 30 * time.Second,
		Now: h.clock.Now, afterStep: afterStep}
	if h.tweak != nil {
		h.tweak(&cfg)
	}
	h.reg = prometheus.NewRegistry()
	a, err := open(context.Background(), WithDependencies(cfg, h.cat, h.pay), slog.New(slog.DiscardHandler), h.reg)
	if err != nil {
		h.t.Fatalf("open: %v", err)
	}
	h.t.Cleanup(func() { a.Close() })
	<-a.firstPass // the pass on Open is done: from here on only the test moves orders
	h.app = a
	return a
}

func (h *harness) place(req PlaceOrderRequest) (Order, bool, error) {
	return h.app.service.PlaceOrder(context.Background(), req)
}

func (h *harness) mustPlace(req PlaceOrderRequest) Order {
	h.t.Helper()
	o, created, err := h.place(req)
	if err != nil {
		h.t.Fatalf("place %+v: %v", req, err)
	}
	if !created {
		h.t.Fatalf("place %+v: not created", req)
	}
	return o
}

// resume runs one resumer pass after the grace period.
func (h *harness) resume() {
	h.clock.Advance(grace + time.Second)
	h.app.resumer.pass(context.Background())
}

func (h *harness) get(id string) Order {
	h.t.Helper()
	o, err := h.app.service.GetOrder(context.Background(), id)
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	return o
}

// metric returns the value of the series name{labels} on the harness's registry (0 when absent).
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func order(key string, items ...Item) PlaceOrderRequest {
	return PlaceOrderRequest{CustomerID: "c1", Items: items, IdempotencyKey: key}
}

func TestPlaceOrderHappyPath(t *testing.T) {
	h := newHarness(t)
	req := order("k1", Item{ProductID: "p-mug", Quantity: 2}, Item{ProductID: "p-kettle", Quantity: 1})
	req.CardNumber = "4242424242424242"
	o := h.mustPlace(req)

	if o.Status != StatusConfirmed || o.Reason != "" || o.TotalCents != 2*1450+5900 || o.ReservationID == "" || o.PaymentID == "" {
		t.Fatalf("order = %+v, want confirmed, total 8800, with reservation and payment", o)
	}
	if o.CustomerID != "c1" || len(o.Items) != 2 || o.CreatedAt.IsZero() || !o.UpdatedAt.Equal(h.clock.Now()) {
		t.Errorf("order = %+v", o)
	}
	CheckConsistent(t, o, h.cat, h.pay)
	if got := h.cat.Stock("p-mug"); got != 8 {
		t.Errorf("mug stock = %d, want 8", got)
	}
	if got := h.get(o.ID); got.Status != StatusConfirmed || got.PaymentID != o.PaymentID {
		t.Errorf("GetOrder = %+v", got)
	}
	stored, err := h.app.store.get(context.Background(), o.ID)
	if err != nil || stored.CardNumber != "" {
		t.Errorf("stored card number = %q (err %v), want it erased once the order ended", stored.CardNumber, err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"orders_placed_total", nil, 1},
		{"orders_completed_total", []string{"status", "confirmed"}, 1},
		{"orders_completed_total", []string{"status", "cancelled"}, 0},
		{"orders_saga_steps_total", []string{"step", "reserve", "outcome", "ok"}, 1},
		{"orders_saga_steps_total", []string{"step", "charge", "outcome", "ok"}, 1},
		{"orders_saga_steps_total", []string{"step", "commit", "outcome", "ok"}, 1},
		{"orders_in_flight", nil, 0},
	} {
		if got := h.metric(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestPlaceOrderBusinessOutcomes(t *testing.T) {
	cases := []struct {
		name        string
		req         PlaceOrderRequest
		wantReason  string
		wantPayment payments.Status // "" when no charge may happen
		step        []string        // the step that said no
	}{
		{"out of stock", order("k", Item{ProductID: "p-kettle", Quantity: 6}), "out_of_stock", "",
			[]string{"step", "reserve", "outcome", "rejected"}},
		{"unknown product", order("k", Item{ProductID: "p-mug", Quantity: 1}, Item{ProductID: "p-nope", Quantity: 1}),
			"unknown_product", "", []string{"step", "reserve", "outcome", "rejected"}},
		{"card declined", PlaceOrderRequest{CustomerID: "c1", IdempotencyKey: "k", CardNumber: payments.DecliningCard,
			Items: []Item{{ProductID: "p-mug", Quantity: 3}}}, "card_declined", payments.StatusDeclined,
			[]string{"step", "charge", "outcome", "declined"}},
		{"amount over limit", order("k", Item{ProductID: "p-roaster", Quantity: 3}), "amount_over_limit",
			payments.StatusDeclined, []string{"step", "charge", "outcome", "declined"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.mustPlace(c.req)
			if o.Status != StatusRejected || o.Reason != c.wantReason {
				t.Fatalf("order = %s %q, want rejected %q", o.Status, o.Reason, c.wantReason)
			}
			CheckConsistent(t, o, h.cat, h.pay)
			for _, p := range testProducts {
				if got := h.cat.Stock(p.ID); got != p.Stock {
					t.Errorf("stock of %s = %d, want %d back", p.ID, got, p.Stock)
				}
			}
			pays := h.pay.PaymentsOf(o.ID)
			switch {
			case c.wantPayment == "" && len(pays) != 0:
				t.Errorf("payments = %+v, want none", pays)
			case c.wantPayment != "" && (len(pays) != 1 || pays[0].Status != c.wantPayment || pays[0].ID != o.PaymentID):
				t.Errorf("payments = %+v, want one %s (order's payment %q)", pays, c.wantPayment, o.PaymentID)
			}
			if got := h.metric("orders_saga_steps_total", c.step...); got != 1 {
				t.Errorf("steps%v = %v, want 1", c.step, got)
			}
			if got := h.metric("orders_completed_total", "status", "rejected"); got != 1 {
				t.Errorf("completed{rejected} = %v, want 1", got)
			}
		})
	}
}

// TestPlaceOrderTechnicalFailures fails each step before and after it took effect, with and without
// compensation completing at once, and checks that the order ends consistent with the dependencies.
func TestPlaceOrderTechnicalFailures(t *testing.T) {
	type script map[string][]FaultKind
	cases := []struct {
		name       string
		card       string
		catalog    script
		payments   script
		wantStatus Status
		wantReason string
		// pending: compensation cannot complete within the request; the resumer finishes it.
		pending bool
	}{
		{name: "reserve fails", catalog: script{"reserve": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "reserve_failed"},
		{name: "reserve answer lost", catalog: script{"reserve": {FailAfter}},
			wantStatus: StatusCancelled, wantReason: "reserve_failed"},
		{name: "reserve answer lost, catalog still failing", catalog: script{"reserve": {FailAfter, FailBefore}},
			wantStatus: StatusCancelled, wantReason: "reserve_failed", pending: true},
		{name: "reserve answer lost, release fails", catalog: script{"reserve": {FailAfter}, "release": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "reserve_failed", pending: true},
		{name: "charge fails", payments: script{"charge": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "charge_failed"},
		{name: "charge answer lost", payments: script{"charge": {FailAfter}},
			wantStatus: StatusCancelled, wantReason: "charge_failed"},
		{name: "charge answer lost, payments still failing", payments: script{"charge": {FailAfter, FailBefore}},
			wantStatus: StatusCancelled, wantReason: "charge_failed", pending: true},
		{name: "charge answer lost, listing fails", payments: script{"charge": {FailAfter}, "list": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "charge_failed", pending: true},
		{name: "charge answer lost, refund answer lost", payments: script{"charge": {FailAfter}, "refund": {FailAfter}},
			wantStatus: StatusCancelled, wantReason: "charge_failed", pending: true},
		{name: "charge fails, release fails", payments: script{"charge": {FailBefore}}, catalog: script{"release": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "charge_failed", pending: true},
		{name: "declined, release fails", card: payments.DecliningCard, catalog: script{"release": {FailBefore}},
			wantStatus: StatusRejected, wantReason: "card_declined", pending: true},
		{name: "commit fails", catalog: script{"commit": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "commit_failed"},
		{name: "commit fails, refund fails", catalog: script{"commit": {FailBefore}}, payments: script{"refund": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "commit_failed", pending: true},
		{name: "commit fails, release fails", catalog: script{"commit": {FailBefore}, "release": {FailBefore}},
			wantStatus: StatusCancelled, wantReason: "commit_failed", pending: true},
		// The commit went through; compensation learns it from the release and completes the order.
		{name: "commit answer lost", catalog: script{"commit": {FailAfter}},
			wantStatus: StatusConfirmed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			for op, kinds := range c.catalog {
				h.cat.FailNext(op, kinds...)
			}
			for op, kinds := range c.payments {
				h.pay.FailNext(op, kinds...)
			}
			req := order("k", Item{ProductID: "p-mug", Quantity: 2}, Item{ProductID: "p-kettle", Quantity: 1})
			req.CardNumber = c.card
			o := h.mustPlace(req)
			if c.pending {
				if o.Status != StatusCompensating || o.Reason != c.wantReason {
					t.Fatalf("order = %s %q, want compensating %q", o.Status, o.Reason, c.wantReason)
				}
				if got := h.metric("orders_in_flight"); got != 1 {
					t.Errorf("orders_in_flight = %v, want 1", got)
				}
				h.resume()
				o = h.get(o.ID)
			}
			if o.Status != c.wantStatus || o.Reason != c.wantReason {
				t.Fatalf("order = %s %q, want %s %q", o.Status, o.Reason, c.wantStatus, c.wantReason)
			}
			CheckConsistent(t, o, h.cat, h.pay)
			if h.cat.Held() != 0 {
				t.Errorf("%d reservations still held", h.cat.Held())
			}
			wantMug, wantKettle := initialStock("p-mug"), initialStock("p-kettle")
			if o.Status == StatusConfirmed {
				wantMug, wantKettle = wantMug-2, wantKettle-1
			}
			if h.cat.Stock("p-mug") != wantMug || h.cat.Stock("p-kettle") != wantKettle {
				t.Errorf("stock mug %d kettle %d, want %d %d", h.cat.Stock("p-mug"), h.cat.Stock("p-kettle"), wantMug, wantKettle)
			}
			if got := h.metric("orders_in_flight"); got != 0 {
				t.Errorf("orders_in_flight = %v, want 0", got)
			}
			if got := h.metric("orders_completed_total", "status", string(c.wantStatus)); got != 1 {
				t.Errorf("completed{%s} = %v, want 1", c.wantStatus, got)
			}
		})
	}
}

// A call whose answer was lost may still take effect after compensation looked: the idempotent
// re-send in compensation pins its outcome, so the late call lands on what was already undone.
func TestLateCallAfterCompensation(t *testing.T) {
	cases := []struct {
		name       string
		arrange    func(h *harness)
		land       func(h *harness)
		wantReason string
	}{
		{"reserve", func(h *harness) { h.cat.FailNext("reserve", Late) }, func(h *harness) { h.cat.Land() }, "reserve_failed"},
		{"charge", func(h *harness) { h.pay.FailNext("charge", Late) }, func(h *harness) { h.pay.Land() }, "charge_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			c.arrange(h)
			o := h.mustPlace(order("k", Item{ProductID: "p-mug", Quantity: 3}))
			if o.Status != StatusCancelled || o.Reason != c.wantReason {
				t.Fatalf("order = %s %q, want cancelled %q", o.Status, o.Reason, c.wantReason)
			}
			c.land(h)
			CheckConsistent(t, o, h.cat, h.pay)
			if got := h.cat.Stock("p-mug"); got != initialStock("p-mug") {
				t.Errorf("mug stock = %d after the late call, want %d", got, initialStock("p-mug"))
			}
		})
	}
}

// A reservation that expired before the commit: the stock is gone, the money is refunded.
func TestCommitAfterReservationExpired(t *testing.T) {
	h := setup(t, testProducts...)
	h.open(func(o Order) error {
		if o.Status == StatusCharged {
			h.cat.Expire(t, o.ID)
		}
		return nil
	})
	o := h.mustPlace(order("k", Item{ProductID: "p-mug", Quantity: 4}))
	if o.Status != StatusCancelled || o.Reason != "reservation_not_held" {
		t.Fatalf("order = %s %q, want cancelled reservation_not_held", o.Status, o.Reason)
	}
	CheckConsistent(t, o, h.cat, h.pay)
	pays := h.pay.PaymentsOf(o.ID)
	if len(pays) != 1 || pays[0].Status != payments.StatusRefunded {
		t.Errorf("payments = %+v, want one refunded", pays)
	}
	if got := h.cat.Stock("p-mug"); got != initialStock("p-mug") {
		t.Errorf("mug stock = %d, want %d", got, initialStock("p-mug"))
	}
}

var errSimulatedCrash = errors.New("simulated crash")

// TestResumeAfterCrash aborts the saga right after a step is stored, as if the process died, and checks
// that a new Open on the same database finishes the order exactly once.
func TestResumeAfterCrash(t *testing.T) {
	cases := []struct {
		name       string
		crashAfter Status
		payments   []FaultKind // charge faults
		wantStatus Status
		wantReason string
	}{
		{name: "after reserved", crashAfter: StatusReserved, wantStatus: StatusConfirmed},
		{name: "after charged", crashAfter: StatusCharged, wantStatus: StatusConfirmed},
		{name: "after compensating", crashAfter: StatusCompensating, payments: []FaultKind{FailAfter},
			wantStatus: StatusCancelled, wantReason: "charge_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := setup(t, testProducts...)
			first := h.open(func(o Order) error {
				if o.Status == c.crashAfter {
					return errSimulatedCrash
				}
				return nil
			})
			h.pay.FailNext("charge", c.payments...)
			_, _, err := h.place(order("k", Item{ProductID: "p-mug", Quantity: 2}))
			if !errors.Is(err, errSimulatedCrash) {
				t.Fatalf("place: err = %v, want the simulated crash", err)
			}
			list, err := first.service.ListOrders(context.Background(), "c1")
			if err != nil || len(list) != 1 || list[0].Status != c.crashAfter {
				t.Fatalf("orders after the crash = %+v (err %v), want one %s", list, err, c.crashAfter)
			}
			id := list[0].ID
			first.Close()

			h.clock.Advance(grace + time.Second)
			h.open(nil) // resumes on Open
			o := h.get(id)
			if o.Status != c.wantStatus || o.Reason != c.wantReason {
				t.Fatalf("resumed order = %s %q, want %s %q", o.Status, o.Reason, c.wantStatus, c.wantReason)
			}
			CheckConsistent(t, o, h.cat, h.pay)
			if n := len(h.pay.PaymentsOf(id)); n != 1 {
				t.Errorf("%d payments for the order, want 1", n)
			}
			if got := h.metric("orders_completed_total", "status", string(c.wantStatus)); got != 1 {
				t.Errorf("completed{%s} after resume = %v, want 1", c.wantStatus, got)
			}
		})
	}
}

// TestResumerSkipsRecentAndClaimedOrders: the resumer leaves an order alone while it was updated within
// the grace period or a live request drives it, and retries compensation while a dependency is down.
func TestResumerSkipsRecentAndClaimedOrders(t *testing.T) {
	h := newHarness(t)
	h.cat.SetDown(true, "reserve")
	o := h.mustPlace(order("k", Item{ProductID: "p-mug", Quantity: 1}))
	if o.Status != StatusCompensating {
		t.Fatalf("order = %s, want compensating while catalog is down", o.Status)
	}
	ctx := context.Background()
	calls := h.cat.Calls("reserve")

	h.app.resumer.pass(ctx)
	h.clock.Advance(grace / 2)
	h.app.resumer.pass(ctx)
	if got := h.cat.Calls("reserve"); got != calls {
		t.Fatalf("resumer called reserve %d times within the grace period", got-calls)
	}

	h.clock.Advance(grace)
	h.app.resumer.pass(ctx) // catalog still down: stays compensating
	if got := h.get(o.ID); got.Status != StatusCompensating || h.cat.Calls("reserve") != calls+1 {
		t.Fatalf("after a pass with catalog down: %s, reserve calls %d, want compensating and one more call",
			got.Status, h.cat.Calls("reserve")-calls)
	}

	h.cat.SetDown(false, "reserve")
	if !h.app.saga.claim(o.ID) {
		t.Fatal("claim failed")
	}
	h.resume()
	if got := h.get(o.ID); got.Status != StatusCompensating {
		t.Fatalf("resumer drove an order a live request holds: %s", got.Status)
	}
	h.app.saga.unclaim(o.ID)
	h.resume()
	got := h.get(o.ID)
	if got.Status != StatusCancelled || got.Reason != "reserve_failed" {
		t.Fatalf("order = %s %q, want cancelled reserve_failed", got.Status, got.Reason)
	}
	CheckConsistent(t, got, h.cat, h.pay)
}

// A repeated request drives an order left in flight, instead of waiting for the resumer.
func TestRepeatDrivesOrderInFlight(t *testing.T) {
	h := newHarness(t)
	h.pay.SetDown(true, "charge")
	req := order("k", Item{ProductID: "p-kettle", Quantity: 2})
	o := h.mustPlace(req)
	if o.Status != StatusCompensating {
		t.Fatalf("order = %s, want compensating while payments is down", o.Status)
	}
	h.pay.SetDown(false, "charge")
	again, created, err := h.place(req)
	if err != nil || created || again.ID != o.ID {
		t.Fatalf("repeat = %+v created %v err %v, want the same order", again, created, err)
	}
	if again.Status != StatusCancelled || again.Reason != "charge_failed" {
		t.Fatalf("repeat = %s %q, want cancelled charge_failed", again.Status, again.Reason)
	}
	CheckConsistent(t, again, h.cat, h.pay)
}

func TestIdempotencyScopedPerCustomer(t *testing.T) {
	h := newHarness(t)
	req := order("k", Item{ProductID: "p-mug", Quantity: 1}, Item{ProductID: "p-kettle", Quantity: 1})
	first := h.mustPlace(req)

	reordered := order("k", Item{ProductID: "p-kettle", Quantity: 1}, Item{ProductID: "p-mug", Quantity: 1})
	again, created, err := h.place(reordered)
	if err != nil || created || again.ID != first.ID || again.Status != StatusConfirmed {
		t.Fatalf("repeat = %+v created %v err %v, want the first order", again, created, err)
	}

	changed := []PlaceOrderRequest{
		order("k", Item{ProductID: "p-mug", Quantity: 2}, Item{ProductID: "p-kettle", Quantity: 1}),
		order("k", Item{ProductID: "p-mug", Quantity: 1}),
		{CustomerID: "c1", IdempotencyKey: "k", CardNumber: "4242424242424242", Items: req.Items},
	}
	for _, r := range changed {
		_, _, err := h.place(r)
		if e, ok := platform.AsError(err); !ok || e.Status != 409 || e.Code != "idempotency_key_reused" {
			t.Errorf("place %+v: err = %v, want 409 idempotency_key_reused", r, err)
		}
	}

	other := req
	other.CustomerID = "c2"
	o2 := h.mustPlace(other)
	if o2.ID == first.ID || o2.CustomerID != "c2" {
		t.Errorf("another customer's order with the same key = %+v", o2)
	}
	if got := h.metric("orders_placed_total"); got != 2 {
		t.Errorf("orders_placed_total = %v, want 2", got)
	}
	if got := h.cat.Calls("reserve"); got != 2 {
		t.Errorf("reserve called %d times, want 2", got)
	}
}

func TestConcurrentRequestsWithOneKeyMakeOneOrder(t *testing.T) {
	h := newHarness(t)
	req := order("k", Item{ProductID: "p-mug", Quantity: 1})
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		created int
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, c, err := h.place(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("place: %v", err)
				return
			}
			ids[o.ID]++
			if c {
				created++
			}
		}()
	}
	wg.Wait()
	if len(ids) != 1 || created != 1 {
		t.Fatalf("ids %v, created %d: want one order created once", ids, created)
	}
	for id := range ids {
		if o := h.get(id); o.Status != StatusConfirmed {
			t.Errorf("order = %s, want confirmed", o.Status)
		}
	}
	if h.cat.Calls("reserve") != 1 || h.pay.Calls("charge") != 1 || h.cat.Calls("commit") != 1 {
		t.Errorf("calls reserve %d charge %d commit %d, want one each",
			h.cat.Calls("reserve"), h.pay.Calls("charge"), h.cat.Calls("commit"))
	}
}

// Closing the service while a call hangs leaves the order where it is (not compensated) for the next start.
func TestCloseLeavesOrderForRestart(t *testing.T) {
	h := newHarness(t)
	h.cat.FailNext("reserve", Block)
	type result struct {
		o   Order
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, _, err := h.place(order("k", Item{ProductID: "p-mug", Quantity: 1}))
		done <- result{o, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for h.cat.Calls("reserve") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("reserve never called")
		}
		time.Sleep(time.Millisecond)
	}
	list, err := h.app.service.ListOrders(context.Background(), "c1")
	if err != nil || len(list) != 1 {
		t.Fatalf("orders = %+v, %v", list, err)
	}
	if err := h.app.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	r := <-done
	if e, ok := platform.AsError(r.err); !ok || e.Status != 503 {
		t.Fatalf("place during shutdown: %+v, %v; want 503 shutting_down", r.o, r.err)
	}
	h.clock.Advance(grace + time.Second)
	h.open(nil) // resumes on Open
	o := h.get(list[0].ID)
	if o.Status != StatusConfirmed {
		t.Fatalf("order after restart = %s %q, want confirmed", o.Status, o.Reason)
	}
	CheckConsistent(t, o, h.cat, h.pay)
	if got := h.cat.Calls("release"); got != 0 {
		t.Errorf("release called %d times: the shutdown was taken for a failure", got)
	}
}

func TestListOrdersNewestFirst(t *testing.T) {
	h := setup(t, catalog.Product{ID: "p-mug", PriceCents: 100, Stock: 1000})
	h.open(nil)
	var ids []string
	for i := range ListLimit + 1 {
		if i%2 == 0 {
			h.clock.Advance(time.Second) // pairs share a creation time: insertion order breaks the tie
		}
		ids = append(ids, h.mustPlace(order(fmt.Sprint("k", i), Item{ProductID: "p-mug", Quantity: 1})).ID)
	}
	other := order("k0", Item{ProductID: "p-mug", Quantity: 1})
	other.CustomerID = "c2"
	h.mustPlace(other)

	list, err := h.app.service.ListOrders(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != ListLimit {
		t.Fatalf("%d orders, want %d", len(list), ListLimit)
	}
	for i, o := range list {
		if want := ids[len(ids)-1-i]; o.ID != want || o.CustomerID != "c1" {
			t.Fatalf("list[%d] = %s (%s), want %s", i, o.ID, o.CustomerID, want)
		}
	}
	if list, err := h.app.service.ListOrders(context.Background(), "nobody"); err != nil || list == nil || len(list) != 0 {
		t.Errorf("list of a customer without orders = %v, %v; want an empty list", list, err)
	}
}

func TestPlaceOrderValidation(t *testing.T) {
	items := func(n int) []Item {
		out := make([]Item, n)
		for i := range out {
			out[i] = Item{ProductID: fmt.Sprint("p", i), Quantity: 1}
		}
		return out
	}
	long := func(n int) string { return string(make([]byte, n)) }
	mug := []Item{{ProductID: "p-mug", Quantity: 1}}
	cases := []struct {
		name     string
		req      PlaceOrderRequest
		wantCode string
	}{
		{"no idempotency key", PlaceOrderRequest{CustomerID: "c", Items: mug}, "missing_idempotency_key"},
		{"idempotency key too long", PlaceOrderRequest{CustomerID: "c", Items: mug, IdempotencyKey: long(256)}, "invalid_argument"},
		{"no customer", PlaceOrderRequest{Items: mug, IdempotencyKey: "k"}, "invalid_argument"},
		{"customer too long", PlaceOrderRequest{CustomerID: long(129), Items: mug, IdempotencyKey: "k"}, "invalid_argument"},
		{"no items", PlaceOrderRequest{CustomerID: "c", IdempotencyKey: "k"}, "invalid_argument"},
		{"51 items", PlaceOrderRequest{CustomerID: "c", Items: items(51), IdempotencyKey: "k"}, "invalid_argument"},
		{"zero quantity", order("k", Item{ProductID: "p-mug"}), "invalid_argument"},
		{"negative quantity", order("k", Item{ProductID: "p-mug", Quantity: -1}), "invalid_argument"},
		{"quantity over 10000", order("k", Item{ProductID: "p-mug", Quantity: 10001}), "invalid_argument"},
		{"empty product id", order("k", Item{Quantity: 1}), "invalid_argument"},
		{"product id too long", order("k", Item{ProductID: long(129), Quantity: 1}), "invalid_argument"},
		{"duplicate product", order("k", Item{ProductID: "p-mug", Quantity: 1}, Item{ProductID: "p-mug", Quantity: 2}), "invalid_argument"},
		{"card with letters", PlaceOrderRequest{CustomerID: "c", Items: mug, IdempotencyKey: "k", CardNumber: "4242x42424242424"}, "invalid_argument"},
		{"card too short", PlaceOrderRequest{CustomerID: "c", Items: mug, IdempotencyKey: "k", CardNumber: "42424242424"}, "invalid_argument"},
		{"card too long", PlaceOrderRequest{CustomerID: "c", Items: mug, IdempotencyKey: "k", CardNumber: "42424242424242424242"}, "invalid_argument"},
	}
	h := newHarness(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := h.place(c.req)
			if e, ok := platform.AsError(err); !ok || e.Status != 400 || e.Code != c.wantCode {
				t.Errorf("err = %v, want 400 %s", err, c.wantCode)
			}
		})
	}
	valid := []PlaceOrderRequest{
		{CustomerID: long(128), Items: items(50), IdempotencyKey: long(255)},
		{CustomerID: "c", Items: []Item{{ProductID: "p-mug", Quantity: 10000}}, IdempotencyKey: "k", CardNumber: "424242424242"},
		{CustomerID: "c", Items: mug, IdempotencyKey: "k2", CardNumber: "4242424242424242424"},
	}
	for _, r := range valid {
		if err := validatePlaceOrder(r); err != nil {
			t.Errorf("validate %d items, card %q: %v", len(r.Items), r.CardNumber, err)
		}
	}
	if h.cat.Calls("reserve") != 0 {
		t.Errorf("invalid requests reached the catalog %d times", h.cat.Calls("reserve"))
	}
}

func TestConfigFromEnv(t *testing.T) {
	// Service auth has no default: it needs a secret or SERVICE_AUTH=off.
	env := platform.EnvFrom(map[string]string{"SERVICE_AUTH": "off"})
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.Addr != ":8082" || cfg.DB != "orders.db" || cfg.ResumeInterval != 5*time.Second || cfg.ResumeGrace != 2*time.Second ||
		cfg.SagaTimeout != 10*time.Second || cfg.CatalogURL != "http://127.0.0.1:8081" || cfg.PaymentsURL != "http://127.0.0.1:8083" ||
		cfg.LogLevel != slog.LevelInfo || cfg.ShutdownTimeout != 10*time.Second {
		t.Errorf("defaults = %+v", cfg)
	}
	env = platform.EnvFrom(map[string]string{
		"ORDERS_RESUME_INTERVAL": "0s", "ORDERS_RESUME_GRACE": "soon", "CATALOG_URL": "ftp://x", "PAYMENTS_URL": "nohost",
		"LOG_LEVEL": "loud", "ORDERS_SAGA_TIMEOUT": "-1s",
	})
	ConfigFromEnv(env)
	err := env.Err()
	for _, want := range []string{"ORDERS_RESUME_INTERVAL", "ORDERS_RESUME_GRACE", "CATALOG_URL", "PAYMENTS_URL", "LOG_LEVEL", "ORDERS_SAGA_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad %s not reported: %v", want, err)
		}
	}
}
