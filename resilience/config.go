package resilience

import (
	"fmt"
	"strings"
	"time"

	"github.com/resilience-lab/lab/resilience/adaptive"
	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/resilience/bulkhead"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/resilience/ratelimit"
	"github.com/resilience-lab/lab/resilience/retry"
	"github.com/resilience-lab/lab/resilience/shed"
	"github.com/resilience-lab/lab/services/platform"
)

// BreakerOff as the breaker backend turns the breaker off.
const BreakerOff breaker.Backend = "off"

// LinkConfig are the settings of every policy of one link. Each policy can be switched off: breaker
// backend "off", bulkhead max concurrent 0, retry max attempts 1, timeout 0, hedge delay 0, adaptive
// max limit 0.
type LinkConfig struct {
	Breaker    breaker.Config
	Bulkhead   bulkhead.Config
	Retry      retry.Config
	Timeout    time.Duration // per attempt
	HedgeDelay time.Duration
	Adaptive   adaptive.Config // Max 0: off; Initial is capped at Max
}

// adaptiveConfig caps the initial limit at the configured maximum.
func (c LinkConfig) adaptiveConfig() adaptive.Config {
	a := c.Adaptive
	a.Initial = min(max(a.Initial, a.Min), a.Max)
	return a
}

// DefaultLinkConfig is what a link gets when no variable is set; docs/patterns/README.md says why each.
func DefaultLinkConfig() LinkConfig {
	return LinkConfig{
		Breaker: breaker.Config{
			Backend: breaker.Gobreaker, FailureRatio: 0.5, MinRequests: 20,
			Window: 10 * time.Second, SleepWindow: 5 * time.Second, HalfOpenProbes: 1,
		},
		Bulkhead: bulkhead.Config{MaxConcurrent: 64, MaxWait: 0},
		Retry: retry.Config{
			MaxAttempts: 3, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second,
			Budget: retry.BudgetConfig{Ratio: 0.2, MinPerSec: 10, Window: 10 * time.Second},
		},
		Timeout:    time.Second,
		HedgeDelay: 0,
		Adaptive:   adaptive.Config{Initial: 16, Min: 1, Max: 0, Backoff: 0.9, Latency: 250 * time.Millisecond},
	}
}

// InnerTimeout is the default per-attempt timeout of the links of a service that itself answers calls
// through a link (orders, which the gateway calls with DefaultLinkConfig's 1s). Under a third of the
// outer attempt, it lets a slow callee's attempt end as a failure — counted against that instance,
// retried on another — before the outer deadline cancels the whole call: with equal timeouts the inner
// attempt ended "cancelled" by the inherited deadline, counted against nobody, and the caller's caller
// blamed the inner service instead.
const InnerTimeout = 300 * time.Millisecond

// InnerLinkConfig is DefaultLinkConfig with the per-attempt timeout of an inner link (InnerTimeout).
func InnerLinkConfig() LinkConfig {
	c := DefaultLinkConfig()
	c.Timeout = InnerTimeout
	return c
}

// EnvPrefix is the prefix of a link's variables: its name upper-cased, dashes as underscores
// (orders-payments → ORDERS_PAYMENTS_).
func EnvPrefix(link string) string {
	return strings.ToUpper(strings.ReplaceAll(link, "-", "_")) + "_"
}

// LinkConfigFromEnv reads the settings of link over DefaultLinkConfig. Bad values are recorded in env
// (env.Err reports them all at once).
func LinkConfigFromEnv(env *platform.Env, link string) LinkConfig {
	return linkConfigFromEnv(env, link, DefaultLinkConfig())
}

// linkConfigFromEnv reads the settings of link over c.
func linkConfigFromEnv(env *platform.Env, link string, c LinkConfig) LinkConfig {
	p := EnvPrefix(link)
	c.Breaker.Backend = breaker.Backend(strings.ToLower(env.String(p+"BREAKER", string(c.Breaker.Backend))))
	c.Breaker.FailureRatio = env.Float(p+"BREAKER_FAILURE_RATIO", c.Breaker.FailureRatio)
	c.Breaker.MinRequests = env.Int(p+"BREAKER_MIN_REQUESTS", c.Breaker.MinRequests)
	c.Breaker.Window = env.Duration(p+"BREAKER_WINDOW", c.Breaker.Window)
	c.Breaker.SleepWindow = env.Duration(p+"BREAKER_SLEEP_WINDOW", c.Breaker.SleepWindow)
	c.Breaker.HalfOpenProbes = env.Int(p+"BREAKER_HALF_OPEN_PROBES", c.Breaker.HalfOpenProbes)
	c.Bulkhead.MaxConcurrent = env.Int(p+"BULKHEAD_MAX_CONCURRENT", c.Bulkhead.MaxConcurrent)
	c.Bulkhead.MaxWait = env.Duration(p+"BULKHEAD_MAX_WAIT", c.Bulkhead.MaxWait)
	c.Retry.MaxAttempts = env.Int(p+"RETRY_MAX_ATTEMPTS", c.Retry.MaxAttempts)
	c.Retry.BaseDelay = env.Duration(p+"RETRY_BASE_DELAY", c.Retry.BaseDelay)
	c.Retry.MaxDelay = env.Duration(p+"RETRY_MAX_DELAY", c.Retry.MaxDelay)
	c.Retry.Budget.Ratio = env.Float(p+"RETRY_BUDGET_RATIO", c.Retry.Budget.Ratio)
	c.Retry.Budget.MinPerSec = env.Float(p+"RETRY_BUDGET_MIN_PER_SEC", c.Retry.Budget.MinPerSec)
	c.Retry.Budget.Window = env.Duration(p+"RETRY_BUDGET_WINDOW", c.Retry.Budget.Window)
	c.Timeout = env.Duration(p+"TIMEOUT", c.Timeout)
	c.HedgeDelay = env.Duration(p+"HEDGE_DELAY", c.HedgeDelay)
	c.Adaptive.Max = env.Int(p+"ADAPTIVE_MAX_LIMIT", c.Adaptive.Max)
	c.Adaptive.Latency = env.Duration(p+"ADAPTIVE_LATENCY", c.Adaptive.Latency)
	if err := c.Validate(); err != nil {
		env.Fail("%s*: %v", p, err)
	}
	return c
}

// Validate reports the settings out of range.
func (c LinkConfig) Validate() error {
	if c.Breaker.Backend != BreakerOff {
		if err := c.Breaker.Validate(); err != nil {
			return err
		}
	}
	if err := c.Bulkhead.Validate(); err != nil {
		return err
	}
	if err := c.Retry.Validate(); err != nil {
		return err
	}
	if c.Timeout < 0 || c.HedgeDelay < 0 {
		return fmt.Errorf("timeout %s and hedge delay %s must not be negative", c.Timeout, c.HedgeDelay)
	}
	if c.Adaptive.Max > 0 {
		if err := c.adaptiveConfig().Validate(); err != nil {
			return err
		}
	} else if c.Adaptive.Max < 0 {
		return fmt.Errorf("adaptive max limit %d must not be negative", c.Adaptive.Max)
	}
	return nil
}

// ServerConfig are the settings of a service's server-side policies.
type ServerConfig struct {
	RateLimit ratelimit.Config
	Shed      shed.Config
}

// ServerConfigFromEnv reads <SERVICE>_RATE_LIMIT_RPS (0: off, the default), <SERVICE>_RATE_LIMIT_BURST
// (default 20) and <SERVICE>_SHED_MAX_IN_FLIGHT (0: off; default 256).
func ServerConfigFromEnv(env *platform.Env, service string) ServerConfig {
	p := EnvPrefix(service)
	c := ServerConfig{
		RateLimit: ratelimit.Config{Rate: env.Float(p+"RATE_LIMIT_RPS", 0), Burst: env.Int(p+"RATE_LIMIT_BURST", 20)},
		Shed:      shed.Config{MaxInFlight: env.Int(p+"SHED_MAX_IN_FLIGHT", 256)},
	}
	if _, err := ratelimit.New(c.RateLimit, policy.Options{}); err != nil {
		env.Fail("%s*: %v", p, err)
	}
	if _, err := shed.New(c.Shed, policy.Options{}); err != nil {
		env.Fail("%s*: %v", p, err)
	}
	return c
}
