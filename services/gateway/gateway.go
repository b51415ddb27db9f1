package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// Open builds the gateway: typed clients for its three downstreams (with cfg's options), the service, its
// endpoints and HTTP handler. The gateway holds no state of its own, so the closer has nothing to release.
func Open(_ context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	cat, err := catalogclient.New(cfg.CatalogURL, cfg.CatalogOptions...)
	if err != nil {
		return nil, nil, fmt.Errorf("catalog client: %w", err)
	}
	ord, err := ordersclient.New(cfg.OrdersURL, cfg.OrdersOptions...)
	if err != nil {
		return nil, nil, fmt.Errorf("orders client: %w", err)
	}
	pay, err := paymentsclient.New(cfg.PaymentsURL, cfg.PaymentsOptions...)
	if err != nil {
		return nil, nil, fmt.Errorf("payments client: %w", err)
	}
	svc, err := assemble(cfg, cat, ord, pay, logger, reg)
	if err != nil {
		return nil, nil, err
	}
	return svc, nopCloser{}, nil
}

// assemble wires the gateway over any downstreams; Open passes the real clients, unit tests fakes.
func assemble(cfg Config, cat Catalog, ord Orders, pay Payments, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, error) {
	secret := cfg.JWTSecret
	if secret == "" {
		if !cfg.DevTokens {
			return nil, fmt.Errorf("GATEWAY_JWT_SECRET is required unless GATEWAY_DEV_TOKENS=true")
		}
		logger.Warn("GATEWAY_JWT_SECRET is unset: signing tokens with the public dev secret; never do this outside the lab")
		secret = DevJWTSecret
	}
	auth, err := NewAuthenticator([]byte(secret), cfg.JWTIssuer, cfg.now())
	if err != nil {
		return nil, err
	}
	var issuer *Authenticator
	if cfg.DevTokens {
		logger.Warn("GATEWAY_DEV_TOKENS=true: POST /api/token mints a token for any subject")
		issuer = auth
	}
	svc := NewService(cat, ord, pay, cfg, reg, logger)
	limiter := NewRateLimiter(cfg.RateLimitRPS, cfg.RateLimitBurst, cfg.RateLimitMaxClients, cfg.now())
	handler := NewHTTPHandler(NewEndpoints(svc, issuer, cfg.TokenTTL), auth, limiter, reg)
	// Readiness deliberately ignores the downstreams: an outage there must degrade answers, not pull every
	// gateway out of the load balancer.
	return &platform.Service{Name: "gateway", API: handler, Registry: reg, Logger: logger}, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
