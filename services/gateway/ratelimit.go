package gateway

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilience-lab/lab/services/platform"
)

// rateLimitSweepEvery is how often (by the limiter's clock) idle client limiters are dropped.
const rateLimitSweepEvery = time.Minute

// RateLimiter keeps one token bucket per client. A bucket that has refilled to its burst behaves exactly
// like a new one, so sweeping drops those without changing any client's budget; that keeps memory
// proportional to the clients active in the last refill period, and maxClients caps it even under a flood
// of distinct clients (then arbitrary buckets are dropped, which only hands those clients a fresh burst).
type RateLimiter struct {
	limit      rate.Limit
	burst      int
	maxClients int
	now        func() time.Time

	mu        sync.Mutex
	clients   map[string]*rate.Limiter
	lastSweep time.Time
}

// NewRateLimiter allows each client rps requests per second with bursts of burst, holding at most
// maxClients buckets; now is the clock (nil = time.Now).
func NewRateLimiter(rps float64, burst, maxClients int, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{
		limit: rate.Limit(rps), burst: burst, maxClients: max(maxClients, 1), now: now,
		clients: make(map[string]*rate.Limiter),
	}
}

// Allow spends one token of key's bucket. When the bucket is empty it spends nothing and returns how long
// until a token will be there.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) >= rateLimitSweepEvery {
		l.sweep(now)
	}
	lim, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.maxClients {
			l.sweep(now)
			l.shed()
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.clients[key] = lim
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Duration(math.MaxInt64)
	}
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now) // a rejected request must not consume the client's future budget
		return false, wait
	}
	return true, 0
}

// Clients returns how many buckets are held.
func (l *RateLimiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// sweep drops the buckets that have refilled. Callers hold l.mu.
func (l *RateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

// shed drops arbitrary buckets until a sixteenth of the capacity is free, so a flood of new clients
// costs one full sweep per maxClients/16 arrivals rather than one per arrival. Callers hold l.mu.
func (l *RateLimiter) shed() {
	target := l.maxClients - max(l.maxClients/16, 1)
	for k := range l.clients {
		if len(l.clients) <= target {
			return
		}
		delete(l.clients, k)
	}
}

// middleware answers 429 with Retry-After (whole seconds, at least 1) once the client's bucket is empty.
// The client is the token subject when identify found one, else the remote IP (X-Forwarded-For is not
// trusted: anyone could set it to dodge the limit).
func (l *RateLimiter) middleware(rejected func(keyKind string), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, key := "subject", Subject(r.Context())
		if key == "" {
			kind, key = "ip", remoteIP(r)
		}
		ok, wait := l.Allow(kind + ":" + key)
		if !ok {
			rejected(kind)
			secs := int64(1)
			if wait > time.Second {
				secs = int64(math.Ceil(min(wait, 24*time.Hour).Seconds()))
			}
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			platform.WriteError(w, platform.Errorf(http.StatusTooManyRequests, "rate_limited",
				"too many requests; retry after %d s", secs))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func remoteIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
