package orders

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
)

// recordOrderEvent writes the event of r's current status into the outbox through tx: OrderPlaced for
// a new order, OrderConfirmed, OrderRejected or OrderCancelled when its saga ends. Other statuses have
// no event. The correlation id is the placing request's, whoever drives the order.
func recordOrderEvent(ctx context.Context, tx events.Execer, r record, at time.Time) error {
	var p events.Payload
	reason := r.Reason
	if reason == "" {
		reason = "unknown"
	}
	switch r.Status {
	case StatusPending:
		items := make([]events.Item, len(r.Items))
		for i, it := range r.Items {
			items[i] = events.Item{ProductID: it.ProductID, Quantity: it.Quantity}
		}
		p = events.OrderPlaced{OrderID: r.ID, CustomerID: r.CustomerID, Items: items}
	case StatusConfirmed:
		p = events.OrderConfirmed{OrderID: r.ID, CustomerID: r.CustomerID, TotalCents: r.TotalCents,
			ReservationID: r.ReservationID, PaymentID: r.PaymentID}
	case StatusRejected:
		p = events.OrderRejected{OrderID: r.ID, CustomerID: r.CustomerID, Reason: reason}
	case StatusCancelled:
		p = events.OrderCancelled{OrderID: r.ID, CustomerID: r.CustomerID, Reason: reason}
	default:
		return nil
	}
	ev, err := events.New(p, at, r.CorrelationID)
	if err != nil {
		return fmt.Errorf("order %s: %w", r.ID, err)
	}
	return events.Append(ctx, tx, ev)
}

// startRelay starts publishing the orders outbox when cfg has a broker URL; the outbox metrics are
// registered either way. Close the relay before the store.
func startRelay(ctx context.Context, cfg events.Config, st *store, logger *slog.Logger, reg prometheus.Registerer) (*events.Relay, error) {
	return events.StartRelay(ctx, cfg, events.RelayOptions{Service: "orders", DB: st.db, Logger: logger, Registry: reg,
		Now: st.now})
}
