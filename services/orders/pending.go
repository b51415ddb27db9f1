package orders

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// reasonPaymentUnavailable is the reason of an order waiting in pending_payment, and of one cancelled
// because payments stayed unavailable until its reservation's hold ran out.
const reasonPaymentUnavailable = "payment_unavailable"

// DefaultPendingPaymentRetryMax caps the back-off between charge retries of a pending_payment order.
const DefaultPendingPaymentRetryMax = 30 * time.Second

// errPaymentPending means the charge could not be made now; the order waits in pending_payment.
var errPaymentPending = errors.New("orders: payment pending")

// pendingPayment is the pending_payment policy of the saga (see the saga comment and
// docs/patterns/outbox.md): when payments cannot be reached, the order is accepted as pending_payment,
// keeps its reservation, and the resumer retries the charge with back-off until payments answers or the
// reservation's hold is about to run out.
type pendingPayment struct {
	enabled bool
	// retryMax caps the back-off (first retry after 1s, then doubling).
	retryMax time.Duration
	// down is set when a charge failed technically and cleared by the next answer from payments, which
	// then wakes every waiting order at once instead of letting each wait out its back-off.
	down atomic.Bool
}

// enablePendingPayment switches the policy on, with the back-off capped at retryMax (0: the default).
func (s *saga) enablePendingPayment(retryMax time.Duration) {
	if retryMax <= 0 {
		retryMax = DefaultPendingPaymentRetryMax
	}
	s.pending.enabled, s.pending.retryMax = true, retryMax
}

// canWait reports whether r's reservation is held long enough for one more charge and the commit after
// it (a saga timeout) to land before catalog expires it. An unknown hold (an order reserved before the
// hold was recorded) cannot wait.
func (p *pendingPayment) canWait(now time.Time, sagaTimeout time.Duration, r *record) bool {
	return !r.HoldUntil.IsZero() && now.Add(sagaTimeout).Before(r.HoldUntil)
}

// backoff is the wait before retry number attempts+1: 1s, 2s, 4s, … capped at retryMax.
func (p *pendingPayment) backoff(attempts int) time.Duration {
	d := time.Second << min(max(attempts-1, 0), 20)
	return min(d, p.retryMax)
}

// chargeFailed handles a charge that failed technically (transport error, 5xx, timeout): with the
// policy on and the hold long enough, r waits in pending_payment for the resumer; otherwise it is
// compensated as before (the charge's outcome is unknown, so compensation fences it).
func (s *saga) chargeFailed(ctx context.Context, r *record, cause error) error {
	if s.stop.Err() != nil {
		return errStopping
	}
	now := s.store.now()
	if !s.pending.enabled || !s.pending.canWait(now, s.timeout, r) {
		reason := "charge_failed"
		if r.Status == StatusPendingPayment {
			reason = reasonPaymentUnavailable
		}
		return s.fail(ctx, r, cause, StatusCancelled, reason, chargeUnknown)
	}
	s.pending.down.Store(true)
	r.PaymentAttempts++
	wait := s.pending.backoff(r.PaymentAttempts)
	r.Status, r.ChargeState, r.Reason, r.RetryAt = StatusPendingPayment, chargeUnknown, reasonPaymentUnavailable, now.Add(wait)
	s.logger.WarnContext(ctx, "payments unavailable; the order waits in pending_payment", "order_id", r.ID,
		"attempts", r.PaymentAttempts, "retry_in", wait.String(), "hold_until", r.HoldUntil, "err", cause)
	if err := s.persist(ctx, r); err != nil {
		return err
	}
	return errPaymentPending
}

// paymentsAnswered is called when payments answered a charge (captured, declined or refused): if an
// order went pending since the last answer, every pending_payment order is made due at once.
func (s *saga) paymentsAnswered(ctx context.Context) {
	if !s.pending.down.CompareAndSwap(true, false) {
		return
	}
	n, err := s.store.wakePendingPayments(context.WithoutCancel(ctx))
	switch {
	case err != nil:
		s.logger.WarnContext(ctx, "wake pending_payment orders", "err", err)
	case n > 0:
		s.logger.InfoContext(ctx, "payments answers again; pending_payment orders are due", "orders", n)
	}
}
