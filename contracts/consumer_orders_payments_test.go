//go:build pact

package contracts

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pact-foundation/pact-go/v2/consumer"
	"github.com/pact-foundation/pact-go/v2/matchers"
	"github.com/pact-foundation/pact-go/v2/models"

	"github.com/resilience-lab/lab/services/payments"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
)

// The orders saga charges an order with the Idempotency-Key "order:<id>" (reading the payment's id,
// status and decline reason: a decline is a 201, not an error), refunds captured payments when it
// compensates (not_refundable means nothing was captured), and lists an order's payments to find what
// to refund.
func TestConsumerOrdersPayments(t *testing.T) {
	p := newPact(t, ordersName, paymentsName)
	chargeKey := func(b *consumer.V3RequestBuilder) {
		b.Header("Idempotency-Key", matchers.Regex("order:ord-1", `^order:.+$`))
	}
	charge := func(t *testing.T, cfg consumer.MockServerConfig, card string) (payments.Payment, error) {
		return newPaymentsClient(t, cfg).Charge(callContext(t), payments.ChargeRequest{
			OrderID: "ord-1", AmountCents: 4980, CardNumber: card, IdempotencyKey: "order:ord-1",
		})
	}
	paymentStatus := matchers.Regex("captured", `^(captured|declined|refunded)$`)
	declineReason := matchers.Regex(payments.DeclineCardDeclined, `^(card_declined|amount_over_limit)$`)

	t.Run("charge", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateOrderHasNoPayment, Parameters: map[string]any{"orderId": "ord-1"}}).
			UponReceiving("a charge of an order").
			WithRequest(http.MethodPost, "/payments", chargeKey, jsonRequest(map[string]any{
				"order_id":     "ord-1",
				"amount_cents": matchers.Integer(4980),
			})).
			WillRespondWith(http.StatusCreated, jsonBody(map[string]any{
				"id":     matchers.Like("pay-1"),
				"status": "captured",
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := charge(t, cfg, "")
				if err == nil && (got.ID != "pay-1" || got.Status != payments.StatusCaptured) {
					err = fmt.Errorf("Charge = %+v, want pay-1 captured", got)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// Compensation re-sends a charge whose answer was lost with the same key and body: payments answers
	// 200 with the payment made before instead of charging twice.
	t.Run("repeat a charge", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateCapturedPayment,
				Parameters: map[string]any{"orderId": "ord-1", "idempotencyKey": "order:ord-1"}}).
			UponReceiving("a charge repeated with the same Idempotency-Key").
			WithRequest(http.MethodPost, "/payments", func(b *consumer.V3RequestBuilder) {
				b.Header("Idempotency-Key", matchers.S("order:ord-1"))
			}, jsonRequest(map[string]any{
				"order_id":     "ord-1",
				"amount_cents": matchers.Integer(4980),
			})).
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{
				"id":     matchers.FromProviderState("${paymentId}", "pay-1"),
				"status": "captured",
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := charge(t, cfg, "")
				if err == nil && (got.ID != "pay-1" || got.Status != payments.StatusCaptured) {
					err = fmt.Errorf("Charge = %+v, want the captured pay-1", got)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("charge a declined card", func(t *testing.T) {
		err := p.AddInteraction().
			Given(stateIssuerDeclinesCard).
			UponReceiving("a charge with a card the issuer declines").
			WithRequest(http.MethodPost, "/payments", chargeKey, jsonRequest(map[string]any{
				"order_id":     "ord-1",
				"amount_cents": matchers.Integer(4980),
				"card_number":  matchers.FromProviderState("${cardNumber}", payments.DecliningCard),
			})).
			WillRespondWith(http.StatusCreated, jsonBody(map[string]any{
				"id":             matchers.Like("pay-1"),
				"status":         "declined",
				"decline_reason": declineReason,
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := charge(t, cfg, payments.DecliningCard)
				if err == nil && (got.ID != "pay-1" || got.Status != payments.StatusDeclined || got.DeclineReason != payments.DeclineCardDeclined) {
					err = fmt.Errorf("Charge = %+v, want pay-1 declined with card_declined", got)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	refundPath := matchers.FromProviderState("/payments/${paymentId}/refund", "/payments/pay-1/refund")
	t.Run("refund a captured payment", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateCapturedPayment, Parameters: map[string]any{"orderId": "ord-1"}}).
			UponReceiving("a refund of a captured payment").
			WithRequestPathMatcher(http.MethodPost, refundPath, jsonRequest(map[string]any{})).
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{
				"id":     matchers.FromProviderState("${paymentId}", "pay-1"),
				"status": "refunded",
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newPaymentsClient(t, cfg).Refund(callContext(t), "pay-1")
				if err == nil && (got.ID != "pay-1" || got.Status != payments.StatusRefunded) {
					err = fmt.Errorf("Refund = %+v, want pay-1 refunded", got)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("refund a declined payment", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateDeclinedPayment, Parameters: map[string]any{"orderId": "ord-1"}}).
			UponReceiving("a refund of a declined payment").
			WithRequestPathMatcher(http.MethodPost, refundPath, jsonRequest(map[string]any{})).
			WillRespondWith(http.StatusConflict, jsonBody(apiError("not_refundable"))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				_, err := newPaymentsClient(t, cfg).Refund(callContext(t), "pay-1")
				return expectAPIError(err, http.StatusConflict, "not_refundable")
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("list the payments of an order", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateCapturedPayment, Parameters: map[string]any{"orderId": "ord-1"}}).
			UponReceiving("a request for the payments of an order").
			WithRequest(http.MethodGet, "/payments", func(b *consumer.V3RequestBuilder) {
				b.Query("order_id", matchers.S("ord-1"))
			}).
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{
				"payments": matchers.EachLike(map[string]any{
					"id":     matchers.Like("pay-1"),
					"status": paymentStatus,
				}, 1),
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newPaymentsClient(t, cfg).ListByOrder(callContext(t), "ord-1")
				if err == nil && (len(got) != 1 || got[0].ID != "pay-1" || got[0].Status != payments.StatusCaptured) {
					err = fmt.Errorf("ListByOrder = %+v, want [pay-1 captured]", got)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// No payment is an empty list, not an error: compensation then has nothing to refund.
	t.Run("list the payments of an order without any", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateOrderHasNoPayment, Parameters: map[string]any{"orderId": "ord-1"}}).
			UponReceiving("a request for the payments of an order that has none").
			WithRequest(http.MethodGet, "/payments", func(b *consumer.V3RequestBuilder) {
				b.Query("order_id", matchers.S("ord-1"))
			}).
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{"payments": []any{}})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newPaymentsClient(t, cfg).ListByOrder(callContext(t), "ord-1")
				if err == nil && len(got) != 0 {
					err = fmt.Errorf("ListByOrder = %+v, want none", got)
				}
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// newPaymentsClient is the typed payments client both consumers build, aimed at the mock server.
func newPaymentsClient(t *testing.T, cfg consumer.MockServerConfig) *paymentsclient.Client {
	t.Helper()
	c, err := paymentsclient.New(mockURL(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
