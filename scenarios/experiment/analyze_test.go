package experiment

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/measure"
)

// sec builds a loadtest second with ok of sent successes and the given p99.
func sec(t int, sent, ok uint64, p99 float64) loadtest.Second {
	s := loadtest.Second{T: t, Sent: sent, OK: ok, Latency: loadtest.Latency{P99: p99, P50: p99 / 2, Max: p99}}
	if sent > ok {
		s.Errors = map[string]uint64{"http_503": sent - ok}
	}
	return s
}

// run10 is a ten-second run of the primary stream: healthy, a fault over seconds 3–5, healthy again
// from second 7.
func run10() map[string]*loadtest.Result {
	var primary, other []loadtest.Second
	for t := 0; t < 10; t++ {
		switch {
		case t >= 3 && t <= 5:
			primary = append(primary, sec(t, 10, 2, 900))
		case t == 6:
			primary = append(primary, sec(t, 10, 8, 300))
		default:
			primary = append(primary, sec(t, 10, 10, 40))
		}
		other = append(other, sec(t, 5, 5, 20))
	}
	return map[string]*loadtest.Result{"orders": {Seconds: primary}, "reads": {Seconds: other}}
}

func TestCombineAndRecovery(t *testing.T) {
	secs := combine(run10(), 10)
	if secs[4].Sent != 15 || secs[4].OK != 7 || secs[4].P99 != 900 {
		t.Fatalf("second 4 = %+v", secs[4])
	}
	if got := float64(secs[4].Streams["orders"].Success); got != 0.2 {
		t.Fatalf("orders success in second 4 = %v, want 0.2", got)
	}
	th := Thresholds{MinSuccess: 0.95, MaxP99: 400 * time.Millisecond}
	if steady(secs[4], th, "orders") || !steady(secs[4], th, "reads") || !steady(secs[8], th, "orders") {
		t.Fatal("steady() misjudged a second")
	}
	// The fault came off at 5.6 s: seconds 7 and 8 are the first two steady ones in a row.
	if r := recovery(secs, 5.6, th, "orders", 2); r != 7 {
		t.Fatalf("recovered at %v, want 7", r)
	}
	if r := recovery(secs[:8], 5.6, th, "orders", 2); r != -1 {
		t.Fatalf("a run that ends before two steady seconds recovered at %v", r)
	}
	s, p := windowStats(secs, 3, 6, "orders")
	if math.Abs(s-0.2) > 1e-9 || p != 900 {
		t.Fatalf("window stats %v %v", s, p)
	}
	ws, wp := worst(secs)
	if math.Abs(ws-7.0/15) > 1e-9 || wp != 900 {
		t.Fatalf("worst %v %v", ws, wp)
	}
}

func TestDetectionPrefersPolicyEventsThenScrapes(t *testing.T) {
	on := time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)
	watch := []Watch{{Service: "orders", Downstream: "orders-payments"}}
	state := measure.Key{Service: "orders", Metric: "resilience_breaker_state", Downstream: "orders-payments"}
	scrapes := []measure.Scrape{
		{At: on.Add(-time.Second), Values: map[measure.Key]float64{state: 0}},
		{At: on.Add(250 * time.Millisecond), Values: map[measure.Key]float64{state: 0}},
		{At: on.Add(500 * time.Millisecond), Values: map[measure.Key]float64{state: 2}},
		{At: on.Add(5 * time.Second), Values: map[measure.Key]float64{state: 0}},
	}
	at, src := detection(on, scrapes, nil, watch)
	if src != "metrics scrape" || at.Sub(on) != 500*time.Millisecond {
		t.Fatalf("detected %s after the fault from %q", at.Sub(on), src)
	}
	events := []PolicyEvent{
		{Time: on.Add(-time.Second), Service: "orders", Downstream: "orders-payments", Kind: "state_change", To: "open"},
		{Time: on.Add(610 * time.Millisecond), Service: "orders", Downstream: "orders-catalog", Kind: "state_change", To: "open"},
		{Time: on.Add(420 * time.Millisecond), Service: "orders", Downstream: "orders-payments", Kind: "state_change", To: "open"},
	}
	at, src = detection(on, scrapes, events, watch)
	if src != "policy event" || at.Sub(on) != 420*time.Millisecond {
		t.Fatalf("detected %s after the fault from %q, want 420ms from the event", at.Sub(on), src)
	}
	off := on.Add(4 * time.Second)
	if closed := breakerClosed(off, scrapes, nil, watch); closed.Sub(off) != time.Second {
		t.Fatalf("closed %s after the fault went off, want 1s", closed.Sub(off))
	}
}

func TestAmplification(t *testing.T) {
	t0 := time.Now()
	served := measure.Key{Service: "orders", Metric: "http_server_requests_total", Route: "POST /orders"}
	arrived := measure.Key{Service: "payments", Metric: "http_server_requests_total", Route: "POST /payments"}
	scrapes := []measure.Scrape{
		{At: t0, Values: map[measure.Key]float64{served: 100, arrived: 100}},
		{At: t0.Add(time.Second), Values: map[measure.Key]float64{served: 110, arrived: 125}},
		{At: t0.Add(2 * time.Second), Values: map[measure.Key]float64{served: 120, arrived: 160}},
	}
	a, s, r := amplification(Amplification{Caller: "orders", CallerRoute: "POST /orders", Callee: "payments", CalleeRoute: "POST /payments"},
		scrapes, t0, t0.Add(2*time.Second))
	if a != 3 || s != 20 || r != 60 {
		t.Fatalf("amplification %v (%v served, %v arrived), want 3 (20, 60)", a, s, r)
	}
}

func TestAnalyzeJudgesAndWritesReports(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := Scenario{ID: "demo", Variant: "with", Title: "Demo", Duration: 10 * time.Second,
		Streams: []Stream{{Name: "orders", Rate: 10}, {Name: "reads", Rate: 5}},
		Steady:  Thresholds{MinSuccess: 0.95, MaxP99: 400 * time.Millisecond},
		During:  &Thresholds{MinSuccess: 0.9},
		Faults:  []fault.Step{{From: 3 * time.Second, To: 6 * time.Second}},
		Expect: []Expectation{
			{Name: "holds", Weight: 2, Check: func(*Report) (bool, string) { return true, "yes" }},
			{Name: "fails", Weight: 1, Check: func(*Report) (bool, string) { return false, "no" }},
		}}.withDefaults()
	rep := &Report{ID: sc.ID, Variant: sc.Variant, Title: sc.Title, Started: start, DurationS: 10, Streams: sc.Streams,
		FaultEvents: []fault.Event{{Fault: "x", On: true, At: start.Add(3 * time.Second)}, {Fault: "x", At: start.Add(5600 * time.Millisecond)}}}
	analyze(rep, sc, run10(), nil, nil, start)

	if rep.TTR == nil || math.Abs(*rep.TTR-1.4) > 1e-9 {
		t.Fatalf("TTR %v, want 1.4 s (steady from second 7, fault off at 5.6 s)", rep.TTR)
	}
	// Checks: before (held), during (failed), after (held), two expectations (one fails).
	if len(rep.Checks) != 5 || !rep.Checks[0].OK || rep.Checks[1].OK || !rep.Checks[2].OK {
		t.Fatalf("checks %+v", rep.Checks)
	}
	if rep.Verdict != "fail" || rep.Score != 66.7 { // (1 + 1 + 2) of 6
		t.Fatalf("verdict %s, score %v", rep.Verdict, rep.Score)
	}

	dir := t.TempDir()
	if err := Write(dir, rep); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "demo-with.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("the JSON report does not read back: %v", err)
	}
	if !math.IsNaN(float64(back.Amplification)) || back.Score != rep.Score {
		t.Fatalf("read back amplification %v score %v", back.Amplification, back.Score)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "demo-with.html"))
	for _, want := range []string{"<svg", "fault", "❌ failed", "TTR 1.40 s"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if err := WriteIndex(dir, []*Report{rep}); err != nil {
		t.Fatal(err)
	}
	index, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	if !strings.Contains(string(index), `href="demo-with.html"`) {
		t.Fatal("the index does not link the report")
	}
	if table := Table(Summarize([]*Report{rep})); !strings.Contains(table, "| demo/with | fail | 66.7 | — | 1.40 s |") {
		t.Fatalf("summary table:\n%s", table)
	}
}

func TestDetectionBound(t *testing.T) {
	w := Watch{FailureRatio: 0.5, MinRequests: 5, Window: 2 * time.Second, LinkRate: 16, SleepWindow: time.Second}
	for _, c := range []struct {
		name       string
		w          func(Watch) Watch
		loadBefore time.Duration
		want       time.Duration
		failures   int
	}{
		// A full window (95 % of 2 s on average) of successes: failures must equal the successes still
		// in it, which roll out as the failures come in — ratio × window.
		{"full window", func(w Watch) Watch { return w }, 2 * time.Second, 950 * time.Millisecond, 16},
		{"failures take a timeout to count", func(w Watch) Watch { w.FailureLatency = 300 * time.Millisecond; return w },
			2 * time.Second, 1100 * time.Millisecond, 13},
		// Two failed calls per request: the failures come twice as fast.
		{"two calls per request", func(w Watch) Watch { w.FailuresPerRequest = 2; return w }, 2 * time.Second, 634 * time.Millisecond, 21},
		// … the second one a timeout after the first.
		{"two calls, each a timeout", func(w Watch) Watch { w.FailuresPerRequest, w.FailureLatency = 2, 300*time.Millisecond; return w },
			2 * time.Second, 934 * time.Millisecond, 16},
		// Half a window of load before the fault: nothing rolls out until the older part is gone.
		{"half a window of load", func(w Watch) Watch { return w }, time.Second, 950 * time.Millisecond, 16},
		{"a quarter ratio", func(w Watch) Watch { w.FailureRatio = 0.25; return w }, 2 * time.Second, 475 * time.Millisecond, 8},
		// Little load before the fault and a low ratio: the minimum number of calls decides.
		{"min requests", func(w Watch) Watch { w.LinkRate, w.FailureRatio = 3, 0.1; return w }, 500 * time.Millisecond, 1167 * time.Millisecond, 4},
		// A window that never holds five calls never trips.
		{"never", func(w Watch) Watch { w.LinkRate = 2; return w }, 2 * time.Second, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, failures := c.w(w).DetectionBound(c.loadBefore)
			if d := got - c.want; d < -time.Millisecond || d > time.Millisecond || failures != c.failures {
				t.Fatalf("bound %s after %d failures, want %s after %d", got, failures, c.want, c.failures)
			}
		})
	}
	if got := w.RecoveryBound(); got != time.Second+125*time.Millisecond {
		t.Fatalf("recovery bound %s, want the sleep window plus two probe intervals (1.125s)", got)
	}
	w.FailureLatency = 300 * time.Millisecond
	if got := w.RecoveryBound(); got != 1425*time.Millisecond {
		t.Fatalf("recovery bound with a 300ms failure latency %s, want 1.425s", got)
	}
}
