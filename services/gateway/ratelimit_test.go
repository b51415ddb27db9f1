package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestRateLimiterBucket(t *testing.T) {
	clock := newFakeClock()
	l := NewRateLimiter(2, 3, 100, clock.Now) // 2/s, burst 3
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d within the burst was refused", i+1)
		}
	}
	ok, wait := l.Allow("a")
	if ok {
		t.Fatal("the 4th request beyond the burst was allowed")
	}
	if wait != 500*time.Millisecond {
		t.Errorf("wait %s, want 500ms (one token at 2/s)", wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Error("another client was limited by a's bucket")
	}
	// Refused requests spend nothing: after 500ms exactly one token is back.
	for range 5 {
		l.Allow("a")
	}
	clock.Advance(500 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a token was not back after 500ms (refused requests must not spend tokens)")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a second token appeared after 500ms at 2/s")
	}
}

func TestRateLimiterEvictsIdleClients(t *testing.T) {
	clock := newFakeClock()
	l := NewRateLimiter(1.0/30, 5, 1000, clock.Now) // one token per 30 s, burst 5
	for i := range 50 {
		l.Allow(fmt.Sprint("idle-", i)) // spends 1 of 5: full again after 30 s
	}
	for range 5 {
		l.Allow("busy") // spends all 5: full again only after 150 s
	}
	if n := l.Clients(); n != 51 {
		t.Fatalf("clients %d, want 51", n)
	}
	// At the next sweep the refilled buckets are dropped (a fresh bucket is identical); busy's is kept
	// with the 2 tokens it earned (a second more so float rounding cannot leave 1.999…).
	clock.Advance(rateLimitSweepEvery + time.Second)
	if ok, _ := l.Allow("busy"); !ok {
		t.Fatal("busy's first earned token was refused")
	}
	if n := l.Clients(); n != 1 {
		t.Fatalf("clients after sweep %d, want 1 (only busy)", n)
	}
	if ok, _ := l.Allow("busy"); !ok {
		t.Fatal("busy's second earned token was refused")
	}
	if ok, _ := l.Allow("busy"); ok {
		t.Fatal("busy's bucket was reset by the sweep")
	}
}

func TestRateLimiterBoundsClients(t *testing.T) {
	clock := newFakeClock()
	const maxClients = 64
	l := NewRateLimiter(1, 1, maxClients, clock.Now)
	// Every client empties its bucket, so sweeping frees nothing and shedding must hold the bound.
	for i := range 10 * maxClients {
		if ok, _ := l.Allow(fmt.Sprint("c-", i)); !ok {
			t.Fatalf("new client %d refused", i)
		}
		if n := l.Clients(); n > maxClients {
			t.Fatalf("clients %d exceed the bound %d", n, maxClients)
		}
	}
}

func TestRateLimitHTTP(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.RateLimitRPS, c.RateLimitBurst = 0.5, 2 })

	t.Run("by remote IP before auth", func(t *testing.T) {
		for i := range 2 {
			if a := g.do(t, "GET", "/api/products", nil); a.status != http.StatusUnauthorized {
				t.Fatalf("request %d: %d, want 401", i+1, a.status)
			}
		}
		a := g.do(t, "GET", "/api/products", nil)
		if a.status != http.StatusTooManyRequests || a.errorCode(t) != "rate_limited" {
			t.Fatalf("3rd unauthenticated request: %d %s", a.status, a.body)
		}
		if got := a.header.Get("Retry-After"); got != "2" {
			t.Errorf("Retry-After %q, want 2 (one token at 0.5/s)", got)
		}
		// The token endpoint is keyed on the IP too, so it is limited now.
		if a := g.do(t, "POST", "/api/token", map[string]any{"subject": "alice"}); a.status != http.StatusTooManyRequests {
			t.Fatalf("token endpoint: %d, want 429", a.status)
		}
	})

	g.clock.Advance(time.Hour) // refill the IP bucket
	alice, bob := g.token(t, "alice"), g.token(t, "bob")

	t.Run("by subject after auth", func(t *testing.T) {
		for i := range 2 {
			if a := g.do(t, "GET", "/api/products", nil, bearer(alice)...); a.status != http.StatusOK {
				t.Fatalf("alice request %d: %d %s", i+1, a.status, a.body)
			}
		}
		a := g.do(t, "GET", "/api/products", nil, bearer(alice)...)
		if a.status != http.StatusTooManyRequests || a.errorCode(t) != "rate_limited" {
			t.Fatalf("alice's 3rd request: %d %s", a.status, a.body)
		}
		if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After %q, want whole seconds ≥ 1", a.header.Get("Retry-After"))
		}
		if a := g.do(t, "GET", "/api/products", nil, bearer(bob)...); a.status != http.StatusOK {
			t.Fatalf("bob was limited by alice's bucket: %d", a.status)
		}
		g.clock.Advance(2 * time.Second)
		if a := g.do(t, "GET", "/api/products", nil, bearer(alice)...); a.status != http.StatusOK {
			t.Fatalf("alice after Retry-After: %d %s", a.status, a.body)
		}
	})
}

func TestRetryAfterRoundsUp(t *testing.T) {
	g := newTestGateway(t, func(c *Config) { c.RateLimitRPS, c.RateLimitBurst = 3, 1 })
	g.do(t, "GET", "/api/orders", nil)
	a := g.do(t, "GET", "/api/orders", nil)
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", a.status)
	}
	if got := a.header.Get("Retry-After"); got != "1" { // 333ms rounds up to 1 s, never 0
		t.Errorf("Retry-After %q, want 1", got)
	}
}
