package measure

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/orders"
)

// EventAccounting is the events' share of the data-loss verdict: every order of the run reached the
// notifications consumer as exactly one OrderPlaced and exactly one terminal event that agrees with
// the order's final status, and no outbox still holds unsent events.
type EventAccounting struct {
	Orders    int `json:"orders"`
	Expected  int `json:"expected"`  // two per order: placed, and its terminal event
	Delivered int `json:"delivered"` // notifications of the run's orders
	// Missing: an expected event that never arrived; Duplicated: an event type delivered more than once
	// for one order (each with its own event id, so two events were written); Mismatched: a terminal
	// event other than the order's final status.
	Missing    int `json:"missing"`
	Duplicated int `json:"duplicated"`
	Mismatched int `json:"mismatched"`
	// Backlog is the outbox rows of catalog, payments and orders not yet acked by the broker when the
	// settle time ended; ConsumerLag the messages the notifications consumer had not yet acked (not
	// yet delivered, or delivered and waiting for their ack or its redelivery).
	Backlog       float64  `json:"backlog"`
	ConsumerLag   float64  `json:"consumer_lag"`
	SettleSeconds float64  `json:"settle_s"`
	Problems      []string `json:"problems,omitempty"`
}

// Broken counts everything that is wrong.
func (e EventAccounting) Broken() int { return e.Missing + e.Duplicated + e.Mismatched }

func (e *EventAccounting) problem(format string, args ...any) {
	if len(e.Problems) < 20 {
		e.Problems = append(e.Problems, fmt.Sprintf(format, args...))
	}
}

// terminalEvent is the event type a terminal order status is announced with.
var terminalEvent = map[orders.Status]string{
	orders.StatusConfirmed: events.TypeOrderConfirmed,
	orders.StatusRejected:  events.TypeOrderRejected,
	orders.StatusCancelled: events.TypeOrderCancelled,
}

// EventSources are how AccountEvents reads the consumer and the outboxes.
type EventSources struct {
	// Notifications returns the notifications of one customer.
	Notifications func(ctx context.Context, customer string) ([]notifications.Notification, error)
	// Backlog returns the unsent outbox rows summed over the producing services, and the consumer's
	// lag (pending plus ack-pending messages).
	Backlog func(ctx context.Context) (backlog, lag float64, err error)
}

// AccountEvents checks the events of the orders Account read last, waiting up to settle for the
// outboxes to drain and the consumer to catch up. Call it after Account.
func (s *Shop) AccountEvents(ctx context.Context, src EventSources, settle time.Duration) (EventAccounting, error) {
	var e EventAccounting
	s.mu.Lock()
	final := s.final
	s.mu.Unlock()
	if final == nil {
		return e, fmt.Errorf("events: no orders read yet (call Account first)")
	}
	begin := time.Now()
	for {
		got, err := s.countEvents(ctx, src, final)
		if err == nil {
			e = got
			if e.Broken() == 0 && e.Backlog == 0 {
				break
			}
		}
		if time.Since(begin) > settle {
			if err != nil {
				return e, err
			}
			break
		}
		select {
		case <-ctx.Done():
			return e, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	e.SettleSeconds = time.Since(begin).Seconds()
	return e, nil
}

func (s *Shop) countEvents(ctx context.Context, src EventSources, final map[string][]orders.Order) (EventAccounting, error) {
	var e EventAccounting
	backlog, lag, err := src.Backlog(ctx)
	if err != nil {
		return e, fmt.Errorf("events: outbox backlog: %w", err)
	}
	e.Backlog, e.ConsumerLag = backlog, lag
	customers := make([]string, 0, len(final))
	for c := range final {
		customers = append(customers, c)
	}
	sort.Strings(customers)
	for _, c := range customers {
		list, err := src.Notifications(ctx, c)
		if err != nil {
			return e, fmt.Errorf("events: notifications of %s: %w", c, err)
		}
		seen := map[string]map[string]int{} // order id → event type → count
		for _, n := range list {
			if seen[n.OrderID] == nil {
				seen[n.OrderID] = map[string]int{}
			}
			seen[n.OrderID][n.EventType]++
		}
		for _, o := range final[c] {
			e.Orders++
			e.Expected += 2
			got := seen[o.ID]
			want := terminalEvent[o.Status]
			for typ, n := range got {
				e.Delivered += n
				if n > 1 {
					e.Duplicated += n - 1
					e.problem("order %s: %s delivered %d times", o.ID, typ, n)
				}
				if typ != events.TypeOrderPlaced && typ != want {
					e.Mismatched++
					e.problem("order %s is %s but %s was announced", o.ID, o.Status, typ)
				}
			}
			if got[events.TypeOrderPlaced] == 0 {
				e.Missing++
				e.problem("order %s: no %s", o.ID, events.TypeOrderPlaced)
			}
			if want != "" && got[want] == 0 {
				e.Missing++
				e.problem("order %s (%s): no %s", o.ID, o.Status, want)
			}
		}
	}
	return e, nil
}
