package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"
)

const (
	// HeaderRequestID carries the request id across hops.
	HeaderRequestID = "X-Request-Id"
	// HeaderDeadline carries the caller's remaining time budget in milliseconds; the callee turns it into
	// its context deadline, so no service works past its caller's deadline.
	HeaderDeadline = "X-Deadline-Ms"
	// HeaderIdempotencyKey makes a mutating call safe to retry.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// MaxDeadlineMs is the largest budget a caller may send in X-Deadline-Ms (a day); larger values would
// overflow a time.Duration and are no deadline a caller means.
const MaxDeadlineMs = 24 * 60 * 60 * 1000

type ctxKey int

const (
	requestIDKey ctxKey = iota
	idempotencyKeyKey
)

// WithRequestID returns ctx carrying id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithIdempotencyKey returns ctx carrying the Idempotency-Key of the inbound request.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKeyKey, key)
}

// IdempotencyKey returns the Idempotency-Key in ctx, or "".
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKeyKey).(string)
	return k
}

// NewID returns a random 128-bit hex id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// requestContext adopts or creates the request id and turns the caller's deadline header into a
// context deadline.
func requestContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = NewID()
		}
		w.Header().Set(HeaderRequestID, id)
		ctx := WithRequestID(r.Context(), id)
		if key := r.Header.Get(HeaderIdempotencyKey); key != "" {
			ctx = WithIdempotencyKey(ctx, key)
		}
		if v := r.Header.Get(HeaderDeadline); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms < 0 || ms > MaxDeadlineMs {
				WriteError(w, BadRequest("bad_deadline", "%s must be an integer of milliseconds from 0 to %d", HeaderDeadline, MaxDeadlineMs))
				return
			}
			if ms == 0 {
				WriteError(w, Errorf(http.StatusGatewayTimeout, "deadline_exceeded", "the caller's deadline has already passed"))
				return
			}
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ContextHandler wraps a slog.Handler so every record logged with a context carries its request id
// and, inside a trace, its trace id, so logs and traces join.
type ContextHandler struct{ slog.Handler }

func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ContextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ContextHandler{h.Handler.WithAttrs(as)}
}
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{h.Handler.WithGroup(name)}
}
