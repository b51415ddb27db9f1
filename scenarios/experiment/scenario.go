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
	"math"
	"time"

	"github.com/resilience-lab/lab/loadtest/plot"
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
	// ServiceToken mints the token caller would send to callee (reads of a service's API).
	ServiceToken(caller, callee string) (string, error)
	FaultTarget() fault.Target
}

// Stream is one open-model load stream: Rate requests per second of the given kinds of the shop mix
// (measure.KindBrowse, …), weighted. Each stream is measured on its own, so a scenario can tell the
// traffic a fault hits from the traffic a bulkhead should keep healthy.
type Stream struct {
	Name  string
	Rate  float64
	Kinds map[string]int
	// Deadline, when set, is the budget the client states on every request (X-Deadline-Ms), which the
	// shop propagates from hop to hop; the client itself still waits up to the scenario's ClientTimeout.
	Deadline time.Duration `json:",omitempty"`
	// Customers are the indexes of the shop's customers that send this stream (default: all of them).
	Customers []int `json:",omitempty"`
}

// CalleeLoad names requests a service serves (its routes, comma-separated ServeMux patterns), whose
// rate during the fault the report gives: the load a policy keeps off a callee.
type CalleeLoad struct {
	Service, Routes string
}

// Thresholds are a steady-state hypothesis: a second is "steady" when its success rate is at least
// MinSuccess, its p99 at most MaxP99 (0: not checked) and, when MinConfirmed is set, at least that
// share of the orders placed in it came back confirmed (a saga that compensated answers 201 too).
type Thresholds struct {
	MinSuccess   float64
	MaxP99       time.Duration
	MinConfirmed float64
}

func (t Thresholds) String() string {
	s := fmt.Sprintf("success ≥ %.0f%%", t.MinSuccess*100)
	if t.MaxP99 > 0 {
		s += fmt.Sprintf(", p99 ≤ %s", t.MaxP99)
	}
	if t.MinConfirmed > 0 {
		s += fmt.Sprintf(", orders confirmed ≥ %.0f%%", t.MinConfirmed*100)
	}
	return s
}

// Watch names a circuit breaker whose state the report bands and whose opening is the detection. Its
// settings and the traffic on its link give the bounds the lab checks.
type Watch struct {
	Service    string // the caller, holding the breaker
	Downstream string // the link name, as in the metrics' downstream label
	// The breaker's trip rule: at least MinRequests calls completed in its rolling Window and a failure
	// share of at least FailureRatio.
	FailureRatio float64
	MinRequests  int
	Window       time.Duration
	// LinkRate is the calls per second the load sends over the link before the fault; FailureRate the
	// requests per second that fail on it during the fault (default LinkRate), each with
	// FailuresPerRequest failed calls one after the other (default 1; orders' compensation re-sends a
	// charge whose outcome is unknown, retries under the breaker add theirs). FailureLatency is how long
	// a failing call takes to count as one (its timeout, 0 for a refusal).
	LinkRate           float64
	FailureRate        float64
	FailuresPerRequest int
	FailureLatency     time.Duration
	// SleepWindow and ProbeInterval give the recovery bound: SleepWindow + 2 × ProbeInterval (a
	// probe is the next call after the sleep window: ProbeInterval defaults to 1 ÷ LinkRate).
	SleepWindow   time.Duration
	ProbeInterval time.Duration
}

// DetectionBound is when the breaker's rule is first met after a fault that makes every call fail
// (0 when it never is: a window that cannot hold MinRequests calls at these rates), with load on the
// link for loadBefore before it: failures arrive at FailureRate × FailuresPerRequest once the first
// has taken FailureLatency, while the successes before the fault roll out of the window. failures is
// how many it takes — the bound is failures needed ÷ arrival rate, plus the latency of a failure.
//
// The window is gobreaker's rolling one: ten buckets, the newest filling up, so it spans 9 to 10
// bucket periods — 95 % of Window on average, which the bound uses. The bucket phase at the fault is
// chance, so the breaker trips within about ±5 % of the bound (more when few calls fill the window).
func (w Watch) DetectionBound(loadBefore time.Duration) (bound time.Duration, failures int) {
	if w.LinkRate <= 0 || w.Window <= 0 || w.FailureRatio <= 0 {
		return 0, 0
	}
	window := 0.95 * w.Window.Seconds()
	pre := min(loadBefore.Seconds(), window)
	lat := w.FailureLatency.Seconds()
	failRate := w.FailureRate
	if failRate == 0 {
		failRate = w.LinkRate
	}
	perRequest := max(w.FailuresPerRequest, 1)
	for ms := 0; ms <= 60_000; ms++ {
		t := float64(ms) / 1000
		// Successes still in the window t after the fault: those of the last `window` seconds before
		// the fault, minus what rolled out; failures counted so far and still in the window (the k-th
		// failed call of a request comes k failure latencies after it was sent).
		succ := w.LinkRate * max(0, min(pre, window-t))
		var fail float64
		for k := 1; k <= perRequest; k++ {
			fail += failRate * max(0, min(t-float64(k)*lat, window))
		}
		done := succ + fail
		if done >= float64(w.MinRequests) && fail > 0 && fail >= w.FailureRatio*done-1e-9 {
			return time.Duration(ms) * time.Millisecond, int(math.Ceil(fail - 1e-9))
		}
	}
	return 0, 0
}

// RecoveryBound is the sleep window plus two probe intervals, plus the latency of a failing call: a
// probe sent just before the fault ended still fails that much later and opens the breaker again.
func (w Watch) RecoveryBound() time.Duration {
	probe := w.ProbeInterval
	if probe == 0 && w.LinkRate > 0 {
		probe = time.Duration(float64(time.Second) / w.LinkRate)
	}
	return w.SleepWindow + 2*probe + w.FailureLatency
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
	// Baseline marks a run without the policy: it is there to show how the shop deviates, so whether it
	// is steady again by the end is reported (and scored), not required. The steady state before the
	// fault and the expectations still decide its verdict.
	Baseline      bool
	Watch         []Watch
	Amplification *Amplification
	CalleeLoad    *CalleeLoad
	// Accounting checks, after recovery, that no acknowledged order was lost, duplicated or stuck and
	// that stock and payments agree, and that every order's events reached the notifications consumer
	// exactly once (waiting up to EventSettle, default 15 s, for the outboxes to drain).
	Accounting  bool
	EventSettle time.Duration
	Safety      *Safety
	Expect      []Expectation
	// Replicas runs the scenario on the replicated topology (lab.Config.Replicas: registry, replicas,
	// canary); the suite starts that stack for these scenarios after the others.
	Replicas bool `json:",omitempty"`
	// Probe, when set, samples the callers' per-instance discovery and canary series through the run
	// (the Runner starts it before Run and stops it after), for expectations and charts about instances.
	// Each variant needs its own.
	Probe *InstanceProbe `json:"-"`
	// Charts, when set, adds charts drawn from the probe to the run's report files (<base>-<name>.svg).
	Charts func(r *Report, samples []InstanceSample) map[string]plot.Chart `json:"-"`
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
	if s.EventSettle == 0 {
		s.EventSettle = 15 * time.Second
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
