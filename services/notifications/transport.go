package notifications

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/transport"
	httptransport "github.com/go-kit/kit/transport/http"

	"github.com/resilience-lab/lab/services/platform"
)

// NewHTTPHandler serves GET /notifications?customer_id=C.
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
	mux.Handle("GET /notifications", httptransport.NewServer(endpoints.ListNotificationsEndpoint,
		decodeListNotificationsRequest, encodeJSON, opts...))
	return platform.JSONMux(mux)
}

func decodeListNotificationsRequest(_ context.Context, r *http.Request) (any, error) {
	req := listNotificationsRequest{CustomerID: r.URL.Query().Get("customer_id")}
	return req, validateCustomerID(req.CustomerID)
}

func encodeJSON(_ context.Context, w http.ResponseWriter, response any) error {
	platform.WriteJSON(w, http.StatusOK, response)
	return nil
}
