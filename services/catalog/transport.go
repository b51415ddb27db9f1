package catalog

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/transport"
	httptransport "github.com/go-kit/kit/transport/http"

	"github.com/resilience-lab/lab/services/platform"
)

// NewHTTPHandler serves the catalog API routes of docs/architecture.md.
func NewHTTPHandler(endpoints Set, logger *slog.Logger) http.Handler {
	opts := []httptransport.ServerOption{
		httptransport.ServerErrorEncoder(platform.EncodeError),
		httptransport.ServerErrorHandler(transport.ErrorHandlerFunc(func(ctx context.Context, err error) {
			// 4xx outcomes and callers that went away are not faults of the catalog.
			if _, ok := platform.AsError(err); ok || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			logger.ErrorContext(ctx, "request failed", "err", err)
		})),
	}
	encode := httptransport.EncodeJSONResponse
	mux := http.NewServeMux()
	mux.Handle("GET /products", httptransport.NewServer(endpoints.ListProducts, decodeListProducts, encode, opts...))
	mux.Handle("GET /products/{id}", httptransport.NewServer(endpoints.GetProduct, decodeGetProduct, encode, opts...))
	mux.Handle("POST /reservations", httptransport.NewServer(endpoints.Reserve, decodeReserve, encode, opts...))
	mux.Handle("GET /reservations/{id}", httptransport.NewServer(endpoints.GetReservation, decodeGetReservation, encode, opts...))
	mux.Handle("POST /reservations/{id}/commit", httptransport.NewServer(endpoints.Commit, decodeCommit, encode, opts...))
	mux.Handle("POST /reservations/{id}/release", httptransport.NewServer(endpoints.Release, decodeRelease, encode, opts...))
	return platform.JSONMux(mux)
}

func decodeListProducts(_ context.Context, _ *http.Request) (any, error) {
	return ListProductsRequest{}, nil
}

func decodeGetProduct(_ context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "product id")
	return GetProductRequest{ID: id}, err
}

func decodeReserve(_ context.Context, r *http.Request) (any, error) {
	var req ReserveRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := validateReserveRequest(req); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeGetReservation(_ context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "reservation id")
	return GetReservationRequest{ID: id}, err
}

func decodeCommit(_ context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "reservation id")
	if err != nil {
		return nil, err
	}
	return CommitRequest{ReservationID: id}, decodeEmptyBody(r)
}

func decodeRelease(_ context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "reservation id")
	if err != nil {
		return nil, err
	}
	return ReleaseRequest{ReservationID: id}, decodeEmptyBody(r)
}

func pathID(r *http.Request, field string) (string, error) {
	id := r.PathValue("id")
	return id, validateID(field, id)
}

// decodeEmptyBody accepts no body or an empty JSON object (what typed clients send) for actions whose
// target is in the path, and rejects anything else with the usual strict-decoding errors.
func decodeEmptyBody(r *http.Request) error {
	body := bufio.NewReader(r.Body)
	if _, err := body.Peek(1); errors.Is(err, io.EOF) {
		return nil
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{body, r.Body}
	return platform.DecodeJSON(r, &struct{}{})
}
