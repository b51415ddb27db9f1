package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

// OutboxMigration creates the outbox table. A producing service appends it to its own migrations, so
// the outbox lives in the service's database and an event row commits with the state change it
// announces, or not at all.
const OutboxMigration = `CREATE TABLE outbox (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	event_id   TEXT NOT NULL UNIQUE,
	subject    TEXT NOT NULL,
	payload    BLOB NOT NULL,    -- the encoded Event
	created_at INTEGER NOT NULL, -- unix nanoseconds
	sent_at    INTEGER           -- unix nanoseconds; NULL until the broker acked it
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;`

// RelayLeaseMigration creates the outbox's relay lease: one row naming the relay that publishes the
// outbox and until when. Replicas of a service share its database and so its outbox; with the lease one
// relay publishes while the others stand by, instead of every replica publishing every row (which the
// stream's dedup absorbed, at twice the traffic). A producing service appends it after OutboxMigration.
const RelayLeaseMigration = `CREATE TABLE outbox_relay (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	holder     TEXT NOT NULL,
	expires_at INTEGER NOT NULL -- unix nanoseconds
);`

// ProcessedMigration creates the table consumers record handled event ids in, in the same transaction
// as the handler's effect: an event redelivered after that commit is recognised and not applied again.
const ProcessedMigration = `CREATE TABLE processed_events (
	consumer     TEXT NOT NULL,
	event_id     TEXT NOT NULL,
	processed_at INTEGER NOT NULL, -- unix nanoseconds
	PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_time ON processed_events (processed_at);`

// Execer is what Record needs of a transaction (*sql.Tx).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Record writes the event of p, happened at `at`, into the outbox through tx, the transaction of the
// state change it announces. The correlation id is the request id in ctx, the trace parent the span of
// ctx. It returns the event written.
func Record(ctx context.Context, tx Execer, p Payload, at time.Time) (Event, error) {
	ev, err := New(p, at, platform.RequestID(ctx))
	if err != nil {
		return Event{}, err
	}
	ev.TraceParent = platform.TraceParent(ctx)
	return ev, Append(ctx, tx, ev)
}

// Append writes ev into the outbox through tx.
func Append(ctx context.Context, tx Execer, ev Event) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("events: encode %s: %w", ev.Type, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (event_id, subject, payload, created_at) VALUES (?, ?, ?, ?)`,
		ev.ID, ev.Subject(), payload, ev.Time.UnixNano()); err != nil {
		return fmt.Errorf("events: outbox insert %s: %w", ev.Type, err)
	}
	return nil
}

// outboxRow is one unsent event.
type outboxRow struct {
	seq     int64
	eventID string
	subject string
	payload []byte
}

// unsent returns up to limit unsent rows, oldest first.
func unsent(ctx context.Context, db *sql.DB, limit int) ([]outboxRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, event_id, subject, payload FROM outbox WHERE sent_at IS NULL
		ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.seq, &r.eventID, &r.subject, &r.payload); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// markSent stamps the rows with seqs as sent, in one transaction.
func markSent(ctx context.Context, db *sql.DB, seqs []int64, at time.Time) error {
	if len(seqs) == 0 {
		return nil
	}
	args := make([]any, 0, len(seqs)+1)
	args = append(args, at.UnixNano())
	for _, s := range seqs {
		args = append(args, s)
	}
	// One statement, so the batch is marked atomically; the batch size bounds the parameter count.
	_, err := db.ExecContext(ctx, `UPDATE outbox SET sent_at = ? WHERE sent_at IS NULL AND seq IN (?`+
		strings.Repeat(", ?", len(seqs)-1)+`)`, args...)
	return err
}

// takeLease makes holder the outbox's relay until now+ttl, if the lease is free, expired or already
// holder's, and reports whether it is. A standby's poll is a read; it writes only to take an expired
// lease, so standing by never queues for SQLite's write lock.
func takeLease(ctx context.Context, db *sql.DB, holder string, now time.Time, ttl time.Duration) (bool, error) {
	var current string
	var expires int64
	err := db.QueryRowContext(ctx, `SELECT holder, expires_at FROM outbox_relay WHERE id = 1`).Scan(&current, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, err
	case current != holder && expires > now.UnixNano():
		return false, nil
	}
	res, err := db.ExecContext(ctx, `INSERT INTO outbox_relay (id, holder, expires_at) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE outbox_relay.holder = excluded.holder OR outbox_relay.expires_at <= ?`,
		holder, now.Add(ttl).UnixNano(), now.UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// releaseLease ends holder's lease at once, so a standby takes over without waiting for it to expire.
func releaseLease(ctx context.Context, db *sql.DB, holder string) error {
	_, err := db.ExecContext(ctx, `UPDATE outbox_relay SET expires_at = 0 WHERE id = 1 AND holder = ?`, holder)
	return err
}

// pruneSent deletes rows sent before cutoff.
func pruneSent(ctx context.Context, db *sql.DB, cutoff time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?`, cutoff.UnixNano())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// OutboxStats is what the outbox holds unsent.
type OutboxStats struct {
	Backlog int64
	// Oldest is the creation time of the oldest unsent row (zero when the backlog is empty).
	Oldest time.Time
}

// Stats reads the outbox backlog through db (a reader pool is fine).
func Stats(ctx context.Context, db *sql.DB) (OutboxStats, error) {
	var s OutboxStats
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&s.Backlog); err != nil {
		return s, err
	}
	if s.Backlog == 0 {
		return s, nil
	}
	var oldest int64
	// The lowest unsent seq is the oldest row: rows are numbered in commit order.
	if err := db.QueryRowContext(ctx, `SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1`).
		Scan(&oldest); err != nil {
		return s, err
	}
	s.Oldest = time.Unix(0, oldest).UTC()
	return s, nil
}
