package payments

import (
	"context"
	"fmt"

	"github.com/go-kit/kit/endpoint"
)

// Set holds one go-kit endpoint per operation of the Service.
type Set struct {
	ChargeEndpoint       endpoint.Endpoint
	GetPaymentEndpoint   endpoint.Endpoint
	RefundEndpoint       endpoint.Endpoint
	ListPaymentsEndpoint endpoint.Endpoint
}

// NewSet builds the endpoints of svc.
func NewSet(svc Service) Set {
	return Set{
		ChargeEndpoint:       makeChargeEndpoint(svc),
		GetPaymentEndpoint:   makeGetPaymentEndpoint(svc),
		RefundEndpoint:       makeRefundEndpoint(svc),
		ListPaymentsEndpoint: makeListPaymentsEndpoint(svc),
	}
}

// chargeResponse carries whether the payment is new (201) or a replay of its idempotency key (200).
type chargeResponse struct {
	Payment Payment
	Created bool
}

type paymentIDRequest struct{ ID string }

type listPaymentsRequest struct{ OrderID string }

func makeChargeEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req, ok := request.(ChargeRequest)
		if !ok {
			return nil, fmt.Errorf("charge: request is %T", request)
		}
		p, created, err := svc.Charge(ctx, req)
		if err != nil {
			return nil, err
		}
		return chargeResponse{Payment: p, Created: created}, nil
	}
}

func makeGetPaymentEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req, ok := request.(paymentIDRequest)
		if !ok {
			return nil, fmt.Errorf("get_payment: request is %T", request)
		}
		return svc.GetPayment(ctx, req.ID)
	}
}

func makeRefundEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req, ok := request.(paymentIDRequest)
		if !ok {
			return nil, fmt.Errorf("refund: request is %T", request)
		}
		return svc.Refund(ctx, req.ID)
	}
}

func makeListPaymentsEndpoint(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, request any) (any, error) {
		req, ok := request.(listPaymentsRequest)
		if !ok {
			return nil, fmt.Errorf("list_payments: request is %T", request)
		}
		list, err := svc.ListPayments(ctx, req.OrderID)
		if err != nil {
			return nil, err
		}
		return ListPaymentsResponse{Payments: list}, nil
	}
}
