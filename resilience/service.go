package resilience

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// ServiceConfig is one service's resilience configuration: its server-side policies and the settings
// of each link to a downstream. Services read it in ConfigFromEnv and build it in Open, so every
// service wires its policies the same way.
type ServiceConfig struct {
	Service string
	Server  ServerConfig
	Links   map[string]LinkConfig // by link name, e.g. "orders-payments"
}

// ServiceConfigFromEnv reads the server-side settings of service and the settings of each of its links
// over DefaultLinkConfig (see LinkConfigFromEnv, ServerConfigFromEnv).
func ServiceConfigFromEnv(env *platform.Env, service string, links ...string) ServiceConfig {
	return serviceConfigFromEnv(env, service, DefaultLinkConfig(), links)
}

// InnerServiceConfigFromEnv is ServiceConfigFromEnv for a service that itself answers calls through a
// link (orders): its links' settings are read over InnerLinkConfig, so their attempts time out well
// inside the outer attempt's.
func InnerServiceConfigFromEnv(env *platform.Env, service string, links ...string) ServiceConfig {
	return serviceConfigFromEnv(env, service, InnerLinkConfig(), links)
}

func serviceConfigFromEnv(env *platform.Env, service string, def LinkConfig, links []string) ServiceConfig {
	c := ServiceConfig{Service: service, Server: ServerConfigFromEnv(env, service), Links: map[string]LinkConfig{}}
	for _, l := range links {
		c.Links[l] = linkConfigFromEnv(env, l, def)
	}
	return c
}

// EventLogSize is how many recent policy events /debug/resilience keeps.
const EventLogSize = 4096

// Policies are a service's built resilience: the server-side middleware, one Link per downstream, and
// a log of recent policy events that /debug/resilience serves so the chaos lab can timestamp breaker
// transitions exactly.
type Policies struct {
	server *Server
	links  map[string]*Link
	order  []string
	log    *eventLog
}

// Build builds the policies with metrics on reg. linkOpts adds options to a link (fallbacks, hedged
// reads); common options (a clock) go to the server-side policies and every link; every policy also
// reports to the event log.
func (c ServiceConfig) Build(reg prometheus.Registerer, linkOpts map[string][]Option, common ...Option) (*Policies, error) {
	p := &Policies{links: map[string]*Link{}, log: &eventLog{max: EventLogSize}}
	hook := WithEvents(p.log.add)
	var err error
	if p.server, err = NewServer(c.Service, c.Server, reg, append(common, hook)...); err != nil {
		return nil, fmt.Errorf("resilience of %s: %w", c.Service, err)
	}
	for _, name := range sortedKeys(c.Links) {
		opts := append(append([]Option{}, common...), hook, WithService(c.Service))
		opts = append(opts, linkOpts[name]...)
		l, err := NewLink(name, c.Links[name], reg, opts...)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("resilience of link %s: %w", name, err)
		}
		p.links[name], p.order = l, append(p.order, name)
	}
	return p, nil
}

// Link returns the link called name, or nil when it was not configured.
func (p *Policies) Link(name string) *Link { return p.links[name] }

// Client is the typed-client option that applies the link's policies; a link that was not configured
// (e.g. a Config built by hand in a test) gets none.
func (p *Policies) Client(link string) platform.ClientOption {
	l := p.links[link]
	if l == nil {
		return func(*platform.ClientConfig) {}
	}
	return platform.WithPolicies(l.Policies())
}

// Events is the hook that adds an event to the log /debug/resilience serves, for policies built outside
// Build (a discovery balancer's ejections).
func (p *Policies) Events() policy.Hook { return p.log.add }

// Middleware applies the server-side policies (rate limit, shedding) to a service's API handler.
func (p *Policies) Middleware(api http.Handler) http.Handler { return p.server.Middleware(api) }

// DebugRoute is the route every service serves its policies' settings, live state and recent events on.
const DebugRoute = "GET /debug/resilience"

// DebugHandler serves DebugSnapshot as JSON, with the recent events.
func (p *Policies) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := p.Snapshot()
		platform.WriteJSON(w, http.StatusOK, snap)
	})
}

// Snapshot is the settings and live state of every policy, and the recent events, oldest first.
func (p *Policies) Snapshot() DebugSnapshot {
	s := p.server.Snapshot()
	snap := DebugSnapshot{Server: &s, Links: make([]LinkSnapshot, 0, len(p.order)), Events: p.log.all()}
	for _, name := range p.order {
		snap.Links = append(snap.Links, p.links[name].Snapshot())
	}
	return snap
}

// Close stops the links' timers.
func (p *Policies) Close() error {
	for _, l := range p.links {
		l.Close()
	}
	return nil
}

// eventLog keeps the last max events. add runs on callers' goroutines, sometimes under a policy's lock:
// it only appends under its own short lock.
type eventLog struct {
	mu     sync.Mutex
	max    int
	events []policy.Event
	next   int // where the next event goes once the ring is full
}

func (l *eventLog) add(e policy.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) < l.max {
		l.events = append(l.events, e)
		return
	}
	l.events[l.next] = e
	l.next = (l.next + 1) % l.max
}

func (l *eventLog) all() []policy.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]policy.Event, 0, len(l.events))
	out = append(out, l.events[l.next:]...)
	return append(out, l.events[:l.next]...)
}
