package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/tracestore"
	"github.com/resilience-lab/lab/scenarios/measure"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/platform"
)

// Check is one judged item: a hypothesis phase or an expectation.
type Check struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"` // hypothesis or expectation
	Weight float64 `json:"weight"`
	OK     bool    `json:"ok"`
	Got    string  `json:"got"`
	// Reported checks count towards the score but not the verdict (a baseline's recovery).
	Reported bool `json:"reported,omitempty"`
}

// PolicyEvent is one event from a service's /debug/resilience timeline (resilience/policy.Event).
type PolicyEvent struct {
	Time       time.Time `json:"time"`
	Service    string    `json:"service"`
	Downstream string    `json:"downstream"`
	Policy     string    `json:"policy"`
	Kind       string    `json:"kind"`
	From       string    `json:"from,omitempty"`
	To         string    `json:"to,omitempty"`
}

// Report is everything a run measured and how it was judged.
type Report struct {
	ID          string                       `json:"id"`
	Variant     string                       `json:"variant"`
	Title       string                       `json:"title"`
	Teaches     string                       `json:"teaches"`
	Started     time.Time                    `json:"started"`
	DurationS   float64                      `json:"duration_s"`
	Env         map[string]map[string]string `json:"env"`
	Policy      string                       `json:"policy"`
	Faults      []string                     `json:"faults"`
	Steady      string                       `json:"steady_state"`
	During      string                       `json:"during_fault_hypothesis,omitempty"`
	Streams     []Stream                     `json:"streams"`
	FaultEvents []fault.Event                `json:"fault_events"`
	// FaultOnS and FaultOffS are when the faults went on and off, in seconds from the start.
	FaultOnS  float64 `json:"fault_on_s"`
	FaultOffS float64 `json:"fault_off_s"`

	Seconds []Second `json:"seconds"`
	// TTD is fault on → a watched breaker open (nil: not detected, or nothing watched); TTDBoundS is
	// failures needed ÷ arrival rate (Watch.DetectionBound), TTDFailuresNeeded those failures. TTR is
	// fault off → RecoverSeconds steady seconds (nil: never); TTRBoundS is the sleep window plus two
	// probe intervals. BreakerClosedS is fault off → the watched breaker closed for good.
	TTD               *float64 `json:"ttd_s"`
	TTDSource         string   `json:"ttd_source,omitempty"`
	TTDBoundS         float64  `json:"ttd_bound_s,omitempty"`
	TTDFailuresNeeded int      `json:"ttd_failures_needed,omitempty"`
	TTR               *float64 `json:"ttr_s"`
	TTRBoundS         float64  `json:"ttr_bound_s,omitempty"`
	BreakerClosedS    *float64 `json:"breaker_closed_s,omitempty"`
	// During the fault, on the primary stream; and the worst second of the run over all streams.
	DuringSuccess Num     `json:"during_success"`
	DuringP99     float64 `json:"during_p99_ms"`
	WorstSuccess  Num     `json:"worst_success"`
	// DuringConfirmed is the mean share of orders confirmed per second of the fault.
	DuringConfirmed Num     `json:"during_confirmed"`
	WorstP99        float64 `json:"worst_p99_ms"`
	// StreamDuring holds every stream's success and p99 during the fault.
	StreamDuring map[string][2]Num `json:"stream_during"`
	// Amplification is calls at the callee ÷ calls the caller served during the fault.
	Amplification        Num                      `json:"amplification"`
	AmplificationServed  float64                  `json:"amplification_served"`
	AmplificationArrived float64                  `json:"amplification_arrived"`
	PolicyTotals         map[string]float64       `json:"policy_totals,omitempty"`
	PolicyEvents         []PolicyEvent            `json:"policy_events,omitempty"`
	Accounting           *measure.Accounting      `json:"accounting,omitempty"`
	Events               *measure.EventAccounting `json:"events,omitempty"`
	// PeakBacklog is the most outbox rows waiting for the broker at any scrape (catalog, payments and
	// orders together); FinalConfirmedDuring the share of the orders placed during the fault that
	// ended confirmed (pending ones are completed later). Both count the orders created from the fault's
	// start to a second before its end.
	PeakBacklog          float64 `json:"peak_outbox_backlog"`
	FinalConfirmedDuring Num     `json:"final_confirmed_during"`
	// ChargedDuring is the share of the orders created during the fault that payments charged: work the
	// callee did, wanted or not.
	ChargedDuring Num `json:"charged_during"`
	// CalleeRate is Scenario.CalleeLoad\'s requests per second during the fault.
	CalleeRate Num                        `json:"callee_rps"`
	LoadTotals map[string]loadtest.Totals `json:"load_totals"`
	// SlowTraces cite the traces of the fault's slowest seconds (SlowTraceSeconds of them), broken down
	// by hop from the lab's trace store when the report was made.
	SlowTraces []TraceCitation `json:"slow_traces,omitempty"`
	Aborted    string          `json:"aborted,omitempty"`
	Checks     []Check         `json:"checks"`
	Score      float64         `json:"score"`
	Verdict    string          `json:"verdict"` // pass or fail
	Problems   []string        `json:"problems,omitempty"`
}

// TraceCitation is a second's slowest request and what its trace showed.
type TraceCitation struct {
	T       int     `json:"t"`
	Slowest Slowest `json:"slowest"`
	// Hops break the trace down (nil when it could not be read; Missing says why). Spans counts the
	// spans the store held.
	Hops    []Hop  `json:"hops,omitempty"`
	Spans   int    `json:"spans,omitempty"`
	Missing string `json:"missing,omitempty"`
}

// TraceReader is a Lab whose services' traces can be read back (lab.Stack, through its Toxiproxy's
// trace store). Run cites traces only on such a lab.
type TraceReader interface {
	Trace(ctx context.Context, traceID string) (*tracestore.Trace, error)
}

// SlowTraceSeconds is how many of the fault's slowest seconds a report cites the trace of.
const SlowTraceSeconds = 3

// exportLag is how long after a request ended its spans may still be on their way to the store: the
// services' batching exporters send every 5 s (the OTel SDK's default), plus a margin.
const exportLag = 6 * time.Second

// citeTraces reads the traces of the slowest requests of the fault's slowest seconds. A trace the
// store does not hold (evicted, or its spans not exported) is cited as missing, never an error: the
// report is about the run, the traces only illustrate it.
func citeTraces(ctx context.Context, lab Lab, rep *Report) []TraceCitation {
	onSec, offSec := faultSeconds(rep)
	secs := slowSeconds(rep.Seconds, onSec, offSec, SlowTraceSeconds)
	reader, ok := lab.(TraceReader)
	out := make([]TraceCitation, 0, len(secs))
	for _, s := range secs {
		c := TraceCitation{T: s.T, Slowest: *s.Slowest}
		switch {
		case s.Slowest.TraceID == "":
			c.Missing = "the request carried no trace id"
		case !ok:
			c.Missing = "the lab has no trace store"
		default:
			// The request ended by the end of its second plus its latency; its last spans reach the
			// store within exportLag of that. Usually that time has long passed (the recovery phase,
			// the accounting).
			ended := rep.Started.Add(time.Duration(s.T+1)*time.Second + time.Duration(s.Slowest.LatencyMs*float64(time.Millisecond)))
			c.Hops, c.Spans, c.Missing = readTrace(ctx, reader, s.Slowest.TraceID, ended.Add(exportLag))
		}
		out = append(out, c)
	}
	return out
}

// readTrace fetches one trace once its spans have had time to arrive (readyAt).
func readTrace(ctx context.Context, reader TraceReader, id string, readyAt time.Time) ([]Hop, int, string) {
	if wait := time.Until(readyAt); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	t, err := reader.Trace(ctx, id)
	switch {
	case errors.Is(err, tracestore.ErrNotFound) || (err == nil && len(t.Spans) == 0):
		return nil, 0, "not in the trace store (evicted, or its spans were never exported)"
	case err != nil:
		return nil, 0, "trace store unreadable: " + err.Error()
	}
	return hops(t), len(t.Spans), ""
}

// Passed reports whether every check held and nothing went wrong.
func (r *Report) Passed() bool { return r.Verdict == "pass" }

var runSeq atomic.Int64

// Run plays sc on lab and judges it. An error means the experiment could not be run (the stack broke);
// a scenario that ran and failed its checks returns a report with Verdict "fail".
func Run(ctx context.Context, lab Lab, sc Scenario, progress io.Writer) (*Report, error) {
	sc = sc.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	rep := &Report{ID: sc.ID, Variant: sc.Variant, Title: sc.Title, Teaches: sc.Teaches, Env: sc.Env, Policy: sc.Policy,
		Steady: sc.Steady.String(), Streams: sc.Streams, DurationS: sc.Duration.Seconds()}
	if sc.During != nil {
		rep.During = sc.During.String()
	}
	for _, st := range sc.Faults {
		rep.Faults = append(rep.Faults, fmt.Sprintf("%s from %s to %s", st.Fault.Name(), st.From, endOf(st, sc.Duration)))
	}
	if err := lab.Reconfigure(ctx, sc.Env); err != nil {
		return nil, err
	}
	if err := lab.Reset(ctx); err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("%s-%s-%d-%d", sc.ID, sc.Variant[:1], time.Now().Unix()%100000, runSeq.Add(1))
	shop, err := measure.NewShop(ctx, lab.GatewayURL(), prefix, 8)
	if err != nil {
		return nil, fmt.Errorf("experiment %s: %w", sc.Name(), err)
	}
	stockBefore, err := shop.ProductStock(ctx)
	if err != nil {
		return nil, err
	}
	schedule, err := fault.NewSchedule(lab.FaultTarget(), sc.Faults...)
	if err != nil {
		return nil, err
	}
	// The faults come off whatever happens below.
	defer func() { _ = schedule.Close(context.WithoutCancel(ctx)) }()

	scraper := &measure.Scraper{
		URL:      func(svc string) string { return lab.ObserveURL(svc, "metrics") },
		Services: []string{"gateway", "orders", "catalog", "payments", "notifications"},
		Interval: 250 * time.Millisecond,
	}
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	defer stopScrape()
	scraped := make(chan struct{})
	go func() { defer close(scraped); scraper.Run(scrapeCtx) }()

	runCtx, abort := context.WithCancel(ctx)
	defer abort()
	client := loadtest.NewClient(512)
	results := map[string]*loadtest.Result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var badStreak int
	start := time.Now()
	schedule.Start(start)
	rep.Started = start.UTC()
	fmt.Fprintf(progress, "experiment %s: %s\n", sc.Name(), sc.Title)
	for i, st := range sc.Streams {
		var ks []loadtest.Kind
		kinds := shop.Kinds(prefix+"-"+st.Name, st.Customers...)
		for _, name := range sortedKeys(st.Kinds) {
			k := kinds[name]
			k.Weight = st.Kinds[name]
			ks = append(ks, k)
		}
		if st.Deadline > 0 {
			ks = withDeadline(ks, st.Deadline)
		}
		mix, err := loadtest.NewMix(ks...)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", st.Name, err)
		}
		opts := loadtest.Options{
			Profile:     loadtest.Constant(st.Rate, sc.Duration),
			Mix:         mix,
			MaxRequests: uint64(st.Rate*sc.Duration.Seconds()*1.5) + 10,
			MaxInFlight: 400,
			Timeout:     sc.ClientTimeout,
			Client:      client,
			// Every request starts a sampled trace, so each second's slowest can be looked up by hop.
			Trace: true,
		}
		if i == 0 {
			opts.Actions = schedule.Actions()
			opts.Progress = func(p loadtest.Progress) {
				rate, ok := p.Second.SuccessRate()
				if ok {
					fmt.Fprintf(progress, "  t=%2ds %-8s success %5.1f%% p99 %6.0fms\n", p.Second.T, st.Name, rate*100, p.Second.Latency.P99)
				}
				if sc.Safety == nil || !ok {
					return
				}
				if rate < sc.Safety.MinSuccess {
					badStreak++
				} else {
					badStreak = 0
				}
				if badStreak >= sc.Safety.Seconds {
					mu.Lock()
					if rep.Aborted == "" {
						rep.Aborted = fmt.Sprintf("safety: success below %.0f%% for %d s at t=%d s", sc.Safety.MinSuccess*100, sc.Safety.Seconds, p.Second.T)
					}
					mu.Unlock()
					abort()
				}
			}
		}
		wg.Go(func() {
			res, err := loadtest.Run(runCtx, opts)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("stream %s: %v", st.Name, err))
				return
			}
			results[st.Name] = res
		})
	}
	wg.Wait()
	if err := schedule.Close(context.WithoutCancel(ctx)); err != nil {
		rep.Problems = append(rep.Problems, "rollback: "+err.Error())
	}
	rep.FaultEvents = schedule.Events()
	for _, e := range rep.FaultEvents {
		if e.Error != "" {
			rep.Problems = append(rep.Problems, fmt.Sprintf("fault %s (on=%v): %s", e.Fault, e.On, e.Error))
		}
	}
	// Keep scraping a moment so the last second has its reading, then stop.
	time.Sleep(300 * time.Millisecond)
	stopScrape()
	<-scraped
	rep.PolicyEvents = fetchPolicyEvents(ctx, lab, start)

	if err := lab.WaitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	if sc.Accounting {
		acc, err := shop.Account(ctx, stockBefore, 30*time.Second)
		if err != nil {
			rep.Problems = append(rep.Problems, "accounting: "+err.Error())
		}
		rep.Accounting = &acc
		if err == nil {
			ev, err := shop.AccountEvents(ctx, eventSources(lab), sc.EventSettle)
			if err != nil {
				rep.Problems = append(rep.Problems, "event accounting: "+err.Error())
			}
			rep.Events = &ev
		}
	}
	confirmed := shop.ConfirmedShare(start, int(math.Ceil(sc.Duration.Seconds())))
	analyze(rep, sc, results, confirmed, scraper.Scrapes(), start)
	on, off := start.Add(time.Duration(rep.FaultOnS*float64(time.Second))), start.Add(time.Duration(rep.FaultOffS*float64(time.Second)))
	rep.FinalConfirmedDuring, rep.ChargedDuring = Num(math.NaN()), Num(math.NaN())
	// Orders created in the fault's last second may finish after it ended (a latency toxic releases
	// what it holds when it goes): count those the fault governed from start to end.
	if created, confirmed, charged := shop.Outcomes(on, off.Add(-time.Second)); created > 0 && rep.Accounting != nil {
		rep.FinalConfirmedDuring = Num(float64(confirmed) / float64(created))
		rep.ChargedDuring = Num(float64(charged) / float64(created))
	}
	rep.CalleeRate = Num(math.NaN())
	if sc.CalleeLoad != nil {
		n := routeIncrease(scraper.Scrapes(), sc.CalleeLoad.Service, sc.CalleeLoad.Routes, on, off)
		rep.CalleeRate = Num(n / off.Sub(on).Seconds())
	}
	// Expectations may read what was measured after the run: judge with everything known.
	judge(rep, sc)
	rep.SlowTraces = citeTraces(ctx, lab, rep)
	return rep, nil
}

func endOf(st fault.Step, d time.Duration) time.Duration {
	if st.To == 0 {
		return d
	}
	return st.To
}

// analyze derives the report's figures and checks from what was measured.
func analyze(rep *Report, sc Scenario, results map[string]*loadtest.Result, confirmed []float64, scrapes []measure.Scrape, start time.Time) {
	seconds := int(math.Ceil(sc.Duration.Seconds()))
	secs := combine(results, seconds)
	for i := range secs {
		secs[i].Confirmed = Num(math.NaN())
		if i < len(confirmed) {
			secs[i].Confirmed = Num(confirmed[i])
		}
	}
	addPolicySeries(secs, scrapes, start, sc.Watch)
	rep.Seconds = secs
	rep.LoadTotals = map[string]loadtest.Totals{}
	for name, res := range results {
		rep.LoadTotals[name] = res.Totals
	}
	primary := sc.Streams[0].Name

	on, off := faultOnOff(rep.FaultEvents)
	planFrom, planTo := sc.FaultWindow()
	if on.IsZero() {
		on = start.Add(planFrom)
	}
	if off.IsZero() || off.Before(on) {
		off = start.Add(planTo)
	}
	rep.FaultOnS, rep.FaultOffS = on.Sub(start).Seconds(), off.Sub(start).Seconds()
	onSec, offSec := faultSeconds(rep)

	if len(sc.Watch) > 0 {
		w := sc.Watch[0]
		bound, failures := w.DetectionBound(on.Sub(start))
		rep.TTDBoundS, rep.TTDFailuresNeeded = bound.Seconds(), failures
		rep.TTRBoundS = w.RecoveryBound().Seconds()
		if at, src := detection(on, scrapes, rep.PolicyEvents, sc.Watch); !at.IsZero() {
			v := at.Sub(on).Seconds()
			rep.TTD, rep.TTDSource = &v, src
		}
		if at := breakerClosed(off, scrapes, rep.PolicyEvents, sc.Watch); !at.IsZero() {
			v := at.Sub(off).Seconds()
			rep.BreakerClosedS = &v
		}
	}
	if r := recovery(secs, rep.FaultOffS, sc.Steady, primary, sc.RecoverSeconds); r >= 0 {
		v := math.Max(0, r-rep.FaultOffS)
		rep.TTR = &v
	}
	ds, dp := windowStats(secs, onSec, offSec, primary)
	rep.DuringSuccess, rep.DuringP99 = Num(ds), dp
	rep.StreamDuring = map[string][2]Num{}
	for _, st := range sc.Streams {
		s, p := windowStats(secs, onSec, offSec, st.Name)
		rep.StreamDuring[st.Name] = [2]Num{Num(s), Num(p)}
	}
	rep.DuringConfirmed = Num(meanConfirmed(secs, onSec, offSec))
	ws, wp := worst(secs)
	rep.WorstSuccess, rep.WorstP99 = Num(ws), wp
	rep.Amplification = Num(math.NaN())
	if sc.Amplification != nil {
		var a float64
		a, rep.AmplificationServed, rep.AmplificationArrived = amplification(*sc.Amplification, scrapes, on, off)
		rep.Amplification = Num(a)
	}
	for _, s := range secs {
		if b := float64(s.Backlog); !math.IsNaN(b) {
			rep.PeakBacklog = math.Max(rep.PeakBacklog, b)
		}
	}
	rep.PolicyTotals = map[string]float64{}
	for _, s := range secs {
		for k, v := range s.Policy {
			rep.PolicyTotals[k] += v
		}
	}

	judge(rep, sc)
}

// faultSeconds are the whole seconds of the run the fault covers, [on, off): a second the fault
// missed by less than a tenth (the injection's own delay) counts as covered.
func faultSeconds(rep *Report) (on, off int) {
	return int(math.Ceil(rep.FaultOnS - 0.1)), int(math.Floor(rep.FaultOffS + 0.1))
}

// judge checks the hypotheses and expectations and sets the score and verdict.
func judge(rep *Report, sc Scenario) {
	rep.Checks = nil
	secs, primary := rep.Seconds, sc.Streams[0].Name
	onSec, offSec := faultSeconds(rep)
	// The hypotheses: steady before, (optionally) during, recovered after.
	before := Check{Name: "steady before the fault: " + sc.Steady.String(), Kind: "hypothesis", Weight: 1, OK: true}
	bad := 0
	for i := 1; i < int(math.Floor(rep.FaultOnS)) && i < len(secs); i++ { // second 0 warms up
		if !steady(secs[i], sc.Steady, primary) {
			bad++
		}
	}
	before.OK = bad == 0
	before.Got = fmt.Sprintf("%d unsteady second(s) of %d", bad, max(0, int(math.Floor(rep.FaultOnS))-1))
	rep.Checks = append(rep.Checks, before)
	if sc.During != nil {
		c := Check{Name: "steady during the fault: " + sc.During.String(), Kind: "hypothesis", Weight: 1, OK: true}
		bad := 0
		for i := onSec; i < offSec && i < len(secs); i++ {
			if !steady(secs[i], *sc.During, primary) {
				bad++
			}
		}
		c.OK = bad == 0
		c.Got = fmt.Sprintf("%d unsteady second(s) of %d", bad, max(0, offSec-onSec))
		rep.Checks = append(rep.Checks, c)
	}
	rep.Checks = append(rep.Checks, Check{Name: fmt.Sprintf("steady again after the fault (%d s in a row)", sc.RecoverSeconds),
		Kind: "hypothesis", Weight: 1, OK: rep.TTR != nil, Got: "TTR " + fmtSeconds(rep.TTR), Reported: sc.Baseline})
	if rep.Aborted != "" {
		rep.Checks = append(rep.Checks, Check{Name: "ran to the end without tripping the safety abort", Kind: "hypothesis", Weight: 1, Got: rep.Aborted})
	}
	for _, e := range sc.Expect {
		ok, got := e.Check(rep)
		w := e.Weight
		if w == 0 {
			w = 1
		}
		rep.Checks = append(rep.Checks, Check{Name: e.Name, Kind: "expectation", Weight: w, OK: ok, Got: got})
	}
	rep.Score = score(rep.Checks)
	rep.Verdict = "pass"
	for _, c := range rep.Checks {
		if !c.OK && !c.Reported {
			rep.Verdict = "fail"
		}
	}
	if len(rep.Problems) > 0 {
		rep.Verdict = "fail"
	}
}

// withDeadline makes every request of ks state the client's budget d in X-Deadline-Ms.
func withDeadline(ks []loadtest.Kind, d time.Duration) []loadtest.Kind {
	out := make([]loadtest.Kind, len(ks))
	for i, k := range ks {
		build := k.Build
		k.Build = func(ctx context.Context, seq uint64) (*http.Request, error) {
			req, err := build(ctx, seq)
			if err == nil {
				req.Header.Set(platform.HeaderDeadline, strconv.FormatInt(d.Milliseconds(), 10))
			}
			return req, err
		}
		out[i] = k
	}
	return out
}

// eventSources reads the notifications consumer and the producers' outbox backlog through the lab's
// observation relay.
func eventSources(lab Lab) measure.EventSources {
	hc := &http.Client{Timeout: 5 * time.Second}
	backlog := &measure.Scraper{URL: func(svc string) string { return lab.ObserveURL(svc, "metrics") },
		Services: []string{"catalog", "payments", "orders", "notifications"}}
	return measure.EventSources{
		Notifications: func(ctx context.Context, customer string) ([]notifications.Notification, error) {
			u := lab.ObserveURL("notifications", "notifications?"+url.Values{"customer_id": {customer}}.Encode())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return nil, err
			}
			// notifications serves its API to the gateway only.
			token, err := lab.ServiceToken("gateway", "notifications")
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
			}
			var list notifications.ListNotificationsResponse
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
				return nil, err
			}
			return list.Notifications, nil
		},
		Backlog: func(ctx context.Context) (float64, float64, error) {
			sc := backlog.ScrapeOnce(ctx)
			if len(sc.Missing) > 0 {
				return 0, 0, fmt.Errorf("no metrics from %v", sc.Missing)
			}
			var lag float64
			for k, v := range sc.Values {
				if k.Metric == "events_consumer_pending_messages" || k.Metric == "events_consumer_ack_pending_messages" {
					lag += v
				}
			}
			return outboxBacklog(sc), lag, nil
		},
	}
}

// outboxBacklog sums events_outbox_backlog over the services of a scrape.
func outboxBacklog(sc measure.Scrape) float64 {
	var total float64
	for k, v := range sc.Values {
		if k.Metric == "events_outbox_backlog" {
			total += v
		}
	}
	return total
}

// routeIncrease is how many requests service served on routes (comma-separated) between from and to (the scrapes
// nearest inside the interval).
func routeIncrease(scrapes []measure.Scrape, service, routes string, from, to time.Time) float64 {
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
		return 0
	}
	var total float64
	for _, r := range strings.Split(routes, ",") {
		for k := range last.Values {
			if k.Service == service && k.Metric == "http_server_requests_total" && k.Route == strings.TrimSpace(r) {
				total += measure.Increase(*first, *last, k)
			}
		}
	}
	return total
}

// fetchPolicyEvents reads every service's /debug/resilience and keeps the events since start. The
// document's shape is the resilience package's; any object with a kind and a time is taken as an event.
func fetchPolicyEvents(ctx context.Context, lab Lab, since time.Time) []PolicyEvent {
	var out []PolicyEvent
	hc := &http.Client{Timeout: 3 * time.Second}
	for _, svc := range []string{"gateway", "orders", "catalog", "payments"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, lab.ObserveURL(svc, "debug/resilience"), nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		var doc any
		if json.Unmarshal(data, &doc) != nil {
			continue
		}
		collectEvents(doc, svc, since, &out)
	}
	return out
}

func collectEvents(v any, svc string, since time.Time, out *[]PolicyEvent) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			collectEvents(e, svc, since, out)
		}
	case map[string]any:
		kind, _ := x["kind"].(string)
		ts, _ := x["time"].(string)
		if kind != "" && ts != "" {
			b, _ := json.Marshal(x)
			var e PolicyEvent
			if json.Unmarshal(b, &e) == nil && !e.Time.Before(since) {
				if e.Service == "" {
					e.Service = svc
				}
				*out = append(*out, e)
			}
			return
		}
		for _, e := range x {
			collectEvents(e, svc, since, out)
		}
	}
}

// Seconds formats an optional duration for tables.
func Seconds(v *float64) string { return fmtSeconds(v) }

// Pct formats a share as a percentage.
func Pct(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
}
