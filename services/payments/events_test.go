package payments

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/services/platform"
)

// outboxEvent is an event of the payments outbox with its decoded payload.
type outboxEvent struct {
	events.Event
	payload events.Payload
}

// outboxEvents decodes every event in the payments outbox, oldest first.
func outboxEvents(t *testing.T, db *sql.DB) []outboxEvent {
	t.Helper()
	rows, err := db.Query(`SELECT payload FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxEvent
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		ev, p, err := events.Decode(raw)
		if err != nil {
			t.Fatalf("outbox row %s: %v", raw, err)
		}
		out = append(out, outboxEvent{ev, p})
	}
	return out
}

// TestPaymentChangesWriteOutboxEvents: a capture and a refund each write one event in their
// transaction; a decline, a replayed charge and a repeated refund write none.
func TestPaymentChangesWriteOutboxEvents(t *testing.T) {
	f := newFixture(t)
	ctx := platform.WithRequestID(context.Background(), "req-7")
	p, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o-1", AmountCents: 1200, IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o-1", AmountCents: 1200, IdempotencyKey: "k1"}); err != nil {
		t.Fatal(err)
	}
	d, _, err := f.svc.Charge(ctx, ChargeRequest{OrderID: "o-2", AmountCents: 1200, CardNumber: DecliningCard, IdempotencyKey: "k2"})
	if err != nil || d.Status != StatusDeclined {
		t.Fatalf("declining charge = %+v, %v", d, err)
	}
	for range 2 {
		if _, err := f.svc.Refund(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	got := outboxEvents(t, f.svc.store.rd)
	want := []events.Payload{
		events.PaymentCaptured{PaymentID: p.ID, OrderID: "o-1", AmountCents: 1200},
		events.PaymentRefunded{PaymentID: p.ID, OrderID: "o-1", AmountCents: 1200},
	}
	if len(got) != len(want) {
		t.Fatalf("outbox holds %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].payload != want[i] || got[i].CorrelationID != "req-7" || !got[i].Time.Equal(testNow) || got[i].Source != "payments" {
			t.Errorf("event %d = %+v, want %+v at %s correlated to req-7", i, got[i], want[i], testNow)
		}
	}
}

// TestOpenPublishesPaymentsEvents runs Open as the main does with NATS_URL set: a capture made over
// HTTP reaches the PAYMENTS stream once.
func TestOpenPublishesPaymentsEvents(t *testing.T) {
	broker := natstest.Start(t)
	env := platform.EnvFrom(map[string]string{"PAYMENTS_DB": filepath.Join(t.TempDir(), "payments.db"),
		"NATS_URL": broker.URL(), "EVENTS_RELAY_INTERVAL": "20ms", "SERVICE_AUTH": "off"})
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	svc, closer, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if len(svc.Ready) != 2 || svc.Ready[1].Name != "events_relay" {
		t.Errorf("ready checks %+v, want db and events_relay", svc.Ready)
	}
	req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(`{"order_id":"o-9","amount_cents":990}`))
	req.Header.Set(platform.HeaderIdempotencyKey, "k-9")
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("charge: %d %s", rec.Code, rec.Body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs := natstest.Messages(t, broker.URL(), events.StreamPayments)
		if len(msgs) == 1 {
			ev, p, err := events.Decode(msgs[0])
			if err != nil || ev.Type != events.TypePaymentCaptured || p.(events.PaymentCaptured).OrderID != "o-9" {
				t.Fatalf("event %+v %+v %v", ev, p, err)
			}
			return
		}
		if len(msgs) > 1 || time.Now().After(deadline) {
			t.Fatalf("PAYMENTS stream holds %d events, want exactly the capture", len(msgs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
