package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestAuthRejectsBadTokens(t *testing.T) {
	g := newTestGateway(t, nil)
	now := g.clock.Now()
	claims := func(mod func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{
			Issuer: "resilience-lab", Subject: "alice",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.RegisteredClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(jwt.SigningMethodHS256, []byte(testSecret), claims(nil))

	cases := []struct {
		name   string
		header string // the whole Authorization header; "" sends none
		code   string
	}{
		{"missing", "", CodeMissingToken},
		{"not bearer", "Basic YWxpY2U6cHc=", CodeInvalidToken},
		{"empty bearer", "Bearer ", CodeInvalidToken},
		{"malformed", "Bearer not.a.jwt", CodeInvalidToken},
		{"garbage", "Bearer " + strings.Repeat("x", 40), CodeInvalidToken},
		{"too large", "Bearer " + strings.Repeat("a", maxTokenBytes+1), CodeInvalidToken},
		{"alg none", "Bearer " + sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), CodeInvalidToken},
		{"alg HS512 with the right secret", "Bearer " + sign(jwt.SigningMethodHS512, []byte(testSecret), claims(nil)), CodeInvalidToken},
		{"alg RS256", "Bearer " + sign(jwt.SigningMethodRS256, rsaKey, claims(nil)), CodeInvalidToken},
		{"expired", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second))
		})), CodeTokenExpired},
		{"no exp", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = nil
		})), CodeInvalidToken},
		{"nbf in the future", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
		})), CodeInvalidToken},
		{"wrong issuer", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.Issuer = "someone-else"
		})), CodeInvalidToken},
		{"no issuer", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.Issuer = ""
		})), CodeInvalidToken},
		{"wrong secret", "Bearer " + sign(jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), claims(nil)), CodeInvalidToken},
		{"tampered payload", "Bearer " + tamper(valid), CodeInvalidToken},
		{"no subject", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.Subject = ""
		})), CodeInvalidToken},
		{"subject with a slash", "Bearer " + sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.Subject = "alice/../bob"
		})), CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.header != "" {
				headers = []string{"Authorization", tc.header}
			}
			a := g.do(t, "GET", "/api/orders", nil, headers...)
			if a.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", a.status, a.body)
			}
			if code := a.errorCode(t); code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			challenge := a.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(challenge, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", challenge)
			}
			if tc.code != CodeMissingToken && !strings.Contains(challenge, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q, want error=\"invalid_token\"", challenge)
			}
		})
	}

	t.Run("valid token passes", func(t *testing.T) {
		a := g.do(t, "GET", "/api/orders", nil, bearer(valid)...)
		if a.status != http.StatusOK {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
	})
	t.Run("nbf honoured once reached", func(t *testing.T) {
		early := sign(jwt.SigningMethodHS256, []byte(testSecret), claims(func(c *jwt.RegisteredClaims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
		}))
		g.clock.Advance(time.Minute)
		defer g.clock.Advance(-time.Minute)
		if a := g.do(t, "GET", "/api/orders", nil, bearer(early)...); a.status != http.StatusOK {
			t.Fatalf("status %d after nbf: %s", a.status, a.body)
		}
	})
}

// tamper changes the subject in a token's payload without re-signing it.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"alice"`, `"bob"`, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	return strings.Join(parts, ".")
}

func TestDevTokenExpires(t *testing.T) {
	g := newTestGateway(t, nil)
	a := g.do(t, "POST", "/api/token", map[string]any{"subject": "alice", "ttl_seconds": 60})
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	var tok Token
	a.decode(t, &tok)
	if want := g.clock.Now().Add(time.Minute); !tok.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %s, want %s", tok.ExpiresAt, want)
	}
	if a := g.do(t, "GET", "/api/orders", nil, bearer(tok.Token)...); a.status != http.StatusOK {
		t.Fatalf("fresh token: %d %s", a.status, a.body)
	}
	g.clock.Advance(time.Minute)
	a = g.do(t, "GET", "/api/orders", nil, bearer(tok.Token)...)
	if a.status != http.StatusUnauthorized || a.errorCode(t) != CodeTokenExpired {
		t.Fatalf("expired token: %d %s", a.status, a.body)
	}
}

func TestDevTokensOff(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.DevTokens = false })
	a := g.do(t, "POST", "/api/token", map[string]any{"subject": "alice"})
	if a.status != http.StatusNotFound || a.errorCode(t) != "not_found" {
		t.Fatalf("token endpoint with dev tokens off: %d %s", a.status, a.body)
	}
}

// With an accepted key, tokens signed with either key pass and only the secret signs: the identity
// provider can move to the next key while tokens it signed with the current one still work.
func TestAuthenticatorAcceptsASecondKey(t *testing.T) {
	current, next := []byte(strings.Repeat("c", MinJWTSecretBytes)), []byte(strings.Repeat("n", MinJWTSecretBytes))
	signer := func(key []byte) *Authenticator {
		a, err := NewAuthenticator(key, "iss", nil)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	gateway := signer(current)
	if err := gateway.Accept(next); err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string][]byte{"current": current, "next": next} {
		tok, err := signer(key).Issue("alice", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if subject, verr := gateway.Verify(tok.Token); verr != nil || subject != "alice" {
			t.Errorf("a token signed with the %s key: %q, %v; want alice", name, subject, verr)
		}
	}
	other, err := signer([]byte(strings.Repeat("o", MinJWTSecretBytes))).Issue("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, verr := gateway.Verify(other.Token); verr == nil || verr.Code != CodeInvalidToken {
		t.Errorf("a token signed with neither key: %v, want %s", verr, CodeInvalidToken)
	}
	issued, err := gateway.Issue("bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, verr := signer(current).Verify(issued.Token); verr != nil {
		t.Errorf("the gateway issued with another key than its secret: %v", verr)
	}
	if err := gateway.Accept([]byte("short")); err == nil {
		t.Error("a short accepted key was taken")
	}
}

func TestNewAuthenticatorRejectsShortSecret(t *testing.T) {
	if _, err := NewAuthenticator([]byte(strings.Repeat("k", MinJWTSecretBytes-1)), "iss", nil); err == nil {
		t.Fatal("a 31-byte secret was accepted")
	}
	if _, err := NewAuthenticator([]byte(strings.Repeat("k", MinJWTSecretBytes)), "", nil); err == nil {
		t.Fatal("an empty issuer was accepted")
	}
}

// The gateway takes GATEWAY_JWT_ACCEPT_SECRET into its authenticator: a user token signed with the next
// key reaches the API.
func TestGatewayAcceptsTokensOfTheAcceptedKey(t *testing.T) {
	next := strings.Repeat("n", MinJWTSecretBytes)
	g := newTestGateway(t, func(c *Config) { c.JWTAcceptSecret = next })
	idp, err := NewAuthenticator([]byte(next), "resilience-lab", g.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := idp.Issue("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if a := g.do(t, "GET", "/api/orders", nil, bearer(tok.Token)...); a.status != http.StatusOK {
		t.Fatalf("GET /api/orders with a token of the accepted key: %d %s", a.status, a.body)
	}
	if a := g.do(t, "GET", "/api/orders", nil, bearer(g.mint(t, "alice"))...); a.status != http.StatusOK {
		t.Fatalf("GET /api/orders with a token of the secret: %d %s", a.status, a.body)
	}
}
