package orders_test

import (
	"context"
	"fmt"
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
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/orders"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	"github.com/resilience-lab/lab/services/payments"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// faultyLink stands between orders and a dependency, as a Toxiproxy link would: it can fail a matching
// request before it reaches the dependency, or after the dependency acted (the answer is lost), or fail
// every request while the link is down.
type faultyLink struct {
	next http.Handler
	mu   sync.Mutex
	// faults are consumed by the first request they match: "POST /reservations", "POST .../commit", ….
	faults []linkFault
	down   bool
}

type linkFault struct {
	route string // method and path; a path ending in "*" matches any suffix, one starting with "*" any prefix
	after bool
}

func (l *faultyLink) failNext(route string, after bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.faults = append(l.faults, linkFault{route, after})
}

func (l *faultyLink) setDown(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
}

func (l *faultyLink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	down, fault, matched := l.down, linkFault{}, false
	for i, f := range l.faults {
		if routeMatches(f.route, r) {
			fault, matched = f, true
			l.faults = append(l.faults[:i:i], l.faults[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	switch {
	case down || (matched && !fault.after):
		platform.WriteError(w, platform.Errorf(http.StatusServiceUnavailable, "link_down", "the link is down"))
	case matched:
		l.next.ServeHTTP(httptest.NewRecorder(), r)
		platform.WriteError(w, platform.Errorf(http.StatusBadGateway, "answer_lost", "the answer was lost"))
	default:
		l.next.ServeHTTP(w, r)
	}
}

func routeMatches(route string, r *http.Request) bool {
	method, path, _ := strings.Cut(route, " ")
	if method != r.Method {
		return false
	}
	switch {
	case strings.HasPrefix(path, "*"):
		return strings.HasSuffix(r.URL.Path, path[1:])
	case strings.HasSuffix(path, "*"):
		return strings.HasPrefix(r.URL.Path, path[:len(path)-1])
	}
	return r.URL.Path == path
}

type shop struct {
	orders        *ordersclient.Client
	catalog       *catalogclient.Client
	payments      *paymentsclient.Client
	catalogLink   *faultyLink
	paymentsLink  *faultyLink
	clock         *orders.Clock
	customerCount int
}

const seedStock = 1000

// newShop runs the real catalog and payments (their Open behind httptest) and orders wired to them
// through faulty links. The orders resumer runs every 20ms on an injected clock, so it only touches an
// order when the test moves the clock past the grace period.
func newShop(t *testing.T) *shop {
	t.Helper()
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	serve := func(h http.Handler, closer interface{ Close() error }) *httptest.Server {
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			srv.Close()
			closer.Close()
		})
		return srv
	}

	catSvc, catCloser, err := catalog.Open(ctx, catalog.Config{Addr: ":0", DB: filepath.Join(dir, "catalog.db"), Seed: true,
		SeedStock: seedStock, ReservationTTL: time.Hour, SweepInterval: time.Hour}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("open catalog: %v", err)
	}
	paySvc, payCloser, err := payments.Open(ctx, payments.Config{Addr: ":0", DBPath: filepath.Join(dir, "payments.db"),
		DeclineOverCents: 100000}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("open payments: %v", err)
	}
	catHandler, payHandler := catSvc.Handler(), paySvc.Handler()
	// The test looks at catalog and payments directly; orders reaches them through the faulty links.
	directCat, directPay := serve(catHandler, catCloser), serve(payHandler, payCloser)
	s := &shop{catalogLink: &faultyLink{next: catHandler}, paymentsLink: &faultyLink{next: payHandler}, clock: orders.NewClock()}
	catSrv, paySrv := httptest.NewServer(s.catalogLink), httptest.NewServer(s.paymentsLink)
	t.Cleanup(catSrv.Close)
	t.Cleanup(paySrv.Close)

	ordSvc, ordCloser, err := orders.Open(ctx, orders.Config{Addr: ":0", DB: filepath.Join(dir, "orders.db"),
		CatalogURL: catSrv.URL, PaymentsURL: paySrv.URL, ResumeInterval: 20 * time.Millisecond, ResumeGrace: 2 * time.Second,
		SagaTimeout: 30 * time.Second, Now: s.clock.Now}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("open orders: %v", err)
	}
	ordSrv := serve(ordSvc.Handler(), ordCloser)

	if s.orders, err = ordersclient.New(ordSrv.URL); err != nil {
		t.Fatal(err)
	}
	if s.catalog, err = catalogclient.New(directCat.URL); err != nil {
		t.Fatal(err)
	}
	if s.payments, err = paymentsclient.New(directPay.URL); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *shop) place(t *testing.T, card string, items ...orders.Item) orders.Order {
	t.Helper()
	s.customerCount++
	o, _, err := s.orders.PlaceOrder(context.Background(), orders.PlaceOrderRequest{
		CustomerID: fmt.Sprint("c", s.customerCount), IdempotencyKey: "k", CardNumber: card, Items: items})
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	return o
}

// finish lets the resumer take the order up and waits for it to end.
func (s *shop) finish(t *testing.T, id string) orders.Order {
	t.Helper()
	s.clock.Advance(3 * time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		o, err := s.orders.GetOrder(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status.Terminal() {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s still %s", id, o.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check asserts that catalog and payments agree with o: a confirmed order's reservation is committed and
// its payment captured for its total; a rejected or cancelled order holds no stock and has no captured
// payment; and every product's stock is seedStock less what confirmed orders took.
func (s *shop) check(t *testing.T, o orders.Order, sold map[string]int64) {
	t.Helper()
	ctx := context.Background()
	var res catalog.Reservation
	if o.ReservationID != "" {
		var err error
		if res, err = s.catalog.GetReservation(ctx, o.ReservationID); err != nil {
			t.Fatalf("reservation %s: %v", o.ReservationID, err)
		}
	}
	pays, err := s.payments.ListByOrder(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	var captured []payments.Payment
	for _, p := range pays {
		if p.Status == payments.StatusCaptured {
			captured = append(captured, p)
		}
	}
	switch o.Status {
	case orders.StatusConfirmed:
		if res.Status != catalog.ReservationCommitted || res.TotalCents != o.TotalCents {
			t.Errorf("confirmed order: reservation %+v", res)
		}
		if len(captured) != 1 || captured[0].AmountCents != o.TotalCents || captured[0].ID != o.PaymentID {
			t.Errorf("confirmed order (total %d): payments %+v", o.TotalCents, pays)
		}
		for _, it := range o.Items {
			sold[it.ProductID] += it.Quantity
		}
	case orders.StatusRejected, orders.StatusCancelled:
		if res.Status == catalog.ReservationHeld || res.Status == catalog.ReservationCommitted {
			t.Errorf("%s order: reservation is %s", o.Status, res.Status)
		}
		if len(captured) != 0 {
			t.Errorf("%s order: captured payments %+v", o.Status, captured)
		}
	default:
		t.Errorf("order is still %s", o.Status)
	}
	products, err := s.catalog.ListProducts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range products {
		want := seedStock - sold[p.ID]
		if p.ID == "p-sold-out" {
			want = 0
		}
		if p.Stock != want {
			t.Errorf("stock of %s = %d, want %d", p.ID, p.Stock, want)
		}
	}
}

// TestWithRealCatalogAndPayments runs every branch of the saga against the real services and checks
// after each that stock and payments agree with the order.
func TestWithRealCatalogAndPayments(t *testing.T) {
	s := newShop(t)
	sold := map[string]int64{}
	mugs := func(n int64) orders.Item { return orders.Item{ProductID: "p-mug", Quantity: n} }
	cases := []struct {
		name    string
		card    string
		items   []orders.Item
		arrange func()
		// pending: the request leaves the order compensating and the resumer finishes it, after
		// recover (when set) brought the link back.
		pending    bool
		recover    func()
		wantStatus orders.Status
		wantReason string
	}{
		{name: "confirmed", items: []orders.Item{mugs(2), {ProductID: "p-kettle", Quantity: 1}},
			wantStatus: orders.StatusConfirmed},
		{name: "out of stock", items: []orders.Item{mugs(1), {ProductID: "p-sold-out", Quantity: 1}},
			wantStatus: orders.StatusRejected, wantReason: "out_of_stock"},
		{name: "unknown product", items: []orders.Item{mugs(1), {ProductID: "p-nope", Quantity: 1}},
			wantStatus: orders.StatusRejected, wantReason: "unknown_product"},
		{name: "card declined", card: payments.DecliningCard, items: []orders.Item{mugs(3)},
			wantStatus: orders.StatusRejected, wantReason: "card_declined"},
		{name: "amount over limit", items: []orders.Item{{ProductID: "p-grinder", Quantity: 8}},
			wantStatus: orders.StatusRejected, wantReason: "amount_over_limit"},
		{name: "reserve answer lost", items: []orders.Item{mugs(4)},
			arrange:    func() { s.catalogLink.failNext("POST /reservations", true) },
			wantStatus: orders.StatusCancelled, wantReason: "reserve_failed"},
		{name: "charge fails", items: []orders.Item{mugs(1)},
			arrange:    func() { s.paymentsLink.failNext("POST /payments", false) },
			wantStatus: orders.StatusCancelled, wantReason: "charge_failed"},
		{name: "charge answer lost", items: []orders.Item{mugs(5)},
			arrange:    func() { s.paymentsLink.failNext("POST /payments", true) },
			wantStatus: orders.StatusCancelled, wantReason: "charge_failed"},
		{name: "commit fails", items: []orders.Item{mugs(2)},
			arrange:    func() { s.catalogLink.failNext("POST */commit", false) },
			wantStatus: orders.StatusCancelled, wantReason: "commit_failed"},
		{name: "commit answer lost", items: []orders.Item{mugs(6)},
			arrange:    func() { s.catalogLink.failNext("POST */commit", true) },
			wantStatus: orders.StatusConfirmed},
		{name: "reserve answer lost, catalog down", items: []orders.Item{mugs(7)},
			arrange: func() {
				s.catalogLink.failNext("POST /reservations", true)
				s.catalogLink.failNext("POST /reservations", false)
			},
			pending:    true,
			wantStatus: orders.StatusCancelled, wantReason: "reserve_failed"},
		{name: "commit fails, payments down", items: []orders.Item{mugs(3)},
			arrange: func() {
				s.catalogLink.failNext("POST */commit", false)
				s.paymentsLink.failNext("GET /payments", false)
			},
			pending:    true,
			wantStatus: orders.StatusCancelled, wantReason: "commit_failed"},
		{name: "declined, catalog down", card: payments.DecliningCard, items: []orders.Item{mugs(2)},
			arrange:    func() { s.catalogLink.failNext("POST */release", false) },
			pending:    true,
			wantStatus: orders.StatusRejected, wantReason: "card_declined"},
		{name: "charge fails, payments down until it recovers", items: []orders.Item{mugs(1)},
			arrange:    func() { s.paymentsLink.setDown(true) },
			pending:    true,
			recover:    func() { s.paymentsLink.setDown(false) },
			wantStatus: orders.StatusCancelled, wantReason: "charge_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.arrange != nil {
				c.arrange()
			}
			o := s.place(t, c.card, c.items...)
			if c.pending {
				if o.Status != orders.StatusCompensating || o.Reason != c.wantReason {
					t.Fatalf("order = %s %q, want compensating %q", o.Status, o.Reason, c.wantReason)
				}
				if c.recover != nil {
					c.recover()
				}
				o = s.finish(t, o.ID)
			}
			if o.Status != c.wantStatus || o.Reason != c.wantReason {
				t.Fatalf("order = %s %q, want %s %q", o.Status, o.Reason, c.wantStatus, c.wantReason)
			}
			s.check(t, o, sold)
		})
	}
}
