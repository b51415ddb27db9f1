// Package payments is the payments service: it charges orders (captured or declined, once per
// idempotency key), answers payment look-ups and refunds captured payments. See docs/architecture.md.
package payments

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/platform"
)

// Config is the payments service's configuration.
type Config struct {
	// Addr is the listen address (PAYMENTS_ADDR, default ":8083").
	Addr string
	// DBPath is the SQLite database file (PAYMENTS_DB, default "payments.db"); created when missing.
	DBPath string
	// DeclineOverCents: a charge of more cents than this is declined with amount_over_limit
	// (PAYMENTS_DECLINE_OVER_CENTS, default 100000).
	DeclineOverCents int64
	// LogLevel is the minimum level logged (LOG_LEVEL: debug, info, warn or error; default info).
	LogLevel slog.Level
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM (SHUTDOWN_TIMEOUT, default 10s).
	ShutdownTimeout time.Duration
	// Now is the clock stamped on payments; nil means time.Now. Tests inject their own.
	Now func() time.Time
	// Events is the outbox relay's broker and pacing (NATS_URL, EVENTS_*; see events.Config).
	Events events.Config
	// Resilience is the server-side rate limit and shedding (PAYMENTS_RATE_LIMIT_*, PAYMENTS_SHED_*; see
	// docs/patterns/README.md).
	Resilience resilience.ServiceConfig
	// Tracing is where spans go (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT; off by default).
	Tracing platform.TracingConfig
	// ServiceAuth is the service token every API call must carry (SERVICE_TOKEN_SECRET or
	// SERVICE_TOKEN_SECRET_FILE; SERVICE_AUTH=off to run without; see docs/security.md). Zero: off.
	ServiceAuth platform.ServiceAuth
	// Discovery registers this instance in the registry while it runs (REGISTRY_ENDPOINTS,
	// SERVICE_ADVERTISE_URL, SERVICE_INSTANCE_ID, SERVICE_VERSION; see docs/patterns/discovery.md). Off
	// by default.
	Discovery discovery.ServiceConfig
}

// Defaults of Config.
const (
	DefaultAddr             = ":8083"
	DefaultDBPath           = "payments.db"
	DefaultDeclineOverCents = 100_000
	DefaultShutdownTimeout  = 10 * time.Second
)

// ConfigFromEnv reads Config from env; bad values are recorded in env (see platform.Env.Err).
func ConfigFromEnv(env *platform.Env) Config {
	cfg := Config{
		Addr:             env.String("PAYMENTS_ADDR", DefaultAddr),
		DBPath:           env.String("PAYMENTS_DB", DefaultDBPath),
		DeclineOverCents: int64(env.Int("PAYMENTS_DECLINE_OVER_CENTS", DefaultDeclineOverCents)),
		ShutdownTimeout:  env.Duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout),
		LogLevel:         env.LogLevel("LOG_LEVEL", slog.LevelInfo),
	}
	cfg.Events = events.ConfigFromEnv(env)
	cfg.Resilience = resilience.ServiceConfigFromEnv(env, "payments")
	cfg.Tracing = platform.TracingConfigFromEnv(env)
	cfg.ServiceAuth = platform.ServiceAuthFromEnv(env)
	cfg.Discovery = discovery.ServiceConfigFromEnv(env, "payments", true, nil)
	if cfg.DeclineOverCents < 0 {
		env.Fail("PAYMENTS_DECLINE_OVER_CENTS=%d: want a non-negative number of cents", cfg.DeclineOverCents)
	}
	return cfg
}

// Open opens (and migrates) the database and assembles the service: store → Service → endpoints →
// HTTP handler. The io.Closer closes the database; call it after the server has stopped.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	metrics, err := newDomainMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	tracing, stopTracing, err := cfg.Tracing.NewTracerProvider("payments")
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, cfg.DBPath)
	if err != nil {
		return nil, nil, err
	}
	svc := newService(st, cfg.DeclineOverCents, cfg.Now, metrics)
	policies, err := cfg.Resilience.Build(reg, nil)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	relay, err := startRelay(ctx, cfg.Events, cfg.Discovery.Instance.ID, st, logger, reg)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	closer := relayAndStore{relay, st}
	disc, err := cfg.Discovery.Start("payments", reg, policies.Events(), logger)
	if err != nil {
		closer.Close()
		return nil, nil, err
	}
	return &platform.Service{
			Name:     "payments",
			API:      policies.Middleware(NewHTTPHandler(NewSet(svc), logger)),
			Registry: reg,
			Logger:   logger,
			Ready:    []platform.ReadyCheck{{Name: "db", Check: st.Ping}, relay.ReadyCheck()},
			Extra:    map[string]http.Handler{resilience.DebugRoute: policies.DebugHandler()},
			Auth:     cfg.ServiceAuth,
			// Only the saga charges and refunds; the gateway reads a customer's payment.
			Callers:     map[string][]string{"/payments": {"orders"}, "GET /payments": {"orders", "gateway"}},
			Tracing:     tracing,
			BeforeDrain: disc.BeforeDrain(),
		}, platform.CloserFunc(func() error {
			discErr := disc.Close()
			policies.Close()
			return errors.Join(discErr, closer.Close(), platform.FlushTracing(stopTracing))
		}), nil
}
