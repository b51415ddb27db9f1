package orders_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/services/catalog"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/orders"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	"github.com/resilience-lab/lab/services/payments"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// wallClock is a settable clock that starts at the real time, so orders' view of catalog's reservation
// expiry (real time) is right.
type wallClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *wallClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *wallClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// eventShop is the real catalog, payments, orders and notifications wired to one embedded NATS server;
// orders reaches payments through a faulty link.
type eventShop struct {
	broker        *natstest.Server
	orders        *ordersclient.Client
	catalog       *catalogclient.Client
	payments      *paymentsclient.Client
	paymentsLink  *faultyLink
	clock         *wallClock
	dir           string
	regs          map[string]*prometheus.Registry
	notifications string
}

func newEventShop(t *testing.T) *eventShop {
	t.Helper()
	s := &eventShop{broker: natstest.Start(t), clock: &wallClock{t: time.Now()}, dir: t.TempDir(),
		regs: map[string]*prometheus.Registry{}}
	ev := events.Config{URL: s.broker.URL(), RelayInterval: 20 * time.Millisecond, PublishTimeout: 2 * time.Second,
		MaxBackoff: 200 * time.Millisecond, AckWait: 2 * time.Second}
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	serve := func(name string, svc *platform.Service, closer io.Closer, err error) *httptest.Server {
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(func() {
			srv.Close()
			if err := closer.Close(); err != nil {
				t.Errorf("close %s: %v", name, err)
			}
		})
		return srv
	}
	reg := func(name string) *prometheus.Registry {
		s.regs[name] = prometheus.NewRegistry()
		return s.regs[name]
	}

	catSvc, catCloser, err := catalog.Open(ctx, catalog.Config{Addr: ":0", DB: s.db("catalog"), Seed: true, SeedStock: seedStock,
		ReservationTTL: time.Hour, SweepInterval: time.Hour, Events: ev}, logger, reg("catalog"))
	catSrv := serve("catalog", catSvc, catCloser, err)
	paySvc, payCloser, err := payments.Open(ctx, payments.Config{Addr: ":0", DBPath: s.db("payments"), DeclineOverCents: 100000,
		Events: ev}, logger, reg("payments"))
	paySrv := serve("payments", paySvc, payCloser, err)
	s.paymentsLink = &faultyLink{next: paySvc.Handler()}
	linkSrv := httptest.NewServer(s.paymentsLink)
	t.Cleanup(linkSrv.Close)
	ordSvc, ordCloser, err := orders.Open(ctx, orders.Config{Addr: ":0", DB: s.db("orders"), CatalogURL: catSrv.URL,
		PaymentsURL: linkSrv.URL, ResumeInterval: 20 * time.Millisecond, ResumeGrace: 2 * time.Second, SagaTimeout: 30 * time.Second,
		Now: s.clock.Now, PendingPayment: true, Events: ev}, logger, reg("orders"))
	ordSrv := serve("orders", ordSvc, ordCloser, err)
	notSvc, notCloser, err := notifications.Open(ctx, notifications.Config{Addr: ":0", DB: s.db("notifications"), Events: ev},
		logger, reg("notifications"))
	s.notifications = serve("notifications", notSvc, notCloser, err).URL

	if s.orders, err = ordersclient.New(ordSrv.URL); err != nil {
		t.Fatal(err)
	}
	if s.catalog, err = catalogclient.New(catSrv.URL); err != nil {
		t.Fatal(err)
	}
	if s.payments, err = paymentsclient.New(paySrv.URL); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *eventShop) db(name string) string { return filepath.Join(s.dir, name+".db") }

func (s *eventShop) place(t *testing.T, customer string, items ...orders.Item) orders.Order {
	t.Helper()
	o, _, err := s.orders.PlaceOrder(context.Background(), orders.PlaceOrderRequest{CustomerID: customer, Items: items,
		IdempotencyKey: platform.NewID()})
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	return o
}

// metric reads name{labels} from the registry of service (0 when absent).
func (s *eventShop) metric(t *testing.T, service, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.regs[service].Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outboxIDs reads the event ids a service wrote into its outbox, from its database file.
func (s *eventShop) outboxIDs(t *testing.T, service string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+s.db(service)+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT event_id FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// streamEvents decodes every event of a stream.
func (s *eventShop) streamEvents(t *testing.T, stream string) ([]events.Event, []events.Payload) {
	t.Helper()
	var evs []events.Event
	var ps []events.Payload
	for _, raw := range natstest.Messages(t, s.broker.URL(), stream) {
		ev, p, err := events.Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		evs, ps = append(evs, ev), append(ps, p)
	}
	return evs, ps
}

// exactlyOnce compares what reached a stream with what the outbox holds: it reports how many outbox
// events are missing from the stream, how many stream messages repeat one, and how many are unknown.
func exactlyOnce(want []string, got []events.Event) (lost, duplicated, unknown int) {
	seen := map[string]int{}
	for _, ev := range got {
		seen[ev.ID]++
	}
	for _, id := range want {
		switch n := seen[id]; {
		case n == 0:
			lost++
		case n > 1:
			duplicated += n - 1
		}
		delete(seen, id)
	}
	return lost, duplicated, len(seen)
}

func (s *eventShop) notificationsOf(t *testing.T, customer string) []notifications.Notification {
	t.Helper()
	resp, err := http.Get(s.notifications + "/notifications?customer_id=" + customer)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out notifications.ListNotificationsResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("notifications of %s: %d %v", customer, resp.StatusCode, err)
	}
	return out.Notifications
}

func (s *eventShop) drained(t *testing.T) bool {
	for _, svc := range []string{"catalog", "payments", "orders"} {
		if s.metric(t, svc, "events_outbox_backlog") != 0 {
			return false
		}
	}
	return true
}

// TestPendingOrderConfirmedWhenPaymentsReturns places an order while payments is unreachable: it is
// accepted as pending_payment with its stock held, and once payments is back the resumer confirms it,
// with saga state, stock, payments and the events of all three producers consistent.
func TestPendingOrderConfirmedWhenPaymentsReturns(t *testing.T) {
	s := newEventShop(t)
	ctx := context.Background()
	before, err := s.catalog.GetProduct(ctx, "p-grinder")
	if err != nil {
		t.Fatal(err)
	}
	s.paymentsLink.setDown(true)
	o := s.place(t, "erin", orders.Item{ProductID: "p-grinder", Quantity: 2})
	if o.Status != orders.StatusPendingPayment || o.ReservationID == "" {
		t.Fatalf("order while payments is down = %+v, want pending_payment", o)
	}
	res, err := s.catalog.GetReservation(ctx, o.ReservationID)
	if err != nil || res.Status != catalog.ReservationHeld {
		t.Fatalf("reservation %+v (%v), want held while payment is pending", res, err)
	}
	if ps, _ := s.payments.ListByOrder(ctx, o.ID); len(ps) != 0 {
		t.Fatalf("payments %+v while payments was unreachable", ps)
	}

	s.paymentsLink.setDown(false)
	s.clock.Advance(5 * time.Second) // past the resume grace and the first back-off
	eventually(t, "the pending order to be confirmed", func() bool {
		got, err := s.orders.GetOrder(ctx, o.ID)
		o = got
		return err == nil && got.Status.Terminal()
	})
	if o.Status != orders.StatusConfirmed || o.PaymentID == "" {
		t.Fatalf("order %+v, want confirmed", o)
	}
	res, _ = s.catalog.GetReservation(ctx, o.ReservationID)
	after, _ := s.catalog.GetProduct(ctx, "p-grinder")
	ps, _ := s.payments.ListByOrder(ctx, o.ID)
	if res.Status != catalog.ReservationCommitted || after.Stock != before.Stock-2 {
		t.Errorf("reservation %s, stock %d → %d: want committed and 2 sold", res.Status, before.Stock, after.Stock)
	}
	if len(ps) != 1 || ps[0].ID != o.PaymentID || ps[0].Status != payments.StatusCaptured || ps[0].AmountCents != o.TotalCents {
		t.Errorf("payments %+v, want one capture of %d", ps, o.TotalCents)
	}

	eventually(t, "every outbox to drain", func() bool { return s.drained(t) })
	want := map[string]map[string]int{
		events.StreamOrders:   {events.TypeOrderPlaced: 1, events.TypeOrderConfirmed: 1},
		events.StreamCatalog:  {events.TypeStockReserved: 1},
		events.StreamPayments: {events.TypePaymentCaptured: 1},
	}
	for stream, types := range want {
		evs, _ := s.streamEvents(t, stream)
		got := map[string]int{}
		for _, ev := range evs {
			got[ev.Type]++
			if ev.CorrelationID == "" {
				t.Errorf("%s %s has no correlation id", stream, ev.Type)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(types) {
			t.Errorf("stream %s holds %v, want %v", stream, got, types)
		}
	}
	eventually(t, "the customer's notifications", func() bool { return len(s.notificationsOf(t, "erin")) == 2 })
}

// TestBrokerDownDuringOrderPlacementLosesNothing places orders while the broker is down: the shop works
// on, each producer's outbox backlog grows, and when the broker is back every event reaches its stream
// exactly once (0 lost, 0 duplicated) and notifications applies each order event once.
func TestBrokerDownDuringOrderPlacementLosesNothing(t *testing.T) {
	s := newEventShop(t)
	warm := s.place(t, "frank", orders.Item{ProductID: "p-mug", Quantity: 1})
	eventually(t, "the first order's events", func() bool { return s.drained(t) && len(s.notificationsOf(t, "frank")) == 2 })

	s.broker.Stop()
	const n = 12
	placed := []orders.Order{warm}
	for i := range n {
		o := s.place(t, "frank", orders.Item{ProductID: "p-mug", Quantity: 1}, orders.Item{ProductID: "p-filters", Quantity: int64(i + 1)})
		if o.Status != orders.StatusConfirmed {
			t.Fatalf("order %d while the broker is down: %s, want confirmed (the saga needs no broker)", i, o.Status)
		}
		placed = append(placed, o)
	}
	eventually(t, "publish failures while the broker is down", func() bool {
		return s.metric(t, "orders", "events_publish_failures_total") > 0
	})
	backlog := map[string]float64{"orders": 2 * n, "catalog": n, "payments": n}
	for svc, want := range backlog {
		if got := s.metric(t, svc, "events_outbox_backlog"); got != want {
			t.Errorf("%s backlog %v while the broker is down, want %v", svc, got, want)
		}
		if got := s.metric(t, svc, "events_outbox_oldest_age_seconds"); got < 0 {
			t.Errorf("%s oldest unsent age %v", svc, got)
		}
	}

	s.broker.Start()
	eventually(t, "every outbox to drain", func() bool { return s.drained(t) })
	for svc, stream := range map[string]string{"orders": events.StreamOrders, "catalog": events.StreamCatalog, "payments": events.StreamPayments} {
		want := s.outboxIDs(t, svc)
		got, _ := s.streamEvents(t, stream)
		lost, dup, unknown := exactlyOnce(want, got)
		if lost != 0 || dup != 0 || unknown != 0 || len(want) == 0 {
			t.Errorf("%s: %d events in the outbox, %d in the stream: %d lost, %d duplicated, %d unknown",
				svc, len(want), len(got), lost, dup, unknown)
		}
	}
	eventually(t, "a notification per order event", func() bool { return len(s.notificationsOf(t, "frank")) == 2*(n+1) })
	perOrder := map[string]int{}
	for _, nt := range s.notificationsOf(t, "frank") {
		perOrder[nt.OrderID]++
	}
	for _, o := range placed {
		if perOrder[o.ID] != 2 {
			t.Errorf("order %s has %d notifications, want 2 (placed, confirmed)", o.ID, perOrder[o.ID])
		}
	}
	if got := s.metric(t, "notifications", "events_handled_total", "outcome", "applied"); got != 2*(n+1) {
		t.Errorf("notifications applied %v events, want %d", got, 2*(n+1))
	}
}
