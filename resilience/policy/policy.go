// Package policy holds what every resilience policy shares: the rule that sorts a call's result into an
// outcome, the error type of a policy's own rejections, the event every policy emits, and the options
// (clock, metrics registerer, labels, event hook) a policy is built with.
package policy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/services/platform"
)

// Outcome is what a call's result means for a policy.
type Outcome int

const (
	// Success: the callee answered 2xx.
	Success Outcome = iota
	// Business: the callee answered a business outcome or rejected the input (4xx but 408/429). The
	// callee is healthy: never a breaker failure, never retried.
	Business
	// Failure: a transport error, a 5xx, 408, 429 or a timeout of this call. Counts against the callee.
	Failure
	// Cancelled: the caller's own context ended (cancelled, or its deadline passed) — the caller's choice,
	// not the callee's fault, so it counts as neither success nor failure.
	Cancelled
	// Rejected: a policy of ours refused the call before it reached the callee (breaker open, bulkhead
	// full, concurrency limit). Says nothing about the callee.
	Rejected
)

var outcomeNames = [...]string{"success", "business", "failure", "cancelled", "rejected"}

func (o Outcome) String() string { return outcomeNames[o] }

// Outcomes lists every Outcome, for metrics that pre-create one series per outcome.
var Outcomes = [...]Outcome{Success, Business, Failure, Cancelled, Rejected}

// Classify sorts the result of a call made with ctx. ctx must be the context the classifying policy
// received (the caller's), not the per-attempt context a timeout policy derived from it: that is how a
// per-attempt timeout (Failure) is told apart from the caller giving up (Cancelled).
func Classify(ctx context.Context, err error) Outcome {
	switch {
	case err == nil:
		return Success
	case isBusiness(err):
		return Business
	case IsRejection(err):
		return Rejected
	case ctx.Err() != nil:
		return Cancelled
	}
	return Failure
}

// Rejection is the error type of a policy's own refusals: a call it did not send.
type Rejection struct {
	Policy string // breaker, bulkhead, adaptive…
	Reason string
}

func (e *Rejection) Error() string { return e.Policy + ": " + e.Reason }

// IsRejection reports whether err is (or wraps) a *Rejection.
func IsRejection(err error) bool {
	_, ok := find[*Rejection](err)
	return ok
}

// isBusiness is platform.IsBusiness without its allocation: errors.As needs a heap target on every
// call, and Classify runs on every call of every policy. TestIsBusinessAgreesWithPlatform keeps the two
// in step.
func isBusiness(err error) bool {
	e, ok := find[*platform.Error](err)
	return ok && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// find walks err's chain (both Unwrap forms) for a T, as errors.As does, without reflection.
func find[T error](err error) (T, bool) {
	for err != nil {
		if t, ok := err.(T); ok {
			return t, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				if t, ok := find[T](inner); ok {
					return t, true
				}
			}
			var zero T
			return zero, false
		default:
			var zero T
			return zero, false
		}
	}
	var zero T
	return zero, false
}

// EventKind says what happened.
type EventKind string

const (
	EventStateChange EventKind = "state_change" // breaker state or adaptive limit moved
	EventRejection   EventKind = "rejection"    // a policy refused a call
	EventRetry       EventKind = "retry"        // a retry was scheduled
	EventBudget      EventKind = "budget_exhausted"
	EventTimeout     EventKind = "timeout"
	EventFallback    EventKind = "fallback"
	EventHedge       EventKind = "hedge"
)

// Event is one thing a policy did, timestamped by its clock, for the chaos lab's timelines.
type Event struct {
	Time       time.Time     `json:"time"`
	Service    string        `json:"service"`
	Downstream string        `json:"downstream"`
	Policy     string        `json:"policy"`
	Kind       EventKind     `json:"kind"`
	From       string        `json:"from,omitempty"`
	To         string        `json:"to,omitempty"`
	Attempt    int           `json:"attempt,omitempty"`
	Delay      time.Duration `json:"delay_ns,omitempty"`
	Err        string        `json:"error,omitempty"`
}

// Hook receives events. It runs on the caller's goroutine (a breaker's state change may be reported
// while the breaker holds a lock), so it must be quick and must not call back into the policy.
type Hook func(Event)

// Options are what every policy is built with besides its own settings. The zero value works: the
// real clock, metrics on no registry, no hook.
type Options struct {
	Clock      clock.Clock
	Registerer prometheus.Registerer // nil: metrics are kept but not exported
	Service    string                // metric label service: the caller
	Downstream string                // metric label downstream: the link or callee name
	Hook       Hook
}

// WithDefaults fills in the real clock.
func (o Options) WithDefaults() Options {
	o.Clock = clock.OrReal(o.Clock)
	return o
}

// Emit sends e to the hook, stamped with the clock's time and the labels; a nil hook costs nothing.
func (o Options) Emit(e Event) {
	if o.Hook == nil {
		return
	}
	e.Time = clock.OrReal(o.Clock).Now()
	e.Service, e.Downstream = o.Service, o.Downstream
	o.Hook(e)
}

// Labels are the constant labels of this policy's metrics.
func (o Options) Labels() prometheus.Labels {
	return prometheus.Labels{"service": o.Service, "downstream": o.Downstream}
}

// Register registers c on the options' registerer, or returns the collector already registered under
// the same name and labels, so two policies built for one link share their series.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
