package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is the one error shape on the wire: {"error":{"code":…,"message":…}} with an HTTP status.
// Services return it for business outcomes and bad input; clients decode it back from 4xx/5xx answers.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status) }

// StatusCode lets go-kit's DefaultErrorEncoder and our encoder pick the status.
func (e *Error) StatusCode() int { return e.Status }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Common constructors; codes are stable strings clients may switch on.
func BadRequest(code, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, code, format, args...)
}
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not_found", format, args...)
}
func Conflict(code, format string, args ...any) *Error {
	return Errorf(http.StatusConflict, code, format, args...)
}
func Unprocessable(code, format string, args ...any) *Error {
	return Errorf(http.StatusUnprocessableEntity, code, format, args...)
}

// ErrMissingIdempotencyKey is returned when a mutating call lacks the Idempotency-Key header.
var ErrMissingIdempotencyKey = BadRequest("missing_idempotency_key", "the Idempotency-Key header is required")

// AsError reports whether err is (or wraps) an *Error and returns it.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// IsBusiness reports whether err is a business outcome or a rejection of the caller's input (a 4xx
// answer other than 408 and 429): the callee is healthy, so resilience policies must not count it as a
// failure nor retry it.
func IsBusiness(err error) bool {
	e, ok := AsError(err)
	if !ok {
		return false
	}
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

type errorBody struct {
	Error *Error `json:"error"`
}

// EncodeError is the go-kit ServerErrorEncoder for every service. An *Error keeps its status; a
// context deadline becomes 504, a cancelled caller 499 (never logged as a server fault); anything else
// is a 500 with a generic message, so internals never leak.
func EncodeError(ctx context.Context, err error, w http.ResponseWriter) {
	WriteError(w, toWireError(err))
}

func toWireError(err error) *Error {
	if e, ok := AsError(err); ok {
		return e
	}
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) && sc.StatusCode() >= 400 && sc.StatusCode() < 500 {
		return Errorf(sc.StatusCode(), "bad_request", "%s", err.Error())
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Errorf(http.StatusGatewayTimeout, "deadline_exceeded", "the request's deadline passed")
	case errors.Is(err, context.Canceled):
		return Errorf(499, "cancelled", "the caller went away")
	}
	return Errorf(http.StatusInternalServerError, "internal", "internal error")
}

// WriteError writes e as the JSON error body.
func WriteError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: e})
}
