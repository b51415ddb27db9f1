package catalog

import (
	"context"
	"database/sql"
	"net/http"
	"testing"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/platform"
)

// outboxEvents decodes every event in the catalog's outbox, oldest first.
func outboxEvents(t *testing.T, db *sql.DB) []events.Payload {
	t.Helper()
	rows, err := db.Query(`SELECT payload FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []events.Payload
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		ev, p, err := events.Decode(raw)
		if err != nil {
			t.Fatalf("outbox row %s: %v", raw, err)
		}
		if ev.Source != "catalog" {
			t.Errorf("event %s from %q", ev.Type, ev.Source)
		}
		out = append(out, p)
	}
	return out
}

// TestStateChangesWriteOutboxEvents checks that each reservation change writes its event in the same
// transaction, and that repeats, refusals and commits write none.
func TestStateChangesWriteOutboxEvents(t *testing.T) {
	env := newTestService(t, 10)
	ctx := platform.WithRequestID(context.Background(), "req-42")
	db := env.store.read

	r, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-mug", Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-mug", Quantity: 2}}}); err != nil {
		t.Fatal(err)
	}
	_, _, err = env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-2", Items: []Item{{ProductID: "p-sold-out", Quantity: 1}}})
	wantError(t, err, http.StatusConflict, "out_of_stock")
	got := outboxEvents(t, db)
	if len(got) != 1 {
		t.Fatalf("outbox %+v, want one StockReserved (no event for a repeat or a refusal)", got)
	}
	reserved, ok := got[0].(events.StockReserved)
	if !ok || reserved.ReservationID != r.ID || reserved.OrderID != "o-1" || reserved.TotalCents != r.TotalCents ||
		!reserved.ExpiresAt.Equal(r.ExpiresAt) || len(reserved.Items) != 1 || reserved.Items[0] != (events.Item{ProductID: "p-mug", Quantity: 2}) {
		t.Errorf("event %+v, want StockReserved of %+v", got[0], r)
	}
	var correlation string
	if err := db.QueryRow(`SELECT json_extract(payload, '$.correlation_id') FROM outbox`).Scan(&correlation); err != nil || correlation != "req-42" {
		t.Errorf("correlation id %q (%v), want the request id req-42", correlation, err)
	}

	for range 2 { // the second release is a no-op and writes nothing
		if _, err := env.svc.Release(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	committed, _, _ := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-3", Items: []Item{{ProductID: "p-kettle", Quantity: 1}}})
	if _, err := env.svc.Commit(ctx, committed.ID); err != nil {
		t.Fatal(err)
	}
	late, _, _ := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-4", Items: []Item{{ProductID: "p-scale", Quantity: 1}}})
	swept, _, _ := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-5", Items: []Item{{ProductID: "p-grinder", Quantity: 3}}})
	env.clock.Advance(testTTL)
	_, err = env.svc.Commit(ctx, late.ID) // expires it on the spot
	wantError(t, err, http.StatusConflict, "reservation_not_held")
	if n, err := env.svc.ExpireReservations(ctx); err != nil || n != 1 {
		t.Fatalf("expired %d (%v), want 1", n, err)
	}

	got = outboxEvents(t, db)
	want := []events.Payload{
		reserved,
		events.StockReleased{ReservationID: r.ID, OrderID: "o-1", Items: []events.Item{{ProductID: "p-mug", Quantity: 2}}, Cause: events.ReleaseReleased},
		events.StockReserved{ReservationID: committed.ID, OrderID: "o-3", Items: []events.Item{{ProductID: "p-kettle", Quantity: 1}},
			TotalCents: committed.TotalCents, ExpiresAt: committed.ExpiresAt},
		events.StockReserved{ReservationID: late.ID, OrderID: "o-4", Items: []events.Item{{ProductID: "p-scale", Quantity: 1}},
			TotalCents: late.TotalCents, ExpiresAt: late.ExpiresAt},
		events.StockReserved{ReservationID: swept.ID, OrderID: "o-5", Items: []events.Item{{ProductID: "p-grinder", Quantity: 3}},
			TotalCents: swept.TotalCents, ExpiresAt: swept.ExpiresAt},
		events.StockReleased{ReservationID: late.ID, OrderID: "o-4", Items: []events.Item{{ProductID: "p-scale", Quantity: 1}}, Cause: events.ReleaseExpired},
		events.StockReleased{ReservationID: swept.ID, OrderID: "o-5", Items: []events.Item{{ProductID: "p-grinder", Quantity: 3}}, Cause: events.ReleaseExpired},
	}
	if len(got) != len(want) {
		t.Fatalf("outbox holds %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if !samePayload(got[i], want[i]) {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func samePayload(a, b events.Payload) bool {
	ra, ok1 := a.(events.StockReserved)
	rb, ok2 := b.(events.StockReserved)
	if ok1 && ok2 {
		return ra.ReservationID == rb.ReservationID && ra.OrderID == rb.OrderID && ra.TotalCents == rb.TotalCents &&
			ra.ExpiresAt.Equal(rb.ExpiresAt) && len(ra.Items) == len(rb.Items) && ra.Items[0] == rb.Items[0]
	}
	la, ok1 := a.(events.StockReleased)
	lb, ok2 := b.(events.StockReleased)
	return ok1 && ok2 && la.ReservationID == lb.ReservationID && la.OrderID == lb.OrderID && la.Cause == lb.Cause &&
		len(la.Items) == len(lb.Items) && la.Items[0] == lb.Items[0]
}

// A failed transaction leaves no event behind: an out-of-stock line after a reservable one rolls back
// the stock taken and the event with it.
func TestRolledBackReservationWritesNoEvent(t *testing.T) {
	env := newTestService(t, 1)
	_, _, err := env.svc.Reserve(context.Background(), ReserveRequest{OrderID: "o-1", Items: []Item{
		{ProductID: "p-mug", Quantity: 1}, {ProductID: "p-kettle", Quantity: 5}}})
	wantError(t, err, http.StatusConflict, "out_of_stock")
	if got := outboxEvents(t, env.store.read); len(got) != 0 {
		t.Errorf("outbox %+v after a refused reservation, want empty", got)
	}
	if n := env.stock(t, "p-mug"); n != 1 {
		t.Errorf("mug stock %d, want 1", n)
	}
}
