// Package mixfile reads a request mix from a JSON file and turns it into a loadtest.Mix for a target:
// method, path, headers and body templates per request kind, weights, expected statuses, values captured
// from responses for later requests, one-off setup requests, and a gateway dev token when asked for.
package mixfile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/resilience-lab/lab/loadtest"
)

// File is a mix file.
type File struct {
	// Name labels the mix in reports.
	Name string `json:"name"`
	// Token says how to get the token of requests marked "auth": "gateway"; defaults below.
	Token *TokenSpec `json:"token,omitempty"`
	// Vars seeds template variables with fixed values.
	Vars map[string][]string `json:"vars,omitempty"`
	// Setup requests run once, in order, before the load (to capture ids for the mix); each must
	// succeed.
	Setup []Request `json:"setup,omitempty"`
	// Requests are the weighted kinds of the mix.
	Requests []Request `json:"requests"`
}

// TokenSpec is where a dev token comes from: POST Path {"subject": Subject, "ttl_seconds": TTLSeconds}
// answering {"token": "…"}. TTLSeconds 0 leaves the lifetime to the server.
type TokenSpec struct {
	Path       string `json:"path"`
	Subject    string `json:"subject"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
}

// DefaultToken is the shop gateway's dev token endpoint (docs/architecture.md), asking for two hours so
// the token outlives the longest run loadgen allows (one hour) whatever the gateway's default.
var DefaultToken = TokenSpec{Path: "/api/token", Subject: "loadgen", TTLSeconds: 7200}

// Request is one kind of request.
type Request struct {
	Name    string            `json:"name"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
	// Body is a template: a JSON string is used as is, any other JSON value (an object, say) is sent as
	// its compact encoding. Placeholders are substituted without escaping.
	Body json.RawMessage `json:"body,omitempty"`
	// Weight is the kind's share of the mix (default 1).
	Weight *int `json:"weight,omitempty"`
	// Auth "gateway" sends Authorization: Bearer <dev token>.
	Auth string `json:"auth,omitempty"`
	// Expect lists statuses that are expected business outcomes (409 out_of_stock, say), counted as OK.
	Expect []int `json:"expect,omitempty"`
	// Capture maps a variable to a dotted path into the JSON answer ("products.id" takes the id of every
	// element of products); captured values feed {{var NAME}} of later requests.
	Capture map[string]string `json:"capture,omitempty"`
}

var methods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

// Load reads and checks a mix file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a mix file strictly (unknown fields are errors) and checks it: every problem found is
// reported, each naming the request and field.
func Parse(data []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("mix file is not valid: %w", err)
	}
	if dec.More() {
		return nil, errors.New("mix file is not valid: more than one JSON value")
	}
	if _, err := f.compile(); err != nil {
		return nil, err
	}
	return &f, nil
}

// compiled is a checked request with its templates.
type compiled struct {
	Request
	name    string
	path    *template
	headers map[string]*template
	body    *template
	weight  int
}

type compiledFile struct {
	setup, requests []compiled
}

func (f *File) compile() (*compiledFile, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(f.Requests) == 0 {
		fail("mix file has no requests")
	}
	if f.Token != nil && (!strings.HasPrefix(f.Token.Path, "/") || f.Token.Subject == "" || f.Token.TTLSeconds < 0) {
		fail("token: want a path starting with /, a subject and a ttl_seconds ≥ 0")
	}
	filled := map[string]bool{}
	for name, vals := range f.Vars {
		if !validName(name) || len(vals) == 0 {
			fail("vars: %q needs a name of letters, digits and _ and at least one value", name)
		}
		filled[name] = true
	}
	cf := &compiledFile{}
	seen := map[string]bool{}
	compileAll := func(section string, reqs []Request) []compiled {
		var out []compiled
		for i, r := range reqs {
			c, rerrs := compileRequest(r)
			where := fmt.Sprintf("%s[%d]", section, i)
			if r.Name != "" {
				where += fmt.Sprintf(" (%s)", r.Name)
			}
			for _, e := range rerrs {
				fail("%s: %v", where, e)
			}
			if section == "requests" && c.name != "" {
				if seen[c.name] {
					fail("%s: name %q is used twice", where, c.name)
				}
				seen[c.name] = true
			}
			for v := range r.Capture {
				filled[v] = true
			}
			out = append(out, c)
		}
		return out
	}
	cf.setup = compileAll("setup", f.Setup)
	cf.requests = compileAll("requests", f.Requests)
	// A {{var}} no vars entry or capture can ever fill would fail every request that uses it.
	for _, c := range append(append([]compiled(nil), cf.setup...), cf.requests...) {
		for _, v := range c.vars() {
			if !filled[v] {
				fail("%s: {{var %s}} is never filled: add it to vars or capture it from a response", c.name, v)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cf, nil
}

func compileRequest(r Request) (compiled, []error) {
	var errs []error
	c := compiled{Request: r, name: r.Name, weight: 1, headers: map[string]*template{}}
	if !methods[r.Method] {
		errs = append(errs, fmt.Errorf("method %q: want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", r.Method))
	}
	if !strings.HasPrefix(r.Path, "/") {
		errs = append(errs, fmt.Errorf("path %q must start with /", r.Path))
	}
	if c.name == "" {
		c.name = r.Method + " " + r.Path
	}
	var err error
	if c.path, err = compile(r.Path); err != nil {
		errs = append(errs, fmt.Errorf("path: %w", err))
	}
	for k, v := range r.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			errs = append(errs, fmt.Errorf("header name %q is not valid", k))
			continue
		}
		if c.headers[k], err = compile(v); err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", k, err))
		}
	}
	if len(r.Body) > 0 && string(r.Body) != "null" {
		text, err := bodyText(r.Body)
		if err == nil {
			c.body, err = compile(text)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("body: %w", err))
		}
	}
	if r.Weight != nil {
		if *r.Weight < 1 {
			errs = append(errs, fmt.Errorf("weight %d must be ≥ 1", *r.Weight))
		}
		c.weight = *r.Weight
	}
	if r.Auth != "" && r.Auth != "gateway" {
		errs = append(errs, fmt.Errorf(`auth %q: the only kind is "gateway"`, r.Auth))
	}
	for _, code := range r.Expect {
		if code < 100 || code > 599 {
			errs = append(errs, fmt.Errorf("expect: %d is not an HTTP status", code))
		}
	}
	for v, p := range r.Capture {
		if !validName(v) || p == "" || strings.Contains(p, "..") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
			errs = append(errs, fmt.Errorf("capture %q: %q: want a variable name and a dotted path such as products.id", v, p))
		}
	}
	return c, errs
}

func bodyText(raw json.RawMessage) (string, error) {
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (c compiled) vars() []string {
	var out []string
	for _, t := range []*template{c.path, c.body} {
		if t != nil {
			out = append(out, t.vars...)
		}
	}
	for _, t := range c.headers {
		if t != nil {
			out = append(out, t.vars...)
		}
	}
	return out
}

// Build prepares the mix for a target: it fetches the dev token if any request needs one, runs the setup
// requests, and returns the loadtest.Mix whose kinds render the templates per request. client is used
// for the token and setup only; base is the target's base URL (its path is prefixed to every request's).
func (f *File) Build(ctx context.Context, base *url.URL, client *http.Client) (*loadtest.Mix, error) {
	cf, err := f.compile()
	if err != nil {
		return nil, err
	}
	needToken := false
	var captured []string
	for _, c := range append(append([]compiled(nil), cf.setup...), cf.requests...) {
		needToken = needToken || c.Auth == "gateway"
		for v := range c.Capture {
			captured = append(captured, v)
		}
	}
	b := &builder{base: strings.TrimRight(base.String(), "/"), vars: newVarPool(f.Vars, captured)}
	if needToken {
		spec := DefaultToken
		if f.Token != nil {
			spec = *f.Token
		}
		if b.token, err = fetchToken(ctx, client, b.base, spec); err != nil {
			return nil, err
		}
	}
	for i, c := range cf.setup {
		if err := b.runSetup(ctx, client, c, uint64(i)); err != nil {
			return nil, fmt.Errorf("setup[%d] (%s): %w", i, c.name, err)
		}
	}
	kinds := make([]loadtest.Kind, len(cf.requests))
	for i, c := range cf.requests {
		kinds[i] = b.kind(c)
	}
	return loadtest.NewMix(kinds...)
}

type builder struct {
	base  string
	token string
	vars  *varPool
}

func (b *builder) kind(c compiled) loadtest.Kind {
	k := loadtest.Kind{
		Name:   c.name,
		Weight: c.weight,
		Build:  func(ctx context.Context, seq uint64) (*http.Request, error) { return b.request(ctx, c, seq) },
	}
	if len(c.Expect) > 0 {
		k.Classify = loadtest.ExpectStatus(c.Expect...)
	}
	if len(c.Capture) > 0 {
		k.OnResponse = func(_ *http.Response, body []byte) { b.capture(c, body) }
	}
	return k
}

func (b *builder) request(ctx context.Context, c compiled, seq uint64) (*http.Request, error) {
	rc := &renderCtx{seq: seq, vars: b.vars}
	path, err := c.path.render(rc)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if c.body != nil {
		s, err := c.body.render(rc)
		if err != nil {
			return nil, err
		}
		body = strings.NewReader(s)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, b.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, t := range c.headers {
		v, err := t.render(rc)
		if err != nil {
			return nil, err
		}
		req.Header.Set(k, v)
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Auth == "gateway" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	return req, nil
}

func (b *builder) capture(c compiled, body []byte) {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return
	}
	for v, path := range c.Capture {
		for _, val := range extract(doc, strings.Split(path, ".")) {
			b.vars.add(v, val)
		}
	}
}

func (b *builder) runSetup(ctx context.Context, client *http.Client, c compiled, seq uint64) error {
	req, err := b.request(ctx, c, seq)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	classify := loadtest.DefaultClassifier
	if len(c.Expect) > 0 {
		classify = loadtest.ExpectStatus(c.Expect...)
	}
	if !classify(resp, nil).OK {
		return fmt.Errorf("%s %s answered %s: %s", c.Method, req.URL.Path, resp.Status, snippet(body))
	}
	b.capture(c, body)
	return nil
}

func fetchToken(ctx context.Context, client *http.Client, base string, spec TokenSpec) (string, error) {
	payload, _ := json.Marshal(struct {
		Subject    string `json:"subject"`
		TTLSeconds int64  `json:"ttl_seconds,omitempty"`
	}{spec.Subject, spec.TTLSeconds})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+spec.Path, bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching a dev token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("fetching a dev token: POST %s answered %s: %s", spec.Path, resp.Status, snippet(body))
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.Token+tok.AccessToken == "" {
		return "", fmt.Errorf("fetching a dev token: POST %s answered no \"token\" field: %s", spec.Path, snippet(body))
	}
	if tok.Token != "" {
		return tok.Token, nil
	}
	return tok.AccessToken, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// extract follows a dotted path through decoded JSON; an array on the way is walked element by element.
// Strings and numbers found at the end are returned as text.
func extract(doc any, path []string) []string {
	switch v := doc.(type) {
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, extract(e, path)...)
		}
		return out
	case map[string]any:
		if len(path) == 0 {
			return nil
		}
		return extract(v[path[0]], path[1:])
	case string:
		if len(path) == 0 {
			return []string{v}
		}
	case float64:
		if len(path) == 0 {
			return []string{strings.TrimSuffix(fmt.Sprintf("%f", v), ".000000")}
		}
	}
	return nil
}

// varPool holds template variables: fixed values from the file and values captured at run time, the
// latest ringSize of each. Its set of names is fixed when built, so only each ring needs a lock.
type varPool struct{ rings map[string]*ring }

const ringSize = 1024

type ring struct {
	mu   sync.Mutex
	vals []string
	next int
}

// newVarPool makes a ring for every seeded and every captured name up front, so the map is only read
// once requests run concurrently.
func newVarPool(seed map[string][]string, captured []string) *varPool {
	p := &varPool{rings: map[string]*ring{}}
	for _, n := range captured {
		p.rings[n] = &ring{}
	}
	names := make([]string, 0, len(seed))
	for n := range seed {
		names = append(names, n)
		p.rings[n] = &ring{}
	}
	sort.Strings(names)
	for _, n := range names {
		for _, v := range seed[n] {
			p.add(n, v)
		}
	}
	return p
}

func (p *varPool) add(name, v string) {
	r, ok := p.rings[name]
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.vals) < ringSize {
		r.vals = append(r.vals, v)
		return
	}
	r.vals[r.next] = v
	r.next = (r.next + 1) % ringSize
}

func (p *varPool) pick(name string) (string, error) {
	r, ok := p.rings[name]
	if !ok {
		return "", fmt.Errorf("{{var %s}} has no value yet", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.vals) == 0 {
		return "", fmt.Errorf("{{var %s}} has no value yet", name)
	}
	return r.vals[rand.IntN(len(r.vals))], nil
}
