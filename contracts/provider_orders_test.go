//go:build pact

package contracts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pact-foundation/pact-go/v2/message"
	"github.com/pact-foundation/pact-go/v2/models"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/events/natstest"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/orders"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	"github.com/resilience-lab/lab/services/platform"
)

// TestProviderOrders verifies the pacts of orders' consumers against the real orders service, whose
// saga runs against a real catalog and payments service of its own (all in process, each on a fresh
// database): the gateway's HTTP pact against its API, and notifications' message pact against the
// events its outbox relay publishes to a JetStream broker of its own.
func TestProviderOrders(t *testing.T) {
	p := startProvider(t, startOrders, ordersStates(), nil)
	p.messages = orderEventMessages(p)
	verify(t, p, ordersName)
}

// orderEventMessages are orders' message handlers: for each order event, by its description, the
// event the instance's relay published, exactly as on the wire (the envelope JSON orders wrote to its
// outbox in the transaction of the state change), with its subject as metadata. The interaction's
// provider state has placed the order that produced it.
func orderEventMessages(p *liveProvider) message.Handlers {
	hs := message.Handlers{}
	for _, typ := range []string{events.TypeOrderPlaced, events.TypeOrderConfirmed, events.TypeOrderRejected,
		events.TypeOrderCancelled} {
		hs[eventDescription(typ)] = func([]models.ProviderState) (message.Body, message.Metadata, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			subject, data, err := publishedEvent(ctx, p.instance().events, events.Subject(typ))
			if err != nil {
				return nil, nil, err
			}
			return data, message.Metadata{"subject": subject, "contentType": "application/json"}, nil
		}
	}
	return hs
}

// publishedEvent waits for the one message on subject in the ORDERS stream of the broker at url and
// returns its subject and data. More than one is an error: each interaction has a fresh instance.
func publishedEvent(ctx context.Context, url, subject string) (string, []byte, error) {
	if url == "" {
		return "", nil, errors.New("the instance has no events broker")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return "", nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", nil, err
	}
	for {
		if s, err := js.Stream(ctx, events.StreamOrders); err == nil {
			info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
			if err != nil {
				return "", nil, err
			}
			switch n := info.State.Subjects[subject]; {
			case n == 1:
				m, err := s.GetLastMsgForSubject(ctx, subject)
				if err != nil {
					return "", nil, err
				}
				return m.Subject, m.Data, nil
			case n > 1:
				return "", nil, fmt.Errorf("%d messages on %s, want one", n, subject)
			}
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return "", nil, err
		}
		select {
		case <-ctx.Done():
			return "", nil, fmt.Errorf("nothing published on %s: %w", subject, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
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
		stateOrderPlaced:    orderEnding("", false, productInStock1),
		stateOrderConfirmed: orderEnding(orders.StatusConfirmed, false, productInStock1),
		stateOrderRejected:  orderEnding(orders.StatusRejected, false, productOutOfStock),
		stateOrderCancelled: orderEnding(orders.StatusCancelled, true, productInStock1),
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

// productInStock1 is a product with one item in stock.
func productInStock1(ctx context.Context, c *catalogclient.Client) (string, error) {
	return productInStock(ctx, c, 1)
}

// orderEnding places an order of one item of the product pick chooses, with the instance's catalog
// failing every commit when failCommits is set, and checks it ends in want (any status when empty).
func orderEnding(want orders.Status, failCommits bool,
	pick func(context.Context, *catalogclient.Client) (string, error)) stateFunc {
	return func(ctx context.Context, in *instance, _ map[string]any) (map[string]any, error) {
		productID, err := pick(ctx, in.catalog)
		if err != nil {
			return nil, err
		}
		in.failCommits.Store(failCommits)
		o, _, err := in.orders.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: "state-customer",
			Items: []orders.Item{{ProductID: productID, Quantity: 1}}, IdempotencyKey: "state:" + platform.NewID()})
		if err != nil {
			return nil, err
		}
		if want != "" && o.Status != want {
			return nil, fmt.Errorf("order %s is %s (%s), want %s", o.ID, o.Status, o.Reason, want)
		}
		return map[string]any{"orderId": o.ID, "productId": productID}, nil
	}
}

// failingCommits answers every reservation commit 503 while fail is set, as a catalog whose database
// is down would: a technical failure after the charge, which orders compensates and cancels.
func failingCommits(next http.Handler, fail *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/commit") {
			platform.WriteError(w, platform.Errorf(http.StatusServiceUnavailable, "unavailable", "commits are failing (contract test)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// startOrders opens a catalog and a payments service, then orders over them, each on a fresh database,
// with orders' outbox relay publishing to a NATS JetStream broker of the instance's own.
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
	broker := natstest.Start(t)
	failCommits := new(atomic.Bool)
	catSrv, paySrv := httptest.NewServer(failingCommits(cat.api, failCommits)), httptest.NewServer(pay.api)
	stopDeps := func() {
		catSrv.Close()
		paySrv.Close()
		pay.close()
		cat.close()
		broker.Stop()
	}
	cfg := orders.Config{
		Addr:           "127.0.0.1:0",
		DB:             filepath.Join(t.TempDir(), "orders.db"),
		CatalogURL:     catSrv.URL,
		PaymentsURL:    paySrv.URL,
		ResumeInterval: time.Hour, // no order is left in flight here; the resumer only runs its first pass
		ResumeGrace:    2 * time.Second,
		SagaTimeout:    30 * time.Second,
		Events:         events.Config{URL: broker.URL()},
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
		api:         h,
		close:       func() { srv.Close(); closer.Close(); stopDeps() },
		clients:     clients{catalog: cat.catalog, payments: pay.payments, orders: c},
		events:      broker.URL(),
		failCommits: failCommits,
	}, nil
}
