// Package platformtest holds what the services' fuzz targets check for any input: never a panic or a
// 5xx (but a 504 when the caller's own short deadline passed), the JSON error shape on every refusal, a
// strictly decodable body on every success, and a request id echoed or replaced.
package platformtest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/resilience-lab/lab/services/platform"
)

// Request builds a request as the server would parse it off the wire: rawPath, when set, is the
// escaped form of path (ids with '/', '%' or non-ASCII bytes).
func Request(method, path, rawPath string, body []byte) *http.Request {
	r := httptest.NewRequest(method, "/", bytes.NewReader(body))
	r.URL.Path, r.URL.RawPath = path, rawPath
	r.RequestURI = r.URL.RequestURI()
	r.Header.Set("Content-Type", "application/json")
	return r
}

// WireHeader returns v as net/http hands a header value to handlers (surrounding blanks trimmed), or
// false when no HTTP request can carry it (control bytes).
func WireHeader(v string) (string, bool) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return "", false
		}
	}
	return strings.Trim(v, " \t"), true
}

// SetHeader sets a header unless v is empty.
func SetHeader(r *http.Request, name, v string) {
	if v != "" {
		r.Header.Set(name, v)
	}
}

// ShortDeadline reports whether an X-Deadline-Ms value is a budget a request may really exhaust, so a
// 504 deadline_exceeded is the right answer; a minute is far beyond any fuzz iteration.
func ShortDeadline(v string) bool {
	ms, err := strconv.ParseInt(v, 10, 64)
	return err == nil && ms >= 0 && ms < 60_000
}

// CheckRequestID: a valid X-Request-Id is echoed, any other is replaced by a fresh one.
func CheckRequestID(t *testing.T, rec *httptest.ResponseRecorder, sent string) {
	t.Helper()
	got := rec.Header().Get(platform.HeaderRequestID)
	valid := sent != "" && len(sent) <= 128 && strings.IndexFunc(sent, func(c rune) bool { return c < 0x21 || c > 0x7e }) < 0
	if (valid && got != sent) || (!valid && len(got) != 32) {
		t.Fatalf("X-Request-Id %q answered with %q", sent, got)
	}
}

type wireError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// CheckAnswer asserts what holds for any input and reports whether the answer is a success, whose body
// the caller then decodes into the route's documented type. A 3xx is ServeMux sending a path that needs
// cleaning (/a/../b) to its clean form: routing, not an error.
func CheckAnswer(t *testing.T, rec *httptest.ResponseRecorder, deadlineMayPass bool) bool {
	t.Helper()
	switch {
	case rec.Code >= 200 && rec.Code < 300:
		return true
	case rec.Code >= 300 && rec.Code < 400:
		if rec.Header().Get("Location") == "" {
			t.Fatalf("HTTP %d without a Location: %q", rec.Code, rec.Body)
		}
		return false
	case rec.Code >= 500 && !(rec.Code == http.StatusGatewayTimeout && deadlineMayPass):
		t.Fatalf("HTTP %d for caller input: %q", rec.Code, rec.Body)
	}
	var e wireError
	if err := platform.DecodeStrict(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == "" {
		t.Fatalf("HTTP %d without the error shape {\"error\":{\"code\",\"message\"}}: %q (%v)", rec.Code, rec.Body, err)
	}
	if rec.Code == http.StatusGatewayTimeout && e.Error.Code != "deadline_exceeded" {
		t.Fatalf("HTTP 504 with code %q, want deadline_exceeded", e.Error.Code)
	}
	return false
}

// DecodeAnswer decodes a success strictly (no unknown fields, one JSON value) into v.
func DecodeAnswer(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("HTTP %d with Content-Type %q", rec.Code, ct)
	}
	if err := platform.DecodeStrict(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("HTTP %d body is not a %T: %v: %q", rec.Code, v, err, rec.Body)
	}
}
