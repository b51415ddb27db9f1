package gateway

import (
	"context"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/resilience-lab/lab/services/orders"
)

// Set holds one go-kit endpoint per gateway operation.
type Set struct {
	ListProducts endpoint.Endpoint
	GetProduct   endpoint.Endpoint
	PlaceOrder   endpoint.Endpoint
	GetOrder     endpoint.Endpoint
	ListOrders   endpoint.Endpoint
	OrderDetails endpoint.Endpoint
	GetPayment   endpoint.Endpoint
	// IssueToken is nil when dev tokens are off; the route then answers 404.
	IssueToken endpoint.Endpoint
}

// Requests of the endpoints. CustomerID always comes from the verified token, never from the caller's body.
type (
	listProductsRequest struct{}
	getProductRequest   struct{ ID string }
	getOrderRequest     struct{ CustomerID, OrderID string }
	listOrdersRequest   struct{ CustomerID string }
	getPaymentRequest   struct{ CustomerID, PaymentID string }
	// TokenRequest is the body of POST /api/token.
	TokenRequest struct {
		Subject    string `json:"subject"`
		TTLSeconds *int64 `json:"ttl_seconds,omitempty"`
	}
)

// placeOrderResponse tells the encoder to answer 201 for a new order and 200 for a repeated key.
type placeOrderResponse struct {
	Order   orders.Order
	Created bool
}

// NewEndpoints builds the Set over svc; auth (nil = no dev tokens) issues tokens of defaultTTL unless the
// request asks for another.
func NewEndpoints(svc Service, auth *Authenticator, defaultTTL time.Duration) Set {
	s := Set{
		ListProducts: func(ctx context.Context, _ any) (any, error) {
			return svc.ListProducts(ctx)
		},
		GetProduct: func(ctx context.Context, request any) (any, error) {
			return svc.GetProduct(ctx, request.(getProductRequest).ID)
		},
		PlaceOrder: func(ctx context.Context, request any) (any, error) {
			o, created, err := svc.PlaceOrder(ctx, request.(orders.PlaceOrderRequest))
			if err != nil {
				return nil, err
			}
			return placeOrderResponse{Order: o, Created: created}, nil
		},
		GetOrder: func(ctx context.Context, request any) (any, error) {
			req := request.(getOrderRequest)
			return svc.GetOrder(ctx, req.CustomerID, req.OrderID)
		},
		ListOrders: func(ctx context.Context, request any) (any, error) {
			os, err := svc.ListOrders(ctx, request.(listOrdersRequest).CustomerID)
			if err != nil {
				return nil, err
			}
			return orders.ListOrdersResponse{Orders: os}, nil
		},
		OrderDetails: func(ctx context.Context, request any) (any, error) {
			req := request.(getOrderRequest)
			return svc.OrderDetails(ctx, req.CustomerID, req.OrderID)
		},
		GetPayment: func(ctx context.Context, request any) (any, error) {
			req := request.(getPaymentRequest)
			return svc.GetPayment(ctx, req.CustomerID, req.PaymentID)
		},
	}
	if auth != nil {
		s.IssueToken = func(_ context.Context, request any) (any, error) {
			req := request.(TokenRequest)
			ttl := defaultTTL
			if req.TTLSeconds != nil {
				ttl = time.Duration(*req.TTLSeconds) * time.Second
			}
			return auth.Issue(req.Subject, ttl)
		}
	}
	return s
}
