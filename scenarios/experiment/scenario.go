// Package experiment runs a chaos scenario against the lab's stack and judges it: a scenario declares
// its steady-state hypothesis (thresholds checked before, during and after the fault, as Chaos Toolkit
// does), its load, its fault timeline, its policy configuration and its expectations ("TTR ≤ 5 s",
// "lost orders = 0"); it aborts early on a safety condition. Run measures it (package measure), scores it
// (weighted checks, as LitmusChaos computes a resilience score) and writes its report: JSON, Markdown
// and an HTML page with plots.
package experiment

import (
	"context"
	"fmt"
	"time"

	"github.com/resilience-lab/lab/scenarios/fault"
)

// Lab is the running shop a scenario acts on (lab.Stack).
type Lab interface {
	// Reconfigure makes every service run with exactly the extra environment env gives it.
	Reconfigure(ctx context.Context, env map[string]map[string]string) error
	// Reset undoes every fault and waits until the services are ready.
	Reset(ctx context.Context) error
	WaitReady(ctx context.Context, timeout time.Duration) error
	GatewayURL() string
	ObserveURL(service, path string) string
	FaultTarget() fault.Target
}

// Stream is one open-model load stream: Rate requests per second of the given kinds of the shop mix
// (measure.KindBrowse, …), weighted. Each stream is measured on its own, so a scenario can tell the
// traffic a fault hits from the traffic a bulkhead should keep healthy.
type Stream struct {
	Name  string
	Rate  float64
	Kinds map[string]int
}

// Thresholds are a steady-state hypothesis: a second is "steady" when its success rate is at least
// MinSuccess and its p99 at most MaxP99 (0: not checked).
type Thresholds struct {
	MinSuccess float64
	MaxP99     time.Duration
}

func (t Thresholds) String() string {
	s := fmt.Sprintf("success ≥ %.0f%%", t.MinSuccess*100)
	if t.MaxP99 > 0 {
		s += fmt.Sprintf(", p99 ≤ %s", t.MaxP99)
	}
	return s
}

// Watch names a circuit breaker whose state the report bands and whose opening is the detection.
type Watch struct {
	Service    string // the caller, holding the breaker
	Downstream string // the link name, as in the metrics' downstream label
	// FailuresToTrip and the arrival rate on the link give the detection bound:
	// FailuresToTrip ÷ LinkRate seconds after the fault.
	FailuresToTrip int
	LinkRate       float64
	// SleepWindow and ProbeInterval give the recovery bound: SleepWindow + 2 × ProbeInterval.
	SleepWindow   time.Duration
	ProbeInterval time.Duration
}

// Amplification measures calls arriving at a callee per call its caller served: the route labels are
// the ServeMux patterns of the services' http_server_requests_total ("POST /payments"); a comma-separated
// list sums several (the http_fault toxic turns the requests it answers into "GET /healthz").
type Amplification struct {
	Caller, CallerRoute string
	Callee, CalleeRoute string
}

// Safety aborts a run early: when the success rate of the primary stream stays below MinSuccess for
// Seconds consecutive seconds (a run that has clearly failed need not be watched to the end).
type Safety struct {
	MinSuccess float64
	Seconds    int
}

// Expectation is one weighted check of a finished run. Check returns whether it holds and what was
// measured.
type Expectation struct {
	Name   string
	Weight float64
	Check  func(r *Report) (ok bool, got string)
}

// Scenario is one experiment.
type Scenario struct {
	// ID names the pair ("payments-latency"); Variant is "without" or "with" the policy it teaches.
	ID, Variant string
	Title       string
	// Teaches says, for the report, what the difference between the variants shows.
	Teaches string
	// Env is the policy configuration: extra environment per service. Services not named run with
	// their defaults. Policy describes it for the report (what differs from no policies at all).
	Env    map[string]map[string]string
	Policy string
	// Streams are the load; the first is the primary one the hypotheses and the safety watch.
	Streams  []Stream
	Duration time.Duration
	// ClientTimeout bounds each request of the load (default 3 s).
	ClientTimeout time.Duration
	Faults        []fault.Step
	// Steady is the hypothesis checked before the fault and, for recovery, after it; During, when set,
	// is checked over the fault window (a policy that should keep the shop steady through the fault).
	Steady Thresholds
	During *Thresholds
	// RecoverSeconds is how many consecutive steady seconds count as recovered (default 2).
	RecoverSeconds int
	Watch          []Watch
	Amplification  *Amplification
	// Accounting checks, after recovery, that no acknowledged order was lost, duplicated or stuck and
	// that stock and payments agree.
	Accounting bool
	Safety     *Safety
	Expect     []Expectation
}

// Name is ID/Variant.
func (s Scenario) Name() string { return s.ID + "/" + s.Variant }

func (s Scenario) withDefaults() Scenario {
	if s.ClientTimeout == 0 {
		s.ClientTimeout = 3 * time.Second
	}
	if s.RecoverSeconds == 0 {
		s.RecoverSeconds = 2
	}
	return s
}

// FaultWindow is when the scenario's faults are planned to be on: the earliest start and the latest
// end (the duration when a fault stays on).
func (s Scenario) FaultWindow() (from, to time.Duration) {
	for i, st := range s.Faults {
		end := st.To
		if end == 0 {
			end = s.Duration
		}
		if i == 0 || st.From < from {
			from = st.From
		}
		if end > to {
			to = end
		}
	}
	return from, to
}
