package orders

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/platform"
)

// chargeState is what compensation must do about the payment of an order.
type chargeState string

const (
	// chargeNone: nothing can have been captured (not charged yet, declined, or refused).
	chargeNone chargeState = "none"
	// chargeUnknown: a Charge was sent and its outcome is unknown (transport error, 5xx, timeout).
	chargeUnknown chargeState = "unknown"
	// chargeCaptured: money was captured and must be refunded if the order does not complete.
	chargeCaptured chargeState = "captured"
)

// record is an order with what the saga needs beyond the wire type.
type record struct {
	Order
	IdempotencyKey string
	RequestHash    string
	// CardNumber is kept while the charge may have to be (re)sent with the same body, erased once the
	// order is terminal.
	CardNumber string
	// Outcome is the terminal status (rejected or cancelled) a compensating order ends in.
	Outcome     Status
	ChargeState chargeState
	// CorrelationID is the request id of the request that placed the order; the order's events and the
	// resumer's calls carry it.
	CorrelationID string
	// HoldUntil is when catalog's reservation expires: a pending_payment order gives up before it.
	HoldUntil time.Time
	// PaymentAttempts counts the charges that failed technically while the order waits in
	// pending_payment; RetryAt is when the resumer may try again (the back-off).
	PaymentAttempts int
	RetryAt         time.Time
	// version guards every update: a record is saved only over the version it was read at.
	version int64
}

// errConflict means the record changed since it was read: another driver moved the order.
var errConflict = errors.New("orders: order changed concurrently")

// migrations run in order on start; PRAGMA user_version records how many have been applied.
var migrations = []string{
	`CREATE TABLE orders (
		id              TEXT PRIMARY KEY,
		customer_id     TEXT NOT NULL,
		idempotency_key TEXT NOT NULL,
		request_hash    TEXT NOT NULL,
		items           TEXT NOT NULL,
		card_number     TEXT NOT NULL DEFAULT '',
		total_cents     INTEGER NOT NULL DEFAULT 0,
		status          TEXT NOT NULL,
		reservation_id  TEXT NOT NULL DEFAULT '',
		payment_id      TEXT NOT NULL DEFAULT '',
		reason          TEXT NOT NULL DEFAULT '',
		outcome         TEXT NOT NULL DEFAULT '',
		charge_state    TEXT NOT NULL DEFAULT 'none',
		version         INTEGER NOT NULL DEFAULT 1,
		created_at      INTEGER NOT NULL,
		updated_at      INTEGER NOT NULL,
		UNIQUE (customer_id, idempotency_key)
	);
	CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC);
	CREATE INDEX orders_open ON orders (updated_at) WHERE status NOT IN ('confirmed', 'rejected', 'cancelled');`,
	// The pending_payment flow and the events' correlation id (see the saga comment).
	`ALTER TABLE orders ADD COLUMN correlation_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE orders ADD COLUMN hold_until INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE orders ADD COLUMN payment_attempts INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE orders ADD COLUMN retry_at INTEGER NOT NULL DEFAULT 0;`,
	// OrderPlaced and the terminal order events, written in the transaction of the change they announce.
	events.OutboxMigration,
	// Replicas sharing this database publish its outbox one at a time.
	events.RelayLeaseMigration,
}

// store keeps orders in SQLite. One connection serialises every statement, so writes never meet
// SQLITE_BUSY however many requests run at once; no transaction spans a network call, so it stays short.
type store struct {
	db  *sql.DB
	now func() time.Time
}

func openStore(ctx context.Context, path string, now func() time.Time) (*store, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(5000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &store{db: db, now: now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

func (s *store) migrate(ctx context.Context) error {
	ctx, cancel := platform.WriteContext(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var applied int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&applied); err != nil {
		return err
	}
	if applied > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", applied, len(migrations))
	}
	for i := applied; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *store) ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func (s *store) Close() error { return s.db.Close() }

const recordColumns = `id, customer_id, idempotency_key, request_hash, items, card_number, total_cents, status,
	reservation_id, payment_id, reason, outcome, charge_state, version, created_at, updated_at,
	correlation_id, hold_until, payment_attempts, retry_at`

type scanner interface{ Scan(dest ...any) error }

func scanRecord(row scanner) (record, error) {
	var (
		r                  record
		items              string
		created, updated   int64
		status, outcome, c string
		holdUntil, retryAt int64
	)
	err := row.Scan(&r.ID, &r.CustomerID, &r.IdempotencyKey, &r.RequestHash, &items, &r.CardNumber, &r.TotalCents,
		&status, &r.ReservationID, &r.PaymentID, &r.Reason, &outcome, &c, &r.version, &created, &updated,
		&r.CorrelationID, &holdUntil, &r.PaymentAttempts, &retryAt)
	if err != nil {
		return record{}, err
	}
	if err := json.Unmarshal([]byte(items), &r.Items); err != nil {
		return record{}, fmt.Errorf("order %s: items: %w", r.ID, err)
	}
	r.Status, r.Outcome, r.ChargeState = Status(status), Status(outcome), chargeState(c)
	r.CreatedAt, r.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	r.HoldUntil, r.RetryAt = unixNanoTime(holdUntil), unixNanoTime(retryAt)
	return r, nil
}

// createOrGet inserts r unless the customer already used its idempotency key. It returns the stored
// record and whether it was created; a reused key with another request is a 409.
func (s *store) createOrGet(ctx context.Context, r record) (record, bool, error) {
	items, err := json.Marshal(r.Items)
	if err != nil {
		return record{}, false, err
	}
	ctx, cancel := platform.WriteContext(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return record{}, false, err
	}
	defer tx.Rollback()
	existing, err := scanRecord(tx.QueryRowContext(ctx,
		`SELECT `+recordColumns+` FROM orders WHERE customer_id = ? AND idempotency_key = ?`, r.CustomerID, r.IdempotencyKey))
	switch {
	case err == nil:
		if existing.RequestHash != r.RequestHash {
			return record{}, false, platform.Conflict("idempotency_key_reused",
				"the Idempotency-Key was already used by this customer for another order request")
		}
		return existing, false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return record{}, false, err
	}
	now := s.now().UTC()
	r.CreatedAt, r.UpdatedAt, r.version = now, now, 1
	_, err = tx.ExecContext(ctx, `INSERT INTO orders (`+recordColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.CustomerID, r.IdempotencyKey, r.RequestHash, string(items), r.CardNumber, r.TotalCents, string(r.Status),
		r.ReservationID, r.PaymentID, r.Reason, string(r.Outcome), string(r.ChargeState), r.version, now.UnixNano(), now.UnixNano(),
		r.CorrelationID, unixNano(r.HoldUntil), r.PaymentAttempts, unixNano(r.RetryAt))
	if err != nil {
		return record{}, false, err
	}
	if err := recordOrderEvent(ctx, tx, r, now); err != nil {
		return record{}, false, err
	}
	if err := tx.Commit(); err != nil {
		return record{}, false, err
	}
	return r, true, nil
}

// save writes the saga state of r, only over the version r was read at, and advances r's version and
// updated_at. A terminal order's card number is erased, and its event is written in the same
// transaction.
func (s *store) save(ctx context.Context, r *record) error {
	if r.Status.Terminal() {
		r.CardNumber = ""
	}
	now := s.now().UTC()
	ctx, cancel := platform.WriteContext(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE orders SET card_number = ?, total_cents = ?, status = ?, reservation_id = ?,
		payment_id = ?, reason = ?, outcome = ?, charge_state = ?, version = version + 1, updated_at = ?,
		hold_until = ?, payment_attempts = ?, retry_at = ?
		WHERE id = ? AND version = ?`,
		r.CardNumber, r.TotalCents, string(r.Status), r.ReservationID, r.PaymentID, r.Reason, string(r.Outcome),
		string(r.ChargeState), now.UnixNano(), unixNano(r.HoldUntil), r.PaymentAttempts, unixNano(r.RetryAt), r.ID, r.version)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return errConflict
	}
	// Only the save that ends the saga is terminal: a terminal order is never driven again.
	if r.Status.Terminal() {
		if err := recordOrderEvent(ctx, tx, *r, now); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	r.version++
	r.UpdatedAt = now
	return nil
}

// wakePendingPayments makes every order waiting in pending_payment due at once; the saga calls it when
// payments answers again, so the resumer's next pass retries them instead of waiting out their back-off.
func (s *store) wakePendingPayments(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE orders SET retry_at = 0
		WHERE status NOT IN ('confirmed', 'rejected', 'cancelled') AND status = ? AND retry_at > 0`, string(StatusPendingPayment))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// countPendingPayment counts the orders waiting in pending_payment (the open-orders index serves it).
func (s *store) countPendingPayment(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM orders
		WHERE status NOT IN ('confirmed', 'rejected', 'cancelled') AND status = ?`, string(StatusPendingPayment)).Scan(&n)
	return n, err
}

// unixNano stores a time as unix nanoseconds, the zero time as 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func unixNanoTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (s *store) get(ctx context.Context, id string) (record, error) {
	r, err := scanRecord(s.db.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM orders WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return record{}, platform.NotFound("order %q not found", id)
	}
	return r, err
}

// listByCustomer returns a customer's newest orders first (insertion order breaks ties of equal times).
func (s *store) listByCustomer(ctx context.Context, customerID string, limit int) ([]Order, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM orders WHERE customer_id = ?
		ORDER BY created_at DESC, rowid DESC LIMIT ?`, customerID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	orders := []Order{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		orders = append(orders, r.Order)
	}
	return orders, rows.Err()
}

// listOpen returns the ids of non-terminal orders last updated at or before cutoff and not backing off
// past now (retry_at), least recently updated first.
func (s *store) listOpen(ctx context.Context, cutoff, now time.Time, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM orders
		WHERE status NOT IN ('confirmed', 'rejected', 'cancelled') AND updated_at <= ? AND retry_at <= ?
		ORDER BY updated_at LIMIT ?`, cutoff.UnixNano(), now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// countOpen counts the orders whose saga has not ended.
func (s *store) countOpen(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx,
		`SELECT count(*) FROM orders WHERE status NOT IN ('confirmed', 'rejected', 'cancelled')`).Scan(&n)
	return n, err
}
