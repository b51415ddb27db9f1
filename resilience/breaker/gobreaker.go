package breaker

import (
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/resilience-lab/lab/resilience/policy"
)

// gobreakerBackend adapts sony/gobreaker/v2: a rolling window of ten buckets over Window, a ratio trip
// rule, HalfOpenProbes as MaxRequests.
type gobreakerBackend struct {
	cb *gobreaker.CircuitBreaker[struct{}]
}

// What a call tells gobreaker: nil is a success, errCounted a failure, errExcluded neither.
var (
	errCounted  = errors.New("failure")
	errExcluded = errors.New("excluded")
)

func newGobreaker(cfg Config, realClock bool, transition func(from, to State)) *gobreakerBackend {
	timeout := cfg.SleepWindow
	if !realClock {
		// gobreaker reads the wall clock: with an injected clock its own open timer must not outlast the
		// Breaker's gate, which is what keeps the sleep window then.
		timeout = time.Nanosecond
	}
	minRequests, ratio := uint32(cfg.MinRequests), cfg.FailureRatio
	st := gobreaker.Settings{
		MaxRequests:  uint32(cfg.HalfOpenProbes),
		Interval:     cfg.Window,
		BucketPeriod: cfg.Window / 10,
		Timeout:      timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			done := c.TotalSuccesses + c.TotalFailures
			return done >= minRequests && float64(c.TotalFailures) >= ratio*float64(done)
		},
		IsSuccessful:  func(err error) bool { return err == nil },
		IsExcluded:    func(err error) bool { return err == errExcluded },
		OnStateChange: func(_ string, from, to gobreaker.State) { transition(fromGobreaker(from), fromGobreaker(to)) },
	}
	return &gobreakerBackend{cb: gobreaker.NewCircuitBreaker[struct{}](st)}
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// execute runs the call if gobreaker admits it and reports whether it did.
func (g *gobreakerBackend) execute(run func() policy.Outcome) bool {
	_, err := g.cb.Execute(func() (struct{}, error) {
		switch run() {
		case policy.Success, policy.Business:
			return struct{}{}, nil
		case policy.Failure:
			return struct{}{}, errCounted
		}
		return struct{}{}, errExcluded
	})
	return err != gobreaker.ErrOpenState && err != gobreaker.ErrTooManyRequests
}

// refresh lets gobreaker apply a due open → half-open move (its State does).
func (g *gobreakerBackend) refresh() { g.cb.State() }
