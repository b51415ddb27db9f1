// Package client is the typed client of the catalog service.
package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/platform"
)

// Client calls the catalog API. A 4xx answer comes back as a *platform.Error (see platform.AsError):
// not_found, out_of_stock, reservation_not_held, reservation_committed, invalid_argument, ….
type Client struct {
	listProducts   endpoint.Endpoint
	getProduct     endpoint.Endpoint
	reserve        endpoint.Endpoint
	getReservation endpoint.Endpoint
	commit         endpoint.Endpoint
	release        endpoint.Endpoint
}

// New returns a client of the catalog at baseURL (e.g. "http://127.0.0.1:8081"). Each operation is wrapped
// in the policies of opts under its name: list_products, get_product, reserve, get_reservation, commit,
// release. All of them are idempotent: reserve carries the order id as its Idempotency-Key, commit and
// release are no-ops when repeated.
func New(baseURL string, opts ...platform.ClientOption) (*Client, error) {
	base, err := platform.ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	cfg := platform.NewClientConfig(opts...)
	return &Client{
		listProducts:   platform.ClientOperation[catalog.ListProductsRequest, catalog.ListProductsResponse](cfg, "list_products", true, base, http.MethodGet, func(catalog.ListProductsRequest) string { return "products" }),
		getProduct:     platform.ClientOperation[catalog.GetProductRequest, catalog.Product](cfg, "get_product", true, base, http.MethodGet, func(r catalog.GetProductRequest) string { return "products/" + url.PathEscape(r.ID) }),
		reserve:        platform.ClientOperation[catalog.ReserveRequest, catalog.Reservation](cfg, "reserve", true, base, http.MethodPost, func(catalog.ReserveRequest) string { return "reservations" }),
		getReservation: platform.ClientOperation[catalog.GetReservationRequest, catalog.Reservation](cfg, "get_reservation", true, base, http.MethodGet, func(r catalog.GetReservationRequest) string { return "reservations/" + url.PathEscape(r.ID) }),
		commit: platform.ClientOperation[catalog.CommitRequest, catalog.Reservation](cfg, "commit", true, base, http.MethodPost, func(r catalog.CommitRequest) string {
			return "reservations/" + url.PathEscape(r.ReservationID) + "/commit"
		}),
		release: platform.ClientOperation[catalog.ReleaseRequest, catalog.Reservation](cfg, "release", true, base, http.MethodPost, func(r catalog.ReleaseRequest) string {
			return "reservations/" + url.PathEscape(r.ReservationID) + "/release"
		}),
	}, nil
}

// ListProducts returns every product, ordered by id.
func (c *Client) ListProducts(ctx context.Context) ([]catalog.Product, error) {
	resp, err := call[catalog.ListProductsResponse](ctx, c.listProducts, catalog.ListProductsRequest{})
	return resp.Products, err
}

// GetProduct returns one product; an unknown id is a 404 not_found.
func (c *Client) GetProduct(ctx context.Context, id string) (catalog.Product, error) {
	return call[catalog.Product](ctx, c.getProduct, catalog.GetProductRequest{ID: id})
}

// Reserve holds stock for req.OrderID, all items or none. Repeating it for the same order returns the
// existing reservation, whatever its state. Outcomes: 409 out_of_stock, 404 not_found, 400 invalid_argument.
func (c *Client) Reserve(ctx context.Context, req catalog.ReserveRequest) (catalog.Reservation, error) {
	return call[catalog.Reservation](ctx, c.reserve, req)
}

// GetReservation returns one reservation; an unknown id is a 404 not_found.
func (c *Client) GetReservation(ctx context.Context, id string) (catalog.Reservation, error) {
	return call[catalog.Reservation](ctx, c.getReservation, catalog.GetReservationRequest{ID: id})
}

// Commit makes a held reservation final (idempotent). A released or expired one is a 409
// reservation_not_held.
func (c *Client) Commit(ctx context.Context, reservationID string) (catalog.Reservation, error) {
	return call[catalog.Reservation](ctx, c.commit, catalog.CommitRequest{ReservationID: reservationID})
}

// Release gives a held reservation's stock back (idempotent; an expired one is returned as is). A
// committed one is a 409 reservation_committed.
func (c *Client) Release(ctx context.Context, reservationID string) (catalog.Reservation, error) {
	return call[catalog.Reservation](ctx, c.release, catalog.ReleaseRequest{ReservationID: reservationID})
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
		return zero, fmt.Errorf("catalog client: answer is %T, want %T", resp, &zero)
	}
	return *v, nil
}
