//go:build pact

package contracts

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/orders"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	"github.com/resilience-lab/lab/services/platform"
)

// TestProviderOrders verifies the gateway's pact against the real orders service, whose saga runs
// against a real catalog and payments service of its own (all in process, each on a fresh database).
func TestProviderOrders(t *testing.T) {
	verify(t, startProvider(t, startOrders, ordersStates(), nil), ordersName)
}

func ordersStates() map[string]stateFunc {
	catalogStates := catalogStates()
	return map[string]stateFunc{
		// Products live in the orders instance's own catalog.
		stateProductInStock:    catalogStates[stateProductInStock],
		stateProductOutOfStock: catalogStates[stateProductOutOfStock],
		stateCustomerHasOrder: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			customerID, err := stringParam(params, "customerId")
			if err != nil {
				return nil, err
			}
			quantity, err := intParam(params, "quantity", 1)
			if err != nil {
				return nil, err
			}
			key := "state:" + platform.NewID()
			if _, ok := params["idempotencyKey"]; ok {
				if key, err = stringParam(params, "idempotencyKey"); err != nil {
					return nil, err
				}
			}
			productID, err := productInStock(ctx, in.catalog, quantity)
			if err != nil {
				return nil, err
			}
			o, _, err := in.orders.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: customerID,
				Items: []orders.Item{{ProductID: productID, Quantity: quantity}}, IdempotencyKey: key})
			if err != nil {
				return nil, err
			}
			if o.Status != orders.StatusConfirmed {
				return nil, fmt.Errorf("order %s of %s is %s (%s), want confirmed", o.ID, customerID, o.Status, o.Reason)
			}
			return map[string]any{"orderId": o.ID, "productId": productID}, nil
		},
		stateOrderDoesNotExist: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			id, err := stringParam(params, "orderId")
			if err != nil {
				return nil, err
			}
			_, err = in.orders.GetOrder(ctx, id)
			return nil, expectNotFound(err, "order", id)
		},
	}
}

// startOrders opens a catalog and a payments service, then orders over them, each on a fresh database.
func startOrders(t *testing.T) (*instance, error) {
	cat, err := startCatalog(t)
	if err != nil {
		return nil, err
	}
	pay, err := startPayments(t)
	if err != nil {
		cat.close()
		return nil, err
	}
	catSrv, paySrv := httptest.NewServer(cat.api), httptest.NewServer(pay.api)
	stopDeps := func() {
		catSrv.Close()
		paySrv.Close()
		pay.close()
		cat.close()
	}
	cfg := orders.Config{
		Addr:           "127.0.0.1:0",
		DB:             filepath.Join(t.TempDir(), "orders.db"),
		CatalogURL:     catSrv.URL,
		PaymentsURL:    paySrv.URL,
		ResumeInterval: time.Hour, // no order is left in flight here; the resumer only runs its first pass
		ResumeGrace:    2 * time.Second,
		SagaTimeout:    30 * time.Second,
	}
	svc, closer, err := orders.Open(context.Background(), cfg, testLogger(t, ordersName), platform.NewRegistry())
	if err != nil {
		stopDeps()
		return nil, err
	}
	h := svc.Handler()
	srv := httptest.NewServer(h)
	c, err := ordersclient.New(srv.URL)
	if err != nil {
		srv.Close()
		closer.Close()
		stopDeps()
		return nil, err
	}
	return &instance{
		api:     h,
		close:   func() { srv.Close(); closer.Close(); stopDeps() },
		clients: clients{catalog: cat.catalog, payments: pay.payments, orders: c},
	}, nil
}
