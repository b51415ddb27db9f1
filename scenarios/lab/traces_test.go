package lab_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/tracestore"
)

// The experiments cite traces only from a lab that reads them.
var _ experiment.TraceReader = (*lab.Stack)(nil)

func TestStackReadsTracesFromItsToxiproxy(t *testing.T) {
	store := tracestore.New(tracestore.Options{})
	srv := httptest.NewServer(store.Handler())
	defer srv.Close()
	id := []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	store.Add(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{
		Spans: []*tracepb.Span{{TraceId: id, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: "POST /orders"}}}}}}})
	s := &lab.Stack{ToxiproxyURL: srv.URL}
	tr, err := s.Trace(context.Background(), "4bf92f3577b34da6a3ce929d0e0e4736")
	if err != nil || len(tr.Spans) != 1 || tr.Spans[0].Name != "POST /orders" {
		t.Fatalf("Trace: %v, %+v", err, tr)
	}
	if _, err := s.Trace(context.Background(), "0af7651916cd43dd8448eb211c80319c"); !errors.Is(err, tracestore.ErrNotFound) {
		t.Fatalf("an unknown trace: %v, want ErrNotFound", err)
	}
}
