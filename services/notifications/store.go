package notifications

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/resilience-lab/lab/events"
)

// migrations are applied in order on start; PRAGMA user_version records how many have run.
var migrations = []string{
	`CREATE TABLE notifications (
		id          TEXT PRIMARY KEY, -- the event id: one notification per event
		customer_id TEXT NOT NULL,
		order_id    TEXT NOT NULL,
		event_type  TEXT NOT NULL,
		message     TEXT NOT NULL,
		created_at  INTEGER NOT NULL -- unix nanoseconds, the event's time
	);
	CREATE INDEX notifications_by_customer ON notifications (customer_id, created_at DESC);`,
	events.ProcessedMigration,
}

// store keeps notifications in SQLite: one writer connection whose transactions begin IMMEDIATE (the
// consumer's), and a reader pool for the API, which WAL lets run beside the writer.
type store struct {
	write *sql.DB
	read  *sql.DB
}

func openStore(ctx context.Context, path string) (*store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("notifications db path %q: want a file path without '?' or '#'", path)
	}
	const pragmas = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	write, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	read.SetMaxOpenConns(4)
	return &store{write: write, read: read}, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no bound parameters; the value is an integer we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *store) Close() error { return errors.Join(s.read.Close(), s.write.Close()) }

// Ping checks that the database answers a query.
func (s *store) Ping(ctx context.Context) error {
	var one int
	return s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// insert stores n through tx unless a notification with its id exists; it reports whether it did.
func insert(ctx context.Context, tx *sql.Tx, n Notification) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO notifications (id, customer_id, order_id, event_type, message, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		n.ID, n.CustomerID, n.OrderID, n.EventType, n.Message, n.CreatedAt.UnixNano())
	if err != nil {
		return false, err
	}
	k, err := res.RowsAffected()
	return k == 1, err
}

// listByCustomer returns a customer's newest notifications first.
func (s *store) listByCustomer(ctx context.Context, customerID string, limit int) ([]Notification, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, customer_id, order_id, event_type, message, created_at
		FROM notifications WHERE customer_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`, customerID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []Notification{}
	for rows.Next() {
		var (
			n  Notification
			at int64
		)
		if err := rows.Scan(&n.ID, &n.CustomerID, &n.OrderID, &n.EventType, &n.Message, &at); err != nil {
			return nil, err
		}
		n.CreatedAt = time.Unix(0, at).UTC()
		list = append(list, n)
	}
	return list, rows.Err()
}
