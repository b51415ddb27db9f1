package payments

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/resilience-lab/lab/services/platform"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/resilience-lab/lab/events"
)

// errPaymentNotFound is the store's answer for an unknown payment id; the service turns it into a 404.
var errPaymentNotFound = errors.New("payment not found")

// migrations are applied in order on start; PRAGMA user_version records how many have run.
// Append only: never edit a migration that has shipped.
var migrations = []string{
	`CREATE TABLE payments (
		id                  TEXT PRIMARY KEY,
		idempotency_key     TEXT NOT NULL UNIQUE,
		request_fingerprint TEXT NOT NULL,
		order_id            TEXT NOT NULL,
		amount_cents        INTEGER NOT NULL CHECK (amount_cents > 0),
		status              TEXT NOT NULL CHECK (status IN ('captured', 'declined', 'refunded')),
		decline_reason      TEXT NOT NULL DEFAULT '',
		created_at          TEXT NOT NULL,
		refunded_at         TEXT
	);
	CREATE INDEX payments_by_order ON payments (order_id, created_at);`,
	// PaymentCaptured and PaymentRefunded events, written in the transaction of the change they announce.
	events.OutboxMigration,
	// Replicas sharing this database publish its outbox one at a time.
	events.RelayLeaseMigration,
}

// store keeps payments in SQLite. Writes go through a single-connection pool whose transactions begin
// IMMEDIATE, so concurrent writers queue in-process instead of failing with SQLITE_BUSY, and a
// check-then-insert on an idempotency key is serialised. Reads use a separate pool (WAL lets them run
// beside the writer).
type store struct {
	wr *sql.DB
	rd *sql.DB
}

func openStore(ctx context.Context, path string) (*store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("payments db path %q: want a file path without '?' or '#'", path)
	}
	const pragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	wr, err := sql.Open("sqlite", path+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	wr.SetMaxOpenConns(1)
	wr.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wr); err != nil {
		wr.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	// The reader pool opens after the migration has switched the file to WAL.
	rd, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		wr.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	rd.SetMaxOpenConns(8)
	rd.SetMaxIdleConns(8)
	s := &store{wr: wr, rd: rd}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
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
	// PRAGMA takes no bind parameters; the value is an integer we control.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

// Close closes both pools.
func (s *store) Close() error { return errors.Join(s.rd.Close(), s.wr.Close()) }

// Ping checks that the database answers a query.
func (s *store) Ping(ctx context.Context) error {
	var one int
	return s.rd.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

const paymentColumns = `id, order_id, amount_cents, status, decline_reason, created_at`

// createPayment inserts p under key unless a payment already holds key. It returns the payment stored
// under key, the fingerprint of the request that created it, and whether this call created it.
func (s *store) createPayment(ctx context.Context, key, fingerprint string, p Payment) (stored Payment, storedFingerprint string, created bool, err error) {
	ctx, cancel := platform.WriteContext(ctx)
	defer cancel()
	tx, err := s.wr.BeginTx(ctx, nil)
	if err != nil {
		return Payment{}, "", false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO payments
		(id, idempotency_key, request_fingerprint, order_id, amount_cents, status, decline_reason, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (idempotency_key) DO NOTHING`,
		p.ID, key, fingerprint, p.OrderID, p.AmountCents, string(p.Status), p.DeclineReason, formatTime(p.CreatedAt))
	if err != nil {
		return Payment{}, "", false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Payment{}, "", false, err
	}
	if n == 1 && p.Status == StatusCaptured {
		if _, err := events.Record(ctx, tx, events.PaymentCaptured{PaymentID: p.ID, OrderID: p.OrderID,
			AmountCents: p.AmountCents}, p.CreatedAt); err != nil {
			return Payment{}, "", false, err
		}
	}
	row := tx.QueryRowContext(ctx, `SELECT `+paymentColumns+`, request_fingerprint FROM payments WHERE idempotency_key = ?`, key)
	stored, err = scanPayment(row, &storedFingerprint)
	if err != nil {
		return Payment{}, "", false, err
	}
	if err := tx.Commit(); err != nil {
		return Payment{}, "", false, err
	}
	return stored, storedFingerprint, n == 1, nil
}

// payment returns the payment with id, or errPaymentNotFound.
func (s *store) payment(ctx context.Context, id string) (Payment, error) {
	return scanPayment(s.rd.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = ?`, id))
}

// refund marks a captured payment refunded at `at` and returns the payment as it now is; refunded is
// true only when this call changed it. Other statuses are left alone for the caller to judge.
func (s *store) refund(ctx context.Context, id string, at time.Time) (p Payment, refunded bool, err error) {
	ctx, cancel := platform.WriteContext(ctx)
	defer cancel()
	tx, err := s.wr.BeginTx(ctx, nil)
	if err != nil {
		return Payment{}, false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE payments SET status = ?, refunded_at = ? WHERE id = ? AND status = ?`,
		string(StatusRefunded), formatTime(at), id, string(StatusCaptured))
	if err != nil {
		return Payment{}, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return Payment{}, false, err
	}
	p, err = scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = ?`, id))
	if err != nil {
		return Payment{}, false, err
	}
	if n == 1 {
		if _, err := events.Record(ctx, tx, events.PaymentRefunded{PaymentID: p.ID, OrderID: p.OrderID,
			AmountCents: p.AmountCents}, at); err != nil {
			return Payment{}, false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return Payment{}, false, err
	}
	return p, n == 1, nil
}

// paymentsByOrder returns every payment of an order, oldest first.
func (s *store) paymentsByOrder(ctx context.Context, orderID string) ([]Payment, error) {
	rows, err := s.rd.QueryContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE order_id = ? ORDER BY created_at, rowid`, orderID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []Payment{}
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, p)
	}
	return list, rows.Err()
}

// scanPayment reads paymentColumns (and any extra destinations after them) from row.
func scanPayment(row interface{ Scan(...any) error }, extra ...any) (Payment, error) {
	var (
		p       Payment
		status  string
		created string
	)
	dest := append([]any{&p.ID, &p.OrderID, &p.AmountCents, &status, &p.DeclineReason, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Payment{}, errPaymentNotFound
		}
		return Payment{}, err
	}
	p.Status = Status(status)
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return Payment{}, fmt.Errorf("payment %s: bad created_at %q: %w", p.ID, created, err)
	}
	p.CreatedAt = t
	return p, nil
}

// formatTime stores times as RFC 3339 UTC text with a fixed-width fraction, so text order is time order.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") }
