package orders

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// newPendingHarness runs orders over fakes with the pending_payment policy on.
func newPendingHarness(t *testing.T) *harness {
	t.Helper()
	h := setup(t, testProducts...)
	h.tweak = func(c *Config) { c.PendingPayment = true }
	h.open(nil)
	return h
}

// outboxEvent is an event of the orders outbox with its decoded payload.
type outboxEvent struct {
	events.Event
	payload events.Payload
}

// outbox decodes the orders outbox, oldest first.
func (h *harness) outbox() []outboxEvent {
	h.t.Helper()
	rows, err := h.app.store.db.Query(`SELECT payload FROM outbox ORDER BY seq`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxEvent
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			h.t.Fatal(err)
		}
		ev, p, err := events.Decode(raw)
		if err != nil {
			h.t.Fatalf("outbox row %s: %v", raw, err)
		}
		out = append(out, outboxEvent{ev, p})
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// eventTypes lists the types of the events about order id, in outbox order.
func eventTypes(evs []outboxEvent, id string) []string {
	var types []string
	for _, ev := range evs {
		if orderOf(ev.payload) == id {
			types = append(types, ev.Type)
		}
	}
	return types
}

func orderOf(p events.Payload) string {
	switch v := p.(type) {
	case events.OrderPlaced:
		return v.OrderID
	case events.OrderConfirmed:
		return v.OrderID
	case events.OrderRejected:
		return v.OrderID
	case events.OrderCancelled:
		return v.OrderID
	}
	return ""
}

func TestPaymentsDownOrderPendingThenConfirmed(t *testing.T) {
	h := newPendingHarness(t)
	h.pay.SetDown(true, "charge")
	req := order("k1", Item{ProductID: "p-mug", Quantity: 2})
	o := h.mustPlace(req)
	if o.Status != StatusPendingPayment || o.Reason != reasonPaymentUnavailable || o.ReservationID == "" {
		t.Fatalf("order while payments is down = %+v, want pending_payment with its reservation", o)
	}
	if res, _ := h.cat.ReservationOf(o.ID); res.Status != catalog.ReservationHeld || h.cat.Stock("p-mug") != initialStock("p-mug")-2 {
		t.Errorf("reservation %s, mug stock %d: want the stock held while payment is pending", res.Status, h.cat.Stock("p-mug"))
	}
	if got := h.metric("orders_pending_payment"); got != 1 {
		t.Errorf("orders_pending_payment = %v, want 1", got)
	}

	// Still down: each retry backs off further (1s, 2s, 4s…); the resumer skips an order before its time.
	h.resume() // +3s: the first retry (due after 1s) fails; the next is due 2s later
	h.resume() // +3s: the second fails; the next is due 4s later
	calls := h.pay.Calls("charge")
	h.resume() // +3s: not due yet
	if got := h.pay.Calls("charge"); got != calls {
		t.Errorf("charge called %d times before the back-off ran out, want %d", got, calls)
	}
	if calls != 3 {
		t.Errorf("charge called %d times, want 3 (the request's and two retries)", calls)
	}
	if got := h.get(o.ID); got.Status != StatusPendingPayment {
		t.Fatalf("order %s while payments is down, want pending_payment", got.Status)
	}
	if got := h.metric("orders_saga_steps_total", "step", stepRetryCharge, "outcome", outcomeError); got != 2 {
		t.Errorf("failed retries counted %v, want 2", got)
	}

	h.pay.SetDown(false, "charge")
	h.resume()
	o = h.get(o.ID)
	if o.Status != StatusConfirmed || o.Reason != "" {
		t.Fatalf("order after payments came back = %+v, want confirmed", o)
	}
	CheckConsistent(t, o, h.cat, h.pay)
	if got := h.metric("orders_pending_payment"); got != 0 {
		t.Errorf("orders_pending_payment = %v, want 0", got)
	}
	if got := eventTypes(h.outbox(), o.ID); strings.Join(got, ",") != "OrderPlaced,OrderConfirmed" {
		t.Errorf("events %v, want OrderPlaced then OrderConfirmed", got)
	}
}

func TestPendingPaymentDeclinedAfterRecovery(t *testing.T) {
	h := newPendingHarness(t)
	h.pay.SetDown(true, "charge")
	req := order("k1", Item{ProductID: "p-kettle", Quantity: 1})
	req.CardNumber = payments.DecliningCard
	o := h.mustPlace(req)
	if o.Status != StatusPendingPayment {
		t.Fatalf("order %s, want pending_payment", o.Status)
	}
	h.pay.SetDown(false, "charge")
	h.resume()
	o = h.get(o.ID)
	if o.Status != StatusRejected || o.Reason != payments.DeclineCardDeclined {
		t.Fatalf("order = %s %q, want rejected card_declined", o.Status, o.Reason)
	}
	CheckConsistent(t, o, h.cat, h.pay)
	if h.cat.Stock("p-kettle") != initialStock("p-kettle") {
		t.Errorf("kettle stock %d, want it back", h.cat.Stock("p-kettle"))
	}
	if got := eventTypes(h.outbox(), o.ID); strings.Join(got, ",") != "OrderPlaced,OrderRejected" {
		t.Errorf("events %v", got)
	}
}

// An order cannot wait past its reservation's hold: before catalog would expire it, the order is
// compensated (the charge's outcome is unknown, so compensation fences it once payments answers) and
// cancelled.
func TestPendingPaymentGivesUpBeforeHoldRunsOut(t *testing.T) {
	h := newPendingHarness(t)
	h.pay.SetDown(true, "charge")
	o := h.mustPlace(order("k1", Item{ProductID: "p-mug", Quantity: 1}))
	res, _ := h.cat.ReservationOf(o.ID)
	// Move on until less than one saga timeout (30s in the harness) of the hold is left once the
	// resumer's pass has advanced the clock past the grace.
	h.clock.Advance(res.ExpiresAt.Sub(h.clock.Now()) - 30*time.Second - grace)
	h.resume()
	o = h.get(o.ID)
	if o.Status != StatusCompensating || o.Reason != reasonPaymentUnavailable {
		t.Fatalf("order near the end of its hold = %s %q, want compensating payment_unavailable", o.Status, o.Reason)
	}
	h.pay.SetDown(false, "charge")
	h.resume()
	o = h.get(o.ID)
	if o.Status != StatusCancelled || o.Reason != reasonPaymentUnavailable {
		t.Fatalf("order = %s %q, want cancelled payment_unavailable", o.Status, o.Reason)
	}
	CheckConsistent(t, o, h.cat, h.pay)
	if h.cat.Held() != 0 || h.cat.Stock("p-mug") != initialStock("p-mug") {
		t.Errorf("held %d, mug stock %d: want everything released", h.cat.Held(), h.cat.Stock("p-mug"))
	}
}

// When payments answers again, every waiting order becomes due at once instead of waiting out its
// back-off.
func TestPaymentsAnswerWakesPendingOrders(t *testing.T) {
	h := newPendingHarness(t)
	h.pay.SetDown(true, "charge")
	waiting := h.mustPlace(order("k1", Item{ProductID: "p-mug", Quantity: 1}))
	for range 4 { // five failed attempts: the back-off is 16s by now
		h.clock.Advance(20 * time.Second)
		h.app.resumer.pass(context.Background())
	}
	rec, err := h.app.store.get(context.Background(), waiting.ID)
	if err != nil || rec.RetryAt.Before(h.clock.Now()) || rec.PaymentAttempts != 5 {
		t.Fatalf("waiting order %+v (%v): want 5 failed attempts and a retry in the future", rec, err)
	}
	h.pay.SetDown(false, "charge")
	if o := h.mustPlace(order("k2", Item{ProductID: "p-kettle", Quantity: 1})); o.Status != StatusConfirmed {
		t.Fatalf("new order %s, want confirmed", o.Status)
	}
	if rec, _ = h.app.store.get(context.Background(), waiting.ID); !rec.RetryAt.IsZero() {
		t.Errorf("retry_at %v after payments answered, want due at once", rec.RetryAt)
	}
	h.resume()
	if o := h.get(waiting.ID); o.Status != StatusConfirmed {
		t.Errorf("waiting order %s, want confirmed", o.Status)
	}
}

// With the policy off, a charge that fails technically is compensated at once (the chaos lab's "without").
func TestPendingPaymentOffCancels(t *testing.T) {
	h := newHarness(t)
	h.pay.SetDown(true, "charge")
	o := h.mustPlace(order("k1", Item{ProductID: "p-mug", Quantity: 1}))
	if o.Status != StatusCompensating && o.Status != StatusCancelled {
		t.Fatalf("order %s, want compensated", o.Status)
	}
	h.pay.SetDown(false, "charge")
	h.resume()
	if o = h.get(o.ID); o.Status != StatusCancelled || o.Reason != "charge_failed" {
		t.Errorf("order %s %q, want cancelled charge_failed", o.Status, o.Reason)
	}
}

func TestOrderEventsWrittenWithTheirTransitions(t *testing.T) {
	h := newHarness(t)
	ctx := platform.WithRequestID(context.Background(), "req-9")
	ok, _, err := h.app.service.PlaceOrder(ctx, order("k1", Item{ProductID: "p-mug", Quantity: 1}))
	if err != nil {
		t.Fatal(err)
	}
	rejected := h.mustPlace(order("k2", Item{ProductID: "p-kettle", Quantity: 99}))
	h.pay.FailNext("charge", FailBefore)
	cancelled := h.mustPlace(order("k3", Item{ProductID: "p-mug", Quantity: 1}))
	if _, created, _ := h.place(order("k1", Item{ProductID: "p-mug", Quantity: 1})); created {
		t.Fatal("a repeat created an order")
	}
	evs := h.outbox()
	for _, c := range []struct {
		o    Order
		want string
	}{{ok, "OrderPlaced,OrderConfirmed"}, {rejected, "OrderPlaced,OrderRejected"}, {cancelled, "OrderPlaced,OrderCancelled"}} {
		if got := strings.Join(eventTypes(evs, c.o.ID), ","); got != c.want {
			t.Errorf("order %s (%s): events %s, want %s", c.o.ID, c.o.Status, got, c.want)
		}
	}
	if len(evs) != 6 {
		t.Errorf("%d events, want 6 (a repeat writes none)", len(evs))
	}
	for _, ev := range evs[:2] {
		if ev.CorrelationID != "req-9" || ev.Source != "orders" {
			t.Errorf("event %s: correlation %q source %q, want req-9 from orders", ev.Type, ev.CorrelationID, ev.Source)
		}
	}
}

func TestPendingPaymentConfigFromEnv(t *testing.T) {
	cfg := ConfigFromEnv(platform.EnvFrom(map[string]string{}))
	if !cfg.PendingPayment || cfg.PendingPaymentRetryMax != DefaultPendingPaymentRetryMax || cfg.Events.URL != "" {
		t.Errorf("defaults: pending %v retry max %s events %+v", cfg.PendingPayment, cfg.PendingPaymentRetryMax, cfg.Events)
	}
	cfg = ConfigFromEnv(platform.EnvFrom(map[string]string{"ORDERS_PENDING_PAYMENT": "false", "NATS_URL": "nats://127.0.0.1:4222"}))
	if cfg.PendingPayment || cfg.Events.URL != "nats://127.0.0.1:4222" {
		t.Errorf("pending %v, events %+v", cfg.PendingPayment, cfg.Events)
	}
	env := platform.EnvFrom(map[string]string{"ORDERS_PENDING_PAYMENT": "maybe", "ORDERS_PENDING_PAYMENT_RETRY_MAX": "-1s"})
	ConfigFromEnv(env)
	for _, want := range []string{"ORDERS_PENDING_PAYMENT=", "ORDERS_PENDING_PAYMENT_RETRY_MAX"} {
		if err := env.Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad %s not reported: %v", want, err)
		}
	}
}
