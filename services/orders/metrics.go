package orders

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Saga steps and their outcomes, the label values of orders_saga_steps_total.
const (
	stepReserve      = "reserve"
	stepCharge       = "charge"
	stepCommit       = "commit"
	stepRelease      = "release"
	stepRefund       = "refund"
	stepFindReserve  = "find_reservation" // compensation re-issues Reserve to learn a reservation's id
	stepFindCharge   = "find_charge"      // compensation re-issues Charge to pin an unknown outcome
	stepListPayments = "list_payments"
	stepRetryCharge  = "retry_charge" // the resumer re-sends the charge of a pending_payment order

	outcomeOK       = "ok"
	outcomeRejected = "rejected" // a business answer (4xx): the dependency is healthy and said no
	outcomeDeclined = "declined"
	outcomeError    = "error" // transport error, 5xx or timeout: the outcome is unknown
)

// metrics are the domain metrics of the orders service.
type metrics struct {
	placed    prometheus.Counter
	completed *prometheus.CounterVec
	steps     *prometheus.CounterVec
}

// newMetrics registers the domain metrics on reg; orders_in_flight counts open sagas in the store at
// scrape time, so it stays right across restarts.
func newMetrics(reg prometheus.Registerer, st *store) *metrics {
	m := &metrics{
		placed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_placed_total", Help: "Orders created (repeats of an idempotency key not counted).",
		}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_completed_total", Help: "Orders whose saga ended, by terminal status.",
		}, []string{"status"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_saga_steps_total", Help: "Saga calls to catalog and payments, by step and outcome.",
		}, []string{"step", "outcome"}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orders_in_flight", Help: "Orders whose saga has not ended (pending, reserved, charged, pending_payment, compensating).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := st.countOpen(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	pendingPayment := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orders_pending_payment", Help: "Orders waiting in pending_payment for payments to come back.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := st.countPendingPayment(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	for _, s := range []Status{StatusConfirmed, StatusRejected, StatusCancelled} {
		m.completed.WithLabelValues(string(s))
	}
	reg.MustRegister(m.placed, m.completed, m.steps, inFlight, pendingPayment)
	return m
}

func (m *metrics) step(step, outcome string) { m.steps.WithLabelValues(step, outcome).Inc() }
