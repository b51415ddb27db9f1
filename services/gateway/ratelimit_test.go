package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/resilience-lab/lab/resilience"
)

// The gateway's rate limit is resilience/ratelimit, whose own tests cover refilling, Retry-After rounding
// and eviction on an injected clock. These tests check what the gateway adds: who a client is, the
// answer, the metric and the settings. The limiter runs on the real clock (resilience.ServiceConfig.Build
// gives server-side policies no clock), so the rates here are slow enough that no token comes back
// during a test: one per 1000 s.
const slowRate = 0.001

// retryAfter returns the Retry-After of a 429 answer, failing unless it is whole seconds in [1, max].
func retryAfter(t *testing.T, a answer, max int) int {
	t.Helper()
	secs, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > max {
		t.Fatalf("Retry-After %q, want whole seconds in [1, %d]", a.header.Get("Retry-After"), max)
	}
	return secs
}

func TestRateLimitKeysByClient(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.RateLimitRPS, c.RateLimitBurst = slowRate, 2 })
	alice, bob := g.mint(t, "alice"), g.mint(t, "bob")
	limited := 0

	t.Run("by remote IP before auth", func(t *testing.T) {
		for i := range 2 {
			if a := g.do(t, "GET", "/api/products", nil); a.status != http.StatusUnauthorized {
				t.Fatalf("request %d: %d, want 401", i+1, a.status)
			}
		}
		a := g.do(t, "GET", "/api/products", nil)
		limited++
		if a.status != http.StatusTooManyRequests || a.errorCode(t) != "rate_limited" {
			t.Fatalf("3rd unauthenticated request: %d %s", a.status, a.body)
		}
		retryAfter(t, a, 1000)
		// The token endpoint and a bad token are keyed on the IP too.
		for _, a := range []answer{
			g.do(t, "POST", "/api/token", map[string]any{"subject": "carol"}),
			g.do(t, "GET", "/api/products", nil, bearer("not-a-token")...),
		} {
			limited++
			if a.status != http.StatusTooManyRequests {
				t.Fatalf("keyed on the IP: %d %s, want 429", a.status, a.body)
			}
		}
	})

	t.Run("by subject after auth", func(t *testing.T) {
		for i := range 2 {
			if a := g.do(t, "GET", "/api/products", nil, bearer(alice)...); a.status != http.StatusOK {
				t.Fatalf("alice request %d: %d %s (her bucket is not the IP's)", i+1, a.status, a.body)
			}
		}
		a := g.do(t, "GET", "/api/orders", nil, bearer(alice)...)
		limited++
		if a.status != http.StatusTooManyRequests || a.errorCode(t) != "rate_limited" {
			t.Fatalf("alice's 3rd request: %d %s", a.status, a.body)
		}
		retryAfter(t, a, 1000)
		if a := g.do(t, "GET", "/api/products", nil, bearer(bob)...); a.status != http.StatusOK {
			t.Fatalf("bob was limited by alice's bucket: %d", a.status)
		}
	})

	if got := counterValue(t, g.reg, "resilience_rate_limited_total", "service", "gateway"); got != float64(limited) {
		t.Errorf("resilience_rate_limited_total %v, want %d", got, limited)
	}
}

func TestRateLimitSettingsReachTheLimiter(t *testing.T) {
	g := newTestGateway(t, func(c *Config) {
		c.RateLimitRPS, c.RateLimitBurst, c.RateLimitMaxClients = slowRate, 1, 2
		// Set from GATEWAY_RATE_LIMIT_* by ServerConfigFromEnv, but the gateway's own fields win.
		c.Resilience.Server.RateLimit.Rate = 0
	})
	for _, subject := range []string{"alice", "bob", "carol"} {
		if a := g.do(t, "GET", "/api/products", nil, bearer(g.mint(t, subject))...); a.status != http.StatusOK {
			t.Fatalf("%s: %d %s", subject, a.status, a.body)
		}
	}
	var snap resilience.DebugSnapshot
	a := g.do(t, "GET", "/debug/resilience", nil)
	if a.status != http.StatusOK {
		t.Fatalf("debug: %d %s", a.status, a.body)
	}
	if err := json.Unmarshal(a.body, &snap); err != nil || snap.Server == nil {
		t.Fatalf("debug body %s: %v", a.body, err)
	}
	rl := snap.Server.RateLimit
	if snap.Server.Service != "gateway" || rl.Rate != slowRate || rl.Burst != 1 || rl.Clients != 2 {
		t.Errorf("rate limit %+v of %q, want %v/s, burst 1 and 2 clients at most (3 seen)", rl, snap.Server.Service, slowRate)
	}
	// /debug/resilience and the other ops routes are not limited.
	for range 3 {
		if a := g.do(t, "GET", "/debug/resilience", nil); a.status != http.StatusOK {
			t.Fatalf("debug route limited: %d", a.status)
		}
	}
}
