//go:build pact

package contracts

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pact-foundation/pact-go/v2/consumer"
	"github.com/pact-foundation/pact-go/v2/matchers"
	"github.com/pact-foundation/pact-go/v2/models"

	"github.com/resilience-lab/lab/services/payments"
)

// The gateway serves GET /api/payments/{id}: it hands the payment to its caller whole and uses its
// order_id to check that the caller owns the order. A 404 passes through as not_found.
func TestConsumerGatewayPayments(t *testing.T) {
	p := newPact(t, gatewayName, paymentsName)
	paymentPath := matchers.FromProviderState("/payments/${paymentId}", "/payments/pay-1")
	created := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

	for _, c := range []struct {
		name, state, orderID, description string
		body                              map[string]any
		want                              payments.Payment
	}{
		{
			name: "get a captured payment", state: stateCapturedPayment, orderID: "ord-1",
			description: "a request for a captured payment",
			body:        map[string]any{"status": "captured"},
			want:        payments.Payment{ID: "pay-1", OrderID: "ord-1", AmountCents: 4980, Status: payments.StatusCaptured, CreatedAt: created},
		},
		{
			name: "get a declined payment", state: stateDeclinedPayment, orderID: "ord-2",
			description: "a request for a declined payment",
			body: map[string]any{
				"status":         "declined",
				"decline_reason": matchers.Regex(payments.DeclineCardDeclined, `^(card_declined|amount_over_limit)$`),
			},
			want: payments.Payment{ID: "pay-1", OrderID: "ord-2", AmountCents: 4980, Status: payments.StatusDeclined,
				DeclineReason: payments.DeclineCardDeclined, CreatedAt: created},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := map[string]any{
				"id":           matchers.FromProviderState("${paymentId}", "pay-1"),
				"order_id":     c.orderID, // the state's order: ownership is checked against it
				"amount_cents": matchers.Integer(4980),
				"created_at":   timestamp(),
			}
			for k, v := range c.body {
				body[k] = v
			}
			err := p.AddInteraction().
				GivenWithParameter(models.ProviderState{Name: c.state, Parameters: map[string]any{"orderId": c.orderID}}).
				UponReceiving(c.description).
				WithRequestPathMatcher(http.MethodGet, paymentPath).
				WillRespondWith(http.StatusOK, jsonBody(body)).
				ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
					got, err := newPaymentsClient(t, cfg).GetPayment(callContext(t), "pay-1")
					if err == nil && got != c.want {
						err = fmt.Errorf("GetPayment = %+v, want %+v", got, c.want)
					}
					return err
				})
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("get an unknown payment", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: statePaymentDoesNotExist, Parameters: map[string]any{"paymentId": "pay-missing"}}).
			UponReceiving("a request for a payment that does not exist").
			WithRequest(http.MethodGet, "/payments/pay-missing").
			WillRespondWith(http.StatusNotFound, jsonBody(apiError("not_found"))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				_, err := newPaymentsClient(t, cfg).GetPayment(callContext(t), "pay-missing")
				return expectAPIError(err, http.StatusNotFound, "not_found")
			})
		if err != nil {
			t.Fatal(err)
		}
	})
}
