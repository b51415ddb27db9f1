package gateway

// These tests keep docs/openapi.yaml true to the gateway: the routes registered in code and the documented
// operations must be the same set with the same security, and every operation is probed in the modes a
// client meets (valid, unauthenticated, rate limited, bad input, failing, open-circuit or slow downstreams)
// with every answer checked against what the document says it is: a documented status, its required
// headers, a body valid for its schema and, for errors, a code the document gives as an example.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"maps"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/services/platform"
)

const openAPIFile = "../../docs/openapi.yaml"

// bearerScheme is the name of the document's JWT security scheme.
const bearerScheme = "bearerAuth"

// The subset of OpenAPI 3.1 the document uses and the tests check.
type (
	openAPIDoc struct {
		OpenAPI    string                `yaml:"openapi"`
		Security   []map[string][]string `yaml:"security"`
		Paths      map[string]pathItem   `yaml:"paths"`
		Components struct {
			SecuritySchemes map[string]securityScheme `yaml:"securitySchemes"`
			Parameters      map[string]apiParameter   `yaml:"parameters"`
			Headers         map[string]apiHeader      `yaml:"headers"`
			Responses       map[string]apiResponse    `yaml:"responses"`
			Examples        map[string]apiExample     `yaml:"examples"`
			Schemas         map[string]any            `yaml:"schemas"`
		} `yaml:"components"`
	}
	pathItem struct {
		Get     *apiOperation `yaml:"get"`
		Put     *apiOperation `yaml:"put"`
		Post    *apiOperation `yaml:"post"`
		Delete  *apiOperation `yaml:"delete"`
		Options *apiOperation `yaml:"options"`
		Head    *apiOperation `yaml:"head"`
		Patch   *apiOperation `yaml:"patch"`
		Trace   *apiOperation `yaml:"trace"`
	}
	apiOperation struct {
		OperationID string                 `yaml:"operationId"`
		Security    *[]map[string][]string `yaml:"security"` // nil: the document's default
		Parameters  []apiParameter         `yaml:"parameters"`
		RequestBody *apiRequestBody        `yaml:"requestBody"`
		Responses   map[string]apiResponse `yaml:"responses"`
	}
	securityScheme struct {
		Type         string `yaml:"type"`
		Scheme       string `yaml:"scheme"`
		BearerFormat string `yaml:"bearerFormat"`
	}
	apiParameter struct {
		Ref      string `yaml:"$ref"`
		Name     string `yaml:"name"`
		In       string `yaml:"in"`
		Required bool   `yaml:"required"`
		Schema   any    `yaml:"schema"`
		Example  any    `yaml:"example"`
	}
	apiHeader struct {
		Ref      string `yaml:"$ref"`
		Required bool   `yaml:"required"`
		Schema   any    `yaml:"schema"`
		Example  any    `yaml:"example"`
	}
	apiRequestBody struct {
		Required bool                    `yaml:"required"`
		Content  map[string]apiMediaType `yaml:"content"`
	}
	apiResponse struct {
		Ref     string                  `yaml:"$ref"`
		Headers map[string]apiHeader    `yaml:"headers"`
		Content map[string]apiMediaType `yaml:"content"`
	}
	apiMediaType struct {
		Schema   any                   `yaml:"schema"`
		Example  any                   `yaml:"example"`
		Examples map[string]apiExample `yaml:"examples"`
	}
	apiExample struct {
		Ref   string `yaml:"$ref"`
		Value any    `yaml:"value"`
	}
)

// docOperation is one documented operation with its effective security and Idempotency-Key header.
type docOperation struct {
	method, path string
	*apiOperation
	secured                       bool
	idempotencyKey, keyIsRequired bool
}

func (o docOperation) String() string { return o.method + " " + o.path }

func (o docOperation) documents(status int) bool {
	_, ok := o.Responses[strconv.Itoa(status)]
	return ok
}

// dependsOnDownstream: an operation that calls a service behind the gateway documents its failure (502).
func (o docOperation) dependsOnDownstream() bool { return o.documents(http.StatusBadGateway) }

func loadOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	data, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	return &doc
}

// operations returns every documented operation, sorted by path and method.
func (d *openAPIDoc) operations(t *testing.T) []docOperation {
	t.Helper()
	var ops []docOperation
	for _, path := range slices.Sorted(maps.Keys(d.Paths)) {
		item := d.Paths[path]
		for method, op := range map[string]*apiOperation{
			"GET": item.Get, "PUT": item.Put, "POST": item.Post, "DELETE": item.Delete,
			"OPTIONS": item.Options, "HEAD": item.Head, "PATCH": item.Patch, "TRACE": item.Trace,
		} {
			if op == nil {
				continue
			}
			reqs := d.Security
			if op.Security != nil {
				reqs = *op.Security
			}
			secured := len(reqs) > 0
			for _, req := range reqs {
				for name := range req {
					if _, ok := d.Components.SecuritySchemes[name]; !ok {
						t.Errorf("%s %s: security scheme %q is not defined", method, path, name)
					}
				}
				if _, ok := req[bearerScheme]; !ok {
					secured = false // an alternative without the bearer token
				}
			}
			o := docOperation{method: method, path: path, apiOperation: op, secured: secured}
			if p, ok := d.param(t, o, "header", platform.HeaderIdempotencyKey); ok {
				o.idempotencyKey, o.keyIsRequired = true, p.Required
			}
			ops = append(ops, o)
		}
	}
	slices.SortFunc(ops, func(a, b docOperation) int { return strings.Compare(a.String(), b.String()) })
	return ops
}

func (d *openAPIDoc) operation(t *testing.T, method, path string) docOperation {
	t.Helper()
	for _, o := range d.operations(t) {
		if o.method == method && o.path == path {
			return o
		}
	}
	t.Fatalf("%s %s is not documented", method, path)
	return docOperation{}
}

func refName(t *testing.T, ref, kind string) string {
	t.Helper()
	prefix := "#/components/" + kind + "/"
	if !strings.HasPrefix(ref, prefix) {
		t.Fatalf("$ref %q: want %s…", ref, prefix)
	}
	return strings.TrimPrefix(ref, prefix)
}

func (d *openAPIDoc) response(t *testing.T, r apiResponse) apiResponse {
	t.Helper()
	if r.Ref == "" {
		return r
	}
	got, ok := d.Components.Responses[refName(t, r.Ref, "responses")]
	if !ok {
		t.Fatalf("$ref %q is not defined", r.Ref)
	}
	return got
}

func (d *openAPIDoc) parameter(t *testing.T, p apiParameter) apiParameter {
	t.Helper()
	if p.Ref == "" {
		return p
	}
	got, ok := d.Components.Parameters[refName(t, p.Ref, "parameters")]
	if !ok {
		t.Fatalf("$ref %q is not defined", p.Ref)
	}
	return got
}

func (d *openAPIDoc) header(t *testing.T, h apiHeader) apiHeader {
	t.Helper()
	if h.Ref == "" {
		return h
	}
	got, ok := d.Components.Headers[refName(t, h.Ref, "headers")]
	if !ok {
		t.Fatalf("$ref %q is not defined", h.Ref)
	}
	return got
}

// examples returns the media type's examples by name (the single `example` is named "example").
func (d *openAPIDoc) examples(t *testing.T, m apiMediaType) map[string]any {
	t.Helper()
	out := map[string]any{}
	if m.Example != nil {
		out["example"] = m.Example
	}
	for name, ex := range m.Examples {
		if ex.Ref != "" {
			var ok bool
			if ex, ok = d.Components.Examples[refName(t, ex.Ref, "examples")]; !ok {
				t.Fatalf("$ref %q is not defined", ex.Ref)
			}
		}
		if ex.Value == nil {
			t.Fatalf("example %q has no value", name)
		}
		out[name] = ex.Value
	}
	return out
}

// param returns the operation's resolved parameter in "in" named name.
func (d *openAPIDoc) param(t *testing.T, o docOperation, in, name string) (apiParameter, bool) {
	t.Helper()
	for _, p := range o.Parameters {
		p = d.parameter(t, p)
		if p.In == in && strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return apiParameter{}, false
}

// asJSON turns a value decoded from YAML into what encoding/json decodes (numbers as json.Number), so
// examples and real answers are validated alike.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("example %v is not JSON: %v", v, err)
	}
	out, err := decodeJSONValue(data)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decodeJSONValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// schemaAnnotations are keywords that do not constrain a value.
var schemaAnnotations = map[string]bool{
	"description": true, "title": true, "examples": true, "example": true, "default": true,
	"readOnly": true, "writeOnly": true, "deprecated": true, "$comment": true,
}

// validate checks v (as decoded by decodeJSONValue) against a JSON Schema of the document. It knows the
// keywords the document uses and reports any other, so no constraint is silently left unchecked.
func (d *openAPIDoc) validate(schema any, v any, at string) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: schema %v is not an object", at, schema)}
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	for _, kw := range slices.Sorted(maps.Keys(s)) {
		arg := s[kw]
		switch kw {
		case "$ref":
			ref, _ := arg.(string)
			name, found := strings.CutPrefix(ref, "#/components/schemas/")
			target, ok := d.Components.Schemas[name]
			if !found || !ok {
				fail("$ref %q is not a defined schema", ref)
				continue
			}
			errs = append(errs, d.validate(target, v, at)...)
		case "type":
			var types []string
			switch a := arg.(type) {
			case string:
				types = []string{a}
			case []any:
				for _, x := range a {
					types = append(types, fmt.Sprint(x))
				}
			}
			if !slices.ContainsFunc(types, func(typ string) bool { return hasJSONType(v, typ) }) {
				fail("%s is not of type %v", compact(v), types)
			}
		case "enum":
			if !slices.ContainsFunc(arg.([]any), func(x any) bool { return compact(x) == compact(v) }) {
				fail("%s is not one of %v", compact(v), arg)
			}
		case "const":
			if compact(arg) != compact(v) {
				fail("%s is not %s", compact(v), compact(arg))
			}
		case "required":
			if obj, ok := v.(map[string]any); ok {
				for _, name := range arg.([]any) {
					if _, ok := obj[name.(string)]; !ok {
						fail("required property %q is missing", name)
					}
				}
			}
		case "properties":
			if obj, ok := v.(map[string]any); ok {
				props := arg.(map[string]any)
				for name, pv := range obj {
					if ps, ok := props[name]; ok {
						errs = append(errs, d.validate(ps, pv, at+"."+name)...)
					}
				}
			}
		case "additionalProperties":
			obj, ok := v.(map[string]any)
			if !ok {
				continue
			}
			props, _ := s["properties"].(map[string]any)
			for name, pv := range obj {
				if _, declared := props[name]; declared {
					continue
				}
				switch a := arg.(type) {
				case bool:
					if !a {
						fail("property %q is not in the schema", name)
					}
				default:
					errs = append(errs, d.validate(a, pv, at+"."+name)...)
				}
			}
		case "items":
			if arr, ok := v.([]any); ok {
				for i, x := range arr {
					errs = append(errs, d.validate(arg, x, fmt.Sprintf("%s[%d]", at, i))...)
				}
			}
		case "minItems", "maxItems":
			if arr, ok := v.([]any); ok && !withinBound(kw, float64(len(arr)), arg) {
				fail("%d items, %s %v", len(arr), kw, arg)
			}
		case "minLength", "maxLength":
			if str, ok := v.(string); ok && !withinBound(kw, float64(utf8.RuneCountInString(str)), arg) {
				fail("%q has %d characters, %s %v", str, utf8.RuneCountInString(str), kw, arg)
			}
		case "minimum", "maximum":
			if n, ok := v.(json.Number); ok {
				f, err := n.Float64()
				if err != nil || !withinBound(kw, f, arg) {
					fail("%s is out of %s %v", n, kw, arg)
				}
			}
		case "pattern":
			re, err := regexp.Compile(fmt.Sprint(arg))
			if err != nil {
				fail("pattern %q: %v", arg, err)
			} else if str, ok := v.(string); ok && !re.MatchString(str) {
				fail("%q does not match %s", str, arg)
			}
		case "format":
			if arg != "date-time" {
				fail("format %q is not checked by this test", arg)
			} else if str, ok := v.(string); ok {
				if _, err := time.Parse(time.RFC3339, str); err != nil {
					fail("%q is not an RFC 3339 date-time", str)
				}
			}
		default:
			if !schemaAnnotations[kw] {
				fail("schema keyword %q is not checked by this test; use one it knows or teach it", kw)
			}
		}
	}
	return errs
}

func hasJSONType(v any, typ string) bool {
	switch x := v.(type) {
	case nil:
		return typ == "null"
	case bool:
		return typ == "boolean"
	case string:
		return typ == "string"
	case []any:
		return typ == "array"
	case map[string]any:
		return typ == "object"
	case json.Number:
		if typ == "number" {
			return true
		}
		_, err := x.Int64()
		return typ == "integer" && err == nil
	}
	return false
}

func withinBound(kw string, n float64, bound any) bool {
	var b float64
	switch x := bound.(type) {
	case int:
		b = float64(x)
	case float64:
		b = x
	default:
		return false
	}
	if strings.HasPrefix(kw, "min") {
		return n >= b
	}
	return n <= b
}

func compact(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

// errorBody decodes an error answer or example strictly as {"error":{"code","message"}} with both set.
func errorBody(data []byte) (code string, err error) {
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return "", err
	}
	if body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
		return "", errors.New(`want {"error":{"code":…,"message":…}} with both set`)
	}
	return body.Error.Code, nil
}

// codeRoute is a route registered on a ServeMux in the gateway's code.
type codeRoute struct {
	method, path string
	authed       bool
}

// registeredRoutes reads the routes the gateway's handler (transport.go) and the shared server
// (/healthz, /readyz, /metrics, platform/server.go) register: every Handle or HandleFunc with a literal
// pattern. An /api route is authenticated when its handler is wrapped in authed(…).
func registeredRoutes(t *testing.T) []codeRoute {
	t.Helper()
	seen := map[string]codeRoute{}
	for _, file := range []string{"transport.go", filepath.Join("..", "platform", "server.go")} {
		f, err := parser.ParseFile(gotoken.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != gotoken.STRING {
				return true // e.g. a key of Service.Extra, added below
			}
			pattern, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			method, path, ok := strings.Cut(pattern, " ")
			if !ok {
				if pattern != "/" { // "/" mounts the API handler itself
					t.Errorf("%s: route %q has no method", file, pattern)
				}
				return true
			}
			authed := false
			if inner, ok := call.Args[1].(*ast.CallExpr); ok {
				if id, ok := inner.Fun.(*ast.Ident); ok && id.Name == "authed" {
					authed = true
				}
			}
			r := codeRoute{method: method, path: path, authed: authed}
			if prev, dup := seen[pattern]; dup && prev != r {
				t.Errorf("%s is registered both with and without auth", pattern)
			}
			seen[pattern] = r
			return true
		})
	}
	if len(seen) == 0 {
		t.Fatal("found no routes in the code")
	}
	// The routes the gateway adds beside its API (/debug/resilience) are map keys, not literals: read
	// them off the assembled gateway. Like /metrics, they need no token.
	extra := newTestGateway(t, nil).svc.Extra
	if len(extra) == 0 {
		t.Fatal("the gateway serves no route beside its API; /debug/resilience is expected")
	}
	for pattern := range extra {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			t.Errorf("extra route %q has no method", pattern)
		}
		seen[pattern] = codeRoute{method: method, path: path}
	}
	return slices.Collect(maps.Values(seen))
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := doc.operations(t)
	documented := map[string]docOperation{}
	for _, o := range ops {
		documented[o.String()] = o
	}
	inCode := map[string]bool{}
	for _, r := range registeredRoutes(t) {
		key := r.method + " " + r.path
		inCode[key] = true
		o, ok := documented[key]
		if !ok {
			t.Errorf("%s is registered but not documented", key)
			continue
		}
		if o.secured != r.authed {
			t.Errorf("%s: documented bearer security %v, code requires auth %v", key, o.secured, r.authed)
		}
	}
	for _, o := range ops {
		if !inCode[o.String()] {
			t.Errorf("%s is documented but the code registers no such route", o)
		}
	}

	s, ok := doc.Components.SecuritySchemes[bearerScheme]
	if !ok || s.Type != "http" || s.Scheme != "bearer" || s.BearerFormat != "JWT" {
		t.Errorf("security scheme %s = %+v, want http bearer JWT", bearerScheme, s)
	}
	for _, o := range ops {
		if o.OperationID == "" {
			t.Errorf("%s has no operationId", o)
		}
		for _, name := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(o.path, -1) {
			if p, ok := doc.param(t, o, "path", name[1]); !ok || !p.Required {
				t.Errorf("%s: path parameter %q is not declared required", o, name[1])
			}
		}
		// The shared server middleware reads these on every route.
		for _, h := range []string{platform.HeaderRequestID, platform.HeaderDeadline} {
			if _, ok := doc.param(t, o, "header", h); !ok {
				t.Errorf("%s does not declare the %s header", o, h)
			}
		}
		if !o.secured {
			continue
		}
		r, ok := o.Responses["401"]
		if !ok {
			t.Errorf("%s is secured but documents no 401", o)
			continue
		}
		r = doc.response(t, r)
		if h, ok := r.Headers["WWW-Authenticate"]; !ok || !doc.header(t, h).Required {
			t.Errorf("%s: 401 does not document a required WWW-Authenticate header", o)
		}
		codes := exampleCodes(t, doc, r)
		for _, code := range []string{CodeMissingToken, CodeInvalidToken, CodeTokenExpired} {
			if !codes[code] {
				t.Errorf("%s: 401 has no example with code %s", o, code)
			}
		}
	}
}

// exampleCodes returns the error codes of a resolved error response's JSON examples.
func exampleCodes(t *testing.T, doc *openAPIDoc, r apiResponse) map[string]bool {
	t.Helper()
	codes := map[string]bool{}
	for _, ex := range doc.examples(t, r.Content["application/json"]) {
		data, _ := json.Marshal(ex)
		if code, err := errorBody(data); err == nil {
			codes[code] = true
		}
	}
	return codes
}

func TestOpenAPIExamples(t *testing.T) {
	doc := loadOpenAPI(t)
	checked := 0
	checkMedia := func(where string, m apiMediaType, mediaType string, errorStatus bool) {
		exs := doc.examples(t, m)
		if len(exs) == 0 {
			t.Errorf("%s %s has no example", where, mediaType)
		}
		for name, ex := range exs {
			at := where + " example " + name
			if mediaType != "application/json" {
				if _, ok := ex.(string); !ok {
					t.Errorf("%s: want a string for %s", at, mediaType)
				}
				continue
			}
			for _, e := range doc.validate(m.Schema, asJSON(t, ex), at) {
				t.Error(e)
			}
			if errorStatus {
				data, _ := json.Marshal(ex)
				if _, err := errorBody(data); err != nil {
					t.Errorf("%s: %s: %v", at, data, err)
				}
			}
			checked++
		}
	}
	referenced := map[string]bool{}
	checkResponses := func(where string, responses map[string]apiResponse) {
		for status, r := range responses {
			if r.Ref != "" {
				referenced[refName(t, r.Ref, "responses")] = true
			}
			r = doc.response(t, r)
			code, err := strconv.Atoi(status)
			if err != nil {
				t.Errorf("%s: response %q: want a status code", where, status)
				continue
			}
			if len(r.Content) == 0 {
				t.Errorf("%s %s documents no content", where, status)
			}
			if code >= 400 && r.Content["application/json"].Schema == nil {
				t.Errorf("%s %s: an error answer must document application/json", where, status)
			}
			if h, ok := r.Headers[platform.HeaderRequestID]; !ok || !doc.header(t, h).Required {
				t.Errorf("%s %s: every answer carries a required %s header", where, status, platform.HeaderRequestID)
			}
			for mt, m := range r.Content {
				checkMedia(where+" "+status, m, mt, code >= 400)
			}
		}
	}
	for _, o := range doc.operations(t) {
		checkResponses(o.String(), o.Responses)
		if o.RequestBody != nil {
			for mt, m := range o.RequestBody.Content {
				checkMedia(o.String()+" request", m, mt, false)
			}
		}
		for _, p := range o.Parameters {
			p = doc.parameter(t, p)
			if p.Example == nil {
				t.Errorf("%s: parameter %s has no example", o, p.Name)
				continue
			}
			for _, e := range doc.validate(p.Schema, asJSON(t, p.Example), o.String()+" parameter "+p.Name) {
				t.Error(e)
			}
		}
	}
	for name := range doc.Components.Responses {
		if !referenced[name] {
			t.Errorf("components response %s is not used by any operation", name)
		}
	}
	if checked == 0 {
		t.Fatal("no example was checked")
	}
}

// probePathValues are ids the fake shop holds for alice, by documented path; other paths use their
// parameter's example.
var probePathValues = map[string]string{
	"/api/products/{id}":       "p-1",
	"/api/orders/{id}":         "o-alice",
	"/api/orders/{id}/details": "o-alice",
	"/api/payments/{id}":       "pay-alice",
}

// probeRequest is one request built from the document for an operation.
type probeRequest struct {
	template string // the documented path
	path     string // with path parameters filled in
	header   http.Header
	body     []byte // nil: none
	object   map[string]any
}

func (d *openAPIDoc) probeRequest(t *testing.T, o docOperation, token string) *probeRequest {
	t.Helper()
	r := &probeRequest{template: o.path, path: o.path, header: http.Header{}}
	for _, p := range o.Parameters {
		p = d.parameter(t, p)
		switch p.In {
		case "path":
			v, ok := probePathValues[o.path]
			if !ok {
				v = fmt.Sprint(p.Example)
			}
			r.path = strings.ReplaceAll(r.path, "{"+p.Name+"}", v)
		case "header":
			if p.Required {
				r.header.Set(p.Name, fmt.Sprint(p.Example))
			}
		}
	}
	if o.secured {
		r.header.Set("Authorization", "Bearer "+token)
	}
	if o.RequestBody != nil {
		m, ok := o.RequestBody.Content["application/json"]
		if !ok {
			t.Fatalf("%s: the request body must be application/json", o)
		}
		for _, ex := range d.examples(t, m) {
			r.object, _ = asJSON(t, ex).(map[string]any)
			r.body, _ = json.Marshal(ex)
			break
		}
		if r.body == nil {
			t.Fatalf("%s: document an example request body", o)
		}
		r.header.Set("Content-Type", "application/json")
	}
	return r
}

// probeMode is a condition every operation is probed in. want returns the status the operation must
// answer (0: any 2xx) and, for an error, its code.
type probeMode struct {
	name    string
	applies func(o docOperation) bool // nil: every operation
	tweak   func(*Config)
	prepare func(t *testing.T, g *testGateway, token string)
	edit    func(r *probeRequest)
	want    func(o docOperation) (status int, code string)
	check   func(t *testing.T, o docOperation, a answer) // nil: nothing beyond the document
}

// servesProducts: the operation answers from the catalog, so it may answer stale.
func servesProducts(o docOperation) bool { return strings.HasPrefix(o.path, "/api/products") }

func always2xx(docOperation) (int, string) { return 0, "" }

func failDownstreams(err error) func(*testing.T, *testGateway, string) {
	return func(_ *testing.T, g *testGateway, _ string) {
		g.shop.set(func(f *fakeShop) {
			f.listErr, f.orderErr, f.paymentErr = err, err, err
			for id := range f.products {
				f.productErr[id] = err
			}
		})
	}
}

func ifDownstream(status int, code string) func(docOperation) (int, string) {
	return func(o docOperation) (int, string) {
		if o.dependsOnDownstream() {
			return status, code
		}
		return 0, ""
	}
}

func hasBody(o docOperation) bool { return o.RequestBody != nil }

func probeModes() []probeMode {
	return []probeMode{
		{
			name: "valid",
			want: always2xx,
			check: func(t *testing.T, _ docOperation, a answer) {
				if w := a.header.Get("Warning"); w != "" || bytes.Contains(a.body, []byte(`"stale"`)) {
					t.Errorf("a fresh answer is marked stale (Warning %q): %s", w, a.body)
				}
			},
		},
		{
			name: "no token",
			edit: func(r *probeRequest) { r.header.Del("Authorization") },
			want: func(o docOperation) (int, string) {
				if o.secured {
					return http.StatusUnauthorized, CodeMissingToken
				}
				return 0, ""
			},
		},
		{
			name: "expired token",
			prepare: func(_ *testing.T, g *testGateway, _ string) {
				g.clock.Advance(2 * time.Hour) // dev tokens live 1h in testConfig
			},
			want: func(o docOperation) (int, string) {
				if o.secured {
					return http.StatusUnauthorized, CodeTokenExpired
				}
				return 0, ""
			},
		},
		{
			name:    "no Idempotency-Key",
			applies: func(o docOperation) bool { return o.idempotencyKey },
			edit:    func(r *probeRequest) { r.header.Del(platform.HeaderIdempotencyKey) },
			want: func(o docOperation) (int, string) {
				if o.keyIsRequired {
					return http.StatusBadRequest, "missing_idempotency_key"
				}
				return 0, ""
			},
		},
		{
			name: "bad X-Deadline-Ms",
			edit: func(r *probeRequest) { r.header.Set(platform.HeaderDeadline, "soon") },
			want: func(docOperation) (int, string) { return http.StatusBadRequest, "bad_deadline" },
		},
		{
			name: "X-Deadline-Ms already passed",
			edit: func(r *probeRequest) { r.header.Set(platform.HeaderDeadline, "0") },
			want: func(docOperation) (int, string) {
				return http.StatusGatewayTimeout, CodeDeadlineExceeded
			},
		},
		{
			name:    "downstreams fail",
			prepare: failDownstreams(errors.New("dial tcp 127.0.0.1:1: connection refused")),
			want:    ifDownstream(http.StatusBadGateway, CodeUpstreamUnavailable),
		},
		{
			name:    "circuits open",
			prepare: failDownstreams(breaker.ErrOpen),
			want:    ifDownstream(http.StatusServiceUnavailable, CodeCircuitOpen),
		},
		{
			name: "downstreams fail after the products were read",
			prepare: func(t *testing.T, g *testGateway, token string) {
				for _, path := range []string{"/api/products", "/api/products/" + probePathValues["/api/products/{id}"]} {
					if a := g.do(t, "GET", path, nil, bearer(token)...); a.status != http.StatusOK {
						t.Fatalf("reading %s: %d %s", path, a.status, a.body)
					}
				}
				failDownstreams(errors.New("dial tcp 127.0.0.1:1: connection refused"))(t, g, token)
			},
			want: func(o docOperation) (int, string) {
				if servesProducts(o) {
					return 0, ""
				}
				return ifDownstream(http.StatusBadGateway, CodeUpstreamUnavailable)(o)
			},
			check: func(t *testing.T, o docOperation, a answer) {
				if servesProducts(o) && (a.header.Get("Warning") != StaleWarning || !bytes.Contains(a.body, []byte(`"stale":true`))) {
					t.Errorf("want a stale answer with the Warning header, got %q: %s", a.header.Get("Warning"), a.body)
				}
			},
		},
		{
			name: "downstreams hang past the caller's deadline",
			prepare: func(_ *testing.T, g *testGateway, _ string) {
				g.shop.set(func(f *fakeShop) { f.blockCalls = true })
			},
			edit: func(r *probeRequest) { r.header.Set(platform.HeaderDeadline, "100") },
			want: ifDownstream(http.StatusGatewayTimeout, CodeDeadlineExceeded),
		},
		{
			name: "rate limited",
			// A bucket of one that refills in 1000 s on a clock that stands still.
			tweak: func(c *Config) { c.RateLimitRPS, c.RateLimitBurst = 0.001, 1 },
			prepare: func(t *testing.T, g *testGateway, token string) {
				// Getting the token spent the remote IP's bucket; spend alice's on a path with no route.
				if a := g.do(t, "GET", "/api/spend-the-bucket", nil, bearer(token)...); a.status != http.StatusNotFound {
					t.Fatalf("spending alice's bucket: %d %s", a.status, a.body)
				}
			},
			want: func(o docOperation) (int, string) {
				if o.documents(http.StatusTooManyRequests) {
					return http.StatusTooManyRequests, "rate_limited"
				}
				return 0, ""
			},
		},
		{
			name:    "bad id in the path",
			applies: func(o docOperation) bool { return strings.Contains(o.path, "{") },
			edit: func(r *probeRequest) {
				r.path = regexp.MustCompile(`\{[^}]+\}`).ReplaceAllLiteralString(r.template, "a%20b")
			},
			want: func(docOperation) (int, string) { return http.StatusBadRequest, "invalid_argument" },
		},
		{
			name:    "body not JSON",
			applies: hasBody,
			edit:    func(r *probeRequest) { r.header.Set("Content-Type", "text/plain") },
			want: func(docOperation) (int, string) {
				return http.StatusUnsupportedMediaType, "unsupported_media_type"
			},
		},
		{
			name:    "body over the limit",
			applies: hasBody,
			edit: func(r *probeRequest) {
				r.body = []byte(`{"padding":"` + strings.Repeat("x", platform.MaxBodyBytes) + `"}`)
			},
			want: func(docOperation) (int, string) {
				return http.StatusRequestEntityTooLarge, "body_too_large"
			},
		},
		{
			name:    "empty body",
			applies: hasBody,
			edit:    func(r *probeRequest) { r.body = []byte{} },
			want:    func(docOperation) (int, string) { return http.StatusBadRequest, "empty_body" },
		},
		{
			name:    "malformed body",
			applies: hasBody,
			edit:    func(r *probeRequest) { r.body = r.body[:len(r.body)-1] },
			want:    func(docOperation) (int, string) { return http.StatusBadRequest, "malformed_json" },
		},
		{
			name:    "unknown field",
			applies: hasBody,
			edit: func(r *probeRequest) {
				obj := maps.Clone(r.object)
				obj["not_a_field"] = true
				r.body, _ = json.Marshal(obj)
			},
			want: func(docOperation) (int, string) { return http.StatusBadRequest, "unknown_field" },
		},
	}
}

// TestOpenAPIOperationsAnswerAsDocumented sends each documented operation, built from the document
// (its parameters' and request body's examples), to the assembled gateway in every probe mode.
func TestOpenAPIOperationsAnswerAsDocumented(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := doc.operations(t)
	for _, mode := range probeModes() {
		t.Run(mode.name, func(t *testing.T) {
			g := newTestGateway(t, mode.tweak)
			token := g.token(t, "alice")
			if mode.prepare != nil {
				mode.prepare(t, g, token)
			}
			probed := 0
			for _, o := range ops {
				if mode.applies != nil && !mode.applies(o) {
					continue
				}
				probed++
				t.Run(o.String(), func(t *testing.T) {
					req := doc.probeRequest(t, o, token)
					req.header.Set(platform.HeaderRequestID, "probe-"+o.OperationID)
					if mode.edit != nil {
						mode.edit(req)
					}
					a := g.send(t, o.method, req)
					wantStatus, wantCode := mode.want(o)
					got := a.status
					if wantStatus == 0 && (got < 200 || got > 299) || wantStatus != 0 && got != wantStatus {
						t.Fatalf("answered %d %s, want %s", got, a.body, statusText(wantStatus))
					}
					if id := a.header.Get(platform.HeaderRequestID); id != "probe-"+o.OperationID {
						t.Errorf("%s %q, want the caller's echoed", platform.HeaderRequestID, id)
					}
					code := checkAnswer(t, doc, o, a)
					if wantCode != "" && code != wantCode {
						t.Errorf("code %q, want %q", code, wantCode)
					}
					if mode.check != nil {
						mode.check(t, o, a)
					}
				})
			}
			if probed == 0 {
				t.Fatal("no documented operation applies")
			}
		})
	}
}

func statusText(status int) string {
	if status == 0 {
		return "2xx"
	}
	return strconv.Itoa(status)
}

// send sends a probe request with its headers and body.
func (g *testGateway) send(t *testing.T, method string, r *probeRequest) answer {
	t.Helper()
	var headers []string
	for name, vs := range r.header {
		headers = append(headers, name, vs[0])
	}
	var body any
	if r.body != nil {
		body = r.body
	}
	a := g.do(t, method, r.path, body, headers...)
	if a.status == http.StatusMethodNotAllowed || a.status == http.StatusNotFound && bytes.Contains(a.body, []byte("no route for")) {
		t.Fatalf("%s %s: no route answers: %d %s", method, r.path, a.status, a.body)
	}
	return a
}

// checkAnswer checks an answer against the operation's documented response for its status and returns
// the error code of an error answer.
func checkAnswer(t *testing.T, doc *openAPIDoc, o docOperation, a answer) (code string) {
	t.Helper()
	documented, ok := o.Responses[strconv.Itoa(a.status)]
	if !ok {
		t.Fatalf("status %d is not documented: %s", a.status, a.body)
	}
	r := doc.response(t, documented)
	for name, h := range r.Headers {
		if doc.header(t, h).Required && a.header.Get(name) == "" {
			t.Errorf("answer %d lacks the documented %s header", a.status, name)
		}
	}
	if _, ok := r.Headers["Retry-After"]; ok {
		if secs, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || secs < 1 {
			t.Errorf("Retry-After %q, want whole seconds ≥ 1", a.header.Get("Retry-After"))
		}
	}
	mediaType, _, err := mime.ParseMediaType(a.header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", a.header.Get("Content-Type"), err)
	}
	m, ok := r.Content[mediaType]
	if !ok {
		t.Fatalf("answer %d is %s, documented %v", a.status, mediaType, slices.Sorted(maps.Keys(r.Content)))
	}
	if mediaType != "application/json" {
		return ""
	}
	v, err := decodeJSONValue(a.body)
	if err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.status, err, a.body)
	}
	for _, e := range doc.validate(m.Schema, v, "answer") {
		t.Error(e)
	}
	if a.status < 400 {
		return ""
	}
	code, err = errorBody(a.body)
	if err != nil {
		t.Fatalf("error answer %s: %v", a.body, err)
	}
	if !exampleCodes(t, doc, r)[code] {
		t.Errorf("answer %d with code %q: the documented response has no example with that code", a.status, code)
	}
	return code
}

// TestOpenAPIDegradedDetails checks the documented aggregate against a degraded answer, which the probe
// modes (all downstreams up, or the order itself failing) never produce.
func TestOpenAPIDegradedDetails(t *testing.T) {
	doc := loadOpenAPI(t)
	o := doc.operation(t, "GET", "/api/orders/{id}/details")
	g := newTestGateway(t, nil)
	g.shop.set(func(f *fakeShop) {
		f.productErr["p-2"] = breaker.ErrOpen
		f.paymentErr = errors.New("connection reset")
	})
	a := g.send(t, o.method, doc.probeRequest(t, o, g.token(t, "alice")))
	if a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	checkAnswer(t, doc, o, a)
	var d OrderDetails
	a.decode(t, &d)
	if !d.Degraded || len(d.Problems) != 2 {
		t.Fatalf("want a degraded answer with two problems, got %s", a.body)
	}
}
