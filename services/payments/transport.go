package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/transport"
	httptransport "github.com/go-kit/kit/transport/http"

	"github.com/resilience-lab/lab/services/platform"
)

// NewHTTPHandler serves the payments API routes of endpoints.
func NewHTTPHandler(endpoints Set, logger *slog.Logger) http.Handler {
	opts := []httptransport.ServerOption{
		httptransport.ServerErrorEncoder(platform.EncodeError),
		httptransport.ServerErrorHandler(transport.ErrorHandlerFunc(func(ctx context.Context, err error) {
			logFault(ctx, logger, err)
		})),
	}
	mux := http.NewServeMux()
	mux.Handle("POST /payments", httptransport.NewServer(endpoints.ChargeEndpoint, decodeChargeRequest, encodeChargeResponse, opts...))
	mux.Handle("GET /payments", httptransport.NewServer(endpoints.ListPaymentsEndpoint, decodeListPaymentsRequest, encodeOK, opts...))
	mux.Handle("GET /payments/{id}", httptransport.NewServer(endpoints.GetPaymentEndpoint, decodePaymentIDRequest, encodeOK, opts...))
	mux.Handle("POST /payments/{id}/refund", httptransport.NewServer(endpoints.RefundEndpoint, decodeRefundRequest, encodeOK, opts...))
	return platform.JSONMux(mux)
}

// logFault logs errors that are the service's own fault; rejected input and business outcomes (4xx) and
// callers that went away are not faults.
func logFault(ctx context.Context, logger *slog.Logger, err error) {
	if e, ok := platform.AsError(err); ok && e.Status < 500 {
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	logger.ErrorContext(ctx, "request failed", "err", err)
}

func decodeChargeRequest(_ context.Context, r *http.Request) (any, error) {
	key := r.Header.Get(platform.HeaderIdempotencyKey)
	if key == "" {
		return nil, platform.ErrMissingIdempotencyKey
	}
	var req ChargeRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	req.IdempotencyKey = key
	return req, nil
}

func decodePaymentIDRequest(_ context.Context, r *http.Request) (any, error) {
	return paymentIDRequest{ID: r.PathValue("id")}, nil
}

// decodeRefundRequest accepts no body or an empty JSON object: a refund has no options, but typed
// clients send JSON with every POST.
func decodeRefundRequest(ctx context.Context, r *http.Request) (any, error) {
	if r.ContentLength != 0 {
		var noOptions struct{}
		if err := platform.DecodeJSON(r, &noOptions); err != nil {
			if e, ok := platform.AsError(err); !ok || e.Code != "empty_body" {
				return nil, err
			}
		}
	}
	return decodePaymentIDRequest(ctx, r)
}

func decodeListPaymentsRequest(_ context.Context, r *http.Request) (any, error) {
	return listPaymentsRequest{OrderID: r.URL.Query().Get("order_id")}, nil
}

func encodeChargeResponse(_ context.Context, w http.ResponseWriter, response any) error {
	resp, ok := response.(chargeResponse)
	if !ok {
		return fmt.Errorf("charge: response is %T", response)
	}
	status := http.StatusOK
	if resp.Created {
		status = http.StatusCreated
	}
	platform.WriteJSON(w, status, resp.Payment)
	return nil
}

func encodeOK(_ context.Context, w http.ResponseWriter, response any) error {
	platform.WriteJSON(w, http.StatusOK, response)
	return nil
}
