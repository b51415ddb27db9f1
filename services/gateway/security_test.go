package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

const shopSecret = "gateway-security-test-secret-0123456789"

// securedShop runs the four services as their mains do (ConfigFromEnv → Open → Handler) with one
// service token secret and the extra env given per service, and returns the gateway's URL.
func securedShop(t *testing.T, gatewayTracing platform.TracingConfig) string {
	t.Helper()
	ctx, dir, logger := context.Background(), t.TempDir(), slog.New(slog.DiscardHandler)
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
	check := func(e *platform.Env) {
		t.Helper()
		if err := e.Err(); err != nil {
			t.Fatal(err)
		}
	}
	e := env(map[string]string{"CATALOG_DB": filepath.Join(dir, "catalog.db")})
	catCfg := catalog.ConfigFromEnv(e)
	check(e)
	svc, closer, err := catalog.Open(ctx, catCfg, logger, prometheus.NewRegistry())
	catURL := serve(svc, closer, err)
	e = env(map[string]string{"PAYMENTS_DB": filepath.Join(dir, "payments.db")})
	payCfg := payments.ConfigFromEnv(e)
	check(e)
	svc, closer, err = payments.Open(ctx, payCfg, logger, prometheus.NewRegistry())
	payURL := serve(svc, closer, err)
	e = env(map[string]string{"ORDERS_DB": filepath.Join(dir, "orders.db"), "CATALOG_URL": catURL, "PAYMENTS_URL": payURL,
		"ORDERS_RESUME_INTERVAL": "1h"})
	ordCfg := orders.ConfigFromEnv(e)
	check(e)
	svc, closer, err = orders.Open(ctx, ordCfg, logger, prometheus.NewRegistry())
	ordURL := serve(svc, closer, err)
	e = env(map[string]string{"CATALOG_URL": catURL, "ORDERS_URL": ordURL, "PAYMENTS_URL": payURL})
	gwCfg := gateway.ConfigFromEnv(e)
	check(e)
	gwCfg.Tracing = gatewayTracing
	svc, closer, err = gateway.Open(ctx, gwCfg, logger, prometheus.NewRegistry())
	return serve(svc, closer, err)
}

func userToken(t *testing.T, gw string) string {
	t.Helper()
	resp, err := http.Post(gw+"/api/token", "application/json", strings.NewReader(`{"subject":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		t.Fatalf("POST /api/token: %d %v", resp.StatusCode, err)
	}
	return tok.Token
}

// TestGatewayCallsWithServiceTokensAndAnswersTheTraceID: behind the gateway every service asks for
// service tokens, and a whole order goes through; the gateway answers each request's trace id in
// X-Trace-Id, the trace its server span recorded.
func TestGatewayCallsWithServiceTokensAndAnswersTheTraceID(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	gw := securedShop(t, platform.TracingConfig{Provider: tp})
	token := userToken(t, gw)

	req, _ := http.NewRequest(http.MethodPost, gw+"/api/orders", strings.NewReader(`{"items":[{"product_id":"p-mug","quantity":1}]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(platform.HeaderIdempotencyKey, "k-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var o orders.Order
	_ = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || o.Status != orders.StatusConfirmed {
		t.Fatalf("POST /api/orders: %d %+v, want a confirmed order: every hop carried its service token", resp.StatusCode, o)
	}
	traceID := resp.Header.Get(platform.HeaderTraceID)
	if len(traceID) != 32 {
		t.Fatalf("%s = %q, want a 32-hex trace id", platform.HeaderTraceID, traceID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var server, links int
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() != traceID {
				continue
			}
			switch {
			case s.Name == "POST /api/orders":
				server++
			case strings.HasPrefix(s.Name, "gateway-orders "):
				links++
			}
		}
		if server == 1 && links == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %d server spans POST /api/orders, %d gateway-orders link spans; want 1 and 1", traceID, server, links)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGatewayEchoesACallersTraceWithTracingOff: with tracing off (the default) the gateway records
// nothing, yet answers the trace id of a traceparent the load driver sent, and none without one.
func TestGatewayEchoesACallersTraceWithTracingOff(t *testing.T) {
	gw := securedShop(t, platform.TracingConfig{})
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req, _ := http.NewRequest(http.MethodGet, gw+"/api/products", nil)
	req.Header.Set("Authorization", "Bearer "+userToken(t, gw))
	req.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(platform.HeaderTraceID) != traceID {
		t.Fatalf("GET /api/products: %d, %s %q; want 200 and the caller's trace id", resp.StatusCode,
			platform.HeaderTraceID, resp.Header.Get(platform.HeaderTraceID))
	}
	req.Header.Del("traceparent")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(platform.HeaderTraceID); got != "" {
		t.Errorf("no tracing, no traceparent, yet %s = %q", platform.HeaderTraceID, got)
	}
}
