package catalog_test

import (
	"context"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/platform"
)

// settableClock is a clock tests move forward.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type running struct {
	url    string
	client *client.Client
	clock  *settableClock
	reg    *prometheus.Registry
	closer io.Closer
}

// start runs the catalog as cmd/catalog assembles it (ConfigFromEnv → Open → Handler) on an httptest
// server, with a temp-dir database, the given env overrides and a settable clock.
func start(t *testing.T, env map[string]string) running {
	t.Helper()
	vars := map[string]string{
		"CATALOG_DB": filepath.Join(t.TempDir(), "catalog.db"),
		// Sweeps happen only when a test asks for them with a short interval.
		"CATALOG_SWEEP_INTERVAL": "1h",
		// These tests call the API without service tokens; auth_test.go runs with them.
		"SERVICE_AUTH": "off",
	}
	for k, v := range env {
		vars[k] = v
	}
	e := platform.EnvFrom(vars)
	cfg := catalog.ConfigFromEnv(e)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	clock := &settableClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg.Now = clock.Now
	reg := platform.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, closer, err := catalog.Open(context.Background(), cfg, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := closer.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return running{url: srv.URL, client: c, clock: clock, reg: reg, closer: closer}
}

func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	e, ok := platform.AsError(err)
	if !ok || e.Status != status || e.Code != code {
		t.Fatalf("error = %v, want %d %s", err, status, code)
	}
}

// counterValue sums the samples of counter name whose label has value, or returns -1 when there is none.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum, found = sum+m.GetCounter().GetValue(), true
				}
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

func TestClientRoundTrip(t *testing.T) {
	cat := start(t, map[string]string{"CATALOG_SEED_STOCK": "20"})
	ctx := context.Background()

	products, err := cat.client.ListProducts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(products) != 8 {
		t.Fatalf("%d products, want 8", len(products))
	}
	grinder, err := cat.client.GetProduct(ctx, "p-grinder")
	if err != nil || grinder.ID != "p-grinder" || grinder.Stock != 20 || grinder.PriceCents <= 0 {
		t.Fatalf("get p-grinder = %+v, %v", grinder, err)
	}
	_, err = cat.client.GetProduct(ctx, "p-nope")
	wantAPIError(t, err, http.StatusNotFound, "not_found")

	r, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-1", Items: []catalog.Item{{ProductID: "p-grinder", Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != catalog.ReservationHeld || r.TotalCents != 2*grinder.PriceCents || len(r.Items) != 1 ||
		!r.ExpiresAt.Equal(cat.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("reservation = %+v", r)
	}
	again, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-1", Items: []catalog.Item{{ProductID: "p-grinder", Quantity: 2}}})
	if err != nil || again.ID != r.ID {
		t.Fatalf("repeat reserve = %+v, %v; want reservation %s", again, err, r.ID)
	}
	got, err := cat.client.GetReservation(ctx, r.ID)
	if err != nil || got.ID != r.ID || got.OrderID != "o-1" || got.Status != catalog.ReservationHeld {
		t.Fatalf("get reservation = %+v, %v", got, err)
	}
	committed, err := cat.client.Commit(ctx, r.ID)
	if err != nil || committed.Status != catalog.ReservationCommitted {
		t.Fatalf("commit = %+v, %v", committed, err)
	}
	if committed, err = cat.client.Commit(ctx, r.ID); err != nil || committed.Status != catalog.ReservationCommitted {
		t.Fatalf("repeated commit = %+v, %v", committed, err)
	}
	_, err = cat.client.Release(ctx, r.ID)
	wantAPIError(t, err, http.StatusConflict, "reservation_committed")

	r2, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-2", Items: []catalog.Item{{ProductID: "p-grinder", Quantity: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		released, err := cat.client.Release(ctx, r2.ID)
		if err != nil || released.Status != catalog.ReservationReleased {
			t.Fatalf("release = %+v, %v", released, err)
		}
	}
	_, err = cat.client.Commit(ctx, r2.ID)
	wantAPIError(t, err, http.StatusConflict, "reservation_not_held")
	if p, _ := cat.client.GetProduct(ctx, "p-grinder"); p.Stock != 18 {
		t.Errorf("p-grinder stock = %d, want 18 (2 sold, 5 released)", p.Stock)
	}

	_, err = cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-3", Items: []catalog.Item{{ProductID: "p-sold-out", Quantity: 1}}})
	wantAPIError(t, err, http.StatusConflict, "out_of_stock")
	_, err = cat.client.GetReservation(ctx, "nope")
	wantAPIError(t, err, http.StatusNotFound, "not_found")

	for outcome, want := range map[string]float64{"held": 2, "out_of_stock": 1, "committed": 1, "released": 1, "expired": 0} {
		if got := counterValue(t, cat.reg, "catalog_reservations_total", "outcome", outcome); got != want {
			t.Errorf("catalog_reservations_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

func TestReserveAnswers201ThenRepeat200(t *testing.T) {
	cat := start(t, nil)
	body := `{"order_id":"o-1","items":[{"product_id":"p-mug","quantity":1}]}`
	var ids []string
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		resp, err := http.Post(cat.url+"/reservations", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("call %d: status %d (%s), want %d", i+1, resp.StatusCode, data, want)
		}
		var r catalog.Reservation
		if err := platform.DecodeStrict(data, &r); err != nil {
			t.Fatalf("call %d: answer %s is not a Reservation: %v", i+1, data, err)
		}
		ids = append(ids, r.ID)
	}
	if ids[0] != ids[1] {
		t.Errorf("repeat answered reservation %s, want %s", ids[1], ids[0])
	}
}

func TestBadInputIsAlways4xx(t *testing.T) {
	cat := start(t, nil)
	held, err := cat.client.Reserve(context.Background(), catalog.ReserveRequest{OrderID: "o-held", Items: []catalog.Item{{ProductID: "p-mug", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	item := func(product string, quantity string) string {
		return `{"order_id":"o-x","items":[{"product_id":"` + product + `","quantity":` + quantity + `}]}`
	}
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"malformed JSON", "POST", "/reservations", "application/json", `{"order_id":`, 400, "malformed_json"},
		{"not JSON at all", "POST", "/reservations", "application/json", `order please`, 400, "malformed_json"},
		{"two JSON values", "POST", "/reservations", "application/json", item("p-mug", "1") + `{}`, 400, "malformed_json"},
		{"empty body", "POST", "/reservations", "application/json", ``, 400, "empty_body"},
		{"unknown field", "POST", "/reservations", "application/json", `{"order_id":"o-x","items":[],"coupon":"FREE"}`, 400, "unknown_field"},
		{"unknown item field", "POST", "/reservations", "application/json", `{"order_id":"o-x","items":[{"product_id":"p-mug","quantity":1,"price_cents":1}]}`, 400, "unknown_field"},
		{"quantity as string", "POST", "/reservations", "application/json", item("p-mug", `"1"`), 400, "wrong_type"},
		{"fractional quantity", "POST", "/reservations", "application/json", item("p-mug", `1.5`), 400, "wrong_type"},
		{"quantity overflows int64", "POST", "/reservations", "application/json", item("p-mug", `1e30`), 400, "wrong_type"},
		{"items not a list", "POST", "/reservations", "application/json", `{"order_id":"o-x","items":{}}`, 400, "wrong_type"},
		{"body is a list", "POST", "/reservations", "application/json", `[]`, 400, "wrong_type"},
		{"zero quantity", "POST", "/reservations", "application/json", item("p-mug", "0"), 400, "invalid_argument"},
		{"negative quantity", "POST", "/reservations", "application/json", item("p-mug", "-2"), 400, "invalid_argument"},
		{"quantity over 10000", "POST", "/reservations", "application/json", item("p-mug", "10001"), 400, "invalid_argument"},
		{"missing order id", "POST", "/reservations", "application/json", `{"items":[{"product_id":"p-mug","quantity":1}]}`, 400, "invalid_argument"},
		{"missing items", "POST", "/reservations", "application/json", `{"order_id":"o-x"}`, 400, "invalid_argument"},
		{"null items", "POST", "/reservations", "application/json", `{"order_id":"o-x","items":null}`, 400, "invalid_argument"},
		{"empty items", "POST", "/reservations", "application/json", `{"order_id":"o-x","items":[]}`, 400, "invalid_argument"},
		{"empty product id", "POST", "/reservations", "application/json", item("", "1"), 400, "invalid_argument"},
		{"duplicate product lines", "POST", "/reservations", "application/json",
			`{"order_id":"o-x","items":[{"product_id":"p-mug","quantity":1},{"product_id":"p-mug","quantity":1}]}`, 400, "invalid_argument"},
		{"body over 1 MiB", "POST", "/reservations", "application/json",
			`{"order_id":"` + strings.Repeat("x", platform.MaxBodyBytes) + `","items":[]}`, 413, "body_too_large"},
		{"not JSON content type", "POST", "/reservations", "text/plain", item("p-mug", "1"), 415, "unsupported_media_type"},
		{"unknown product", "POST", "/reservations", "application/json", item("p-unknown", "1"), 404, "not_found"},
		{"sold out product", "POST", "/reservations", "application/json", item("p-sold-out", "1"), 409, "out_of_stock"},
		{"unknown product id", "GET", "/products/p-unknown", "", ``, 404, "not_found"},
		{"overlong product id", "GET", "/products/" + strings.Repeat("p", 200), "", ``, 400, "invalid_argument"},
		{"unknown reservation", "GET", "/reservations/nope", "", ``, 404, "not_found"},
		{"commit unknown reservation", "POST", "/reservations/nope/commit", "", ``, 404, "not_found"},
		{"release unknown reservation", "POST", "/reservations/nope/release", "", ``, 404, "not_found"},
		{"commit with unknown field", "POST", "/reservations/" + held.ID + "/commit", "application/json", `{"force":true}`, 400, "unknown_field"},
		{"release with malformed body", "POST", "/reservations/" + held.ID + "/release", "application/json", `{`, 400, "malformed_json"},
		{"release with a list body", "POST", "/reservations/" + held.ID + "/release", "application/json", `[1]`, 400, "wrong_type"},
		{"unknown route", "GET", "/nope", "", ``, 404, "not_found"},
		{"empty product id in path", "GET", "/products/", "", ``, 404, "not_found"},
		{"wrong method", "DELETE", "/products", "", ``, 405, "method_not_allowed"},
		{"wrong method on reservation", "PUT", "/reservations/" + held.ID, "", ``, 405, "method_not_allowed"},
		{"bad deadline header", "GET", "/products", "", ``, 400, "bad_deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, cat.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.code == "bad_deadline" {
				req.Header.Set(platform.HeaderDeadline, "soon")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			apiErr := platform.ResponseError(resp)
			if resp.StatusCode != tt.status || apiErr.Code != tt.code {
				t.Fatalf("%s %s: %d %s (%s), want %d %s", tt.method, tt.path, resp.StatusCode, apiErr.Code, apiErr.Message, tt.status, tt.code)
			}
			if apiErr.Message == "" {
				t.Error("error without a message")
			}
			if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
	// None of the rejected requests may have touched stock or the held reservation.
	if p, err := cat.client.GetProduct(context.Background(), "p-mug"); err != nil || p.Stock != 1000000-1 {
		t.Errorf("p-mug = %+v, %v; want stock %d", p, err, 1000000-1)
	}
	if r, err := cat.client.GetReservation(context.Background(), held.ID); err != nil || r.Status != catalog.ReservationHeld {
		t.Errorf("held reservation = %+v, %v", r, err)
	}
}

func TestCommitAndReleaseAcceptEmptyBodies(t *testing.T) {
	cat := start(t, nil)
	for i, body := range []string{"", "{}", " { } \n"} {
		r, err := cat.client.Reserve(context.Background(), catalog.ReserveRequest{OrderID: fmt.Sprint("o-", i), Items: []catalog.Item{{ProductID: "p-kettle", Quantity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(cat.url+"/reservations/"+r.ID+"/commit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("commit with body %q: status %d, want 200", body, resp.StatusCode)
		}
	}
}

// TestConcurrentReservationsNeverOversell races 200 orders for 50 units of one product.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	const initial, orders = 50, 200
	cat := start(t, map[string]string{"CATALOG_SEED_STOCK": fmt.Sprint(initial)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		reserved   int64
		outOfStock int
		failures   []error
	)
	begin := make(chan struct{})
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			r, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: fmt.Sprint("o-", i), Items: []catalog.Item{{ProductID: "p-espresso", Quantity: 1}}})
			mu.Lock()
			defer mu.Unlock()
			switch e, _ := platform.AsError(err); {
			case err == nil:
				reserved += r.Items[0].Quantity
			case e != nil && e.Status == http.StatusConflict && e.Code == "out_of_stock":
				outOfStock++
			default:
				failures = append(failures, err)
			}
		}()
	}
	close(begin)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d reservations failed other than out_of_stock, first: %v", len(failures), failures[0])
	}
	p, err := cat.client.GetProduct(ctx, "p-espresso")
	if err != nil {
		t.Fatal(err)
	}
	if p.Stock != 0 || reserved != initial || outOfStock != orders-initial {
		t.Errorf("stock %d, reserved %d, out of stock %d; want 0, %d, %d", p.Stock, reserved, outOfStock, initial, orders-initial)
	}
	if got := counterValue(t, cat.reg, "catalog_reservations_total", "outcome", "held"); got != initial {
		t.Errorf("held outcomes = %v, want %d", got, initial)
	}
	for _, code := range []string{"500", "502", "503", "504"} {
		if got := counterValue(t, cat.reg, "http_server_requests_total", "code", code); got > 0 {
			t.Errorf("%v answers with status %s", got, code)
		}
	}
}

// TestConcurrentRepeatsOfOneOrderReserveOnce sends the same order's reservation 30 times at once.
func TestConcurrentRepeatsOfOneOrderReserveOnce(t *testing.T) {
	cat := start(t, map[string]string{"CATALOG_SEED_STOCK": "100"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const repeats = 30
	ids := make([]string, repeats)
	errs := make([]error, repeats)
	var wg sync.WaitGroup
	for i := range repeats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-same", Items: []catalog.Item{{ProductID: "p-scale", Quantity: 3}}})
			ids[i], errs[i] = r.ID, err
		}()
	}
	wg.Wait()
	for i := range repeats {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("call %d got reservation %s, call 0 got %s", i, ids[i], ids[0])
		}
	}
	if p, err := cat.client.GetProduct(ctx, "p-scale"); err != nil || p.Stock != 97 {
		t.Errorf("p-scale = %+v, %v; want stock 97", p, err)
	}
}

// TestCommitRacesRelease checks that of a concurrent commit and release exactly one wins.
func TestCommitRacesRelease(t *testing.T) {
	cat := start(t, map[string]string{"CATALOG_SEED_STOCK": "1000"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rounds = 40
	for i := range rounds {
		r, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: fmt.Sprint("o-", i), Items: []catalog.Item{{ProductID: "p-mug", Quantity: 2}}})
		if err != nil {
			t.Fatal(err)
		}
		var commitErr, releaseErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, commitErr = cat.client.Commit(ctx, r.ID) }()
		go func() { defer wg.Done(); _, releaseErr = cat.client.Release(ctx, r.ID) }()
		wg.Wait()
		final, err := cat.client.GetReservation(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch final.Status {
		case catalog.ReservationCommitted:
			if commitErr != nil {
				t.Fatalf("round %d: committed, but commit answered %v", i, commitErr)
			}
			wantAPIError(t, releaseErr, http.StatusConflict, "reservation_committed")
		case catalog.ReservationReleased:
			if releaseErr != nil {
				t.Fatalf("round %d: released, but release answered %v", i, releaseErr)
			}
			wantAPIError(t, commitErr, http.StatusConflict, "reservation_not_held")
		default:
			t.Fatalf("round %d: status %s", i, final.Status)
		}
	}
	committed := counterValue(t, cat.reg, "catalog_reservations_total", "outcome", "committed")
	released := counterValue(t, cat.reg, "catalog_reservations_total", "outcome", "released")
	if committed+released != rounds {
		t.Errorf("committed %v + released %v outcomes, want %d in all", committed, released, rounds)
	}
	if p, err := cat.client.GetProduct(ctx, "p-mug"); err != nil || p.Stock != 1000-2*int64(committed) {
		t.Errorf("p-mug = %+v, %v; want stock %d", p, err, 1000-2*int64(committed))
	}
}

func TestSweeperExpiresReservationsInBackground(t *testing.T) {
	cat := start(t, map[string]string{"CATALOG_SEED_STOCK": "10", "CATALOG_RESERVATION_TTL": "1m", "CATALOG_SWEEP_INTERVAL": "5ms"})
	ctx := context.Background()
	r, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-1", Items: []catalog.Item{{ProductID: "p-dripper", Quantity: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	cat.clock.Advance(time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := cat.client.GetReservation(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == catalog.ReservationExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reservation still %s 30s after its expiry", got.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p, err := cat.client.GetProduct(ctx, "p-dripper"); err != nil || p.Stock != 10 {
		t.Errorf("p-dripper = %+v, %v; want its stock back at 10", p, err)
	}
	_, err = cat.client.Commit(ctx, r.ID)
	wantAPIError(t, err, http.StatusConflict, "reservation_not_held")
	if got := counterValue(t, cat.reg, "catalog_reservations_total", "outcome", "expired"); got != 1 {
		t.Errorf("expired outcomes = %v, want 1", got)
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	cat := start(t, nil)
	for path, want := range map[string]string{
		"/healthz": `"ok"`,
		"/readyz":  `"db":"ok"`,
		"/metrics": `catalog_reservations_total{outcome="out_of_stock"} 0`,
	} {
		resp, err := http.Get(cat.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %s, want 200 containing %s", path, resp.StatusCode, body, want)
		}
	}
}

func TestCloseIsIdempotentAndStopsTheStore(t *testing.T) {
	cat := start(t, nil)
	if err := cat.closer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cat.closer.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	resp, err := http.Get(cat.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz after close = %d, want 503", resp.StatusCode)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	cfg := catalog.ConfigFromEnv(platform.EnvFrom(map[string]string{"CATALOG_DB": filepath.Join(t.TempDir(), "c.db")}))
	cfg.ReservationTTL = 0
	_, _, err := catalog.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "CATALOG_RESERVATION_TTL") {
		t.Fatalf("Open with a zero TTL: %v", err)
	}
}
