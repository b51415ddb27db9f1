package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options left zero.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxInFlight = 1000
	// maxBurst is how many overdue requests the scheduler sends before yielding the processor.
	maxBurst = 64
	// maxCapturedBody bounds what OnResponse is handed; longer bodies are cut.
	maxCapturedBody = 4 << 20
)

// Clock is the time source of a run; tests inject a fake one to check the schedule without waiting.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, whichever comes first.
	Sleep(ctx context.Context, d time.Duration)
}

// SystemClock is the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Action is something to do at a fixed offset into a run, concurrently with the load: the extension
// point for injecting and lifting faults (the chaos lab) or for marking moments in a report. An action
// that is still running when the schedule ends is waited for; one not yet started is skipped.
type Action struct {
	Name string
	At   time.Duration
	Do   func(ctx context.Context) error
}

// Options configure Run.
type Options struct {
	Profile Profile
	Mix     *Mix
	// MaxRequests is a hard cap on requests scheduled (sent or dropped); the run stops when it is reached.
	// It is required: a load test is bounded in count as well as in time.
	MaxRequests uint64
	// MaxInFlight caps outstanding requests; a request due while it is reached is dropped, not queued.
	MaxInFlight int
	// Timeout bounds each request, body included.
	Timeout time.Duration
	// Client sends the requests; nil means NewClient(MaxInFlight).
	Client *http.Client
	// Actions run at their offsets during the run.
	Actions []Action
	// Progress, when set, is called once per second of the schedule from the goroutine that collects
	// results; it must return quickly.
	Progress func(Progress)
	// Clock is the time source; nil means SystemClock.
	Clock Clock
	// Trace makes every request start a trace of its own: a W3C traceparent header with a fresh random
	// trace id and the sampled flag, so a target that samples nothing itself (a sampler ratio of 0)
	// still records each request the load driver sent. Each second's slowest request then cites its
	// trace id (Second.Slowest).
	Trace bool
}

// NewClient returns an HTTP client tuned for load: requests spread over several transports (one
// net/http Transport serialises its idle pool behind one mutex, which thousands of concurrent requests
// drive into starvation mode), each keeping enough idle connections per host for its share of
// maxInFlight (the default of 2 would make nearly every request dial); no compression, no redirects
// followed, no proxy from the environment.
func NewClient(maxInFlight int) *http.Client {
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxInFlight
	}
	shards := &shardedTransport{}
	for i := 0; i < transportShards; i++ {
		shards.ts = append(shards.ts, &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        maxInFlight,
			MaxIdleConnsPerHost: maxInFlight,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		})
	}
	return &http.Client{
		Transport:     shards,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

const transportShards = 8

// shardedTransport sends each request through the next of its transports in turn.
type shardedTransport struct {
	ts   []http.RoundTripper
	next atomic.Uint64
}

func (s *shardedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return s.ts[s.next.Add(1)%uint64(len(s.ts))].RoundTrip(r)
}

// CloseIdleConnections closes every transport's idle connections (http.Client.CloseIdleConnections
// calls it).
func (s *shardedTransport) CloseIdleConnections() {
	for _, t := range s.ts {
		if c, ok := t.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// Run plays the profile with the mix and returns what it measured. It returns an error only for invalid
// options; failed requests are results, not errors. Canceling ctx stops scheduling, aborts in-flight
// requests and returns the partial result with Canceled set.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Profile.Validate(); err != nil {
		return nil, err
	}
	if o.Mix == nil {
		return nil, errors.New("loadtest: Options.Mix is required")
	}
	if o.MaxRequests == 0 {
		return nil, errors.New("loadtest: Options.MaxRequests must be set (a load test is bounded in count)")
	}
	if o.MaxInFlight < 0 || o.Timeout < 0 {
		return nil, errors.New("loadtest: MaxInFlight and Timeout must not be negative")
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = NewClient(o.MaxInFlight)
	}
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	actions := append([]Action(nil), o.Actions...)
	sort.SliceStable(actions, func(i, j int) bool { return actions[i].At < actions[j].At })
	for _, a := range actions {
		if a.Do == nil || a.At < 0 || a.At > o.Profile.Duration() {
			return nil, fmt.Errorf("loadtest: action %q needs a Do function and an offset within the profile (0–%s), got %s",
				a.Name, o.Profile.Duration(), a.At)
		}
	}
	r := &runner{o: o, kinds: o.Mix.kinds, actions: actions}
	return r.run(ctx), nil
}

type runner struct {
	o       Options
	kinds   []Kind
	actions []Action

	ctx   context.Context // canceled when the caller cancels: aborts requests and actions
	start time.Time
	// Requests run on long-lived workers, started as needed up to MaxInFlight: a goroutine per request
	// would grow (copy) a fresh stack through net/http for every request, a measurable share of the
	// CPU at 20k requests/s. inflight counts requests handed to workers and not yet finished.
	jobs     chan job
	workers  int // started so far; touched only by the scheduler
	inflight atomic.Int64
	requests sync.WaitGroup // one per worker
	results  chan doneEvent

	actionWG sync.WaitGroup
	records  []ActionRecord // written by each action's goroutine at its own index
}

// job is one request handed to a worker.
type job struct {
	seq  uint64
	kind int
	due  time.Duration
}

// schedState is what the scheduler loop keeps about the second it is filling.
type schedState struct {
	second          int
	sent, dropped   uint64
	lagMax          time.Duration
	kindSent, kindD []uint64
}

func (r *runner) run(ctx context.Context) *Result {
	r.ctx = ctx
	r.jobs = make(chan job)
	r.results = make(chan doneEvent, 1<<14)
	closes := make(chan closeEvent, 64)
	names := make([]string, len(r.kinds))
	for i, k := range r.kinds {
		names[i] = k.Name
	}
	col := newCollector(names, r.o.Progress, r.inflight.Load)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		results, closes := r.results, closes
		for results != nil || closes != nil {
			select {
			case ev, ok := <-results:
				if !ok {
					results = nil
					continue
				}
				col.done(ev)
			case ev, ok := <-closes:
				if !ok {
					closes = nil
					continue
				}
				col.close(ev)
			}
		}
	}()

	r.start = r.o.Clock.Now()
	res := &Result{
		Profile:     r.o.Profile,
		Started:     r.start.UTC(),
		MaxInFlight: r.o.MaxInFlight,
		MaxRequests: r.o.MaxRequests,
	}
	r.records = make([]ActionRecord, len(r.actions))
	span, st := r.schedule(ctx, closes, res)
	close(closes)
	close(r.jobs)
	r.requests.Wait()
	close(r.results)
	r.actionWG.Wait()
	<-collected

	res.SpanSeconds = span.Seconds()
	seconds := int(math.Ceil(span.Seconds()))
	col.kindCounts(st.kindSent, st.kindD)
	res.Totals, res.Seconds, res.Kinds = col.result(seconds, span)
	res.Actions = r.records
	return res
}

// schedule is the open-model loop: it sends every request at its due time (or as soon after as the
// clock lets it, sending overdue ones at once), never waiting for earlier requests. It returns how long
// it scheduled for and its per-kind counts.
func (r *runner) schedule(ctx context.Context, closes chan<- closeEvent, res *Result) (time.Duration, *schedState) {
	p := r.o.Profile
	end := p.Duration()
	sched := newSchedule(p)
	st := &schedState{kindSent: make([]uint64, len(r.kinds)), kindD: make([]uint64, len(r.kinds))}
	closeSecond := func() {
		from, to := time.Duration(st.second)*time.Second, time.Duration(st.second+1)*time.Second
		closes <- closeEvent{
			second:  st.second,
			target:  p.Count(min(to, end)) - p.Count(from),
			sent:    st.sent,
			dropped: st.dropped,
			lagMax:  st.lagMax,
		}
		st.second++
		st.sent, st.dropped, st.lagMax = 0, 0, 0
	}

	var seq uint64
	nextAction := 0
	due, more := sched.next()
	for {
		now := r.o.Clock.Now().Sub(r.start)
		if ctx.Err() != nil {
			res.Canceled = true
			closeSecond()
			r.skipActions(nextAction)
			return min(now, end), st
		}
		burst := 0
		for more && due <= now {
			if burst == maxBurst {
				// Catching up after a stall (the process was descheduled, say): yield between bursts so
				// workers that finished can take the next requests on their open connections, instead of
				// every overdue request at once needing a new worker and a new connection. Nothing waits
				// for a response, and latency still runs from each due time.
				runtime.Gosched()
				burst = 0
				now = r.o.Clock.Now().Sub(r.start)
			}
			burst++
			if seq >= r.o.MaxRequests {
				res.Capped = true
				closeSecond()
				r.skipActions(nextAction)
				return min(now, end), st
			}
			for st.second < int(due/time.Second) {
				closeSecond()
			}
			k := r.o.Mix.pick(seq)
			if r.dispatch(job{seq: seq, kind: k, due: due}) {
				st.sent++
				st.kindSent[k]++
				if lag := now - due; lag > st.lagMax {
					st.lagMax = lag
				}
			} else {
				st.dropped++
				st.kindD[k]++
			}
			seq++
			due, more = sched.next()
		}
		for nextAction < len(r.actions) && r.actions[nextAction].At <= now {
			r.startAction(nextAction, now)
			nextAction++
		}
		// Every request due before now has been sent, so the seconds that ended by now are complete.
		for time.Duration(st.second+1)*time.Second <= min(now, end) {
			closeSecond()
		}
		if now >= end {
			if time.Duration(st.second)*time.Second < end {
				closeSecond() // the last, partial second
			}
			return end, st
		}
		// Wake for the next request, the next second boundary (to report progress) or the next action.
		wake := min(end, time.Duration(st.second+1)*time.Second)
		if more && due < wake {
			wake = due
		}
		if nextAction < len(r.actions) && r.actions[nextAction].At < wake {
			wake = r.actions[nextAction].At
		}
		if wake > now {
			r.o.Clock.Sleep(ctx, wake-now)
		}
	}
}

func (r *runner) startAction(i int, now time.Duration) {
	a := r.actions[i]
	r.records[i] = ActionRecord{Name: a.Name, At: a.At.Seconds(), Started: now.Seconds()}
	r.actionWG.Add(1)
	go func() {
		defer r.actionWG.Done()
		err := a.Do(r.ctx)
		r.records[i].Finished = r.o.Clock.Now().Sub(r.start).Seconds()
		if err != nil {
			r.records[i].Error = err.Error()
		}
	}()
}

func (r *runner) skipActions(from int) {
	for i := from; i < len(r.actions); i++ {
		r.records[i] = ActionRecord{Name: r.actions[i].Name, At: r.actions[i].At.Seconds(), Skipped: true}
	}
}

// dispatch hands a due request to an idle worker, starting a new one if none is idle, and reports false
// (dropped) when MaxInFlight requests are already outstanding. It never waits for a request to finish.
func (r *runner) dispatch(j job) bool {
	if r.inflight.Load() >= int64(r.o.MaxInFlight) {
		return false
	}
	r.inflight.Add(1)
	select {
	case r.jobs <- j:
		return true
	default:
	}
	if r.workers < r.o.MaxInFlight {
		r.workers++
		r.requests.Add(1)
		go r.worker(j)
		return true
	}
	// Every worker exists and one has finished its request (inflight is below the cap) but is not yet
	// back for the next: it is between reporting and receiving, so this wait is momentary.
	r.jobs <- j
	return true
}

func (r *runner) worker(j job) {
	defer r.requests.Done()
	for ok := true; ok; j, ok = <-r.jobs {
		r.fire(j)
	}
}

// fire sends one request and reports it; its latency runs from the due time, so time spent waiting for
// the generator or for a connection counts against the target just as a real client would feel it.
func (r *runner) fire(j job) {
	k := &r.kinds[j.kind]
	ctx, cancel := context.WithTimeout(r.ctx, r.o.Timeout)
	out := r.do(ctx, k, j.seq)
	cancel()
	completed := r.o.Clock.Now().Sub(r.start)
	r.results <- doneEvent{
		second:    int32(j.due / time.Second),
		kind:      int32(j.kind),
		status:    int32(out.status),
		latency:   completed - j.due,
		completed: completed,
		outcome:   out.Outcome,
		method:    out.method,
		path:      out.path,
		trace:     out.trace,
	}
	r.inflight.Add(-1) // after reporting, so a worker under the cap is about to take the next job
}

// sent is how one request went: its outcome, and what the per-second slowest request cites.
type sent struct {
	Outcome
	status       int // HTTP status; 0 when no answer came
	method, path string
	trace        TraceID // zero when the request started no trace
}

func (r *runner) do(ctx context.Context, k *Kind, seq uint64) (out sent) {
	req, err := k.Build(ctx, seq)
	if err != nil {
		out.Outcome = Outcome{Class: ClassBuild}
		return out
	}
	out.method, out.path = req.Method, req.URL.Path
	if r.o.Trace {
		out.trace = NewTraceID()
		// Set directly under its canonical key: Header.Set would canonicalise (and allocate) each time.
		req.Header[headerTraceParent] = []string{TraceParent(out.trace, newSpanID())}
	}
	resp, err := r.o.Client.Do(req)
	if err != nil {
		out.Outcome = k.Classify(nil, err)
		return out
	}
	out.status = resp.StatusCode
	var body []byte
	if k.OnResponse != nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxCapturedBody))
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil {
		out.Outcome = k.Classify(nil, err)
		return out
	}
	out.Outcome = k.Classify(resp, nil)
	if out.OK && k.OnResponse != nil {
		k.OnResponse(resp, body)
	}
	return out
}
