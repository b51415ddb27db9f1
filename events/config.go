package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/resilience-lab/lab/services/platform"
)

// Config is how every service reaches the broker and paces its relay and consumers. ConfigFromEnv
// reads it the same way for each; a zero field means its default.
type Config struct {
	// URL is the broker (NATS_URL, e.g. nats://nats:4222). Empty: events are still written to the
	// outbox, but no relay or consumer runs, and /readyz says so.
	URL string
	// RelayInterval is how often an idle relay looks for new outbox rows (EVENTS_RELAY_INTERVAL, 100ms).
	RelayInterval time.Duration
	// RelayBatch bounds the rows one relay round publishes (EVENTS_RELAY_BATCH, 256).
	RelayBatch int
	// PublishTimeout bounds the wait for the JetStream acks of one round (EVENTS_PUBLISH_TIMEOUT, 5s).
	PublishTimeout time.Duration
	// MaxBackoff caps the relay's and the consumers' exponential back-off while the broker is down or a
	// message keeps failing (EVENTS_MAX_BACKOFF, 10s).
	MaxBackoff time.Duration
	// MaxDeliver is how many deliveries a failing message gets before it is dead-lettered
	// (EVENTS_MAX_DELIVER, 5).
	MaxDeliver int
	// AckWait is how long the broker waits for a consumer's ack before redelivering (EVENTS_ACK_WAIT, 30s).
	AckWait time.Duration
	// RelayLease is how long the relay that publishes an outbox holds it without renewing
	// (EVENTS_RELAY_LEASE, 3s): replicas sharing one outbox publish it one at a time, and a standby takes
	// over at most this long after the holder died (at once after the holder closed).
	RelayLease time.Duration
	// OutboxRetention is how long sent outbox rows are kept, and processed-event ids after it
	// (EVENTS_OUTBOX_RETENTION, 72h; at least the streams' max age, so a redelivery is still recognised).
	OutboxRetention time.Duration
}

// Defaults of Config.
const (
	DefaultRelayInterval   = 100 * time.Millisecond
	DefaultRelayBatch      = 256
	DefaultPublishTimeout  = 5 * time.Second
	DefaultMaxBackoff      = 10 * time.Second
	DefaultMaxDeliver      = 5
	DefaultAckWait         = 30 * time.Second
	DefaultRelayLease      = 3 * time.Second
	DefaultOutboxRetention = streamMaxAge
)

// ConfigFromEnv reads the events configuration; bad values are collected in env (see env.Err).
func ConfigFromEnv(env *platform.Env) Config {
	c := Config{
		URL:             env.String("NATS_URL", ""),
		RelayInterval:   env.Duration("EVENTS_RELAY_INTERVAL", DefaultRelayInterval),
		RelayBatch:      env.Int("EVENTS_RELAY_BATCH", DefaultRelayBatch),
		PublishTimeout:  env.Duration("EVENTS_PUBLISH_TIMEOUT", DefaultPublishTimeout),
		MaxBackoff:      env.Duration("EVENTS_MAX_BACKOFF", DefaultMaxBackoff),
		MaxDeliver:      env.Int("EVENTS_MAX_DELIVER", DefaultMaxDeliver),
		AckWait:         env.Duration("EVENTS_ACK_WAIT", DefaultAckWait),
		RelayLease:      env.Duration("EVENTS_RELAY_LEASE", DefaultRelayLease),
		OutboxRetention: env.Duration("EVENTS_OUTBOX_RETENTION", DefaultOutboxRetention),
	}
	if c.RelayBatch < 1 || c.RelayBatch > 10000 {
		env.Fail("EVENTS_RELAY_BATCH=%d: want 1 to 10000", c.RelayBatch)
	}
	if c.MaxDeliver < 1 {
		env.Fail("EVENTS_MAX_DELIVER=%d: want 1 or more", c.MaxDeliver)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"EVENTS_RELAY_INTERVAL", c.RelayInterval}, {"EVENTS_PUBLISH_TIMEOUT", c.PublishTimeout},
		{"EVENTS_MAX_BACKOFF", c.MaxBackoff}, {"EVENTS_ACK_WAIT", c.AckWait}, {"EVENTS_OUTBOX_RETENTION", c.OutboxRetention},
		{"EVENTS_RELAY_LEASE", c.RelayLease}} {
		if d.v <= 0 {
			env.Fail("%s=%s: want a positive duration", d.name, d.v)
		}
	}
	return c
}

// withDefaults fills zero fields, so a Config built in code (tests) needs only what it changes.
func (c Config) withDefaults() Config {
	if c.RelayInterval <= 0 {
		c.RelayInterval = DefaultRelayInterval
	}
	if c.RelayBatch <= 0 {
		c.RelayBatch = DefaultRelayBatch
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.RelayLease <= 0 {
		c.RelayLease = DefaultRelayLease
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.OutboxRetention <= 0 {
		c.OutboxRetention = DefaultOutboxRetention
	}
	return c
}

// connect dials the broker for client name. It returns at once even when the broker is down: the
// connection keeps retrying in the background, forever, and publishes made while it is down fail at
// once instead of being buffered (the outbox is the buffer), so the relay can back off.
func connect(url, name string, logger *slog.Logger, publishTimeout time.Duration) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		nats.Timeout(2*time.Second),
		// A link that stalls without closing (a Toxiproxy timeout toxic) is noticed after ~3 pings.
		nats.PingInterval(2*time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("broker disconnected", "client", name, "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("broker reconnected", "client", name, "url", c.ConnectedUrlRedacted())
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("events: connect %s: %w", url, err)
	}
	// Async publishes whose ack never comes (the link dropped) fail after publishTimeout instead of
	// piling up as pending.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("events: jetstream: %w", err)
	}
	return nc, js, nil
}

// streamMaxAge is how long the streams keep events: long enough for a consumer that was down for a
// day or two to catch up.
const streamMaxAge = 72 * time.Hour

// streamConfigs are the JetStream streams of the shop, one per producer plus the dead letters.
func streamConfigs() []jetstream.StreamConfig {
	subjects := map[string]string{StreamOrders: "orders.>", StreamCatalog: "catalog.>", StreamPayments: "payments.>",
		StreamDeadLetter: DeadLetterPrefix + ">"}
	var cfgs []jetstream.StreamConfig
	for _, name := range []string{StreamOrders, StreamCatalog, StreamPayments, StreamDeadLetter} {
		cfgs = append(cfgs, jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{subjects[name]},
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.LimitsPolicy,
			MaxAge:     streamMaxAge,
			Duplicates: dedupWindow,
		})
	}
	return cfgs
}

// EnsureStreams creates the shop's streams or brings them to this configuration; it is idempotent, so
// every relay and consumer calls it on (re)connecting, and a broker that lost its store gets them back.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	var errs []error
	for _, cfg := range streamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// dedupWindow is how long a stream remembers Nats-Msg-Ids: a relay that re-publishes a row whose ack it
// lost within this window does not make a duplicate. Past it, consumers' processed-event tables still do.
const dedupWindow = 10 * time.Minute
