package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var traceParentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

func TestTraceParentIsValidW3CAndFresh(t *testing.T) {
	seen := map[TraceID]bool{}
	for range 1000 {
		id := NewTraceID()
		if id.IsZero() || seen[id] {
			t.Fatalf("trace id %s is zero or repeated", id)
		}
		seen[id] = true
		tp := TraceParent(id, newSpanID())
		m := traceParentRE.FindStringSubmatch(tp)
		if m == nil || m[1] != id.String() || m[2] == strings.Repeat("0", 16) {
			t.Fatalf("traceparent %q for trace %s", tp, id)
		}
		// The otel propagator the services use must read it as a sampled remote parent of that trace.
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
			propagation.HeaderCarrier{"Traceparent": {tp}}))
		if !sc.IsValid() || !sc.IsSampled() || !sc.IsRemote() || sc.TraceID().String() != id.String() {
			t.Fatalf("otel reads %q as %+v", tp, sc)
		}
	}
	if (TraceID{}).String() != "" {
		t.Error("the zero trace id should print as empty")
	}
}

func TestCollectorKeepsEachSecondsSlowestRequest(t *testing.T) {
	c := newCollector([]string{"browse", "order"}, nil, nil)
	ids := []TraceID{NewTraceID(), NewTraceID(), NewTraceID()}
	c.close(closeEvent{second: 0, sent: 3})
	c.done(doneEvent{second: 0, kind: 0, status: 200, latency: 20 * time.Millisecond, outcome: Outcome{OK: true}, method: "GET", path: "/products", trace: ids[0]})
	c.done(doneEvent{second: 0, kind: 1, status: 503, latency: 1520 * time.Millisecond, outcome: Outcome{Class: "http_503"}, method: "POST", path: "/orders", trace: ids[1]})
	c.done(doneEvent{second: 0, kind: 0, status: 200, latency: 30 * time.Millisecond, outcome: Outcome{OK: true}, method: "GET", path: "/products", trace: ids[2]})
	// Second 1: a build failure has no latency and cannot be the slowest; a timeout (no status) is.
	c.close(closeEvent{second: 1, sent: 2})
	c.done(doneEvent{second: 1, kind: 1, outcome: Outcome{Class: ClassBuild}})
	c.done(doneEvent{second: 1, kind: 1, latency: 2 * time.Second, outcome: Outcome{Class: ClassTimeout}, method: "POST", path: "/orders"})
	// Second 2: only a request that was never sent.
	c.close(closeEvent{second: 2, sent: 1})
	c.done(doneEvent{second: 2, kind: 0, outcome: Outcome{Class: ClassBuild}})

	_, secs, _ := c.result(3, 3*time.Second)
	want := SlowRequest{LatencyMs: 1520, Kind: "order", Method: "POST", Path: "/orders", Status: 503, Class: "http_503", TraceID: ids[1].String()}
	if secs[0].Slowest == nil || *secs[0].Slowest != want {
		t.Errorf("second 0 slowest %+v, want %+v", secs[0].Slowest, want)
	}
	want = SlowRequest{LatencyMs: 2000, Kind: "order", Method: "POST", Path: "/orders", Class: ClassTimeout}
	if secs[1].Slowest == nil || *secs[1].Slowest != want {
		t.Errorf("second 1 slowest %+v, want %+v", secs[1].Slowest, want)
	}
	if secs[2].Slowest != nil {
		t.Errorf("second 2 sent nothing but cites %+v", secs[2].Slowest)
	}
}

func TestRunTracesEveryRequestAndCitesTheSlowest(t *testing.T) {
	var mu sync.Mutex
	received := map[string]string{} // trace id → path
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := traceParentRE.FindStringSubmatch(r.Header.Get("traceparent"))
		if m == nil {
			http.Error(w, "no traceparent", http.StatusBadRequest)
			return
		}
		mu.Lock()
		received[m[1]] = r.URL.Path
		mu.Unlock()
		if r.URL.Path == "/slow" {
			time.Sleep(150 * time.Millisecond)
		}
	}))
	defer srv.Close()
	kind := func(name string) Kind {
		return Kind{Name: name, Weight: 1, Build: func(ctx context.Context, seq uint64) (*http.Request, error) {
			path := "/fast"
			if seq == 7 {
				path = "/slow"
			}
			return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		}}
	}
	res, err := Run(context.Background(), Options{Profile: Constant(40, time.Second), Mix: mustMix(t, kind("browse")),
		MaxRequests: 100, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.OK != 40 || len(received) != 40 {
		t.Fatalf("%d OK, %d distinct trace ids received; want 40 of each", res.Totals.OK, len(received))
	}
	s := res.Seconds[0].Slowest
	if s == nil || s.Path != "/slow" || s.Status != 200 || s.LatencyMs < 150 || received[s.TraceID] != "/slow" {
		t.Fatalf("slowest %+v; the server saw that trace id on %q", s, received[s.TraceID])
	}

	// Untraced (the default), requests carry no traceparent and the slowest cites no trace.
	received = map[string]string{}
	res, err = Run(context.Background(), Options{Profile: Constant(10, time.Second), Mix: mustMix(t, kind("browse")), MaxRequests: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Errors["http_400"] != 10 || res.Seconds[0].Slowest == nil || res.Seconds[0].Slowest.TraceID != "" {
		t.Fatalf("untraced run: errors %v, slowest %+v", res.Totals.Errors, res.Seconds[0].Slowest)
	}
}
