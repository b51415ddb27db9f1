package discovery

import (
	"os"
	"strings"

	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/platform"
)

// RegistryConfigFromEnv reads REGISTRY_ENDPOINTS (comma-separated etcd URLs; empty: discovery off,
// clients use their static *_URL), REGISTRY_TTL, REGISTRY_REQUEST_TIMEOUT, REGISTRY_RESYNC_INTERVAL,
// REGISTRY_DIAL_TIMEOUT and REGISTRY_DEREGISTER_GRACE over DefaultRegistryConfig. Bad values are recorded
// in env.
func RegistryConfigFromEnv(env *platform.Env) RegistryConfig {
	c := DefaultRegistryConfig()
	c.Endpoints = splitList(env.String("REGISTRY_ENDPOINTS", ""))
	c.TTL = env.Duration("REGISTRY_TTL", c.TTL)
	c.RequestTimeout = env.Duration("REGISTRY_REQUEST_TIMEOUT", c.RequestTimeout)
	c.ResyncInterval = env.Duration("REGISTRY_RESYNC_INTERVAL", c.ResyncInterval)
	c.DialTimeout = env.Duration("REGISTRY_DIAL_TIMEOUT", c.DialTimeout)
	c.DeregisterGrace = env.Duration("REGISTRY_DEREGISTER_GRACE", c.DeregisterGrace)
	for _, e := range c.Endpoints {
		if _, err := platform.ParseBaseURL(e); err != nil {
			env.Fail("REGISTRY_ENDPOINTS: %v", err)
		}
	}
	if err := c.Validate(); err != nil {
		env.Fail("REGISTRY_*: %v", err)
	}
	return c
}

// InstanceFromEnv reads how this process registers as an instance of service: SERVICE_ADVERTISE_URL (the
// URL callers reach it at; required), SERVICE_INSTANCE_ID (default: the host name) and SERVICE_VERSION
// (default v1).
func InstanceFromEnv(env *platform.Env, service string) Instance {
	host, _ := os.Hostname()
	i := Instance{
		Service: service,
		Version: env.String("SERVICE_VERSION", DefaultVersion),
		ID:      env.String("SERVICE_INSTANCE_ID", host),
		URL:     env.Required("SERVICE_ADVERTISE_URL"),
	}
	if i.URL != "" {
		if err := i.Validate(); err != nil {
			env.Fail("SERVICE_*: %v", err)
		}
	}
	return i
}

// BalancerConfigFromEnv reads the balancer settings of link (prefix as resilience.EnvPrefix:
// orders-catalog → ORDERS_CATALOG_) over DefaultBalancerConfig: <LINK>_LB, <LINK>_OUTLIER_CONSECUTIVE_FAILURES,
// <LINK>_OUTLIER_INTERVAL, <LINK>_OUTLIER_BASE_EJECTION_TIME, <LINK>_OUTLIER_MAX_EJECTION_TIME,
// <LINK>_OUTLIER_MAX_EJECTION_PERCENT, <LINK>_EMPTY_SET_GRACE and <LINK>_INSTANCE_PROXIES
// ("registered=dialled,…"). Bad values
// are recorded in env.
func BalancerConfigFromEnv(env *platform.Env, link string) BalancerConfig {
	p := resilience.EnvPrefix(link)
	c := DefaultBalancerConfig()
	c.Strategy = Strategy(strings.ToLower(env.String(p+"LB", string(c.Strategy))))
	o := &c.Outlier
	o.ConsecutiveFailures = env.Int(p+"OUTLIER_CONSECUTIVE_FAILURES", o.ConsecutiveFailures)
	o.Interval = env.Duration(p+"OUTLIER_INTERVAL", o.Interval)
	o.BaseEjectionTime = env.Duration(p+"OUTLIER_BASE_EJECTION_TIME", o.BaseEjectionTime)
	o.MaxEjectionTime = env.Duration(p+"OUTLIER_MAX_EJECTION_TIME", o.MaxEjectionTime)
	o.MaxEjectionPercent = env.Int(p+"OUTLIER_MAX_EJECTION_PERCENT", o.MaxEjectionPercent)
	c.EmptySetGrace = env.Duration(p+"EMPTY_SET_GRACE", c.EmptySetGrace)
	for _, pair := range splitList(env.String(p+"INSTANCE_PROXIES", "")) {
		from, to, ok := strings.Cut(pair, "=")
		if !ok {
			env.Fail("%sINSTANCE_PROXIES: %q: want registered-url=dialled-url", p, pair)
			continue
		}
		if c.Proxies == nil {
			c.Proxies = map[string]string{}
		}
		c.Proxies[strings.TrimSpace(from)] = strings.TrimSpace(to)
	}
	if err := c.Validate(); err != nil {
		env.Fail("%s*: %v", p, err)
	}
	return c
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
