//go:build pact

package contracts

import (
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/pact-foundation/pact-go/v2/consumer"
	"github.com/pact-foundation/pact-go/v2/matchers"
	"github.com/pact-foundation/pact-go/v2/models"

	"github.com/resilience-lab/lab/services/orders"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
)

// The gateway places orders for the token's customer (with its own Idempotency-Key), gets and lists
// them, and hands each order to its caller whole. It relies on customer_id to hide other customers'
// orders, on payment_id to fetch the payment for /details, and on a 404 for an unknown order.
func TestConsumerGatewayOrders(t *testing.T) {
	p := newPact(t, gatewayName, ordersName)
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	confirmed := func(id matchers.Matcher) map[string]any {
		return map[string]any{
			"id":          id,
			"customer_id": "c-1",
			"items": matchers.EachLike(map[string]any{
				"product_id": matchers.Like("p-espresso"),
				"quantity":   matchers.Integer(2),
			}, 1),
			"total_cents":    matchers.Integer(4980),
			"status":         "confirmed",
			"reservation_id": matchers.Like("res-1"),
			"payment_id":     matchers.Like("pay-1"),
			"created_at":     timestamp(),
			"updated_at":     timestamp(),
		}
	}
	wantConfirmed := orders.Order{ID: "ord-1", CustomerID: "c-1", Items: []orders.Item{{ProductID: "p-espresso", Quantity: 2}},
		TotalCents: 4980, Status: orders.StatusConfirmed, ReservationID: "res-1", PaymentID: "pay-1", CreatedAt: at, UpdatedAt: at}
	placeBody := func(productExample string) map[string]any {
		return map[string]any{
			"customer_id": "c-1",
			"items": matchers.EachLike(map[string]any{
				"product_id": matchers.FromProviderState("${productId}", productExample),
				"quantity":   matchers.Integer(2),
			}, 1),
		}
	}
	// The gateway scopes the caller's key to the customer: "gw-" and a SHA-256 in hex.
	const key = "gw-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	place := func(t *testing.T, cfg consumer.MockServerConfig, productID string) (orders.Order, bool, error) {
		return newOrdersClient(t, cfg).PlaceOrder(callContext(t), orders.PlaceOrderRequest{
			CustomerID: "c-1", Items: []orders.Item{{ProductID: productID, Quantity: 2}}, IdempotencyKey: key,
		})
	}
	idempotencyKey := func(b *consumer.V3RequestBuilder) {
		b.Header("Idempotency-Key", matchers.Like(key))
	}

	t.Run("place an order", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateProductInStock, Parameters: map[string]any{"quantity": 2}}).
			UponReceiving("an order of a product in stock").
			WithRequest(http.MethodPost, "/orders", idempotencyKey, jsonRequest(placeBody("p-espresso"))).
			WillRespondWith(http.StatusCreated, jsonBody(confirmed(matchers.Like("ord-1")))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, created, err := place(t, cfg, "p-espresso")
				if err == nil && (!created || !reflect.DeepEqual(got, wantConfirmed)) {
					err = fmt.Errorf("PlaceOrder = %+v created %v, want %+v created", got, created, wantConfirmed)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// The same key and request again is answered 200 with the order the first request placed; the
	// gateway passes the status on, so its caller can tell a retry from a new order.
	t.Run("repeat an order", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateCustomerHasOrder,
				Parameters: map[string]any{"customerId": "c-1", "idempotencyKey": key, "quantity": 2}}).
			UponReceiving("an order repeated with the same Idempotency-Key").
			WithRequest(http.MethodPost, "/orders", func(b *consumer.V3RequestBuilder) {
				b.Header("Idempotency-Key", matchers.S(key))
			}, jsonRequest(placeBody("p-espresso"))).
			WillRespondWith(http.StatusOK, jsonBody(confirmed(matchers.FromProviderState("${orderId}", "ord-1")))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, created, err := place(t, cfg, "p-espresso")
				if err == nil && (created || !reflect.DeepEqual(got, wantConfirmed)) {
					err = fmt.Errorf("PlaceOrder = %+v created %v, want %+v repeated", got, created, wantConfirmed)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// A rejection is the order's outcome, answered 201 like any placed order.
	t.Run("place an order of a sold-out product", func(t *testing.T) {
		err := p.AddInteraction().
			Given(stateProductOutOfStock).
			UponReceiving("an order of a product that is out of stock").
			WithRequest(http.MethodPost, "/orders", idempotencyKey, jsonRequest(placeBody("p-sold-out"))).
			WillRespondWith(http.StatusCreated, jsonBody(map[string]any{
				"id":          matchers.Like("ord-1"),
				"customer_id": "c-1",
				"status":      "rejected",
				"reason":      "out_of_stock",
				"created_at":  timestamp(),
				"updated_at":  timestamp(),
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, created, err := place(t, cfg, "p-sold-out")
				if err == nil && (!created || got.ID != "ord-1" || got.CustomerID != "c-1" || got.Status != orders.StatusRejected || got.Reason != "out_of_stock") {
					err = fmt.Errorf("PlaceOrder = %+v created %v, want ord-1 of c-1 rejected out_of_stock, created", got, created)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	customerHasOrder := models.ProviderState{Name: stateCustomerHasOrder, Parameters: map[string]any{"customerId": "c-1"}}
	t.Run("get an order", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(customerHasOrder).
			UponReceiving("a request for an order").
			WithRequestPathMatcher(http.MethodGet, matchers.FromProviderState("/orders/${orderId}", "/orders/ord-1")).
			WillRespondWith(http.StatusOK, jsonBody(confirmed(matchers.FromProviderState("${orderId}", "ord-1")))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newOrdersClient(t, cfg).GetOrder(callContext(t), "ord-1")
				if err == nil && !reflect.DeepEqual(got, wantConfirmed) {
					err = fmt.Errorf("GetOrder = %+v, want %+v", got, wantConfirmed)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("get an unknown order", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateOrderDoesNotExist, Parameters: map[string]any{"orderId": "ord-missing"}}).
			UponReceiving("a request for an order that does not exist").
			WithRequest(http.MethodGet, "/orders/ord-missing").
			WillRespondWith(http.StatusNotFound, jsonBody(apiError("not_found"))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				_, err := newOrdersClient(t, cfg).GetOrder(callContext(t), "ord-missing")
				return expectAPIError(err, http.StatusNotFound, "not_found")
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("list a customer's orders", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(customerHasOrder).
			UponReceiving("a request for a customer's orders").
			WithRequest(http.MethodGet, "/orders", func(b *consumer.V3RequestBuilder) {
				b.Query("customer_id", matchers.S("c-1"))
			}).
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{
				"orders": matchers.EachLike(confirmed(matchers.Like("ord-1")), 1),
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newOrdersClient(t, cfg).ListOrders(callContext(t), "c-1")
				if err == nil && !reflect.DeepEqual(got, []orders.Order{wantConfirmed}) {
					err = fmt.Errorf("ListOrders = %+v, want [%+v]", got, wantConfirmed)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// newOrdersClient is the typed orders client the gateway builds, aimed at the mock server.
func newOrdersClient(t *testing.T, cfg consumer.MockServerConfig) *ordersclient.Client {
	t.Helper()
	c, err := ordersclient.New(mockURL(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
