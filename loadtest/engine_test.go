package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock advances only when the scheduler sleeps, so a run of minutes takes milliseconds and the
// schedule can be checked exactly.
type fakeClock struct {
	mu    sync.Mutex
	start time.Time
	t     time.Time
	// beforeSleep, when set, runs before each sleep with the offset the sleep would reach (tests use it
	// to hold time still until something has happened).
	beforeSleep func(ctx context.Context, to time.Duration)
}

func newFakeClock() *fakeClock {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &fakeClock{start: t0, t: t0}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) {
	if c.beforeSleep != nil {
		c.beforeSleep(ctx, c.Now().Add(d).Sub(c.start))
	}
	if ctx.Err() != nil {
		return // woken by the cancellation, before the time it slept for
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// roundTripFunc answers requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(code int) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	}
}

func getKind(name string, weight int) Kind {
	return Kind{Name: name, Weight: weight, Build: func(ctx context.Context, seq uint64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, "http://loadtest.invalid/"+name, nil)
	}}
}

func mustMix(t *testing.T, kinds ...Kind) *Mix {
	t.Helper()
	m, err := NewMix(kinds...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRunSendsTheProfileSecondBySecond(t *testing.T) {
	for _, p := range []Profile{
		Constant(100, 5*time.Second),
		Ramp(10, 200, 6*time.Second),
		Steps(50, 50, 2*time.Second, 3),
		Spike(20, 300, 2*time.Second, time.Second, 4*time.Second),
	} {
		t.Run(p.Spec, func(t *testing.T) {
			var progress []Progress
			res, err := Run(context.Background(), Options{
				Profile:     p,
				Mix:         mustMix(t, getKind("a", 1)),
				MaxRequests: 1e6,
				Client:      &http.Client{Transport: answer(200)},
				Clock:       newFakeClock(),
				Progress:    func(pr Progress) { progress = append(progress, pr) },
			})
			if err != nil {
				t.Fatal(err)
			}
			want := perSecond(p)
			if len(res.Seconds) != len(want) {
				t.Fatalf("%d seconds in result, want %d", len(res.Seconds), len(want))
			}
			var total uint64
			for i, s := range res.Seconds {
				target := p.Count(time.Duration(i+1)*time.Second) - p.Count(time.Duration(i)*time.Second)
				if s.Sent != uint64(want[i]) || s.OK != s.Sent || s.Dropped != 0 || math.Abs(s.Target-target) > 1e-9 {
					t.Errorf("second %d: %+v, want %d sent and ok, target %.2f", i, s, want[i], target)
				}
				if math.Abs(float64(s.Sent)-s.Target) > 1 {
					t.Errorf("second %d: sent %d, target %.2f", i, s.Sent, s.Target)
				}
				total += s.Sent
			}
			if res.Totals.Sent != total || res.Totals.OK != total || res.Totals.Scheduled != total || res.Capped || res.Canceled {
				t.Errorf("totals %+v, want %d sent and ok", res.Totals, total)
			}
			if res.SpanSeconds != p.Duration().Seconds() {
				t.Errorf("span %v, want %v", res.SpanSeconds, p.Duration().Seconds())
			}
			if len(progress) != len(want) {
				t.Errorf("%d progress reports, want one per second (%d)", len(progress), len(want))
			}
			for i, pr := range progress {
				if pr.Second.T != i || pr.Second.Sent != uint64(want[i]) {
					t.Errorf("progress %d: second %d sent %d, want second %d sent %d", i, pr.Second.T, pr.Second.Sent, i, want[i])
				}
			}
		})
	}
}

func TestRunWeightsTheMix(t *testing.T) {
	res, err := Run(context.Background(), Options{
		Profile:     Constant(1000, 10*time.Second),
		Mix:         mustMix(t, getKind("heavy", 3), getKind("light", 1)),
		MaxRequests: 1e6,
		Client:      &http.Client{Transport: answer(200)},
		Clock:       newFakeClock(),
	})
	if err != nil {
		t.Fatal(err)
	}
	heavy, light := res.Kinds[0], res.Kinds[1]
	if heavy.Name != "heavy" || heavy.Sent+heavy.Dropped+light.Sent+light.Dropped != 10000 {
		t.Fatalf("kinds %+v", res.Kinds)
	}
	if share := float64(heavy.Sent+heavy.Dropped) / 10000; math.Abs(share-0.75) > 0.01 {
		t.Errorf("heavy got %.3f of the requests, want 0.75±0.01", share)
	}
}

func TestRunDropsInsteadOfQueueingAtTheInFlightCap(t *testing.T) {
	// The fake clock plays the whole schedule while the first three requests hang, so every later
	// request finds the cap reached: of 100 due, 3 are sent and 97 dropped.
	release := make(chan struct{})
	blocking := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		select {
		case <-release:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		return answer(200)(r)
	})
	res := make(chan *Result)
	go func() {
		r, _ := Run(context.Background(), Options{
			Profile:     Constant(50, 2*time.Second),
			Mix:         mustMix(t, getKind("a", 1)),
			MaxRequests: 1e6,
			MaxInFlight: 3,
			Client:      &http.Client{Transport: blocking},
			Clock:       newFakeClock(),
			Progress: func(p Progress) {
				if p.Second.T == 1 {
					close(release) // the whole schedule has been played: let the three finish
				}
			},
		})
		res <- r
	}()
	r := <-res
	if r.Totals.Sent != 3 || r.Totals.Dropped != 97 || r.Kinds[0].Dropped != 97 || r.Seconds[0].Dropped != 47 {
		t.Fatalf("sent %d dropped %d (kind %d, second 0 %d), want 3 and 97 (47 in second 0)",
			r.Totals.Sent, r.Totals.Dropped, r.Kinds[0].Dropped, r.Seconds[0].Dropped)
	}
	if rate, _ := r.Seconds[0].SuccessRate(); rate != 0.06 {
		t.Errorf("second 0 success rate %v, want 3/50", rate)
	}
}

func TestRunStopsAtMaxRequests(t *testing.T) {
	res, err := Run(context.Background(), Options{
		Profile:     Constant(100, 10*time.Second),
		Mix:         mustMix(t, getKind("a", 1)),
		MaxRequests: 250,
		Client:      &http.Client{Transport: answer(200)},
		Clock:       newFakeClock(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Capped || res.Totals.Scheduled != 250 || res.SpanSeconds != 2.5 || len(res.Seconds) != 3 {
		t.Fatalf("capped=%v scheduled=%d span=%v seconds=%d, want capped at 250 after 2.5s",
			res.Capped, res.Totals.Scheduled, res.SpanSeconds, len(res.Seconds))
	}
	if res.Totals.Throughput != 100 {
		t.Errorf("throughput %v, want 100/s over the 2.5 s span", res.Totals.Throughput)
	}
}

func TestRunActionsRunOnScheduleAndCanCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls []string
	var mu sync.Mutex
	act := func(name string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, name)
			if name == "stop" {
				cancel()
			}
			if name == "fail" {
				return errors.New("fault API said no")
			}
			return nil
		}
	}
	clock := newFakeClock()
	clock.beforeSleep = func(ctx context.Context, to time.Duration) {
		if to > 3*time.Second {
			<-ctx.Done() // hold time at 3 s until the "stop" action has canceled the run
		}
	}
	res, err := Run(ctx, Options{
		Profile:     Constant(10, 10*time.Second),
		Mix:         mustMix(t, getKind("a", 1)),
		MaxRequests: 1e6,
		Client:      &http.Client{Transport: answer(200)},
		Clock:       clock,
		Actions: []Action{
			{Name: "never", At: 9 * time.Second, Do: act("never")},
			{Name: "inject", At: 1500 * time.Millisecond, Do: act("inject")},
			{Name: "fail", At: 2 * time.Second, Do: act("fail")},
			{Name: "stop", At: 3 * time.Second, Do: act("stop")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(calls) // each action runs on its own goroutine: their order is not fixed
	if strings.Join(calls, ",") != "fail,inject,stop" {
		t.Errorf("actions ran %v, want fail, inject and stop", calls)
	}
	want := []ActionRecord{
		{Name: "inject", At: 1.5, Started: 1.5},
		{Name: "fail", At: 2, Started: 2, Error: "fault API said no"},
		{Name: "stop", At: 3, Started: 3},
		{Name: "never", At: 9, Skipped: true},
	}
	if len(res.Actions) != len(want) {
		t.Fatalf("action records %+v, want %d", res.Actions, len(want))
	}
	for i, w := range want {
		got := res.Actions[i]
		if got.Finished < got.Started {
			t.Errorf("action %q finished at %v before it started at %v", got.Name, got.Finished, got.Started)
		}
		got.Finished = 0
		if got != w {
			t.Errorf("action %d = %+v, want %+v", i, got, w)
		}
	}
	if !res.Canceled || res.SpanSeconds != 3 || res.Totals.Sent != 31 {
		t.Errorf("canceled=%v span=%v sent=%d, want a stop shortly after 3 s", res.Canceled, res.SpanSeconds, res.Totals.Sent)
	}
}

func TestRunRejectsUnboundedOrInvalidOptions(t *testing.T) {
	mix := mustMix(t, getKind("a", 1))
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no cap", Options{Profile: Constant(1, time.Second), Mix: mix}, "MaxRequests"},
		{"no mix", Options{Profile: Constant(1, time.Second), MaxRequests: 1}, "Mix"},
		{"no profile", Options{Mix: mix, MaxRequests: 1}, "no segments"},
		{"late action", Options{Profile: Constant(1, time.Second), Mix: mix, MaxRequests: 1,
			Actions: []Action{{Name: "x", At: 2 * time.Second, Do: func(context.Context) error { return nil }}}}, "offset within the profile"},
	} {
		if _, err := Run(context.Background(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestRunAgainstAServerClassifiesOutcomes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, `{"id":"x1"}`)
		case "/conflict":
			http.Error(w, `{"error":{"code":"out_of_stock"}}`, http.StatusConflict)
		default:
			http.Error(w, "boom", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	get := func(path string) func(context.Context, uint64) (*http.Request, error) {
		return func(ctx context.Context, seq uint64) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		}
	}
	var captured atomic.Int64
	mix := mustMix(t,
		Kind{Name: "ok", Weight: 1, Build: get("/ok"), OnResponse: func(_ *http.Response, body []byte) {
			if string(body) == `{"id":"x1"}` {
				captured.Add(1)
			}
		}},
		Kind{Name: "conflict", Weight: 1, Build: get("/conflict"), Classify: ExpectStatus(409)},
		Kind{Name: "broken", Weight: 1, Build: get("/broken")},
		Kind{Name: "unbuildable", Weight: 1, Build: func(context.Context, uint64) (*http.Request, error) {
			return nil, errors.New("no product ids yet")
		}},
	)
	res, err := Run(context.Background(), Options{Profile: Constant(200, time.Second), Mix: mix, MaxRequests: 1000})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]KindTotals{}
	for _, k := range res.Kinds {
		byName[k.Name] = k
	}
	ok, conflict, broken, unbuildable := byName["ok"], byName["conflict"], byName["broken"], byName["unbuildable"]
	if ok.Sent == 0 || ok.OK != ok.Sent || int64(ok.OK) != captured.Load() {
		t.Errorf("ok kind %+v, captured %d", ok, captured.Load())
	}
	if conflict.OK != conflict.Sent || conflict.Expected["http_409"] != conflict.Sent {
		t.Errorf("conflict kind %+v, want every 409 an expected outcome", conflict)
	}
	if broken.OK != 0 || broken.Errors["http_503"] != broken.Sent {
		t.Errorf("broken kind %+v, want every answer an http_503 error", broken)
	}
	if unbuildable.Errors[ClassBuild] != unbuildable.Sent {
		t.Errorf("unbuildable kind %+v, want build errors", unbuildable)
	}
	tot := res.Totals
	if tot.Scheduled != 200 || tot.Dropped != 0 || tot.OK != ok.Sent+conflict.Sent || tot.Failed() != broken.Sent+unbuildable.Sent {
		t.Errorf("totals %+v", tot)
	}
	if want := float64(tot.Failed()) / 200; math.Abs(tot.ErrorRate-want) > 1e-12 {
		t.Errorf("error rate %v, want %v", tot.ErrorRate, want)
	}
	if tot.Latency.P50 <= 0 || tot.Latency.Max < tot.Latency.P99 {
		t.Errorf("latency %+v", tot.Latency)
	}
}

func TestErrorClass(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	_, dialErr := http.Get("http://" + addr + "/")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, ClassTimeout},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), ClassTimeout},
		{ctx.Err(), ClassCanceled},
		{dialErr, ClassConnect},
		{io.ErrUnexpectedEOF, ClassTransport},
	} {
		if got := ErrorClass(tc.err); got != tc.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestNewMixRejectsBadKinds(t *testing.T) {
	build := getKind("x", 1).Build
	for _, tc := range []struct {
		kinds []Kind
		want  string
	}{
		{nil, "no request kinds"},
		{[]Kind{{Weight: 1, Build: build}}, "no name"},
		{[]Kind{{Name: "a", Weight: 0, Build: build}}, "weight 0"},
		{[]Kind{{Name: "a", Weight: 1}}, "no Build"},
		{[]Kind{{Name: "a", Weight: 1, Build: build}, {Name: "a", Weight: 1, Build: build}}, "twice"},
	} {
		if _, err := NewMix(tc.kinds...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewMix(%v) error %v, want %q", tc.kinds, err, tc.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		remote bool
		want   string // "" for success, else an error substring
	}{
		{"http://127.0.0.1:8080", false, ""},
		{"http://localhost:8080/", false, ""},
		{"http://127.3.2.1", false, ""},
		{"http://[::1]:9000", false, ""},
		{"https://example.com", false, "not a loopback"},
		{"http://10.0.0.5:8080", false, "not a loopback"},
		{"http://10.0.0.5:8080", true, ""},
		{"ftp://127.0.0.1", false, "http:// or https://"},
		{"127.0.0.1:8080", false, "http:// or https://"},
		{"http://", false, "no host"},
		{"http://127.0.0.1/?a=1", false, "no query"},
	} {
		_, err := ParseTarget(tc.raw, tc.remote)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ParseTarget(%q, %v) = %v, want %q", tc.raw, tc.remote, err, tc.want)
		}
	}
}

// countingTransport counts the requests it answers and the times its idle connections were closed.
type countingTransport struct {
	requests, closes atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	return answer(200)(r)
}

func (c *countingTransport) CloseIdleConnections() { c.closes.Add(1) }

func TestShardedTransportTakesTurns(t *testing.T) {
	shards := make([]*countingTransport, 4)
	st := &shardedTransport{}
	for i := range shards {
		shards[i] = &countingTransport{}
		st.ts = append(st.ts, shards[i])
	}
	c := &http.Client{Transport: st}
	for i := 0; i < 40; i++ {
		resp, err := c.Get("http://loadtest.invalid/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	c.CloseIdleConnections()
	for i, s := range shards {
		if s.requests.Load() != 10 || s.closes.Load() != 1 {
			t.Errorf("shard %d: %d requests, %d closes; want 10 and 1", i, s.requests.Load(), s.closes.Load())
		}
	}
}

func TestNewClientReusesConnections(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
	}))
	defer srv.Close()
	c := NewClient(10)
	const n = 20 * transportShards
	for i := 0; i < n; i++ {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.CloseIdleConnections()
	mu.Lock()
	defer mu.Unlock()
	// Sequential requests need at most a connection or two per transport, never one each.
	if len(conns) < 2 || len(conns) > n/4 {
		t.Errorf("%d connections for %d sequential requests over %d transports", len(conns), n, transportShards)
	}
}
