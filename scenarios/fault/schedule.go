package fault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/resilience-lab/lab/loadtest"
)

// Step is one fault on a timeline: on at From, off at To after the start of the run. To == 0 keeps it on
// until the schedule is closed.
type Step struct {
	Fault    Fault
	From, To time.Duration
}

// Event is a fault going on or off, as it happened.
type Event struct {
	Fault string    `json:"fault"`
	On    bool      `json:"on"`
	At    time.Time `json:"at"`
	// Offset is At from the schedule's start, in seconds.
	Offset float64 `json:"offset_s"`
	Error  string  `json:"error,omitempty"`
}

// Schedule plays steps against a target and remembers what is on, so Close can always roll back.
type Schedule struct {
	target Target
	steps  []Step

	mu     sync.Mutex
	start  time.Time
	active map[int]bool
	events []Event
	now    func() time.Time
}

// NewSchedule checks the steps and returns their schedule.
func NewSchedule(target Target, steps ...Step) (*Schedule, error) {
	for i, s := range steps {
		if s.Fault == nil || s.From < 0 || (s.To != 0 && s.To <= s.From) {
			return nil, fmt.Errorf("fault: step %d: want a fault and 0 ≤ from < to (to 0: until the end)", i)
		}
	}
	return &Schedule{target: target, steps: steps, active: map[int]bool{}, now: time.Now}, nil
}

// Steps returns the steps of the schedule.
func (s *Schedule) Steps() []Step { return append([]Step(nil), s.steps...) }

// Start marks time zero: Offsets of events are measured from it (else from the first event).
func (s *Schedule) Start(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		s.start = at
	}
}

// Inject puts step i on now.
func (s *Schedule) Inject(ctx context.Context, i int) error {
	s.mu.Lock()
	if s.active[i] {
		s.mu.Unlock()
		return nil
	}
	s.active[i] = true // before Inject: a partly applied fault must be reverted too
	s.mu.Unlock()
	// The fault may bite any time during the call: it is on from when the call starts.
	at := s.now()
	err := s.steps[i].Fault.Inject(ctx, s.target)
	s.recordAt(i, true, at, err)
	return err
}

// Revert takes step i off now, if it is on.
func (s *Schedule) Revert(ctx context.Context, i int) error {
	s.mu.Lock()
	if !s.active[i] {
		s.mu.Unlock()
		return nil
	}
	delete(s.active, i)
	s.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	f := s.steps[i].Fault
	if d, ok := f.(Disabler); ok {
		if err := d.Disable(ctx, s.target); err == nil {
			s.record(i, false, nil)
			return f.Revert(ctx, s.target)
		}
		// Not disabled: the fault is off once Revert returns.
	}
	err := f.Revert(ctx, s.target)
	s.record(i, false, err)
	return err
}

// record notes step i going on or off now; a fault is off when Disable returns, else when Revert does
// (a container started again is back when it is ready).
func (s *Schedule) record(i int, on bool, err error) { s.recordAt(i, on, s.now(), err) }

func (s *Schedule) recordAt(i int, on bool, at time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		s.start = at
	}
	ev := Event{Fault: s.steps[i].Fault.Name(), On: on, At: at, Offset: at.Sub(s.start).Seconds()}
	if err != nil {
		ev.Error = err.Error()
	}
	s.events = append(s.events, ev)
}

// Actions returns the steps as load generator actions. Call Start just before the run, so event
// offsets line up with the run's seconds.
func (s *Schedule) Actions() []loadtest.Action {
	var out []loadtest.Action
	for i, st := range s.steps {
		out = append(out, loadtest.Action{Name: "on: " + st.Fault.Name(), At: st.From, Do: func(ctx context.Context) error {
			return s.Inject(ctx, i)
		}})
		if st.To > 0 {
			out = append(out, loadtest.Action{Name: "off: " + st.Fault.Name(), At: st.To, Do: func(ctx context.Context) error {
				return s.Revert(ctx, i)
			}})
		}
	}
	return out
}

// Events returns what happened so far, in order.
func (s *Schedule) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Window returns when the first fault went on and the last went off (zero times for what did not
// happen).
func (s *Schedule) Window() (on, off time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.On && (on.IsZero() || e.At.Before(on)) {
			on = e.At
		}
		if !e.On && e.At.After(off) {
			off = e.At
		}
	}
	return on, off
}

// Close reverts every fault still on, in reverse order. Call it in a defer: it runs on failure too.
func (s *Schedule) Close(ctx context.Context) error {
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		errs = append(errs, s.Revert(ctx, i))
	}
	return errors.Join(errs...)
}
