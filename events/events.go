// Package events is the shop's asynchronous messaging over NATS JetStream: the versioned event schemas
// (this file, the one place they are defined), the transactional outbox every producing service writes in
// the same SQLite transaction as its state change (outbox.go), the relay that publishes the outbox with
// JetStream acks (relay.go), and the idempotent durable consumer with redelivery backoff and a
// dead-letter subject (consumer.go). See docs/patterns/outbox.md.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

// Event is the envelope every event travels in, as JSON. Data holds the payload of Type at Version.
type Event struct {
	// ID is unique per event; it is the JetStream Nats-Msg-Id (publish dedup) and the key of the
	// consumers' processed-event tables.
	ID      string `json:"id"`
	Type    string `json:"type"`
	Version int    `json:"version"`
	// Time is when the state change happened (RFC 3339 UTC).
	Time time.Time `json:"time"`
	// Source is the producing service.
	Source string `json:"source"`
	// CorrelationID is the request id of the request that caused the change, so an event's logs join
	// the request's.
	CorrelationID string `json:"correlation_id,omitempty"`
	// TraceParent is the W3C traceparent of the request that caused the change (as the CloudEvents
	// distributed-tracing extension has it), so the outbox row keeps it until the relay sends it on as
	// the message's traceparent header, where consumers read it.
	TraceParent string          `json:"traceparent,omitempty"`
	Data        json.RawMessage `json:"data"`
}

// Payload is the typed body of an event. Every payload type is declared in this file.
type Payload interface {
	// EventType names the event: OrderPlaced, StockReserved, ….
	EventType() string
	validate() error
}

// Event types.
const (
	TypeOrderPlaced     = "OrderPlaced"
	TypeOrderConfirmed  = "OrderConfirmed"
	TypeOrderRejected   = "OrderRejected"
	TypeOrderCancelled  = "OrderCancelled"
	TypeStockReserved   = "StockReserved"
	TypeStockReleased   = "StockReleased"
	TypePaymentCaptured = "PaymentCaptured"
	TypePaymentRefunded = "PaymentRefunded"
)

// Streams and their subjects. Each producer owns one stream; DEADLETTER holds what consumers gave up on.
const (
	StreamOrders     = "ORDERS"
	StreamCatalog    = "CATALOG"
	StreamPayments   = "PAYMENTS"
	StreamDeadLetter = "DEADLETTER"

	// DeadLetterPrefix + consumer name is where a consumer puts a message it gave up on.
	DeadLetterPrefix = "deadletter."
)

// schema is what is known about one event type: the version producers write and consumers accept, the
// subject it is published on, and its payload type.
type schema struct {
	version int
	subject string
	source  string
	payload func() Payload
}

// schemaOf returns the schema of an event type.
func schemaOf(eventType string) (schema, bool) {
	switch eventType {
	case TypeOrderPlaced:
		return schema{1, "orders.placed", "orders", func() Payload { return &OrderPlaced{} }}, true
	case TypeOrderConfirmed:
		return schema{1, "orders.confirmed", "orders", func() Payload { return &OrderConfirmed{} }}, true
	case TypeOrderRejected:
		return schema{1, "orders.rejected", "orders", func() Payload { return &OrderRejected{} }}, true
	case TypeOrderCancelled:
		return schema{1, "orders.cancelled", "orders", func() Payload { return &OrderCancelled{} }}, true
	case TypeStockReserved:
		return schema{1, "catalog.stock_reserved", "catalog", func() Payload { return &StockReserved{} }}, true
	case TypeStockReleased:
		return schema{1, "catalog.stock_released", "catalog", func() Payload { return &StockReleased{} }}, true
	case TypePaymentCaptured:
		return schema{1, "payments.captured", "payments", func() Payload { return &PaymentCaptured{} }}, true
	case TypePaymentRefunded:
		return schema{1, "payments.refunded", "payments", func() Payload { return &PaymentRefunded{} }}, true
	}
	return schema{}, false
}

// Subject returns the subject events of eventType are published on.
func Subject(eventType string) string {
	s, _ := schemaOf(eventType)
	return s.subject
}

// Item is a quantity of one product.
type Item struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// OrderPlaced (v1): an order was accepted; its saga starts.
type OrderPlaced struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Items      []Item `json:"items"`
}

// OrderConfirmed (v1): stock committed and payment captured. ReservationID and PaymentID are those of
// the saga; either may be empty for an order confirmed by compensation that proved a lost commit.
type OrderConfirmed struct {
	OrderID       string `json:"order_id"`
	CustomerID    string `json:"customer_id"`
	TotalCents    int64  `json:"total_cents"`
	ReservationID string `json:"reservation_id"`
	PaymentID     string `json:"payment_id"`
}

// OrderRejected (v1): a business outcome (out of stock, unknown product, declined payment) ended the
// order; nothing is held or captured for it.
type OrderRejected struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
}

// OrderCancelled (v1): a technical failure ended the order after compensation; nothing is held or
// captured for it.
type OrderCancelled struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
}

// StockReserved (v1): stock is held for an order until ExpiresAt.
type StockReserved struct {
	ReservationID string    `json:"reservation_id"`
	OrderID       string    `json:"order_id"`
	Items         []Item    `json:"items"`
	TotalCents    int64     `json:"total_cents"`
	ExpiresAt     time.Time `json:"expires_at"`
}

// Causes of a StockReleased.
const (
	ReleaseReleased = "released" // the saga released it (compensation)
	ReleaseExpired  = "expired"  // it passed its expiry
)

// StockReleased (v1): a held reservation's stock went back (Cause: released or expired).
type StockReleased struct {
	ReservationID string `json:"reservation_id"`
	OrderID       string `json:"order_id"`
	Items         []Item `json:"items"`
	Cause         string `json:"cause"`
}

// PaymentCaptured (v1): money was taken for an order.
type PaymentCaptured struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentRefunded (v1): a captured payment was given back.
type PaymentRefunded struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

func (OrderPlaced) EventType() string     { return TypeOrderPlaced }
func (OrderConfirmed) EventType() string  { return TypeOrderConfirmed }
func (OrderRejected) EventType() string   { return TypeOrderRejected }
func (OrderCancelled) EventType() string  { return TypeOrderCancelled }
func (StockReserved) EventType() string   { return TypeStockReserved }
func (StockReleased) EventType() string   { return TypeStockReleased }
func (PaymentCaptured) EventType() string { return TypePaymentCaptured }
func (PaymentRefunded) EventType() string { return TypePaymentRefunded }

func (p OrderPlaced) validate() error {
	return firstError(required("order_id", p.OrderID), required("customer_id", p.CustomerID), validItems(p.Items))
}

// validate asks only for what identifies the order: a producer must never be kept from recording that
// an order completed (its saga would stall) by a detail it lacks.
func (p OrderConfirmed) validate() error {
	return firstError(required("order_id", p.OrderID), required("customer_id", p.CustomerID))
}
func (p OrderRejected) validate() error {
	return firstError(required("order_id", p.OrderID), required("customer_id", p.CustomerID), required("reason", p.Reason))
}
func (p OrderCancelled) validate() error {
	return firstError(required("order_id", p.OrderID), required("customer_id", p.CustomerID), required("reason", p.Reason))
}
func (p StockReserved) validate() error {
	var exp error
	if p.ExpiresAt.IsZero() {
		exp = invalid("expires_at is required")
	}
	return firstError(required("reservation_id", p.ReservationID), required("order_id", p.OrderID), validItems(p.Items),
		positive("total_cents", p.TotalCents), exp)
}
func (p StockReleased) validate() error {
	var cause error
	if p.Cause != ReleaseReleased && p.Cause != ReleaseExpired {
		cause = invalid("cause must be %q or %q, not %q", ReleaseReleased, ReleaseExpired, p.Cause)
	}
	return firstError(required("reservation_id", p.ReservationID), required("order_id", p.OrderID), validItems(p.Items), cause)
}
func (p PaymentCaptured) validate() error {
	return firstError(required("payment_id", p.PaymentID), required("order_id", p.OrderID), positive("amount_cents", p.AmountCents))
}
func (p PaymentRefunded) validate() error {
	return firstError(required("payment_id", p.PaymentID), required("order_id", p.OrderID), positive("amount_cents", p.AmountCents))
}

// New builds the envelope of p, with a fresh id, the version and source of p's schema, time at (UTC)
// and the correlation id. It fails when p is not valid: a producer never writes an event its consumers
// would refuse.
func New(p Payload, at time.Time, correlationID string) (Event, error) {
	s, ok := schemaOf(p.EventType())
	if !ok {
		return Event{}, fmt.Errorf("events: unknown event type %q", p.EventType())
	}
	if err := p.validate(); err != nil {
		return Event{}, fmt.Errorf("events: %s: %w", p.EventType(), err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Event{}, fmt.Errorf("events: encode %s: %w", p.EventType(), err)
	}
	return Event{ID: platform.NewID(), Type: p.EventType(), Version: s.version, Time: at.UTC(), Source: s.source,
		CorrelationID: correlationID, Data: data}, nil
}

// Subject is the subject e is published on.
func (e Event) Subject() string { return Subject(e.Type) }

// ErrInvalid marks an event that can never be decoded (malformed, unknown type or version, a bad
// field): retrying it cannot help, so consumers dead-letter it at once.
var ErrInvalid = errors.New("invalid event")

// Decode strictly decodes an event: the envelope and its payload reject unknown fields and trailing
// data (platform.DecodeStrict), the type must be known and the version one this build reads, and the
// payload must be valid. Every failure wraps ErrInvalid.
func Decode(raw []byte) (Event, Payload, error) {
	var e Event
	if err := platform.DecodeStrict(raw, &e); err != nil {
		return Event{}, nil, fmt.Errorf("%w: envelope: %v", ErrInvalid, err)
	}
	switch {
	case e.ID == "":
		return Event{}, nil, fmt.Errorf("%w: id is required", ErrInvalid)
	case e.Time.IsZero():
		return Event{}, nil, fmt.Errorf("%w: time is required", ErrInvalid)
	case len(e.Data) == 0:
		return Event{}, nil, fmt.Errorf("%w: data is required", ErrInvalid)
	}
	s, ok := schemaOf(e.Type)
	if !ok {
		return Event{}, nil, fmt.Errorf("%w: unknown type %q", ErrInvalid, e.Type)
	}
	if e.Version != s.version {
		return Event{}, nil, fmt.Errorf("%w: %s version %d; this build reads version %d", ErrInvalid, e.Type, e.Version, s.version)
	}
	p := s.payload()
	if err := platform.DecodeStrict(e.Data, p); err != nil {
		return Event{}, nil, fmt.Errorf("%w: %s data: %v", ErrInvalid, e.Type, err)
	}
	if err := p.validate(); err != nil {
		return Event{}, nil, fmt.Errorf("%w: %s: %v", ErrInvalid, e.Type, err)
	}
	return e, deref(p), nil
}

// deref turns the *T the decoder filled into the T producers pass, so consumers switch on value types.
func deref(p Payload) Payload {
	switch v := p.(type) {
	case *OrderPlaced:
		return *v
	case *OrderConfirmed:
		return *v
	case *OrderRejected:
		return *v
	case *OrderCancelled:
		return *v
	case *StockReserved:
		return *v
	case *StockReleased:
		return *v
	case *PaymentCaptured:
		return *v
	case *PaymentRefunded:
		return *v
	}
	return p
}

func required(field, v string) error {
	if v == "" {
		return invalid("%s is required", field)
	}
	return nil
}

func positive(field string, v int64) error {
	if v <= 0 {
		return invalid("%s must be positive, not %d", field, v)
	}
	return nil
}

func validItems(items []Item) error {
	if len(items) == 0 {
		return invalid("items must hold at least one item")
	}
	for i, it := range items {
		if it.ProductID == "" || it.Quantity <= 0 {
			return invalid("items[%d] needs a product_id and a positive quantity", i)
		}
	}
	return nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func invalid(format string, args ...any) error {
	return platform.Errorf(http.StatusBadRequest, "invalid_event", format, args...)
}
