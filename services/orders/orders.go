// Package orders is the orders service: it places a customer's order by running a saga over catalog
// (reserve, commit, release stock) and payments (charge, refund), stores every step so a crash is
// resumed, and answers order look-ups. See docs/architecture.md and the saga comment in saga.go.
package orders

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
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// Config configures the orders service. ConfigFromEnv fills it from the environment with the defaults
// documented on each field.
type Config struct {
	Addr        string // ORDERS_ADDR, default ":8082"
	DB          string // ORDERS_DB, the SQLite file, default "orders.db"
	CatalogURL  string // CATALOG_URL, default "http://127.0.0.1:8081"
	PaymentsURL string // PAYMENTS_URL, default "http://127.0.0.1:8083"
	// ResumeInterval is how often open orders are driven on (ORDERS_RESUME_INTERVAL, default 5s).
	ResumeInterval time.Duration
	// ResumeGrace: an open order updated more recently than this is left to whoever updated it
	// (ORDERS_RESUME_GRACE, default 2s).
	ResumeGrace time.Duration
	// SagaTimeout bounds one run of a saga (less when the caller's deadline is sooner) and, separately,
	// one compensation, which does not end with the caller's deadline (ORDERS_SAGA_TIMEOUT, default 10s).
	SagaTimeout     time.Duration
	LogLevel        slog.Level    // LOG_LEVEL, default info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, default 10s: how long in-flight requests may drain
	// Now is the clock of order times and of the resume grace; nil means time.Now.
	Now func() time.Time
	// CatalogOptions and PaymentsOptions configure the typed clients of the two dependencies (HTTP
	// client, resilience policies).
	CatalogOptions  []platform.ClientOption
	PaymentsOptions []platform.ClientOption
	// PendingPayment: a charge that fails technically leaves the order pending_payment, its stock held,
	// and the resumer retries the charge with back-off (ORDERS_PENDING_PAYMENT, default true; false:
	// the order is compensated and cancelled at once). PendingPaymentRetryMax caps that back-off
	// (ORDERS_PENDING_PAYMENT_RETRY_MAX, default 30s).
	PendingPayment         bool
	PendingPaymentRetryMax time.Duration
	// Events is the outbox relay's broker and pacing (NATS_URL, EVENTS_*; see events.Config).
	Events events.Config
	// Resilience is the policy chain of the links orders-catalog and orders-payments
	// (ORDERS_CATALOG_*, ORDERS_PAYMENTS_*) and the server-side rate limit and shedding (ORDERS_RATE_LIMIT_*,
	// ORDERS_SHED_*); see docs/patterns/README.md.
	Resilience resilience.ServiceConfig
	// Tracing is where spans go (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT; off by default).
	Tracing platform.TracingConfig
	// ServiceAuth is the service token every API call must carry, and the one orders' own calls to
	// catalog and payments carry (SERVICE_TOKEN_SECRET or SERVICE_TOKEN_SECRET_FILE; SERVICE_AUTH=off to
	// run without; see docs/security.md). Zero: off.
	ServiceAuth platform.ServiceAuth
	// Discovery registers this instance and, when on, balances the links orders-catalog and
	// orders-payments over the registered instances, seeded with CATALOG_URL and PAYMENTS_URL
	// (REGISTRY_ENDPOINTS, SERVICE_*, ORDERS_CATALOG_LB, ORDERS_CATALOG_OUTLIER_*, …; see
	// docs/patterns/discovery.md). Off by default: the static URLs are called.
	Discovery discovery.ServiceConfig

	// catalog and payments, when set, replace the typed clients (unit tests use in-memory fakes).
	catalog  Catalog
	payments Payments
	// afterStep is called after each persisted saga step; an error aborts the saga there as if the
	// process had died (crash tests).
	afterStep func(Order) error
}

// ConfigFromEnv reads the orders service's configuration; bad values are collected in env (see env.Err).
func ConfigFromEnv(env *platform.Env) Config {
	cfg := Config{
		Addr:            env.String("ORDERS_ADDR", ":8082"),
		DB:              env.String("ORDERS_DB", "orders.db"),
		CatalogURL:      env.String("CATALOG_URL", "http://127.0.0.1:8081"),
		PaymentsURL:     env.String("PAYMENTS_URL", "http://127.0.0.1:8083"),
		ResumeInterval:  env.Duration("ORDERS_RESUME_INTERVAL", 5*time.Second),
		ResumeGrace:     env.Duration("ORDERS_RESUME_GRACE", 2*time.Second),
		SagaTimeout:     env.Duration("ORDERS_SAGA_TIMEOUT", 10*time.Second),
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		LogLevel:        env.LogLevel("LOG_LEVEL", slog.LevelInfo),
	}
	cfg.PendingPayment = env.Bool("ORDERS_PENDING_PAYMENT", true)
	cfg.PendingPaymentRetryMax = env.Duration("ORDERS_PENDING_PAYMENT_RETRY_MAX", DefaultPendingPaymentRetryMax)
	cfg.Events = events.ConfigFromEnv(env)
	// orders answers the gateway's attempts (1s each): its own attempts must time out well inside them.
	cfg.Resilience = resilience.InnerServiceConfigFromEnv(env, "orders", LinkCatalog, LinkPayments)
	cfg.Tracing = platform.TracingConfigFromEnv(env)
	cfg.ServiceAuth = platform.ServiceAuthFromEnv(env)
	cfg.Discovery = discovery.ServiceConfigFromEnv(env, "orders", true, map[string]discovery.SeededLink{
		LinkCatalog: {Service: "catalog", Seed: cfg.CatalogURL}, LinkPayments: {Service: "payments", Seed: cfg.PaymentsURL}})
	for _, p := range cfg.problems() {
		env.Fail("%s", p)
	}
	return cfg
}

// problems lists what makes cfg unusable; ConfigFromEnv and Open both refuse such a configuration.
func (c Config) problems() []string {
	var ps []string
	if c.Addr == "" {
		ps = append(ps, "ORDERS_ADDR must not be empty")
	}
	if c.DB == "" {
		ps = append(ps, "ORDERS_DB must not be empty")
	}
	if c.catalog == nil {
		if _, err := platform.ParseBaseURL(c.CatalogURL); err != nil {
			ps = append(ps, "CATALOG_URL: "+err.Error())
		}
	}
	if c.payments == nil {
		if _, err := platform.ParseBaseURL(c.PaymentsURL); err != nil {
			ps = append(ps, "PAYMENTS_URL: "+err.Error())
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ORDERS_RESUME_INTERVAL", c.ResumeInterval}, {"ORDERS_SAGA_TIMEOUT", c.SagaTimeout}} {
		if d.v <= 0 {
			ps = append(ps, fmt.Sprintf("%s=%s: want a positive duration", d.name, d.v))
		}
	}
	if c.ResumeGrace < 0 {
		ps = append(ps, fmt.Sprintf("ORDERS_RESUME_GRACE=%s: want zero or more", c.ResumeGrace))
	}
	return ps
}

// The links of orders to its dependencies, named caller-callee as everywhere in the lab.
const (
	LinkCatalog  = "orders-catalog"
	LinkPayments = "orders-payments"
)

// Open assembles the orders service: it opens and migrates the store, builds the catalog and payments
// clients, service → endpoints → HTTP handler, and starts the resumer (a first pass at once, then every
// ResumeInterval). Close the returned io.Closer to stop the resumer, wait for running sagas (which stop
// where they are, to be resumed on the next start) and close the database.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	a, err := open(ctx, cfg, logger, reg)
	if err != nil {
		return nil, nil, err
	}
	return a.platform, a, nil
}

// app is an assembled orders service; tests reach its parts.
type app struct {
	platform *platform.Service
	service  *service
	saga     *saga
	resumer  *resumer
	store    *store
	relay    *events.Relay
	policies *resilience.Policies
	// discovery is nil when off.
	discovery *discovery.Discovery
	// stopTracing flushes the spans still buffered (see platform.TracingConfig).
	stopTracing func(context.Context) error

	stop     context.CancelFunc
	resuming sync.WaitGroup
	// firstPass is closed once the resumer's pass on Open has ended (tests wait for it).
	firstPass chan struct{}
	once      sync.Once
	err       error
}

func open(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*app, error) {
	if ps := cfg.problems(); len(ps) > 0 {
		return nil, fmt.Errorf("orders config: %v", ps)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tracing, stopTracing, err := cfg.Tracing.NewTracerProvider("orders")
	if err != nil {
		return nil, err
	}
	policies, err := cfg.Resilience.Build(reg, nil)
	if err != nil {
		return nil, err
	}
	disc, err := cfg.Discovery.Start("orders", reg, policies.Events(), logger)
	if err != nil {
		policies.Close()
		return nil, err
	}
	cat, pay := cfg.catalog, cfg.payments
	if cat == nil {
		c, err := catalogclient.New(cfg.CatalogURL, append(cfg.CatalogOptions, policies.Client(LinkCatalog),
			disc.Client(LinkCatalog), cfg.ServiceAuth.Client("orders", "catalog"))...)
		if err != nil {
			disc.Close()
			policies.Close()
			return nil, fmt.Errorf("catalog client: %w", err)
		}
		cat = c
	}
	if pay == nil {
		c, err := paymentsclient.New(cfg.PaymentsURL, append(cfg.PaymentsOptions, policies.Client(LinkPayments),
			disc.Client(LinkPayments), cfg.ServiceAuth.Client("orders", "payments"))...)
		if err != nil {
			disc.Close()
			policies.Close()
			return nil, fmt.Errorf("payments client: %w", err)
		}
		pay = c
	}
	st, err := openStore(ctx, cfg.DB, cfg.Now)
	if err != nil {
		disc.Close()
		policies.Close()
		return nil, err
	}
	m := newMetrics(reg, st)
	stopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	sg := newSaga(st, cat, pay, m, logger, cfg.SagaTimeout, cfg.afterStep, stopCtx)
	if cfg.PendingPayment {
		sg.enablePendingPayment(cfg.PendingPaymentRetryMax)
	}
	relay, err := startRelay(ctx, cfg.Events, st, logger, reg)
	if err != nil {
		stop()
		disc.Close()
		policies.Close()
		st.Close()
		return nil, err
	}
	svc := &service{store: st, saga: sg, metrics: m}
	a := &app{
		platform: &platform.Service{
			Name:        "orders",
			API:         policies.Middleware(NewHTTPHandler(NewSet(svc), logger)),
			Registry:    reg,
			Logger:      logger,
			Ready:       []platform.ReadyCheck{{Name: "db", Check: st.ping}, relay.ReadyCheck()},
			Extra:       disc.Extra(map[string]http.Handler{resilience.DebugRoute: policies.DebugHandler()}),
			Auth:        cfg.ServiceAuth,
			Callers:     map[string][]string{"/orders": {"gateway"}},
			Tracing:     tracing,
			BeforeDrain: disc.BeforeDrain(),
		},
		discovery:   disc,
		stopTracing: stopTracing,
		policies:    policies,
		service:     svc,
		saga:        sg,
		resumer:     &resumer{saga: sg, now: cfg.Now, interval: cfg.ResumeInterval, grace: cfg.ResumeGrace},
		store:       st,
		stop:        stop,
		firstPass:   make(chan struct{}),
		relay:       relay,
	}
	a.resuming.Add(1)
	go func() {
		defer a.resuming.Done()
		a.resumer.loop(stopCtx, a.firstPass)
	}()
	return a, nil
}

// Close stops the resumer, waits for the sagas being driven and closes the database. It is safe to call
// more than once.
func (a *app) Close() error {
	a.once.Do(func() {
		a.stop()
		a.resuming.Wait()
		a.saga.close()
		a.relay.Close()
		discErr := a.discovery.Close()
		a.policies.Close()
		a.err = errors.Join(discErr, a.store.Close(), platform.FlushTracing(a.stopTracing))
	})
	return a.err
}
