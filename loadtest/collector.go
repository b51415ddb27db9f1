package loadtest

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, up to an hour, to three significant figures.
const (
	histMaxMicros = int64(time.Hour / time.Microsecond)
	histSigFigs   = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, histSigFigs) }

func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < 1 {
		us = 1
	} else if us > histMaxMicros {
		us = histMaxMicros
	}
	_ = h.RecordValue(us) // cannot fail: the value was clamped into range
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	q := func(p float64) float64 { return ms(time.Duration(h.ValueAtQuantile(p)) * time.Microsecond) }
	return Latency{
		P50:  q(50),
		P90:  q(90),
		P95:  q(95),
		P99:  q(99),
		Max:  ms(time.Duration(h.Max()) * time.Microsecond),
		Mean: math.Round(h.Mean()) / 1e3,
	}
}

// doneEvent reports one finished request to the collector.
type doneEvent struct {
	second    int32 // second the request was due in
	kind      int32
	status    int32         // HTTP status; 0 when no answer came
	latency   time.Duration // from due time to end of body
	completed time.Duration // offset of the completion from the start
	outcome   Outcome
	// What a second's slowest request cites: its method and path (the request's own strings, not
	// copies) and its trace id.
	method, path string
	trace        TraceID
}

// closeEvent tells the collector that every request due in a second has been sent or dropped.
type closeEvent struct {
	second  int
	target  float64
	sent    uint64
	dropped uint64
	lagMax  time.Duration
}

// Progress is handed to Options.Progress once per second of the schedule.
type Progress struct {
	// Second is the second that just ended, with the requests due in it that have completed so far;
	// its Completed is final.
	Second   Second
	InFlight int64
	// Totals of the run so far: requests sent and dropped, and completions by outcome.
	Sent, Dropped, OK, Failed uint64
}

type secondAcc struct {
	Second
	closed, final bool
	done          uint64
	hist          *hdrhistogram.Histogram
	// slowest is the slowest request so far (kept by value: no allocation per request); it becomes
	// Second.Slowest when the second is finalized.
	slowest    doneEvent
	hasSlowest bool
}

type kindAcc struct {
	KindTotals
	hist *hdrhistogram.Histogram
}

// collector turns request events into per-second and total statistics. It is used from one goroutine:
// HDR histograms are not safe for concurrent use, and funnelling events through one owner keeps the
// request path free of locks.
type collector struct {
	secs     []*secondAcc
	pool     []*hdrhistogram.Histogram // histograms of finalized seconds, for reuse
	total    *hdrhistogram.Histogram
	kinds    []kindAcc
	totals   Totals
	lagMax   time.Duration
	progress func(Progress)
	inflight func() int64
}

func newCollector(kindNames []string, progress func(Progress), inflight func() int64) *collector {
	c := &collector{
		total:    newHist(),
		progress: progress,
		inflight: inflight,
		totals:   Totals{Errors: map[string]uint64{}, Expected: map[string]uint64{}},
	}
	for _, n := range kindNames {
		c.kinds = append(c.kinds, kindAcc{
			KindTotals: KindTotals{Name: n, Errors: map[string]uint64{}, Expected: map[string]uint64{}},
			hist:       newHist(),
		})
	}
	return c
}

func (c *collector) sec(i int) *secondAcc {
	for len(c.secs) <= i {
		c.secs = append(c.secs, &secondAcc{Second: Second{T: len(c.secs), Errors: map[string]uint64{}}})
	}
	return c.secs[i]
}

func (c *collector) done(ev doneEvent) {
	acc := c.sec(int(ev.second))
	acc.done++
	k := &c.kinds[ev.kind]
	if ev.outcome.OK {
		acc.OK++
		c.totals.OK++
		k.OK++
		if ev.outcome.Class != "" {
			c.totals.Expected[ev.outcome.Class]++
			k.Expected[ev.outcome.Class]++
		}
	} else {
		acc.Errors[ev.outcome.Class]++
		c.totals.Errors[ev.outcome.Class]++
		k.Errors[ev.outcome.Class]++
	}
	if ev.outcome.Class != ClassBuild { // a request never sent has no latency
		if acc.hist == nil {
			acc.hist = c.takeHist()
		}
		record(acc.hist, ev.latency)
		record(k.hist, ev.latency)
		if !acc.hasSlowest || ev.latency > acc.slowest.latency {
			acc.slowest, acc.hasSlowest = ev, true
		}
	}
	if ev.completed >= 0 {
		c.sec(int(ev.completed/time.Second)).Completed++
	}
	c.tryFinalize(acc)
}

func (c *collector) close(ev closeEvent) {
	acc := c.sec(ev.second)
	acc.Target = ev.target
	acc.Sent += ev.sent
	acc.Dropped += ev.dropped
	acc.LagMaxMs = ms(ev.lagMax)
	acc.closed = true
	c.totals.Sent += ev.sent
	c.totals.Dropped += ev.dropped
	if ev.lagMax > c.lagMax {
		c.lagMax = ev.lagMax
	}
	c.tryFinalize(acc)
	if c.progress != nil {
		p := Progress{
			Second:  acc.Second,
			Sent:    c.totals.Sent,
			Dropped: c.totals.Dropped,
			OK:      c.totals.OK,
			Failed:  c.totals.Failed(),
		}
		if !acc.final {
			p.Second.Latency = summarize(acc.hist)
		}
		p.Second.Errors = copyMap(acc.Errors)
		if c.inflight != nil {
			p.InFlight = c.inflight()
		}
		c.progress(p)
	}
}

// tryFinalize summarises a second once all its requests are accounted for, folds its histogram into the
// run's total and recycles it, so a long run holds only the histograms of seconds still in flight.
func (c *collector) tryFinalize(acc *secondAcc) {
	if !acc.closed || acc.final || acc.done < acc.Sent {
		return
	}
	c.finalize(acc)
}

func (c *collector) finalize(acc *secondAcc) {
	acc.final = true
	if acc.hasSlowest {
		ev := acc.slowest
		acc.Slowest = &SlowRequest{LatencyMs: ms(ev.latency), Kind: c.kinds[ev.kind].Name, Method: ev.method,
			Path: ev.path, Status: int(ev.status), Class: ev.outcome.Class, OK: ev.outcome.OK, TraceID: ev.trace.String()}
	}
	if acc.hist == nil {
		return
	}
	acc.Latency = summarize(acc.hist)
	c.total.Merge(acc.hist)
	acc.hist.Reset()
	c.pool = append(c.pool, acc.hist)
	acc.hist = nil
}

func (c *collector) takeHist() *hdrhistogram.Histogram {
	if n := len(c.pool); n > 0 {
		h := c.pool[n-1]
		c.pool = c.pool[:n-1]
		return h
	}
	return newHist()
}

// kindCounts adds the scheduler's per-kind sent and dropped counts.
func (c *collector) kindCounts(sent, dropped []uint64) {
	for i := range c.kinds {
		c.kinds[i].Sent += sent[i]
		c.kinds[i].Dropped += dropped[i]
	}
}

// result finalizes every second (after the run, all requests have completed) and assembles the totals.
// seconds is the number of seconds the schedule covered; completions after that count only in totals.
func (c *collector) result(seconds int, span time.Duration) (Totals, []Second, []KindTotals) {
	for _, acc := range c.secs {
		if !acc.final {
			c.finalize(acc)
		}
	}
	out := make([]Second, seconds)
	for i := range out {
		out[i] = c.sec(i).Second
	}
	t := c.totals
	t.Scheduled = t.Sent + t.Dropped
	t.Latency = summarize(c.total)
	if span > 0 {
		t.Throughput = float64(t.OK) / span.Seconds()
	}
	t.ErrorRate = ratio(t.Failed()+t.Dropped, t.Scheduled)
	t.DroppedRate = ratio(t.Dropped, t.Scheduled)
	t.LagMaxMs = ms(c.lagMax)
	kinds := make([]KindTotals, len(c.kinds))
	for i, k := range c.kinds {
		kinds[i] = k.KindTotals
		kinds[i].Latency = summarize(k.hist)
	}
	return t, out, kinds
}

func copyMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
