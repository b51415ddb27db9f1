package orders

import "time"

// Status is where an order's saga is. pending → reserved → charged → confirmed are the happy path;
// compensating means a step failed and the saga is undoing what may have happened (releasing stock,
// refunding money) before it ends rejected or cancelled; pending_payment means payments could not be
// reached and the order waits, its stock held, for the charge to be retried. confirmed, rejected and
// cancelled are terminal.
type Status string

const (
	StatusPending  Status = "pending"
	StatusReserved Status = "reserved"
	StatusCharged  Status = "charged"
	// StatusPendingPayment is in flight: the charge failed technically (payments unavailable), the
	// reservation is held, and the resumer retries the charge with back-off (ORDERS_PENDING_PAYMENT).
	StatusPendingPayment Status = "pending_payment"
	// StatusCompensating is in flight: the saga is releasing stock and refunding money before it ends.
	StatusCompensating Status = "compensating"
	StatusConfirmed    Status = "confirmed"
	StatusRejected     Status = "rejected"
	StatusCancelled    Status = "cancelled"
)

// Terminal reports whether the saga of an order in status s has ended.
func (s Status) Terminal() bool {
	return s == StatusConfirmed || s == StatusRejected || s == StatusCancelled
}

// Item is a quantity of one product in an order.
type Item struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// Order is a customer's order and the state of its saga.
type Order struct {
	ID            string    `json:"id"`
	CustomerID    string    `json:"customer_id"`
	Items         []Item    `json:"items"`
	TotalCents    int64     `json:"total_cents"`
	Status        Status    `json:"status"`
	ReservationID string    `json:"reservation_id,omitempty"`
	PaymentID     string    `json:"payment_id,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// PlaceOrderRequest asks to place an order. IdempotencyKey travels in the Idempotency-Key header.
type PlaceOrderRequest struct {
	CustomerID     string `json:"customer_id"`
	Items          []Item `json:"items"`
	CardNumber     string `json:"card_number,omitempty"`
	IdempotencyKey string `json:"-"`
}

// IdempotencyKeyValue makes the typed client send the Idempotency-Key header and lets retries happen.
func (r PlaceOrderRequest) IdempotencyKeyValue() string { return r.IdempotencyKey }

// ListOrdersResponse is the answer of GET /orders?customer_id=….
type ListOrdersResponse struct {
	Orders []Order `json:"orders"`
}
