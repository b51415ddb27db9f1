package orders

import (
	"context"

	"github.com/go-kit/kit/endpoint"
)

// Set holds one go-kit endpoint per operation of the Service.
type Set struct {
	PlaceOrderEndpoint endpoint.Endpoint
	GetOrderEndpoint   endpoint.Endpoint
	ListOrdersEndpoint endpoint.Endpoint
}

// NewSet builds the endpoint Set of svc.
func NewSet(svc Service) Set {
	return Set{
		PlaceOrderEndpoint: makePlaceOrderEndpoint(svc),
		GetOrderEndpoint:   makeGetOrderEndpoint(svc),
		ListOrdersEndpoint: makeListOrdersEndpoint(svc),
	}
}

// placeOrderResponse is the placed order and whether this request created it (201) or repeated it (200).
type placeOrderResponse struct {
	Order   Order
	Created bool
}

type getOrderRequest struct{ ID string }

type listOrdersRequest struct{ CustomerID string }

func makePlaceOrderEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		o, created, err := svc.PlaceOrder(ctx, request.(PlaceOrderRequest))
		if err != nil {
			return nil, err
		}
		return placeOrderResponse{Order: o, Created: created}, nil
	}
}

func makeGetOrderEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		return svc.GetOrder(ctx, request.(getOrderRequest).ID)
	}
}

func makeListOrdersEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		orders, err := svc.ListOrders(ctx, request.(listOrdersRequest).CustomerID)
		if err != nil {
			return nil, err
		}
		return ListOrdersResponse{Orders: orders}, nil
	}
}
