package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/resilience-lab/lab/services/platform"
)

// Handler applies one event inside tx, the transaction that also records the event as processed: the
// effect and the record commit together or not at all. A returned error rolls both back; the message is
// redelivered with back-off, or dead-lettered when the error is Permanent or the deliveries run out.
type Handler func(ctx context.Context, tx *sql.Tx, ev Event, p Payload) error

// permanent marks a handler error retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so the consumer dead-letters the event at once instead of retrying it.
func Permanent(err error) error { return permanent{err} }

// ConsumerOptions are what StartConsumer needs beside Config.
type ConsumerOptions struct {
	// Name is the durable consumer's name; it also scopes the processed-event ids and names the
	// dead-letter subject (DeadLetterPrefix + Name).
	Name string
	// Stream is read, filtered to Subjects (all of it when empty).
	Stream   string
	Subjects []string
	Handle   Handler
	// DB is the consumer's database (its write handle): processed ids and the handler's effects.
	DB       *sql.DB
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Batch bounds the messages fetched at once (default 64).
	Batch int
	// Tracing, when set, records a consumer span per message, a child of the span that caused the event
	// (its traceparent header); nil records none, though the handler's context still carries that
	// trace context.
	Tracing trace.TracerProvider
	// Applied, when set, is called after an event's transaction committed (not for a duplicate), for
	// effects that must follow the commit, such as counting.
	Applied func(ev Event, p Payload)

	// afterCommit, when set, runs after a message's transaction committed and before its ack; an error
	// stops the consumer there as if the process had died (tests).
	afterCommit func(Event) error
}

// Consumer is a durable JetStream pull consumer that applies each event once: it acks only after the
// handler's transaction committed, recognises redeliveries by event id, redelivers failures with
// exponential back-off, and moves a message that failed MaxDeliver times (or can never be decoded) to
// the dead-letter subject.
type Consumer struct {
	cfg    Config
	o      ConsumerOptions
	logger *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream

	handled      *prometheus.CounterVec
	redeliveries prometheus.Counter
	deadLettered prometheus.Counter
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
	err  error // why the loop stopped early (afterCommit), read after done
}

// tracerName is the instrumentation scope of the consumer spans.
const tracerName = "github.com/resilience-lab/lab/events"

// Outcomes of events_handled_total.
const (
	outcomeApplied   = "applied"
	outcomeDuplicate = "duplicate"
	outcomeFailed    = "failed"
)

// StartConsumer registers the consumer's metrics and, when cfg.URL is set, connects and consumes in the
// background until Close. Without a URL nothing is consumed and ReadyCheck says so.
func StartConsumer(ctx context.Context, cfg Config, o ConsumerOptions) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if o.Name == "" || o.Stream == "" || o.Handle == nil || o.DB == nil {
		return nil, errors.New("events: a consumer needs a name, a stream, a handler and a database")
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	labels := prometheus.Labels{"consumer": o.Name}
	c := &Consumer{cfg: cfg, o: o, logger: o.Logger.With("component", "consumer", "consumer", o.Name),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_handled_total", Help: "Event deliveries handled, by outcome: applied, duplicate (applied before), failed (retried or dead-lettered).",
			ConstLabels: labels,
		}, []string{"outcome"}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "events_redeliveries_total", Help: "Deliveries of an event that had been delivered before (failure, lost ack, crash).",
			ConstLabels: labels,
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "events_dead_lettered_total", Help: "Events moved to the dead-letter subject (undecodable, permanent failure, or out of deliveries).",
			ConstLabels: labels,
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "events_consumer_pending_messages", Help: "Consumer lag: stream messages not yet delivered to the consumer (num_pending, refreshed after each fetch).",
			ConstLabels: labels,
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "events_consumer_ack_pending_messages", Help: "Messages delivered to the consumer and not yet acked (num_ack_pending).",
			ConstLabels: labels,
		}),
		done: make(chan struct{}),
	}
	for _, col := range []prometheus.Collector{c.handled, c.redeliveries, c.deadLettered, c.pending, c.ackPending} {
		if err := o.Registry.Register(col); err != nil {
			return nil, err
		}
	}
	for _, oc := range []string{outcomeApplied, outcomeDuplicate, outcomeFailed} {
		c.handled.WithLabelValues(oc)
	}
	if cfg.URL == "" {
		c.logger.Warn("NATS_URL is unset: no events are consumed")
		close(c.done)
		return c, nil
	}
	nc, js, err := connect(cfg.URL, o.Name+"-consumer", c.logger, cfg.PublishTimeout)
	if err != nil {
		return nil, err
	}
	c.nc, c.js = nc, js
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop = stop
	go c.run(runCtx)
	return c, nil
}

// Running reports whether the consumer consumes (NATS_URL is set).
func (c *Consumer) Running() bool { return c.nc != nil }

// ReadyCheck reports the consumer in /readyz without ever failing the service (a broker outage only
// delays events; the lag metric shows it). Its name says whether the consumer runs.
func (c *Consumer) ReadyCheck() platform.ReadyCheck {
	name := "events_consumer"
	if !c.Running() {
		name = "events_consumer_disabled_nats_url_unset"
	}
	return platform.ReadyCheck{Name: name, Check: func(context.Context) error { return nil }}
}

// Close stops consuming after the message being handled and closes the connection; messages fetched but
// not handled are redelivered (to the next start) after AckWait.
func (c *Consumer) Close() error {
	c.once.Do(func() {
		if c.stop != nil {
			c.stop()
		}
		<-c.done
		if c.nc != nil {
			c.nc.Close()
		}
	})
	return nil
}

// Done is closed when the consumer has stopped.
func (c *Consumer) Done() <-chan struct{} { return c.done }

func (c *Consumer) run(ctx context.Context) {
	defer close(c.done)
	var (
		cons      jetstream.Consumer
		failures  int
		lastPrune time.Time
	)
	for ctx.Err() == nil {
		if cons == nil {
			var err error
			if cons, err = c.setUp(ctx); err != nil {
				failures++
				wait := backoff(failures, c.cfg.MaxBackoff)
				if ctx.Err() == nil && (failures == 1 || failures%10 == 0) {
					c.logger.Warn("set up consumer failed; backing off", "err", err, "failures", failures, "retry_in", wait.String())
				}
				sleep(ctx, wait)
				continue
			}
		}
		batch, err := cons.Fetch(c.o.Batch, jetstream.FetchMaxWait(time.Second))
		if err == nil {
			err = c.handleBatch(ctx, batch)
			if errors.Is(err, errStopped) {
				return
			}
		}
		if err != nil && ctx.Err() == nil {
			failures++
			wait := backoff(failures, c.cfg.MaxBackoff)
			if failures == 1 || failures%10 == 0 {
				c.logger.Warn("fetch failed; backing off", "err", err, "failures", failures, "retry_in", wait.String())
			}
			// The consumer or its stream may be gone (a broker that lost its store): set up again.
			cons = nil
			sleep(ctx, wait)
			continue
		}
		failures = 0
		c.refreshLag(ctx, cons)
		if now := time.Now(); now.Sub(lastPrune) > time.Minute {
			lastPrune = now
			if _, err := c.o.DB.ExecContext(ctx, `DELETE FROM processed_events WHERE consumer = ? AND processed_at < ?`,
				c.o.Name, now.Add(-c.cfg.OutboxRetention).UnixNano()); err != nil && ctx.Err() == nil {
				c.logger.Warn("prune processed events", "err", err)
			}
		}
	}
}

// setUp creates the streams and the durable consumer (idempotent).
func (c *Consumer) setUp(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
	defer cancel()
	if err := EnsureStreams(ctx, c.js); err != nil {
		return nil, err
	}
	return c.js.CreateOrUpdateConsumer(ctx, c.o.Stream, jetstream.ConsumerConfig{
		Durable:        c.o.Name,
		FilterSubjects: c.o.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        c.cfg.AckWait,
		// Deliveries are counted and ended here (dead letter), not by the server, which would drop the
		// message silently after its MaxDeliver.
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	})
}

func (c *Consumer) refreshLag(ctx context.Context, cons jetstream.Consumer) {
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		return
	}
	c.pending.Set(float64(info.NumPending))
	c.ackPending.Set(float64(info.NumAckPending))
}

// errStopped ends the loop: the consumer is closing, or a test simulated a crash.
var errStopped = errors.New("events: consumer stopped")

func (c *Consumer) handleBatch(ctx context.Context, batch jetstream.MessageBatch) error {
	for msg := range batch.Messages() {
		if ctx.Err() != nil {
			// Closing: leave the rest of the batch to be redelivered, sooner than AckWait.
			_ = msg.Nak()
			continue
		}
		if err := c.handle(ctx, msg); err != nil {
			c.err = err // read only after done is closed
			return errStopped
		}
	}
	if ctx.Err() != nil {
		return errStopped
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// handle applies one message. Only a simulated crash returns an error.
func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) error {
	deliveries := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		deliveries = md.NumDelivered
	}
	if deliveries > 1 {
		c.redeliveries.Inc()
	}
	ev, p, err := Decode(msg.Data())
	if err != nil {
		c.handled.WithLabelValues(outcomeFailed).Inc()
		c.deadLetter(ctx, msg, deliveries, err)
		return nil
	}
	hctx := platform.WithTraceParent(platform.WithRequestID(ctx, ev.CorrelationID), msg.Headers().Get(HeaderTraceParent))
	span := trace.SpanFromContext(hctx)
	if c.o.Tracing != nil {
		hctx, span = c.o.Tracing.Tracer(tracerName).Start(hctx, c.o.Name+" process "+ev.Type,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
				attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject()),
				attribute.String("messaging.message.id", ev.ID), attribute.Int64("messaging.delivery_count", int64(deliveries))))
		defer span.End()
	}
	applied, err := c.apply(hctx, ev, p)
	if err != nil && ctx.Err() == nil {
		span.SetStatus(codes.Error, err.Error())
	}
	switch {
	case err == nil:
		outcome := outcomeApplied
		if !applied {
			outcome = outcomeDuplicate
		}
		c.handled.WithLabelValues(outcome).Inc()
		if applied && c.o.Applied != nil {
			c.o.Applied(ev, p)
		}
		if c.o.afterCommit != nil {
			if err := c.o.afterCommit(ev); err != nil {
				return err
			}
		}
		if err := msg.Ack(); err != nil {
			// The commit stands; a redelivery is recognised by its id.
			c.logger.WarnContext(hctx, "ack failed", "event_id", ev.ID, "err", err)
		}
	case ctx.Err() != nil:
		_ = msg.Nak() // cut short by Close: not the event's fault
	default:
		c.handled.WithLabelValues(outcomeFailed).Inc()
		var perm permanent
		if errors.As(err, &perm) || deliveries >= uint64(c.cfg.MaxDeliver) {
			c.deadLetter(hctx, msg, deliveries, err)
			return nil
		}
		wait := backoff(int(deliveries), c.cfg.MaxBackoff)
		c.logger.WarnContext(hctx, "event failed; redelivering", "event_id", ev.ID, "type", ev.Type,
			"deliveries", deliveries, "retry_in", wait.String(), "err", err)
		_ = msg.NakWithDelay(wait)
	}
	return nil
}

// apply runs the handler and records the event id in one transaction; applied is false when the id was
// recorded before (a redelivery of an event already applied).
func (c *Consumer) apply(ctx context.Context, ev Event, p Payload) (applied bool, err error) {
	ctx, cancel := platform.WriteContext(ctx)
	defer cancel()
	tx, err := c.o.DB.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO processed_events (consumer, event_id, processed_at) VALUES (?, ?, ?)
		ON CONFLICT (consumer, event_id) DO NOTHING`, c.o.Name, ev.ID, time.Now().UnixNano())
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, err
	} else if n == 0 {
		return false, tx.Commit()
	}
	if err := c.o.Handle(ctx, tx, ev, p); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// deadLetter publishes msg to the consumer's dead-letter subject with why it failed, then terminates
// it. If the dead-letter publish fails the message is redelivered later, so it is never dropped.
func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, deliveries uint64, cause error) {
	dl := &nats.Msg{Subject: DeadLetterPrefix + c.o.Name, Data: msg.Data(), Header: nats.Header{}}
	dl.Header.Set("Events-Consumer", c.o.Name)
	dl.Header.Set("Events-Subject", msg.Subject())
	dl.Header.Set("Events-Deliveries", strconv.FormatUint(deliveries, 10))
	dl.Header.Set("Events-Error", cause.Error())
	id := c.o.Name + ":" + msg.Subject()
	if md, err := msg.Metadata(); err == nil {
		dl.Header.Set("Events-Stream-Sequence", strconv.FormatUint(md.Sequence.Stream, 10))
		id = fmt.Sprintf("%s:%s:%d", c.o.Name, md.Stream, md.Sequence.Stream)
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PublishTimeout)
	defer cancel()
	if _, err := c.js.PublishMsg(pctx, dl, jetstream.WithMsgID(id)); err != nil {
		c.logger.WarnContext(ctx, "dead-letter publish failed; redelivering", "subject", msg.Subject(), "err", err)
		_ = msg.NakWithDelay(backoff(int(deliveries), c.cfg.MaxBackoff))
		return
	}
	c.deadLettered.Inc()
	c.logger.ErrorContext(ctx, "event dead-lettered", "subject", msg.Subject(), "deliveries", deliveries,
		"dead_letter_subject", dl.Subject, "err", cause)
	if err := msg.Term(); err != nil {
		c.logger.WarnContext(ctx, "terminate dead-lettered message", "err", err)
	}
}
