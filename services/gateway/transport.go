package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/platform"
)

// Bounds on caller input, generous enough never to reject what orders would accept in the lab.
const (
	maxIDBytes          = 128
	maxOrderItems       = 100
	maxItemQuantity     = 10_000
	maxIdempotencyBytes = 255
)

// NewHTTPHandler serves the gateway's /api routes. Every request first has its bearer token (if any)
// verified, then passes serverPolicies (the per-client rate limit, keyed by the subject identify found,
// and load shedding); every route but POST /api/token needs a valid token.
func NewHTTPHandler(set Set, auth *Authenticator, serverPolicies func(http.Handler) http.Handler, reg prometheus.Registerer) http.Handler {
	authFailures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_auth_failures_total", Help: "Requests answered 401, by error code.",
	}, []string{"code"})
	reg.MustRegister(authFailures)

	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(platform.EncodeError)}
	server := func(e endpoint.Endpoint, dec httptransport.DecodeRequestFunc, status int) http.Handler {
		return httptransport.NewServer(e, dec, encodeJSON(status), opts...)
	}
	authed := func(h http.Handler) http.Handler {
		return requireAuth(func(code string) { authFailures.WithLabelValues(code).Inc() }, h)
	}

	mux := http.NewServeMux()
	if set.IssueToken != nil {
		mux.Handle("POST /api/token", server(set.IssueToken, decodeTokenRequest, http.StatusOK))
	} else {
		mux.HandleFunc("POST /api/token", func(w http.ResponseWriter, r *http.Request) {
			platform.WriteError(w, platform.NotFound("dev tokens are disabled"))
		})
	}
	mux.Handle("GET /api/products", authed(server(set.ListProducts, decodeNothing, http.StatusOK)))
	mux.Handle("GET /api/products/{id}", authed(server(set.GetProduct, decodeGetProduct, http.StatusOK)))
	mux.Handle("POST /api/orders", authed(server(set.PlaceOrder, decodePlaceOrder, http.StatusCreated)))
	mux.Handle("GET /api/orders", authed(server(set.ListOrders, decodeListOrders, http.StatusOK)))
	mux.Handle("GET /api/orders/{id}", authed(server(set.GetOrder, decodeGetOrder, http.StatusOK)))
	mux.Handle("GET /api/orders/{id}/details", authed(server(set.OrderDetails, decodeGetOrder, http.StatusOK)))
	mux.Handle("GET /api/payments/{id}", authed(server(set.GetPayment, decodeGetPayment, http.StatusOK)))

	api := platform.JSONMux(mux)
	return auth.identify(serverPolicies(api))
}

// StaleWarning is the Warning header (RFC 7234 §5.5.1, code 110) on a product answer served from the
// gateway's copy of the catalog while the catalog is failing; the body says "stale": true as well.
const StaleWarning = `110 - "Response is Stale"`

func encodeJSON(status int) httptransport.EncodeResponseFunc {
	return func(_ context.Context, w http.ResponseWriter, response any) error {
		code := status
		if s, ok := response.(interface{ isStale() bool }); ok && s.isStale() {
			w.Header().Set("Warning", StaleWarning)
		}
		if r, ok := response.(placeOrderResponse); ok {
			response = r.Order
			if !r.Created { // a repeated Idempotency-Key: the same order again
				code = http.StatusOK
			}
		}
		platform.WriteJSON(w, code, response)
		return nil
	}
}

func decodeNothing(context.Context, *http.Request) (any, error) { return listProductsRequest{}, nil }

func decodeTokenRequest(_ context.Context, r *http.Request) (any, error) {
	var req TokenRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := validateSubject(req.Subject); err != nil {
		return nil, err
	}
	if req.TTLSeconds != nil && (*req.TTLSeconds < 1 || *req.TTLSeconds > int64(MaxTokenTTL.Seconds())) {
		return nil, platform.BadRequest("invalid_argument", "ttl_seconds must be between 1 and %d", int64(MaxTokenTTL.Seconds()))
	}
	return req, nil
}

func decodeGetProduct(_ context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	return getProductRequest{ID: id}, nil
}

func decodeGetOrder(ctx context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	return getOrderRequest{CustomerID: Subject(ctx), OrderID: id}, nil
}

func decodeListOrders(ctx context.Context, _ *http.Request) (any, error) {
	return listOrdersRequest{CustomerID: Subject(ctx)}, nil
}

func decodeGetPayment(ctx context.Context, r *http.Request) (any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return nil, err
	}
	return getPaymentRequest{CustomerID: Subject(ctx), PaymentID: id}, nil
}

// placeOrderBody is the body of POST /api/orders: the customer is the token's subject, not a field.
type placeOrderBody struct {
	Items      []orders.Item `json:"items"`
	CardNumber string        `json:"card_number,omitempty"`
}

func decodePlaceOrder(ctx context.Context, r *http.Request) (any, error) {
	key := r.Header.Get(platform.HeaderIdempotencyKey)
	if key == "" {
		return nil, platform.ErrMissingIdempotencyKey
	}
	if len(key) > maxIdempotencyBytes || !printableASCII(key) {
		return nil, platform.BadRequest("invalid_argument", "the Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyBytes)
	}
	var body placeOrderBody
	if err := platform.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if len(body.Items) == 0 || len(body.Items) > maxOrderItems {
		return nil, platform.BadRequest("invalid_argument", "items must hold 1 to %d items", maxOrderItems)
	}
	for i, it := range body.Items {
		if !validID(it.ProductID) {
			return nil, platform.BadRequest("invalid_argument", "items[%d].product_id must be 1 to %d letters, digits, '-', '_' or '.'", i, maxIDBytes)
		}
		if it.Quantity < 1 || it.Quantity > maxItemQuantity {
			return nil, platform.BadRequest("invalid_argument", "items[%d].quantity must be between 1 and %d", i, maxItemQuantity)
		}
	}
	if body.CardNumber != "" && !validCardNumber(body.CardNumber) {
		return nil, platform.BadRequest("invalid_argument", "card_number must be 12 to 19 digits")
	}
	return orders.PlaceOrderRequest{
		CustomerID: Subject(ctx), Items: body.Items, CardNumber: body.CardNumber, IdempotencyKey: key,
	}, nil
}

// pathID returns the path value name if it is a plausible id. Ids go into downstream paths, so they are
// restricted to characters that need no escaping and cannot be "." or "..".
func pathID(r *http.Request, name string) (string, error) {
	id := r.PathValue(name)
	if !validID(id) {
		return "", platform.BadRequest("invalid_argument", "%s must be 1 to %d letters, digits, '-', '_' or '.'", name, maxIDBytes)
	}
	return id, nil
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDBytes || strings.Trim(id, ".") == "" {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validCardNumber(s string) bool {
	if len(s) < 12 || len(s) > 19 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for _, c := range s {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
