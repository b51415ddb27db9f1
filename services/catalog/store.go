package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/resilience-lab/lab/services/platform"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/resilience-lab/lab/events"
)

// migrations are applied in order on start; PRAGMA user_version records how many have run.
var migrations = []string{
	`CREATE TABLE products (
		id          TEXT PRIMARY KEY,
		name        TEXT NOT NULL,
		price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
		stock       INTEGER NOT NULL CHECK (stock >= 0)
	);
	CREATE TABLE reservations (
		id          TEXT PRIMARY KEY,
		order_id    TEXT NOT NULL UNIQUE,
		status      TEXT NOT NULL CHECK (status IN ('held', 'committed', 'released', 'expired')),
		total_cents INTEGER NOT NULL,
		expires_at  INTEGER NOT NULL, -- unix milliseconds
		created_at  INTEGER NOT NULL,
		updated_at  INTEGER NOT NULL
	);
	CREATE INDEX reservations_held_by_expiry ON reservations (status, expires_at);
	CREATE TABLE reservation_items (
		reservation_id   TEXT NOT NULL REFERENCES reservations (id),
		product_id       TEXT NOT NULL REFERENCES products (id),
		quantity         INTEGER NOT NULL CHECK (quantity > 0),
		unit_price_cents INTEGER NOT NULL,
		PRIMARY KEY (reservation_id, product_id)
	);`,
	// StockReserved and StockReleased events, written in the transaction of the change they announce.
	events.OutboxMigration,
	// Replicas sharing this database publish its outbox one at a time.
	events.RelayLeaseMigration,
}

// seedProducts is the fixed catalog a fresh database starts with. Stock is set from the configuration,
// except p-sold-out, which always starts at zero so out-of-stock paths can be exercised.
var seedProducts = []Product{
	{ID: "p-espresso", Name: "Espresso beans, 1 kg", PriceCents: 2490},
	{ID: "p-grinder", Name: "Burr grinder", PriceCents: 12900},
	{ID: "p-kettle", Name: "Gooseneck kettle", PriceCents: 5900},
	{ID: "p-scale", Name: "Brew scale", PriceCents: 3490},
	{ID: "p-dripper", Name: "Pour-over dripper", PriceCents: 2200},
	{ID: "p-filters", Name: "Paper filters, 100", PriceCents: 690},
	{ID: "p-mug", Name: "Ceramic mug", PriceCents: 1450},
	{ID: "p-sold-out", Name: "Limited-edition roaster", PriceCents: 49900},
}

const soldOutProductID = "p-sold-out"

// store keeps products and reservations in SQLite. Every write goes through one connection with
// BEGIN IMMEDIATE, so concurrent writers queue in Go instead of failing with SQLITE_BUSY; reads use a
// separate pool, which WAL lets run beside the writer.
type store struct {
	write *sql.DB
	read  *sql.DB
}

func openStore(ctx context.Context, path string) (*store, error) {
	if path == "" {
		return nil, errors.New("catalog store: empty database path")
	}
	pragmas := "_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	write, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("catalog store: %w", err)
	}
	write.SetMaxOpenConns(1)
	s := &store{write: write}
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, err
	}
	// The reader pool opens after migrate, so WAL mode is already set on the file.
	read, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("catalog store: %w", err)
	}
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	s.read = read
	return s, nil
}

func (s *store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// Ping checks that the database answers a query.
func (s *store) Ping(ctx context.Context) error {
	var one int
	return s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func (s *store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this binary knows (%d)", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		// PRAGMA takes no bound parameters; the value is an integer we control.
		_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)))
		return err
	})
}

// seed inserts the fixed catalog when there are no products yet; it reports whether it did.
func (s *store) seed(ctx context.Context, stock int64) (bool, error) {
	seeded := false
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM products").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		for _, p := range seedProducts {
			st := stock
			if p.ID == soldOutProductID {
				st = 0
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO products (id, name, price_cents, stock) VALUES (?, ?, ?, ?)",
				p.ID, p.Name, p.PriceCents, st); err != nil {
				return err
			}
		}
		seeded = true
		return nil
	})
	return seeded, err
}

// inTx runs f in a write transaction on the single writer (see platform.InTx for why f gets its own
// context).
func (s *store) inTx(ctx context.Context, f func(ctx context.Context, tx *sql.Tx) error) error {
	return platform.InTx(ctx, s.write, f)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *store) listProducts(ctx context.Context) ([]Product, error) {
	rows, err := s.read.QueryContext(ctx, "SELECT id, name, price_cents, stock FROM products ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	products := []Product{}
	for rows.Next() {
		var p Product
		if err := rows.Scan(&p.ID, &p.Name, &p.PriceCents, &p.Stock); err != nil {
			return nil, err
		}
		products = append(products, p)
	}
	return products, rows.Err()
}

// product returns the product with id, or sql.ErrNoRows.
func product(ctx context.Context, q querier, id string) (Product, error) {
	p := Product{ID: id}
	err := q.QueryRowContext(ctx, "SELECT name, price_cents, stock FROM products WHERE id = ?", id).
		Scan(&p.Name, &p.PriceCents, &p.Stock)
	return p, err
}

// reservationRow is a reservation as stored, with its expiry in unix milliseconds for comparisons.
type reservationRow struct {
	Reservation
	expiresAtMs int64
}

// reservationBy loads the reservation whose column (id or order_id) equals value, or sql.ErrNoRows. Items
// come back in the order they were reserved, so a repeated Reserve answers with the same document.
func reservationBy(ctx context.Context, q querier, column, value string) (reservationRow, error) {
	var r reservationRow
	query := "SELECT id, order_id, status, total_cents, expires_at FROM reservations WHERE " + column + " = ?"
	if err := q.QueryRowContext(ctx, query, value).
		Scan(&r.ID, &r.OrderID, &r.Status, &r.TotalCents, &r.expiresAtMs); err != nil {
		return r, err
	}
	r.ExpiresAt = time.UnixMilli(r.expiresAtMs).UTC()
	rows, err := q.QueryContext(ctx,
		"SELECT product_id, quantity, unit_price_cents FROM reservation_items WHERE reservation_id = ? ORDER BY rowid", r.ID)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	r.Items = []ReservedItem{}
	for rows.Next() {
		var it ReservedItem
		if err := rows.Scan(&it.ProductID, &it.Quantity, &it.UnitPriceCents); err != nil {
			return r, err
		}
		r.Items = append(r.Items, it)
	}
	return r, rows.Err()
}

func insertReservation(ctx context.Context, tx *sql.Tx, r Reservation, now time.Time) error {
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO reservations (id, order_id, status, total_cents, expires_at, created_at, updated_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.OrderID, r.Status, r.TotalCents, r.ExpiresAt.UnixMilli(), now.UnixMilli(), now.UnixMilli()); err != nil {
		return err
	}
	for _, it := range r.Items {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO reservation_items (reservation_id, product_id, quantity, unit_price_cents) VALUES (?, ?, ?, ?)",
			r.ID, it.ProductID, it.Quantity, it.UnitPriceCents); err != nil {
			return err
		}
	}
	return nil
}

// takeStock decrements a product's stock by quantity if that much is available; it reports whether it did.
func takeStock(ctx context.Context, tx *sql.Tx, productID string, quantity int64) (bool, error) {
	res, err := tx.ExecContext(ctx, "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?",
		quantity, productID, quantity)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// setStatus moves a held reservation to status; when the new status gives up the hold (released,
// expired), its items go back into stock in the same transaction.
func setStatus(ctx context.Context, tx *sql.Tx, id string, status ReservationStatus, now time.Time) error {
	if status == ReservationReleased || status == ReservationExpired {
		if _, err := tx.ExecContext(ctx,
			`UPDATE products SET stock = stock + ri.quantity
			 FROM reservation_items AS ri
			 WHERE ri.product_id = products.id AND ri.reservation_id = ?`, id); err != nil {
			return err
		}
	}
	res, err := tx.ExecContext(ctx, "UPDATE reservations SET status = ?, updated_at = ? WHERE id = ? AND status = 'held'",
		status, now.UnixMilli(), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("reservation %s: status change to %s touched %d rows (%v)", id, status, n, err)
	}
	return nil
}

// expireDue marks every held reservation whose expiry is at or before now as expired and returns its
// stock, in one transaction; it returns how many expired.
func (s *store) expireDue(ctx context.Context, now time.Time) (int64, error) {
	var expired int64
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		cutoff := now.UnixMilli()
		// Announce each expiry before the bulk update below turns the rows expired.
		if err := recordExpiries(ctx, tx, cutoff, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE products SET stock = stock + due.quantity
			 FROM (SELECT ri.product_id, SUM(ri.quantity) AS quantity
			       FROM reservation_items AS ri JOIN reservations AS r ON r.id = ri.reservation_id
			       WHERE r.status = 'held' AND r.expires_at <= ?
			       GROUP BY ri.product_id) AS due
			 WHERE due.product_id = products.id`, cutoff); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			"UPDATE reservations SET status = 'expired', updated_at = ? WHERE status = 'held' AND expires_at <= ?",
			cutoff, cutoff)
		if err != nil {
			return err
		}
		expired, err = res.RowsAffected()
		return err
	})
	return expired, err
}

// recordExpiries writes a StockReleased (expired) event for every held reservation due at cutoff.
func recordExpiries(ctx context.Context, tx *sql.Tx, cutoff int64, now time.Time) error {
	rows, err := tx.QueryContext(ctx, "SELECT id FROM reservations WHERE status = 'held' AND expires_at <= ?", cutoff)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, id := range ids {
		r, err := reservationBy(ctx, tx, "id", id)
		if err != nil {
			return err
		}
		if err := recordReleased(ctx, tx, r.Reservation, events.ReleaseExpired, now); err != nil {
			return err
		}
	}
	return nil
}

// recordReserved writes the StockReserved event of r into the outbox through tx.
func recordReserved(ctx context.Context, tx *sql.Tx, r Reservation, now time.Time) error {
	_, err := events.Record(ctx, tx, events.StockReserved{ReservationID: r.ID, OrderID: r.OrderID, Items: eventItems(r),
		TotalCents: r.TotalCents, ExpiresAt: r.ExpiresAt}, now)
	return err
}

// recordReleased writes the StockReleased event of r (cause released or expired) through tx.
func recordReleased(ctx context.Context, tx *sql.Tx, r Reservation, cause string, now time.Time) error {
	_, err := events.Record(ctx, tx, events.StockReleased{ReservationID: r.ID, OrderID: r.OrderID, Items: eventItems(r),
		Cause: cause}, now)
	return err
}

func eventItems(r Reservation) []events.Item {
	items := make([]events.Item, len(r.Items))
	for i, it := range r.Items {
		items[i] = events.Item{ProductID: it.ProductID, Quantity: it.Quantity}
	}
	return items
}

// isNoRows reports whether err means the row does not exist.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
