// Package client is the typed client of the orders service.
package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"

	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/platform"
)

// Client calls the orders API. A 4xx answer comes back as a *platform.Error (see platform.AsError):
// invalid_argument, missing_idempotency_key, idempotency_key_reused, not_found, ….
type Client struct {
	placeOrder endpoint.Endpoint
	getOrder   endpoint.Endpoint
	listOrders endpoint.Endpoint
}

type getOrderRequest struct{ id string }

type listOrdersRequest struct{ customerID string }

// New returns a client of the orders service at baseURL (e.g. "http://127.0.0.1:8082"). Each operation
// is wrapped in the policies of opts under its name: place_order, get_order, list_orders. All are
// idempotent: place_order carries the request's Idempotency-Key.
func New(baseURL string, opts ...platform.ClientOption) (*Client, error) {
	base, err := platform.ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	cfg := platform.NewClientConfig(opts...)
	return &Client{
		placeOrder: platform.ClientOperation[orders.PlaceOrderRequest, placed](cfg, "place_order", true, base, http.MethodPost, func(orders.PlaceOrderRequest) string { return "orders" }),
		getOrder:   platform.ClientOperation[getOrderRequest, orders.Order](cfg, "get_order", true, base, http.MethodGet, func(r getOrderRequest) string { return "orders/" + url.PathEscape(r.id) }),
		listOrders: platform.ClientOperation[listOrdersRequest, orders.ListOrdersResponse](cfg, "list_orders", true, base, http.MethodGet, func(r listOrdersRequest) string {
			return "orders?" + url.Values{"customer_id": {r.customerID}}.Encode()
		}),
	}, nil
}

// PlaceOrder places an order and returns it in the state its saga reached (normally confirmed, rejected
// with a reason, or cancelled). req.IdempotencyKey is required; repeating the request with the same key
// returns the same order, the same key with another request is a 409 idempotency_key_reused.
// created tells a new order (201) from a repeat of an earlier request (200).
func (c *Client) PlaceOrder(ctx context.Context, req orders.PlaceOrderRequest) (o orders.Order, created bool, err error) {
	p, err := call[placed](ctx, c.placeOrder, req)
	return p.Order, p.status == http.StatusCreated, err
}

// placed is the answer of POST /orders with its status.
type placed struct {
	orders.Order
	status int
}

func (p *placed) SetHTTPStatus(code int) { p.status = code }

// GetOrder returns one order; an unknown id is a 404 not_found.
func (c *Client) GetOrder(ctx context.Context, id string) (orders.Order, error) {
	if id == "" {
		return orders.Order{}, platform.BadRequest("invalid_argument", "order id is empty")
	}
	return call[orders.Order](ctx, c.getOrder, getOrderRequest{id: id})
}

// ListOrders returns a customer's newest orders first (at most orders.ListLimit).
func (c *Client) ListOrders(ctx context.Context, customerID string) ([]orders.Order, error) {
	resp, err := call[orders.ListOrdersResponse](ctx, c.listOrders, listOrdersRequest{customerID: customerID})
	return resp.Orders, err
}

// call runs e and unwraps the *Resp that platform.ClientEndpoint decodes into.
func call[Resp any](ctx context.Context, e endpoint.Endpoint, request any) (Resp, error) {
	var zero Resp
	resp, err := e(ctx, request)
	if err != nil {
		return zero, err
	}
	v, ok := resp.(*Resp)
	if !ok || v == nil {
		return zero, fmt.Errorf("orders client: answer is %T, want %T", resp, &zero)
	}
	return *v, nil
}
