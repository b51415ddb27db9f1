package orders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/resilience-lab/lab/services/platform"
)

// Limits of a PlaceOrderRequest.
const (
	MaxIDLength             = 128
	MaxIdempotencyKeyLength = 255
	MaxItems                = 50
	MaxQuantity             = 10000
	// ListLimit is how many orders GET /orders returns, newest first.
	ListLimit = 100
)

// Service places orders and reports them. Business outcomes and bad input are 4xx *platform.Error.
type Service interface {
	// PlaceOrder creates the order (or finds the one the customer placed with the same idempotency key)
	// and runs its saga as far as it goes; created is false for a repeat.
	PlaceOrder(ctx context.Context, req PlaceOrderRequest) (order Order, created bool, err error)
	GetOrder(ctx context.Context, id string) (Order, error)
	// ListOrders returns the customer's newest orders first, at most ListLimit.
	ListOrders(ctx context.Context, customerID string) ([]Order, error)
}

type service struct {
	store   *store
	saga    *saga
	metrics *metrics
}

func (s *service) PlaceOrder(ctx context.Context, req PlaceOrderRequest) (Order, bool, error) {
	if err := validatePlaceOrder(req); err != nil {
		return Order{}, false, err
	}
	rec, created, err := s.store.createOrGet(ctx, record{
		Order: Order{
			ID:         platform.NewID(),
			CustomerID: req.CustomerID,
			Items:      slices.Clone(req.Items),
			Status:     StatusPending,
		},
		IdempotencyKey: req.IdempotencyKey,
		RequestHash:    requestHash(req),
		CardNumber:     req.CardNumber,
		ChargeState:    chargeNone,
		CorrelationID:  platform.RequestID(ctx),
	})
	if err != nil {
		return Order{}, false, err
	}
	if created {
		s.metrics.placed.Inc()
	}
	if rec.Status.Terminal() {
		return rec.Order, created, nil
	}
	// A repeat of an order left in flight (its request died) drives it too, unless someone else is.
	rec, err = s.saga.run(ctx, rec.ID, nil)
	if err != nil {
		return Order{}, false, err
	}
	return rec.Order, created, nil
}

func (s *service) GetOrder(ctx context.Context, id string) (Order, error) {
	if err := validateID("id", id); err != nil {
		return Order{}, err
	}
	rec, err := s.store.get(ctx, id)
	return rec.Order, err
}

func (s *service) ListOrders(ctx context.Context, customerID string) ([]Order, error) {
	if err := validateID("customer_id", customerID); err != nil {
		return nil, err
	}
	return s.store.listByCustomer(ctx, customerID, ListLimit)
}

func validatePlaceOrder(req PlaceOrderRequest) error {
	if req.IdempotencyKey == "" {
		return platform.ErrMissingIdempotencyKey
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKeyLength {
		return invalid("the Idempotency-Key must be at most %d bytes", MaxIdempotencyKeyLength)
	}
	if err := validateID("customer_id", req.CustomerID); err != nil {
		return err
	}
	if len(req.Items) == 0 || len(req.Items) > MaxItems {
		return invalid("items must hold 1 to %d lines, not %d", MaxItems, len(req.Items))
	}
	seen := make(map[string]bool, len(req.Items))
	for i, it := range req.Items {
		if err := validateID(fmt.Sprintf("items[%d].product_id", i), it.ProductID); err != nil {
			return err
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return invalid("items[%d].quantity must be 1 to %d, not %d", i, MaxQuantity, it.Quantity)
		}
		if seen[it.ProductID] {
			return invalid("items[%d]: product %q appears twice; give one line per product", i, it.ProductID)
		}
		seen[it.ProductID] = true
	}
	if c := req.CardNumber; c != "" {
		if len(c) < 12 || len(c) > 19 || strings.Trim(c, "0123456789") != "" {
			return invalid("card_number must be 12 to 19 digits")
		}
	}
	return nil
}

func validateID(field, v string) error {
	if v == "" {
		return invalid("%s is required", field)
	}
	if len(v) > MaxIDLength {
		return invalid("%s must be at most %d bytes", field, MaxIDLength)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return platform.BadRequest("invalid_argument", format, args...)
}

// requestHash identifies what a request asks for, so a reused idempotency key with another request is
// told apart from a retry. Line order does not matter.
func requestHash(req PlaceOrderRequest) string {
	items := slices.Clone(req.Items)
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.ProductID, b.ProductID) })
	b, _ := json.Marshal(struct {
		CustomerID string `json:"customer_id"`
		Items      []Item `json:"items"`
		CardNumber string `json:"card_number"`
	}{req.CustomerID, items, req.CardNumber})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
