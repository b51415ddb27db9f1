package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/platform"
)

// Relay publishes a service's outbox to JetStream: oldest rows first, a batch at a time, each with
// Nats-Msg-Id = event id so the stream drops a re-publish; a row is marked sent only once the broker
// acked it. While the broker is down it backs off and retries; nothing is lost, and a row may be
// published more than once (at-least-once), which the dedup window and idempotent consumers absorb.
//
// Only the relay holding the outbox's lease (RelayLeaseMigration) publishes: replicas sharing one
// database take turns instead of all publishing every row. The holder renews the lease when half of it
// is left; a standby polls it every RelayInterval and takes it once it expired or was released.
type Relay struct {
	cfg      Config
	db       *sql.DB
	logger   *slog.Logger
	now      func() time.Time
	instance string

	leaseUntil time.Time // the run loop's own: until when this relay holds the lease (wall clock)
	leader     atomic.Bool
	leaseFails int

	nc *nats.Conn
	js jetstream.JetStream

	published prometheus.Counter
	failures  prometheus.Counter

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// RelayOptions are what StartRelay needs beside Config.
type RelayOptions struct {
	// Service names the producer (the NATS client name, logs).
	Service string
	// DB is the service's write handle: the relay marks rows sent through it.
	DB *sql.DB
	// ReadDB, when set, serves the backlog metrics (a reader pool), so a scrape never queues behind writes.
	ReadDB   *sql.DB
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Now is the clock of sent stamps and the backlog age; nil means time.Now. The lease always runs on
	// the wall clock, which every replica on the host shares.
	Now func() time.Time
	// Instance names this relay in the outbox's lease: the replica's instance id where replicas share a
	// database. Default: the host name, which differs between containers and survives a container's
	// restart, so a restarted relay takes its own lease back at once.
	Instance string
}

// StartRelay registers the outbox metrics and, when cfg.URL is set, connects to the broker and starts
// publishing in the background until Close. Without a URL the relay does not run: rows stay in the
// outbox (the backlog metrics show them) and ReadyCheck reports the relay disabled.
func StartRelay(ctx context.Context, cfg Config, o RelayOptions) (*Relay, error) {
	cfg = cfg.withDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReadDB == nil {
		o.ReadDB = o.DB
	}
	if o.Instance == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = fmt.Sprintf("pid-%d", os.Getpid())
		}
		o.Instance = host
	}
	r := &Relay{cfg: cfg, db: o.DB, logger: o.Logger.With("component", "outbox_relay"), now: o.Now, instance: o.Instance,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "events_published_total", Help: "Outbox events the broker acked.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "events_publish_failures_total", Help: "Outbox publish attempts that failed (broker down, no ack in time); the rows are retried.",
		}),
		done: make(chan struct{}),
	}
	running := 0.0
	if cfg.URL != "" {
		running = 1
	}
	stats := func() OutboxStats {
		qctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := Stats(qctx, o.ReadDB)
		if err != nil {
			return OutboxStats{Backlog: -1}
		}
		return s
	}
	collectors := []prometheus.Collector{r.published, r.failures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "events_outbox_backlog", Help: "Outbox events not yet acked by the broker.",
		}, func() float64 {
			s := stats()
			if s.Backlog < 0 {
				return math.NaN()
			}
			return float64(s.Backlog)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "events_outbox_oldest_age_seconds", Help: "Age of the oldest outbox event not yet acked by the broker (0 when none).",
		}, func() float64 {
			s := stats()
			switch {
			case s.Backlog < 0:
				return math.NaN()
			case s.Backlog == 0:
				return 0
			}
			return max(0, r.now().Sub(s.Oldest).Seconds())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "events_relay_running", Help: "1 when the outbox relay runs, 0 when NATS_URL is unset and events stay in the outbox.",
		}, func() float64 { return running }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "events_relay_leader", Help: "1 while this relay holds the outbox's lease and publishes it; 0 while another replica's relay does.",
		}, func() float64 {
			if r.leader.Load() {
				return 1
			}
			return 0
		}),
	}
	for _, c := range collectors {
		if err := o.Registry.Register(c); err != nil {
			return nil, err
		}
	}
	if cfg.URL == "" {
		r.logger.Warn("NATS_URL is unset: events are kept in the outbox and not published")
		close(r.done)
		return r, nil
	}
	// A service that forgot the lease's migration would otherwise log a failure every round.
	qctx, cancel := context.WithTimeout(ctx, cfg.PublishTimeout)
	err := o.DB.QueryRowContext(qctx, `SELECT count(*) FROM outbox_relay`).Scan(new(int))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("events: the relay lease (is events.RelayLeaseMigration among the migrations?): %w", err)
	}
	nc, js, err := connect(cfg.URL, o.Service+"-relay", r.logger, cfg.PublishTimeout)
	if err != nil {
		return nil, err
	}
	r.nc, r.js = nc, js
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = stop
	go r.run(runCtx)
	return r, nil
}

// Running reports whether the relay publishes (NATS_URL is set).
func (r *Relay) Running() bool { return r.nc != nil }

// ReadyCheck reports the relay in /readyz. It never fails the service: while the broker is down the
// outbox keeps the events and the service works on (the backlog metrics show the outage). Its name says
// whether the relay runs, as platform checks carry no detail beside ok or a failure.
func (r *Relay) ReadyCheck() platform.ReadyCheck {
	name := "events_relay"
	if !r.Running() {
		name = "events_relay_disabled_nats_url_unset"
	}
	return platform.ReadyCheck{Name: name, Check: func(context.Context) error { return nil }}
}

// Close stops the relay after its current round and closes its broker connection. Rows it did not get
// acked stay unsent for the next start.
func (r *Relay) Close() error {
	r.once.Do(func() {
		if r.stop != nil {
			r.stop()
		}
		<-r.done
		if r.nc != nil {
			if r.leader.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
				if err := releaseLease(ctx, r.db, r.instance); err != nil {
					r.logger.Warn("release the relay lease; a standby takes over when it expires", "err", err)
				}
				cancel()
				r.leader.Store(false)
			}
			r.nc.Close()
		}
	})
	return nil
}

func (r *Relay) run(ctx context.Context) {
	defer close(r.done)
	var (
		failures    int
		needStreams = true
		lastPrune   time.Time
	)
	for {
		wait := r.cfg.RelayInterval
		if !r.lead(ctx) {
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		if needStreams {
			if err := r.ensureStreams(ctx); err != nil {
				failures++
				wait = backoff(failures, r.cfg.MaxBackoff)
				r.logWait(ctx, "create streams", err, failures, wait)
				if !sleep(ctx, wait) {
					return
				}
				continue
			}
			needStreams = false
		}
		sent, err := r.round(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			wait = backoff(failures, r.cfg.MaxBackoff)
			// A broker that lost its store has no stream for our subjects: create them again.
			needStreams = errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
			r.logWait(ctx, "publish outbox", err, failures, wait)
		case sent == r.cfg.RelayBatch:
			failures, wait = 0, 0 // more are waiting
		default:
			failures = 0
		}
		if now := r.now(); now.Sub(lastPrune) > time.Minute {
			lastPrune = now
			if n, err := pruneSent(ctx, r.db, now.Add(-r.cfg.OutboxRetention)); err != nil && ctx.Err() == nil {
				r.logger.Warn("prune sent outbox rows", "err", err)
			} else if n > 0 {
				r.logger.Debug("pruned sent outbox rows", "count", n)
			}
		}
		if wait > 0 && !sleep(ctx, wait) {
			return
		}
	}
}

// lead reports whether this relay holds the outbox's lease, renewing it when half of it is left or
// taking it when it is free. A failed lease query keeps a lease still valid and otherwise stands by.
func (r *Relay) lead(ctx context.Context) bool {
	now := time.Now()
	if r.leaseUntil.Sub(now) > r.cfg.RelayLease/2 {
		return true
	}
	qctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	held, err := takeLease(qctx, r.db, r.instance, now, r.cfg.RelayLease)
	cancel()
	if err != nil {
		r.leaseFails++
		r.logWait(ctx, "renew the relay lease", err, r.leaseFails, r.cfg.RelayInterval)
		held = now.Before(r.leaseUntil)
	} else {
		r.leaseFails = 0
		if held {
			r.leaseUntil = now.Add(r.cfg.RelayLease)
		} else {
			r.leaseUntil = time.Time{}
		}
	}
	if was := r.leader.Swap(held); was != held && ctx.Err() == nil {
		if held {
			r.logger.Info("relay lease taken: this relay publishes the outbox", "instance", r.instance)
		} else {
			r.logger.Info("relay lease lost: another relay publishes the outbox", "instance", r.instance)
		}
	}
	return held
}

func (r *Relay) ensureStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	return EnsureStreams(ctx, r.js)
}

// logWait logs a failed attempt on the first failure and then every tenth, so an outage does not flood
// the log.
func (r *Relay) logWait(ctx context.Context, what string, err error, failures int, wait time.Duration) {
	if ctx.Err() == nil && (failures == 1 || failures%10 == 0) {
		r.logger.Warn(what+" failed; backing off", "err", err, "failures", failures, "retry_in", wait.String())
	}
}

// round publishes one batch of unsent rows and marks the acked ones sent. It returns how many were
// acked; an error means at least one was not (the rest are retried next round).
func (r *Relay) round(ctx context.Context) (int, error) {
	rows, err := unsent(ctx, r.db, r.cfg.RelayBatch)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	if !r.nc.IsConnected() {
		r.failures.Add(float64(len(rows)))
		return 0, errDisconnected
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	// Publish the whole batch before waiting for any ack, so a slow link costs one round trip per
	// batch, not per event. The stream may then hold them out of order when some fail; consumers do
	// not rely on order.
	futures := make([]jetstream.PubAckFuture, len(rows))
	var firstErr error
	for i, row := range rows {
		msg := &nats.Msg{Subject: row.subject, Data: row.payload, Header: nats.Header{}}
		if tp := traceParentOf(row.payload); tp != "" {
			msg.Header.Set(HeaderTraceParent, tp)
		}
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(row.eventID), jetstream.WithRetryAttempts(0))
		if err != nil {
			firstErr = err
			break
		}
		futures[i] = f
	}
	var acked []int64
	for i, f := range futures {
		if f == nil {
			break
		}
		select {
		case <-f.Ok():
			acked = append(acked, rows[i].seq)
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-pctx.Done():
			if firstErr == nil {
				firstErr = pctx.Err()
			}
		}
	}
	// Mark what was acked even when the round is being stopped: the broker has those events.
	if err := markSent(context.WithoutCancel(ctx), r.db, acked, r.now()); err != nil {
		return 0, err
	}
	r.published.Add(float64(len(acked)))
	if failed := len(rows) - len(acked); failed > 0 {
		r.failures.Add(float64(failed))
		if firstErr == nil {
			firstErr = errors.New("events: publish not acked")
		}
		return len(acked), firstErr
	}
	return len(acked), nil
}

// HeaderTraceParent is the message header carrying the W3C trace context of the event's cause.
const HeaderTraceParent = "traceparent"

// traceParentOf reads the traceparent of an outbox payload (our own encoding of an Event), "" if none.
func traceParentOf(payload []byte) string {
	var ev struct {
		TraceParent string `json:"traceparent"`
	}
	if json.Unmarshal(payload, &ev) != nil {
		return ""
	}
	return ev.TraceParent
}

// errDisconnected: the connection to the broker is down (it reconnects in the background).
var errDisconnected = errors.New("events: not connected to the broker")

// backoff is the wait after the n-th consecutive failure: exponential from 100ms, capped, with jitter
// so many clients recovering at once do not retry in step.
func backoff(n int, limit time.Duration) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 16)
	if d > limit || d <= 0 {
		d = limit
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
