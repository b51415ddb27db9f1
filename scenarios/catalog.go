package scenarios

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/lab"
	"github.com/resilience-lab/lab/scenarios/measure"
)

// Pair is one lesson: the same fault on the same load, without and with the policy.
type Pair struct {
	Without, With experiment.Scenario
}

// The common timeline: three steady seconds, the fault for four, four to recover.
const (
	runFor   = 11 * time.Second
	faultOn  = 3 * time.Second
	faultOff = 7 * time.Second
	// orderRate is the primary stream: placing orders, the saga that crosses every service.
	orderRate = 8.0
)

// shopLoad is the mix every scenario drives unless it says otherwise: orders (primary), browsing, and
// reading one's orders.
func shopLoad() []experiment.Stream {
	return []experiment.Stream{
		{Name: "orders", Rate: orderRate, Kinds: map[string]int{measure.KindPlaceOrder: 1}},
		{Name: "browse", Rate: 10, Kinds: map[string]int{measure.KindBrowse: 3, measure.KindProduct: 2}},
		{Name: "reads", Rate: 4, Kinds: map[string]int{measure.KindReadOrders: 1}},
	}
}

func steady(p99 time.Duration) experiment.Thresholds {
	return experiment.Thresholds{MinSuccess: 0.95, MaxP99: p99}
}

// base fills what every scenario of a pair shares.
func base(id, title, teaches string, faults ...fault.Step) experiment.Scenario {
	return experiment.Scenario{
		ID: id, Title: title, Teaches: teaches, Streams: shopLoad(), Duration: runFor, Faults: faults,
		Steady: steady(400 * time.Millisecond), Accounting: true,
		Safety: &experiment.Safety{MinSuccess: 0.01, Seconds: 6},
	}
}

func pair(s experiment.Scenario, without, with func(*experiment.Scenario)) Pair {
	w, p := s, s
	w.Variant, p.Variant = "without", "with"
	w.Env = bare()
	without(&w)
	with(&p)
	w.Policy, p.Policy = describe(w.Env), describe(p.Env)
	return Pair{Without: w, With: p}
}

// describe lists what env sets beyond bare(): the policies a variant turns on.
func describe(env map[string]map[string]string) string {
	off := bare()
	var parts []string
	for _, svc := range lab.Services {
		for _, k := range slices.Sorted(maps.Keys(env[svc])) {
			if off[svc][k] != env[svc][k] {
				parts = append(parts, k+"="+env[svc][k])
			}
		}
	}
	if len(parts) == 0 {
		return "none: every breaker, retry, timeout, bulkhead, shedder off; rate limit 1000/s"
	}
	return strings.Join(parts, ", ") + " (every other policy off)"
}

func step(f fault.Fault) fault.Step { return fault.Step{Fault: f, From: faultOn, To: faultOff} }

// ---- expectations -------------------------------------------------------------------------------

func nothingLost() experiment.Expectation {
	return experiment.Expectation{Name: "no order lost, duplicated or stuck; stock and payments agree", Weight: 3,
		Check: func(r *experiment.Report) (bool, string) {
			a := r.Accounting
			if a == nil {
				return false, "not accounted"
			}
			return a.Broken() == 0, fmt.Sprintf("lost %d, duplicated %d, stuck %d, payment mismatches %d, stock mismatches %d (of %d orders)",
				a.Lost, a.Duplicated, a.Stuck, a.PaymentMismatches, a.StockMismatches, a.Orders)
		}}
}

func p99DuringAtMost(stream string, d time.Duration) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("%s p99 during the fault ≤ %s", stream, d), Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			v := float64(r.StreamDuring[stream][1])
			return v <= float64(d.Milliseconds()), fmt.Sprintf("%.0f ms", v)
		}}
}

func p99DuringAtLeast(stream string, d time.Duration) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("%s p99 during the fault ≥ %s (the fault reaches the client)", stream, d), Weight: 1,
		Check: func(r *experiment.Report) (bool, string) {
			v := float64(r.StreamDuring[stream][1])
			return v >= float64(d.Milliseconds()), fmt.Sprintf("%.0f ms", v)
		}}
}

func successDuringAtLeast(stream string, p float64) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("%s success during the fault ≥ %.0f%%", stream, p*100), Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			v := float64(r.StreamDuring[stream][0])
			return v >= p, experiment.Pct(v)
		}}
}

func successDuringBelow(stream string, p float64) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("%s success during the fault < %.0f%% (the fault reaches the client)", stream, p*100), Weight: 1,
		Check: func(r *experiment.Report) (bool, string) {
			v := float64(r.StreamDuring[stream][0])
			return v < p, experiment.Pct(v)
		}}
}

func confirmedDuring(atLeast bool, p float64) experiment.Expectation {
	name := fmt.Sprintf("orders confirmed during the fault ≥ %.0f%%", p*100)
	if !atLeast {
		name = fmt.Sprintf("orders confirmed during the fault < %.0f%% (the fault costs sales)", p*100)
	}
	return experiment.Expectation{Name: name, Weight: 2, Check: func(r *experiment.Report) (bool, string) {
		v := float64(r.DuringConfirmed)
		if math.IsNaN(v) {
			return false, "no order placed"
		}
		return (v >= p) == atLeast, experiment.Pct(v)
	}}
}

// detectedWithinBound: TTD within 10 % of failures needed ÷ arrival rate, plus the 250 ms resolution
// of a metrics scrape when no policy event timed it.
func detectedWithinBound() experiment.Expectation {
	return experiment.Expectation{Name: "breaker opens within 10 % of the detection bound", Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			if r.TTD == nil {
				return false, "never opened"
			}
			limit := r.TTDBoundS * 1.1
			if r.TTDSource != "policy event" {
				limit += 0.25
			}
			return *r.TTD <= limit, fmt.Sprintf("TTD %.2f s, bound %.2f s (limit %.2f s, from %s)", *r.TTD, r.TTDBoundS, limit, r.TTDSource)
		}}
}

func detectedWithin(d time.Duration) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("breaker opens within %s of the fault", d), Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			if r.TTD == nil {
				return false, "never opened"
			}
			return *r.TTD <= d.Seconds(), fmt.Sprintf("TTD %.2f s (%s)", *r.TTD, r.TTDSource)
		}}
}

// recoveredWithinBound: TTR ≤ sleep window + 2 probe intervals (+1 s: TTR is counted in whole seconds).
func recoveredWithinBound() experiment.Expectation {
	return experiment.Expectation{Name: "recovers within sleep window + 2 probe intervals", Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			if r.TTR == nil {
				return false, "never recovered"
			}
			return *r.TTR <= r.TTRBoundS+1, fmt.Sprintf("TTR %.2f s, bound %.2f s (+1 s resolution)", *r.TTR, r.TTRBoundS)
		}}
}

func recoveredWithin(d time.Duration) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("TTR ≤ %s", d), Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			if r.TTR == nil {
				return false, "never recovered"
			}
			return *r.TTR <= d.Seconds(), fmt.Sprintf("TTR %.2f s", *r.TTR)
		}}
}

func amplificationAtMost(x float64) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("retry amplification ≤ %.2f", x), Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			a := float64(r.Amplification)
			return !math.IsNaN(a) && a <= x, fmt.Sprintf("%.2f", a)
		}}
}

func amplificationAtLeast(x float64) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("retry amplification ≥ %.2f (the storm)", x), Weight: 1,
		Check: func(r *experiment.Report) (bool, string) {
			a := float64(r.Amplification)
			return !math.IsNaN(a) && a >= x, fmt.Sprintf("%.2f", a)
		}}
}

func policyCounted(label string) experiment.Expectation {
	return experiment.Expectation{Name: "the policy acted: " + label + " > 0", Weight: 1,
		Check: func(r *experiment.Report) (bool, string) {
			v := r.PolicyTotals[label]
			return v > 0, fmt.Sprintf("%.0f", v)
		}}
}

func paymentsWatch() []experiment.Watch {
	return []experiment.Watch{{Service: "orders", Downstream: "orders-payments", FailuresToTrip: tripAfter,
		LinkRate: orderRate, SleepWindow: sleepWindow, ProbeInterval: time.Second / time.Duration(orderRate)}}
}

// All returns every pair, in the order the suite runs them.
func All() []Pair {
	return []Pair{
		paymentsLatency(), paymentsDown(), payments503(), paymentsKilled(), flappingLink(),
		retryStorm(), resetPeer(), catalogSlowBulkhead(), catalogBandwidth(), catalogTruncated(),
		catalogBlackhole(), gatewayOverload(),
	}
}

func paymentsLatency() Pair {
	s := base("payments-latency", "Latency on payments",
		"800 ms of latency on orders→payments. Without a timeout every order waits it out; with a 300 ms timeout the breaker opens after five slow calls and orders fail fast (cancelled, nothing lost) until it probes closed.",
		step(fault.Latency("orders-payments", 800*time.Millisecond, 50*time.Millisecond)))
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{p99DuringAtLeast("orders", 700*time.Millisecond), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-payments": merge(breakerOn(), settings{"TIMEOUT": "300ms", "RETRY_MAX_ATTEMPTS": "1"})}, nil)
		p.Watch = paymentsWatch()
		p.Expect = []experiment.Expectation{p99DuringAtMost("orders", 450*time.Millisecond), detectedWithin(2 * time.Second), recoveredWithinBound(), nothingLost()}
	})
}

func paymentsDown() Pair {
	s := base("payments-down", "Payments unreachable",
		"The orders→payments link refuses connections. Every charge fails; the saga compensates. With a breaker the failures stop reaching payments after five calls — detection within the bound of failures needed ÷ arrival rate — and nothing is lost either way.",
		step(fault.LinkDown{Link: "orders-payments"}))
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-payments": merge(breakerOn(), settings{"TIMEOUT": "300ms", "RETRY_MAX_ATTEMPTS": "1"})}, nil)
		p.Watch = paymentsWatch()
		p.Expect = []experiment.Expectation{detectedWithinBound(), recoveredWithinBound(), policyCounted("orders breaker_rejected orders-payments"), nothingLost()}
	})
}

func payments503() Pair {
	s := base("payments-503", "Payments answers 503",
		"Every charge is answered 503 by the lab's http_fault toxic (the request never reaches payments). The breaker counts 5xx as failures and opens; after the burst a probe closes it.",
		step(fault.HTTPError("orders-payments", 503, 1)))
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{confirmedDuring(false, 0.5), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-payments": merge(breakerOn(), settings{"TIMEOUT": "300ms", "RETRY_MAX_ATTEMPTS": "1"})}, nil)
		p.Watch = paymentsWatch()
		p.Expect = []experiment.Expectation{detectedWithinBound(), recoveredWithinBound(), nothingLost()}
	})
}

func paymentsKilled() Pair {
	s := base("payments-killed", "Payments container killed",
		"The payments container gets SIGKILL mid-load and is started again four seconds later. Charges in flight are lost on the wire; the saga's idempotent re-charge and compensation must leave every order terminal with its money and stock in agreement.",
		step(fault.Container{Service: "payments", Action: fault.Kill}))
	s.Steady = steady(600 * time.Millisecond)
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-payments": merge(breakerOn(), settings{"TIMEOUT": "300ms", "RETRY_MAX_ATTEMPTS": "2"})}, nil)
		p.Watch = paymentsWatch()
		p.Expect = []experiment.Expectation{detectedWithin(2 * time.Second), recoveredWithin(3 * time.Second), nothingLost()}
	})
}

func flappingLink() Pair {
	var steps []fault.Step
	for t := faultOn; t < faultOff; t += time.Second {
		steps = append(steps, fault.Step{Fault: fault.LinkDown{Link: "orders-payments"}, From: t, To: t + 500*time.Millisecond})
	}
	s := base("flapping-link", "A flapping link",
		"orders→payments goes down for half a second every second. Without a breaker every down phase costs failed charges; with one, the sleep window (hysteresis) keeps it open across the flaps instead of re-trying payments on every up phase.",
		steps...)
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-payments": merge(breakerOn(), settings{"TIMEOUT": "300ms", "RETRY_MAX_ATTEMPTS": "1"})}, nil)
		p.Watch = paymentsWatch()
		p.Expect = []experiment.Expectation{detectedWithin(time.Second), policyCounted("orders breaker_rejected orders-payments"), recoveredWithinBound(), nothingLost()}
	})
}

func retryStorm() Pair {
	s := base("retry-storm", "Retry storm",
		"Half the charges are answered 503. Four attempts per call with no budget multiply the load on a struggling payments; a retry budget of 10 % of calls caps the amplification.",
		step(fault.HTTPError("orders-payments", 503, 0.5)))
	s.Amplification = &experiment.Amplification{Caller: "orders", CallerRoute: "POST /orders",
		Callee: "payments", CalleeRoute: "POST /payments, GET /healthz"}
	storm := settings{"RETRY_MAX_ATTEMPTS": "4", "RETRY_BASE_DELAY": "10ms", "RETRY_MAX_DELAY": "50ms", "TIMEOUT": "1s"}
	return pair(s, func(w *experiment.Scenario) {
		w.Env = with(map[string]settings{"orders-payments": merge(storm, settings{"RETRY_BUDGET_RATIO": "100", "RETRY_BUDGET_MIN_PER_SEC": "1000"})}, nil)
		w.Expect = []experiment.Expectation{amplificationAtLeast(1.5), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-payments": merge(storm, settings{"RETRY_BUDGET_RATIO": "0.1", "RETRY_BUDGET_MIN_PER_SEC": "0.5", "RETRY_BUDGET_WINDOW": "2s"})}, nil)
		p.Expect = []experiment.Expectation{amplificationAtMost(1.3), policyCounted("orders retry_budget_exhausted orders-payments"), nothingLost()}
	})
}

func resetPeer() Pair {
	s := base("reset-peer", "Connections reset",
		"Half of the orders→catalog connections are reset by the peer as the answer starts. Measured lesson: Go's HTTP transport already replays a request that carries an Idempotency-Key when a reused connection dies before any answer byte, on another pooled connection — so even without the retry policy almost no order is lost to resets; the retry policy covers what the transport cannot (a fresh connection, a cut answer).",
		step(fault.ResetPeer("orders-catalog", 0).WithToxicity(0.5)))
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{confirmedDuring(true, 0.9), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-catalog": {"RETRY_MAX_ATTEMPTS": "4", "RETRY_BASE_DELAY": "5ms", "RETRY_MAX_DELAY": "20ms", "TIMEOUT": "500ms"}}, nil)
		p.During = &experiment.Thresholds{MinSuccess: 0.9}
		p.Expect = []experiment.Expectation{confirmedDuring(true, 0.9), nothingLost()}
	})
}

func catalogSlowBulkhead() Pair {
	s := base("catalog-slow", "Slow catalog, healthy order reads",
		"gateway→catalog answers after 1.5 s. Browsing slows down either way; with a bulkhead of 4 concurrent catalog calls and a 500 ms timeout the gateway fails browsing fast instead of piling up work, and the order-reads stream stays healthy.",
		step(fault.Latency("gateway-catalog", 1500*time.Millisecond, 0)))
	s.Streams = []experiment.Stream{
		{Name: "reads", Rate: 8, Kinds: map[string]int{measure.KindReadOrders: 1}},
		{Name: "browse", Rate: 20, Kinds: map[string]int{measure.KindBrowse: 1, measure.KindProduct: 1}},
		{Name: "orders", Rate: 4, Kinds: map[string]int{measure.KindPlaceOrder: 1}},
	}
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{p99DuringAtLeast("browse", 1400*time.Millisecond), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"gateway-catalog": {"BULKHEAD_MAX_CONCURRENT": "4", "BULKHEAD_MAX_WAIT": "0s", "TIMEOUT": "500ms"}}, nil)
		p.During = &experiment.Thresholds{MinSuccess: 0.99, MaxP99: 250 * time.Millisecond}
		p.Expect = []experiment.Expectation{p99DuringAtMost("browse", 700*time.Millisecond), p99DuringAtMost("reads", 250*time.Millisecond), nothingLost()}
	})
}

func catalogBandwidth() Pair {
	s := base("catalog-bandwidth", "Catalog on a thin pipe",
		"gateway→catalog is capped at 1 KB/s and sliced into 64-byte pieces: the product list crawls. A 400 ms timeout bounds what a browser waits.",
		fault.Step{Fault: fault.Bandwidth("gateway-catalog", 1), From: faultOn, To: faultOff},
		fault.Step{Fault: fault.Slicer("gateway-catalog", 64, 16, 2*time.Millisecond), From: faultOn, To: faultOff})
	s.Streams[0], s.Streams[1] = s.Streams[1], s.Streams[0] // browsing is what the fault hits
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{p99DuringAtLeast("browse", 600*time.Millisecond), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"gateway-catalog": {"TIMEOUT": "400ms", "RETRY_MAX_ATTEMPTS": "1"}}, nil)
		p.Expect = []experiment.Expectation{p99DuringAtMost("browse", 600*time.Millisecond), recoveredWithin(2 * time.Second), nothingLost()}
	})
}

func catalogTruncated() Pair {
	s := base("catalog-truncated", "Truncated catalog answers",
		"Each gateway→catalog connection dies after 1500 bytes and closes slowly: answers are cut off mid-body. Reads are idempotent, so a retry on a fresh connection recovers them.",
		fault.Step{Fault: fault.LimitData("gateway-catalog", 1500), From: faultOn, To: faultOff},
		fault.Step{Fault: fault.SlowClose("gateway-catalog", 200*time.Millisecond), From: faultOn, To: faultOff})
	s.Streams[0], s.Streams[1] = s.Streams[1], s.Streams[0]
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{successDuringBelow("browse", 0.95), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"gateway-catalog": {"RETRY_MAX_ATTEMPTS": "3", "RETRY_BASE_DELAY": "5ms", "RETRY_MAX_DELAY": "20ms", "TIMEOUT": "500ms"}}, nil)
		p.Expect = []experiment.Expectation{successDuringAtLeast("browse", 0.95), policyCounted("gateway retry_attempts gateway-catalog"), nothingLost()}
	})
}

func catalogBlackhole() Pair {
	s := base("catalog-blackhole", "Catalog black hole",
		"orders→catalog swallows every byte and never answers (Toxiproxy's timeout toxic). Without a timeout each order hangs until the client gives up; with a 300 ms timeout and a breaker the saga fails fast and releases nothing it did not hold.",
		step(fault.Timeout("orders-catalog", 0)))
	s.Steady = steady(600 * time.Millisecond)
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{p99DuringAtLeast("orders", 2*time.Second), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(map[string]settings{"orders-catalog": merge(breakerOn(), settings{"TIMEOUT": "300ms", "RETRY_MAX_ATTEMPTS": "1"})}, nil)
		p.Watch = []experiment.Watch{{Service: "orders", Downstream: "orders-catalog", FailuresToTrip: tripAfter,
			LinkRate: orderRate, SleepWindow: sleepWindow, ProbeInterval: time.Second / time.Duration(orderRate)}}
		p.Expect = []experiment.Expectation{p99DuringAtMost("orders", 450*time.Millisecond), detectedWithin(2 * time.Second), recoveredWithinBound(), nothingLost()}
	})
}

func gatewayOverload() Pair {
	s := base("gateway-overload", "Overload at the gateway",
		"One greedy client (all the customers share the same 8 tokens) quadruples browsing while catalog is slowed to 100 ms. A per-client rate limit answers the excess 429 at once, so what is admitted keeps a bounded p99.",
		step(fault.Latency("gateway-catalog", 100*time.Millisecond, 0)))
	s.Streams = []experiment.Stream{
		{Name: "browse", Rate: 120, Kinds: map[string]int{measure.KindBrowse: 1, measure.KindProduct: 1}},
		{Name: "orders", Rate: 4, Kinds: map[string]int{measure.KindPlaceOrder: 1}},
	}
	s.Steady = experiment.Thresholds{MinSuccess: 0.3, MaxP99: 400 * time.Millisecond}
	return pair(s, func(w *experiment.Scenario) {
		w.Expect = []experiment.Expectation{p99DuringAtLeast("browse", 100*time.Millisecond), nothingLost()}
	}, func(p *experiment.Scenario) {
		p.Env = with(nil, map[string]map[string]string{"gateway": {"GATEWAY_RATE_LIMIT_RPS": "5", "GATEWAY_RATE_LIMIT_BURST": "10"}})
		p.Expect = []experiment.Expectation{successDuringBelow("browse", 0.9), p99DuringAtMost("orders", 400*time.Millisecond), nothingLost()}
	})
}
