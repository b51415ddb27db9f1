package canary

import (
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/platform"
)

// ConfigFromEnv reads the canary of link (prefix as resilience.EnvPrefix, gateway-catalog →
// GATEWAY_CATALOG_) over DefaultConfig: <LINK>_CANARY_STABLE_VERSION, <LINK>_CANARY_VERSION,
// <LINK>_CANARY_WEIGHT, <LINK>_CANARY_ROLLBACK_SECONDS (0: no automatic rollback),
// <LINK>_CANARY_ROLLBACK_MAX_ERROR_RATE, <LINK>_CANARY_ROLLBACK_MAX_P99 (0s: latency not judged) and
// <LINK>_CANARY_ROLLBACK_MIN_REQUESTS. Bad values are recorded in env.
func ConfigFromEnv(env *platform.Env, link string) Config {
	p := resilience.EnvPrefix(link) + "CANARY_"
	c := DefaultConfig()
	c.Stable = env.String(p+"STABLE_VERSION", c.Stable)
	c.Canary = env.String(p+"VERSION", c.Canary)
	c.Weight = env.Int(p+"WEIGHT", c.Weight)
	c.Rollback.Seconds = env.Int(p+"ROLLBACK_SECONDS", c.Rollback.Seconds)
	c.Rollback.MaxErrorRate = env.Float(p+"ROLLBACK_MAX_ERROR_RATE", c.Rollback.MaxErrorRate)
	c.Rollback.MaxP99 = env.Duration(p+"ROLLBACK_MAX_P99", c.Rollback.MaxP99)
	c.Rollback.MinRequests = env.Int(p+"ROLLBACK_MIN_REQUESTS", c.Rollback.MinRequests)
	if err := c.Validate(); err != nil {
		env.Fail("%s*: %v", p, err)
	}
	return c
}
