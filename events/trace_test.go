package events

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-lab/lab/events/natstest"
)

// TestTraceContextTravelsWithTheEvent: an event recorded inside a traced request keeps the request's
// traceparent in its outbox row, the relay sends it as the message's traceparent header, and the
// consumer's span (and the handler's context) continue that trace.
func TestTraceContextTravelsWithTheEvent(t *testing.T) {
	broker := natstest.Start(t)
	db := openDB(t)
	producer := sdktrace.NewTracerProvider()
	defer producer.Shutdown(context.Background())
	reqCtx, reqSpan := producer.Tracer("test").Start(context.Background(), "POST /orders")
	reqSpan.End()

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Record(reqCtx, tx, OrderPlaced{OrderID: "o-1", CustomerID: "c1", Items: []Item{{ProductID: "p", Quantity: 1}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	traceID := reqSpan.SpanContext().TraceID().String()
	if !strings.HasPrefix(ev.TraceParent, "00-"+traceID+"-"+reqSpan.SpanContext().SpanID().String()) {
		t.Fatalf("the event's traceparent %q is not the request span's", ev.TraceParent)
	}

	// A raw subscriber sees the header the relay set.
	nc, err := nats.Connect(broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	headers := make(chan string, 1)
	sub, err := nc.Subscribe(ev.Subject(), func(m *nats.Msg) { headers <- m.Header.Get(HeaderTraceParent) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	exp := tracetest.NewInMemoryExporter()
	consumerTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer consumerTP.Shutdown(context.Background())
	var mu sync.Mutex
	var handled trace.SpanContext
	startConsumer(t, testConfig(broker.URL()), ConsumerOptions{Tracing: consumerTP, DB: db,
		Handle: func(ctx context.Context, tx *sql.Tx, ev Event, p Payload) error {
			mu.Lock()
			handled = trace.SpanContextFromContext(ctx)
			mu.Unlock()
			return recordEffect(ctx, tx, ev, p)
		}})
	relay, err := StartRelay(context.Background(), testConfig(broker.URL()), RelayOptions{Service: "orders", DB: db,
		Logger: logger(t), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	select {
	case h := <-headers:
		if h != ev.TraceParent {
			t.Errorf("message header traceparent %q, want %q", h, ev.TraceParent)
		}
	case <-time.After(waitFor):
		t.Fatal("the relay published nothing")
	}
	eventually(t, "the consumer span", func() bool { return len(exp.GetSpans()) > 0 })
	span := exp.GetSpans()[0]
	if span.Name != "test process OrderPlaced" || span.SpanKind != trace.SpanKindConsumer {
		t.Errorf("consumer span %q kind %v", span.Name, span.SpanKind)
	}
	if span.SpanContext.TraceID().String() != traceID || span.Parent.SpanID() != reqSpan.SpanContext().SpanID() || !span.Parent.IsRemote() {
		t.Errorf("the consumer span is not the remote child of the request's span: trace %s parent %v",
			span.SpanContext.TraceID(), span.Parent)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled.SpanID() != span.SpanContext.SpanID() {
		t.Errorf("the handler ran outside the consumer span")
	}
}
