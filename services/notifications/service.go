package notifications

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/platform"
)

// Limits of the API.
const (
	MaxIDLength = 128
	// ListLimit is how many notifications GET /notifications returns, newest first.
	ListLimit = 100
)

// Service answers a customer's notifications. Bad input is a 4xx *platform.Error.
type Service interface {
	ListNotifications(ctx context.Context, customerID string) ([]Notification, error)
}

type service struct {
	store   *store
	created *prometheus.CounterVec
}

func newService(st *store, reg prometheus.Registerer) (*service, error) {
	created := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "notifications_created_total", Help: "Notifications stored, by event type (counted when the event's transaction commits).",
	}, []string{"event_type"})
	if err := reg.Register(created); err != nil {
		return nil, err
	}
	for _, t := range []string{events.TypeOrderPlaced, events.TypeOrderConfirmed, events.TypeOrderRejected, events.TypeOrderCancelled} {
		created.WithLabelValues(t)
	}
	return &service{store: st, created: created}, nil
}

func (s *service) ListNotifications(ctx context.Context, customerID string) ([]Notification, error) {
	if err := validateCustomerID(customerID); err != nil {
		return nil, err
	}
	return s.store.listByCustomer(ctx, customerID, ListLimit)
}

func validateCustomerID(id string) error {
	if id == "" || len(id) > MaxIDLength {
		return platform.BadRequest("invalid_argument", "customer_id must be 1 to %d bytes", MaxIDLength)
	}
	return nil
}

// handle is the consumer's handler: it stores the notification of an order event in tx, the
// transaction that also records the event as processed. Events of other types are not for customers.
func (s *service) handle(ctx context.Context, tx *sql.Tx, ev events.Event, p events.Payload) error {
	n, ok := notificationOf(ev, p)
	if !ok {
		return nil
	}
	_, err := insert(ctx, tx, n)
	return err
}

// applied counts a notification once its event's transaction committed.
func (s *service) applied(ev events.Event, p events.Payload) {
	if _, ok := notificationOf(ev, p); ok {
		s.created.WithLabelValues(ev.Type).Inc()
	}
}

// notificationOf words the notification of an order event.
func notificationOf(ev events.Event, p events.Payload) (Notification, bool) {
	n := Notification{ID: ev.ID, EventType: ev.Type, CreatedAt: ev.Time}
	switch v := p.(type) {
	case events.OrderPlaced:
		n.CustomerID, n.OrderID = v.CustomerID, v.OrderID
		n.Message = fmt.Sprintf("We received your order %s (%d item lines).", v.OrderID, len(v.Items))
	case events.OrderConfirmed:
		n.CustomerID, n.OrderID = v.CustomerID, v.OrderID
		n.Message = fmt.Sprintf("Your order %s is confirmed: %d.%02d charged.", v.OrderID, v.TotalCents/100, v.TotalCents%100)
	case events.OrderRejected:
		n.CustomerID, n.OrderID = v.CustomerID, v.OrderID
		n.Message = fmt.Sprintf("Your order %s was rejected (%s); nothing was charged.", v.OrderID, v.Reason)
	case events.OrderCancelled:
		n.CustomerID, n.OrderID = v.CustomerID, v.OrderID
		n.Message = fmt.Sprintf("Your order %s was cancelled (%s); any charge was refunded.", v.OrderID, v.Reason)
	default:
		return Notification{}, false
	}
	return n, true
}
