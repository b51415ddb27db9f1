package loadtest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Threshold is a pass/fail criterion on a run's totals, written as k6 writes them: "p99<300ms",
// "errors<1%", "rate>=500".
//
// Metrics: p50, p90, p95, p99, max and mean latency (compared with a duration: 300ms, 1.5s); errors and
// dropped, the failed-or-dropped and dropped shares of scheduled requests (a percentage, 1%, or a
// fraction, 0.01); rate, successful requests per second of the run (a number). Operators: < <= > >=.
type Threshold struct {
	Expr   string  `json:"expr"`
	Metric string  `json:"metric"`
	Op     string  `json:"op"`
	Value  float64 `json:"value"` // milliseconds for latencies, a fraction for errors/dropped, rps for rate
}

// ThresholdResult is a threshold evaluated against a run.
type ThresholdResult struct {
	Threshold
	Actual float64 `json:"actual"` // in the unit of Value
	Pass   bool    `json:"pass"`
	Note   string  `json:"note,omitempty"`
}

var latencyMetrics = map[string]func(Latency) float64{
	"p50":  func(l Latency) float64 { return l.P50 },
	"p90":  func(l Latency) float64 { return l.P90 },
	"p95":  func(l Latency) float64 { return l.P95 },
	"p99":  func(l Latency) float64 { return l.P99 },
	"max":  func(l Latency) float64 { return l.Max },
	"mean": func(l Latency) float64 { return l.Mean },
}

// ParseThreshold reads one threshold; its errors say what was wrong and what is expected.
func ParseThreshold(expr string) (Threshold, error) {
	s := strings.TrimSpace(expr)
	i := strings.IndexAny(s, "<>")
	if i < 0 {
		return Threshold{}, fmt.Errorf("threshold %q: no comparison; write metric<value, metric<=value, metric>value or metric>=value (e.g. p99<300ms)", expr)
	}
	metric := strings.TrimSpace(s[:i])
	op := s[i : i+1]
	rest := s[i+1:]
	if strings.HasPrefix(rest, "=") {
		op += "="
		rest = rest[1:]
	}
	val := strings.TrimSpace(rest)
	if strings.ContainsAny(val, "<>=") {
		return Threshold{}, fmt.Errorf("threshold %q: one comparison only (<, <=, > or >=)", expr)
	}
	t := Threshold{Expr: s, Metric: metric, Op: op}
	if val == "" {
		return Threshold{}, fmt.Errorf("threshold %q: no value after %s", expr, op)
	}
	switch {
	case latencyMetrics[metric] != nil:
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return Threshold{}, fmt.Errorf("threshold %q: %s needs a duration such as 300ms or 1.5s, got %q", expr, metric, val)
		}
		t.Value = float64(d) / float64(time.Millisecond)
	case metric == "errors" || metric == "dropped":
		f, err := parseShare(val)
		if err != nil {
			return Threshold{}, fmt.Errorf("threshold %q: %s needs a percentage such as 1%% or a fraction such as 0.01, got %q", expr, metric, val)
		}
		t.Value = f
	case metric == "rate":
		f, err := strconv.ParseFloat(val, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return Threshold{}, fmt.Errorf("threshold %q: rate needs requests per second such as 500, got %q", expr, val)
		}
		t.Value = f
	case metric == "":
		return Threshold{}, fmt.Errorf("threshold %q: no metric before %s", expr, op)
	default:
		return Threshold{}, fmt.Errorf("threshold %q: unknown metric %q (want p50, p90, p95, p99, max, mean, errors, dropped or rate)", expr, metric)
	}
	return t, nil
}

func parseShare(s string) (float64, error) {
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, err
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 || math.IsNaN(f) {
		return 0, fmt.Errorf("%s is not between 0 and 100%%", s)
	}
	return f, nil
}

// Evaluate checks the threshold against a run's totals. A latency threshold fails when no request
// completed: there is nothing to vouch for.
func (t Threshold) Evaluate(tot Totals) ThresholdResult {
	r := ThresholdResult{Threshold: t}
	switch {
	case latencyMetrics[t.Metric] != nil:
		if tot.Sent == 0 || tot.Sent == tot.Errors[ClassBuild] {
			r.Note = "no completed requests"
			return r
		}
		r.Actual = latencyMetrics[t.Metric](tot.Latency)
	case t.Metric == "errors":
		r.Actual = tot.ErrorRate
	case t.Metric == "dropped":
		r.Actual = tot.DroppedRate
	case t.Metric == "rate":
		r.Actual = tot.Throughput
	default:
		r.Note = "unknown metric"
		return r
	}
	switch t.Op {
	case "<":
		r.Pass = r.Actual < t.Value
	case "<=":
		r.Pass = r.Actual <= t.Value
	case ">":
		r.Pass = r.Actual > t.Value
	case ">=":
		r.Pass = r.Actual >= t.Value
	}
	return r
}

// Unit names the unit of Value and Actual: "ms", "%" (shown as a percentage) or "rps".
func (t Threshold) Unit() string {
	switch {
	case latencyMetrics[t.Metric] != nil:
		return "ms"
	case t.Metric == "rate":
		return "rps"
	default:
		return "%"
	}
}

// Format renders v (a Value or Actual of t) in t's unit.
func (t Threshold) Format(v float64) string {
	switch t.Unit() {
	case "ms":
		return strconv.FormatFloat(v, 'f', 3, 64) + "ms"
	case "rps":
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	default:
		return strconv.FormatFloat(v*100, 'f', 3, 64) + "%"
	}
}

// EvaluateAll evaluates every threshold and reports whether all passed.
func EvaluateAll(ts []Threshold, tot Totals) ([]ThresholdResult, bool) {
	out := make([]ThresholdResult, len(ts))
	pass := true
	for i, t := range ts {
		out[i] = t.Evaluate(tot)
		pass = pass && out[i].Pass
	}
	return out, pass
}
