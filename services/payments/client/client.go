// Package client is the typed client of the payments service.
package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"

	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// Client calls the payments API; every operation goes through the configured policies.
type Client struct {
	charge       endpoint.Endpoint
	getPayment   endpoint.Endpoint
	refund       endpoint.Endpoint
	listPayments endpoint.Endpoint
}

// refundRequest is sent as an empty JSON object; its deterministic key marks the refund retry-safe
// (refunding is idempotent on the server).
type refundRequest struct{ paymentID string }

func (r refundRequest) IdempotencyKeyValue() string { return "refund:" + r.paymentID }

// New returns a client of the payments service at baseURL (e.g. "http://127.0.0.1:8083").
func New(baseURL string, opts ...platform.ClientOption) (*Client, error) {
	base, err := platform.ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	cfg := platform.NewClientConfig(opts...)
	return &Client{
		// Charge is retry-safe: ChargeRequest carries its Idempotency-Key.
		charge:     platform.ClientOperation[payments.ChargeRequest, payments.Payment](cfg, "charge", true, base, http.MethodPost, func(payments.ChargeRequest) string { return "payments" }),
		getPayment: platform.ClientOperation[string, payments.Payment](cfg, "get_payment", true, base, http.MethodGet, func(id string) string { return "payments/" + url.PathEscape(id) }),
		refund: platform.ClientOperation[refundRequest, payments.Payment](cfg, "refund", true, base, http.MethodPost, func(r refundRequest) string {
			return "payments/" + url.PathEscape(r.paymentID) + "/refund"
		}),
		listPayments: platform.ClientOperation[string, payments.ListPaymentsResponse](cfg, "list_payments", true, base, http.MethodGet, func(orderID string) string {
			return "payments?" + url.Values{"order_id": {orderID}}.Encode()
		}),
	}, nil
}

// Charge charges an order. A decline is not an error: the payment comes back with status declined.
// Repeating req (same IdempotencyKey and body) returns the same payment; the same key with another body
// is a 409 *platform.Error idempotency_key_reused.
func (c *Client) Charge(ctx context.Context, req payments.ChargeRequest) (payments.Payment, error) {
	return call[payments.Payment](ctx, c.charge, req)
}

// GetPayment returns a payment; an unknown id is a 404 *platform.Error.
func (c *Client) GetPayment(ctx context.Context, id string) (payments.Payment, error) {
	if id == "" {
		return payments.Payment{}, platform.BadRequest("invalid_argument", "payment id is empty")
	}
	return call[payments.Payment](ctx, c.getPayment, id)
}

// Refund refunds a captured payment (idempotent). A declined payment is a 409 *platform.Error not_refundable.
func (c *Client) Refund(ctx context.Context, id string) (payments.Payment, error) {
	if id == "" {
		return payments.Payment{}, platform.BadRequest("invalid_argument", "payment id is empty")
	}
	return call[payments.Payment](ctx, c.refund, refundRequest{paymentID: id})
}

// ListByOrder returns every payment of an order, oldest first (empty, not an error, when there is none).
func (c *Client) ListByOrder(ctx context.Context, orderID string) ([]payments.Payment, error) {
	resp, err := call[payments.ListPaymentsResponse](ctx, c.listPayments, orderID)
	if err != nil {
		return nil, err
	}
	return resp.Payments, nil
}

// call runs e and unwraps the *Resp that platform.ClientEndpoint answers with.
func call[Resp any](ctx context.Context, e endpoint.Endpoint, request any) (Resp, error) {
	var zero Resp
	resp, err := e(ctx, request)
	if err != nil {
		return zero, err
	}
	v, ok := resp.(*Resp)
	if !ok {
		return zero, fmt.Errorf("payments client: answer is %T, want %T", resp, v)
	}
	return *v, nil
}
