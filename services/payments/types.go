package payments

import "time"

// Status is the state of a payment.
type Status string

const (
	StatusCaptured Status = "captured"
	StatusDeclined Status = "declined"
	StatusRefunded Status = "refunded"
)

// Decline reasons: business outcomes carried in a 201 answer, never transport errors.
const (
	DeclineAmountOverLimit = "amount_over_limit"
	DeclineCardDeclined    = "card_declined"
)

// DecliningCard is the test card number that is always declined.
const DecliningCard = "4000000000000002"

// Payment is one charge attempt and its outcome.
type Payment struct {
	ID            string    `json:"id"`
	OrderID       string    `json:"order_id"`
	AmountCents   int64     `json:"amount_cents"`
	Status        Status    `json:"status"`
	DeclineReason string    `json:"decline_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

// ChargeRequest asks to charge an order. IdempotencyKey travels in the Idempotency-Key header, not the body.
type ChargeRequest struct {
	OrderID        string `json:"order_id"`
	AmountCents    int64  `json:"amount_cents"`
	CardNumber     string `json:"card_number,omitempty"`
	IdempotencyKey string `json:"-"`
}

// IdempotencyKeyValue makes the typed client send the Idempotency-Key header and lets retries happen.
func (r ChargeRequest) IdempotencyKeyValue() string { return r.IdempotencyKey }

// ListPaymentsResponse is the answer of GET /payments?order_id=…: every payment of the order, oldest first.
type ListPaymentsResponse struct {
	Payments []Payment `json:"payments"`
}
