package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds every request body the services read.
const MaxBodyBytes = 1 << 20

// DecodeJSON strictly decodes the request body into v: JSON content type (when one is given), at most
// MaxBodyBytes, no unknown fields, exactly one JSON value. Every failure is a 4xx *Error.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json, not %q", ct)
		}
	}
	body := http.MaxBytesReader(nil, r.Body, MaxBodyBytes)
	return decodeStrict(body, v)
}

// DecodeStrict applies the same rules as DecodeJSON to raw bytes (events, fuzz targets).
func DecodeStrict(data []byte, v any) error {
	if len(data) > MaxBodyBytes {
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body exceeds %d bytes", MaxBodyBytes)
	}
	return decodeStrict(strings.NewReader(string(data)), v)
}

func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonError(err)
		}
		return BadRequest("malformed_json", "the body must hold a single JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var (
		syntax   *json.SyntaxError
		typ      *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body exceeds %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return BadRequest("empty_body", "the body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("malformed_json", "the body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return BadRequest("malformed_json", "malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(root)"
		}
		return BadRequest("wrong_type", "field %q must be %s, not JSON %s", field, typ.Type.String(), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return BadRequest("unknown_field", "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return BadRequest("malformed_json", "%v", fmt.Errorf("decode: %w", err))
}
