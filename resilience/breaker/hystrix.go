package breaker

import (
	"sync"

	"github.com/afex/hystrix-go/hystrix"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// hystrixBackend adapts afex/hystrix-go's circuit (not its Do, whose timeout and concurrency pool are
// the timeout and bulkhead policies' job here): hystrix decides when to trip, from its own rolling 10s
// window of reported successes and failures; this adapter runs the half-open phase, which hystrix-go
// only offers as "one test call per sleep window, on the wall clock".
//
// Isolation and its limits: hystrix-go keeps every circuit and its settings in process-wide registries
// keyed by command name, so each breaker gets a unique name (link + random suffix) and never shares
// state with another. hystrix-go cannot forget one command: hystrix.Flush clears every command of the
// process (and still leaves their metric goroutines running), so a breaker's circuit, settings entry and
// metrics goroutine live as long as the process. The lab builds a fixed set of breakers at start, so
// that is bounded. hystrix-go also counts asynchronously (a goroutine drains reported events), so a trip
// is seen a moment after the failure that caused it.
type hystrixBackend struct {
	name            string
	circuit         *hystrix.CircuitBreaker
	clock           clock.Clock
	probes          int
	sleepWindowOver func() bool
	transition      func(from, to State)

	mu       sync.Mutex
	state    State
	gen      uint64 // bumped on every move, so results of calls admitted before it are dropped
	inProbes int
}

var (
	hystrixSuccess = []string{"success"}
	hystrixFailure = []string{"failure"}
)

func newHystrix(cfg Config, o policy.Options, sleepWindowOver func() bool, transition func(from, to State)) *hystrixBackend {
	name := "lab:" + o.Service + "-" + o.Downstream + ":" + platform.NewID()[:16]
	hystrix.ConfigureCommand(name, hystrix.CommandConfig{
		RequestVolumeThreshold: cfg.MinRequests,
		ErrorPercentThreshold:  int(cfg.FailureRatio*100 + 0.5),
		SleepWindow:            int(cfg.SleepWindow.Milliseconds()),
	})
	circuit, _, _ := hystrix.GetCircuit(name) // never fails: it creates the circuit on first use
	return &hystrixBackend{
		name: name, circuit: circuit, clock: o.Clock, probes: cfg.HalfOpenProbes,
		sleepWindowOver: sleepWindowOver, transition: transition,
	}
}

func (h *hystrixBackend) moveLocked(to State) {
	from := h.state
	h.state, h.inProbes = to, 0
	h.gen++
	h.transition(from, to)
}

func (h *hystrixBackend) execute(run func() policy.Outcome) bool {
	h.mu.Lock()
	switch h.state {
	case Closed:
		gen := h.gen
		h.mu.Unlock()
		if !h.circuit.AllowRequest() {
			h.mu.Lock()
			if h.gen == gen && h.state == Closed {
				h.moveLocked(Open) // hystrix tripped on its counts
			}
			h.mu.Unlock()
			return false
		}
		h.finish(gen, run)
		return true
	case Open:
		if !h.sleepWindowOver() {
			h.mu.Unlock()
			return false
		}
		h.moveLocked(HalfOpen)
	}
	if h.inProbes >= h.probes {
		h.mu.Unlock()
		return false
	}
	h.inProbes++
	gen := h.gen
	h.mu.Unlock()
	h.finish(gen, run)
	return true
}

// finish runs the call and reports its outcome to hystrix, unless the breaker moved meanwhile.
func (h *hystrixBackend) finish(gen uint64, run func() policy.Outcome) {
	start := h.clock.Now()
	outcome := run()
	took := h.clock.Now().Sub(start)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen != gen {
		return
	}
	halfOpen := h.state == HalfOpen
	if halfOpen {
		h.inProbes--
	}
	switch outcome {
	case policy.Success, policy.Business:
		// A success while hystrix's circuit is open closes it (and resets its counts).
		_ = h.circuit.ReportEvent(hystrixSuccess, start, took)
		if halfOpen {
			h.moveLocked(Closed)
		}
	case policy.Failure:
		_ = h.circuit.ReportEvent(hystrixFailure, start, took)
		if halfOpen {
			h.moveLocked(Open)
		}
	}
}

// checkTrip asks hystrix whether its counts trip the circuit now.
func (h *hystrixBackend) checkTrip() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == Closed && h.circuit.IsOpen() {
		h.moveLocked(Open)
	}
}

// startHalfOpen moves an open breaker whose sleep window is over to half-open.
func (h *hystrixBackend) startHalfOpen() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == Open && h.sleepWindowOver() {
		h.moveLocked(HalfOpen)
	}
}
