package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-kit/kit/sd/etcdv3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// DebugRoute is where a service that calls through discovery serves its balancers (DebugHandler).
const DebugRoute = "GET /debug/discovery"

// LinkConfig is how a service reaches one downstream through discovery.
type LinkConfig struct {
	Service string // the downstream's registered name (catalog, payments, …)
	Version string // the version called (DefaultVersion)
	// Canary, when set, is a second version of Service balanced beside Version, with the same
	// BalancerConfig but no seeds (it is known only from the registry), as link VersionedLink(link,
	// Canary): a canary.Router splits the link's calls between the two.
	Canary   string
	Balancer BalancerConfig
}

// VersionedLink names the balancer of one version of a link beside its main one (gateway-catalog@v2):
// its metrics' downstream label and its name for Discovery.Balancer.
func VersionedLink(link, version string) string { return link + "@" + version }

// ServiceConfig is one service's discovery: off without registry endpoints; on, the service registers
// (when Register) and calls each of Links through a Balancer. Services read it in ConfigFromEnv and
// start it in Open, so every service wires discovery the same way.
type ServiceConfig struct {
	Registry RegistryConfig
	Register bool
	Instance Instance
	Links    map[string]LinkConfig // by link name, e.g. "orders-catalog"
}

// Enabled reports whether REGISTRY_ENDPOINTS was set.
func (c ServiceConfig) Enabled() bool { return len(c.Registry.Endpoints) > 0 }

// SeededLink is a link to read from the environment: the downstream's registered name and the static
// URL the service has for it, the balancer's seed until the registry answers.
type SeededLink struct {
	Service string
	Seed    string
}

// ServiceConfigFromEnv reads RegistryConfigFromEnv and, only when it is enabled, the instance of service
// (InstanceFromEnv, when register) and each link's BalancerConfigFromEnv seeded with its static URL.
// Off, nothing else is read and nothing is required.
func ServiceConfigFromEnv(env *platform.Env, service string, register bool, links map[string]SeededLink) ServiceConfig {
	c := ServiceConfig{Registry: RegistryConfigFromEnv(env)}
	if !c.Enabled() {
		return c
	}
	if register {
		c.Register, c.Instance = true, InstanceFromEnv(env, service)
	}
	for name, l := range links {
		if c.Links == nil {
			c.Links = map[string]LinkConfig{}
		}
		b := BalancerConfigFromEnv(env, name)
		b.Seeds = []string{l.Seed}
		c.Links[name] = LinkConfig{Service: l.Service, Version: DefaultVersion, Balancer: b}
	}
	return c
}

// Discovery is a running service's discovery: its registration and its links' balancers, on one
// registry connection. A nil *Discovery (discovery off) changes nothing: Client options are no-ops,
// Extra adds no route, BeforeDrain is nil.
type Discovery struct {
	client     *Client
	registrar  *etcdv3.Registrar
	grace      time.Duration // RegistryConfig.DeregisterGrace
	deregister sync.Once
	instancers []*etcdv3.Instancer
	balancers  map[string]*Balancer
	closeOnce  sync.Once
}

// Start connects to the registry (lazily: it succeeds while the registry is down), registers the
// instance and builds the links' balancers. service labels the balancers' metrics (the caller); hook
// receives their events (nil: none). It returns nil, nil when c is off.
func (c ServiceConfig) Start(service string, reg prometheus.Registerer, hook policy.Hook, logger *slog.Logger) (*Discovery, error) {
	if !c.Enabled() {
		return nil, nil
	}
	client, err := NewClient(c.Registry, logger)
	if err != nil {
		return nil, err
	}
	d := &Discovery{client: client, balancers: map[string]*Balancer{}, grace: c.Registry.DeregisterGrace}
	names := make([]string, 0, len(c.Links))
	for name := range c.Links {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		l := c.Links[name]
		versions := [][2]string{{name, l.Version}}
		if l.Canary != "" {
			if l.Canary == l.Version {
				d.Close()
				return nil, fmt.Errorf("discovery of link %s: canary version %q is the stable version", name, l.Canary)
			}
			versions = append(versions, [2]string{VersionedLink(name, l.Canary), l.Canary})
		}
		for i, v := range versions {
			cfg := l.Balancer
			if i > 0 { // the canary has no static URL: until the registry answers it has no instance
				cfg.Seeds = nil
			}
			b, err := d.balance(client, v[1], l.Service, cfg,
				policy.Options{Registerer: reg, Service: service, Downstream: v[0], Hook: hook}, logger)
			if err != nil {
				d.Close()
				return nil, fmt.Errorf("discovery of link %s: %w", name, err)
			}
			d.balancers[v[0]] = b
		}
	}
	if c.Register {
		if d.registrar, err = NewRegistrar(client, c.Instance, logger); err != nil {
			d.Close()
			return nil, err
		}
		d.registrar.Register() // logs a failure; the client keeps trying
	}
	return d, nil
}

// balance builds a balancer over the instances of one version of service, stopping its instancer with d.
func (d *Discovery) balance(client *Client, version, service string, cfg BalancerConfig, o policy.Options, logger *slog.Logger) (*Balancer, error) {
	inst, err := NewInstancer(client, service, version, logger)
	if err != nil {
		return nil, err
	}
	d.instancers = append(d.instancers, inst)
	return NewBalancer(inst, cfg, o, logger)
}

// Balancer returns the balancer of link (nil when discovery is off or the link is not configured).
func (d *Discovery) Balancer(link string) *Balancer {
	if d == nil {
		return nil
	}
	return d.balancers[link]
}

// Client is the typed-client option that sends link's calls through its balancer, under a call scope
// (Policies) around the policies an earlier option set: pass it after resilience's Policies.Client.
// Without a balancer for link it changes nothing.
func (d *Discovery) Client(link string) platform.ClientOption {
	b := d.Balancer(link)
	if b == nil {
		return func(*platform.ClientConfig) {}
	}
	return Balanced(b)
}

// Balanced is the typed-client option that sends the client's calls through src, its policies (set by
// an earlier option) wrapped in Scope, as Policies does.
func Balanced(src EndpointSource) platform.ClientOption {
	return func(cfg *platform.ClientConfig) {
		cfg.Source = src
		cfg.Policies = Policies(cfg.Policies)
	}
}

// Extra adds DebugRoute to a service's extra routes when there are balancers, and returns extra.
func (d *Discovery) Extra(extra map[string]http.Handler) map[string]http.Handler {
	if d == nil || len(d.balancers) == 0 {
		return extra
	}
	names := make([]string, 0, len(d.balancers))
	for name := range d.balancers {
		names = append(names, name)
	}
	sort.Strings(names)
	bs := make([]*Balancer, len(names))
	for i, name := range names {
		bs[i] = d.balancers[name]
	}
	if extra == nil {
		extra = map[string]http.Handler{}
	}
	extra[DebugRoute] = DebugHandler(bs...)
	return extra
}

// BeforeDrain is platform.Service.BeforeDrain for a registered instance: it deregisters, then keeps
// serving for the deregister grace (at most half of what is left of the drain), because callers learn
// of the deregistration through their watch a little later and would otherwise pick an instance whose
// listener is already closed: a refused connection, a failed call. nil when nothing is registered.
func (d *Discovery) BeforeDrain() func(context.Context) {
	if d == nil || d.registrar == nil {
		return nil
	}
	return func(ctx context.Context) {
		d.Deregister()
		wait := d.grace
		if deadline, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(deadline)/2)
		}
		if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// Deregister removes the instance from the registry, once (Client.Deregister is bounded by the
// registry's request timeout; during an outage the key stays until its lease expires).
func (d *Discovery) Deregister() {
	if d == nil || d.registrar == nil {
		return
	}
	d.deregister.Do(d.registrar.Deregister)
}

// Close deregisters, stops the balancers and instancers, and closes the registry connection. It is
// safe on nil and more than once.
func (d *Discovery) Close() error {
	if d == nil {
		return nil
	}
	var err error
	d.closeOnce.Do(func() {
		d.Deregister()
		for _, b := range d.balancers {
			b.Close()
		}
		for _, i := range d.instancers {
			i.Stop()
		}
		err = d.client.Close()
	})
	return err
}
