package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/breaker"
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
	ListProducts(ctx context.Context) (ProductList, error)
	GetProduct(ctx context.Context, id string) (Product, error)
	// PlaceOrder places req for req.CustomerID; req.IdempotencyKey is the caller's key. created is false
	// when the key was used before and the answer is that earlier order.
	PlaceOrder(ctx context.Context, req orders.PlaceOrderRequest) (o orders.Order, created bool, err error)
	GetOrder(ctx context.Context, customerID, orderID string) (orders.Order, error)
	ListOrders(ctx context.Context, customerID string) ([]orders.Order, error)
	OrderDetails(ctx context.Context, customerID, orderID string) (OrderDetails, error)
	GetPayment(ctx context.Context, customerID, paymentID string) (payments.Payment, error)
}

// ProductList is the answer of GET /api/products. Stale: the catalog failed and Products is the last
// list the gateway saw (Config.StaleCatalog).
type ProductList struct {
	Products []catalog.Product `json:"products"`
	Stale    bool              `json:"stale,omitempty"`
}

// Product is the answer of GET /api/products/{id}: the catalog's product, with Stale as in ProductList.
type Product struct {
	catalog.Product
	Stale bool `json:"stale,omitempty"`
}

func (l ProductList) isStale() bool { return l.Stale }
func (p Product) isStale() bool     { return p.Stale }

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
	stale         *catalogCache // nil: Config.StaleCatalog is off
	degraded      *prometheus.CounterVec
	staleAnswers  *prometheus.CounterVec
	now           func() time.Time
	logger        *slog.Logger
}

// NewService returns the gateway's Service over its downstreams, registering its metrics on reg.
func NewService(c Catalog, o Orders, p Payments, cfg Config, reg prometheus.Registerer, logger *slog.Logger) Service {
	degraded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_details_degraded_parts_total",
		Help: "Parts (product, payment) left out of an order details aggregate because a downstream failed.",
	}, []string{"part"})
	staleAnswers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_stale_answers_total",
		Help: "Product reads answered from the gateway's copy of the catalog because the catalog failed, by operation.",
	}, []string{"op"})
	reg.MustRegister(degraded, staleAnswers)
	isCircuitOpen := cfg.IsCircuitOpen
	if isCircuitOpen == nil {
		isCircuitOpen = func(err error) bool { return errors.Is(err, breaker.ErrOpen) }
	}
	s := &service{catalog: c, orders: o, payments: p, isCircuitOpen: isCircuitOpen,
		partTimeout: cfg.DetailsPartTimeout, degraded: degraded, staleAnswers: staleAnswers, now: cfg.now(), logger: logger}
	if cfg.StaleCatalog {
		s.stale = newCatalogCache()
	}
	return s
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

func (s *service) ListProducts(ctx context.Context) (ProductList, error) {
	ps, err := s.catalog.ListProducts(ctx)
	if err != nil {
		if s.stale != nil && servesStale(ctx, err) {
			if cached, ok := s.stale.lastList(); ok {
				s.answeredStale(ctx, "list_products", err)
				return ProductList{Products: cached, Stale: true}, nil
			}
		}
		return ProductList{}, s.downstreamFailed(ctx, LinkCatalog, "list_products", err)
	}
	if ps == nil {
		ps = []catalog.Product{}
	}
	if s.stale != nil {
		s.stale.putList(ps)
	}
	return ProductList{Products: ps}, nil
}

func (s *service) GetProduct(ctx context.Context, id string) (Product, error) {
	p, err := s.getProduct(ctx, id)
	if err != nil {
		if s.stale != nil && servesStale(ctx, err) {
			if cached, ok := s.stale.product(id); ok {
				s.answeredStale(ctx, "get_product", err)
				return Product{Product: cached, Stale: true}, nil
			}
		}
		return Product{}, s.downstreamFailed(ctx, LinkCatalog, "get_product", err)
	}
	return Product{Product: p}, nil
}

// getProduct asks the catalog for product id and keeps what it answers for stale answers.
func (s *service) getProduct(ctx context.Context, id string) (catalog.Product, error) {
	p, err := s.catalog.GetProduct(ctx, id)
	if err == nil && s.stale != nil {
		s.stale.putProduct(p)
	}
	return p, err
}

// answeredStale counts and logs a product read answered from the cache; the failure itself is logged
// here, as the caller never sees it.
func (s *service) answeredStale(ctx context.Context, op string, err error) {
	s.staleAnswers.WithLabelValues(op).Inc()
	s.logger.WarnContext(ctx, "catalog failed; answering from the stale copy", "downstream", LinkCatalog, "op", op,
		"err", err.Error())
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
			p, err := s.getProduct(pctx, id)
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
