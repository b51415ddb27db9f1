// Package ratelimit is server-side rate limiting: a token bucket per client (golang.org/x/time/rate),
// answering 429 with Retry-After and the shop's JSON error shape beyond the client's rate. Time comes
// from the injected clock (x/time/rate takes explicit times), so tests need not sleep.
package ratelimit

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// Config are the limiter's settings.
type Config struct {
	Rate  float64 // requests per second per client; 0 turns limiting off
	Burst int     // bucket size: requests a client may send at once
	// Key names the client of a request; nil: the remote IP (never X-Forwarded-For, which any client
	// can write). The gateway keys on the token's subject.
	Key func(*http.Request) string
	// MaxClients bounds the buckets kept (0: 10000). Full buckets are dropped first — a bucket that has
	// refilled is the same as a new one, so that loses nothing.
	MaxClients int
}

// Limiter is the policy. Build it with New; it is safe for concurrent use.
type Limiter struct {
	cfg     Config
	opts    policy.Options
	clock   clock.Clock
	refill  time.Duration // time for an empty bucket to fill up
	mu      sync.Mutex
	clients map[string]*client

	limited prometheus.Counter
}

type client struct {
	bucket   *rate.Limiter
	lastSeen time.Time
}

// New builds a limiter.
func New(cfg Config, o policy.Options) (*Limiter, error) {
	if cfg.Rate < 0 || (cfg.Rate > 0 && cfg.Burst < 1) || cfg.MaxClients < 0 {
		return nil, fmt.Errorf("rate limit: want rate >= 0, burst >= 1 and max clients >= 0, got %+v", cfg)
	}
	if cfg.Key == nil {
		cfg.Key = RemoteIP
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 10000
	}
	o = o.WithDefaults()
	l := &Limiter{cfg: cfg, opts: o, clock: o.Clock, clients: map[string]*client{}}
	if cfg.Rate > 0 {
		l.refill = time.Duration(float64(cfg.Burst) / cfg.Rate * float64(time.Second))
	}
	l.limited = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_rate_limited_total", ConstLabels: prometheus.Labels{"service": o.Service},
		Help: "Requests answered 429 because their client exceeded its rate.",
	}))
	return l, nil
}

// RemoteIP keys a request by the IP of the connection.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Allow takes a token for key; when there is none it reports how long until there is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, found := l.clients[key]
	if !found {
		if len(l.clients) >= l.cfg.MaxClients {
			l.evictLocked(now)
		}
		c = &client{bucket: rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)}
		l.clients[key] = c
	}
	c.lastSeen = now
	r := c.bucket.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now) // give the token back: this request is refused, not queued
		return false, delay
	}
	return true, 0
}

// evictLocked makes room for new clients. It drops the buckets that have refilled (a full bucket is the
// same as a new one) and, while that leaves more than MaxClients less a sixteenth, the least recently
// seen: freeing a sixteenth at once means a flood of new clients costs one scan of the map per
// MaxClients/16 arrivals instead of one per arrival, which matters at the gateway's 100000 clients.
func (l *Limiter) evictLocked(now time.Time) {
	target := l.cfg.MaxClients - max(l.cfg.MaxClients/16, 1)
	type seen struct {
		key string
		at  time.Time
	}
	var recent []seen
	for k, c := range l.clients {
		if now.Sub(c.lastSeen) >= l.refill {
			delete(l.clients, k)
			continue
		}
		recent = append(recent, seen{k, c.lastSeen})
	}
	if len(l.clients) <= target {
		return
	}
	slices.SortFunc(recent, func(a, b seen) int { return a.at.Compare(b.at) })
	for _, s := range recent[:len(l.clients)-target] {
		delete(l.clients, s.key)
	}
}

// Handler applies the limit to a server.
func (l *Limiter) Handler(next http.Handler) http.Handler {
	if l.cfg.Rate <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := l.Allow(l.cfg.Key(r))
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		l.limited.Inc()
		if l.opts.Observed(r.Context()) {
			l.opts.EmitContext(r.Context(), policy.Event{Policy: "ratelimit", Kind: policy.EventRejection, Delay: wait})
		}
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		platform.WriteError(w, platform.Errorf(http.StatusTooManyRequests, "rate_limited",
			"too many requests; retry in %d s", max(secs, 1)))
	})
}

// Snapshot is the limiter's settings and live state.
type Snapshot struct {
	Rate    float64 `json:"rate_per_sec"`
	Burst   int     `json:"burst"`
	Clients int     `json:"clients_tracked"`
}

func (l *Limiter) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Snapshot{Rate: l.cfg.Rate, Burst: l.cfg.Burst, Clients: len(l.clients)}
}
