package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/discovery/canary"
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/services/platform"
)

// DevJWTSecret signs tokens when GATEWAY_DEV_TOKENS=true and no GATEWAY_JWT_SECRET is set. It is public,
// so Open logs a warning whenever it is used.
const DevJWTSecret = "resilience-lab-dev-secret-not-for-production"

// MinJWTSecretBytes is the shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
const MinJWTSecretBytes = 32

// Config configures the gateway.
type Config struct {
	Addr            string        // GATEWAY_ADDR, default ":8080"
	LogLevel        slog.Level    // LOG_LEVEL, default info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, default 10s

	CatalogURL  string // CATALOG_URL, default "http://localhost:8081"
	OrdersURL   string // ORDERS_URL, default "http://localhost:8082"
	PaymentsURL string // PAYMENTS_URL, default "http://localhost:8083"

	// Client options per downstream link (gateway-catalog, gateway-orders, gateway-payments), applied
	// before the link's resilience policies.
	CatalogOptions  []platform.ClientOption
	OrdersOptions   []platform.ClientOption
	PaymentsOptions []platform.ClientOption
	// IsCircuitOpen reports whether a downstream error means the policy layer's breaker is open, so the
	// gateway answers 503 instead of 502. nil: the resilience breaker's rejection (breaker.ErrOpen).
	IsCircuitOpen func(error) bool
	// Resilience is the policy chain of the links gateway-catalog, gateway-orders and gateway-payments
	// (GATEWAY_CATALOG_*, GATEWAY_ORDERS_*, GATEWAY_PAYMENTS_*) and the server-side shedding
	// (GATEWAY_SHED_MAX_IN_FLIGHT); see docs/patterns/README.md. Its Server.RateLimit is not used: the
	// gateway's rate limit is the RateLimit* fields below, keyed by client (see rateLimitKey).
	Resilience resilience.ServiceConfig
	// StaleCatalog: when the catalog fails, product reads are answered from the last ones seen, marked
	// stale (GATEWAY_STALE_CATALOG, default true; false for the chaos lab's runs without it).
	StaleCatalog bool

	JWTSecret string // GATEWAY_JWT_SECRET: HS256 key, ≥ 32 bytes; required unless DevTokens
	// JWTAcceptSecret is a second key whose tokens are accepted, never issued (GATEWAY_JWT_ACCEPT_SECRET):
	// the next key while the identity provider moves to it, so user tokens survive a rotation.
	JWTAcceptSecret string
	JWTIssuer       string        // GATEWAY_JWT_ISSUER, default "resilience-lab"
	DevTokens       bool          // GATEWAY_DEV_TOKENS, default true: serve POST /api/token
	TokenTTL        time.Duration // GATEWAY_TOKEN_TTL, default 1h: lifetime of a dev token without ttl_seconds

	RateLimitRPS   float64 // GATEWAY_RATE_LIMIT_RPS, default 100: sustained requests per second per client
	RateLimitBurst int     // GATEWAY_RATE_LIMIT_BURST, default 200
	// RateLimitMaxClients bounds the limiters held at once (GATEWAY_RATE_LIMIT_MAX_CLIENTS, default 100000).
	RateLimitMaxClients int

	// DetailsPartTimeout bounds each part (a product, the payment) of GET /api/orders/{id}/details, so one
	// slow downstream degrades the aggregate instead of stalling it (GATEWAY_DETAILS_PART_TIMEOUT, default 2s).
	DetailsPartTimeout time.Duration

	Now func() time.Time // nil = time.Now; tests inject a clock

	// Tracing is where spans go (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT; off by default). Every
	// answer carries the request's trace id in X-Trace-Id when it has one.
	Tracing platform.TracingConfig
	// ServiceAuth signs the service tokens the gateway's calls to catalog, orders and payments carry
	// (SERVICE_TOKEN_SECRET or SERVICE_TOKEN_SECRET_FILE; SERVICE_AUTH=off to run without; see
	// docs/security.md). The gateway's own API is public: it checks user tokens, not service tokens.
	ServiceAuth platform.ServiceAuth
	// Discovery, when on, balances the three links over the registered instances, seeded with the
	// *_URL above (REGISTRY_ENDPOINTS, GATEWAY_CATALOG_LB, GATEWAY_CATALOG_OUTLIER_*, …; see
	// docs/patterns/discovery.md). Off by default: the static URLs are called. The gateway does not
	// register itself: nothing calls it through discovery.
	Discovery discovery.ServiceConfig
	// CatalogCanary, when set, splits the gateway-catalog link between the catalog's stable version and
	// a canary, each balanced through discovery (which it needs), under the link's policies: weighted,
	// X-Canary: true always to the canary, the weight settable at run time on AdminCanaryRoute, and the
	// automatic rollback rule. Read from GATEWAY_CATALOG_CANARY_* when GATEWAY_CATALOG_CANARY_VERSION is
	// set (see docs/patterns/canary.md); nil: off, the link calls one version as before.
	CatalogCanary *canary.Config
	// CanaryClock runs the canary's rollback rule (nil: the real clock; tests advance a fake one).
	CanaryClock clock.Clock

	// linkOptions adds resilience options to a link (tests: a fake clock).
	linkOptions map[string][]resilience.Option
}

// ConfigFromEnv reads the gateway's configuration; env.Err() lists every bad value.
func ConfigFromEnv(env *platform.Env) Config {
	cfg := Config{
		Addr:                env.String("GATEWAY_ADDR", ":8080"),
		LogLevel:            env.LogLevel("LOG_LEVEL", slog.LevelInfo),
		ShutdownTimeout:     env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		CatalogURL:          env.String("CATALOG_URL", "http://localhost:8081"),
		OrdersURL:           env.String("ORDERS_URL", "http://localhost:8082"),
		PaymentsURL:         env.String("PAYMENTS_URL", "http://localhost:8083"),
		JWTSecret:           env.String("GATEWAY_JWT_SECRET", ""),
		JWTAcceptSecret:     env.String("GATEWAY_JWT_ACCEPT_SECRET", ""),
		JWTIssuer:           env.String("GATEWAY_JWT_ISSUER", "resilience-lab"),
		DevTokens:           env.Bool("GATEWAY_DEV_TOKENS", true),
		TokenTTL:            env.Duration("GATEWAY_TOKEN_TTL", time.Hour),
		RateLimitRPS:        env.Float("GATEWAY_RATE_LIMIT_RPS", 100),
		RateLimitBurst:      env.Int("GATEWAY_RATE_LIMIT_BURST", 200),
		RateLimitMaxClients: env.Int("GATEWAY_RATE_LIMIT_MAX_CLIENTS", 100_000),
		DetailsPartTimeout:  env.Duration("GATEWAY_DETAILS_PART_TIMEOUT", 2*time.Second),
		StaleCatalog:        env.Bool("GATEWAY_STALE_CATALOG", true),
		Resilience:          resilience.ServiceConfigFromEnv(env, "gateway", LinkCatalog, LinkOrders, LinkPayments),
		Tracing:             platform.TracingConfigFromEnv(env),
		ServiceAuth:         platform.ServiceAuthFromEnv(env),
	}
	cfg.Discovery = discovery.ServiceConfigFromEnv(env, "gateway", false, map[string]discovery.SeededLink{
		LinkCatalog: {Service: "catalog", Seed: cfg.CatalogURL}, LinkOrders: {Service: "orders", Seed: cfg.OrdersURL},
		LinkPayments: {Service: "payments", Seed: cfg.PaymentsURL}})
	// A canary is configured only by naming its version; its other settings have defaults.
	if env.String(canaryVersionVar, "") != "" {
		cc := canary.ConfigFromEnv(env, LinkCatalog)
		cfg.CatalogCanary = &cc
	}
	if err := cfg.validate(); err != nil {
		env.Fail("%v", err)
	}
	return cfg
}

// canaryVersionVar turns the catalog canary on.
const canaryVersionVar = "GATEWAY_CATALOG_CANARY_VERSION"

// validate checks what ConfigFromEnv and Open both need; Open runs it too because tests build Config
// directly.
func (cfg Config) validate() error {
	var errs []error
	if cfg.JWTSecret == "" && !cfg.DevTokens {
		errs = append(errs, errors.New("GATEWAY_JWT_SECRET is required unless GATEWAY_DEV_TOKENS=true"))
	}
	for _, u := range []struct{ name, url string }{
		{"CATALOG_URL", cfg.CatalogURL}, {"ORDERS_URL", cfg.OrdersURL}, {"PAYMENTS_URL", cfg.PaymentsURL},
	} {
		if _, err := platform.ParseBaseURL(u.url); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.name, err))
		}
	}
	if cfg.JWTSecret != "" && len(cfg.JWTSecret) < MinJWTSecretBytes {
		errs = append(errs, fmt.Errorf("GATEWAY_JWT_SECRET must be at least %d bytes", MinJWTSecretBytes))
	}
	switch {
	case cfg.JWTAcceptSecret == "":
	case cfg.JWTSecret == "":
		errs = append(errs, errors.New("GATEWAY_JWT_ACCEPT_SECRET needs GATEWAY_JWT_SECRET: a second key is for rotating the first"))
	case len(cfg.JWTAcceptSecret) < MinJWTSecretBytes:
		errs = append(errs, fmt.Errorf("GATEWAY_JWT_ACCEPT_SECRET must be at least %d bytes", MinJWTSecretBytes))
	case cfg.JWTAcceptSecret == cfg.JWTSecret:
		errs = append(errs, errors.New("GATEWAY_JWT_ACCEPT_SECRET is the same key as GATEWAY_JWT_SECRET: set it to the next or the previous key"))
	}
	if cfg.JWTIssuer == "" {
		errs = append(errs, errors.New("GATEWAY_JWT_ISSUER must not be empty"))
	}
	if cfg.TokenTTL <= 0 || cfg.TokenTTL > MaxTokenTTL {
		errs = append(errs, fmt.Errorf("GATEWAY_TOKEN_TTL must be in (0, %s]", MaxTokenTTL))
	}
	if cfg.RateLimitRPS <= 0 {
		errs = append(errs, errors.New("GATEWAY_RATE_LIMIT_RPS must be > 0"))
	}
	if cfg.RateLimitBurst < 1 {
		errs = append(errs, errors.New("GATEWAY_RATE_LIMIT_BURST must be ≥ 1"))
	}
	if cfg.RateLimitMaxClients < 1 {
		errs = append(errs, errors.New("GATEWAY_RATE_LIMIT_MAX_CLIENTS must be ≥ 1"))
	}
	if cfg.DetailsPartTimeout <= 0 {
		errs = append(errs, errors.New("GATEWAY_DETAILS_PART_TIMEOUT must be > 0"))
	}
	// The canary's own settings are checked by canary.ConfigFromEnv and canary.New.
	if cfg.CatalogCanary != nil {
		if !cfg.Discovery.Enabled() {
			errs = append(errs, fmt.Errorf("%s needs REGISTRY_ENDPOINTS: the catalog's versions are found through discovery", canaryVersionVar))
		} else if _, ok := cfg.Discovery.Links[LinkCatalog]; !ok {
			errs = append(errs, fmt.Errorf("%s: discovery has no %s link", canaryVersionVar, LinkCatalog))
		}
	}
	return errors.Join(errs...)
}

func (cfg Config) now() func() time.Time {
	if cfg.Now != nil {
		return cfg.Now
	}
	return time.Now
}
