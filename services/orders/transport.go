package orders

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/transport"
	httptransport "github.com/go-kit/kit/transport/http"

	"github.com/resilience-lab/lab/services/platform"
)

// NewHTTPHandler serves the endpoints: POST /orders, GET /orders/{id}, GET /orders?customer_id=C.
func NewHTTPHandler(endpoints Set, logger *slog.Logger) http.Handler {
	opts := []httptransport.ServerOption{
		httptransport.ServerErrorEncoder(platform.EncodeError),
		httptransport.ServerErrorHandler(transport.ErrorHandlerFunc(func(ctx context.Context, err error) {
			if _, ok := platform.AsError(err); !ok {
				logger.ErrorContext(ctx, "request failed", "err", err)
			}
		})),
	}
	mux := http.NewServeMux()
	mux.Handle("POST /orders", httptransport.NewServer(endpoints.PlaceOrderEndpoint, decodePlaceOrderRequest, encodePlaceOrderResponse, opts...))
	mux.Handle("GET /orders/{id}", httptransport.NewServer(endpoints.GetOrderEndpoint, decodeGetOrderRequest, encodeJSON, opts...))
	mux.Handle("GET /orders", httptransport.NewServer(endpoints.ListOrdersEndpoint, decodeListOrdersRequest, encodeJSON, opts...))
	return platform.JSONMux(mux)
}

func decodePlaceOrderRequest(_ context.Context, r *http.Request) (any, error) {
	key := r.Header.Get(platform.HeaderIdempotencyKey)
	if key == "" {
		return nil, platform.ErrMissingIdempotencyKey
	}
	var req PlaceOrderRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	req.IdempotencyKey = key
	return req, validatePlaceOrder(req)
}

func decodeGetOrderRequest(_ context.Context, r *http.Request) (any, error) {
	req := getOrderRequest{ID: r.PathValue("id")}
	return req, validateID("id", req.ID)
}

func decodeListOrdersRequest(_ context.Context, r *http.Request) (any, error) {
	req := listOrdersRequest{CustomerID: r.URL.Query().Get("customer_id")}
	return req, validateID("customer_id", req.CustomerID)
}

func encodePlaceOrderResponse(_ context.Context, w http.ResponseWriter, response any) error {
	resp := response.(placeOrderResponse)
	status := http.StatusOK
	if resp.Created {
		status = http.StatusCreated
	}
	platform.WriteJSON(w, status, resp.Order)
	return nil
}

func encodeJSON(_ context.Context, w http.ResponseWriter, response any) error {
	platform.WriteJSON(w, http.StatusOK, response)
	return nil
}
