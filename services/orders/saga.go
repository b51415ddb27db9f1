package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// Catalog is what the saga needs from the catalog service; its typed client satisfies it.
type Catalog interface {
	Reserve(ctx context.Context, req catalog.ReserveRequest) (catalog.Reservation, error)
	Commit(ctx context.Context, reservationID string) (catalog.Reservation, error)
	Release(ctx context.Context, reservationID string) (catalog.Reservation, error)
}

// Payments is what the saga needs from the payments service; its typed client satisfies it.
type Payments interface {
	Charge(ctx context.Context, req payments.ChargeRequest) (payments.Payment, error)
	Refund(ctx context.Context, paymentID string) (payments.Payment, error)
	ListByOrder(ctx context.Context, orderID string) ([]payments.Payment, error)
}

// The order saga
//
// An order moves through pending → reserved → charged → confirmed. Each step is one call to a
// dependency followed by one transaction that stores its result (status and ids) before the next call,
// so after a crash the stored status says exactly which call comes next. Every call is idempotent, so
// re-sending it after a crash, or when its answer was lost, is safe:
//   - reserve: catalog Reserve with order_id = the order's id (catalog keeps one reservation per order);
//     the reservation's id and total_cents are stored with status reserved.
//   - charge: payments Charge with Idempotency-Key "order:"+id and amount = the reserved total; the
//     payment id is stored with status charged.
//   - commit: catalog Commit of the reservation; status confirmed.
//
// Every answer is one of three kinds, told apart with platform.IsBusiness:
//   - success: the next step.
//   - business outcome (a 4xx, or a 201 declined payment): the dependency is healthy and said no, so
//     nothing happened on its side. Out of stock or an unknown product → rejected (nothing to undo); a
//     declined or refused charge → release the reservation → rejected; a commit refused because the
//     reservation expired → release, refund → cancelled.
//   - technical failure (transport error, 5xx, timeout): the call may or may not have taken effect. The
//     order is stored as compensating with the status it will end in (cancelled), its reason, and what is
//     known about the charge, and compensation undoes whatever may have happened.
//
// Compensation, in this order, each call idempotent:
//  1. Stock. If the reservation id is unknown (reserve failed), Reserve is re-sent: it returns the
//     reservation the lost call made, or creates one, either way fencing any late duplicate of the
//     first call (catalog has one reservation per order), or answers 4xx: nothing is held. The
//     reservation is then released. A release refused with reservation_committed proves a commit whose
//     answer was lost went through; commits follow a captured payment, so the order is complete:
//     it ends confirmed and nothing is refunded.
//  2. Money. If a charge's outcome is unknown, Charge is re-sent with the same key and body: payments
//     answers with the payment the lost call made, or makes it, so no late duplicate can capture money
//     after we have looked. Then every captured payment ListByOrder finds for the order is refunded.
//  3. The order ends rejected or cancelled with its reason.
//
// pending_payment (Config.PendingPayment, on by default): a charge that fails technically does not
// compensate at once. The order is stored as pending_payment, its reservation held and its charge's
// outcome unknown, and the request answers with that status. The resumer re-sends the same idempotent
// charge with back-off (1s, doubling, capped): captured → charged → commit → confirmed; declined or
// refused → compensation → rejected. When payments answers any charge again, every waiting order is made
// due at once. An order waits only while its reservation's hold (catalog's expires_at, kept as
// hold_until) outlasts one more charge and commit (SagaTimeout); then it is compensated as a failed
// charge is, and ends cancelled with reason payment_unavailable. See docs/patterns/outbox.md.
//
// Forward steps run under the caller's context, so its deadline reaches catalog and payments; a step
// cut short by it is a technical failure. Compensation runs detached from the caller's cancellation and
// deadline (bounded by Config.SagaTimeout), so a caller who gives up does not leave stock held. If a
// dependency cannot be reached the order stays compensating. Nothing ends rejected or cancelled while
// stock may be held or money captured for it.
//
// The resumer drives every open order no request is driving (after a crash, or while compensation
// waits for a dependency) from its stored status: pending, reserved and charged go on forward,
// compensating compensates. The service shutting down mid-call is not a dependency failure: the order
// is left as stored, for the next start. Within the process a claim set makes sure one goroutine drives
// an order at a time; stored versions make a concurrent update of the same order fail rather than
// overwrite it.

// saga drives orders through the steps above.
type saga struct {
	store    *store
	catalog  Catalog
	payments Payments
	metrics  *metrics
	logger   *slog.Logger
	timeout  time.Duration
	// afterStep, when set, is called after each persisted step; an error aborts the drive as if the
	// process had died there (tests simulate crashes with it).
	afterStep func(Order) error
	// stop ends when the service closes: in-flight calls are cut short and their orders left for the
	// next start instead of being compensated.
	stop context.Context
	// pending is the pending_payment policy; its zero value is off (a failed charge compensates).
	pending pendingPayment

	mu      sync.Mutex
	idle    *sync.Cond // signalled when driving shrinks
	driving map[string]struct{}
	closed  bool
}

// errStopping is returned when the service closes while it drives an order.
var errStopping = platform.Errorf(http.StatusServiceUnavailable, "shutting_down", "the service is shutting down; the order is resumed on restart")

// errCompensationPending means compensation could not complete now; the order stays compensating.
var errCompensationPending = errors.New("orders: compensation pending")

func newSaga(st *store, cat Catalog, pay Payments, m *metrics, logger *slog.Logger, timeout time.Duration,
	afterStep func(Order) error, stop context.Context) *saga {
	s := &saga{store: st, catalog: cat, payments: pay, metrics: m, logger: logger, timeout: timeout,
		afterStep: afterStep, stop: stop, driving: map[string]struct{}{}}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// claim marks id as driven by the caller; false when another goroutine drives it or the saga closed.
func (s *saga) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.driving[id]; busy || s.closed {
		return false
	}
	s.driving[id] = struct{}{}
	return true
}

func (s *saga) unclaim(id string) {
	s.mu.Lock()
	delete(s.driving, id)
	s.mu.Unlock()
	s.idle.Broadcast()
}

// close refuses new drives and waits for the running ones, which stop soon once s.stop has ended.
func (s *saga) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for len(s.driving) > 0 {
		s.idle.Wait()
	}
}

// run drives order id as far as it goes now, unless another goroutine drives it or due (when given)
// says it is not yet due. It returns the order as stored afterwards.
func (s *saga) run(ctx context.Context, id string, due func(record) bool) (record, error) {
	if !s.claim(id) {
		return s.store.get(ctx, id)
	}
	defer s.unclaim(id)
	r, err := s.store.get(ctx, id)
	if err != nil || r.Status.Terminal() || (due != nil && !due(r)) {
		return r, err
	}
	if platform.RequestID(ctx) == "" && r.CorrelationID != "" {
		// The resumer's calls carry the placing request's id, so catalog and payments log and publish
		// under it too.
		ctx = platform.WithRequestID(ctx, r.CorrelationID)
	}
	err = s.drive(ctx, &r)
	return r, err
}

// drive moves r forward step by step until it is terminal, compensation has to wait, or an error
// (store failure, shutdown, simulated crash) aborts it. The caller must hold the claim of r.
func (s *saga) drive(ctx context.Context, r *record) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()
	for !r.Status.Terminal() {
		var err error
		switch r.Status {
		case StatusPending:
			err = s.reserve(ctx, r)
		case StatusReserved, StatusPendingPayment:
			err = s.charge(ctx, r)
			if errors.Is(err, errPaymentPending) {
				return nil
			}
		case StatusCharged:
			err = s.commit(ctx, r)
		case StatusCompensating:
			err = s.compensate(ctx, r)
			if errors.Is(err, errCompensationPending) {
				return nil
			}
		default:
			return fmt.Errorf("order %s: unknown status %q", r.ID, r.Status)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *saga) reserve(ctx context.Context, r *record) error {
	res, err := s.catalog.Reserve(ctx, reserveRequest(r))
	switch {
	case err == nil:
		s.metrics.step(stepReserve, outcomeOK)
		r.Status, r.ReservationID, r.TotalCents, r.HoldUntil = StatusReserved, res.ID, res.TotalCents, res.ExpiresAt
		return s.persist(ctx, r)
	case platform.IsBusiness(err):
		s.metrics.step(stepReserve, outcomeRejected)
		r.Status, r.Reason = StatusRejected, reserveRejection(err)
		return s.persist(ctx, r)
	default:
		s.metrics.step(stepReserve, outcomeError)
		return s.fail(ctx, r, err, StatusCancelled, "reserve_failed", chargeNone)
	}
}

// charge charges r's reserved total, first from reserved and again, from the resumer, while r waits in
// pending_payment.
func (s *saga) charge(ctx context.Context, r *record) error {
	step := stepCharge
	if r.Status == StatusPendingPayment {
		step = stepRetryCharge
		if !s.pending.canWait(s.store.now(), s.timeout, r) {
			return s.fail(ctx, r, errors.New("payments stayed unavailable until the reservation's hold ran out"),
				StatusCancelled, reasonPaymentUnavailable, chargeUnknown)
		}
	}
	p, err := s.payments.Charge(ctx, chargeRequest(r))
	if err == nil || platform.IsBusiness(err) {
		s.paymentsAnswered(ctx)
	}
	switch {
	case err == nil && p.Status == payments.StatusCaptured:
		s.metrics.step(step, outcomeOK)
		r.Status, r.PaymentID, r.ChargeState, r.Reason = StatusCharged, p.ID, chargeCaptured, ""
		return s.persist(ctx, r)
	case err == nil && p.Status == payments.StatusDeclined:
		s.metrics.step(step, outcomeDeclined)
		r.PaymentID = p.ID
		reason := p.DeclineReason
		if reason == "" {
			reason = "payment_declined"
		}
		return s.fail(ctx, r, nil, StatusRejected, reason, chargeNone)
	case err == nil:
		// A status a fresh charge never has: let compensation find out what is captured.
		s.metrics.step(step, outcomeError)
		return s.fail(ctx, r, fmt.Errorf("charge answered status %q", p.Status), StatusCancelled, "charge_failed", chargeUnknown)
	case platform.IsBusiness(err):
		s.metrics.step(step, outcomeRejected)
		return s.fail(ctx, r, err, StatusRejected, errorCode(err), chargeNone)
	default:
		s.metrics.step(step, outcomeError)
		return s.chargeFailed(ctx, r, err)
	}
}

func (s *saga) commit(ctx context.Context, r *record) error {
	_, err := s.catalog.Commit(ctx, r.ReservationID)
	switch {
	case err == nil:
		s.metrics.step(stepCommit, outcomeOK)
		r.Status, r.Reason = StatusConfirmed, ""
		return s.persist(ctx, r)
	case platform.IsBusiness(err):
		// reservation_not_held: it expired or was released; the stock is gone, the money goes back.
		s.metrics.step(stepCommit, outcomeRejected)
		return s.fail(ctx, r, err, StatusCancelled, errorCode(err), chargeCaptured)
	default:
		s.metrics.step(stepCommit, outcomeError)
		return s.fail(ctx, r, err, StatusCancelled, "commit_failed", chargeCaptured)
	}
}

// fail stores r as compensating, to end in outcome with reason once what may have happened is undone;
// the drive loop then compensates. A call cut short by our own shutdown is not a failure of the
// dependency: the order is left as it is and resumed on the next start.
func (s *saga) fail(ctx context.Context, r *record, cause error, outcome Status, reason string, charge chargeState) error {
	if s.stop.Err() != nil {
		return errStopping
	}
	if cause != nil {
		s.logger.WarnContext(ctx, "order step failed; compensating", "order_id", r.ID, "status", r.Status,
			"reason", reason, "err", cause)
	}
	r.Status, r.Outcome, r.Reason, r.ChargeState = StatusCompensating, outcome, reason, charge
	return s.persist(ctx, r)
}

// compensate undoes what may have happened for r (see the saga comment) and ends it in r.Outcome. It
// returns errCompensationPending when a dependency cannot be reached; r stays compensating.
func (s *saga) compensate(ctx context.Context, r *record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()

	if r.ReservationID == "" {
		res, err := s.catalog.Reserve(ctx, reserveRequest(r))
		switch {
		case err == nil:
			s.metrics.step(stepFindReserve, outcomeOK)
			r.ReservationID = res.ID
			if err := s.persist(ctx, r); err != nil {
				return err
			}
		case platform.IsBusiness(err):
			s.metrics.step(stepFindReserve, outcomeRejected) // refused: nothing is held for the order
		default:
			s.metrics.step(stepFindReserve, outcomeError)
			return s.postpone(ctx, r, "find the reservation", err)
		}
	}
	if r.ReservationID != "" {
		_, err := s.catalog.Release(ctx, r.ReservationID)
		switch {
		case err == nil:
			s.metrics.step(stepRelease, outcomeOK)
		case errorCode(err) == "reservation_committed":
			s.metrics.step(stepRelease, outcomeRejected)
			s.logger.WarnContext(ctx, "a commit whose answer was lost went through; confirming the order",
				"order_id", r.ID, "reason", r.Reason)
			r.Status, r.Outcome, r.Reason = StatusConfirmed, "", ""
			return s.persist(ctx, r)
		case platform.IsBusiness(err):
			s.metrics.step(stepRelease, outcomeRejected) // not found: nothing is held
		default:
			s.metrics.step(stepRelease, outcomeError)
			return s.postpone(ctx, r, "release the reservation", err)
		}
	}

	if r.ChargeState == chargeUnknown {
		p, err := s.payments.Charge(ctx, chargeRequest(r))
		switch {
		case err == nil:
			s.metrics.step(stepFindCharge, outcomeOK)
			r.PaymentID, r.ChargeState = p.ID, chargeCaptured
			if p.Status == payments.StatusDeclined {
				r.ChargeState = chargeNone
			}
		case platform.IsBusiness(err):
			s.metrics.step(stepFindCharge, outcomeRejected)
			r.ChargeState = chargeNone
		default:
			s.metrics.step(stepFindCharge, outcomeError)
			return s.postpone(ctx, r, "find the charge", err)
		}
		if err := s.persist(ctx, r); err != nil {
			return err
		}
	}
	if r.ChargeState == chargeCaptured {
		list, err := s.payments.ListByOrder(ctx, r.ID)
		if err != nil {
			s.metrics.step(stepListPayments, outcomeError)
			return s.postpone(ctx, r, "list the payments", err)
		}
		s.metrics.step(stepListPayments, outcomeOK)
		for _, p := range list {
			if p.Status != payments.StatusCaptured {
				continue
			}
			_, err := s.payments.Refund(ctx, p.ID)
			switch {
			case err == nil:
				s.metrics.step(stepRefund, outcomeOK)
			case platform.IsBusiness(err):
				// Only a declined payment is not refundable: nothing was captured after all.
				s.metrics.step(stepRefund, outcomeRejected)
				s.logger.WarnContext(ctx, "refund refused", "order_id", r.ID, "payment_id", p.ID, "err", err)
			default:
				s.metrics.step(stepRefund, outcomeError)
				return s.postpone(ctx, r, "refund the payment", err)
			}
		}
	}
	r.Status, r.ChargeState = r.Outcome, chargeNone
	return s.persist(ctx, r)
}

// postpone leaves r compensating for the resumer after a dependency could not be reached.
func (s *saga) postpone(ctx context.Context, r *record, what string, err error) error {
	if s.stop.Err() == nil {
		s.logger.WarnContext(ctx, "compensation postponed: could not "+what, "order_id", r.ID, "err", err)
	}
	return errCompensationPending
}

// persist stores r's new state. It is not cut short by the caller's cancellation: a result a dependency
// gave must not be lost.
func (s *saga) persist(ctx context.Context, r *record) error {
	if err := s.store.save(context.WithoutCancel(ctx), r); err != nil {
		return fmt.Errorf("order %s: store status %s: %w", r.ID, r.Status, err)
	}
	if r.Status.Terminal() {
		s.metrics.completed.WithLabelValues(string(r.Status)).Inc()
		s.logger.InfoContext(ctx, "order completed", "order_id", r.ID, "status", r.Status, "reason", r.Reason)
	}
	if s.afterStep != nil {
		return s.afterStep(r.Order)
	}
	return nil
}

func reserveRequest(r *record) catalog.ReserveRequest {
	items := make([]catalog.Item, len(r.Items))
	for i, it := range r.Items {
		items[i] = catalog.Item{ProductID: it.ProductID, Quantity: it.Quantity}
	}
	return catalog.ReserveRequest{OrderID: r.ID, Items: items}
}

// chargeRequest is the same for every attempt of an order, so payments treats repeats as one charge.
func chargeRequest(r *record) payments.ChargeRequest {
	return payments.ChargeRequest{OrderID: r.ID, AmountCents: r.TotalCents, CardNumber: r.CardNumber,
		IdempotencyKey: "order:" + r.ID}
}

// reserveRejection names why catalog refused to reserve: unknown_product, out_of_stock, or its code.
func reserveRejection(err error) string {
	if e, ok := platform.AsError(err); ok && e.Status == http.StatusNotFound {
		return "unknown_product"
	}
	return errorCode(err)
}

func errorCode(err error) string {
	if e, ok := platform.AsError(err); ok {
		return e.Code
	}
	return ""
}
