// Package tracestore is the lab's trace collector: a bounded, in-memory store of the spans the services
// export over OTLP/HTTP, served by the lab's Toxiproxy binary on its API port (the one port the harness
// reaches besides the gateway), so a chaos report can look up the trace of a second's slowest request.
//
//	POST /v1/traces        OTLP/HTTP export: protobuf (application/x-protobuf) or JSON (application/json), gzip allowed
//	GET  /traces/{traceid} the trace's spans as JSON, in start order (404 when unknown or evicted)
//	GET  /traces           how full the store is and the most recent trace ids
//
// It keeps the last MaxTraces traces (the oldest trace goes first, however recently it gained a span) and
// at most MaxSpansPerTrace spans of each, with attribute values, attributes and events per span capped:
// its memory is bounded whatever the services send. It is a lab tool, not a collector: no sampling,
// no search, nothing persisted.
package tracestore

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/resilience-lab/lab/services/platform"
)

// Defaults for Options left zero.
const (
	DefaultMaxTraces        = 4096
	DefaultMaxSpansPerTrace = 256
	DefaultMaxBodyBytes     = 8 << 20
	// Per-span caps: what a report needs is the shape of a trace and the policy decisions on it.
	maxAttributes  = 32
	maxEvents      = 32
	maxValueLength = 256
	// recentIDs is how many trace ids GET /traces lists.
	recentIDs = 20
)

// Options bound a Store.
type Options struct {
	MaxTraces        int
	MaxSpansPerTrace int
	// MaxBodyBytes bounds an export request's body, compressed and uncompressed alike.
	MaxBodyBytes int64
}

// Span is one stored span.
type Span struct {
	TraceID  string `json:"trace_id"`
	SpanID   string `json:"span_id"`
	ParentID string `json:"parent_span_id,omitempty"`
	// Service is the exporter's service.name resource attribute.
	Service string `json:"service"`
	Name    string `json:"name"`
	// Kind is server, client, internal, producer or consumer ("" when unspecified).
	Kind       string    `json:"kind,omitempty"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"duration_ms"`
	// Status is unset, ok or error.
	Status        string         `json:"status"`
	StatusMessage string         `json:"status_message,omitempty"`
	Attributes    map[string]any `json:"attributes,omitempty"`
	// Events are what happened during the span: a policy's decision ("retry.retry",
	// "breaker.rejection", "bulkhead.wait"…), an exception.
	Events []Event `json:"events,omitempty"`
}

// Event is one span event, OffsetMs after its span started.
type Event struct {
	Name       string         `json:"name"`
	OffsetMs   float64        `json:"offset_ms"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Trace is every stored span of one trace, in start order.
type Trace struct {
	TraceID string `json:"trace_id"`
	Spans   []Span `json:"spans"`
	// DroppedSpans counts spans refused once the trace held MaxSpansPerTrace.
	DroppedSpans int `json:"dropped_spans,omitempty"`
}

// Stats says how full a store is.
type Stats struct {
	Traces       int      `json:"traces"`
	MaxTraces    int      `json:"max_traces"`
	Spans        int      `json:"spans"`
	Evicted      uint64   `json:"evicted_traces"`
	DroppedSpans uint64   `json:"dropped_spans"`
	Recent       []string `json:"recent"` // the newest trace ids, newest first
}

type traceID [16]byte

type entry struct {
	spans   []Span
	dropped int
}

// Store holds the most recent traces. It is safe for concurrent use.
type Store struct {
	o  Options
	mu sync.Mutex
	// traces and ring hold the same ids; ring is in arrival order from next (the oldest once full), so
	// eviction is one map delete.
	traces  map[traceID]*entry
	ring    []traceID
	next    int
	spans   int
	evicted uint64
	dropped uint64
}

// New returns an empty store; zero options take the defaults.
func New(o Options) *Store {
	if o.MaxTraces <= 0 {
		o.MaxTraces = DefaultMaxTraces
	}
	if o.MaxSpansPerTrace <= 0 {
		o.MaxSpansPerTrace = DefaultMaxSpansPerTrace
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return &Store{o: o, traces: make(map[traceID]*entry, o.MaxTraces), ring: make([]traceID, 0, o.MaxTraces)}
}

// Add stores the spans of an export request and returns how many it refused: spans without a valid
// trace or span id, and spans beyond a trace's MaxSpansPerTrace.
func (s *Store) Add(req *coltracepb.ExportTraceServiceRequest) (rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := stringAttr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				var id traceID
				if len(sp.GetTraceId()) != len(id) || len(sp.GetSpanId()) != 8 || isZero(sp.GetTraceId()) {
					rejected++
					continue
				}
				copy(id[:], sp.GetTraceId())
				e := s.entry(id)
				if len(e.spans) >= s.o.MaxSpansPerTrace {
					e.dropped++
					s.dropped++
					rejected++
					continue
				}
				e.spans = append(e.spans, convert(sp, service))
				s.spans++
			}
		}
	}
	return rejected
}

// entry returns the trace id's entry, making room by evicting the oldest trace when the store is full.
func (s *Store) entry(id traceID) *entry {
	if e, ok := s.traces[id]; ok {
		return e
	}
	e := &entry{}
	if len(s.ring) < s.o.MaxTraces {
		s.ring = append(s.ring, id)
	} else {
		old := s.ring[s.next]
		s.spans -= len(s.traces[old].spans)
		delete(s.traces, old)
		s.evicted++
		s.ring[s.next] = id
		s.next = (s.next + 1) % s.o.MaxTraces
	}
	s.traces[id] = e
	return e
}

// Trace returns the stored spans of the trace id (32 hex digits), in start order.
func (s *Store) Trace(id string) (*Trace, bool) {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 16 {
		return nil, false
	}
	key := traceID(b)
	s.mu.Lock()
	e, ok := s.traces[key]
	var t *Trace
	if ok {
		t = &Trace{TraceID: hex.EncodeToString(key[:]), Spans: slices.Clone(e.spans), DroppedSpans: e.dropped}
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	slices.SortStableFunc(t.Spans, func(a, b Span) int { return a.Start.Compare(b.Start) })
	return t, true
}

// Stats returns how full the store is.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Traces: len(s.traces), MaxTraces: s.o.MaxTraces, Spans: s.spans, Evicted: s.evicted, DroppedSpans: s.dropped,
		Recent: []string{}}
	// The newest id sits just before next (once full) or at the end (before).
	for i := 1; i <= min(recentIDs, len(s.ring)); i++ {
		j := len(s.ring) - i
		if len(s.ring) == s.o.MaxTraces {
			j = (s.next - i + len(s.ring)) % len(s.ring)
		}
		st.Recent = append(st.Recent, hex.EncodeToString(s.ring[j][:]))
	}
	return st
}

// Register adds the store's endpoints to mux.
func (s *Store) Register(mux *http.ServeMux) {
	mux.HandleFunc("/v1/traces", s.export)
	mux.HandleFunc("GET /traces/{traceid}", s.getTrace)
	mux.HandleFunc("GET /traces", func(w http.ResponseWriter, r *http.Request) { platform.WriteJSON(w, http.StatusOK, s.Stats()) })
}

// Handler is the store's endpoints on a mux of their own.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

const (
	contentProtobuf = "application/x-protobuf"
	contentJSON     = "application/json"
)

func (s *Store) export(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		platform.WriteError(w, platform.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s /v1/traces: only POST exports spans", r.Method))
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != contentProtobuf && mt != contentJSON) {
		platform.WriteError(w, platform.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"an OTLP export is %s or %s, not %q", contentProtobuf, contentJSON, r.Header.Get("Content-Type")))
		return
	}
	body, perr := s.readBody(w, r)
	if perr != nil {
		platform.WriteError(w, perr)
		return
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if mt == contentProtobuf {
		err = proto.Unmarshal(body, req)
	} else {
		err = unmarshalJSON(body, req)
	}
	if err != nil {
		platform.WriteError(w, platform.BadRequest("malformed_otlp", "not an OTLP trace export (%s): %v", mt, err))
		return
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rejected := s.Add(req); rejected > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(rejected),
			ErrorMessage: "spans without valid ids, or beyond the store's spans per trace, were dropped"}
	}
	var out []byte
	if mt == contentProtobuf {
		out, err = proto.Marshal(resp)
	} else {
		out, err = protojson.Marshal(resp)
	}
	if err != nil {
		platform.WriteError(w, platform.Errorf(http.StatusInternalServerError, "internal", "%v", err))
		return
	}
	w.Header().Set("Content-Type", mt)
	_, _ = w.Write(out)
}

// readBody reads at most MaxBodyBytes, gunzipping a gzip-encoded body (bounded again after inflating).
func (s *Store) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *platform.Error) {
	var in io.Reader = http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, platform.BadRequest("malformed_gzip", "Content-Encoding gzip, but the body is not: %v", err)
		}
		defer zr.Close()
		in = io.LimitReader(zr, s.o.MaxBodyBytes+1)
	default:
		return nil, platform.Errorf(http.StatusUnsupportedMediaType, "unsupported_encoding", "Content-Encoding %q: want gzip or none", enc)
	}
	body, err := io.ReadAll(in)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) || int64(len(body)) > s.o.MaxBodyBytes:
		return nil, platform.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the export exceeds %d bytes", s.o.MaxBodyBytes)
	case err != nil:
		return nil, platform.BadRequest("unreadable_body", "%v", err)
	case len(body) == 0:
		return nil, platform.BadRequest("empty_body", "the body is empty; an OTLP export is required")
	}
	return body, nil
}

func (s *Store) getTrace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("traceid")
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 || isZero(b) {
		platform.WriteError(w, platform.BadRequest("bad_trace_id", "trace id %q: want 32 hex digits, not all zero", id))
		return
	}
	t, ok := s.Trace(id)
	if !ok {
		platform.WriteError(w, platform.NotFound("no trace %s: never received, or evicted (the store keeps the last %d)", id, s.o.MaxTraces))
		return
	}
	platform.WriteJSON(w, http.StatusOK, t)
}

// unmarshalJSON decodes OTLP/JSON. It differs from protojson's mapping only in trace and span ids,
// which are hex, not base64: protojson reads the hex digits as base64 (every hex digit is a base64
// digit, and 32 or 16 of them decode without padding), so the ids are re-encoded to recover the
// digits and then hex-decoded. Unknown fields are ignored, as OTLP asks of a receiver.
func unmarshalJSON(body []byte, req *coltracepb.ExportTraceServiceRequest) error {
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, req); err != nil {
		return err
	}
	fix := func(b []byte, want int) ([]byte, error) {
		if len(b) == 0 {
			return b, nil
		}
		out, err := hex.DecodeString(base64.StdEncoding.EncodeToString(b))
		if err != nil || len(out) != want {
			return nil, fmt.Errorf("id %q: want %d hex digits", base64.StdEncoding.EncodeToString(b), 2*want)
		}
		return out, nil
	}
	var err error
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				if sp.TraceId, err = fix(sp.TraceId, 16); err != nil {
					return err
				}
				if sp.SpanId, err = fix(sp.SpanId, 8); err != nil {
					return err
				}
				if sp.ParentSpanId, err = fix(sp.ParentSpanId, 8); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var kinds = map[tracepb.Span_SpanKind]string{
	tracepb.Span_SPAN_KIND_INTERNAL: "internal", tracepb.Span_SPAN_KIND_SERVER: "server",
	tracepb.Span_SPAN_KIND_CLIENT: "client", tracepb.Span_SPAN_KIND_PRODUCER: "producer",
	tracepb.Span_SPAN_KIND_CONSUMER: "consumer",
}

var statuses = map[tracepb.Status_StatusCode]string{
	tracepb.Status_STATUS_CODE_UNSET: "unset", tracepb.Status_STATUS_CODE_OK: "ok", tracepb.Status_STATUS_CODE_ERROR: "error",
}

func convert(sp *tracepb.Span, service string) Span {
	start := unixNano(sp.GetStartTimeUnixNano())
	out := Span{
		TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
		Service: service, Name: truncate(sp.GetName()), Kind: kinds[sp.GetKind()], Start: start,
		Status: statuses[sp.GetStatus().GetCode()], StatusMessage: truncate(sp.GetStatus().GetMessage()),
		Attributes: attributes(sp.GetAttributes()),
	}
	if out.Status == "" {
		out.Status = "unset"
	}
	if p := sp.GetParentSpanId(); len(p) == 8 && !isZero(p) {
		out.ParentID = hex.EncodeToString(p)
	}
	if end := sp.GetEndTimeUnixNano(); end > sp.GetStartTimeUnixNano() {
		out.DurationMs = math.Round(float64(end-sp.GetStartTimeUnixNano())/1e3) / 1e3
	}
	for i, ev := range sp.GetEvents() {
		if i == maxEvents {
			break
		}
		out.Events = append(out.Events, Event{Name: truncate(ev.GetName()),
			OffsetMs:   math.Round(float64(unixNano(ev.GetTimeUnixNano()).Sub(start).Microseconds())) / 1e3,
			Attributes: attributes(ev.GetAttributes())})
	}
	return out
}

func attributes(kvs []*commonpb.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	out := make(map[string]any, min(len(kvs), maxAttributes))
	for _, kv := range kvs {
		if len(out) == maxAttributes {
			break
		}
		out[truncate(kv.GetKey())] = value(kv.GetValue())
	}
	return out
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return truncate(x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || math.IsInf(x.DoubleValue, 0) {
			return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64) // JSON has no NaN
		}
		return x.DoubleValue
	case nil:
		return nil
	default: // arrays, maps, bytes: a lab report reads none of them
		return truncate(fmt.Sprint(v))
	}
}

func stringAttr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return truncate(kv.GetValue().GetStringValue())
		}
	}
	return ""
}

func truncate(s string) string {
	if len(s) <= maxValueLength {
		return s
	}
	n := maxValueLength
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func unixNano(n uint64) time.Time {
	if n > math.MaxInt64 {
		n = math.MaxInt64
	}
	return time.Unix(0, int64(n)).UTC()
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
