package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Service-to-service tokens: HS256 JWTs with the calling service as issuer and the called service as
// audience, minted by the caller's client transport and checked by the callee before its API runs.
const (
	// MinServiceSecretBytes is the shortest secret accepted (RFC 7518 §3.2: at least the hash size).
	MinServiceSecretBytes = 32
	// DefaultServiceTokenTTL is the lifetime of a minted token (SERVICE_TOKEN_TTL).
	DefaultServiceTokenTTL = 5 * time.Minute
	// MaxServiceTokenTTL bounds the lifetime a callee accepts: a leaked token is useless soon after.
	MaxServiceTokenTTL = 10 * time.Minute
	// serviceTokenLeeway absorbs clock skew between hosts on exp, nbf and iat.
	serviceTokenLeeway = 30 * time.Second
)

// ServiceAuth is the shop's service-to-service authentication, shared by every service: the secret
// the tokens are signed with and their lifetime. A zero ServiceAuth is off: clients send no token and
// servers ask for none. ServiceAuthFromEnv never returns it off unless SERVICE_AUTH=off says so, so a
// process started without a secret refuses to run; only a Config built in Go (tests) is off silently.
type ServiceAuth struct {
	Secret []byte // HS256 key tokens are minted with and accepted by, at least MinServiceSecretBytes; nil: off
	// Accept is a second key whose tokens are accepted but never minted: the next key before a rotation,
	// the previous one during it, so the services can change keys one restart at a time (docs/security.md).
	Accept []byte
	TTL    time.Duration    // lifetime of minted tokens; 0: DefaultServiceTokenTTL
	Now    func() time.Time // nil: time.Now (tests inject a clock)
}

// ServiceAuthFromEnv reads SERVICE_AUTH (on, the default, or off), the secret from SERVICE_TOKEN_SECRET
// or the file SERVICE_TOKEN_SECRET_FILE names (a mounted secret; trailing newlines are dropped), the
// key also accepted from SERVICE_TOKEN_ACCEPT_SECRET or SERVICE_TOKEN_ACCEPT_SECRET_FILE (optional), and
// SERVICE_TOKEN_TTL. With auth on, a missing or short secret is a configuration error.
func ServiceAuthFromEnv(env *Env) ServiceAuth {
	mode := strings.ToLower(env.String("SERVICE_AUTH", "on"))
	a := ServiceAuth{TTL: env.Duration("SERVICE_TOKEN_TTL", DefaultServiceTokenTTL)}
	if a.TTL < 10*time.Second || a.TTL > MaxServiceTokenTTL {
		env.Fail("SERVICE_TOKEN_TTL=%s: want 10s to %s", a.TTL, MaxServiceTokenTTL)
	}
	secret, ok := secretFromEnv(env, "SERVICE_TOKEN_SECRET")
	if !ok {
		return a
	}
	accept, ok := secretFromEnv(env, "SERVICE_TOKEN_ACCEPT_SECRET")
	if !ok {
		return a
	}
	switch mode {
	case "off":
		if secret != "" || accept != "" {
			env.Fail("SERVICE_AUTH=off but a service token secret is set: drop one of them")
		}
		return ServiceAuth{}
	case "on":
	default:
		env.Fail("SERVICE_AUTH=%q: want on or off", mode)
		return a
	}
	switch {
	case secret == "":
		env.Fail("SERVICE_TOKEN_SECRET or SERVICE_TOKEN_SECRET_FILE is required (at least %d bytes); "+
			"SERVICE_AUTH=off runs without service authentication (tests only)", MinServiceSecretBytes)
	case len(secret) < MinServiceSecretBytes:
		env.Fail("the service token secret must be at least %d bytes", MinServiceSecretBytes)
	default:
		a.Secret = []byte(secret)
	}
	switch {
	case accept == "":
	case len(accept) < MinServiceSecretBytes:
		env.Fail("the accepted service token secret must be at least %d bytes", MinServiceSecretBytes)
	case accept == secret:
		env.Fail("SERVICE_TOKEN_ACCEPT_SECRET is the same key as SERVICE_TOKEN_SECRET: set it to the next or the previous key")
	default:
		a.Accept = []byte(accept)
	}
	return a
}

// secretFromEnv reads the key named name from that variable or from the file name_FILE names (trailing
// newlines dropped); "" when neither is set. ok is false when both are set or the file cannot be read.
func secretFromEnv(env *Env, name string) (secret string, ok bool) {
	secret, file := env.String(name, ""), env.String(name+"_FILE", "")
	switch {
	case secret != "" && file != "":
		env.Fail("set %s or %s_FILE, not both", name, name)
		return "", false
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			env.Fail("%s_FILE: %v", name, err)
			return "", false
		}
		return strings.TrimRight(string(data), "\r\n"), true
	}
	return secret, true
}

// String describes a without its secret, so a Config printed with %v or logged never shows the key.
func (a ServiceAuth) String() string {
	if !a.Enabled() {
		return "service auth off"
	}
	if len(a.Accept) > 0 {
		return fmt.Sprintf("service auth on (%d-byte secret, %d-byte key also accepted, tokens live %s)", len(a.Secret), len(a.Accept), a.ttl())
	}
	return fmt.Sprintf("service auth on (%d-byte secret, tokens live %s)", len(a.Secret), a.ttl())
}

// LogValue is String for slog.
func (a ServiceAuth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// Enabled reports whether tokens are minted and required.
func (a ServiceAuth) Enabled() bool { return len(a.Secret) > 0 }

func (a ServiceAuth) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a ServiceAuth) ttl() time.Duration {
	if a.TTL > 0 {
		return a.TTL
	}
	return DefaultServiceTokenTTL
}

// Client is the typed-client option that makes caller's calls to callee carry a service token; it does
// nothing when a is off.
func (a ServiceAuth) Client(caller, callee string) ClientOption {
	return WithTokenSource(a.TokenSource(caller, callee))
}

// TokenSource returns the source of caller's tokens for callee, or nil when a is off.
func (a ServiceAuth) TokenSource(caller, callee string) *TokenSource {
	if !a.Enabled() {
		return nil
	}
	return &TokenSource{auth: a, issuer: caller, audience: callee}
}

// TokenSource mints one caller's tokens for one callee and caches the current one until less than a
// fifth of its lifetime is left, so a token is signed once per few minutes, not once per call. It is
// safe for concurrent use.
type TokenSource struct {
	auth             ServiceAuth
	issuer, audience string

	mu        sync.Mutex
	token     string
	refreshAt time.Time
}

// Token returns a valid token, minting a new one when the cached one is due for refresh.
func (s *TokenSource) Token() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.auth.now()
	if s.token != "" && now.Before(s.refreshAt) {
		return s.token, nil
	}
	ttl := s.auth.ttl()
	claims := jwt.RegisteredClaims{
		Issuer: s.issuer, Subject: s.issuer, Audience: jwt.ClaimStrings{s.audience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.auth.Secret)
	if err != nil {
		return "", fmt.Errorf("service token for %s: %w", s.audience, err)
	}
	s.token, s.refreshAt = token, now.Add(ttl-ttl/5)
	return token, nil
}

// Error codes of service authentication.
const (
	CodeMissingServiceToken = "missing_service_token" // 401: no bearer token
	CodeInvalidServiceToken = "invalid_service_token" // 401: malformed, bad signature or algorithm, bad claims
	CodeExpiredServiceToken = "expired_service_token" // 401: past its exp
	CodeWrongAudience       = "wrong_audience"        // 403: a valid token minted for another service
	CodeCallerNotAllowed    = "caller_not_allowed"    // 403: a valid token from a service this route does not serve
)

// callerRule lets only callers reach the paths under prefix (with method, when one is set).
type callerRule struct {
	method, prefix string
	callers        []string
}

func (r callerRule) matches(req *http.Request) bool {
	return (r.method == "" || r.method == req.Method) &&
		(req.URL.Path == r.prefix || strings.HasPrefix(req.URL.Path, r.prefix+"/"))
}

// RequireServiceToken makes next answer only calls carrying a valid token for audience self: 401 when
// the token is missing, malformed, wrongly signed (HS256 only) or expired, 403 when it was minted for
// another service or its issuer may not call the path. callers maps a path prefix ("/reservations"
// covers "/reservations" and "/reservations/…"), optionally after a method ("GET /payments"), to the
// services allowed there. The most specific rule that matches decides: the longest prefix, and a rule
// with a method before one without. A path no rule matches is open to every service holding a valid
// token.
func (a ServiceAuth) RequireServiceToken(self string, callers map[string][]string, next http.Handler) http.Handler {
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(serviceTokenLeeway),
		jwt.WithTimeFunc(a.now),
	)
	rules := make([]callerRule, 0, len(callers))
	for key, cs := range callers {
		method, prefix, ok := strings.Cut(key, " ")
		if !ok {
			method, prefix = "", key
		}
		rules = append(rules, callerRule{method, strings.TrimSuffix(prefix, "/"), cs})
	}
	slices.SortFunc(rules, func(x, y callerRule) int {
		if len(x.prefix) != len(y.prefix) {
			return len(y.prefix) - len(x.prefix)
		}
		return len(y.method) - len(x.method)
	})
	var keys any = a.Secret
	if len(a.Accept) > 0 {
		keys = jwt.VerificationKeySet{Keys: []jwt.VerificationKey{a.Secret, a.Accept}}
	}
	key := func(*jwt.Token) (any, error) { return keys, nil }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			refuse(w, self, Errorf(http.StatusUnauthorized, CodeMissingServiceToken, "a service token (Authorization: Bearer) is required"))
			return
		}
		var claims jwt.RegisteredClaims
		if _, err := parser.ParseWithClaims(raw, &claims, key); err != nil {
			refuse(w, self, tokenError(err))
			return
		}
		if claims.Issuer == "" {
			refuse(w, self, Errorf(http.StatusUnauthorized, CodeInvalidServiceToken, "the service token names no issuer"))
			return
		}
		if claims.ExpiresAt.Sub(a.now()) > MaxServiceTokenTTL+serviceTokenLeeway {
			refuse(w, self, Errorf(http.StatusUnauthorized, CodeInvalidServiceToken, "the service token lives longer than %s", MaxServiceTokenTTL))
			return
		}
		if !slices.Contains(claims.Audience, self) {
			refuse(w, self, Errorf(http.StatusForbidden, CodeWrongAudience, "the service token is not for %s", self))
			return
		}
		for _, rule := range rules {
			if rule.matches(r) {
				if !slices.Contains(rule.callers, claims.Issuer) {
					refuse(w, self, Errorf(http.StatusForbidden, CodeCallerNotAllowed, "%s may not call %s %s", claims.Issuer, r.Method, r.URL.Path))
					return
				}
				break
			}
		}
		// The caller goes on the span, not into a new context: r must reach the mux unchanged, since the
		// route pattern the mux records on it is what the metrics and the server span are labelled by.
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("auth.caller", claims.Issuer))
		next.ServeHTTP(w, r)
	})
}

// bearer returns the token of an "Authorization: Bearer <token>" value (the scheme is case-insensitive).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func tokenError(err error) *Error {
	if errors.Is(err, jwt.ErrTokenExpired) {
		return Errorf(http.StatusUnauthorized, CodeExpiredServiceToken, "the service token has expired")
	}
	// Parse errors name the failed check only, never the secret or the token.
	return Errorf(http.StatusUnauthorized, CodeInvalidServiceToken, "invalid service token: %v", err)
}

// refuse answers a refused call; 401s carry the challenge RFC 6750 asks for.
func refuse(w http.ResponseWriter, realm string, e *Error) {
	switch {
	case e.Code == CodeMissingServiceToken:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q`, realm))
	case e.Status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token"`, realm))
	case e.Status == http.StatusForbidden:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope"`, realm))
	}
	WriteError(w, e)
}
