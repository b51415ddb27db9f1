// Package shed is server-side load shedding: when more than MaxInFlight requests are being served, a
// new one is answered 503 at once with Retry-After and the shop's JSON error shape, instead of queueing
// behind work that is already late. Shedding early keeps the requests that are admitted fast.
package shed

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// Config are the shedder's settings.
type Config struct {
	MaxInFlight int           // 0 turns shedding off
	RetryAfter  time.Duration // told to shed clients (0: 1s)
}

// Shedder is the policy. Build it with New; it is safe for concurrent use.
type Shedder struct {
	cfg      Config
	opts     policy.Options
	inFlight atomic.Int64
	shed     prometheus.Counter
}

// New builds a shedder.
func New(cfg Config, o policy.Options) (*Shedder, error) {
	if cfg.MaxInFlight < 0 || cfg.RetryAfter < 0 {
		return nil, fmt.Errorf("shed: want max in flight >= 0 and retry after >= 0, got %+v", cfg)
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = time.Second
	}
	o = o.WithDefaults()
	s := &Shedder{cfg: cfg, opts: o}
	labels := prometheus.Labels{"service": o.Service}
	s.shed = policy.Register(o.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "resilience_shed_total", ConstLabels: labels,
		Help: "Requests answered 503 because the server had too many in flight.",
	}))
	policy.Register(o.Registerer, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "resilience_shed_in_flight", ConstLabels: labels,
		Help: "Requests being served, as counted by the load shedder.",
	}, func() float64 { return float64(s.inFlight.Load()) }))
	return s, nil
}

// Handler applies shedding to a server.
func (s *Shedder) Handler(next http.Handler) http.Handler {
	if s.cfg.MaxInFlight == 0 {
		return next
	}
	retryAfter := strconv.Itoa(max(int(s.cfg.RetryAfter.Round(time.Second)/time.Second), 1))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.inFlight.Add(1) > int64(s.cfg.MaxInFlight) {
			s.inFlight.Add(-1)
			s.shed.Inc()
			if s.opts.Observed(r.Context()) {
				s.opts.EmitContext(r.Context(), policy.Event{Policy: "shed", Kind: policy.EventRejection})
			}
			w.Header().Set("Retry-After", retryAfter)
			platform.WriteError(w, platform.Errorf(http.StatusServiceUnavailable, "overloaded",
				"the server is overloaded; retry in %s s", retryAfter))
			return
		}
		defer s.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// Snapshot is the shedder's settings and live state.
type Snapshot struct {
	MaxInFlight int   `json:"max_in_flight"`
	InFlight    int64 `json:"in_flight"`
}

func (s *Shedder) Snapshot() Snapshot {
	return Snapshot{MaxInFlight: s.cfg.MaxInFlight, InFlight: s.inFlight.Load()}
}
