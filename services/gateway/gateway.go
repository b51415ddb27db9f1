package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/discovery/canary"
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/resilience/ratelimit"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// hedgedOps are the reads of each link that may be hedged; hedging stays off unless the link's
// <LINK>_HEDGE_DELAY is set.
var hedgedOps = map[string][]string{
	LinkCatalog:  {"list_products", "get_product"},
	LinkOrders:   {"get_order", "list_orders"},
	LinkPayments: {"get_payment"},
}

// Open builds the gateway: its resilience policies, typed clients for its three downstreams (cfg's
// options, then the link's policies), the service, its endpoints and HTTP handler. The closer stops the
// policies' timers.
func Open(_ context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	tracing, stopTracing, err := cfg.Tracing.NewTracerProvider("gateway")
	if err != nil {
		return nil, nil, err
	}
	policies, err := buildPolicies(cfg, reg)
	if err != nil {
		return nil, nil, err
	}
	dcfg := cfg.Discovery
	if c := cfg.CatalogCanary; c != nil {
		// Balance the catalog's stable version and its canary, each with the link's balancer settings.
		dcfg.Links = maps.Clone(dcfg.Links)
		l := dcfg.Links[LinkCatalog]
		l.Version, l.Canary = c.Stable, c.Canary
		dcfg.Links[LinkCatalog] = l
	}
	disc, err := dcfg.Start("gateway", reg, policies.Events(), logger)
	if err != nil {
		policies.Close()
		return nil, nil, err
	}
	var router *canary.Router
	fail := func(err error) (*platform.Service, io.Closer, error) {
		if router != nil {
			router.Close()
		}
		disc.Close()
		policies.Close()
		return nil, nil, err
	}
	catalogSource := disc.Client(LinkCatalog)
	if cfg.CatalogCanary != nil {
		if router, err = catalogCanary(cfg, disc, policies, reg, logger); err != nil {
			return fail(err)
		}
		// The router takes the stable balancer's place as the link's source, under the same policies.
		catalogSource = discovery.Balanced(router)
	}
	cat, err := catalogclient.New(cfg.CatalogURL, withLink(cfg.CatalogOptions, policies, catalogSource, LinkCatalog,
		cfg.ServiceAuth.Client("gateway", "catalog"))...)
	if err != nil {
		return fail(fmt.Errorf("catalog client: %w", err))
	}
	ord, err := ordersclient.New(cfg.OrdersURL, withLink(cfg.OrdersOptions, policies, disc.Client(LinkOrders), LinkOrders,
		cfg.ServiceAuth.Client("gateway", "orders"))...)
	if err != nil {
		return fail(fmt.Errorf("orders client: %w", err))
	}
	pay, err := paymentsclient.New(cfg.PaymentsURL, withLink(cfg.PaymentsOptions, policies, disc.Client(LinkPayments), LinkPayments,
		cfg.ServiceAuth.Client("gateway", "payments"))...)
	if err != nil {
		return fail(fmt.Errorf("payments client: %w", err))
	}
	svc, err := assemble(cfg, policies, cat, ord, pay, logger, reg, router)
	if err != nil {
		return fail(err)
	}
	svc.Tracing = tracing
	svc.Extra = disc.Extra(svc.Extra)
	return svc, platform.CloserFunc(func() error {
		if router != nil {
			router.Close()
		}
		discErr := disc.Close()
		policies.Close()
		return errors.Join(discErr, platform.FlushTracing(stopTracing))
	}), nil
}

// catalogCanary builds the router splitting gateway-catalog between the balancers of the catalog's
// stable version and its canary. Its metrics (canary_*) go to reg, its rollback event to the policies'
// hook, its rule runs on cfg.CanaryClock.
func catalogCanary(cfg Config, disc *discovery.Discovery, policies *resilience.Policies, reg prometheus.Registerer, logger *slog.Logger) (*canary.Router, error) {
	c := *cfg.CatalogCanary
	stable, canarySrc := disc.Balancer(LinkCatalog), disc.Balancer(discovery.VersionedLink(LinkCatalog, c.Canary))
	if stable == nil || canarySrc == nil {
		return nil, fmt.Errorf("catalog canary: discovery has no balancer for %s versions %s and %s", LinkCatalog, c.Stable, c.Canary)
	}
	r, err := canary.New(stable, canarySrc, c, policy.Options{Clock: cfg.CanaryClock, Registerer: reg,
		Service: "gateway", Downstream: LinkCatalog, Hook: policies.Events()}, logger)
	if err != nil {
		return nil, fmt.Errorf("catalog canary: %w", err)
	}
	logger.Info("catalog canary on", "stable", c.Stable, "canary", c.Canary, "weight", c.Weight,
		"rollback_seconds", c.Rollback.Seconds)
	return r, nil
}

// withLink appends the link's policies, its source (its balancer or canary router when discovery is on,
// else a no-op) and the service token of its callee to the configured client options without writing
// into the caller's slice.
func withLink(opts []platform.ClientOption, policies *resilience.Policies, source platform.ClientOption, link string, token platform.ClientOption) []platform.ClientOption {
	return append(slices.Clip(opts), policies.Client(link), source, token)
}

// buildPolicies builds cfg.Resilience for the gateway: the server-side rate limit is the RateLimit*
// fields keyed by client (the platform default would key by IP only), and each link's reads may be hedged.
func buildPolicies(cfg Config, reg prometheus.Registerer) (*resilience.Policies, error) {
	rc := cfg.Resilience
	rc.Service = "gateway"
	rc.Server.RateLimit = ratelimit.Config{
		Rate: cfg.RateLimitRPS, Burst: cfg.RateLimitBurst, MaxClients: cfg.RateLimitMaxClients, Key: rateLimitKey,
	}
	linkOpts := map[string][]resilience.Option{}
	for link, ops := range hedgedOps {
		linkOpts[link] = append([]resilience.Option{resilience.WithHedgedOps(ops...)}, cfg.linkOptions[link]...)
	}
	return rc.Build(reg, linkOpts)
}

// rateLimitKey names the client a request is rate limited as: the verified token's subject when there is
// one (identify runs first), else the remote IP. X-Forwarded-For is not trusted: anyone could set it to
// dodge the limit.
func rateLimitKey(r *http.Request) string {
	if s := Subject(r.Context()); s != "" {
		return "subject:" + s
	}
	return "ip:" + ratelimit.RemoteIP(r)
}

// assemble wires the gateway over any downstreams; Open passes the real clients, unit tests fakes.
// A non-nil router is the catalog canary: its admin API is served (admins only) and the X-Canary header
// of each request is passed to the calls it makes through its context.
func assemble(cfg Config, policies *resilience.Policies, cat Catalog, ord Orders, pay Payments, logger *slog.Logger, reg *prometheus.Registry, router *canary.Router) (*platform.Service, error) {
	secret := cfg.JWTSecret
	if secret == "" {
		logger.Warn("GATEWAY_JWT_SECRET is unset: signing tokens with the public dev secret; never do this outside the lab")
		secret = DevJWTSecret
	}
	auth, err := NewAuthenticator([]byte(secret), cfg.JWTIssuer, cfg.now())
	if err != nil {
		return nil, err
	}
	if cfg.JWTAcceptSecret != "" {
		if err := auth.Accept([]byte(cfg.JWTAcceptSecret)); err != nil {
			return nil, err
		}
	}
	var issuer *Authenticator
	if cfg.DevTokens {
		logger.Warn("GATEWAY_DEV_TOKENS=true: POST /api/token mints a token for any subject")
		issuer = auth
	}
	svc := NewService(cat, ord, pay, cfg, reg, logger)
	handler := NewHTTPHandler(NewEndpoints(svc, issuer, cfg.TokenTTL), auth, policies.Middleware, reg)
	extra := map[string]http.Handler{resilience.DebugRoute: policies.DebugHandler()}
	if router != nil {
		handler = canary.Middleware(handler)
		extra[AdminCanaryRoute] = adminOnly(auth, newAdminFailures(reg), logger, router.Handler())
	}
	// Readiness deliberately ignores the downstreams: an outage there must degrade answers, not pull every
	// gateway out of the load balancer.
	return &platform.Service{Name: "gateway", API: handler, Registry: reg, Logger: logger, Extra: extra}, nil
}
