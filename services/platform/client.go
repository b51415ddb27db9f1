package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	httptransport "github.com/go-kit/kit/transport/http"
	"go.opentelemetry.io/otel/trace"
)

// NewHTTPClient returns the *http.Client typed clients use by default: pooled keep-alive connections and
// a transport that propagates the request id, the caller's remaining deadline and its trace context to
// the callee.
func NewHTTPClient() *http.Client {
	base := &http.Transport{
		Proxy:                 nil, // the lab's links are explicit (Toxiproxy listeners), never an env proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // per-call timeouts belong to the timeout policy
	}
	return &http.Client{Transport: PropagatingTransport{Base: base}}
}

// PropagatingTransport copies the request id, the remaining deadline and the trace context (W3C
// traceparent, from a client span it starts per request) from the request's context into headers, and
// the service token of Tokens into Authorization. A call whose deadline has passed is not sent.
type PropagatingTransport struct {
	Base http.RoundTripper
	// Tracing starts the client spans; nil means the provider of the caller's span (no span: none).
	Tracing trace.TracerProvider
	// Tokens mints the service token every request carries; nil sends none.
	Tokens *TokenSource
}

func (t PropagatingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r = r.Clone(ctx)
	if id := RequestID(ctx); id != "" && r.Header.Get(HeaderRequestID) == "" {
		r.Header.Set(HeaderRequestID, id)
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		ms := (left + time.Millisecond - 1) / time.Millisecond
		r.Header.Set(HeaderDeadline, strconv.FormatInt(int64(ms), 10))
	}
	if t.Tokens != nil {
		token, err := t.Tokens.Token()
		if err != nil {
			return nil, err
		}
		r.Header.Set("Authorization", "Bearer "+token)
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	r, span := clientSpan(t.Tracing, r)
	resp, err := base.RoundTrip(r)
	endClientSpan(span, resp, err)
	return resp, err
}

// Idempotent is implemented by requests that carry an Idempotency-Key; the client sends it as a header
// and the retry policy may retry such calls.
type Idempotent interface{ IdempotencyKeyValue() string }

// IsIdempotent reports whether a call with this method and request may be retried safely.
func IsIdempotent(method string, request any) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	if k, ok := request.(Idempotent); ok && k.IdempotencyKeyValue() != "" {
		return true
	}
	return false
}

// ClientEndpoint builds a go-kit client endpoint that sends a Req to base+path(req) with method (JSON body
// unless GET/HEAD) and decodes a 2xx answer into a *Resp. Any other answer becomes an *Error with the
// callee's status, so policies can tell business outcomes (4xx) from failures (5xx, transport errors).
func ClientEndpoint[Req, Resp any](c *http.Client, base *url.URL, method string, path func(Req) string) endpoint.Endpoint {
	enc := func(ctx context.Context, r *http.Request, request any) error {
		req, ok := request.(Req)
		if !ok {
			return fmt.Errorf("client: request is %T, want %T", request, *new(Req))
		}
		ref, err := url.Parse(path(req))
		if err != nil {
			return fmt.Errorf("client: bad path: %w", err)
		}
		r.URL = base.ResolveReference(ref)
		r.Host = r.URL.Host
		r.Header.Set("Accept", "application/json")
		if k, ok := request.(Idempotent); ok && k.IdempotencyKeyValue() != "" {
			r.Header.Set(HeaderIdempotencyKey, k.IdempotencyKeyValue())
		}
		if method == http.MethodGet || method == http.MethodHead {
			return nil
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(req); err != nil {
			return err
		}
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = int64(buf.Len())
		r.Body = io.NopCloser(&buf)
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }
		return nil
	}
	return httptransport.NewClient(method, base, enc, DecodeResponse[Resp],
		httptransport.SetClient(c), httptransport.BufferedStream(false)).Endpoint()
}

// DecodeResponse decodes a 2xx JSON answer into a new *T and anything else into an *Error.
func DecodeResponse[T any](_ context.Context, r *http.Response) (any, error) {
	if r.StatusCode < 200 || r.StatusCode > 299 {
		return nil, ResponseError(r)
	}
	v := new(T)
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(v); err != nil {
		return nil, fmt.Errorf("decode %s answer: %w", r.Request.URL.Path, err)
	}
	if s, ok := any(v).(StatusReceiver); ok {
		s.SetHTTPStatus(r.StatusCode)
	}
	return v, nil
}

// StatusReceiver is implemented by client answer types that need the HTTP status of a 2xx answer, such
// as a create call telling a new resource (201) from an idempotent repeat (200).
type StatusReceiver interface{ SetHTTPStatus(code int) }

// ResponseError turns a non-2xx answer into an *Error, keeping the callee's code and message when the body
// has the shop's error shape.
func ResponseError(r *http.Response) *Error {
	data, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var body errorBody
	if json.Unmarshal(data, &body) == nil && body.Error != nil && body.Error.Code != "" {
		body.Error.Status = r.StatusCode
		return body.Error
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return &Error{Status: r.StatusCode, Code: "upstream_" + strconv.Itoa(r.StatusCode), Message: msg}
}

// ParseBaseURL parses a base URL from configuration, returning a clear error for bad input.
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want http://host:port", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	return u, nil
}

// PolicyFunc returns the client-side policy chain (retry, breaker, bulkhead, timeout…) for one operation
// of a downstream; idempotent says whether the operation may be retried. Typed clients call it once per
// operation when they are built.
type PolicyFunc func(op string, idempotent bool) endpoint.Middleware

// ClientConfig is what every typed client is configured with.
type ClientConfig struct {
	HTTP     *http.Client
	Policies PolicyFunc
	// Tokens, when set, makes every call carry a service token (see ServiceAuth.Client).
	Tokens *TokenSource
	// Source, when set, spreads each operation's calls over the downstream's instances (see Endpoint);
	// nil: every call goes to the client's base URL.
	Source EndpointSource
}

// EndpointSource makes the endpoint of one operation of a downstream from a go-kit factory that builds
// the operation's client endpoint for one instance URL: a discovery.Balancer or a canary router.
type EndpointSource interface {
	Endpoint(op string, f sd.Factory) endpoint.Endpoint
}

// ClientOption configures a typed client.
type ClientOption func(*ClientConfig)

// WithHTTPClient makes a typed client send through c.
func WithHTTPClient(c *http.Client) ClientOption { return func(cfg *ClientConfig) { cfg.HTTP = c } }

// WithPolicies wraps each operation of a typed client in the chain f returns.
func WithPolicies(f PolicyFunc) ClientOption { return func(cfg *ClientConfig) { cfg.Policies = f } }

// WithTokenSource makes a typed client's calls carry tokens minted by s (nil: none).
func WithTokenSource(s *TokenSource) ClientOption { return func(cfg *ClientConfig) { cfg.Tokens = s } }

// WithEndpointSource makes a typed client's operations call the instances src picks instead of its base
// URL (nil: the base URL).
func WithEndpointSource(src EndpointSource) ClientOption {
	return func(cfg *ClientConfig) { cfg.Source = src }
}

// NewClientConfig applies opts over the defaults (NewHTTPClient, no policies, no service token). With
// a token source, the HTTP client is copied so its transport adds the token: a client shared between
// typed clients of different callees stays unchanged.
func NewClientConfig(opts ...ClientOption) ClientConfig {
	cfg := ClientConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = NewHTTPClient()
	}
	if cfg.Tokens != nil {
		c := *cfg.HTTP
		if pt, ok := c.Transport.(PropagatingTransport); ok {
			pt.Tokens = cfg.Tokens
			c.Transport = pt
		} else {
			c.Transport = PropagatingTransport{Base: c.Transport, Tokens: cfg.Tokens}
		}
		cfg.HTTP = &c
	}
	return cfg
}

// Endpoint returns operation op's endpoint, built by build for a base URL: for base itself without a
// source, for each instance through the source with one (instance URLs parsed as ParseBaseURL does).
func (cfg ClientConfig) Endpoint(op string, base *url.URL, build func(*url.URL) endpoint.Endpoint) endpoint.Endpoint {
	if cfg.Source == nil {
		return build(base)
	}
	return cfg.Source.Endpoint(op, func(instance string) (endpoint.Endpoint, io.Closer, error) {
		u, err := ParseBaseURL(instance)
		if err != nil {
			return nil, nil, err
		}
		return build(u), nil, nil
	})
}

// ClientOperation is one operation of a typed client: ClientEndpoint to the base URL (or, with a source,
// to each instance), wrapped in the operation's policies.
func ClientOperation[Req, Resp any](cfg ClientConfig, op string, idempotent bool, base *url.URL, method string, path func(Req) string) endpoint.Endpoint {
	return cfg.Wrap(op, idempotent, cfg.Endpoint(op, base, func(u *url.URL) endpoint.Endpoint {
		return ClientEndpoint[Req, Resp](cfg.HTTP, u, method, path)
	}))
}

// Wrap applies the configured policies of op to e.
func (cfg ClientConfig) Wrap(op string, idempotent bool, e endpoint.Endpoint) endpoint.Endpoint {
	if cfg.Policies == nil {
		return e
	}
	return cfg.Policies(op, idempotent)(e)
}
