package resilience

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/resilience/ratelimit"
	"github.com/resilience-lab/lab/resilience/shed"
)

// Server holds a service's server-side policies: rate limiting, then load shedding.
type Server struct {
	service string
	limiter *ratelimit.Limiter
	shedder *shed.Shedder
}

// NewServer builds the server-side policies of service.
func NewServer(service string, cfg ServerConfig, reg prometheus.Registerer, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	po := policy.Options{Clock: o.clock, Registerer: reg, Service: service, Hook: o.hook}
	limiter, err := ratelimit.New(cfg.RateLimit, po)
	if err != nil {
		return nil, err
	}
	shedder, err := shed.New(cfg.Shed, po)
	if err != nil {
		return nil, err
	}
	return &Server{service: service, limiter: limiter, shedder: shedder}, nil
}

// Middleware wraps a service's API handler (not /healthz, /readyz, /metrics: platform.Service adds those
// outside API). A client over its rate is answered 429 before it counts towards the in-flight bound; an
// admitted request beyond that bound is shed with 503.
func (s *Server) Middleware(next http.Handler) http.Handler {
	return s.limiter.Handler(s.shedder.Handler(next))
}

// ServerSnapshot is the server-side policies' settings and live state.
type ServerSnapshot struct {
	Service   string             `json:"service"`
	RateLimit ratelimit.Snapshot `json:"rate_limit"`
	Shed      shed.Snapshot      `json:"shed"`
}

func (s *Server) Snapshot() ServerSnapshot {
	return ServerSnapshot{Service: s.service, RateLimit: s.limiter.Snapshot(), Shed: s.shedder.Snapshot()}
}
