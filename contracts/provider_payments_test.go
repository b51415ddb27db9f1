//go:build pact

package contracts

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/resilience-lab/lab/services/payments"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// TestProviderPayments verifies the pacts of gateway and orders against the real payments service.
func TestProviderPayments(t *testing.T) {
	verify(t, startProvider(t, startPayments, paymentsStates(), nil), paymentsName)
}

// stateChargeCents is the amount state handlers charge: under the default decline limit.
const stateChargeCents = 4980

func paymentsStates() map[string]stateFunc {
	return map[string]stateFunc{
		stateOrderHasNoPayment: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			orderID, err := stringParam(params, "orderId")
			if err != nil {
				return nil, err
			}
			list, err := in.payments.ListByOrder(ctx, orderID)
			if err == nil && len(list) > 0 {
				err = fmt.Errorf("order %s already has %d payments", orderID, len(list))
			}
			return nil, err
		},
		// Declining is a rule of the provider (payments.DecliningCard): nothing to seed, the state names
		// the card so the pact need not hard-code it.
		stateIssuerDeclinesCard: func(context.Context, *instance, map[string]any) (map[string]any, error) {
			return map[string]any{"cardNumber": payments.DecliningCard}, nil
		},
		stateCapturedPayment: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			return paymentIn(ctx, in.payments, params, "", payments.StatusCaptured)
		},
		stateDeclinedPayment: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			return paymentIn(ctx, in.payments, params, payments.DecliningCard, payments.StatusDeclined)
		},
		statePaymentDoesNotExist: func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error) {
			id, err := stringParam(params, "paymentId")
			if err != nil {
				return nil, err
			}
			_, err = in.payments.GetPayment(ctx, id)
			return nil, expectNotFound(err, "payment", id)
		},
	}
}

// paymentIn charges the state's order (parameter orderId, with the parameter idempotencyKey when given)
// with card and checks the outcome is want.
func paymentIn(ctx context.Context, c *paymentsclient.Client, params map[string]any, card string,
	want payments.Status) (map[string]any, error) {
	orderID, err := stringParam(params, "orderId")
	if err != nil {
		return nil, err
	}
	key := "state:" + platform.NewID()
	if _, ok := params["idempotencyKey"]; ok {
		if key, err = stringParam(params, "idempotencyKey"); err != nil {
			return nil, err
		}
	}
	p, err := c.Charge(ctx, payments.ChargeRequest{OrderID: orderID, AmountCents: stateChargeCents, CardNumber: card,
		IdempotencyKey: key})
	if err != nil {
		return nil, err
	}
	if p.Status != want {
		return nil, fmt.Errorf("charge of order %s is %s, want %s", orderID, p.Status, want)
	}
	return map[string]any{"paymentId": p.ID}, nil
}

// startPayments opens the payments service on a fresh database.
func startPayments(t *testing.T) (*instance, error) {
	cfg := payments.Config{
		Addr:             "127.0.0.1:0",
		DBPath:           filepath.Join(t.TempDir(), "payments.db"),
		DeclineOverCents: payments.DefaultDeclineOverCents,
	}
	svc, closer, err := payments.Open(context.Background(), cfg, testLogger(t, paymentsName), platform.NewRegistry())
	if err != nil {
		return nil, err
	}
	h := svc.Handler()
	srv := httptest.NewServer(h)
	c, err := paymentsclient.New(srv.URL)
	if err != nil {
		srv.Close()
		closer.Close()
		return nil, err
	}
	return &instance{api: h, close: func() { srv.Close(); closer.Close() }, clients: clients{payments: c}}, nil
}
