package events

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events/natstest"
)

// replicaRelay starts the relay of one replica on its own pool of the shared database file.
func replicaRelay(t *testing.T, cfg Config, path, instance string) (*Relay, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := StartRelay(context.Background(), cfg, RelayOptions{Service: "payments", DB: openDBFile(t, path),
		Logger: logger(t), Registry: reg, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, reg
}

// holdLease writes the outbox's lease as a relay that held it until `until` and then died would have.
func holdLease(t *testing.T, db *sql.DB, holder string, until time.Time) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO outbox_relay (id, holder, expires_at) VALUES (1, ?, ?)`, holder, until.UnixNano()); err != nil {
		t.Fatal(err)
	}
}

func dbPath(t *testing.T, db *sql.DB) string {
	t.Helper()
	var seq int
	var name, file string
	if err := db.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		t.Fatal(err)
	}
	return file
}

// Two replicas share one outbox: one relay publishes each row once, the other stands by, and takes over
// at once when the first closes (it releases the lease).
func TestReplicaRelaysPublishTheOutboxOnce(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	cfg := testConfig(broker.URL())
	cfg.RelayLease = 10 * time.Second // a takeover faster than this was a release, not an expiry
	path := dbPath(t, db)
	relays := map[string]*Relay{}
	regs := map[string]*prometheus.Registry{}
	for _, id := range []string{"payments-1", "payments-2"} {
		relays[id], regs[id] = replicaRelay(t, cfg, path, id)
	}
	published := func() (sum float64) {
		for _, reg := range regs {
			sum += metric(t, reg, "events_published_total")
		}
		return sum
	}

	want := recordPlaced(t, db, "shared", 50)
	// A batch is counted just after its sent stamps commit: wait for the count, then the backlog is empty.
	eventually(t, "the shared outbox published", func() bool { return published() >= 50 })
	if got := metric(t, regs["payments-1"], "events_outbox_backlog"); got != 0 {
		t.Fatalf("backlog %v after 50 publishes, want 0", got)
	}
	if got := published(); got != 50 {
		t.Fatalf("the two relays published %v times for 50 events, want 50", got)
	}
	var leader, standby string
	for id, reg := range regs {
		switch metric(t, reg, "events_relay_leader") {
		case 1:
			leader = id
		case 0:
			standby = id
		}
	}
	if leader == "" || standby == "" {
		t.Fatalf("want one leader and one standby, got leader %q standby %q", leader, standby)
	}
	if got := metric(t, regs[standby], "events_published_total"); got != 0 {
		t.Fatalf("the standby published %v events", got)
	}

	if err := relays[leader].Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	want = append(want, recordPlaced(t, db, "after", 30)...)
	eventually(t, "the standby to publish what came after", func() bool { return metric(t, regs[standby], "events_published_total") == 30 })
	if took := time.Since(closed); took >= cfg.RelayLease {
		t.Errorf("standby took over after %s, not before the %s lease would have expired: the lease was not released", took, cfg.RelayLease)
	}
	if metric(t, regs[standby], "events_relay_leader") != 1 || metric(t, regs[leader], "events_relay_leader") != 0 {
		t.Error("leader gauges did not follow the takeover")
	}
	checkExactlyOnce(t, streamEvents(t, broker.URL(), StreamOrders), want)
}

// A relay that died keeps its lease until it expires; only then does a standby publish.
func TestStandbyWaitsForADeadHoldersLease(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	cfg := testConfig(broker.URL())
	cfg.RelayLease = 500 * time.Millisecond
	expires := time.Now().Add(1500 * time.Millisecond)
	holdLease(t, db, "payments-1", expires)
	want := recordPlaced(t, db, "orphaned", 10)
	_, reg := replicaRelay(t, cfg, dbPath(t, db), "payments-2")
	time.Sleep(200 * time.Millisecond)
	if got := metric(t, reg, "events_published_total"); got != 0 || metric(t, reg, "events_relay_leader") != 0 {
		t.Fatalf("published %v while the dead holder's lease was valid", got)
	}
	eventually(t, "the standby to publish once the lease expired", func() bool { return metric(t, reg, "events_published_total") == 10 })
	if time.Now().Before(expires) {
		t.Fatal("published before the dead holder's lease expired")
	}
	checkExactlyOnce(t, streamEvents(t, broker.URL(), StreamOrders), want)
}

// A relay restarted under the same instance name takes its own lease back without waiting for it.
func TestRestartedRelayKeepsItsLease(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	cfg := testConfig(broker.URL())
	cfg.RelayLease = time.Minute
	holdLease(t, db, "payments-1", time.Now().Add(cfg.RelayLease))
	want := recordPlaced(t, db, "restarted", 5)
	_, reg := replicaRelay(t, cfg, dbPath(t, db), "payments-1")
	eventually(t, "the restarted relay to publish", func() bool { return metric(t, reg, "events_published_total") == 5 })
	checkExactlyOnce(t, streamEvents(t, broker.URL(), StreamOrders), want)
}

func TestStartRelayNeedsTheLeaseTable(t *testing.T) {
	db := openDBFile(t, filepath.Join(t.TempDir(), "t.db"))
	if _, err := db.Exec(OutboxMigration); err != nil {
		t.Fatal(err)
	}
	_, err := StartRelay(context.Background(), Config{URL: "nats://127.0.0.1:1"}, RelayOptions{Service: "orders", DB: db,
		Logger: logger(t), Registry: prometheus.NewRegistry()})
	if err == nil || !strings.Contains(err.Error(), "RelayLeaseMigration") {
		t.Fatalf("err %v, want it to name the missing migration", err)
	}
}
