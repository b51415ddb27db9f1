package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type server struct {
	url string
	reg *prometheus.Registry
}

// startServer assembles the service with Open, exactly as the cmd main does, behind an httptest server.
func startServer(t *testing.T, declineOverCents int64) server {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := payments.Config{
		DBPath:           filepath.Join(t.TempDir(), "payments.db"),
		DeclineOverCents: declineOverCents,
		Now:              func() time.Time { return now },
	}
	svc, db, err := payments.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { ts.Close(); db.Close() })
	return server{url: ts.URL, reg: reg}
}

func newClient(t *testing.T, url string, opts ...platform.ClientOption) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends a raw request and returns the status and body.
func do(t *testing.T, method, url string, header map[string]string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func decodePayment(t *testing.T, data []byte) payments.Payment {
	t.Helper()
	var p payments.Payment
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("answer %s: %v", data, err)
	}
	return p
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	e, ok := platform.AsError(err)
	if !ok || e.Status != status || e.Code != code {
		t.Fatalf("err = %v, want %d %s", err, status, code)
	}
}

func TestChargeStatusCodes(t *testing.T) {
	srv := startServer(t, 1000)
	key := map[string]string{platform.HeaderIdempotencyKey: "k1"}
	body := `{"order_id":"o1","amount_cents":1000}`

	status, data := do(t, http.MethodPost, srv.url+"/payments", key, body)
	if status != http.StatusCreated {
		t.Fatalf("first charge: %d %s, want 201", status, data)
	}
	first := decodePayment(t, data)
	if first.Status != payments.StatusCaptured || first.OrderID != "o1" || first.AmountCents != 1000 || !first.CreatedAt.Equal(now) {
		t.Fatalf("first charge = %+v", first)
	}
	status, data = do(t, http.MethodPost, srv.url+"/payments", key, body)
	if status != http.StatusOK || decodePayment(t, data) != first {
		t.Fatalf("replay: %d %s, want 200 with %+v", status, data, first)
	}
	status, data = do(t, http.MethodPost, srv.url+"/payments", key, `{"order_id":"o1","amount_cents":999}`)
	if status != http.StatusConflict || !bytes.Contains(data, []byte(`"idempotency_key_reused"`)) {
		t.Fatalf("reused key: %d %s, want 409 idempotency_key_reused", status, data)
	}
	// A decline is a business outcome in a 201, with the configured limit.
	status, data = do(t, http.MethodPost, srv.url+"/payments", map[string]string{platform.HeaderIdempotencyKey: "k2"}, `{"order_id":"o1","amount_cents":1001}`)
	if p := decodePayment(t, data); status != http.StatusCreated || p.Status != payments.StatusDeclined || p.DeclineReason != payments.DeclineAmountOverLimit {
		t.Fatalf("over-limit charge: %d %s, want 201 declined amount_over_limit", status, data)
	}
}

func TestConcurrentChargesWithOneKeyMakeOnePayment(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	const callers = 24
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		ids      = map[string]bool{}
		start    = make(chan struct{})
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, data := do(t, http.MethodPost, srv.url+"/payments",
				map[string]string{platform.HeaderIdempotencyKey: "one-key"}, `{"order_id":"o-race","amount_cents":4200}`)
			mu.Lock()
			defer mu.Unlock()
			statuses[status]++
			if status < 300 {
				ids[decodePayment(t, data).ID] = true
			}
		}()
	}
	close(start)
	wg.Wait()
	if statuses[http.StatusCreated] != 1 || statuses[http.StatusOK] != callers-1 || len(ids) != 1 {
		t.Fatalf("statuses = %v, payment ids = %v; want one 201, %d 200s, one payment", statuses, ids, callers-1)
	}
	list, err := newClient(t, srv.url).ListByOrder(context.Background(), "o-race")
	if err != nil || len(list) != 1 {
		t.Fatalf("payments of o-race = %v (err %v), want 1", list, err)
	}
	if got := counterValue(t, srv.reg, "payments_charges_total", "captured"); got != 1 {
		t.Fatalf("payments_charges_total{captured} = %v, want 1", got)
	}
}

func TestClient(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	ctx := context.Background()
	c := newClient(t, srv.url)

	req := payments.ChargeRequest{OrderID: "order/1 ?&", AmountCents: 2500, CardNumber: "4242424242424242", IdempotencyKey: "charge:order/1"}
	p, err := c.Charge(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != payments.StatusCaptured || p.OrderID != req.OrderID || p.AmountCents != 2500 {
		t.Fatalf("charge = %+v", p)
	}
	again, err := c.Charge(ctx, req)
	if err != nil || again != p {
		t.Fatalf("repeated charge = %+v (err %v), want %+v", again, err, p)
	}
	other := req
	other.AmountCents++
	_, err = c.Charge(ctx, other)
	wantCode(t, err, http.StatusConflict, "idempotency_key_reused")
	_, err = c.Charge(ctx, payments.ChargeRequest{OrderID: "o", AmountCents: 1})
	wantCode(t, err, http.StatusBadRequest, "missing_idempotency_key")

	declined, err := c.Charge(ctx, payments.ChargeRequest{OrderID: req.OrderID, AmountCents: 10, CardNumber: payments.DecliningCard, IdempotencyKey: "d"})
	if err != nil || declined.Status != payments.StatusDeclined || declined.DeclineReason != payments.DeclineCardDeclined {
		t.Fatalf("declining card: %+v (err %v), want declined card_declined", declined, err)
	}

	got, err := c.GetPayment(ctx, p.ID)
	if err != nil || got != p {
		t.Fatalf("get = %+v (err %v), want %+v", got, err, p)
	}
	_, err = c.GetPayment(ctx, "no-such-payment")
	wantCode(t, err, http.StatusNotFound, "not_found")
	_, err = c.GetPayment(ctx, "")
	wantCode(t, err, http.StatusBadRequest, "invalid_argument")

	list, err := c.ListByOrder(ctx, req.OrderID)
	if err != nil || len(list) != 2 || list[0] != p || list[1] != declined {
		t.Fatalf("list = %+v (err %v), want [%+v %+v]", list, err, p, declined)
	}
	empty, err := c.ListByOrder(ctx, "no-such-order")
	if err != nil || len(empty) != 0 {
		t.Fatalf("list of unknown order = %+v (err %v), want empty", empty, err)
	}
	_, err = c.ListByOrder(ctx, "")
	wantCode(t, err, http.StatusBadRequest, "invalid_argument")

	for range 2 {
		refunded, err := c.Refund(ctx, p.ID)
		if err != nil || refunded.Status != payments.StatusRefunded || refunded.ID != p.ID {
			t.Fatalf("refund = %+v (err %v), want %s refunded", refunded, err, p.ID)
		}
	}
	_, err = c.Refund(ctx, declined.ID)
	wantCode(t, err, http.StatusConflict, "not_refundable")
	_, err = c.Refund(ctx, "no-such-payment")
	wantCode(t, err, http.StatusNotFound, "not_found")
	if got := counterValue(t, srv.reg, "payments_refunds_total", ""); got != 1 {
		t.Fatalf("payments_refunds_total = %v, want 1", got)
	}
}

func TestClientAppliesPoliciesPerOperation(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	var (
		mu    sync.Mutex
		built = map[string]bool{}
		calls = map[string]int{}
	)
	policies := func(op string, idempotent bool) endpoint.Middleware {
		mu.Lock()
		built[op] = idempotent
		mu.Unlock()
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			return func(ctx context.Context, request any) (any, error) {
				mu.Lock()
				calls[op]++
				mu.Unlock()
				return next(ctx, request)
			}
		}
	}
	c := newClient(t, srv.url, platform.WithPolicies(policies))
	want := map[string]bool{"charge": true, "get_payment": true, "refund": true, "list_payments": true}
	if fmt.Sprint(built) != fmt.Sprint(want) {
		t.Fatalf("policies built for %v, want %v", built, want)
	}
	ctx := context.Background()
	p, err := c.Charge(ctx, payments.ChargeRequest{OrderID: "o", AmountCents: 5, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPayment(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refund(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListByOrder(ctx, "o"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(calls) != fmt.Sprint(map[string]int{"charge": 1, "get_payment": 1, "refund": 1, "list_payments": 1}) {
		t.Fatalf("calls through policies = %v, want one per operation", calls)
	}
}

func TestNewClientRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8083", "ftp://127.0.0.1", "http://"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("client.New(%q) succeeded, want an error", u)
		}
	}
}

func TestBadInputIsA4xx(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	// A captured and a declined payment for the routes that need one.
	c := newClient(t, srv.url)
	captured, err := c.Charge(context.Background(), payments.ChargeRequest{OrderID: "o", AmountCents: 1, IdempotencyKey: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	key := map[string]string{platform.HeaderIdempotencyKey: "bad-input"}
	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		status int
		code   string
	}{
		{"missing idempotency key", "POST", "/payments", nil, `{"order_id":"o","amount_cents":1}`, 400, "missing_idempotency_key"},
		{"idempotency key too long", "POST", "/payments", map[string]string{platform.HeaderIdempotencyKey: strings.Repeat("k", 256)}, `{"order_id":"o","amount_cents":1}`, 400, "invalid_argument"},
		{"malformed json", "POST", "/payments", key, `{"order_id":"o",`, 400, "malformed_json"},
		{"not an object", "POST", "/payments", key, `[1,2]`, 400, "wrong_type"},
		{"two values", "POST", "/payments", key, `{"order_id":"o","amount_cents":1}{}`, 400, "malformed_json"},
		{"empty body", "POST", "/payments", key, ``, 400, "empty_body"},
		{"unknown field", "POST", "/payments", key, `{"order_id":"o","amount_cents":1,"currency":"EUR"}`, 400, "unknown_field"},
		{"amount as string", "POST", "/payments", key, `{"order_id":"o","amount_cents":"1"}`, 400, "wrong_type"},
		{"fractional amount", "POST", "/payments", key, `{"order_id":"o","amount_cents":1.5}`, 400, "wrong_type"},
		{"amount beyond int64", "POST", "/payments", key, `{"order_id":"o","amount_cents":1e30}`, 400, "wrong_type"},
		{"order id as number", "POST", "/payments", key, `{"order_id":7,"amount_cents":1}`, 400, "wrong_type"},
		{"zero amount", "POST", "/payments", key, `{"order_id":"o","amount_cents":0}`, 400, "invalid_argument"},
		{"negative amount", "POST", "/payments", key, `{"order_id":"o","amount_cents":-1}`, 400, "invalid_argument"},
		{"null amount", "POST", "/payments", key, `{"order_id":"o","amount_cents":null}`, 400, "invalid_argument"},
		{"amount over the maximum", "POST", "/payments", key, `{"order_id":"o","amount_cents":1000000001}`, 400, "invalid_argument"},
		{"missing order id", "POST", "/payments", key, `{"amount_cents":1}`, 400, "invalid_argument"},
		{"order id too long", "POST", "/payments", key, `{"order_id":"` + strings.Repeat("o", 129) + `","amount_cents":1}`, 400, "invalid_argument"},
		{"card with letters", "POST", "/payments", key, `{"order_id":"o","amount_cents":1,"card_number":"4242x24242424242"}`, 400, "invalid_argument"},
		{"card too short", "POST", "/payments", key, `{"order_id":"o","amount_cents":1,"card_number":"424242"}`, 400, "invalid_argument"},
		{"body over 1 MiB", "POST", "/payments", key, `{"order_id":"` + strings.Repeat("o", platform.MaxBodyBytes) + `","amount_cents":1}`, 413, "body_too_large"},
		{"wrong content type", "POST", "/payments", map[string]string{platform.HeaderIdempotencyKey: "k", "Content-Type": "text/plain"}, `{}`, 415, "unsupported_media_type"},
		{"bad deadline header", "POST", "/payments", map[string]string{platform.HeaderIdempotencyKey: "k", platform.HeaderDeadline: "soon"}, `{"order_id":"o","amount_cents":1}`, 400, "bad_deadline"},
		{"unknown payment", "GET", "/payments/nope", nil, ``, 404, "not_found"},
		{"list without order id", "GET", "/payments", nil, ``, 400, "invalid_argument"},
		{"list with empty order id", "GET", "/payments?order_id=", nil, ``, 400, "invalid_argument"},
		{"refund unknown payment", "POST", "/payments/nope/refund", nil, ``, 404, "not_found"},
		{"refund with options", "POST", "/payments/" + captured.ID + "/refund", nil, `{"reason":"x"}`, 400, "unknown_field"},
		{"refund with malformed body", "POST", "/payments/" + captured.ID + "/refund", nil, `{`, 400, "malformed_json"},
		{"wrong method on payments", "DELETE", "/payments", nil, ``, 405, "method_not_allowed"},
		{"wrong method on a payment", "PUT", "/payments/" + captured.ID, nil, `{}`, 405, "method_not_allowed"},
		{"wrong method on refund", "GET", "/payments/" + captured.ID + "/refund", nil, ``, 405, "method_not_allowed"},
		{"unknown route", "GET", "/charges", nil, ``, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, data := do(t, tc.method, srv.url+tc.path, tc.header, tc.body)
			var body struct {
				Error *platform.Error `json:"error"`
			}
			if err := json.Unmarshal(data, &body); err != nil || body.Error == nil {
				t.Fatalf("%d %s: want the JSON error shape", status, data)
			}
			if status != tc.status || body.Error.Code != tc.code {
				t.Fatalf("got %d %s (%s), want %d %s", status, body.Error.Code, body.Error.Message, tc.status, tc.code)
			}
		})
	}
	// None of that stored anything or touched the seed payment.
	list, err := c.ListByOrder(context.Background(), "o")
	if err != nil || len(list) != 1 || list[0] != captured {
		t.Fatalf("payments after bad input = %+v (err %v), want only %+v", list, err, captured)
	}
}

func TestRefundAcceptsAnEmptyBodyOrObject(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	p, err := newClient(t, srv.url).Charge(context.Background(), payments.ChargeRequest{OrderID: "o", AmountCents: 1, IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"", "{}"} {
		status, data := do(t, http.MethodPost, srv.url+"/payments/"+p.ID+"/refund", nil, body)
		if status != http.StatusOK || decodePayment(t, data).Status != payments.StatusRefunded {
			t.Fatalf("refund with body %q: %d %s, want 200 refunded", body, status, data)
		}
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	if status, data := do(t, http.MethodGet, srv.url+"/readyz", nil, ""); status != http.StatusOK || !bytes.Contains(data, []byte(`"db":"ok"`)) {
		t.Fatalf("readyz: %d %s", status, data)
	}
	status, data := do(t, http.MethodGet, srv.url+"/metrics", nil, "")
	for _, want := range []string{`payments_charges_total{outcome="captured"} 0`, `payments_charges_total{outcome="declined"} 0`, `payments_refunds_total 0`} {
		if status != http.StatusOK || !bytes.Contains(data, []byte(want)) {
			t.Fatalf("metrics (%d) lack %q", status, want)
		}
	}
}

func TestOpenFailsOnAnUnusableDatabase(t *testing.T) {
	cfg := payments.Config{DBPath: filepath.Join(t.TempDir(), "no-such-dir", "payments.db")}
	if _, _, err := payments.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err == nil {
		t.Fatal("Open succeeded in a missing directory")
	}
}

func TestConfigFromEnv(t *testing.T) {
	// Service auth has no default: it needs a secret or SERVICE_AUTH=off.
	env := platform.EnvFrom(map[string]string{"SERVICE_AUTH": "off"})
	cfg := payments.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":8083" || cfg.DBPath != "payments.db" || cfg.DeclineOverCents != 100000 ||
		cfg.LogLevel != slog.LevelInfo || cfg.ShutdownTimeout != 10*time.Second || cfg.Now != nil {
		t.Fatalf("defaults = %+v", cfg)
	}

	env = platform.EnvFrom(map[string]string{
		"PAYMENTS_ADDR": "127.0.0.1:9000", "PAYMENTS_DB": "/tmp/p.db", "PAYMENTS_DECLINE_OVER_CENTS": "250",
		"LOG_LEVEL": "debug", "SHUTDOWN_TIMEOUT": "3s", "SERVICE_AUTH": "off",
	})
	cfg = payments.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9000" || cfg.DBPath != "/tmp/p.db" || cfg.DeclineOverCents != 250 ||
		cfg.LogLevel != slog.LevelDebug || cfg.ShutdownTimeout != 3*time.Second {
		t.Fatalf("from env = %+v", cfg)
	}

	env = platform.EnvFrom(map[string]string{
		"PAYMENTS_DECLINE_OVER_CENTS": "-1", "LOG_LEVEL": "loud", "SHUTDOWN_TIMEOUT": "soon",
	})
	payments.ConfigFromEnv(env)
	err := env.Err()
	for _, key := range []string{"PAYMENTS_DECLINE_OVER_CENTS", "LOG_LEVEL", "SHUTDOWN_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("bad %s not reported: %v", key, err)
		}
	}
}

// counterValue reads a counter from reg; outcome "" matches the unlabelled counter.
func counterValue(t *testing.T, reg prometheus.Gatherer, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					label = l.GetValue()
				}
			}
			if label == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{outcome=%q}", name, outcome)
	return 0
}

// Hundreds of concurrent writers and readers must all be served: SQLite contention is never a 5xx.
func TestManyConcurrentCallersAreAllServed(t *testing.T) {
	srv := startServer(t, payments.DefaultDeclineOverCents)
	c := newClient(t, srv.url)
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			order := fmt.Sprintf("load-%d", i%20)
			p, err := c.Charge(ctx, payments.ChargeRequest{OrderID: order, AmountCents: int64(100 + i), IdempotencyKey: fmt.Sprint("load-", i)})
			if err == nil {
				_, err = c.Refund(ctx, p.ID)
			}
			if err == nil {
				_, err = c.ListByOrder(ctx, order)
			}
			if err != nil {
				errs <- fmt.Errorf("caller %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := counterValue(t, srv.reg, "payments_refunds_total", ""); got != callers {
		t.Fatalf("payments_refunds_total = %v, want %d", got, callers)
	}
}
