package experiment

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/tracestore"
	"github.com/resilience-lab/lab/scenarios/measure"
)

// Second is one second of a run, over every stream.
type Second struct {
	T       int     `json:"t"`
	Target  float64 `json:"target"`
	Sent    uint64  `json:"sent"`
	OK      uint64  `json:"ok"`
	Failed  uint64  `json:"failed"`
	Dropped uint64  `json:"dropped"`
	// Success is OK ÷ (sent + dropped); NaN for a second with no request due.
	Success Num `json:"success"`
	// P50/P99/Max are in ms: the worst of the streams' (percentiles of different streams cannot be
	// merged from their summaries; the worst is an upper bound).
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// Confirmed is the share of the orders placed this second that came back confirmed (NaN: none
	// placed).
	Confirmed Num `json:"confirmed"`
	// Streams holds each stream's success rate and p99 this second.
	Streams map[string]StreamSecond `json:"streams"`
	// Breakers holds the state of every watched breaker at the end of the second (0 closed, 1
	// half-open, 2 open); Policy the policies' counters' growth during it, by "service metric link".
	Breakers map[string]float64 `json:"breakers,omitempty"`
	Policy   map[string]float64 `json:"policy,omitempty"`
	// Backlog is the most outbox rows waiting for the broker at a scrape in this second (catalog,
	// payments and orders together; NaN: not scraped).
	Backlog Num `json:"outbox_backlog"`
	// Slowest is the slowest request due in this second over every stream, with its trace id (nil:
	// none sent).
	Slowest *Slowest `json:"slowest,omitempty"`
}

// Slowest is a second's slowest request and the stream that sent it.
type Slowest struct {
	Stream string `json:"stream"`
	loadtest.SlowRequest
}

// StreamSecond is one stream's second.
type StreamSecond struct {
	Success Num     `json:"success"`
	P99     float64 `json:"p99_ms"`
	OK      uint64  `json:"ok"`
	Sent    uint64  `json:"sent"`
}

// combine merges the streams' per-second results.
func combine(streams map[string]*loadtest.Result, seconds int) []Second {
	out := make([]Second, seconds)
	for i := range out {
		out[i] = Second{T: i, Streams: map[string]StreamSecond{}}
	}
	for name, res := range streams {
		for _, s := range res.Seconds {
			if s.T < 0 || s.T >= seconds {
				continue
			}
			o := &out[s.T]
			o.Target += s.Target
			o.Sent += s.Sent
			o.OK += s.OK
			o.Failed += s.Failed()
			o.Dropped += s.Dropped
			o.P50 = math.Max(o.P50, s.Latency.P50)
			o.P99 = math.Max(o.P99, s.Latency.P99)
			o.Max = math.Max(o.Max, s.Latency.Max)
			rate, ok := s.SuccessRate()
			if !ok {
				rate = math.NaN()
			}
			o.Streams[name] = StreamSecond{Success: Num(rate), P99: s.Latency.P99, OK: s.OK, Sent: s.Sent}
			if s.Slowest != nil && (o.Slowest == nil || s.Slowest.LatencyMs > o.Slowest.LatencyMs) {
				o.Slowest = &Slowest{Stream: name, SlowRequest: *s.Slowest}
			}
		}
	}
	for i := range out {
		if n := out[i].Sent + out[i].Dropped; n > 0 {
			out[i].Success = Num(float64(out[i].OK) / float64(n))
		} else {
			out[i].Success = Num(math.NaN())
		}
	}
	return out
}

// steady reports whether second s meets t on the given stream ("" = every stream).
func steady(s Second, t Thresholds, stream string) bool {
	success, p99 := float64(s.Success), s.P99
	if stream != "" {
		st, ok := s.Streams[stream]
		if !ok {
			return false
		}
		success, p99 = float64(st.Success), st.P99
	}
	if math.IsNaN(success) || success < t.MinSuccess {
		return false
	}
	if c := float64(s.Confirmed); t.MinConfirmed > 0 && !math.IsNaN(c) && c < t.MinConfirmed {
		return false
	}
	return t.MaxP99 == 0 || p99 <= float64(t.MaxP99.Milliseconds())
}

// meanConfirmed is the mean share of orders confirmed per second over seconds [from, to) (NaN: no
// order placed).
func meanConfirmed(secs []Second, from, to int) float64 {
	var n, sum float64
	for i := max(from, 0); i < min(to, len(secs)); i++ {
		if c := float64(secs[i].Confirmed); !math.IsNaN(c) {
			n++
			sum += c
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / n
}

// addPolicySeries puts the scrapes on the seconds of the run: each second gets the breaker states read
// last in it and the growth of every policy counter during it.
func addPolicySeries(secs []Second, scrapes []measure.Scrape, start time.Time, watch []Watch) {
	if len(scrapes) == 0 {
		return
	}
	for i := range secs {
		secs[i].Backlog = Num(math.NaN())
	}
	prev := scrapes[0]
	for _, sc := range scrapes[1:] {
		t := int(sc.At.Sub(start) / time.Second)
		if t < 0 || t >= len(secs) {
			prev = sc
			continue
		}
		s := &secs[t]
		if b := outboxBacklog(sc); math.IsNaN(float64(s.Backlog)) || b > float64(s.Backlog) {
			s.Backlog = Num(b)
		}
		if s.Breakers == nil {
			s.Breakers, s.Policy = map[string]float64{}, map[string]float64{}
		}
		for _, w := range watch {
			k := measure.Key{Service: w.Service, Metric: "resilience_breaker_state", Downstream: w.Downstream}
			if v, ok := sc.Values[k]; ok {
				s.Breakers[w.Service+"→"+w.Downstream] = v
			}
		}
		for k := range sc.Values {
			if strings.HasPrefix(k.Metric, "resilience_") && measure.IsCounter(k.Metric) {
				if d := measure.Increase(prev, sc, k); d > 0 {
					name := strings.TrimSuffix(strings.TrimPrefix(k.Metric, "resilience_"), "_total")
					label := strings.TrimSpace(k.Service + " " + name + " " + k.Downstream)
					if k.To != "" {
						label += "→" + k.To
					}
					s.Policy[label] += d
				}
			}
		}
		prev = sc
	}
	// A second without a scrape keeps the states of the one before.
	for i := 1; i < len(secs); i++ {
		for k, v := range secs[i-1].Breakers {
			if secs[i].Breakers == nil {
				secs[i].Breakers = map[string]float64{}
			}
			if _, ok := secs[i].Breakers[k]; !ok {
				secs[i].Breakers[k] = v
			}
		}
	}
}

// detection finds the first moment after on at which a watched breaker was seen open: from the
// policies' own event timelines when they have one, else from the scrapes.
func detection(on time.Time, scrapes []measure.Scrape, events []PolicyEvent, watch []Watch) (at time.Time, source string) {
	for _, e := range events {
		if e.Kind == "state_change" && e.To == "open" && !e.Time.Before(on) && watched(watch, e.Service, e.Downstream) {
			if at.IsZero() || e.Time.Before(at) {
				at, source = e.Time, "policy event"
			}
		}
	}
	if !at.IsZero() {
		return at, source
	}
	for i, sc := range scrapes {
		if sc.At.Before(on) {
			continue
		}
		for _, w := range watch {
			k := measure.Key{Service: w.Service, Metric: "resilience_breaker_state", Downstream: w.Downstream}
			rej := measure.Key{Service: w.Service, Metric: "resilience_breaker_rejected_total", Downstream: w.Downstream}
			opened := sc.Values[k] == 2
			if i > 0 && measure.Increase(scrapes[i-1], sc, rej) > 0 {
				opened = true
			}
			if opened {
				return sc.At, "metrics scrape"
			}
		}
	}
	return time.Time{}, ""
}

// breakerClosed finds when the last watched breaker closed for good after off.
func breakerClosed(off time.Time, scrapes []measure.Scrape, events []PolicyEvent, watch []Watch) time.Time {
	var last time.Time
	for _, e := range events {
		if e.Kind == "state_change" && watched(watch, e.Service, e.Downstream) && !e.Time.Before(off) && e.To == "closed" {
			if e.Time.After(last) {
				last = e.Time
			}
		}
	}
	if !last.IsZero() {
		return last
	}
	for _, sc := range scrapes {
		if sc.At.Before(off) {
			continue
		}
		allClosed := true
		for _, w := range watch {
			k := measure.Key{Service: w.Service, Metric: "resilience_breaker_state", Downstream: w.Downstream}
			if v, ok := sc.Values[k]; !ok || v != 0 {
				allClosed = false
			}
		}
		if allClosed {
			return sc.At
		}
	}
	return time.Time{}
}

func watched(watch []Watch, service, downstream string) bool {
	for _, w := range watch {
		if w.Service == service && w.Downstream == downstream {
			return true
		}
	}
	return false
}

// recovery returns the offset (s) of the first second at or after off that starts n consecutive
// seconds meeting t on the primary stream, or -1.
func recovery(secs []Second, off float64, t Thresholds, stream string, n int) float64 {
	first := int(math.Floor(off))
	for i := max(first, 0); i+n <= len(secs); i++ {
		ok := true
		for j := i; j < i+n; j++ {
			if !steady(secs[j], t, stream) {
				ok = false
				break
			}
		}
		if ok {
			return float64(i)
		}
	}
	return -1
}

// amplification is calls arriving at the callee's route per call the caller served, over the scrapes
// between from and to.
func amplification(a Amplification, scrapes []measure.Scrape, from, to time.Time) (float64, float64, float64) {
	var first, last *measure.Scrape
	for i := range scrapes {
		if !scrapes[i].At.Before(from) && first == nil {
			first = &scrapes[i]
		}
		if !scrapes[i].At.After(to) {
			last = &scrapes[i]
		}
	}
	if first == nil || last == nil || !last.At.After(first.At) {
		return math.NaN(), 0, 0
	}
	sum := func(service, routes string) float64 {
		var total float64
		for _, route := range strings.Split(routes, ",") {
			for k := range last.Values {
				if k.Service == service && k.Metric == "http_server_requests_total" && k.Route == strings.TrimSpace(route) {
					total += measure.Increase(*first, *last, k)
				}
			}
		}
		return total
	}
	served, arrived := sum(a.Caller, a.CallerRoute), sum(a.Callee, a.CalleeRoute)
	if served == 0 {
		return math.NaN(), served, arrived
	}
	return arrived / served, served, arrived
}

// windowStats are the success rate (sum of OK over sum due) and the worst p99 of the primary stream
// over seconds [from, to).
func windowStats(secs []Second, from, to int, stream string) (success, p99 float64) {
	var ok, due uint64
	for i := max(from, 0); i < min(to, len(secs)); i++ {
		st := secs[i].Streams[stream]
		ok += st.OK
		due += st.Sent
		if !math.IsNaN(st.P99) {
			p99 = math.Max(p99, st.P99)
		}
	}
	if due == 0 {
		return math.NaN(), p99
	}
	return float64(ok) / float64(due), p99
}

// worst returns the lowest success rate and the highest p99 of any second.
func worst(secs []Second) (success, p99 float64) {
	success = math.NaN()
	for _, s := range secs {
		if v := float64(s.Success); !math.IsNaN(v) && (math.IsNaN(success) || v < success) {
			success = v
		}
		p99 = math.Max(p99, s.P99)
	}
	return success, p99
}

// faultOnOff returns when the faults went on (first) and off (last) from the schedule's events.
func faultOnOff(events []fault.Event) (on, off time.Time) {
	for _, e := range events {
		if e.On && (on.IsZero() || e.At.Before(on)) {
			on = e.At
		}
		if !e.On && e.At.After(off) {
			off = e.At
		}
	}
	return on, off
}

// score is the weighted share of checks that held, in percent.
func score(checks []Check) float64 {
	var total, got float64
	for _, c := range checks {
		total += c.Weight
		if c.OK {
			got += c.Weight
		}
	}
	if total == 0 {
		return 0
	}
	return math.Round(1000*got/total) / 10
}

func fmtSeconds(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f s", *v)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Num is a float that is written to JSON as null when it is NaN (nothing measured).
type Num float64

func (n Num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatFloat(float64(n), 'g', 6, 64)), nil
}

func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Num(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	*n = Num(f)
	return err
}

// slowSeconds are the n seconds of [from, to) whose slowest request was slowest (all seconds when that
// window has none), slowest first.
func slowSeconds(secs []Second, from, to, n int) []Second {
	pick := func(from, to int) []Second {
		var out []Second
		for i := max(from, 0); i < min(to, len(secs)); i++ {
			if secs[i].Slowest != nil {
				out = append(out, secs[i])
			}
		}
		return out
	}
	out := pick(from, to)
	if len(out) == 0 {
		out = pick(0, len(secs))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Slowest.LatencyMs > out[j].Slowest.LatencyMs })
	return out[:min(n, len(out))]
}

// Hop is one step of a traced request: a service's handling of it (a server span), a call over a link
// with its policies (the link's span, its HTTP attempts folded in), or other work (a consumer's).
type Hop struct {
	Depth      int     `json:"depth"`
	Service    string  `json:"service"`
	Name       string  `json:"name"`
	DurationMs float64 `json:"duration_ms"`
	Error      bool    `json:"error,omitempty"`
	// Status is the HTTP status a server span answered, or a failed call's outcome.
	Status string `json:"status,omitempty"`
	// Attempts are a link call's HTTP attempts, each as its status ("503", "200", "error").
	Attempts []string `json:"attempts,omitempty"`
	// Events are the policy decisions and errors recorded on the span, with their counts.
	Events []string `json:"events,omitempty"`
	// Critical marks the hops on the critical path: from the root, each time the longest child.
	Critical bool `json:"critical,omitempty"`
}

// hops turns a trace into its hops, depth first in start order. The root is the span whose parent is
// not in the trace (the load driver's span is never exported); HTTP client spans are folded into their
// link's hop as attempts, and the callee's server span of each attempt hangs under the link.
func hops(t *tracestore.Trace) []Hop {
	byID := map[string]*tracestore.Span{}
	for i := range t.Spans {
		byID[t.Spans[i].SpanID] = &t.Spans[i]
	}
	children := map[string][]*tracestore.Span{}
	var roots []*tracestore.Span
	for i := range t.Spans {
		sp := &t.Spans[i]
		if _, ok := byID[sp.ParentID]; ok && sp.ParentID != sp.SpanID {
			children[sp.ParentID] = append(children[sp.ParentID], sp)
		} else {
			roots = append(roots, sp) // spans arrive sorted by start
		}
	}
	// kids are a span's children with the client spans replaced by their own children.
	kids := func(sp *tracestore.Span) (out []*tracestore.Span, attempts []string) {
		for _, c := range children[sp.SpanID] {
			if c.Kind == "client" {
				attempts = append(attempts, attemptStatus(c))
				out = append(out, children[c.SpanID]...)
				continue
			}
			out = append(out, c)
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
		return out, attempts
	}
	var out []Hop
	seen := map[string]bool{}
	var walk func(sp *tracestore.Span, depth int, critical bool)
	walk = func(sp *tracestore.Span, depth int, critical bool) {
		if seen[sp.SpanID] { // a malformed trace must not loop
			return
		}
		seen[sp.SpanID] = true
		cs, attempts := kids(sp)
		h := Hop{Depth: depth, Service: sp.Service, Name: sp.Name, DurationMs: sp.DurationMs, Error: sp.Status == "error",
			Events: eventCounts(sp.Events), Critical: critical}
		if link, ok := sp.Attributes["resilience.link"].(string); ok {
			caller, callee, _ := strings.Cut(link, "-")
			h.Name = caller + "→" + callee
			if op, ok := sp.Attributes["resilience.operation"].(string); ok {
				h.Name += " " + op
			}
			h.Attempts = attempts
			if o, ok := sp.Attributes["resilience.outcome"].(string); ok && o != "success" {
				h.Status = o
			}
		} else if code, ok := sp.Attributes["http.response.status_code"].(float64); ok {
			h.Status = strconv.Itoa(int(code))
		}
		out = append(out, h)
		longest := -1
		for i, c := range cs {
			if longest < 0 || c.DurationMs > cs[longest].DurationMs {
				longest = i
			}
		}
		for i, c := range cs {
			walk(c, depth+1, critical && i == longest)
		}
	}
	for i, r := range roots {
		walk(r, 0, i == 0)
	}
	return out
}

func attemptStatus(client *tracestore.Span) string {
	if code, ok := client.Attributes["http.response.status_code"].(float64); ok {
		return strconv.Itoa(int(code))
	}
	if client.Status == "error" {
		return "error"
	}
	return "?"
}

// eventCounts names a span's events with their counts: "retry.retry ×2", "breaker.rejection".
func eventCounts(events []tracestore.Event) []string {
	counts := map[string]int{}
	var order []string
	for _, e := range events {
		if counts[e.Name] == 0 {
			order = append(order, e.Name)
		}
		counts[e.Name]++
	}
	out := make([]string, 0, len(order))
	for _, name := range order {
		if n := counts[name]; n > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", name, n))
		} else {
			out = append(out, name)
		}
	}
	return out
}
