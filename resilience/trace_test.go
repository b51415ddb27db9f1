package resilience

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-lab/lab/resilience/bulkhead"
	"github.com/resilience-lab/lab/services/platform"
)

// tracedRequest returns the context of a recorded root span (a request being served) and the exporter
// that receives every span once it ends.
func tracedRequest(t *testing.T) (context.Context, trace.Span, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	return ctx, root, exp
}

func spanAttr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func eventsNamed(s tracetest.SpanStub, name string) []sdktrace.Event {
	var out []sdktrace.Event
	for _, e := range s.Events {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func eventAttr(e sdktrace.Event, key string) string {
	for _, kv := range e.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// linkSpans returns the spans named after the link call, oldest first.
func linkSpans(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestLinkTracesRetriesAndBreakerRejections: one call through the chain is one span with a retry event
// per retry and one HTTP client span per attempt under it; once the breaker opens, its rejection is an
// event on the rejected call's span.
func TestLinkTracesRetriesAndBreakerRejections(t *testing.T) {
	c := newCallee(t)
	c.status.Store(503)
	fake, _ := httpClock()
	l, err := NewLink("gateway-catalog", testConfig(), prometheus.NewRegistry(), WithClock(fake))
	if err != nil {
		t.Fatal(err)
	}
	e := l.Policies()("get_product", true)(c.endpoint(t))
	ctx, root, exp := tracedRequest(t)
	defer root.End()

	if _, err := e(ctx, struct{}{}); err == nil {
		t.Fatal("a failing callee answered")
	}
	first := linkSpans(exp, "gateway-catalog get_product")
	if len(first) != 1 {
		t.Fatalf("%d link spans after one call, want 1", len(first))
	}
	call := first[0]
	if call.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Error("the link span is not a child of the request's span")
	}
	if spanAttr(call, "resilience.outcome") != "failure" || call.Status.Code != codes.Error {
		t.Errorf("outcome %q, status %v", spanAttr(call, "resilience.outcome"), call.Status)
	}
	retries := eventsNamed(call, "retry.retry")
	if len(retries) != 2 || eventAttr(retries[0], "resilience.attempt") != "2" || eventAttr(retries[1], "resilience.attempt") != "3" {
		t.Fatalf("retry events %v, want attempts 2 and 3", retries)
	}
	attempts := 0
	for _, s := range exp.GetSpans() {
		if s.Name == "HTTP GET" && s.Parent.SpanID() == call.SpanContext.SpanID() {
			attempts++
			if spanAttr(s, "http.response.status_code") != "503" {
				t.Errorf("attempt span status %q", spanAttr(s, "http.response.status_code"))
			}
		}
	}
	if attempts != 3 {
		t.Errorf("%d HTTP client spans under the call, want 3 (one per attempt)", attempts)
	}

	var rejected *tracetest.SpanStub
	for range 5 {
		_, _ = e(ctx, struct{}{})
		spans := linkSpans(exp, "gateway-catalog get_product")
		last := spans[len(spans)-1]
		if len(eventsNamed(last, "breaker.rejection")) > 0 {
			rejected = &last
			break
		}
	}
	if rejected == nil {
		t.Fatal("the breaker never rejected a call on the span")
	}
	if spanAttr(*rejected, "resilience.outcome") != "rejected" {
		t.Errorf("a rejected call's outcome is %q", spanAttr(*rejected, "resilience.outcome"))
	}
	if ev := eventsNamed(*rejected, "breaker.rejection")[0]; eventAttr(ev, "resilience.downstream") != "gateway-catalog" {
		t.Errorf("rejection event attributes %v", ev.Attributes)
	}
}

// TestLinkTracesBulkheadWaits: a call that queued for a bulkhead slot records how long it waited.
func TestLinkTracesBulkheadWaits(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			<-release
		}
		platform.WriteJSON(w, http.StatusOK, product{ID: "p1"})
	}))
	defer srv.Close()
	u, _ := platform.ParseBaseURL(srv.URL)
	fake, _ := httpClock()
	cfg := testConfig()
	cfg.Bulkhead = bulkhead.Config{MaxConcurrent: 1, MaxWait: time.Minute}
	cfg.Timeout = 0 // no timers but the bulkhead's
	l, err := NewLink("orders-payments", cfg, prometheus.NewRegistry(), WithClock(fake))
	if err != nil {
		t.Fatal(err)
	}
	e := l.Policies()("get_payment", true)(platform.ClientEndpoint[struct{}, product](platform.NewHTTPClient(), u,
		http.MethodGet, func(struct{}) string { return "payments/p1" }))
	ctx, root, exp := tracedRequest(t)
	defer root.End()

	first := make(chan error, 1)
	go func() { _, err := e(context.Background(), struct{}{}); first <- err }() // untraced: holds the slot
	deadline := time.Now().Add(10 * time.Second)
	for hits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first call never reached the callee")
		}
		time.Sleep(time.Millisecond)
	}
	pending := fake.Pending()
	second := make(chan error, 1)
	go func() { _, err := e(ctx, struct{}{}); second <- err }()
	if !fake.BlockUntil(pending+1, 10*time.Second) {
		t.Fatal("the second call never queued for the slot")
	}
	fake.Advance(300 * time.Millisecond)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	spans := linkSpans(exp, "orders-payments get_payment")
	if len(spans) != 1 {
		t.Fatalf("%d link spans, want 1 (the traced call)", len(spans))
	}
	waits := eventsNamed(spans[0], "bulkhead.wait")
	if len(waits) != 1 || eventAttr(waits[0], "resilience.delay_ms") != "300" {
		t.Fatalf("bulkhead wait events %v, want one of 300ms", waits)
	}
}
