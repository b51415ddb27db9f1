package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-kit/kit/sd/etcdv3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// RegistryConfig are the settings of the connection to etcd, shared by a service's registration and its
// clients' instancers.
type RegistryConfig struct {
	Endpoints      []string      // etcd client URLs; none: discovery is off
	TTL            time.Duration // lease of a registration: how long a dead instance stays listed
	RequestTimeout time.Duration // bound of each etcd call, so a registry outage never blocks a caller
	ResyncInterval time.Duration // a full re-read of each watched prefix, besides the watch
	DialTimeout    time.Duration
	// DeregisterGrace is how long a stopping instance keeps serving after it deregistered, so its
	// callers' watches drop it before its listener closes (at most half of the drain time is spent).
	DeregisterGrace time.Duration
}

// DefaultRegistryConfig: go-kit's suggested 10s TTL (etcd's client refreshes the lease every TTL/3).
func DefaultRegistryConfig() RegistryConfig {
	return RegistryConfig{TTL: 10 * time.Second, RequestTimeout: 2 * time.Second,
		ResyncInterval: 30 * time.Second, DialTimeout: 2 * time.Second, DeregisterGrace: time.Second}
}

// Validate reports settings out of range. etcd grants leases in whole seconds.
func (c RegistryConfig) Validate() error {
	if c.TTL < time.Second || c.RequestTimeout <= 0 || c.ResyncInterval <= 0 || c.DialTimeout <= 0 || c.DeregisterGrace < 0 {
		return fmt.Errorf("registry: want ttl >= 1s, positive request timeout, resync interval and dial timeout, and deregister grace >= 0, got %+v", c)
	}
	return nil
}

// Client is go-kit's etcdv3.Client written on the etcd v3.7 client, so go-kit's etcdv3.Registrar and
// etcdv3.Instancer run on it unchanged. go-kit's own client (kit v0.13.0, built against client/v3
// v3.5.0) compiles and works with v3.7.3, but four of its behaviours break the lab's failure scenarios:
//
//   - its calls carry no deadline and the etcd client waits for a connection, so with the registry down
//     GetEntries blocks until it returns — NewInstancer, hence a client's start, hangs;
//   - when a lease is lost (the registry was away longer than the TTL, or came back empty) the keep-alive
//     ends and the instance is never registered again;
//   - a watch cancelled by the server (compaction) is never re-established;
//   - its etcd connection is never closed.
//
// This Client bounds every call by RequestTimeout, registers again whenever the lease is lost, re-opens
// cancelled watches and re-reads each prefix every ResyncInterval, and closes its connection in Close.
// One Client holds at most one registration (as go-kit's does). go-kit's TTLOption has no accessors,
// so the lease TTL is RegistryConfig.TTL, whatever the Service's TTL says.
type Client struct {
	cfg    RegistryConfig
	cli    *clientv3.Client
	logger *slog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu  sync.Mutex
	reg *registration
}

var _ etcdv3.Client = (*Client)(nil)

// NewClient connects lazily to cfg.Endpoints: it succeeds while the registry is down.
func NewClient(cfg RegistryConfig, logger *slog.Logger) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("registry: no endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// Detect a dead registry connection within seconds, not at the OS's TCP timeout.
		DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
		Logger: zap.NewNop(), // our own log lines say what matters: lost and renewed registrations
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg, cli: cli, logger: logger, ctx: ctx, cancel: cancel}, nil
}

// GetEntries returns the values of every key under prefix, within RequestTimeout.
func (c *Client) GetEntries(prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: read %s: %w", prefix, err)
	}
	values := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		values[i] = string(kv.Value)
	}
	return values, nil
}

// WatchPrefix signals ch once the watch is set up, on every change under prefix, and every
// ResyncInterval; it re-opens the watch when the server cancels it, and returns at Close.
//
// The resync ticks run apart from the watch: clientv3's Watch blocks until its stream opens, so while
// the registry is down a resync, whose read fails, is what tells the instancer the registry is
// unreachable. In the watch loop, a watch re-opened during an outage silenced it until the registry
// came back.
func (c *Client) WatchPrefix(prefix string, ch chan struct{}) {
	signal := func() bool {
		select {
		case ch <- struct{}{}:
			return true
		case <-c.ctx.Done():
			return false
		}
	}
	var resyncs sync.WaitGroup
	defer resyncs.Wait()
	resyncs.Go(func() {
		tick := time.NewTicker(c.cfg.ResyncInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if !signal() {
					return
				}
			case <-c.ctx.Done():
				return
			}
		}
	})
	for c.ctx.Err() == nil {
		wctx, stop := context.WithCancel(c.ctx)
		changes := c.cli.Watch(wctx, prefix, clientv3.WithPrefix())
		ok := signal() // the watch is (re)established: re-read what it may have missed
	watch:
		for ok {
			select {
			case resp, open := <-changes:
				if !open || resp.Canceled || resp.Err() != nil {
					break watch
				}
				ok = signal()
			case <-c.ctx.Done():
				ok = false
			}
		}
		stop()
		if !ok || !c.sleep(time.Second) {
			return
		}
	}
}

// Register registers s under a new lease kept alive in the background. It returns the first attempt's
// error, but keeps trying until Deregister or Close, and registers again whenever the lease is lost.
func (c *Client) Register(s etcdv3.Service) error {
	if s.Key == "" {
		return etcdv3.ErrNoKey
	}
	if s.Value == "" {
		return etcdv3.ErrNoValue
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg != nil {
		c.reg.stop()
	}
	ctx, cancel := context.WithCancel(c.ctx)
	r := &registration{c: c, key: s.Key, value: s.Value, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	c.reg = r
	keepAlive, err := r.attempt()
	go r.run(keepAlive)
	return err
}

// Deregister stops the registration of s and revokes its lease, which deletes the key at once.
func (c *Client) Deregister(s etcdv3.Service) error {
	if s.Key == "" {
		return etcdv3.ErrNoKey
	}
	c.mu.Lock()
	r := c.reg
	c.reg = nil
	c.mu.Unlock()
	if r == nil || r.key != s.Key {
		return fmt.Errorf("registry: %s is not registered by this client", s.Key)
	}
	r.stop()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
	defer cancel()
	if _, err := c.cli.Delete(ctx, s.Key); err != nil {
		return fmt.Errorf("registry: deregister %s (its lease still expires in %s): %w", s.Key, c.cfg.TTL, err)
	}
	if id := r.leaseID(); id != clientv3.NoLease {
		_, _ = c.cli.Revoke(ctx, id) // the key is gone; an unrevoked lease only expires
	}
	return nil
}

// LeaseID is the lease of the current registration (0: none).
func (c *Client) LeaseID() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg == nil {
		return 0
	}
	return int64(c.reg.leaseID())
}

// Close stops keeping the registration alive, without revoking it — to a registry, what a crash looks
// like: the key goes when its lease expires. Call Deregister first on a graceful shutdown. Close ends
// every WatchPrefix and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.reg != nil {
		c.reg.stop()
		c.reg = nil
	}
	c.mu.Unlock()
	c.cancel()
	return c.cli.Close()
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// registration keeps one key registered under a lease until stopped.
type registration struct {
	c          *Client
	key, value string
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{}

	mu    sync.Mutex
	lease clientv3.LeaseID
}

func (r *registration) leaseID() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// attempt grants a lease, writes the key under it and starts its keep-alive.
func (r *registration) attempt() (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	c := r.c
	ctx, cancel := context.WithTimeout(r.ctx, c.cfg.RequestTimeout)
	defer cancel()
	grant, err := c.cli.Grant(ctx, int64(c.cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("registry: grant a lease for %s: %w", r.key, err)
	}
	if _, err := c.cli.Put(ctx, r.key, r.value, clientv3.WithLease(grant.ID)); err != nil {
		return nil, fmt.Errorf("registry: write %s: %w", r.key, err)
	}
	keepAlive, err := c.cli.KeepAlive(r.ctx, grant.ID)
	if err != nil {
		return nil, fmt.Errorf("registry: keep %s alive: %w", r.key, err)
	}
	r.mu.Lock()
	r.lease = grant.ID
	r.mu.Unlock()
	return keepAlive, nil
}

// run drains the keep-alive; when it ends while the registration is wanted (the lease expired, or the
// registry came back without it), it registers again.
func (r *registration) run(keepAlive <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(r.done)
	for {
		if keepAlive != nil { // nil: the first attempt failed
			for range keepAlive {
			}
			if r.ctx.Err() != nil {
				return
			}
			r.c.logger.Warn("registration lost, registering again", "key", r.key)
		}
		if keepAlive = r.retry(); keepAlive == nil {
			return
		}
		r.c.logger.Info("registered", "key", r.key, "value", r.value, "lease", int64(r.leaseID()))
	}
}

// retry attempts until one succeeds, backing off from 250ms to 5s; nil when the registration stopped.
func (r *registration) retry() <-chan *clientv3.LeaseKeepAliveResponse {
	backoff := 250 * time.Millisecond
	for {
		keepAlive, err := r.attempt()
		if err == nil {
			return keepAlive
		}
		if r.ctx.Err() != nil {
			return nil
		}
		r.c.logger.Warn("registration failed", "key", r.key, "err", err.Error(), "retry_in", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (r *registration) stop() {
	r.cancel()
	<-r.done
}
