package loadtest

import (
	"math"
	"time"
)

// Result is what a run measured. Latencies are in milliseconds from each request's due time (not its
// actual send time) to the end of its response body.
type Result struct {
	Profile     Profile   `json:"profile"`
	Started     time.Time `json:"started"`
	MaxInFlight int       `json:"max_in_flight"`
	MaxRequests uint64    `json:"max_requests"`
	// Span is how long requests were being scheduled: the profile's duration unless the run was capped
	// or canceled early. Rates are per second of Span.
	SpanSeconds float64 `json:"span_seconds"`
	// Capped is set when MaxRequests stopped the run before its profile ended; Canceled when its
	// context did.
	Capped   bool           `json:"capped"`
	Canceled bool           `json:"canceled"`
	Totals   Totals         `json:"totals"`
	Seconds  []Second       `json:"seconds"`
	Kinds    []KindTotals   `json:"kinds"`
	Actions  []ActionRecord `json:"actions,omitempty"`
}

// Latency summarises a latency histogram, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Second describes one second of the schedule. Target, Sent, Dropped, OK, Errors and Latency are about
// the requests *due* in that second (so errors line up with the fault that caused them, however late
// they completed); Completed counts the responses that *arrived* in that second: the throughput
// the target delivered.
type Second struct {
	T         int               `json:"t"`      // seconds from the start
	Target    float64           `json:"target"` // arrivals the profile asked for in this second
	Sent      uint64            `json:"sent"`
	Dropped   uint64            `json:"dropped"`
	Completed uint64            `json:"completed"`
	OK        uint64            `json:"ok"`
	Errors    map[string]uint64 `json:"errors,omitempty"` // failures by class (not counting drops)
	Latency   Latency           `json:"latency"`
	// LagMaxMs is how far behind its due time the generator sent its latest request of the second: the
	// generator's own share of the latencies (timer granularity, CPU starvation).
	LagMaxMs float64 `json:"lag_max_ms"`
	// Slowest is the slowest of the requests due in this second that were sent (nil: none was).
	Slowest *SlowRequest `json:"slowest,omitempty"`
}

// SlowRequest is a second's slowest request: what it was, how it ended and, when the run traced its
// requests (Options.Trace), the trace to look it up by in a trace store.
type SlowRequest struct {
	LatencyMs float64 `json:"latency_ms"`
	Kind      string  `json:"kind"`
	Method    string  `json:"method,omitempty"`
	Path      string  `json:"path,omitempty"`
	// Status is the HTTP status of the answer; 0 when none came (Class says why: timeout, connect…).
	Status  int    `json:"status,omitempty"`
	Class   string `json:"class,omitempty"`
	OK      bool   `json:"ok"`
	TraceID string `json:"trace_id,omitempty"`
}

// Failed is the number of requests due in this second that were sent and failed.
func (s Second) Failed() uint64 { return sum(s.Errors) }

// SuccessRate is the share of the requests due in this second that succeeded, dropped ones counting as
// failures; ok is false for a second with no requests due.
func (s Second) SuccessRate() (rate float64, ok bool) {
	n := s.Sent + s.Dropped
	if n == 0 {
		return 0, false
	}
	return float64(s.OK) / float64(n), true
}

// Totals sums a whole run.
type Totals struct {
	Scheduled uint64 `json:"scheduled"` // requests that came due: Sent + Dropped
	Sent      uint64 `json:"sent"`
	Dropped   uint64 `json:"dropped"`
	OK        uint64 `json:"ok"`
	// Errors are failures by class; Expected are OK requests with a business outcome (ExpectStatus).
	Errors   map[string]uint64 `json:"errors,omitempty"`
	Expected map[string]uint64 `json:"expected,omitempty"`
	// Latency is over every completed request, failures included (a timeout is a slow answer too).
	Latency Latency `json:"latency"`
	// Throughput is OK requests per second of the span; ErrorRate is (failed + dropped) / scheduled and
	// DroppedRate dropped / scheduled, both fractions in [0, 1].
	Throughput  float64 `json:"throughput_rps"`
	ErrorRate   float64 `json:"error_rate"`
	DroppedRate float64 `json:"dropped_rate"`
	LagMaxMs    float64 `json:"lag_max_ms"`
}

// Failed is the number of sent requests that failed.
func (t Totals) Failed() uint64 { return sum(t.Errors) }

// KindTotals sums one request kind of the mix.
type KindTotals struct {
	Name     string            `json:"name"`
	Sent     uint64            `json:"sent"`
	Dropped  uint64            `json:"dropped"`
	OK       uint64            `json:"ok"`
	Errors   map[string]uint64 `json:"errors,omitempty"`
	Expected map[string]uint64 `json:"expected,omitempty"`
	Latency  Latency           `json:"latency"`
}

// ActionRecord tells when an Action ran, in seconds from the start of the run.
type ActionRecord struct {
	Name string `json:"name"`
	// At is when it was due; Started and Finished when it really ran. Skipped is set for an action that
	// never started because the run ended first.
	At       float64 `json:"at"`
	Started  float64 `json:"started"`
	Finished float64 `json:"finished"`
	Error    string  `json:"error,omitempty"`
	Skipped  bool    `json:"skipped,omitempty"`
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
