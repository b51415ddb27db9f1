package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/tracestore"
)

// fakeLab is a Lab with a trace store in memory; only Trace does anything.
type fakeLab struct {
	traces map[string]*tracestore.Trace
	err    error // what Trace answers for an unknown id; nil means ErrNotFound
	reads  []string
}

func (f *fakeLab) Reconfigure(context.Context, map[string]map[string]string) error { return nil }
func (f *fakeLab) Reset(context.Context) error                                     { return nil }
func (f *fakeLab) WaitReady(context.Context, time.Duration) error                  { return nil }
func (f *fakeLab) GatewayURL() string                                              { return "" }
func (f *fakeLab) ObserveURL(string, string) string                                { return "" }
func (f *fakeLab) ServiceToken(string, string) (string, error)                     { return "", nil }
func (f *fakeLab) FaultTarget() fault.Target                                       { return fault.Target{} }

func (f *fakeLab) Trace(_ context.Context, id string) (*tracestore.Trace, error) {
	f.reads = append(f.reads, id)
	if t, ok := f.traces[id]; ok {
		return t, nil
	}
	if f.err != nil {
		return nil, f.err
	}
	return nil, tracestore.ErrNotFound
}

// labWithoutTraces is a Lab that cannot read traces (an older harness).
type labWithoutTraces struct{ fakeLab }

func (labWithoutTraces) Trace() {} // not a TraceReader: the signature differs

// placeOrderTrace is a place_order that waited on payments: gateway → orders, whose call to payments
// took three attempts (two 503s, then 200) while its call to catalog was quick.
func placeOrderTrace(id string, t0 time.Time) *tracestore.Trace {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	link := func(id, parent, name, op string, start int, dur float64, events ...string) tracestore.Span {
		sp := tracestore.Span{SpanID: id, ParentID: parent, Name: name + " " + op, Start: at(start), DurationMs: dur, Status: "unset",
			Attributes: map[string]any{"resilience.link": name, "resilience.operation": op, "resilience.outcome": "success"}}
		for _, e := range events {
			sp.Events = append(sp.Events, tracestore.Event{Name: e})
		}
		sp.Service, _, _ = strings.Cut(name, "-")
		return sp
	}
	client := func(id, parent, svc string, start int, dur float64, code int) tracestore.Span {
		return tracestore.Span{SpanID: id, ParentID: parent, Service: svc, Name: "HTTP POST", Kind: "client", Start: at(start),
			DurationMs: dur, Status: "unset", Attributes: map[string]any{"http.response.status_code": float64(code)}}
	}
	server := func(id, parent, svc, name string, start int, dur float64, code int) tracestore.Span {
		sp := tracestore.Span{SpanID: id, ParentID: parent, Service: svc, Name: name, Kind: "server", Start: at(start),
			DurationMs: dur, Status: "unset", Attributes: map[string]any{"http.response.status_code": float64(code)}}
		if code >= 500 {
			sp.Status = "error"
		}
		return sp
	}
	return &tracestore.Trace{TraceID: id, Spans: []tracestore.Span{
		server("a1", "d0", "gateway", "POST /orders", 0, 1520, 201), // d0: the load driver's span, never exported
		link("a2", "a1", "gateway-orders", "create_order", 1, 1515),
		client("a3", "a2", "gateway", 1, 1514, 201),
		server("b1", "a3", "orders", "POST /orders", 2, 1510, 201),
		link("b2", "b1", "orders-catalog", "reserve", 3, 12),
		client("b3", "b2", "orders", 3, 11, 200),
		server("c1", "b3", "catalog", "POST /reservations", 4, 9, 200),
		link("b4", "b1", "orders-payments", "charge", 20, 1480, "retry.retry", "retry.retry"),
		client("b5", "b4", "orders", 20, 500, 503),
		server("p1", "b5", "payments", "POST /payments", 21, 498, 503),
		client("b6", "b4", "orders", 530, 500, 503),
		server("p2", "b6", "payments", "POST /payments", 531, 498, 503),
		client("b7", "b4", "orders", 1040, 460, 200),
		server("p3", "b7", "payments", "POST /payments", 1041, 458, 200),
	}}
}

func TestHopsFoldAttemptsAndFollowTheCriticalPath(t *testing.T) {
	hs := hops(placeOrderTrace("4bf92f3577b34da6a3ce929d0e0e4736", time.Unix(0, 0)))
	var path []string
	for _, h := range hs {
		if h.Critical {
			path = append(path, hopText(h))
		}
	}
	want := []string{"gateway POST /orders 1.52 s", "gateway→orders create_order 1.51 s", "orders POST /orders 1.51 s",
		"orders→payments charge 1.48 s (3 attempts: 503, 503, 200; retry.retry ×2)", "payments POST /payments 498 ms (503)"}
	if strings.Join(path, " → ") != strings.Join(want, " → ") {
		t.Errorf("critical path\n got %s\nwant %s", strings.Join(path, " → "), strings.Join(want, " → "))
	}
	// Every server and link span is a hop, at its depth; no client span is.
	if len(hs) != 9 || hs[0].Depth != 0 || hs[3].Name != "orders→catalog reserve" || hs[3].Depth != 3 || hs[4].Depth != 4 {
		t.Fatalf("hops %+v", hs)
	}
	for _, h := range hs {
		if h.Name == "HTTP POST" {
			t.Errorf("a client span became a hop: %+v", h)
		}
	}
}

func TestCiteTracesReadsTheFaultsSlowestSeconds(t *testing.T) {
	start := time.Now().Add(-time.Minute) // long past: no export lag to wait out
	ids := []string{loadtest.NewTraceID().String(), loadtest.NewTraceID().String(), loadtest.NewTraceID().String(), loadtest.NewTraceID().String()}
	slow := func(ms float64, id string, status int) *Slowest {
		return &Slowest{Stream: "orders", SlowRequest: loadtest.SlowRequest{LatencyMs: ms, Kind: "place_order", Method: "POST",
			Path: "/orders", Status: status, TraceID: id}}
	}
	secs := make([]Second, 10)
	for i := range secs {
		secs[i].T = i
	}
	secs[1].Slowest = slow(5000, ids[3], 504) // slowest of all, but before the fault
	secs[3].Slowest = slow(900, ids[0], 201)
	secs[4].Slowest = slow(1520, ids[1], 201)
	secs[5].Slowest = slow(1100, ids[2], 0)
	secs[5].Slowest.Class = "timeout"
	secs[6].Slowest = slow(300, "", 201)
	rep := &Report{ID: "demo", Variant: "with", Title: "Demo", Started: start, DurationS: 10, FaultOnS: 3, FaultOffS: 7, Seconds: secs,
		Verdict: "pass"}
	lab := &fakeLab{traces: map[string]*tracestore.Trace{ids[1]: placeOrderTrace(ids[1], start)}}

	rep.SlowTraces = citeTraces(context.Background(), lab, rep)
	if len(rep.SlowTraces) != 3 || rep.SlowTraces[0].T != 4 || rep.SlowTraces[1].T != 5 || rep.SlowTraces[2].T != 3 {
		t.Fatalf("cited seconds %+v, want 4, 5, 3 (the fault's three slowest)", rep.SlowTraces)
	}
	if got := strings.Join(lab.reads, ","); got != ids[1]+","+ids[2]+","+ids[0] {
		t.Errorf("read traces %s", got)
	}
	if c := rep.SlowTraces[0]; c.Missing != "" || c.Spans != 14 || len(c.Hops) != 9 {
		t.Errorf("second 4: %+v", c)
	}
	if c := rep.SlowTraces[1]; c.Hops != nil || !strings.Contains(c.Missing, "not in the trace store") {
		t.Errorf("second 5 (evicted): %+v", c)
	}

	md := Markdown(rep)
	for _, want := range []string{
		"## Slowest requests, by hop",
		"- **t=4 s** 1.52 s · orders `place_order` POST /orders → 201 · trace `" + ids[1] + "` (14 spans)",
		"  - gateway POST /orders 1.52 s → gateway→orders create_order 1.51 s → orders POST /orders 1.51 s → orders→payments charge 1.48 s (3 attempts: 503, 503, 200; retry.retry ×2) → payments POST /payments 498 ms (503)",
		"  - also: orders→catalog reserve 12 ms; catalog POST /reservations 9 ms; payments POST /payments 498 ms (503); payments POST /payments 458 ms",
		"- **t=5 s** 1.10 s · orders `place_order` POST /orders → timeout · trace `" + ids[2] + "`\n  - trace missing: not in the trace store",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}

	// The report carries the citations: re-rendering from its JSON needs no store.
	dir := t.TempDir()
	if err := Write(dir, rep); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "demo-with.json"))
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if Markdown(&back) != md || back.Seconds[4].Slowest.TraceID != ids[1] {
		t.Errorf("the report read back renders differently, or lost second 4's trace id")
	}
	page, _ := os.ReadFile(filepath.Join(dir, "demo-with.html"))
	if !strings.Contains(string(page), "orders→payments charge 1.48 s (3 attempts: 503, 503, 200; retry.retry ×2)") {
		t.Error("the HTML report lacks the by-hop breakdown")
	}

	// A store that fails, and a lab without one, are reported, not errors.
	lab = &fakeLab{err: errors.New("connection refused")}
	if c := citeTraces(context.Background(), lab, rep); len(c) != 3 || !strings.Contains(c[0].Missing, "trace store unreadable: connection refused") {
		t.Errorf("failing store: %+v", c)
	}
	if c := citeTraces(context.Background(), &labWithoutTraces{}, rep); len(c) != 3 || c[0].Missing != "the lab has no trace store" {
		t.Errorf("no store: %+v", c)
	}
}

func TestCiteTracesWaitsOutTheExportLag(t *testing.T) {
	// The slowest request of second 0 ended just now: its spans may still be in the exporters' batches.
	id := loadtest.NewTraceID().String()
	start := time.Now().Add(-time.Second - exportLag + 300*time.Millisecond)
	rep := &Report{Started: start, FaultOnS: 0, FaultOffS: 1, Seconds: []Second{{T: 0, Slowest: &Slowest{SlowRequest: loadtest.SlowRequest{
		LatencyMs: 1, TraceID: id}}}}}
	t0 := time.Now()
	c := citeTraces(context.Background(), &fakeLab{}, rep)
	if waited := time.Since(t0); waited < 250*time.Millisecond || waited > 3*time.Second {
		t.Errorf("waited %s before reading, want about 300 ms", waited)
	}
	if len(c) != 1 || c[0].Missing == "" {
		t.Errorf("citations %+v", c)
	}
}

func TestCombineKeepsTheSlowestOfEveryStream(t *testing.T) {
	a, b := loadtest.NewTraceID().String(), loadtest.NewTraceID().String()
	streams := map[string]*loadtest.Result{
		"orders": {Seconds: []loadtest.Second{{T: 0, Sent: 1, Slowest: &loadtest.SlowRequest{LatencyMs: 80, Kind: "place_order", TraceID: a}}}},
		"reads":  {Seconds: []loadtest.Second{{T: 0, Sent: 1, Slowest: &loadtest.SlowRequest{LatencyMs: 120, Kind: "browse", TraceID: b}}, {T: 1}}},
	}
	secs := combine(streams, 2)
	if s := secs[0].Slowest; s == nil || s.Stream != "reads" || s.TraceID != b || s.LatencyMs != 120 {
		t.Errorf("second 0 slowest %+v", s)
	}
	if secs[1].Slowest != nil {
		t.Errorf("second 1 sent nothing but cites %+v", secs[1].Slowest)
	}
}
