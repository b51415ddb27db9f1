package loadtest

import (
	"math"
	"strings"
	"testing"
	"time"
)

// within reports whether got is within rel (a fraction) of want: HDR histograms at three significant
// figures answer within 0.1 %.
func within(got, want, rel float64) bool { return math.Abs(got-want) <= want*rel }

func TestCollectorPerSecondAndTotals(t *testing.T) {
	var reports []Progress
	inflight := int64(7)
	c := newCollector([]string{"a", "b"}, func(p Progress) { reports = append(reports, p) }, func() int64 { return inflight })

	// Second 0: 100 requests due, latencies 1..100 ms, the last 10 failing with 503; all complete in
	// second 0 except the slowest, which complete in second 1 when due late in second 0.
	c.close(closeEvent{second: 0, target: 100, sent: 100, dropped: 0, lagMax: 2 * time.Millisecond})
	for i := 1; i <= 100; i++ {
		out := Outcome{OK: true}
		if i > 90 {
			out = Outcome{Class: "http_503"}
		}
		due := 900 * time.Millisecond
		lat := time.Duration(i) * time.Millisecond
		c.done(doneEvent{second: 0, kind: int32(i % 2), latency: lat, completed: due + lat, outcome: out})
	}
	// Second 1: 50 due, 10 dropped, 40 sent of which 20 are expected 409s; all 5 ms.
	for i := 0; i < 40; i++ {
		out := Outcome{OK: true}
		if i < 20 {
			out = Outcome{OK: true, Class: "http_409"}
		}
		c.done(doneEvent{second: 1, kind: 0, latency: 5 * time.Millisecond, completed: 1500 * time.Millisecond, outcome: out})
	}
	c.close(closeEvent{second: 1, target: 50, sent: 40, dropped: 10})
	// Second 2: nothing due (a zero-rate stretch).
	c.close(closeEvent{second: 2, target: 0})
	c.kindCounts([]uint64{90, 50}, []uint64{10, 0})

	tot, secs, kinds := c.result(3, 3*time.Second)
	if len(secs) != 3 {
		t.Fatalf("%d seconds, want 3", len(secs))
	}
	s0, s1, s2 := secs[0], secs[1], secs[2]
	if s0.Sent != 100 || s0.OK != 90 || s0.Errors["http_503"] != 10 || s0.Failed() != 10 || s0.LagMaxMs != 2 {
		t.Errorf("second 0 = %+v", s0)
	}
	// Due at 0.9 s, those slower than 100 ms complete in second 1.
	if s0.Completed != 99 || s1.Completed != 1+40 || s2.Completed != 0 {
		t.Errorf("completed per second %d %d %d, want 99 41 0", s0.Completed, s1.Completed, s2.Completed)
	}
	for _, q := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s0.Latency.P50, 50}, {"p90", s0.Latency.P90, 90}, {"p95", s0.Latency.P95, 95},
		{"p99", s0.Latency.P99, 99}, {"max", s0.Latency.Max, 100}, {"mean", s0.Latency.Mean, 50.5},
	} {
		if !within(q.got, q.want, 0.001) {
			t.Errorf("second 0 %s = %v ms, want %v±0.1%%", q.name, q.got, q.want)
		}
	}
	if r, ok := s0.SuccessRate(); !ok || r != 0.9 {
		t.Errorf("second 0 success rate %v %v, want 0.9", r, ok)
	}
	if r, ok := s1.SuccessRate(); !ok || r != 0.8 {
		t.Errorf("second 1 success rate %v %v, want 40/50", r, ok)
	}
	if _, ok := s2.SuccessRate(); ok {
		t.Error("second 2 had nothing due but reports a success rate")
	}
	if !within(s1.Latency.P99, 5, 0.001) || s1.Dropped != 10 {
		t.Errorf("second 1 = %+v", s1)
	}

	if tot.Scheduled != 150 || tot.Sent != 140 || tot.Dropped != 10 || tot.OK != 130 || tot.Failed() != 10 {
		t.Errorf("totals %+v", tot)
	}
	if tot.Expected["http_409"] != 20 {
		t.Errorf("expected outcomes %v, want 20 http_409", tot.Expected)
	}
	if tot.ErrorRate != 20.0/150 || tot.DroppedRate != 10.0/150 || !within(tot.Throughput, 130.0/3, 1e-12) {
		t.Errorf("error rate %v dropped rate %v throughput %v", tot.ErrorRate, tot.DroppedRate, tot.Throughput)
	}
	// The total merges both seconds: 140 samples, 40 of them at 5 ms, so the median is the 30 of 1..100.
	if !within(tot.Latency.Max, 100, 0.001) || !within(tot.Latency.P50, 30, 0.001) {
		t.Errorf("total latency %+v, want max 100 and p50 30", tot.Latency)
	}
	if kinds[0].Sent != 90 || kinds[0].Dropped != 10 || kinds[0].Expected["http_409"] != 20 || kinds[1].Errors["http_503"] != 5 {
		t.Errorf("kinds %+v", kinds)
	}

	if len(reports) != 3 || reports[0].Second.T != 0 || reports[0].InFlight != 7 || reports[2].Sent != 140 {
		t.Fatalf("progress reports %+v", reports)
	}
	// Second 0 was closed before any of its requests completed: its report shows that.
	if reports[0].Second.OK != 0 || reports[1].Second.OK != 40 || reports[1].OK != 130 || reports[1].Failed != 10 {
		t.Errorf("progress %+v", reports)
	}
}

func TestCollectorRecyclesHistogramsOfFinishedSeconds(t *testing.T) {
	c := newCollector([]string{"a"}, nil, nil)
	for s := 0; s < 100; s++ {
		c.close(closeEvent{second: s, sent: 1})
		c.done(doneEvent{second: int32(s), latency: time.Duration(s+1) * time.Millisecond, completed: time.Duration(s) * time.Second, outcome: Outcome{OK: true}})
	}
	if len(c.pool) != 1 {
		t.Errorf("%d histograms pooled after 100 finished seconds, want the one reused", len(c.pool))
	}
	tot, secs, _ := c.result(100, 100*time.Second)
	if !within(secs[41].Latency.P50, 42, 0.001) || !within(tot.Latency.Max, 100, 0.001) || tot.OK != 100 {
		t.Errorf("second 41 %+v, totals %+v", secs[41].Latency, tot.Latency)
	}
}

func TestThresholdParse(t *testing.T) {
	good := []struct {
		expr string
		want Threshold
	}{
		{"p99<300ms", Threshold{Expr: "p99<300ms", Metric: "p99", Op: "<", Value: 300}},
		{" p50 <= 1.5s ", Threshold{Expr: "p50 <= 1.5s", Metric: "p50", Op: "<=", Value: 1500}},
		{"max<2s", Threshold{Expr: "max<2s", Metric: "max", Op: "<", Value: 2000}},
		{"errors<1%", Threshold{Expr: "errors<1%", Metric: "errors", Op: "<", Value: 0.01}},
		{"errors<=0.05", Threshold{Expr: "errors<=0.05", Metric: "errors", Op: "<=", Value: 0.05}},
		{"dropped<0.1%", Threshold{Expr: "dropped<0.1%", Metric: "dropped", Op: "<", Value: 0.001}},
		{"rate>=500", Threshold{Expr: "rate>=500", Metric: "rate", Op: ">=", Value: 500}},
		{"rate>99.5", Threshold{Expr: "rate>99.5", Metric: "rate", Op: ">", Value: 99.5}},
	}
	for _, tc := range good {
		got, err := ParseThreshold(tc.expr)
		if err != nil || got != tc.want {
			t.Errorf("ParseThreshold(%q) = %+v, %v; want %+v", tc.expr, got, err, tc.want)
		}
	}
	bad := []struct{ expr, want string }{
		{"", "no comparison"},
		{"p99 300ms", "no comparison"},
		{"<300ms", "no metric"},
		{"p99<", "no value"},
		{"p98<300ms", `unknown metric "p98"`},
		{"p99<300", "needs a duration"},
		{"p99<-1s", "needs a duration"},
		{"errors<lots", "needs a percentage"},
		{"errors<150%", "needs a percentage"},
		{"rate>=fast", "rate needs requests per second"},
		{"p99<<300ms", "one comparison only"},
		{"p99=<300ms", `unknown metric "p99="`},
	}
	for _, tc := range bad {
		_, err := ParseThreshold(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseThreshold(%q) error %v, want one containing %q", tc.expr, err, tc.want)
		}
	}
}

func TestThresholdEvaluate(t *testing.T) {
	tot := Totals{
		Sent: 1000, Scheduled: 1000, OK: 985, Errors: map[string]uint64{"http_503": 15},
		Latency:    Latency{P50: 10, P90: 50, P95: 120, P99: 310, Max: 900, Mean: 20},
		Throughput: 98.5, ErrorRate: 0.015,
	}
	for _, tc := range []struct {
		expr   string
		pass   bool
		actual float64
	}{
		{"p99<300ms", false, 310}, {"p99<=310ms", true, 310}, {"p95<200ms", true, 120},
		{"max>800ms", true, 900}, {"mean<20ms", false, 20}, {"p50>=10ms", true, 10},
		{"errors<1%", false, 0.015}, {"errors<2%", true, 0.015}, {"dropped<=0", true, 0},
		{"rate>=98.5", true, 98.5}, {"rate>100", false, 98.5},
	} {
		th, err := ParseThreshold(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		r := th.Evaluate(tot)
		if r.Pass != tc.pass || r.Actual != tc.actual {
			t.Errorf("%s: pass=%v actual=%v, want pass=%v actual=%v", tc.expr, r.Pass, r.Actual, tc.pass, tc.actual)
		}
	}
	th, _ := ParseThreshold("p99<300ms")
	if r := th.Evaluate(Totals{Scheduled: 10, Dropped: 10}); r.Pass || r.Note == "" {
		t.Errorf("a latency threshold over a run with no completed request = %+v, want a failure with a note", r)
	}
	ths := []Threshold{th}
	if e, _ := ParseThreshold("errors<2%"); true {
		ths = append(ths, e)
	}
	if _, pass := EvaluateAll(ths, tot); pass {
		t.Error("EvaluateAll passed with p99 over its threshold")
	}
	if got := th.Format(310.5); got != "310.500ms" {
		t.Errorf("Format = %q", got)
	}
}
