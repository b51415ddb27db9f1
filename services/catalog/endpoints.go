package catalog

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-kit/kit/endpoint"
)

// Set holds one go-kit endpoint per operation of the Service.
type Set struct {
	ListProducts   endpoint.Endpoint
	GetProduct     endpoint.Endpoint
	Reserve        endpoint.Endpoint
	GetReservation endpoint.Endpoint
	Commit         endpoint.Endpoint
	Release        endpoint.Endpoint
}

// NewSet wraps each method of svc in an endpoint.
func NewSet(svc Service) Set {
	return Set{
		ListProducts: func(ctx context.Context, _ any) (any, error) {
			products, err := svc.ListProducts(ctx)
			if err != nil {
				return nil, err
			}
			return ListProductsResponse{Products: products}, nil
		},
		GetProduct: func(ctx context.Context, request any) (any, error) {
			req, err := requestAs[GetProductRequest](request)
			if err != nil {
				return nil, err
			}
			return svc.GetProduct(ctx, req.ID)
		},
		Reserve: func(ctx context.Context, request any) (any, error) {
			req, err := requestAs[ReserveRequest](request)
			if err != nil {
				return nil, err
			}
			r, created, err := svc.Reserve(ctx, req)
			if err != nil {
				return nil, err
			}
			return ReserveResponse{Reservation: r, Created: created}, nil
		},
		GetReservation: func(ctx context.Context, request any) (any, error) {
			req, err := requestAs[GetReservationRequest](request)
			if err != nil {
				return nil, err
			}
			return svc.GetReservation(ctx, req.ID)
		},
		Commit: func(ctx context.Context, request any) (any, error) {
			req, err := requestAs[CommitRequest](request)
			if err != nil {
				return nil, err
			}
			return svc.Commit(ctx, req.ReservationID)
		},
		Release: func(ctx context.Context, request any) (any, error) {
			req, err := requestAs[ReleaseRequest](request)
			if err != nil {
				return nil, err
			}
			return svc.Release(ctx, req.ReservationID)
		},
	}
}

func requestAs[T any](request any) (T, error) {
	req, ok := request.(T)
	if !ok {
		return req, fmt.Errorf("catalog endpoint: request is %T, want %T", request, req)
	}
	return req, nil
}

// ListProductsRequest asks for every product.
type ListProductsRequest struct{}

// GetProductRequest asks for one product; ID travels in the path.
type GetProductRequest struct {
	ID string `json:"-"`
}

// GetReservationRequest asks for one reservation; ID travels in the path.
type GetReservationRequest struct {
	ID string `json:"-"`
}

// CommitRequest commits a reservation; the id travels in the path and the body is empty or {}.
type CommitRequest struct {
	ReservationID string `json:"-"`
}

// IdempotencyKeyValue lets clients retry a commit: committing twice is a no-op.
func (r CommitRequest) IdempotencyKeyValue() string { return "commit:" + r.ReservationID }

// ReleaseRequest releases a reservation; the id travels in the path and the body is empty or {}.
type ReleaseRequest struct {
	ReservationID string `json:"-"`
}

// IdempotencyKeyValue lets clients retry a release: releasing twice is a no-op.
func (r ReleaseRequest) IdempotencyKeyValue() string { return "release:" + r.ReservationID }

// IdempotencyKeyValue makes the order id the reservation's idempotency key: reserving again for the same
// order returns the first reservation, so clients may retry.
func (r ReserveRequest) IdempotencyKeyValue() string { return r.OrderID }

// ReserveResponse is a Reservation answered 201 when this call created it and 200 for a repeat.
type ReserveResponse struct {
	Reservation
	Created bool `json:"-"`
}

// StatusCode tells go-kit's JSON encoder which status to answer with.
func (r ReserveResponse) StatusCode() int {
	if r.Created {
		return http.StatusCreated
	}
	return http.StatusOK
}
