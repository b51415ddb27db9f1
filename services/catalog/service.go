package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/platform"
)

// Service is the catalog's domain: products and the stock reservations orders hold on them.
// Business outcomes (unknown ids, no stock, wrong state) are 4xx *platform.Error values.
type Service interface {
	ListProducts(ctx context.Context) ([]Product, error)
	GetProduct(ctx context.Context, id string) (Product, error)
	// Reserve holds stock for an order, all items or none. It is idempotent per OrderID: a repeat returns
	// the existing reservation, whatever its state, with created false.
	Reserve(ctx context.Context, req ReserveRequest) (r Reservation, created bool, err error)
	GetReservation(ctx context.Context, id string) (Reservation, error)
	// Commit turns a held reservation into a sale; committing a committed one is a no-op.
	Commit(ctx context.Context, id string) (Reservation, error)
	// Release gives a held reservation's stock back; releasing a released or expired one is a no-op.
	Release(ctx context.Context, id string) (Reservation, error)
	// ExpireReservations expires every held reservation past its expiry, returns its stock, and reports
	// how many expired. The sweeper calls it periodically.
	ExpireReservations(ctx context.Context) (int64, error)
}

// Limits on a reservation request, so one request cannot ask for absurd amounts of work or stock.
const (
	MaxQuantity  = 10000
	MaxItemLines = 100
	maxIDLength  = 128
)

// Reservation outcomes counted by catalog_reservations_total.
const (
	outcomeHeld       = "held"
	outcomeOutOfStock = "out_of_stock"
	outcomeCommitted  = "committed"
	outcomeReleased   = "released"
	outcomeExpired    = "expired"
)

// newReservationsCounter registers catalog_reservations_total. Outcomes are counted where the state
// changes, inside the service, because only there can a repeat (idempotent no-op) be told from a change.
func newReservationsCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "catalog_reservations_total",
		Help: "Reservation state changes by outcome: held, out_of_stock, committed, released, expired.",
	}, []string{"outcome"})
	reg.MustRegister(c)
	for _, o := range []string{outcomeHeld, outcomeOutOfStock, outcomeCommitted, outcomeReleased, outcomeExpired} {
		c.WithLabelValues(o) // export every outcome from the start, at zero
	}
	return c
}

type service struct {
	store        *store
	ttl          time.Duration
	now          func() time.Time
	reservations *prometheus.CounterVec
}

func newService(st *store, ttl time.Duration, now func() time.Time, reservations *prometheus.CounterVec) *service {
	if now == nil {
		now = time.Now
	}
	return &service{store: st, ttl: ttl, now: now, reservations: reservations}
}

func (s *service) ListProducts(ctx context.Context) ([]Product, error) {
	return s.store.listProducts(ctx)
}

func (s *service) GetProduct(ctx context.Context, id string) (Product, error) {
	if err := validateID("product id", id); err != nil {
		return Product{}, err
	}
	p, err := product(ctx, s.store.read, id)
	if isNoRows(err) {
		return Product{}, platform.NotFound("product %q not found", id)
	}
	return p, err
}

func (s *service) Reserve(ctx context.Context, req ReserveRequest) (Reservation, bool, error) {
	if err := validateReserveRequest(req); err != nil {
		return Reservation{}, false, err
	}
	var (
		res     Reservation
		created bool
	)
	err := s.store.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		existing, err := reservationBy(ctx, tx, "order_id", req.OrderID)
		if err == nil {
			res = existing.Reservation
			return nil
		}
		if !isNoRows(err) {
			return err
		}
		// Look every product up before checking stock, so an unknown product is reported as such even
		// when an earlier line is out of stock.
		products := make([]Product, len(req.Items))
		for i, it := range req.Items {
			p, err := product(ctx, tx, it.ProductID)
			if isNoRows(err) {
				return platform.NotFound("product %q not found", it.ProductID)
			}
			if err != nil {
				return err
			}
			products[i] = p
		}
		now := s.now().UTC()
		res = Reservation{
			ID:        platform.NewID(),
			OrderID:   req.OrderID,
			Status:    ReservationHeld,
			Items:     make([]ReservedItem, len(req.Items)),
			ExpiresAt: now.Add(s.ttl).Truncate(time.Millisecond),
		}
		for i, it := range req.Items {
			p := products[i]
			ok, err := takeStock(ctx, tx, p.ID, it.Quantity)
			if err != nil {
				return err
			}
			if !ok {
				return platform.Conflict("out_of_stock", "product %q has %d in stock, %d requested", p.ID, p.Stock, it.Quantity)
			}
			res.Items[i] = ReservedItem{ProductID: p.ID, Quantity: it.Quantity, UnitPriceCents: p.PriceCents}
			res.TotalCents += p.PriceCents * it.Quantity
		}
		if err := insertReservation(ctx, tx, res, now); err != nil {
			return err
		}
		if err := recordReserved(ctx, tx, res, now); err != nil {
			return err
		}
		created = true
		return nil
	})
	if e, ok := platform.AsError(err); ok && e.Code == "out_of_stock" {
		s.reservations.WithLabelValues(outcomeOutOfStock).Inc()
	}
	if err != nil {
		return Reservation{}, false, err
	}
	if created {
		s.reservations.WithLabelValues(outcomeHeld).Inc()
	}
	return res, created, nil
}

func (s *service) GetReservation(ctx context.Context, id string) (Reservation, error) {
	if err := validateID("reservation id", id); err != nil {
		return Reservation{}, err
	}
	r, err := reservationBy(ctx, s.store.read, "id", id)
	if isNoRows(err) {
		return Reservation{}, platform.NotFound("reservation %q not found", id)
	}
	return r.Reservation, err
}

func (s *service) Commit(ctx context.Context, id string) (Reservation, error) {
	if err := validateID("reservation id", id); err != nil {
		return Reservation{}, err
	}
	var (
		res            Reservation
		expiredNow     bool
		committedNow   bool
		notHeldMessage string
	)
	err := s.store.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := reservationBy(ctx, tx, "id", id)
		if isNoRows(err) {
			return platform.NotFound("reservation %q not found", id)
		}
		if err != nil {
			return err
		}
		now := s.now().UTC()
		switch {
		case r.Status == ReservationCommitted:
		case r.Status != ReservationHeld:
			notHeldMessage = fmt.Sprintf("reservation %s is %s and can no longer be committed", id, r.Status)
		case now.UnixMilli() >= r.expiresAtMs:
			// Past its expiry but not yet swept: expire it here, so a late commit never sells stock the
			// sweeper is about to give back. The change is kept; the caller gets a conflict.
			if err := setStatus(ctx, tx, id, ReservationExpired, now); err != nil {
				return err
			}
			if err := recordReleased(ctx, tx, r.Reservation, events.ReleaseExpired, now); err != nil {
				return err
			}
			r.Status, expiredNow = ReservationExpired, true
			notHeldMessage = fmt.Sprintf("reservation %s expired at %s", id, r.ExpiresAt.Format(time.RFC3339))
		default:
			if err := setStatus(ctx, tx, id, ReservationCommitted, now); err != nil {
				return err
			}
			r.Status, committedNow = ReservationCommitted, true
		}
		res = r.Reservation
		return nil
	})
	if err != nil {
		return Reservation{}, err
	}
	if expiredNow {
		s.reservations.WithLabelValues(outcomeExpired).Inc()
	}
	if committedNow {
		s.reservations.WithLabelValues(outcomeCommitted).Inc()
	}
	if notHeldMessage != "" {
		return Reservation{}, platform.Conflict("reservation_not_held", "%s", notHeldMessage)
	}
	return res, nil
}

func (s *service) Release(ctx context.Context, id string) (Reservation, error) {
	if err := validateID("reservation id", id); err != nil {
		return Reservation{}, err
	}
	var (
		res         Reservation
		releasedNow bool
	)
	err := s.store.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := reservationBy(ctx, tx, "id", id)
		if isNoRows(err) {
			return platform.NotFound("reservation %q not found", id)
		}
		if err != nil {
			return err
		}
		switch r.Status {
		case ReservationCommitted:
			return platform.Conflict("reservation_committed", "reservation %s is committed and cannot be released", id)
		case ReservationHeld:
			now := s.now().UTC()
			if err := setStatus(ctx, tx, id, ReservationReleased, now); err != nil {
				return err
			}
			if err := recordReleased(ctx, tx, r.Reservation, events.ReleaseReleased, now); err != nil {
				return err
			}
			r.Status, releasedNow = ReservationReleased, true
		}
		// Released or expired already: the stock is back, which is what the caller asked for.
		res = r.Reservation
		return nil
	})
	if err != nil {
		return Reservation{}, err
	}
	if releasedNow {
		s.reservations.WithLabelValues(outcomeReleased).Inc()
	}
	return res, nil
}

func (s *service) ExpireReservations(ctx context.Context) (int64, error) {
	n, err := s.store.expireDue(ctx, s.now().UTC())
	if err != nil {
		return 0, err
	}
	s.reservations.WithLabelValues(outcomeExpired).Add(float64(n))
	return n, nil
}

// validateReserveRequest checks a reservation request before any stock is touched.
func validateReserveRequest(req ReserveRequest) error {
	if err := validateID("order_id", req.OrderID); err != nil {
		return err
	}
	if len(req.Items) == 0 {
		return invalid("items must hold at least one item")
	}
	if len(req.Items) > MaxItemLines {
		return invalid("items holds %d lines; at most %d are allowed", len(req.Items), MaxItemLines)
	}
	seen := make(map[string]bool, len(req.Items))
	for i, it := range req.Items {
		if err := validateID(fmt.Sprintf("items[%d].product_id", i), it.ProductID); err != nil {
			return err
		}
		if it.Quantity <= 0 || it.Quantity > MaxQuantity {
			return invalid("items[%d].quantity is %d; it must be between 1 and %d", i, it.Quantity, MaxQuantity)
		}
		if seen[it.ProductID] {
			return invalid("items[%d]: product %q appears more than once; put its whole quantity on one line", i, it.ProductID)
		}
		seen[it.ProductID] = true
	}
	return nil
}

func validateID(field, id string) error {
	if id == "" {
		return invalid("%s is required", field)
	}
	if len(id) > maxIDLength {
		return invalid("%s is %d bytes long; at most %d are allowed", field, len(id), maxIDLength)
	}
	return nil
}

func invalid(format string, args ...any) *platform.Error {
	return platform.BadRequest("invalid_argument", format, args...)
}
