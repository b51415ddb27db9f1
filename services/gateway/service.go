package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// Catalog is what the gateway uses of the catalog service (satisfied by catalog/client.Client).
type Catalog interface {
	ListProducts(ctx context.Context) ([]catalog.Product, error)
	GetProduct(ctx context.Context, id string) (catalog.Product, error)
}

// Orders is what the gateway uses of the orders service (satisfied by orders/client.Client).
type Orders interface {
	PlaceOrder(ctx context.Context, req orders.PlaceOrderRequest) (o orders.Order, created bool, err error)
	GetOrder(ctx context.Context, id string) (orders.Order, error)
	ListOrders(ctx context.Context, customerID string) ([]orders.Order, error)
}

// Payments is what the gateway uses of the payments service (satisfied by payments/client.Client).
type Payments interface {
	GetPayment(ctx context.Context, id string) (payments.Payment, error)
}

// Service is the gateway's domain: it forwards to the downstreams on behalf of an authenticated customer,
// enforces that customers see only their own orders and payments, and aggregates order details. Errors
// are *platform.Error already mapped for the gateway's caller (see MapDownstreamError).
type Service interface {
	ListProducts(ctx context.Context) ([]catalog.Product, error)
	GetProduct(ctx context.Context, id string) (catalog.Product, error)
	// PlaceOrder places req for req.CustomerID; req.IdempotencyKey is the caller's key. created is false
	// when the key was used before and the answer is that earlier order.
	PlaceOrder(ctx context.Context, req orders.PlaceOrderRequest) (o orders.Order, created bool, err error)
	GetOrder(ctx context.Context, customerID, orderID string) (orders.Order, error)
	ListOrders(ctx context.Context, customerID string) ([]orders.Order, error)
	OrderDetails(ctx context.Context, customerID, orderID string) (OrderDetails, error)
	GetPayment(ctx context.Context, customerID, paymentID string) (payments.Payment, error)
}

// OrderDetails is the aggregate of GET /api/orders/{id}/details. When a part could not be fetched it is
// left out, Degraded is true and Problems says which part and why.
type OrderDetails struct {
	Order    orders.Order      `json:"order"`
	Items    []DetailItem      `json:"items"`
	Payment  *payments.Payment `json:"payment,omitempty"`
	Degraded bool              `json:"degraded"`
	Problems []Problem         `json:"problems,omitempty"`
}

// DetailItem is one line of an order with its product, when the catalog could tell.
type DetailItem struct {
	ProductID string           `json:"product_id"`
	Quantity  int64            `json:"quantity"`
	Product   *catalog.Product `json:"product,omitempty"`
}

// Problem says why a part of an aggregate is missing.
type Problem struct {
	Part    string `json:"part"` // "product" or "payment"
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// detailsFanOut bounds the concurrent product look-ups of one aggregate.
const detailsFanOut = 8

type service struct {
	catalog       Catalog
	orders        Orders
	payments      Payments
	isCircuitOpen func(error) bool
	partTimeout   time.Duration
	degraded      *prometheus.CounterVec
	now           func() time.Time
	logger        *slog.Logger
}

// NewService returns the gateway's Service over its downstreams, registering its metrics on reg.
func NewService(c Catalog, o Orders, p Payments, cfg Config, reg prometheus.Registerer, logger *slog.Logger) Service {
	degraded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_details_degraded_parts_total",
		Help: "Parts (product, payment) left out of an order details aggregate because a downstream failed.",
	}, []string{"part"})
	reg.MustRegister(degraded)
	return &service{catalog: c, orders: o, payments: p, isCircuitOpen: cfg.IsCircuitOpen,
		partTimeout: cfg.DetailsPartTimeout, degraded: degraded, now: cfg.now(), logger: logger}
}

// downstreamFailed logs a downstream failure in full (the caller gets only the mapped error).
func (s *service) downstreamFailed(ctx context.Context, link, op string, err error) *platform.Error {
	mapped := MapDownstreamError(link, err, s.isCircuitOpen)
	if mapped.Status >= 500 {
		s.logger.WarnContext(ctx, "downstream failed", "downstream", link, "op", op, "err", err.Error(),
			"status", mapped.Status)
	}
	return mapped
}

func (s *service) ListProducts(ctx context.Context) ([]catalog.Product, error) {
	ps, err := s.catalog.ListProducts(ctx)
	if err != nil {
		return nil, s.downstreamFailed(ctx, LinkCatalog, "list_products", err)
	}
	if ps == nil {
		ps = []catalog.Product{}
	}
	return ps, nil
}

func (s *service) GetProduct(ctx context.Context, id string) (catalog.Product, error) {
	p, err := s.catalog.GetProduct(ctx, id)
	if err != nil {
		return catalog.Product{}, s.downstreamFailed(ctx, LinkCatalog, "get_product", err)
	}
	return p, nil
}

func (s *service) PlaceOrder(ctx context.Context, req orders.PlaceOrderRequest) (orders.Order, bool, error) {
	req.IdempotencyKey = customerIdempotencyKey(req.CustomerID, req.IdempotencyKey)
	o, created, err := s.orders.PlaceOrder(ctx, req)
	if err != nil {
		return orders.Order{}, false, s.downstreamFailed(ctx, LinkOrders, "place_order", err)
	}
	if o.CustomerID != req.CustomerID { // cannot happen with scoped keys; never hand out another's order
		s.logger.ErrorContext(ctx, "orders answered another customer's order", "order_id", o.ID)
		return orders.Order{}, false, platform.Errorf(http.StatusBadGateway, CodeUpstreamUnavailable, "the orders service gave an inconsistent answer")
	}
	return o, created, nil
}

// customerIdempotencyKey scopes the caller's Idempotency-Key to the customer, so two customers who pick
// the same key never collide (nor see each other's order) in the orders service's idempotency store.
func customerIdempotencyKey(customerID, key string) string {
	sum := sha256.Sum256([]byte(customerID + "\x00" + key))
	return "gw-" + hex.EncodeToString(sum[:])
}

func (s *service) GetOrder(ctx context.Context, customerID, orderID string) (orders.Order, error) {
	o, err := s.orders.GetOrder(ctx, orderID)
	if err != nil {
		if e, ok := platform.AsError(err); ok && e.Status == http.StatusNotFound {
			return orders.Order{}, orderNotFound(orderID)
		}
		return orders.Order{}, s.downstreamFailed(ctx, LinkOrders, "get_order", err)
	}
	if o.CustomerID != customerID {
		return orders.Order{}, orderNotFound(orderID)
	}
	return o, nil
}

// orderNotFound is the one answer for an order that does not exist and one that belongs to another
// customer, so a caller cannot tell them apart.
func orderNotFound(id string) *platform.Error { return platform.NotFound("order %q not found", id) }

func paymentNotFound(id string) *platform.Error { return platform.NotFound("payment %q not found", id) }

func (s *service) ListOrders(ctx context.Context, customerID string) ([]orders.Order, error) {
	os, err := s.orders.ListOrders(ctx, customerID)
	if err != nil {
		return nil, s.downstreamFailed(ctx, LinkOrders, "list_orders", err)
	}
	mine := make([]orders.Order, 0, len(os))
	for _, o := range os {
		if o.CustomerID == customerID {
			mine = append(mine, o)
		}
	}
	return mine, nil
}

func (s *service) GetPayment(ctx context.Context, customerID, paymentID string) (payments.Payment, error) {
	p, err := s.payments.GetPayment(ctx, paymentID)
	if err != nil {
		if e, ok := platform.AsError(err); ok && e.Status == http.StatusNotFound {
			return payments.Payment{}, paymentNotFound(paymentID)
		}
		return payments.Payment{}, s.downstreamFailed(ctx, LinkPayments, "get_payment", err)
	}
	// A payment belongs to whoever owns its order.
	if _, err := s.GetOrder(ctx, customerID, p.OrderID); err != nil {
		if e, ok := platform.AsError(err); ok && e.Status == http.StatusNotFound {
			return payments.Payment{}, paymentNotFound(paymentID)
		}
		return payments.Payment{}, err
	}
	return p, nil
}

// OrderDetails fetches the order (failing as GetOrder does), then its products and its payment
// concurrently, each within partTimeout; a part that fails is reported in Problems instead of failing the
// whole answer.
func (s *service) OrderDetails(ctx context.Context, customerID, orderID string) (OrderDetails, error) {
	o, err := s.GetOrder(ctx, customerID, orderID)
	if err != nil {
		return OrderDetails{}, err
	}
	d := OrderDetails{Order: o, Items: make([]DetailItem, len(o.Items))}

	var productIDs []string
	products := map[string]*catalog.Product{}
	for _, it := range o.Items {
		if _, seen := products[it.ProductID]; !seen {
			products[it.ProductID] = nil
			productIDs = append(productIDs, it.ProductID)
		}
	}
	productErrs := make([]error, len(productIDs))
	fetched := make([]*catalog.Product, len(productIDs))
	var payment *payments.Payment
	var paymentErr error

	var wg sync.WaitGroup
	sem := make(chan struct{}, detailsFanOut)
	for i, id := range productIDs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, s.partTimeout)
			defer cancel()
			p, err := s.catalog.GetProduct(pctx, id)
			if err != nil {
				productErrs[i] = err
				return
			}
			fetched[i] = &p
		})
	}
	if o.PaymentID != "" {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.partTimeout)
			defer cancel()
			p, err := s.payments.GetPayment(pctx, o.PaymentID)
			if err != nil {
				paymentErr = err
				return
			}
			payment = &p
		})
	}
	wg.Wait()

	for i, id := range productIDs {
		if productErrs[i] != nil {
			d.problem(s.downstreamFailed(ctx, LinkCatalog, "get_product", productErrs[i]), "product", id)
			s.degraded.WithLabelValues("product").Inc()
			continue
		}
		products[id] = fetched[i]
	}
	for i, it := range o.Items {
		d.Items[i] = DetailItem{ProductID: it.ProductID, Quantity: it.Quantity, Product: products[it.ProductID]}
	}
	if paymentErr != nil {
		d.problem(s.downstreamFailed(ctx, LinkPayments, "get_payment", paymentErr), "payment", o.PaymentID)
		s.degraded.WithLabelValues("payment").Inc()
	}
	d.Payment = payment
	return d, nil
}

func (d *OrderDetails) problem(e *platform.Error, part, id string) {
	d.Degraded = true
	d.Problems = append(d.Problems, Problem{Part: part, ID: id, Code: e.Code, Message: e.Message})
}
