// Package notifications is the notifications service: a second reader of the order events. A durable
// JetStream consumer stores one notification per order event (idempotently, keyed by event id) in the
// service's own SQLite, and GET /notifications?customer_id=… lists them. See docs/patterns/outbox.md.
package notifications

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/services/platform"
)

// Config configures the notifications service. ConfigFromEnv fills it from the environment with the
// defaults documented on each field.
type Config struct {
	Addr            string        // NOTIFICATIONS_ADDR, default ":8084"
	DB              string        // NOTIFICATIONS_DB, the SQLite file, default "notifications.db"
	LogLevel        slog.Level    // LOG_LEVEL, default info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, default 10s: how long in-flight requests may drain
	// Events is the consumer's broker and pacing (NATS_URL, EVENTS_*; see events.Config). Without
	// NATS_URL nothing is consumed.
	Events events.Config
	// Tracing is where spans go (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT; off by default).
	Tracing platform.TracingConfig
	// ServiceAuth is the service token every API call must carry (SERVICE_TOKEN_SECRET or
	// SERVICE_TOKEN_SECRET_FILE; SERVICE_AUTH=off to run without; see docs/security.md). Zero: off.
	ServiceAuth platform.ServiceAuth
}

// ConsumerName is the durable consumer of the order events, and names its dead-letter subject.
const ConsumerName = "notifications"

// ConfigFromEnv reads the configuration; bad values are collected in env (see env.Err).
func ConfigFromEnv(env *platform.Env) Config {
	cfg := Config{
		Addr:            env.String("NOTIFICATIONS_ADDR", ":8084"),
		DB:              env.String("NOTIFICATIONS_DB", "notifications.db"),
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		LogLevel:        env.LogLevel("LOG_LEVEL", slog.LevelInfo),
		Events:          events.ConfigFromEnv(env),
		Tracing:         platform.TracingConfigFromEnv(env),
		ServiceAuth:     platform.ServiceAuthFromEnv(env),
	}
	for _, p := range cfg.problems() {
		env.Fail("%s", p)
	}
	return cfg
}

func (c Config) problems() []string {
	var ps []string
	if c.Addr == "" {
		ps = append(ps, "NOTIFICATIONS_ADDR must not be empty")
	}
	if c.DB == "" {
		ps = append(ps, "NOTIFICATIONS_DB must not be empty")
	}
	return ps
}

// Open opens (and migrates) the store, starts the order-events consumer when NATS_URL is set, and
// assembles service → endpoints → HTTP handler. Close the returned io.Closer to stop the consumer and
// close the database.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	if ps := cfg.problems(); len(ps) > 0 {
		return nil, nil, fmt.Errorf("notifications config: %v", ps)
	}
	tracing, stopTracing, err := cfg.Tracing.NewTracerProvider("notifications")
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	svc, err := newService(st, reg)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	consumer, err := events.StartConsumer(ctx, cfg.Events, events.ConsumerOptions{
		Name: ConsumerName, Stream: events.StreamOrders, Subjects: []string{"orders.>"},
		Handle: svc.handle, Applied: svc.applied, DB: st.write, Logger: logger, Registry: reg, Tracing: tracing,
	})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return &platform.Service{
		Name:     "notifications",
		API:      NewHTTPHandler(NewSet(svc), logger),
		Registry: reg,
		Logger:   logger,
		Ready:    []platform.ReadyCheck{{Name: "db", Check: st.Ping}, consumer.ReadyCheck()},
		Auth:     cfg.ServiceAuth,
		Callers:  map[string][]string{"/notifications": {"gateway"}},
		Tracing:  tracing,
	}, consumerAndStore{consumer, st, stopTracing}, nil
}

// consumerAndStore stops the consumer, then closes the store it writes and flushes the spans.
type consumerAndStore struct {
	consumer    *events.Consumer
	store       *store
	stopTracing func(context.Context) error
}

func (c consumerAndStore) Close() error {
	return errors.Join(c.consumer.Close(), c.store.Close(), platform.FlushTracing(c.stopTracing))
}
