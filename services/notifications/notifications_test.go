package notifications_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/platform"
)

const waitFor = 30 * time.Second

type running struct {
	url string
	reg *prometheus.Registry
}

// start runs the service as its main does (ConfigFromEnv → Open → Handler) behind httptest.
func start(t *testing.T, vars map[string]string) running {
	t.Helper()
	// The tests call the API without service tokens.
	all := map[string]string{"NOTIFICATIONS_DB": filepath.Join(t.TempDir(), "notifications.db"), "SERVICE_AUTH": "off"}
	for k, v := range vars {
		all[k] = v
	}
	env := platform.EnvFrom(all)
	cfg := notifications.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	reg := platform.NewRegistry()
	svc, closer, err := notifications.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), reg)
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
	return running{url: srv.URL, reg: reg}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func list(t *testing.T, r running, customer string) []notifications.Notification {
	t.Helper()
	status, body := get(t, r.url+"/notifications?customer_id="+customer)
	if status != http.StatusOK {
		t.Fatalf("list: %d %s", status, body)
	}
	var out notifications.ListNotificationsResponse
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Notifications
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
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

// publisher publishes to the broker as the relays do.
type publisher struct {
	t  *testing.T
	js jetstream.JetStream
}

func newPublisher(t *testing.T, url string) publisher {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := events.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	return publisher{t, js}
}

// publish sends ev with msgID as its Nats-Msg-Id (the relay uses the event id).
func (p publisher) publish(ev events.Event, msgID string) {
	p.t.Helper()
	data, _ := json.Marshal(ev)
	p.raw(ev.Subject(), data, msgID)
}

func (p publisher) raw(subject string, data []byte, msgID string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := p.js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID)); err != nil {
		p.t.Fatal(err)
	}
}

func event(t *testing.T, p events.Payload, at time.Time) events.Event {
	t.Helper()
	ev, err := events.New(p, at, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOneNotificationPerOrderEvent(t *testing.T) {
	broker := natstest.Start(t)
	svc := start(t, map[string]string{"NATS_URL": broker.URL()})
	pub := newPublisher(t, broker.URL())
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	placed := event(t, events.OrderPlaced{OrderID: "o-1", CustomerID: "alice", Items: []events.Item{{ProductID: "p-mug", Quantity: 2}}}, t0)
	confirmed := event(t, events.OrderConfirmed{OrderID: "o-1", CustomerID: "alice", TotalCents: 2900, ReservationID: "r", PaymentID: "p"}, t0.Add(time.Second))
	rejected := event(t, events.OrderRejected{OrderID: "o-2", CustomerID: "alice", Reason: "out_of_stock"}, t0.Add(2*time.Second))
	other := event(t, events.OrderCancelled{OrderID: "o-3", CustomerID: "bob", Reason: "charge_failed"}, t0.Add(3*time.Second))
	for _, ev := range []events.Event{placed, confirmed, rejected, other} {
		pub.publish(ev, ev.ID)
	}
	// The same event again under another message id gets past the stream's dedup, as a re-publish
	// after the dedup window would: the consumer must recognise it.
	pub.publish(confirmed, confirmed.ID+"-republished")

	eventually(t, "four events applied and the repeat recognised", func() bool {
		return metric(t, svc.reg, "events_handled_total", "outcome", "applied") == 4 &&
			metric(t, svc.reg, "events_handled_total", "outcome", "duplicate") == 1
	})
	got := list(t, svc, "alice")
	if len(got) != 3 {
		t.Fatalf("alice has %d notifications %+v, want 3", len(got), got)
	}
	for i, want := range []events.Event{rejected, confirmed, placed} { // newest first
		n := got[i]
		if n.ID != want.ID || n.EventType != want.Type || !n.CreatedAt.Equal(want.Time) || n.CustomerID != "alice" || n.Message == "" {
			t.Errorf("notification %d = %+v, want one for %s %s", i, n, want.Type, want.ID)
		}
	}
	if !strings.Contains(got[1].Message, "29.00") {
		t.Errorf("confirmation %q does not tell the amount", got[1].Message)
	}
	if n := list(t, svc, "bob"); len(n) != 1 || n[0].OrderID != "o-3" {
		t.Errorf("bob's notifications %+v", n)
	}
	if got := metric(t, svc.reg, "notifications_created_total", "event_type", events.TypeOrderConfirmed); got != 1 {
		t.Errorf("confirmations counted %v, want 1", got)
	}
	if status, body := get(t, svc.url+"/readyz"); status != http.StatusOK || !strings.Contains(body, `"events_consumer":"ok"`) {
		t.Errorf("/readyz %d %s", status, body)
	}
}

func TestUndecodableEventIsDeadLettered(t *testing.T) {
	broker := natstest.Start(t)
	svc := start(t, map[string]string{"NATS_URL": broker.URL()})
	pub := newPublisher(t, broker.URL())
	pub.raw("orders.placed", []byte(`{"id":"e-1","type":"OrderPlaced","version":1,"time":"2026-11-22T12:00:00Z","data":{"order_id":"o"}}`), "e-1")
	good := event(t, events.OrderPlaced{OrderID: "o-2", CustomerID: "carol", Items: []events.Item{{ProductID: "p", Quantity: 1}}}, time.Now())
	pub.publish(good, good.ID)
	eventually(t, "the poison message to be dead-lettered", func() bool {
		return metric(t, svc.reg, "events_dead_lettered_total") == 1 && len(list(t, svc, "carol")) == 1
	})
	dls := natstest.Messages(t, broker.URL(), events.StreamDeadLetter)
	if len(dls) != 1 || !strings.Contains(string(dls[0]), `"order_id":"o"`) {
		t.Errorf("dead letters %q, want the poison message", dls)
	}
}

func TestWithoutBrokerServesAndReportsConsumerDisabled(t *testing.T) {
	svc := start(t, nil)
	status, body := get(t, svc.url+"/readyz")
	if status != http.StatusOK || !strings.Contains(body, `"events_consumer_disabled_nats_url_unset":"ok"`) {
		t.Errorf("/readyz %d %s", status, body)
	}
	if got := list(t, svc, "dave"); len(got) != 0 {
		t.Errorf("notifications %+v, want none", got)
	}
	if _, body := get(t, svc.url+"/metrics"); !strings.Contains(body, `events_handled_total{consumer="notifications",outcome="applied"} 0`) {
		t.Errorf("/metrics lacks the consumer metrics")
	}
}

func TestBadInputIs4xx(t *testing.T) {
	svc := start(t, nil)
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/notifications", 400, "invalid_argument"},
		{"GET", "/notifications?customer_id=", 400, "invalid_argument"},
		{"GET", "/notifications?customer_id=" + strings.Repeat("c", 129), 400, "invalid_argument"},
		{"POST", "/notifications?customer_id=c", 405, "method_not_allowed"},
		{"DELETE", "/notifications", 405, "method_not_allowed"},
		{"GET", "/notifications/n-1", 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, svc.url+c.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error platform.Error `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.status || body.Error.Code != c.code {
				t.Errorf("%d %+v, want %d %s", resp.StatusCode, body.Error, c.status, c.code)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{"NOTIFICATIONS_ADDR": "", "NATS_URL": "nats://127.0.0.1:4222", "EVENTS_MAX_DELIVER": "-1"})
	cfg := notifications.ConfigFromEnv(env)
	if cfg.Addr != ":8084" || cfg.DB != "notifications.db" || cfg.Events.URL != "nats://127.0.0.1:4222" {
		t.Errorf("config %+v", cfg)
	}
	if err := env.Err(); err == nil || !strings.Contains(err.Error(), "EVENTS_MAX_DELIVER") {
		t.Errorf("error %v, want EVENTS_MAX_DELIVER refused", err)
	}
}
