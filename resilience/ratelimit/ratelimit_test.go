package ratelimit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

func setup(t *testing.T, cfg Config) (*Limiter, *clock.Fake, http.Handler) {
	t.Helper()
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := New(cfg, policy.Options{Clock: fake, Service: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	return l, fake, l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
}

func send(h http.Handler, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/api/products", nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestRateLimit(t *testing.T) {
	l, fake, h := setup(t, Config{Rate: 0.5, Burst: 2}) // one token every 2s
	for _, tc := range []struct {
		name           string
		advance        time.Duration
		remote         string
		wantStatus     int
		wantRetryAfter string
	}{
		{"burst 1", 0, "10.0.0.1:5000", 204, ""},
		{"burst 2, another port of the same client", 0, "10.0.0.1:5001", 204, ""},
		{"over the rate", 0, "10.0.0.1:5000", 429, "2"},
		{"another client has its own bucket", 0, "10.0.0.2:5000", 204, ""},
		{"1.5s later: still 0.5s to wait, rounded up", 1500 * time.Millisecond, "10.0.0.1:5000", 429, "1"},
		{"a token is back", 500 * time.Millisecond, "10.0.0.1:5000", 204, ""},
		{"and spent", 0, "10.0.0.1:5000", 429, "2"},
	} {
		fake.Advance(tc.advance)
		w := send(h, tc.remote)
		if w.Code != tc.wantStatus || w.Header().Get("Retry-After") != tc.wantRetryAfter {
			t.Fatalf("%s: %d Retry-After %q, want %d %q", tc.name, w.Code, w.Header().Get("Retry-After"), tc.wantStatus, tc.wantRetryAfter)
		}
		if w.Code == 429 {
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "rate_limited" || body.Error.Message == "" {
				t.Fatalf("%s: body %q", tc.name, w.Body.String())
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("%s: content type %q", tc.name, ct)
			}
		}
	}
	if v := testutil.ToFloat64(l.limited); v != 3 {
		t.Fatalf("rate limited = %v, want 3", v)
	}
}

func TestCustomKeyAndEviction(t *testing.T) {
	l, fake, h := setup(t, Config{Rate: 1, Burst: 1, MaxClients: 2,
		Key: func(r *http.Request) string { return r.Header.Get("X-Subject") }})
	req := func(subject string) int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-Subject", subject)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if req("alice") != 204 || req("alice") != 429 || req("bob") != 204 {
		t.Fatal("per-subject buckets")
	}
	// A third client while both buckets are fresh evicts the least recently seen (alice).
	if req("carol") != 204 || l.Snapshot().Clients != 2 {
		t.Fatalf("clients = %d", l.Snapshot().Clients)
	}
	fake.Advance(time.Second) // every bucket refilled: evicting them loses nothing
	if req("dave") != 204 || l.Snapshot().Clients != 1 {
		t.Fatalf("after refill: clients = %d, want only dave", l.Snapshot().Clients)
	}
}

func TestOffAndValidation(t *testing.T) {
	_, _, h := setup(t, Config{Rate: 0})
	for range 100 {
		if send(h, "10.0.0.1:1").Code != 204 {
			t.Fatal("rate 0 must not limit")
		}
	}
	for _, bad := range []Config{{Rate: -1}, {Rate: 1, Burst: 0}, {MaxClients: -1}} {
		if _, err := New(bad, policy.Options{}); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// TestEvictionUnderAFloodOfClients: distinct clients that each empty their bucket (so none refills) keep
// arriving; the map never exceeds MaxClients, a full map frees a sixteenth at once, and the client seen
// most recently keeps its (empty) bucket rather than getting a fresh burst.
func TestEvictionUnderAFloodOfClients(t *testing.T) {
	const maxClients = 64
	l, fake, _ := setup(t, Config{Rate: 1, Burst: 1, MaxClients: maxClients})
	if ok, _ := l.Allow("regular"); !ok {
		t.Fatal("regular's first request refused")
	}
	for i := range 10 * maxClients {
		fake.Advance(time.Millisecond) // distinct lastSeen times, far from a refill
		if ok, _ := l.Allow(fmt.Sprint("flood-", i)); !ok {
			t.Fatalf("new client %d refused", i)
		}
		if ok, _ := l.Allow("regular"); ok {
			t.Fatalf("after %d new clients regular got a fresh bucket: it was evicted though seen last", i+1)
		}
		n := l.Snapshot().Clients
		if n > maxClients {
			t.Fatalf("clients %d exceed the bound %d", n, maxClients)
		}
		if i == maxClients-1 { // the first arrival at a full map: 4 dropped, the new one added
			if want := maxClients - maxClients/16 + 1; n != want {
				t.Fatalf("after the first eviction clients = %d, want %d", n, want)
			}
		}
	}
}
