package loadtest

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

// headerTraceParent is the W3C Trace Context header, in Go's canonical form.
const headerTraceParent = "Traceparent"

// TraceID is a W3C trace id: 16 bytes, never all zero.
type TraceID [16]byte

// IsZero reports whether t is the zero (invalid) trace id: the request started no trace.
func (t TraceID) IsZero() bool { return t == TraceID{} }

// String is the id as 32 lowercase hex digits, as in traceparent, X-Trace-Id and a trace store's URL;
// "" for the zero id.
func (t TraceID) String() string {
	if t.IsZero() {
		return ""
	}
	return hex.EncodeToString(t[:])
}

// NewTraceID returns a random trace id. math/rand/v2's global source is per-thread ChaCha8, so this
// takes no lock and allocates nothing; trace ids need to be unique, not secret.
func NewTraceID() TraceID {
	var t TraceID
	for t.IsZero() {
		binary.BigEndian.PutUint64(t[:8], rand.Uint64())
		binary.BigEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

// newSpanID returns a random, non-zero 8-byte span id: the parent the first service's span names.
func newSpanID() (s [8]byte) {
	for s == ([8]byte{}) {
		binary.BigEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

// TraceParent formats a version-00 traceparent with the sampled flag: 00-<trace id>-<span id>-01.
func TraceParent(trace TraceID, span [8]byte) string {
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], trace[:])
	b[35] = '-'
	hex.Encode(b[36:52], span[:])
	copy(b[52:], "-01")
	return string(b[:])
}
