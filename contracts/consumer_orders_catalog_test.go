//go:build pact

package contracts

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pact-foundation/pact-go/v2/consumer"
	"github.com/pact-foundation/pact-go/v2/matchers"
	"github.com/pact-foundation/pact-go/v2/models"

	"github.com/resilience-lab/lab/services/catalog"
)

// The orders saga reserves stock (using the reservation's id and total), commits it once paid and
// releases it when compensating. It tells outcomes apart by status and code: 404 → unknown_product,
// out_of_stock → rejected, reservation_not_held on commit → cancel and refund, reservation_committed on
// release → the order is complete after all. Those codes are the contract; fields it ignores are not.
func TestConsumerOrdersCatalog(t *testing.T) {
	p := newPact(t, ordersName, catalogName)
	reserveBody := func(productID any, quantity int) map[string]any {
		return map[string]any{
			"order_id": matchers.Like("ord-1"),
			"items": matchers.EachLike(map[string]any{
				"product_id": productID,
				"quantity":   matchers.Integer(quantity),
			}, 1),
		}
	}
	reserve := func(t *testing.T, cfg consumer.MockServerConfig, productID string, quantity int64) (catalog.Reservation, error) {
		return newCatalogClient(t, cfg).Reserve(callContext(t), catalog.ReserveRequest{
			OrderID: "ord-1", Items: []catalog.Item{{ProductID: productID, Quantity: quantity}},
		})
	}
	reservationPath := func(action string) matchers.Matcher {
		return matchers.FromProviderState("/reservations/${reservationId}/"+action, "/reservations/res-1/"+action)
	}

	t.Run("reserve stock", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateProductInStock, Parameters: map[string]any{"quantity": 2}}).
			UponReceiving("a reservation of a product in stock").
			WithRequest(http.MethodPost, "/reservations",
				jsonRequest(reserveBody(matchers.FromProviderState("${productId}", "p-espresso"), 2))).
			WillRespondWith(http.StatusCreated, jsonBody(map[string]any{
				"id":          matchers.Like("res-1"),
				"status":      "held",
				"total_cents": matchers.Integer(4980),
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				r, err := reserve(t, cfg, "p-espresso", 2)
				if err != nil {
					return err
				}
				if r.ID != "res-1" || r.Status != catalog.ReservationHeld || r.TotalCents != 4980 {
					return fmt.Errorf("Reserve = %+v, want held res-1 of 4980 cents", r)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// Compensation re-sends Reserve when a reservation's answer was lost: the same order_id gets the
	// reservation made before (200), whatever the items, which fences off a late duplicate.
	t.Run("repeat a reservation", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateReservationHeld, Parameters: map[string]any{"orderId": "ord-1"}}).
			UponReceiving("a reservation repeated for the same order").
			WithRequest(http.MethodPost, "/reservations", jsonRequest(map[string]any{
				"order_id": "ord-1",
				"items": matchers.EachLike(map[string]any{
					"product_id": matchers.FromProviderState("${productId}", "p-espresso"),
					"quantity":   matchers.Integer(1),
				}, 1),
			})).
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{
				"id":          matchers.FromProviderState("${reservationId}", "res-1"),
				"status":      "held",
				"total_cents": matchers.Integer(2490),
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				r, err := reserve(t, cfg, "p-espresso", 1)
				if err == nil && (r.ID != "res-1" || r.Status != catalog.ReservationHeld) {
					err = fmt.Errorf("Reserve = %+v, want the held res-1", r)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reserve a sold-out product", func(t *testing.T) {
		err := p.AddInteraction().
			Given(stateProductOutOfStock).
			UponReceiving("a reservation of a product that is out of stock").
			WithRequest(http.MethodPost, "/reservations",
				jsonRequest(reserveBody(matchers.FromProviderState("${productId}", "p-sold-out"), 1))).
			WillRespondWith(http.StatusConflict, jsonBody(apiError("out_of_stock"))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				_, err := reserve(t, cfg, "p-sold-out", 1)
				return expectAPIError(err, http.StatusConflict, "out_of_stock")
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reserve an unknown product", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateProductDoesNotExist, Parameters: map[string]any{"productId": "p-missing"}}).
			UponReceiving("a reservation of a product that does not exist").
			WithRequest(http.MethodPost, "/reservations", jsonRequest(reserveBody("p-missing", 1))).
			WillRespondWith(http.StatusNotFound, jsonBody(apiError("not_found"))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				_, err := reserve(t, cfg, "p-missing", 1)
				return expectAPIError(err, http.StatusNotFound, "not_found")
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// Commit and release send an empty JSON object; the reservation id comes from the provider state.
	for _, c := range []struct {
		name, state, action, description string
		status                           int
		body                             map[string]any
		call                             func(t *testing.T, cfg consumer.MockServerConfig) error
	}{
		{
			name: "commit a held reservation", state: stateReservationHeld, action: "commit",
			description: "a commit of a held reservation", status: http.StatusOK,
			body: map[string]any{"id": matchers.FromProviderState("${reservationId}", "res-1"), "status": "committed"},
			call: func(t *testing.T, cfg consumer.MockServerConfig) error {
				r, err := newCatalogClient(t, cfg).Commit(callContext(t), "res-1")
				if err == nil && (r.ID != "res-1" || r.Status != catalog.ReservationCommitted) {
					err = fmt.Errorf("Commit = %+v, want res-1 committed", r)
				}
				return err
			},
		},
		{
			name: "commit a released reservation", state: stateReservationReleased, action: "commit",
			description: "a commit of a released reservation", status: http.StatusConflict,
			body: apiError("reservation_not_held"),
			call: func(t *testing.T, cfg consumer.MockServerConfig) error {
				_, err := newCatalogClient(t, cfg).Commit(callContext(t), "res-1")
				return expectAPIError(err, http.StatusConflict, "reservation_not_held")
			},
		},
		{
			name: "release a held reservation", state: stateReservationHeld, action: "release",
			description: "a release of a held reservation", status: http.StatusOK,
			body: map[string]any{"id": matchers.FromProviderState("${reservationId}", "res-1"), "status": "released"},
			call: func(t *testing.T, cfg consumer.MockServerConfig) error {
				r, err := newCatalogClient(t, cfg).Release(callContext(t), "res-1")
				if err == nil && (r.ID != "res-1" || r.Status != catalog.ReservationReleased) {
					err = fmt.Errorf("Release = %+v, want res-1 released", r)
				}
				return err
			},
		},
		{
			name: "release a committed reservation", state: stateReservationCommitted, action: "release",
			description: "a release of a committed reservation", status: http.StatusConflict,
			body: apiError("reservation_committed"),
			call: func(t *testing.T, cfg consumer.MockServerConfig) error {
				_, err := newCatalogClient(t, cfg).Release(callContext(t), "res-1")
				return expectAPIError(err, http.StatusConflict, "reservation_committed")
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := p.AddInteraction().
				Given(c.state).
				UponReceiving(c.description).
				WithRequestPathMatcher(http.MethodPost, reservationPath(c.action), jsonRequest(map[string]any{})).
				WillRespondWith(c.status, jsonBody(c.body)).
				ExecuteTest(t, func(cfg consumer.MockServerConfig) error { return c.call(t, cfg) })
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
