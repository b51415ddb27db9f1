package tracestore

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// serve runs the store's endpoints on 127.0.0.1:0 and returns its base URL.
func serve(t *testing.T, s *Store) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// provider is a service's tracer provider exporting with the real OTLP/HTTP exporter to base, sampling
// only what a sampled parent asks for, as the lab's services run.
func provider(t *testing.T, base, service string, opts ...otlptracehttp.Option) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracehttp.New(context.Background(), append([]otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(base + "/v1/traces")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// remoteParent is the context a load driver's sampled traceparent gives the first service.
func remoteParent(t *testing.T, traceID string) context.Context {
	t.Helper()
	return propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"})
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode
}

func TestRealExportersFillATraceAcrossServices(t *testing.T) {
	s := New(Options{})
	base := serve(t, s)
	gateway := provider(t, base, "gateway")
	orders := provider(t, base, "orders", otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"

	ctx, root := gateway.Tracer("t").Start(remoteParent(t, id), "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	_, link := gateway.Tracer("t").Start(ctx, "gateway-orders create", trace.WithAttributes(attribute.String("resilience.link", "gateway-orders")))
	// The callee continues the trace from the client's traceparent.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpan(ctx, link), carrier)
	octx := propagation.TraceContext{}.Extract(context.Background(), carrier)
	_, server := orders.Tracer("t").Start(octx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.Int("http.response.status_code", 503)))
	server.SetStatus(codes.Error, "503")
	server.End()
	link.AddEvent("retry.retry", trace.WithAttributes(attribute.Int("resilience.attempt", 1), attribute.Float64("resilience.delay_ms", 12.5)))
	link.AddEvent("breaker.rejection", trace.WithAttributes(attribute.String("error.message", "circuit breaker is open")))
	link.End()
	root.End()
	// An unsampled trace (no sampled parent, ratio 0) is never exported.
	_, unsampled := gateway.Tracer("t").Start(context.Background(), "GET /products")
	unsampled.End()

	var tr Trace
	if code := getJSON(t, base+"/traces/"+id, &tr); code != http.StatusOK {
		t.Fatalf("GET trace: %d", code)
	}
	if tr.TraceID != id || len(tr.Spans) != 3 {
		t.Fatalf("trace %s with %d spans: %+v", tr.TraceID, len(tr.Spans), tr.Spans)
	}
	byName := map[string]Span{}
	for _, sp := range tr.Spans {
		byName[sp.Service+" "+sp.Name] = sp
	}
	r, l, o := byName["gateway POST /orders"], byName["gateway gateway-orders create"], byName["orders POST /orders"]
	if r.Kind != "server" || r.ParentID != "00f067aa0ba902b7" || l.ParentID != r.SpanID || o.ParentID != l.SpanID {
		t.Fatalf("parentage wrong: root %+v, link %+v, callee %+v", r, l, o)
	}
	if o.Status != "error" || o.StatusMessage != "503" || o.Attributes["http.response.status_code"] != float64(503) {
		t.Errorf("callee span %+v", o)
	}
	if l.Attributes["resilience.link"] != "gateway-orders" || len(l.Events) != 2 || l.Events[0].Name != "retry.retry" ||
		l.Events[0].Attributes["resilience.attempt"] != float64(1) || l.Events[1].Name != "breaker.rejection" {
		t.Errorf("link span %+v", l)
	}
	if r.DurationMs < l.DurationMs || r.Start.After(l.Start) || tr.Spans[0].SpanID != r.SpanID {
		t.Errorf("durations or order wrong: %+v", tr.Spans)
	}
	var st Stats
	getJSON(t, base+"/traces", &st)
	if st.Traces != 1 || st.Spans != 3 || len(st.Recent) != 1 || st.Recent[0] != id {
		t.Errorf("stats %+v", st)
	}
	got, err := Fetch(context.Background(), http.DefaultClient, base, id)
	if err != nil || len(got.Spans) != 3 {
		t.Fatalf("Fetch: %v, %+v", err, got)
	}
	if _, err := Fetch(context.Background(), http.DefaultClient, base, "0af7651916cd43dd8448eb211c80319c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Fetch of an unknown trace: %v, want ErrNotFound", err)
	}
}

// export builds a request holding n single-span traces numbered from first, spans spans each.
func export(first, n, spans int) *coltracepb.ExportTraceServiceRequest {
	ss := &tracepb.ScopeSpans{}
	for i := first; i < first+n; i++ {
		for j := 0; j < spans; j++ {
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid(i), SpanId: []byte{0, 0, 0, 0, 0, 0, byte(j), 1},
				Name: "s", StartTimeUnixNano: uint64(1e9 + j), EndTimeUnixNano: uint64(2e9 + j)})
		}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{ss}}}}
}

func tid(i int) []byte {
	b, _ := hex.DecodeString(fmt.Sprintf("%032x", i+1))
	return b
}

func TestStoreIsBoundedAndEvictsOldestFirst(t *testing.T) {
	s := New(Options{MaxTraces: 3, MaxSpansPerTrace: 2})
	if rejected := s.Add(export(0, 3, 3)); rejected != 3 {
		t.Fatalf("3 traces of 3 spans with a cap of 2: %d rejected, want 3", rejected)
	}
	// Trace 0 gains no span (it is full) but is still the oldest: it goes first, then trace 1.
	s.Add(export(0, 1, 1))
	s.Add(export(3, 2, 1))
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := s.Trace(hex.EncodeToString(tid(i))); ok != want {
			t.Errorf("trace %d held = %v, want %v", i, ok, want)
		}
	}
	st := s.Stats()
	if st.Traces != 3 || st.Spans != 4 || st.Evicted != 2 || st.DroppedSpans != 4 {
		t.Errorf("stats %+v", st)
	}
	if want := []string{hex.EncodeToString(tid(4)), hex.EncodeToString(tid(3)), hex.EncodeToString(tid(2))}; strings.Join(st.Recent, ",") != strings.Join(want, ",") {
		t.Errorf("recent %v, want %v", st.Recent, want)
	}
	// A long run: memory stays at the bound.
	for i := 0; i < 1000; i++ {
		s.Add(export(10+i, 1, 1))
	}
	if st := s.Stats(); st.Traces != 3 || st.Spans != 3 || len(s.ring) != 3 || len(s.traces) != 3 {
		t.Errorf("after 1000 more traces: %+v", st)
	}
	// Long values are cut.
	req := export(5000, 1, 1)
	req.ResourceSpans[0].ScopeSpans[0].Spans[0].Name = strings.Repeat("é", 500)
	s.Add(req)
	tr, _ := s.Trace(hex.EncodeToString(tid(5000)))
	if n := len(tr.Spans[0].Name); n > maxValueLength+len("…") || !strings.HasSuffix(tr.Spans[0].Name, "é…") {
		t.Errorf("a 1000-byte name is stored as %d bytes", n)
	}
}

func TestExportAcceptsOTLPJSONWithHexIDs(t *testing.T) {
	base := serve(t, New(Options{}))
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payments"}}]},
	  "scopeSpans":[{"scope":{"name":"x"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
	  "parentSpanId":"EEE19B7EC3C1B173","name":"POST /payments","kind":2,"startTimeUnixNano":"1544712660000000000",
	  "endTimeUnixNano":"1544712661500000000","status":{"code":2,"message":"boom"},"someFutureField":1}]}]}]}`
	resp, err := http.Post(base+"/v1/traces", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON export: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	var tr Trace
	if code := getJSON(t, base+"/traces/5b8efff798038103d269b633813fc60c", &tr); code != http.StatusOK || len(tr.Spans) != 1 {
		t.Fatalf("GET: %d %+v", code, tr)
	}
	sp := tr.Spans[0]
	if sp.SpanID != "eee19b7ec3c1b174" || sp.ParentID != "eee19b7ec3c1b173" || sp.Service != "payments" || sp.Kind != "server" ||
		sp.DurationMs != 1500 || sp.Status != "error" || sp.StatusMessage != "boom" {
		t.Errorf("span %+v", sp)
	}
}

func TestBadInputIsA4xxJSONError(t *testing.T) {
	s := New(Options{MaxBodyBytes: 1 << 10})
	base := serve(t, s)
	valid, _ := proto.Marshal(export(0, 1, 1))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte{0}, 4<<10)) // inflates past the limit
	zw.Close()
	for _, tc := range []struct {
		name, method, path, ctype, encoding string
		body                                []byte
		status                              int
		code                                string
	}{
		{"garbage protobuf", "POST", "/v1/traces", "application/x-protobuf", "", []byte("\xff\xff\xff not protobuf"), 400, "malformed_otlp"},
		{"malformed JSON", "POST", "/v1/traces", "application/json", "", []byte(`{"resourceSpans":[`), 400, "malformed_otlp"},
		{"JSON id not hex", "POST", "/v1/traces", "application/json", "",
			[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz","spanId":"EEE19B7EC3C1B174"}]}]}]}`), 400, "malformed_otlp"},
		{"empty body", "POST", "/v1/traces", "application/x-protobuf", "", nil, 400, "empty_body"},
		{"wrong content type", "POST", "/v1/traces", "text/plain", "", valid, 415, "unsupported_media_type"},
		{"unknown encoding", "POST", "/v1/traces", "application/x-protobuf", "br", valid, 415, "unsupported_encoding"},
		{"not gzip", "POST", "/v1/traces", "application/x-protobuf", "gzip", valid, 400, "malformed_gzip"},
		{"too large", "POST", "/v1/traces", "application/x-protobuf", "", bytes.Repeat([]byte{0}, 2<<10), 413, "body_too_large"},
		{"gzip bomb", "POST", "/v1/traces", "application/x-protobuf", "gzip", gz.Bytes(), 413, "body_too_large"},
		{"GET export", "GET", "/v1/traces", "", "", nil, 405, "method_not_allowed"},
		{"bad trace id", "GET", "/traces/not-hex", "", "", nil, 400, "bad_trace_id"},
		{"zero trace id", "GET", "/traces/00000000000000000000000000000000", "", "", nil, 400, "bad_trace_id"},
		{"unknown trace", "GET", "/traces/0af7651916cd43dd8448eb211c80319c", "", "", nil, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, bytes.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			data, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(data, &e); err != nil || resp.StatusCode != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, data, tc.status, tc.code)
			}
		})
	}
	// Spans without valid ids are refused one by one, with a partial success.
	req := export(0, 1, 1)
	req.ResourceSpans[0].ScopeSpans[0].Spans = append(req.ResourceSpans[0].ScopeSpans[0].Spans, &tracepb.Span{TraceId: []byte{1, 2}, SpanId: []byte{1}})
	body, _ := proto.Marshal(req)
	resp, err := http.Post(base+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out coltracepb.ExportTraceServiceResponse
	if resp.StatusCode != 200 || proto.Unmarshal(data, &out) != nil || out.GetPartialSuccess().GetRejectedSpans() != 1 || s.Stats().Spans != 1 {
		t.Fatalf("%s, response %v, stats %+v", resp.Status, &out, s.Stats())
	}
}

func FuzzExport(f *testing.F) {
	valid, _ := proto.Marshal(export(0, 2, 2))
	f.Add(valid, false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174"}]}]}]}`), true)
	h := New(Options{MaxTraces: 8, MaxSpansPerTrace: 4}).Handler()
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		req, _ := http.NewRequest("POST", "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 && (w.Code < 400 || w.Code >= 500) {
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}
