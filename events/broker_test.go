package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite"

	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/services/platform"
)

// waitFor bounds every wait for something the broker or a background loop does; generous, so a loaded
// 2-core machine does not make the tests flaky.
const waitFor = 30 * time.Second

func platformEnv(m map[string]string) *platform.Env { return platform.EnvFrom(m) }

// openDB opens a SQLite database with the outbox and processed-event tables and an effects table the
// test handlers write to, through one connection as the services' write pools do.
func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db := openDBFile(t, filepath.Join(t.TempDir(), "t.db"))
	for _, m := range []string{OutboxMigration, RelayLeaseMigration, ProcessedMigration, `CREATE TABLE effects (event_id TEXT NOT NULL, order_id TEXT NOT NULL)`} {
		if _, err := db.Exec(m); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	return db
}

// openDBFile opens the SQLite file at path as a service's write pool (one connection), without migrating
// it: a second pool on openDB's file is what a replica sharing the database has.
func openDBFile(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// testConfig paces the relay and consumers for tests: short waits, short back-off.
func testConfig(url string) Config {
	return Config{URL: url, RelayInterval: 20 * time.Millisecond, PublishTimeout: 2 * time.Second,
		MaxBackoff: 200 * time.Millisecond, MaxDeliver: 3, AckWait: 2 * time.Second}
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// recordPlaced writes n OrderPlaced events into the outbox, each in its own transaction as a service
// would, and returns their ids.
func recordPlaced(t *testing.T, db *sql.DB, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := Record(context.Background(), tx, OrderPlaced{OrderID: fmt.Sprintf("%s-%d", prefix, i), CustomerID: "c1",
			Items: []Item{{ProductID: "p-mug", Quantity: 1}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		ids[i] = ev.ID
	}
	return ids
}

// metric reads the value of a counter or gauge name{labels} from reg (0 when absent).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
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

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamEvents reads every message of stream (from a fresh connection) and returns the event ids in
// stream order.
func streamEvents(t *testing.T, url, stream string) []string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %s #%d: %v", stream, seq, err)
		}
		ev, _, err := Decode(m.Data)
		if err != nil {
			t.Fatalf("%s #%d: %v", stream, seq, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
			t.Errorf("%s #%d: Nats-Msg-Id %q, want the event id %q", stream, seq, got, ev.ID)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

// checkExactlyOnce fails unless got holds each of want exactly once and nothing else.
func checkExactlyOnce(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	lost, dup := 0, 0
	for _, id := range want {
		switch seen[id] {
		case 0:
			lost++
		case 1:
		default:
			dup += seen[id] - 1
		}
		delete(seen, id)
	}
	if lost != 0 || dup != 0 || len(seen) != 0 {
		t.Errorf("%d events: %d lost, %d duplicated, %d unexpected", len(want), lost, dup, len(seen))
	}
}

func TestRelayBrokerDownBacklogDrains(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	reg := prometheus.NewRegistry()
	relay, err := StartRelay(context.Background(), testConfig(broker.URL()), RelayOptions{Service: "orders", DB: db,
		Logger: logger(t), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if !relay.Running() || relay.ReadyCheck().Name != "events_relay" {
		t.Fatalf("relay running=%v check %q", relay.Running(), relay.ReadyCheck().Name)
	}

	want := recordPlaced(t, db, "before", 40)
	eventually(t, "the first events to be published", func() bool { return metric(t, reg, "events_published_total") == 40 })
	if got := metric(t, reg, "events_outbox_backlog"); got != 0 {
		t.Fatalf("backlog %v after publishing, want 0", got)
	}

	broker.Stop()
	want = append(want, recordPlaced(t, db, "during", 60)...)
	eventually(t, "publish failures while the broker is down", func() bool { return metric(t, reg, "events_publish_failures_total") > 0 })
	if got := metric(t, reg, "events_outbox_backlog"); got != 60 {
		t.Errorf("backlog %v while the broker is down, want 60", got)
	}
	if got := metric(t, reg, "events_outbox_oldest_age_seconds"); got <= 0 {
		t.Errorf("oldest unsent age %v while the broker is down, want > 0", got)
	}

	broker.Start()
	want = append(want, recordPlaced(t, db, "after", 20)...)
	// The relay counts a batch just after committing its sent stamps, so an empty backlog can be seen a
	// moment before the count: wait for both.
	eventually(t, "the backlog to drain and its events to be counted", func() bool {
		return metric(t, reg, "events_outbox_backlog") == 0 && metric(t, reg, "events_published_total") >= 120
	})
	if got := metric(t, reg, "events_outbox_oldest_age_seconds"); got != 0 {
		t.Errorf("oldest unsent age %v after draining, want 0", got)
	}
	if got := metric(t, reg, "events_published_total"); got != 120 {
		t.Errorf("published %v, want 120", got)
	}
	checkExactlyOnce(t, streamEvents(t, broker.URL(), StreamOrders), want)
}

func TestRelayDisabledWithoutURL(t *testing.T) {
	db := openDB(t)
	reg := prometheus.NewRegistry()
	relay, err := StartRelay(context.Background(), Config{}, RelayOptions{Service: "orders", DB: db, Logger: logger(t), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	recordPlaced(t, db, "o", 3)
	if relay.Running() || metric(t, reg, "events_relay_running") != 0 {
		t.Errorf("relay runs without a URL")
	}
	if got := metric(t, reg, "events_outbox_backlog"); got != 3 {
		t.Errorf("backlog %v, want the 3 events kept in the outbox", got)
	}
	if name := relay.ReadyCheck().Name; name != "events_relay_disabled_nats_url_unset" {
		t.Errorf("ready check %q", name)
	}
	if err := relay.ReadyCheck().Check(context.Background()); err != nil {
		t.Errorf("ready check fails the service: %v", err)
	}
}

// publishPlaced publishes n OrderPlaced events straight to the broker (as a relay would) and returns
// their ids.
func publishPlaced(t *testing.T, url string, n int) []string {
	t.Helper()
	nc, js, err := connect(url, "test-publisher", logger(t), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range n {
		ev, err := New(OrderPlaced{OrderID: "o-" + strconv.Itoa(i), CustomerID: "c1", Items: []Item{{ProductID: "p", Quantity: 1}}}, time.Now(), "")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(ev)
		if _, err := js.Publish(ctx, ev.Subject(), data, jetstream.WithMsgID(ev.ID)); err != nil {
			t.Fatal(err)
		}
		ids[i] = ev.ID
	}
	return ids
}

func publishRaw(t *testing.T, url, subject string, data []byte) {
	t.Helper()
	nc, js, err := connect(url, "test-publisher", logger(t), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, data); err != nil {
		t.Fatal(err)
	}
}

// recordEffect is a handler that records each application of an event in effects.
func recordEffect(ctx context.Context, tx *sql.Tx, ev Event, p Payload) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, order_id) VALUES (?, ?)`, ev.ID, p.(OrderPlaced).OrderID)
	return err
}

func effects(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT event_id FROM effects ORDER BY rowid`)
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

func startConsumer(t *testing.T, cfg Config, o ConsumerOptions) (*Consumer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registry, o.Logger, o.Stream = reg, logger(t), StreamOrders
	if o.Name == "" {
		o.Name = "test"
	}
	c, err := StartConsumer(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, reg
}

func TestConsumerKilledMidBatchAppliesEachEventOnce(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	want := publishPlaced(t, broker.URL(), 10)

	errCrash := errors.New("simulated crash between commit and ack")
	handled := 0
	first, _ := startConsumer(t, testConfig(broker.URL()), ConsumerOptions{DB: db, Handle: recordEffect, Batch: 10,
		afterCommit: func(Event) error {
			handled++ // the consumer's loop is one goroutine
			if handled == 4 {
				return errCrash
			}
			return nil
		}})
	select {
	case <-first.Done():
	case <-time.After(waitFor):
		t.Fatal("the consumer never reached the crash")
	}
	if !errors.Is(first.err, errCrash) {
		t.Fatalf("consumer stopped with %v", first.err)
	}
	first.Close()
	if got := len(effects(t, db)); got != 4 {
		t.Fatalf("%d events applied before the crash, want 4", got)
	}

	// A new instance of the same durable consumer gets the unacked rest, including the fourth event,
	// whose effect committed before the crash: it is recognised and acked, not applied again.
	_, reg := startConsumer(t, testConfig(broker.URL()), ConsumerOptions{DB: db, Handle: recordEffect})
	eventually(t, "every event to be handled", func() bool {
		return metric(t, reg, "events_handled_total", "outcome", "applied") == 6
	})
	eventually(t, "the redelivered fourth event to be recognised", func() bool {
		return metric(t, reg, "events_handled_total", "outcome", "duplicate") == 1
	})
	checkExactlyOnce(t, effects(t, db), want)
	if got := metric(t, reg, "events_redeliveries_total", "consumer", "test"); got != 7 {
		t.Errorf("redeliveries %v, want 7 (the fourth to tenth events)", got)
	}
	eventually(t, "the consumer lag to reach 0", func() bool {
		return metric(t, reg, "events_consumer_pending_messages") == 0 && metric(t, reg, "events_consumer_ack_pending_messages") == 0
	})
}

// deadLetters returns the messages on the consumer's dead-letter subject.
func deadLetters(t *testing.T, url string) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, js, err := connect(url, "test-reader", logger(t), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	good := publishPlaced(t, broker.URL(), 3)
	publishRaw(t, broker.URL(), "orders.placed", []byte(`{"id":"x","type":"OrderPlaced","version":9}`))
	failing := publishPlaced(t, broker.URL(), 1)[0]
	rejected := publishPlaced(t, broker.URL(), 1)[0]

	var mu sync.Mutex
	attempts := map[string]int{}
	_, reg := startConsumer(t, testConfig(broker.URL()), ConsumerOptions{DB: db, Handle: func(ctx context.Context, tx *sql.Tx, ev Event, p Payload) error {
		mu.Lock()
		attempts[ev.ID]++
		mu.Unlock()
		switch ev.ID {
		case failing:
			return errors.New("the handler fails on this event every time")
		case rejected:
			return Permanent(errors.New("this event can never be applied"))
		}
		return recordEffect(ctx, tx, ev, p)
	}})
	eventually(t, "three dead letters", func() bool { return metric(t, reg, "events_dead_lettered_total") == 3 })
	checkExactlyOnce(t, effects(t, db), good)
	mu.Lock()
	defer mu.Unlock()
	if attempts[failing] != 3 || attempts[rejected] != 1 {
		t.Errorf("attempts: failing %d (want MaxDeliver=3), permanent %d (want 1)", attempts[failing], attempts[rejected])
	}

	dls := deadLetters(t, broker.URL())
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	byDeliveries := map[string]string{}
	for _, m := range dls {
		if m.Subject != DeadLetterPrefix+"test" || m.Header.Get("Events-Subject") != "orders.placed" || m.Header.Get("Events-Error") == "" {
			t.Errorf("dead letter %s headers %v", m.Subject, m.Header)
		}
		byDeliveries[string(m.Data)] = m.Header.Get("Events-Deliveries")
	}
	if d := byDeliveries[`{"id":"x","type":"OrderPlaced","version":9}`]; d != "1" {
		t.Errorf("the undecodable message was dead-lettered after %q deliveries, want at once", d)
	}
	// The failing event is retried with back-off, then dead-lettered on its last allowed delivery.
	if got := metric(t, reg, "events_redeliveries_total"); got != 2 {
		t.Errorf("redeliveries %v, want 2 (the failing event's second and third)", got)
	}
	if got := metric(t, reg, "events_handled_total", "outcome", "failed"); got != 5 {
		t.Errorf("failed handlings %v, want 5 (1 undecodable, 3 failing, 1 permanent)", got)
	}
}

func TestConsumerWaitsOutBrokerOutage(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	want := publishPlaced(t, broker.URL(), 5)
	_, reg := startConsumer(t, testConfig(broker.URL()), ConsumerOptions{DB: db, Handle: recordEffect})
	eventually(t, "the first events", func() bool { return len(effects(t, db)) == 5 })

	broker.Stop()
	broker.Start()
	want = append(want, publishPlaced(t, broker.URL(), 5)...)
	eventually(t, "the events published after the outage", func() bool { return len(effects(t, db)) == 10 })
	checkExactlyOnce(t, effects(t, db), want)
	if got := metric(t, reg, "events_handled_total", "outcome", "applied"); got != 10 {
		t.Errorf("applied %v, want 10", got)
	}
}
