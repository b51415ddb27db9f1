package platform_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/resilience-lab/lab/services/platform"
)

const (
	testServiceSecret = "test-service-secret-0123456789abcdef"
	testNextSecret    = "test-next-service-secret-0123456789abcdef"
)

// testClock is a settable clock for token lifetimes.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestServiceAuthFromEnv(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testServiceSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nextFile := filepath.Join(dir, "next")
	if err := os.WriteFile(nextFile, []byte(testNextSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shortFile := filepath.Join(dir, "short")
	if err := os.WriteFile(shortFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     map[string]string
		enabled bool
		errHas  string // "" when the configuration is valid
	}{
		{"no secret refuses to start", nil, false, "SERVICE_TOKEN_SECRET or SERVICE_TOKEN_SECRET_FILE is required"},
		{"explicitly off", map[string]string{"SERVICE_AUTH": "off"}, false, ""},
		{"OFF in capitals", map[string]string{"SERVICE_AUTH": "OFF"}, false, ""},
		{"secret from env", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret}, true, ""},
		{"secret from a mounted file", map[string]string{"SERVICE_TOKEN_SECRET_FILE": secretFile}, true, ""},
		{"short secret", map[string]string{"SERVICE_TOKEN_SECRET": "too-short"}, false, "at least 32 bytes"},
		{"short secret in a file", map[string]string{"SERVICE_TOKEN_SECRET_FILE": shortFile}, false, "at least 32 bytes"},
		{"missing file", map[string]string{"SERVICE_TOKEN_SECRET_FILE": filepath.Join(dir, "nope")}, false, "SERVICE_TOKEN_SECRET_FILE"},
		{"both sources", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_SECRET_FILE": secretFile}, false, "not both"},
		{"off with a secret", map[string]string{"SERVICE_AUTH": "off", "SERVICE_TOKEN_SECRET": testServiceSecret}, false, "SERVICE_AUTH=off"},
		{"unknown mode", map[string]string{"SERVICE_AUTH": "maybe", "SERVICE_TOKEN_SECRET": testServiceSecret}, false, "want on or off"},
		{"ttl too long", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_TTL": "1h"}, true, "SERVICE_TOKEN_TTL"},
		{"ttl too short", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_TTL": "1s"}, true, "SERVICE_TOKEN_TTL"},
		{"a key also accepted", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_ACCEPT_SECRET": testNextSecret}, true, ""},
		{"a key also accepted from a file", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_ACCEPT_SECRET_FILE": nextFile}, true, ""},
		{"short accepted key", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_ACCEPT_SECRET": "too-short"}, true, "accepted service token secret must be at least 32 bytes"},
		{"accepted key equal to the secret", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_ACCEPT_SECRET": testServiceSecret}, true, "the same key"},
		{"accepted key from both sources", map[string]string{"SERVICE_TOKEN_SECRET": testServiceSecret, "SERVICE_TOKEN_ACCEPT_SECRET": testNextSecret, "SERVICE_TOKEN_ACCEPT_SECRET_FILE": nextFile}, false, "SERVICE_TOKEN_ACCEPT_SECRET or SERVICE_TOKEN_ACCEPT_SECRET_FILE, not both"},
		{"an accepted key without a secret", map[string]string{"SERVICE_TOKEN_ACCEPT_SECRET": testNextSecret}, false, "SERVICE_TOKEN_SECRET or SERVICE_TOKEN_SECRET_FILE is required"},
		{"off with an accepted key", map[string]string{"SERVICE_AUTH": "off", "SERVICE_TOKEN_ACCEPT_SECRET": testNextSecret}, false, "SERVICE_AUTH=off"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := platform.EnvFrom(c.env)
			a := platform.ServiceAuthFromEnv(env)
			err := env.Err()
			switch {
			case c.errHas == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.errHas != "" && (err == nil || !strings.Contains(err.Error(), c.errHas)):
				t.Fatalf("error %v, want one containing %q", err, c.errHas)
			}
			if a.Enabled() != c.enabled {
				t.Errorf("enabled = %v, want %v", a.Enabled(), c.enabled)
			}
			if c.errHas == "" && c.enabled && string(a.Secret) != testServiceSecret {
				t.Errorf("secret %q, want %q (trailing newline of a file dropped)", a.Secret, testServiceSecret)
			}
			if _, set := c.env["SERVICE_TOKEN_ACCEPT_SECRET"]; c.errHas == "" && (set || c.env["SERVICE_TOKEN_ACCEPT_SECRET_FILE"] != "") &&
				string(a.Accept) != testNextSecret {
				t.Errorf("accepted key %q, want %q", a.Accept, testNextSecret)
			}
		})
	}
}

// authedService serves an API answering 200 {} behind service auth as catalog, where only orders may reach
// /reservations and only orders and gateway GET /payments (orders alone may POST there), plus an
// operator route.
func authedService(t *testing.T, auth platform.ServiceAuth) *httptest.Server {
	t.Helper()
	s := &platform.Service{Name: "catalog", Registry: platform.NewRegistry(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		API:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { platform.WriteJSON(w, http.StatusOK, struct{}{}) }),
		Extra:   map[string]http.Handler{"GET /debug/state": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })},
		Auth:    auth,
		Callers: map[string][]string{"/reservations": {"orders"}, "/payments": {"orders"}, "GET /payments": {"orders", "gateway"}},
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestServiceTokensAreRequiredAndChecked(t *testing.T) {
	clock := &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	auth := platform.ServiceAuth{Secret: []byte(testServiceSecret), Now: clock.Now}
	srv := authedService(t, auth)

	mint := func(from, to string) string {
		tok, err := auth.TokenSource(from, to).Token()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := clock.Now()
	claims := func(mod func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{Issuer: "orders", Audience: jwt.ClaimStrings{"catalog"},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute))}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.RegisteredClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	expired := platform.ServiceAuth{Secret: []byte(testServiceSecret), Now: func() time.Time { return now.Add(-6 * time.Minute) }}
	expiredToken, err := expired.TokenSource("orders", "catalog").Token()
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, method, path, authorization string
		status                            int
		code                              string
	}{
		{"no token", "GET", "/products", "", 401, platform.CodeMissingServiceToken},
		{"basic scheme", "GET", "/products", "Basic b3JkZXJzOnB3", 401, platform.CodeMissingServiceToken},
		{"empty bearer", "GET", "/products", "Bearer ", 401, platform.CodeMissingServiceToken},
		{"garbage", "GET", "/products", "Bearer not.a.jwt", 401, platform.CodeInvalidServiceToken},
		{"another secret", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdefghij"), claims(nil)), 401, platform.CodeInvalidServiceToken},
		{"alg none", "GET", "/products", "Bearer " + sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), 401, platform.CodeInvalidServiceToken},
		{"alg HS512 with the right secret", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS512, []byte(testServiceSecret), claims(nil)), 401, platform.CodeInvalidServiceToken},
		{"alg RS256", "GET", "/products", "Bearer " + sign(jwt.SigningMethodRS256, rsaKey, claims(nil)), 401, platform.CodeInvalidServiceToken},
		{"expired", "GET", "/products", "Bearer " + expiredToken, 401, platform.CodeExpiredServiceToken},
		{"no exp", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testServiceSecret), claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), 401, platform.CodeInvalidServiceToken},
		{"issued in the future", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testServiceSecret), claims(func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour))
		})), 401, platform.CodeInvalidServiceToken},
		{"lives too long", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testServiceSecret), claims(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(24 * time.Hour))
		})), 401, platform.CodeInvalidServiceToken},
		{"no issuer", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testServiceSecret), claims(func(c *jwt.RegisteredClaims) { c.Issuer = "" })), 401, platform.CodeInvalidServiceToken},
		{"minted for payments", "GET", "/products", "Bearer " + mint("orders", "payments"), 403, platform.CodeWrongAudience},
		{"no audience", "GET", "/products", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testServiceSecret), claims(func(c *jwt.RegisteredClaims) { c.Audience = nil })), 403, platform.CodeWrongAudience},
		{"gateway reserving", "POST", "/reservations", "Bearer " + mint("gateway", "catalog"), 403, platform.CodeCallerNotAllowed},
		{"gateway committing", "POST", "/reservations/r-1/commit", "Bearer " + mint("gateway", "catalog"), 403, platform.CodeCallerNotAllowed},
		{"orders reserving", "POST", "/reservations", "Bearer " + mint("orders", "catalog"), 200, ""},
		{"orders committing", "POST", "/reservations/r-1/commit", "Bearer " + mint("orders", "catalog"), 200, ""},
		{"gateway reading products", "GET", "/products/p-1", "Bearer " + mint("gateway", "catalog"), 200, ""},
		{"a path only sharing the prefix's letters", "GET", "/reservationsx", "Bearer " + mint("gateway", "catalog"), 200, ""},
		{"gateway reading a payment", "GET", "/payments/pay-1", "Bearer " + mint("gateway", "catalog"), 200, ""},
		{"gateway charging", "POST", "/payments", "Bearer " + mint("gateway", "catalog"), 403, platform.CodeCallerNotAllowed},
		{"gateway refunding", "POST", "/payments/pay-1/refund", "Bearer " + mint("gateway", "catalog"), 403, platform.CodeCallerNotAllowed},
		{"orders charging", "POST", "/payments", "Bearer " + mint("orders", "catalog"), 200, ""},
		{"notifications reading a payment", "GET", "/payments/pay-1", "Bearer " + mint("notifications", "catalog"), 403, platform.CodeCallerNotAllowed},
		{"lower-case scheme", "GET", "/products", "bearer " + mint("orders", "catalog"), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			if c.authorization != "" {
				req.Header.Set("Authorization", c.authorization)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.code == "" {
				return
			}
			var body struct {
				Error platform.Error `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.Error.Code != c.code {
				t.Errorf("code %q (%s), want %q", body.Error.Code, body.Error.Message, c.code)
			}
			if strings.Contains(body.Error.Message, testServiceSecret) {
				t.Errorf("message leaks the secret: %s", body.Error.Message)
			}
			if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `Bearer realm="catalog"`) {
				t.Errorf("WWW-Authenticate %q", ch)
			}
		})
	}
}

// A key rotation in three rolling restarts: first every service also accepts the next key, then every
// service mints with it (still accepting the old one), then the old one goes. At every step, a caller
// and a callee from either side of the rollout understand each other; skipping the first step does not.
func TestServiceKeyRotationNeedsNoDowntime(t *testing.T) {
	oldKey, newKey := []byte(testServiceSecret), []byte(testNextSecret)
	stages := []platform.ServiceAuth{
		{Secret: oldKey},                 // before
		{Secret: oldKey, Accept: newKey}, // 1: accept the next key
		{Secret: newKey, Accept: oldKey}, // 2: mint with it, accept the previous
		{Secret: newKey},                 // 3: the previous key is gone
	}
	status := func(caller, callee platform.ServiceAuth) int {
		t.Helper()
		srv := authedService(t, callee)
		tok, err := caller.TokenSource("orders", "catalog").Token()
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/products", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 1; i < len(stages); i++ {
		for _, pair := range [][2]int{{i - 1, i}, {i, i - 1}, {i, i}} {
			if got := status(stages[pair[0]], stages[pair[1]]); got != http.StatusOK {
				t.Errorf("during step %d, a caller at stage %d → a callee at stage %d: %d, want 200", i, pair[0], pair[1], got)
			}
		}
	}
	if got := status(stages[2], stages[0]); got != http.StatusUnauthorized {
		t.Errorf("minting with the new key before every callee accepts it: %d, want 401", got)
	}
	other := platform.ServiceAuth{Secret: []byte("another-secret-0123456789abcdefghij")}
	if got := status(other, stages[2]); got != http.StatusUnauthorized {
		t.Errorf("a key that is neither: %d, want 401", got)
	}
	if s := stages[1].String(); strings.Contains(s, testNextSecret) || strings.Contains(s, testServiceSecret) || !strings.Contains(s, "also accepted") {
		t.Errorf("String() = %q: want the accepted key mentioned, never printed", s)
	}
}

func TestOperatorRoutesNeedNoServiceToken(t *testing.T) {
	srv := authedService(t, platform.ServiceAuth{Secret: []byte(testServiceSecret)})
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/debug/state"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, resp.StatusCode)
		}
	}
}

func TestTokenSourceCachesAndRefreshesBeforeExpiry(t *testing.T) {
	clock := &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	src := platform.ServiceAuth{Secret: []byte(testServiceSecret), TTL: 5 * time.Minute, Now: clock.Now}.TokenSource("gateway", "orders")
	first, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	if _, err := jwt.NewParser(jwt.WithTimeFunc(clock.Now)).ParseWithClaims(first, &claims,
		func(*jwt.Token) (any, error) { return []byte(testServiceSecret), nil }); err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != "gateway" || claims.Subject != "gateway" || len(claims.Audience) != 1 || claims.Audience[0] != "orders" ||
		claims.ExpiresAt.Sub(claims.IssuedAt.Time) != 5*time.Minute {
		t.Fatalf("claims %+v", claims)
	}
	clock.Advance(3*time.Minute + 59*time.Second)
	if again, _ := src.Token(); again != first {
		t.Error("a token with more than a fifth of its life left was minted again")
	}
	clock.Advance(2 * time.Second) // 4m01s: less than a fifth (1m) left
	renewed, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first {
		t.Error("a token with less than a fifth of its life left was not renewed")
	}
	if (platform.ServiceAuth{}).TokenSource("gateway", "orders") != nil {
		t.Error("auth off still mints tokens")
	}
}

func TestTypedClientSendsItsServiceToken(t *testing.T) {
	auth := platform.ServiceAuth{Secret: []byte(testServiceSecret)}
	srv := authedService(t, auth)
	base, _ := url.Parse(srv.URL + "/")
	type empty struct{}
	call := func(opts ...platform.ClientOption) error {
		cfg := platform.NewClientConfig(opts...)
		e := platform.ClientEndpoint[empty, empty](cfg.HTTP, base, http.MethodPost, func(empty) string { return "reservations" })
		_, err := e(context.Background(), empty{})
		return err
	}
	shared := platform.NewHTTPClient()
	if err := call(platform.WithHTTPClient(shared), auth.Client("orders", "catalog")); err != nil {
		t.Fatalf("orders → catalog reservations: %v", err)
	}
	err := call(platform.WithHTTPClient(shared))
	if e, ok := platform.AsError(err); !ok || e.Status != 401 || e.Code != platform.CodeMissingServiceToken {
		t.Fatalf("without a token: %v, want 401 %s (the shared client must not have been changed)", err, platform.CodeMissingServiceToken)
	}
	err = call(auth.Client("gateway", "catalog"))
	if e, ok := platform.AsError(err); !ok || e.Status != 403 || e.Code != platform.CodeCallerNotAllowed {
		t.Fatalf("gateway → catalog reservations: %v, want 403 %s", err, platform.CodeCallerNotAllowed)
	}
	err = call(platform.ServiceAuth{}.Client("orders", "catalog"))
	if e, ok := platform.AsError(err); !ok || e.Status != 401 {
		t.Fatalf("auth off on the client only: %v, want 401 from the server", err)
	}
}

func TestServiceAuthNeverPrintsItsSecret(t *testing.T) {
	type config struct {
		Addr string
		Auth platform.ServiceAuth
	}
	cfg := config{Addr: ":8081", Auth: platform.ServiceAuth{Secret: []byte(testServiceSecret)}}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "auth", cfg.Auth)
	for _, out := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), logged.String()} {
		if strings.Contains(out, testServiceSecret) || !strings.Contains(out, "service auth on") {
			t.Errorf("printed %q", out)
		}
	}
}
