package payments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/platform"
)

// Service is the payments domain: charging orders, looking payments up and refunding them.
type Service interface {
	// Charge charges an order once per idempotency key. A decline is a successful answer with status
	// declined. created is false when the key was seen before: the payment is the one that key made.
	Charge(ctx context.Context, req ChargeRequest) (p Payment, created bool, err error)
	// GetPayment returns one payment (404 *platform.Error when unknown).
	GetPayment(ctx context.Context, id string) (Payment, error)
	// Refund refunds a captured payment; refunding a refunded one again returns it unchanged.
	Refund(ctx context.Context, id string) (Payment, error)
	// ListPayments returns every payment of an order, oldest first (empty when there is none).
	ListPayments(ctx context.Context, orderID string) ([]Payment, error)
}

// Input bounds. The amount bound keeps sums far from int64 overflow and rejects typos of the magnitude
// kind; the others bound what a caller can make us store.
const (
	MaxAmountCents       = 10_000_000_00
	MaxOrderIDLen        = 128
	MaxIdempotencyKeyLen = 255
	minCardDigits        = 12
	maxCardDigits        = 19
)

type service struct {
	store            *store
	declineOverCents int64
	now              func() time.Time
	metrics          *domainMetrics
}

func newService(st *store, declineOverCents int64, now func() time.Time, m *domainMetrics) *service {
	if now == nil {
		now = time.Now
	}
	return &service{store: st, declineOverCents: declineOverCents, now: now, metrics: m}
}

func (s *service) Charge(ctx context.Context, req ChargeRequest) (Payment, bool, error) {
	if err := validateCharge(req); err != nil {
		return Payment{}, false, err
	}
	p := Payment{
		ID:          platform.NewID(),
		OrderID:     req.OrderID,
		AmountCents: req.AmountCents,
		Status:      StatusCaptured,
		CreatedAt:   s.now().UTC(),
	}
	if reason := s.declineReason(req); reason != "" {
		p.Status, p.DeclineReason = StatusDeclined, reason
	}
	fingerprint := requestFingerprint(req)
	stored, storedFingerprint, created, err := s.store.createPayment(ctx, req.IdempotencyKey, fingerprint, p)
	if err != nil {
		return Payment{}, false, err
	}
	if storedFingerprint != fingerprint {
		return Payment{}, false, platform.Conflict("idempotency_key_reused",
			"the Idempotency-Key was already used for a different charge (payment %s)", stored.ID)
	}
	if created {
		s.metrics.charges.WithLabelValues(string(stored.Status)).Inc()
	}
	return stored, created, nil
}

// declineReason applies the issuer's rules; the amount limit is checked first.
func (s *service) declineReason(req ChargeRequest) string {
	switch {
	case req.AmountCents > s.declineOverCents:
		return DeclineAmountOverLimit
	case req.CardNumber == DecliningCard:
		return DeclineCardDeclined
	}
	return ""
}

func (s *service) GetPayment(ctx context.Context, id string) (Payment, error) {
	p, err := s.store.payment(ctx, id)
	if errors.Is(err, errPaymentNotFound) {
		return Payment{}, platform.NotFound("payment %q not found", id)
	}
	return p, err
}

func (s *service) Refund(ctx context.Context, id string) (Payment, error) {
	p, refunded, err := s.store.refund(ctx, id, s.now())
	switch {
	case errors.Is(err, errPaymentNotFound):
		return Payment{}, platform.NotFound("payment %q not found", id)
	case err != nil:
		return Payment{}, err
	case p.Status == StatusDeclined:
		return Payment{}, platform.Conflict("not_refundable", "payment %s was declined; only a captured payment can be refunded", id)
	}
	if refunded {
		s.metrics.refunds.Inc()
	}
	return p, nil
}

func (s *service) ListPayments(ctx context.Context, orderID string) ([]Payment, error) {
	if err := validateOrderID(orderID); err != nil {
		return nil, err
	}
	return s.store.paymentsByOrder(ctx, orderID)
}

func validateCharge(req ChargeRequest) error {
	if req.IdempotencyKey == "" {
		return platform.ErrMissingIdempotencyKey
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKeyLen || !printableASCII(req.IdempotencyKey) {
		return platform.BadRequest("invalid_argument", "the Idempotency-Key must be 1 to %d printable ASCII characters", MaxIdempotencyKeyLen)
	}
	if err := validateOrderID(req.OrderID); err != nil {
		return err
	}
	if req.AmountCents <= 0 || req.AmountCents > MaxAmountCents {
		return platform.BadRequest("invalid_argument", "amount_cents must be between 1 and %d, not %d", MaxAmountCents, req.AmountCents)
	}
	if req.CardNumber != "" && !validCardNumber(req.CardNumber) {
		return platform.BadRequest("invalid_argument", "card_number must be %d to %d digits", minCardDigits, maxCardDigits)
	}
	return nil
}

func validateOrderID(id string) error {
	if id == "" || len(id) > MaxOrderIDLen {
		return platform.BadRequest("invalid_argument", "order_id must be 1 to %d bytes", MaxOrderIDLen)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func validCardNumber(s string) bool {
	if len(s) < minCardDigits || len(s) > maxCardDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// requestFingerprint identifies a charge's body, so a reused key with another body is detected without
// storing the card number.
func requestFingerprint(req ChargeRequest) string {
	data, _ := json.Marshal(struct {
		OrderID     string `json:"o"`
		AmountCents int64  `json:"a"`
		CardNumber  string `json:"c"`
	}{req.OrderID, req.AmountCents, req.CardNumber})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// domainMetrics counts business events; each is counted once, when it happens, never on a replay.
type domainMetrics struct {
	charges *prometheus.CounterVec
	refunds prometheus.Counter
}

func newDomainMetrics(reg prometheus.Registerer) (*domainMetrics, error) {
	m := &domainMetrics{
		charges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payments_charges_total", Help: "Payments created, by outcome (captured or declined).",
		}, []string{"outcome"}),
		refunds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payments_refunds_total", Help: "Captured payments refunded.",
		}),
	}
	for _, c := range []prometheus.Collector{m.charges, m.refunds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Both outcomes exist from the start, so rates and ratios are defined before the first decline.
	m.charges.WithLabelValues(string(StatusCaptured))
	m.charges.WithLabelValues(string(StatusDeclined))
	return m, nil
}
