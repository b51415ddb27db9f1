package orders_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-lab/lab/services/catalog"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/orders"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	"github.com/resilience-lab/lab/services/payments"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

const shopSecret = "orders-auth-test-secret-0123456789abcdef"

// securedShop runs catalog, payments and orders as their mains do (ConfigFromEnv → Open → Handler)
// with a service token secret, each tracing into its own in-memory exporter.
type securedShop struct {
	catalogURL, paymentsURL, ordersURL string
	spans                              map[string]*tracetest.InMemoryExporter
}

func startSecuredShop(t *testing.T) *securedShop {
	t.Helper()
	dir := t.TempDir()
	s := &securedShop{spans: map[string]*tracetest.InMemoryExporter{}}
	provider := func(name string) trace.TracerProvider {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		s.spans[name] = exp
		return tp
	}
	env := func(vars map[string]string) *platform.Env {
		vars["SERVICE_TOKEN_SECRET"] = shopSecret
		return platform.EnvFrom(vars)
	}
	serve := func(svc *platform.Service, closer interface{ Close() error }, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(func() { srv.Close(); closer.Close() })
		return srv.URL
	}
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()

	e := env(map[string]string{"CATALOG_DB": filepath.Join(dir, "catalog.db")})
	catCfg := catalog.ConfigFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	catCfg.Tracing.Provider = provider("catalog")
	svc, closer, err := catalog.Open(ctx, catCfg, logger, prometheus.NewRegistry())
	s.catalogURL = serve(svc, closer, err)

	e = env(map[string]string{"PAYMENTS_DB": filepath.Join(dir, "payments.db")})
	payCfg := payments.ConfigFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	payCfg.Tracing.Provider = provider("payments")
	svc, closer, err = payments.Open(ctx, payCfg, logger, prometheus.NewRegistry())
	s.paymentsURL = serve(svc, closer, err)

	e = env(map[string]string{"ORDERS_DB": filepath.Join(dir, "orders.db"), "CATALOG_URL": s.catalogURL,
		"PAYMENTS_URL": s.paymentsURL, "ORDERS_RESUME_INTERVAL": "1h"})
	ordCfg := orders.ConfigFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	ordCfg.Tracing.Provider = provider("orders")
	svc, closer, err = orders.Open(ctx, ordCfg, logger, prometheus.NewRegistry())
	s.ordersURL = serve(svc, closer, err)
	return s
}

// as is the service auth of the shop's secret.
var as = platform.ServiceAuth{Secret: []byte(shopSecret)}

// TestServiceTokensAcrossTheShop: the gateway's token places an order, whose saga reaches catalog and
// payments with orders' own tokens; a call without a token is 401, a service outside a route's callers
// 403.
func TestServiceTokensAcrossTheShop(t *testing.T) {
	s := startSecuredShop(t)
	ctx := context.Background()
	place := func(c *ordersclient.Client) error {
		_, _, err := c.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: "alice", IdempotencyKey: "k-" + time.Now().String(),
			Items: []orders.Item{{ProductID: "p-mug", Quantity: 1}}})
		return err
	}
	refused := func(t *testing.T, what string, err error, status int, code string) {
		t.Helper()
		if e, ok := platform.AsError(err); !ok || e.Status != status || e.Code != code {
			t.Errorf("%s: %v, want %d %s", what, err, status, code)
		}
	}

	gateway, err := ordersclient.New(s.ordersURL, as.Client("gateway", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	o, _, err := gateway.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: "alice", IdempotencyKey: "k-1",
		Items: []orders.Item{{ProductID: "p-mug", Quantity: 1}}})
	if err != nil {
		t.Fatalf("the gateway's order: %v", err)
	}
	if o.Status != orders.StatusConfirmed {
		t.Fatalf("order %+v, want confirmed: the saga's calls carry orders' tokens", o)
	}

	anonymous, _ := ordersclient.New(s.ordersURL)
	refused(t, "no token", place(anonymous), 401, platform.CodeMissingServiceToken)
	stranger, _ := ordersclient.New(s.ordersURL, platform.ServiceAuth{Secret: []byte("another-secret-0123456789abcdefghijkl")}.Client("gateway", "orders"))
	refused(t, "another secret", place(stranger), 401, platform.CodeInvalidServiceToken)
	misaddressed, _ := ordersclient.New(s.ordersURL, as.Client("gateway", "payments"))
	refused(t, "a token for payments", place(misaddressed), 403, platform.CodeWrongAudience)
	notifications, _ := ordersclient.New(s.ordersURL, as.Client("notifications", "orders"))
	refused(t, "notifications placing an order", place(notifications), 403, platform.CodeCallerNotAllowed)

	gatewayToCatalog, _ := catalogclient.New(s.catalogURL, as.Client("gateway", "catalog"))
	if _, err := gatewayToCatalog.ListProducts(ctx); err != nil {
		t.Errorf("the gateway reading products: %v", err)
	}
	_, err = gatewayToCatalog.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-x", Items: []catalog.Item{{ProductID: "p-mug", Quantity: 1}}})
	refused(t, "the gateway reserving stock", err, 403, platform.CodeCallerNotAllowed)

	gatewayToPayments, _ := paymentsclient.New(s.paymentsURL, as.Client("gateway", "payments"))
	if _, err := gatewayToPayments.GetPayment(ctx, o.PaymentID); err != nil {
		t.Errorf("the gateway reading the order's payment: %v", err)
	}
	_, err = gatewayToPayments.Charge(ctx, payments.ChargeRequest{OrderID: "o-x", AmountCents: 100, IdempotencyKey: "k-x"})
	refused(t, "the gateway charging", err, 403, platform.CodeCallerNotAllowed)
}

// TestOneTraceAcrossTheSaga: an order placed inside a trace yields one trace across orders, catalog and
// payments: orders' server span, its link spans and client spans, and the callees' server spans.
func TestOneTraceAcrossTheSaga(t *testing.T) {
	s := startSecuredShop(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	ctx, root := tp.Tracer("test").Start(context.Background(), "load driver")
	gateway, err := ordersclient.New(s.ordersURL, as.Client("gateway", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := gateway.PlaceOrder(ctx, orders.PlaceOrderRequest{CustomerID: "bob", IdempotencyKey: "k-1",
		Items: []orders.Item{{ProductID: "p-mug", Quantity: 1}}}); err != nil {
		t.Fatal(err)
	}
	root.End()
	traceID := root.SpanContext().TraceID()

	want := map[string][]string{
		"orders":   {"POST /orders", "orders-catalog reserve", "orders-payments charge", "orders-catalog commit"},
		"catalog":  {"POST /reservations", "POST /reservations/{id}/commit"},
		"payments": {"POST /payments"},
	}
	for svc, names := range want {
		deadline := time.Now().Add(10 * time.Second)
		for _, name := range names {
			for {
				found := false
				for _, sp := range s.spans[svc].GetSpans() {
					if sp.Name == name {
						found = true
						if sp.SpanContext.TraceID() != traceID {
							t.Errorf("%s span %q is in trace %s, want %s", svc, name, sp.SpanContext.TraceID(), traceID)
						}
					}
				}
				if found {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s recorded no span %q", svc, name)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}
