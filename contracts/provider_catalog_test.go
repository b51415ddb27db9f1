//go:build pact

package contracts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/catalog"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/platform"
)

// TestProviderCatalog verifies the pacts of gateway and orders against the real catalog.
func TestProviderCatalog(t *testing.T) {
	verify(t, startProvider(t, startCatalog, catalogStates(), nil), catalogName)
}

// catalogStates are the catalog's provider states; the orders provider reuses the product ones.
func catalogStates() map[string]stateFunc {
	return map[string]stateFunc{
		stateProductExists: func(ctx context.Context, in *instance, _ map[string]any) (map[string]any, error) {
			id, err := productInStock(ctx, in.catalog, 0)
			return map[string]any{"productId": id}, err
		},
		stateProductDoesNotExist: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			id, err := stringParam(params, "productId")
			if err != nil {
				return nil, err
			}
			_, err = in.catalog.GetProduct(ctx, id)
			return nil, expectNotFound(err, "product", id)
		},
		stateProductInStock: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			quantity, err := intParam(params, "quantity", 1)
			if err != nil {
				return nil, err
			}
			id, err := productInStock(ctx, in.catalog, quantity)
			return map[string]any{"productId": id}, err
		},
		stateProductOutOfStock: func(ctx context.Context, in *instance, _ map[string]any) (map[string]any, error) {
			id, err := productOutOfStock(ctx, in.catalog)
			return map[string]any{"productId": id}, err
		},
		stateReservationHeld: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			return reservationIn(ctx, in.catalog, params, nil)
		},
		stateReservationReleased: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			return reservationIn(ctx, in.catalog, params, in.catalog.Release)
		},
		stateReservationCommitted: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			return reservationIn(ctx, in.catalog, params, in.catalog.Commit)
		},
	}
}

// startCatalog opens the catalog on a fresh database seeded with the fixed products.
func startCatalog(t *testing.T) (*instance, error) {
	cfg := catalog.Config{
		Addr:           "127.0.0.1:0",
		DB:             filepath.Join(t.TempDir(), "catalog.db"),
		Seed:           true,
		SeedStock:      1000,
		ReservationTTL: 5 * time.Minute,
		SweepInterval:  time.Hour,
	}
	svc, closer, err := catalog.Open(context.Background(), cfg, testLogger(t, catalogName), platform.NewRegistry())
	if err != nil {
		return nil, err
	}
	h := svc.Handler()
	srv := httptest.NewServer(h)
	c, err := catalogclient.New(srv.URL)
	if err != nil {
		srv.Close()
		closer.Close()
		return nil, err
	}
	return &instance{api: h, close: func() { srv.Close(); closer.Close() }, clients: clients{catalog: c}}, nil
}

// productInStock returns a product with at least quantity in stock.
func productInStock(ctx context.Context, c *catalogclient.Client, quantity int64) (string, error) {
	products, err := c.ListProducts(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range products {
		if p.Stock >= quantity && p.Stock > 0 {
			return p.ID, nil
		}
	}
	return "", fmt.Errorf("no product has %d in stock", quantity)
}

// productOutOfStock returns a product with no stock, reserving all of one's stock if none is sold out.
func productOutOfStock(ctx context.Context, c *catalogclient.Client) (string, error) {
	products, err := c.ListProducts(ctx)
	if err != nil {
		return "", err
	}
	if len(products) == 0 {
		return "", errors.New("the catalog has no products")
	}
	for _, p := range products {
		if p.Stock == 0 {
			return p.ID, nil
		}
	}
	p := products[0]
	if _, err := c.Reserve(ctx, catalog.ReserveRequest{OrderID: "state-" + platform.NewID(),
		Items: []catalog.Item{{ProductID: p.ID, Quantity: p.Stock}}}); err != nil {
		return "", fmt.Errorf("reserve the stock of %s: %w", p.ID, err)
	}
	return p.ID, nil
}

// reservationIn holds one item of a product in stock for the order params name (orderId, optional) and
// then applies then (commit, release) when set.
func reservationIn(ctx context.Context, c *catalogclient.Client, params map[string]any,
	then func(context.Context, string) (catalog.Reservation, error)) (map[string]any, error) {
	orderID := "state-" + platform.NewID()
	if _, ok := params["orderId"]; ok {
		var err error
		if orderID, err = stringParam(params, "orderId"); err != nil {
			return nil, err
		}
	}
	productID, err := productInStock(ctx, c, 1)
	if err != nil {
		return nil, err
	}
	r, err := c.Reserve(ctx, catalog.ReserveRequest{OrderID: orderID, Items: []catalog.Item{{ProductID: productID, Quantity: 1}}})
	if err != nil {
		return nil, err
	}
	if then != nil {
		if _, err := then(ctx, r.ID); err != nil {
			return nil, err
		}
	}
	return map[string]any{"reservationId": r.ID, "productId": productID}, nil
}

// expectNotFound turns the answer of a look-up that must miss into a state error.
func expectNotFound(err error, what, id string) error {
	if err == nil {
		return fmt.Errorf("%s %q exists", what, id)
	}
	if e, ok := platform.AsError(err); ok && e.Status == http.StatusNotFound {
		return nil
	}
	return err
}
