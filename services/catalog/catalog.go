// Package catalog is the shop's product catalog: products with prices and stock, and the stock
// reservations the orders saga holds, commits and releases.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/discovery"
	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/services/platform"
)

// Config configures the catalog service. ConfigFromEnv fills it from the environment with the defaults
// documented on each field.
type Config struct {
	Addr            string        // CATALOG_ADDR, default ":8081"
	DB              string        // CATALOG_DB, the SQLite file, default "catalog.db"
	Seed            bool          // CATALOG_SEED, default true: seed the fixed catalog into an empty database
	SeedStock       int64         // CATALOG_SEED_STOCK, default 1000000: stock of each seeded product (p-sold-out gets 0)
	ReservationTTL  time.Duration // CATALOG_RESERVATION_TTL, default 5m: how long a reservation is held
	SweepInterval   time.Duration // CATALOG_SWEEP_INTERVAL, default 10s: how often expired reservations are swept
	LogLevel        slog.Level    // LOG_LEVEL, default info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, default 10s: how long in-flight requests may drain
	// Now is the clock; nil means time.Now. Tests inject one to move expiry forward.
	Now func() time.Time
	// Events is the outbox relay's broker and pacing (NATS_URL, EVENTS_*; see events.Config).
	Events events.Config
	// Resilience is the server-side rate limit and shedding (CATALOG_RATE_LIMIT_*, CATALOG_SHED_*; see
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

// ConfigFromEnv reads the catalog's configuration; bad values are collected in env (see env.Err).
func ConfigFromEnv(env *platform.Env) Config {
	cfg := Config{
		Addr:            env.String("CATALOG_ADDR", ":8081"),
		DB:              env.String("CATALOG_DB", "catalog.db"),
		Seed:            env.Bool("CATALOG_SEED", true),
		SeedStock:       int64(env.Int("CATALOG_SEED_STOCK", 1000000)),
		ReservationTTL:  env.Duration("CATALOG_RESERVATION_TTL", 5*time.Minute),
		SweepInterval:   env.Duration("CATALOG_SWEEP_INTERVAL", 10*time.Second),
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		LogLevel:        env.LogLevel("LOG_LEVEL", slog.LevelInfo),
	}
	cfg.Events = events.ConfigFromEnv(env)
	cfg.Resilience = resilience.ServiceConfigFromEnv(env, "catalog")
	cfg.Tracing = platform.TracingConfigFromEnv(env)
	cfg.ServiceAuth = platform.ServiceAuthFromEnv(env)
	cfg.Discovery = discovery.ServiceConfigFromEnv(env, "catalog", true, nil)
	for _, p := range cfg.problems() {
		env.Fail("%s", p)
	}
	return cfg
}

// problems lists what makes cfg unusable; ConfigFromEnv and Open both refuse such a configuration.
func (c Config) problems() []string {
	var ps []string
	if c.Addr == "" {
		ps = append(ps, "CATALOG_ADDR must not be empty")
	}
	if c.DB == "" {
		ps = append(ps, "CATALOG_DB must not be empty")
	}
	if c.SeedStock < 0 {
		ps = append(ps, fmt.Sprintf("CATALOG_SEED_STOCK=%d: want zero or more", c.SeedStock))
	}
	if c.ReservationTTL <= 0 {
		ps = append(ps, fmt.Sprintf("CATALOG_RESERVATION_TTL=%s: want a positive duration", c.ReservationTTL))
	}
	if c.SweepInterval <= 0 {
		ps = append(ps, fmt.Sprintf("CATALOG_SWEEP_INTERVAL=%s: want a positive duration", c.SweepInterval))
	}
	return ps
}

// Open assembles the catalog: it opens and migrates the store, seeds it when asked, builds service →
// endpoints → HTTP handler, and starts the expiry sweeper. Close the returned io.Closer to stop the
// sweeper and close the database.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	if ps := cfg.problems(); len(ps) > 0 {
		return nil, nil, fmt.Errorf("catalog config: %v", ps)
	}
	tracing, stopTracing, err := cfg.Tracing.NewTracerProvider("catalog")
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Seed {
		seeded, err := st.seed(ctx, cfg.SeedStock)
		if err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("seed catalog: %w", err)
		}
		if seeded {
			logger.Info("seeded catalog", "products", len(seedProducts), "stock", cfg.SeedStock)
		}
	}
	svc := newService(st, cfg.ReservationTTL, cfg.Now, newReservationsCounter(reg))
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
	disc, err := cfg.Discovery.Start("catalog", reg, policies.Events(), logger)
	if err != nil {
		relay.Close()
		st.Close()
		return nil, nil, err
	}
	sweepCtx, stopSweeper := context.WithCancel(context.WithoutCancel(ctx))
	sweeper := &sweeper{svc: svc, interval: cfg.SweepInterval, logger: logger, done: make(chan struct{})}
	go sweeper.run(sweepCtx)

	return &platform.Service{
			Name:     "catalog",
			API:      policies.Middleware(NewHTTPHandler(NewSet(svc), logger)),
			Registry: reg,
			Logger:   logger,
			Ready:    []platform.ReadyCheck{{Name: "db", Check: st.Ping}, relay.ReadyCheck()},
			Extra:    map[string]http.Handler{resilience.DebugRoute: policies.DebugHandler()},
			Auth:     cfg.ServiceAuth,
			// Only the saga holds stock; the gateway and orders read products.
			Callers:     map[string][]string{"/reservations": {"orders"}, "/products": {"gateway", "orders"}},
			Tracing:     tracing,
			BeforeDrain: disc.BeforeDrain(),
		}, &closer{close: func() error {
			discErr := disc.Close()
			stopSweeper()
			<-sweeper.done
			relay.Close()
			policies.Close()
			return errors.Join(discErr, st.Close(), platform.FlushTracing(stopTracing))
		}}, nil
}

// sweeper expires held reservations past their expiry every interval, giving their stock back.
type sweeper struct {
	svc      Service
	interval time.Duration
	logger   *slog.Logger
	done     chan struct{}
}

func (s *sweeper) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := s.svc.ExpireReservations(ctx)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.logger.Error("expiring reservations", "err", err)
		case n > 0:
			s.logger.Info("expired reservations", "count", n)
		}
	}
}

// closer runs close once, however often Close is called.
type closer struct {
	once  sync.Once
	close func() error
	err   error
}

func (c *closer) Close() error {
	c.once.Do(func() { c.err = c.close() })
	return c.err
}
