package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

// ErrNoInstances is returned when the balancer knows no instance that can serve the operation. It wraps
// go-kit's lb.ErrNoEndpoints, and policies count it as a failure.
var ErrNoInstances = fmt.Errorf("discovery: %w", lb.ErrNoEndpoints)

// EndpointSource makes the endpoint of one operation of a downstream from a go-kit factory that builds
// the operation's client endpoint for one instance URL. A Balancer spreads calls over the instances of
// one service version; canary.Router splits them between two Balancers. A typed client asks its source
// once per operation, when it is built.
type EndpointSource interface {
	Endpoint(op string, f sd.Factory) endpoint.Endpoint
}

// Strategy is how a Balancer picks among the instances in service.
type Strategy string

const (
	// RoundRobin takes the instances in turn.
	RoundRobin Strategy = "round_robin"
	// LeastRequest is the power of two choices: of two instances drawn at random, the one with fewer
	// calls in flight (Envoy's LEAST_REQUEST, Istio's default). A slow instance piles up calls in flight
	// and so gets fewer new ones, before outlier ejection has seen a single failure.
	LeastRequest Strategy = "least_request"
)

// OutlierConfig are the outlier ejection settings, with Envoy's semantics (Istio's outlierDetection):
// an instance whose calls fail ConsecutiveFailures times in a row is ejected — left out of the balancing
// — for BaseEjectionTime × the number of times it has been ejected, capped at MaxEjectionTime; the count
// drops by one for each Interval the instance then spends in service without being ejected. An
// ejection that would leave more than MaxEjectionPercent of the instances ejected does not happen.
type OutlierConfig struct {
	ConsecutiveFailures int // 0: ejection off
	Interval            time.Duration
	BaseEjectionTime    time.Duration
	MaxEjectionTime     time.Duration
	MaxEjectionPercent  int
}

// BalancerConfig are the settings of one Balancer.
type BalancerConfig struct {
	Strategy Strategy
	Outlier  OutlierConfig
	// Proxies maps a registered instance URL to the URL to dial instead — in the chaos lab, that
	// replica's own Toxiproxy listener for this link. Metrics and logs keep the registered URL.
	Proxies map[string]string
	// Seeds are the instances used until the instancer reports a set (e.g. the registry is down while
	// the client starts).
	Seeds []string
	// EmptySetGrace is how long an empty set from the registry is not believed while instances are known.
	// After an outage longer than the lease TTL every registration has expired: a caller's watch, back
	// first, reads the deletions before the instances, which learn it at their next keep-alive, register
	// again. Believed at once, that moment fails every call with ErrNoInstances. 0 believes it at once.
	EmptySetGrace time.Duration
	// Rand returns a uniform integer in [0, n); nil: math/rand/v2. Tests pin the power of two choices.
	Rand func(n int) int
}

// DefaultBalancerConfig is what a link gets with no variable set; docs/patterns/discovery.md says why.
func DefaultBalancerConfig() BalancerConfig {
	return BalancerConfig{
		Strategy: LeastRequest,
		Outlier: OutlierConfig{ConsecutiveFailures: 5, Interval: 10 * time.Second,
			BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 50},
		EmptySetGrace: 5 * time.Second,
	}
}

// Validate reports settings out of range.
func (c BalancerConfig) Validate() error {
	if c.Strategy != RoundRobin && c.Strategy != LeastRequest {
		return fmt.Errorf("balancer: strategy %q: want %s or %s", c.Strategy, RoundRobin, LeastRequest)
	}
	if c.EmptySetGrace < 0 {
		return fmt.Errorf("balancer: empty set grace %s: want >= 0", c.EmptySetGrace)
	}
	o := c.Outlier
	if o.ConsecutiveFailures < 0 || o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		return fmt.Errorf("outlier: want consecutive failures >= 0 and max ejection percent in [0, 100], got %d and %d",
			o.ConsecutiveFailures, o.MaxEjectionPercent)
	}
	if o.ConsecutiveFailures > 0 && (o.Interval <= 0 || o.BaseEjectionTime <= 0 || o.MaxEjectionTime < o.BaseEjectionTime) {
		return fmt.Errorf("outlier: want interval > 0 and 0 < base ejection time (%s) <= max ejection time (%s)",
			o.BaseEjectionTime, o.MaxEjectionTime)
	}
	for from, to := range c.Proxies {
		if _, err := platform.ParseBaseURL(from); err != nil {
			return fmt.Errorf("proxies: %w", err)
		}
		if _, err := platform.ParseBaseURL(to); err != nil {
			return fmt.Errorf("proxies: %w", err)
		}
	}
	return nil
}

// Balancer spreads the calls of a downstream's typed client over the instances an sd.Instancer reports,
// with outlier ejection, and sends an attempt of a call to an instance the call has not tried yet when
// there is one. It keeps the last set it had while the instancer reports errors (the registry is
// unreachable). One Balancer per downstream (service version), shared by all operations of its client:
// an instance's health is judged on all of its calls.
//
// It subscribes to the instancer itself rather than using go-kit's sd.DefaultEndpointer and lb
// balancers: those hand out anonymous endpoints, and ejection, per-instance metrics and "another
// instance on retry" all need to know which instance an endpoint calls.
type Balancer struct {
	cfg     BalancerConfig
	proxies map[string]string // by normalized registered URL
	po      policy.Options
	logger  *slog.Logger
	rand    func(int) int
	m       balancerMetrics

	hosts atomic.Pointer[[]*host] // the current set, sorted by instance; replaced, never changed

	mu         sync.Mutex // guards the maps, set changes and ejection decisions
	factories  map[string]sd.Factory
	byInstance map[string]*host

	emptyGrace *time.Timer // runs while an empty set from the registry waits out EmptySetGrace; b.mu
	emptyGen   uint64      // numbers the graces, so a late timer of an earlier one does nothing; b.mu

	rr        atomic.Uint64
	instancer sd.Instancer
	events    chan sd.Event
	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

var _ EndpointSource = (*Balancer)(nil)

// NewBalancer subscribes to src and applies the set it reports at once. o names the metric labels
// (service: the caller, downstream: the link) and gives the clock ejections are timed by; Close it when
// done.
func NewBalancer(src sd.Instancer, cfg BalancerConfig, o policy.Options, logger *slog.Logger) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Balancer{
		cfg: cfg, po: o.WithDefaults(), logger: logger, rand: cfg.Rand,
		factories: map[string]sd.Factory{}, byInstance: map[string]*host{},
		instancer: src, events: make(chan sd.Event, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	if b.rand == nil {
		b.rand = rand.IntN
	}
	b.proxies = make(map[string]string, len(cfg.Proxies))
	for from, to := range cfg.Proxies {
		b.proxies[normalizeURL(from)] = to
	}
	b.m = newBalancerMetrics(b.po)
	b.hosts.Store(&[]*host{})
	b.mu.Lock()
	b.setLocked(cfg.Seeds)
	b.mu.Unlock()
	// go-kit instancers send their current state on Register; taking it here, before the loop starts,
	// means the first call already sees the instances.
	src.Register(b.events)
	select {
	case ev := <-b.events:
		b.apply(ev)
	default:
	}
	go b.loop()
	return b, nil
}

func (b *Balancer) loop() {
	defer close(b.stopped)
	for {
		select {
		case ev := <-b.events:
			b.apply(ev)
		case <-b.stop:
			return
		}
	}
}

// apply takes a new instance set; an error keeps the last one (what go-kit's endpointer does by default).
func (b *Balancer) apply(ev sd.Event) {
	if ev.Err != nil {
		b.m.registryErrors.Inc()
		b.logger.Warn("registry unreachable, keeping the last instance set", "downstream", b.po.Downstream,
			"instances", len(*b.hosts.Load()), "err", ev.Err.Error())
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(ev.Instances) == 0 && len(*b.hosts.Load()) > 0 && b.cfg.EmptySetGrace > 0 {
		if b.emptyGrace == nil {
			b.m.emptySets.Inc()
			b.logger.Warn("registry lists no instance; keeping the last set unless it still lists none after the grace",
				"downstream", b.po.Downstream, "instances", len(*b.hosts.Load()), "grace", b.cfg.EmptySetGrace.String())
			b.emptyGen++
			gen := b.emptyGen
			b.emptyGrace = time.AfterFunc(b.cfg.EmptySetGrace, func() { b.emptyGraceOver(gen) })
		}
		return
	}
	b.stopEmptyGraceLocked()
	b.setLocked(ev.Instances)
}

// emptyGraceOver believes the empty set the registry still reports when grace number gen ends.
func (b *Balancer) emptyGraceOver(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.emptyGrace == nil || b.emptyGen != gen { // a set with instances arrived (maybe another empty one since), or the balancer closed
		return
	}
	b.emptyGrace = nil
	b.logger.Warn("registry still lists no instance after the grace; dropping the last set", "downstream", b.po.Downstream)
	b.setLocked(nil)
}

func (b *Balancer) stopEmptyGraceLocked() {
	if b.emptyGrace != nil {
		b.emptyGrace.Stop()
		b.emptyGrace = nil
	}
}

// Close unsubscribes from the instancer and releases every instance's endpoints.
func (b *Balancer) Close() {
	b.closeOnce.Do(func() {
		b.instancer.Deregister(b.events)
		close(b.stop)
		<-b.stopped
		b.mu.Lock()
		defer b.mu.Unlock()
		b.stopEmptyGraceLocked()
		b.setLocked(nil)
	})
}

// setLocked makes instances the current set: new instances get a host with endpoints for every operation
// known so far; instances gone are retired. b.mu is held.
func (b *Balancer) setLocked(instances []string) {
	instances = slices.Compact(slices.Sorted(slices.Values(instances)))
	next := make([]*host, 0, len(instances))
	keep := make(map[string]bool, len(instances))
	for _, inst := range instances {
		h, ok := b.byInstance[inst]
		if !ok {
			var err error
			if h, err = b.newHost(inst); err != nil {
				b.logger.Warn("instance ignored", "downstream", b.po.Downstream, "instance", inst, "err", err.Error())
				continue
			}
			b.byInstance[inst] = h
			b.logger.Info("instance added", "downstream", b.po.Downstream, "instance", inst, "target", h.target)
		}
		keep[inst] = true
		next = append(next, h)
	}
	for inst, h := range b.byInstance {
		if !keep[inst] {
			b.retireLocked(h)
			delete(b.byInstance, inst)
			b.logger.Info("instance removed", "downstream", b.po.Downstream, "instance", inst)
		}
	}
	b.hosts.Store(&next)
	b.m.instances.Set(float64(len(next)))
}

func (b *Balancer) newHost(instance string) (*host, error) {
	target := instance
	if p, ok := b.proxies[normalizeURL(instance)]; ok {
		target = p
	}
	if _, err := platform.ParseBaseURL(target); err != nil {
		return nil, err
	}
	h := &host{instance: instance, target: target, endpoints: map[string]endpoint.Endpoint{}}
	for o := range policy.Outcomes {
		h.requests[o] = b.m.requests.WithLabelValues(instance, policy.Outcomes[o].String())
	}
	for op, f := range b.factories {
		b.build(h, op, f)
	}
	return h, nil
}

func (b *Balancer) build(h *host, op string, f sd.Factory) {
	e, closer, err := f(h.target)
	if err != nil {
		b.logger.Warn("no endpoint for instance", "downstream", b.po.Downstream, "op", op, "instance", h.instance, "err", err.Error())
		return
	}
	h.mu.Lock()
	h.endpoints[op] = e
	if closer != nil {
		h.closers = append(h.closers, closer)
	}
	h.mu.Unlock()
}

func (b *Balancer) retireLocked(h *host) {
	if h.ejectedUntil.Swap(0) != 0 {
		b.m.ejected.Dec()
	}
	if h.returnTimer != nil {
		h.returnTimer.Stop()
	}
	h.mu.Lock()
	for _, c := range h.closers {
		_ = c.Close()
	}
	h.closers, h.endpoints = nil, map[string]endpoint.Endpoint{}
	h.mu.Unlock()
	for _, o := range policy.Outcomes {
		b.m.requests.DeleteLabelValues(h.instance, o.String())
	}
	b.m.ejections.DeleteLabelValues(h.instance)
}

// Endpoint returns the balanced endpoint of operation op: each call goes to one instance, through the
// endpoint f built for it. f gets the instance URL (or its proxy); URLFactory makes one from a
// platform.ClientEndpoint constructor.
func (b *Balancer) Endpoint(op string, f sd.Factory) endpoint.Endpoint {
	b.mu.Lock()
	b.factories[op] = f
	for _, h := range *b.hosts.Load() {
		b.build(h, op, f)
	}
	b.mu.Unlock()
	return func(ctx context.Context, request any) (any, error) {
		h, e := b.pick(ctx, op)
		if h == nil {
			return nil, ErrNoInstances
		}
		if s := scopeFrom(ctx); s != nil {
			s.add(h)
		}
		h.outstanding.Add(1)
		resp, err := e(ctx, request)
		h.outstanding.Add(-1)
		b.observe(h, Classify(ctx, err))
		return resp, err
	}
}

// pick chooses the instance of one attempt, in order of preference: in service and not yet tried by
// this call; in service; not yet tried; any. The last two are Envoy's panic routing: when every instance
// is ejected, calling one is better than failing every call.
func (b *Balancer) pick(ctx context.Context, op string) (*host, endpoint.Endpoint) {
	hosts := *b.hosts.Load()
	if len(hosts) == 0 {
		return nil, nil
	}
	s := scopeFrom(ctx)
	now := b.po.Clock.Now().UnixNano()
	// Each candidate's endpoint is read once, with the candidate: an instance removed meanwhile has its
	// endpoints cleared, and reading again after choosing returned nil for a host just retired.
	var hostBuf [16]*host
	var endpointBuf [16]endpoint.Endpoint
	for tier := 0; tier < 4; tier++ {
		candidates, endpoints := hostBuf[:0], endpointBuf[:0]
		for _, h := range hosts {
			if (tier%2 == 0 && s.has(h)) || (tier < 2 && h.ejected(now)) {
				continue
			}
			if e := h.endpoint(op); e != nil {
				candidates, endpoints = append(candidates, h), append(endpoints, e)
			}
		}
		if len(candidates) > 0 {
			i := b.choose(candidates)
			return candidates[i], endpoints[i]
		}
	}
	return nil, nil
}

// choose returns the index of the candidate to call: round robin, or the less loaded of two at random.
func (b *Balancer) choose(candidates []*host) int {
	n := len(candidates)
	if n == 1 {
		return 0
	}
	if b.cfg.Strategy == RoundRobin {
		return int((b.rr.Add(1) - 1) % uint64(n))
	}
	i, j := b.rand(n), b.rand(n-1)
	if j >= i {
		j++ // two distinct instances
	}
	if candidates[j].outstanding.Load() < candidates[i].outstanding.Load() {
		return j
	}
	return i
}

// Classify judges one attempt for the instance (or version) that served it: the lab's one rule,
// policy.Classify, against the caller's context (CallerContext), so that a per-attempt timeout is the
// instance's failure while the caller giving up is not; and an attempt our side cancelled — a hedge's
// losing copy — is cancelled, not failed.
func Classify(attemptCtx context.Context, err error) policy.Outcome {
	o := policy.Classify(CallerContext(attemptCtx), err)
	if o == policy.Failure && errors.Is(attemptCtx.Err(), context.Canceled) {
		return policy.Cancelled
	}
	return o
}

// observe records one attempt: a success or a business answer resets the instance's run of failures; a
// failure — transport error, 5xx, 408, 429, a per-attempt timeout — extends it, and may eject it.
func (b *Balancer) observe(h *host, o policy.Outcome) {
	h.requests[o].Inc()
	switch o {
	case policy.Success, policy.Business:
		h.failures.Store(0)
	case policy.Failure:
		n := b.cfg.Outlier.ConsecutiveFailures
		if n > 0 && int(h.failures.Add(1)) >= n {
			b.mu.Lock()
			b.ejectLocked(h)
			b.mu.Unlock()
		}
	}
}

// ejectLocked ejects h unless it is already out, retired, or the ejection would pass the max share.
func (b *Balancer) ejectLocked(h *host) {
	now := b.po.Clock.Now()
	if b.byInstance[h.instance] != h || h.ejected(now.UnixNano()) {
		return // a late answer from an instance already gone or ejected
	}
	h.failures.Store(0)
	hosts := *b.hosts.Load()
	ejected := 0
	for _, o := range hosts {
		if o.ejected(now.UnixNano()) {
			ejected++
		}
	}
	cfg := b.cfg.Outlier
	if (ejected+1)*100 > cfg.MaxEjectionPercent*len(hosts) {
		b.m.overflow.Inc()
		b.logger.Warn("instance not ejected: max ejection percent reached", "downstream", b.po.Downstream,
			"instance", h.instance, "ejected", ejected, "instances", len(hosts))
		return
	}
	if !h.returnedAt.IsZero() {
		h.timesEjected = max(0, h.timesEjected-int(now.Sub(h.returnedAt)/cfg.Interval))
	}
	h.timesEjected++
	d := cfg.MaxEjectionTime
	if h.timesEjected <= int(cfg.MaxEjectionTime/cfg.BaseEjectionTime) {
		d = cfg.BaseEjectionTime * time.Duration(h.timesEjected)
	}
	until := now.Add(d).UnixNano()
	h.ejectedUntil.Store(until)
	h.returnTimer = b.po.Clock.AfterFunc(d, func() { b.returnToService(h, until) })
	b.m.ejected.Inc()
	b.m.ejections.WithLabelValues(h.instance).Inc()
	b.logger.Warn("instance ejected", "downstream", b.po.Downstream, "instance", h.instance,
		"consecutive_failures", cfg.ConsecutiveFailures, "times_ejected", h.timesEjected, "for", d.String())
	b.po.Emit(policy.Event{Policy: "outlier", Kind: EventEjection, To: h.instance, Attempt: h.timesEjected, Delay: d})
}

func (b *Balancer) returnToService(h *host, until int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !h.ejectedUntil.CompareAndSwap(until, 0) {
		return // retired, or ejected again since
	}
	h.returnedAt = b.po.Clock.Now()
	b.m.ejected.Dec()
	b.logger.Info("instance back in service", "downstream", b.po.Downstream, "instance", h.instance)
	b.po.Emit(policy.Event{Policy: "outlier", Kind: EventReturn, To: h.instance})
}

// Event kinds of the balancer (policy "outlier"), for the chaos lab's timelines.
const (
	EventEjection policy.EventKind = "ejection"
	EventReturn   policy.EventKind = "return_to_service"
)

// host is one instance of the downstream.
type host struct {
	instance string // as registered: the metric label
	target   string // what the factories dial: the instance or its proxy

	outstanding  atomic.Int64
	failures     atomic.Int32 // consecutive
	ejectedUntil atomic.Int64 // unix nanos; 0: in service
	requests     [len(policy.Outcomes)]prometheus.Counter

	// guarded by Balancer.mu
	timesEjected int
	returnedAt   time.Time
	returnTimer  clock.Timer

	mu        sync.RWMutex
	endpoints map[string]endpoint.Endpoint
	closers   []io.Closer
}

func (h *host) ejected(now int64) bool {
	until := h.ejectedUntil.Load()
	return until != 0 && now < until
}

func (h *host) endpoint(op string) endpoint.Endpoint {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.endpoints[op]
}

// normalizeURL makes http://h:1 and http://h:1/ one key.
func normalizeURL(raw string) string {
	if u, err := platform.ParseBaseURL(raw); err == nil {
		return u.String()
	}
	return raw
}

// URLFactory adapts a constructor of one operation's client endpoint for a base URL — a closure over
// platform.ClientEndpoint — to a go-kit factory for the Balancer.
func URLFactory(build func(base *url.URL) endpoint.Endpoint) sd.Factory {
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		base, err := platform.ParseBaseURL(instance)
		if err != nil {
			return nil, nil, err
		}
		return build(base), nil, nil
	}
}

// InstanceSnapshot is one instance's live state, as /debug/discovery serves it.
type InstanceSnapshot struct {
	Instance            string     `json:"instance"`
	Target              string     `json:"target"`
	InFlight            int64      `json:"in_flight"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	TimesEjected        int        `json:"times_ejected"`
	EjectedUntil        *time.Time `json:"ejected_until"` // null: in service
}

// BalancerSnapshot is a balancer's settings and live state.
type BalancerSnapshot struct {
	Service             string             `json:"service"`
	Downstream          string             `json:"downstream"`
	Strategy            Strategy           `json:"strategy"`
	ConsecutiveFailures int                `json:"consecutive_failures"`
	BaseEjectionTime    string             `json:"base_ejection_time"`
	MaxEjectionTime     string             `json:"max_ejection_time"`
	MaxEjectionPercent  int                `json:"max_ejection_percent"`
	Instances           []InstanceSnapshot `json:"instances"`
}

// Snapshot returns the balancer's settings and each instance's state.
func (b *Balancer) Snapshot() BalancerSnapshot {
	o := b.cfg.Outlier
	s := BalancerSnapshot{Service: b.po.Service, Downstream: b.po.Downstream, Strategy: b.cfg.Strategy,
		ConsecutiveFailures: o.ConsecutiveFailures, BaseEjectionTime: o.BaseEjectionTime.String(),
		MaxEjectionTime: o.MaxEjectionTime.String(), MaxEjectionPercent: o.MaxEjectionPercent,
		Instances: []InstanceSnapshot{}}
	now := b.po.Clock.Now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range *b.hosts.Load() {
		is := InstanceSnapshot{Instance: h.instance, Target: h.target, InFlight: h.outstanding.Load(),
			ConsecutiveFailures: int(h.failures.Load()), TimesEjected: h.timesEjected}
		if h.ejected(now) {
			t := time.Unix(0, h.ejectedUntil.Load()).UTC()
			is.EjectedUntil = &t
		}
		s.Instances = append(s.Instances, is)
	}
	return s
}
