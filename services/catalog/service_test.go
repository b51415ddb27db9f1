package catalog

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/resilience-lab/lab/services/platform"
)

const testTTL = 5 * time.Minute

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testEnv struct {
	svc   *service
	store *store
	clock *fakeClock
	count *prometheus.CounterVec
}

// newTestService opens a seeded store in a temp dir and a service on it with a fake clock.
func newTestService(t *testing.T, stock int64) testEnv {
	t.Helper()
	return openTestService(t, filepath.Join(t.TempDir(), "catalog.db"), stock)
}

func openTestService(t *testing.T, path string, stock int64) testEnv {
	t.Helper()
	ctx := context.Background()
	st, err := openStore(ctx, path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.seed(ctx, stock); err != nil {
		t.Fatalf("seed: %v", err)
	}
	clock := newFakeClock()
	count := newReservationsCounter(prometheus.NewRegistry())
	return testEnv{svc: newService(st, testTTL, clock.Now, count), store: st, clock: clock, count: count}
}

func (e testEnv) stock(t *testing.T, id string) int64 {
	t.Helper()
	p, err := e.svc.GetProduct(context.Background(), id)
	if err != nil {
		t.Fatalf("get product %s: %v", id, err)
	}
	return p.Stock
}

func (e testEnv) outcome(name string) float64 {
	var m dto.Metric
	if err := e.count.WithLabelValues(name).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// wantError asserts err is a *platform.Error with status and code and that its message mentions each of
// mentions.
func wantError(t *testing.T, err error, status int, code string, mentions ...string) {
	t.Helper()
	e, ok := platform.AsError(err)
	if !ok {
		t.Fatalf("error = %v, want *platform.Error %d %s", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error = %d %s (%s), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
	for _, m := range mentions {
		if !strings.Contains(e.Message, m) {
			t.Errorf("message %q does not mention %q", e.Message, m)
		}
	}
}

func TestSeedCreatesFixedCatalogOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	env := openTestService(t, path, 7)
	ctx := context.Background()
	products, err := env.svc.ListProducts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(products) != 8 {
		t.Fatalf("got %d products, want 8", len(products))
	}
	for i, p := range products {
		if i > 0 && products[i-1].ID >= p.ID {
			t.Errorf("products not ordered by id: %s before %s", products[i-1].ID, p.ID)
		}
		if p.Name == "" || p.PriceCents <= 0 {
			t.Errorf("product %+v lacks a name or price", p)
		}
		want := int64(7)
		if p.ID == "p-sold-out" {
			want = 0
		}
		if p.Stock != want {
			t.Errorf("%s stock = %d, want %d", p.ID, p.Stock, want)
		}
	}
	if _, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-mug", Quantity: 2}}}); err != nil {
		t.Fatal(err)
	}
	env.store.Close()

	// Reopening with another seed stock must neither reset nor duplicate the catalog.
	again := openTestService(t, path, 1000)
	products, err = again.svc.ListProducts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(products) != 8 {
		t.Fatalf("after reopen: %d products, want 8", len(products))
	}
	if got := again.stock(t, "p-mug"); got != 5 {
		t.Errorf("after reopen: p-mug stock = %d, want 5", got)
	}
}

func TestGetProductUnknown(t *testing.T) {
	env := newTestService(t, 10)
	_, err := env.svc.GetProduct(context.Background(), "p-nope")
	wantError(t, err, http.StatusNotFound, "not_found", "p-nope")
}

func TestReservePricesItemsAndTakesStock(t *testing.T) {
	env := newTestService(t, 10)
	r, created, err := env.svc.Reserve(context.Background(), ReserveRequest{OrderID: "o-1", Items: []Item{
		{ProductID: "p-mug", Quantity: 3},
		{ProductID: "p-espresso", Quantity: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !created || r.ID == "" || r.OrderID != "o-1" || r.Status != ReservationHeld {
		t.Fatalf("reservation = %+v created=%v", r, created)
	}
	want := []ReservedItem{{ProductID: "p-mug", Quantity: 3, UnitPriceCents: 1450}, {ProductID: "p-espresso", Quantity: 1, UnitPriceCents: 2490}}
	if len(r.Items) != 2 || r.Items[0] != want[0] || r.Items[1] != want[1] {
		t.Errorf("items = %+v, want %+v", r.Items, want)
	}
	if r.TotalCents != 3*1450+2490 {
		t.Errorf("total = %d, want %d", r.TotalCents, 3*1450+2490)
	}
	if wantExp := env.clock.Now().Add(testTTL); !r.ExpiresAt.Equal(wantExp) || r.ExpiresAt.Location() != time.UTC {
		t.Errorf("expires_at = %v, want %v in UTC", r.ExpiresAt, wantExp)
	}
	if got := env.stock(t, "p-mug"); got != 7 {
		t.Errorf("p-mug stock = %d, want 7", got)
	}
	if got := env.stock(t, "p-espresso"); got != 9 {
		t.Errorf("p-espresso stock = %d, want 9", got)
	}
	stored, err := env.svc.GetReservation(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.ID != r.ID || stored.TotalCents != r.TotalCents || !stored.ExpiresAt.Equal(r.ExpiresAt) ||
		len(stored.Items) != 2 || stored.Items[0] != r.Items[0] || stored.Items[1] != r.Items[1] {
		t.Errorf("stored = %+v, want %+v", stored, r)
	}
}

func TestReserveIsIdempotentPerOrder(t *testing.T) {
	env := newTestService(t, 10)
	ctx := context.Background()
	first, created, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-kettle", Quantity: 4}}})
	if err != nil || !created {
		t.Fatalf("first reserve: created=%v err=%v", created, err)
	}
	// A repeat, even with other items, answers with the first reservation and takes no more stock.
	again, created, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-kettle", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ID != first.ID || again.Items[0].Quantity != 4 {
		t.Errorf("repeat = %+v created=%v, want the first reservation %s", again, created, first.ID)
	}
	if got := env.stock(t, "p-kettle"); got != 6 {
		t.Errorf("stock = %d, want 6", got)
	}
	if got := env.outcome(outcomeHeld); got != 1 {
		t.Errorf("held outcomes = %v, want 1", got)
	}
}

func TestReserveIsAllOrNothing(t *testing.T) {
	env := newTestService(t, 10)
	ctx := context.Background()
	_, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{
		{ProductID: "p-espresso", Quantity: 2},
		{ProductID: "p-sold-out", Quantity: 1},
	}})
	wantError(t, err, http.StatusConflict, "out_of_stock", "p-sold-out")
	_, _, err = env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-2", Items: []Item{
		{ProductID: "p-espresso", Quantity: 2},
		{ProductID: "p-grinder", Quantity: 11},
	}})
	wantError(t, err, http.StatusConflict, "out_of_stock", "p-grinder")
	_, _, err = env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-3", Items: []Item{
		{ProductID: "p-sold-out", Quantity: 1},
		{ProductID: "p-unknown", Quantity: 1},
	}})
	wantError(t, err, http.StatusNotFound, "not_found", "p-unknown")

	if got := env.stock(t, "p-espresso"); got != 10 {
		t.Errorf("p-espresso stock = %d after failed reservations, want 10", got)
	}
	for _, order := range []string{"o-1", "o-2", "o-3"} {
		// No reservation was recorded, so the order may reserve again once stock allows.
		if _, err := reservationBy(ctx, env.store.read, "order_id", order); !isNoRows(err) {
			t.Errorf("order %s: a failed reservation left a row (err %v)", order, err)
		}
	}
	if got := env.outcome(outcomeOutOfStock); got != 2 {
		t.Errorf("out_of_stock outcomes = %v, want 2", got)
	}
	if got := env.outcome(outcomeHeld); got != 0 {
		t.Errorf("held outcomes = %v, want 0", got)
	}
}

func TestReserveRejectsBadRequests(t *testing.T) {
	long := strings.Repeat("x", maxIDLength+1)
	many := make([]Item, MaxItemLines+1)
	for i := range many {
		many[i] = Item{ProductID: "p-" + strings.Repeat("a", i+1), Quantity: 1}
	}
	tests := []struct {
		name    string
		req     ReserveRequest
		mention string
	}{
		{"no order id", ReserveRequest{Items: []Item{{ProductID: "p-mug", Quantity: 1}}}, "order_id"},
		{"order id too long", ReserveRequest{OrderID: long, Items: []Item{{ProductID: "p-mug", Quantity: 1}}}, "order_id"},
		{"no items", ReserveRequest{OrderID: "o"}, "items"},
		{"empty items", ReserveRequest{OrderID: "o", Items: []Item{}}, "items"},
		{"too many lines", ReserveRequest{OrderID: "o", Items: many}, "at most 100"},
		{"empty product id", ReserveRequest{OrderID: "o", Items: []Item{{Quantity: 1}}}, "items[0].product_id"},
		{"zero quantity", ReserveRequest{OrderID: "o", Items: []Item{{ProductID: "p-mug"}}}, "items[0].quantity"},
		{"negative quantity", ReserveRequest{OrderID: "o", Items: []Item{{ProductID: "p-mug", Quantity: -3}}}, "items[0].quantity"},
		{"quantity over limit", ReserveRequest{OrderID: "o", Items: []Item{{ProductID: "p-mug", Quantity: MaxQuantity + 1}}}, "10000"},
		{"duplicate lines", ReserveRequest{OrderID: "o", Items: []Item{{ProductID: "p-mug", Quantity: 1}, {ProductID: "p-mug", Quantity: 2}}}, "p-mug"},
	}
	env := newTestService(t, 10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := env.svc.Reserve(context.Background(), tt.req)
			wantError(t, err, http.StatusBadRequest, "invalid_argument", tt.mention)
		})
	}
	if got := env.stock(t, "p-mug"); got != 10 {
		t.Errorf("p-mug stock = %d after rejected requests, want 10", got)
	}
	if _, _, err := env.svc.Reserve(context.Background(), ReserveRequest{OrderID: "o", Items: []Item{{ProductID: "p-mug", Quantity: MaxQuantity}}}); err == nil {
		t.Error("reserving MaxQuantity of a product with 10 in stock succeeded")
	} else {
		wantError(t, err, http.StatusConflict, "out_of_stock", "p-mug")
	}
}

func TestCommitLifecycle(t *testing.T) {
	env := newTestService(t, 10)
	ctx := context.Background()
	r, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-scale", Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second commit is an idempotent repeat
		c, err := env.svc.Commit(ctx, r.ID)
		if err != nil {
			t.Fatalf("commit %d: %v", i+1, err)
		}
		if c.Status != ReservationCommitted || c.ID != r.ID {
			t.Fatalf("commit %d = %+v", i+1, c)
		}
	}
	_, err = env.svc.Release(ctx, r.ID)
	wantError(t, err, http.StatusConflict, "reservation_committed", r.ID)
	if got := env.stock(t, "p-scale"); got != 8 {
		t.Errorf("stock = %d, want 8: committed stock is sold", got)
	}
	if got := env.outcome(outcomeCommitted); got != 1 {
		t.Errorf("committed outcomes = %v, want 1", got)
	}
	_, err = env.svc.Commit(ctx, "nope")
	wantError(t, err, http.StatusNotFound, "not_found", "nope")
}

func TestReleaseLifecycle(t *testing.T) {
	env := newTestService(t, 10)
	ctx := context.Background()
	r, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-scale", Quantity: 2}, {ProductID: "p-mug", Quantity: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second release is an idempotent repeat and must not return stock twice
		rel, err := env.svc.Release(ctx, r.ID)
		if err != nil {
			t.Fatalf("release %d: %v", i+1, err)
		}
		if rel.Status != ReservationReleased {
			t.Fatalf("release %d status = %s", i+1, rel.Status)
		}
		if got := env.stock(t, "p-scale"); got != 10 {
			t.Errorf("after release %d: p-scale stock = %d, want 10", i+1, got)
		}
		if got := env.stock(t, "p-mug"); got != 10 {
			t.Errorf("after release %d: p-mug stock = %d, want 10", i+1, got)
		}
	}
	_, err = env.svc.Commit(ctx, r.ID)
	wantError(t, err, http.StatusConflict, "reservation_not_held", "released")
	if got := env.outcome(outcomeReleased); got != 1 {
		t.Errorf("released outcomes = %v, want 1", got)
	}
	_, err = env.svc.Release(ctx, "nope")
	wantError(t, err, http.StatusNotFound, "not_found", "nope")
}

func TestSweepExpiresHeldReservationsAfterTTL(t *testing.T) {
	env := newTestService(t, 10)
	ctx := context.Background()
	held, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-held", Items: []Item{{ProductID: "p-filters", Quantity: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	committed, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-committed", Items: []Item{{ProductID: "p-filters", Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.Commit(ctx, committed.ID); err != nil {
		t.Fatal(err)
	}

	env.clock.Advance(testTTL - time.Millisecond)
	if n, err := env.svc.ExpireReservations(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before the TTL: expired %d (err %v), want 0", n, err)
	}
	if got := env.stock(t, "p-filters"); got != 5 {
		t.Fatalf("stock = %d before expiry, want 5", got)
	}

	env.clock.Advance(time.Millisecond)
	if n, err := env.svc.ExpireReservations(ctx); err != nil || n != 1 {
		t.Fatalf("sweep at the TTL: expired %d (err %v), want 1", n, err)
	}
	if n, err := env.svc.ExpireReservations(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep: expired %d (err %v), want 0", n, err)
	}
	if got := env.stock(t, "p-filters"); got != 8 {
		t.Errorf("stock = %d after expiry, want 8 (the held 3 back, the committed 2 sold)", got)
	}
	r, err := env.svc.GetReservation(ctx, held.ID)
	if err != nil || r.Status != ReservationExpired {
		t.Fatalf("expired reservation = %+v, %v", r, err)
	}
	c, err := env.svc.GetReservation(ctx, committed.ID)
	if err != nil || c.Status != ReservationCommitted {
		t.Fatalf("committed reservation = %+v, %v", c, err)
	}
	_, err = env.svc.Commit(ctx, held.ID)
	wantError(t, err, http.StatusConflict, "reservation_not_held", "expired")
	rel, err := env.svc.Release(ctx, held.ID)
	if err != nil || rel.Status != ReservationExpired {
		t.Errorf("release of an expired reservation = %+v, %v; want it answered as expired", rel, err)
	}
	if got := env.stock(t, "p-filters"); got != 8 {
		t.Errorf("stock = %d after commit/release of an expired reservation, want 8", got)
	}
	if got := env.outcome(outcomeExpired); got != 1 {
		t.Errorf("expired outcomes = %v, want 1", got)
	}
	// The order's reservation stays expired: reserving again for it answers with that one.
	again, created, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-held", Items: []Item{{ProductID: "p-filters", Quantity: 3}}})
	if err != nil || created || again.ID != held.ID || again.Status != ReservationExpired {
		t.Errorf("reserve again = %+v created=%v err=%v", again, created, err)
	}
}

func TestCommitAfterExpiryBeforeSweepIsConflict(t *testing.T) {
	env := newTestService(t, 10)
	ctx := context.Background()
	r, _, err := env.svc.Reserve(ctx, ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-dripper", Quantity: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(testTTL)
	_, err = env.svc.Commit(ctx, r.ID)
	wantError(t, err, http.StatusConflict, "reservation_not_held", "expired")
	got, err := env.svc.GetReservation(ctx, r.ID)
	if err != nil || got.Status != ReservationExpired {
		t.Fatalf("reservation = %+v, %v; want expired", got, err)
	}
	if s := env.stock(t, "p-dripper"); s != 10 {
		t.Errorf("stock = %d, want 10: the late commit must give the stock back", s)
	}
	if n, err := env.svc.ExpireReservations(ctx); err != nil || n != 0 {
		t.Errorf("sweep after the late commit expired %d (err %v), want 0", n, err)
	}
	if o := env.outcome(outcomeExpired); o != 1 {
		t.Errorf("expired outcomes = %v, want 1", o)
	}
	if o := env.outcome(outcomeCommitted); o != 0 {
		t.Errorf("committed outcomes = %v, want 0", o)
	}
}

func TestReservationsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	env := openTestService(t, path, 10)
	r, _, err := env.svc.Reserve(context.Background(), ReserveRequest{OrderID: "o-1", Items: []Item{{ProductID: "p-mug", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	env.store.Close()
	again := openTestService(t, path, 10)
	got, err := again.svc.GetReservation(context.Background(), r.ID)
	if err != nil || got.OrderID != "o-1" || got.Status != ReservationHeld || !got.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("after restart: %+v, %v; want %+v", got, err, r)
	}
}

func TestConfigFromEnv(t *testing.T) {
	cfg := ConfigFromEnv(platform.EnvFrom(nil))
	if cfg.Addr != ":8081" || cfg.DB != "catalog.db" || !cfg.Seed || cfg.SeedStock != 1000000 ||
		cfg.ReservationTTL != 5*time.Minute || cfg.SweepInterval != 10*time.Second ||
		cfg.ShutdownTimeout != 10*time.Second || cfg.LogLevel != 0 {
		t.Errorf("defaults = %+v", cfg)
	}

	env := platform.EnvFrom(map[string]string{
		"CATALOG_ADDR": "127.0.0.1:9999", "CATALOG_DB": "/tmp/x.db", "CATALOG_SEED": "false",
		"CATALOG_SEED_STOCK": "5", "CATALOG_RESERVATION_TTL": "30s", "CATALOG_SWEEP_INTERVAL": "1s",
		"LOG_LEVEL": "debug", "SHUTDOWN_TIMEOUT": "3s", "SERVICE_AUTH": "off",
	})
	cfg = ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9999" || cfg.DB != "/tmp/x.db" || cfg.Seed || cfg.SeedStock != 5 ||
		cfg.ReservationTTL != 30*time.Second || cfg.SweepInterval != time.Second ||
		cfg.LogLevel.String() != "DEBUG" || cfg.ShutdownTimeout != 3*time.Second {
		t.Errorf("parsed = %+v", cfg)
	}

	env = platform.EnvFrom(map[string]string{
		"CATALOG_SEED": "maybe", "CATALOG_SEED_STOCK": "-1", "CATALOG_RESERVATION_TTL": "0s",
		"CATALOG_SWEEP_INTERVAL": "soon", "LOG_LEVEL": "loud",
	})
	ConfigFromEnv(env)
	err := env.Err()
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, key := range []string{"CATALOG_SEED=", "CATALOG_SEED_STOCK=", "CATALOG_RESERVATION_TTL=", "CATALOG_SWEEP_INTERVAL=", "LOG_LEVEL="} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not report %s", err, key)
		}
	}
}

// BenchmarkReserveCommit measures one order's reservation and commit against a file database.
func BenchmarkReserveCommit(b *testing.B) {
	ctx := context.Background()
	st, err := openStore(ctx, filepath.Join(b.TempDir(), "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.seed(ctx, 1<<40); err != nil {
		b.Fatal(err)
	}
	svc := newService(st, testTTL, nil, newReservationsCounter(prometheus.NewRegistry()))
	for i := 0; b.Loop(); i++ {
		r, _, err := svc.Reserve(ctx, ReserveRequest{OrderID: "o-" + strconv.Itoa(i), Items: []Item{{ProductID: "p-mug", Quantity: 1}, {ProductID: "p-espresso", Quantity: 2}}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Commit(ctx, r.ID); err != nil {
			b.Fatal(err)
		}
	}
}
