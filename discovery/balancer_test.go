package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience"
	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

type balancerOpts struct {
	cfg   BalancerConfig
	clock clock.Clock
	reg   *prometheus.Registry
	hook  policy.Hook
}

func newTestBalancer(t *testing.T, src sd.Instancer, o balancerOpts) *Balancer {
	t.Helper()
	if o.reg == nil {
		o.reg = prometheus.NewRegistry()
	}
	b, err := NewBalancer(src, o.cfg, policy.Options{Clock: o.clock, Registerer: o.reg, Service: "orders",
		Downstream: "orders-catalog", Hook: o.hook}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func roundRobin() BalancerConfig {
	c := DefaultBalancerConfig()
	c.Strategy = RoundRobin
	return c
}

// pinnedLeastRequest draws the first two candidates every time, so the choice is decided by in-flight
// counts alone (ties go to the first).
func pinnedLeastRequest() BalancerConfig {
	c := DefaultBalancerConfig()
	c.Strategy = LeastRequest
	c.Rand = func(int) int { return 0 }
	return c
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	a, b, c := newReplica(t, "a"), newReplica(t, "b"), newReplica(t, "c")
	bal := newTestBalancer(t, newTestInstancer(a.url(), b.url(), c.url()), balancerOpts{cfg: roundRobin()})
	e := bal.Endpoint("whoami", whoamiFactory(nil))
	for i := 0; i < 30; i++ {
		if _, err := call(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*replica{a, b, c} {
		if got := r.hits.Load(); got != 10 {
			t.Errorf("%s got %d of 30 calls, want 10", r.name, got)
		}
	}
}

func TestLeastRequestAvoidsTheInstanceWithCallsInFlight(t *testing.T) {
	slow, fast := replicasInOrder(t)
	slow.hang.Store(true)
	bal := newTestBalancer(t, newTestInstancer(slow.url(), fast.url()), balancerOpts{cfg: pinnedLeastRequest()})
	e := bal.Endpoint("whoami", whoamiFactory(nil))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := call(ctx, e); done <- err }()
	eventually(t, 10*time.Second, "the first call reaches the slow replica", func() bool { return slow.hits.Load() == 1 })
	for i := 0; i < 10; i++ {
		name, err := call(context.Background(), e)
		if err != nil || name != fast.name {
			t.Fatalf("call %d: %q, %v; want the replica with nothing in flight", i, name, err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("hung call: %v", err)
	}
	// The cancelled call is the caller's doing: it says nothing about the slow replica.
	if got := testutil.ToFloat64(bal.m.requests.WithLabelValues(slow.url(), "cancelled")); got != 1 {
		t.Errorf("slow replica's cancelled attempts = %v, want 1", got)
	}
	if got := testutil.ToFloat64(bal.m.requests.WithLabelValues(slow.url(), "failure")); got != 0 {
		t.Errorf("slow replica's failures = %v, want 0", got)
	}
}

func TestOutlierEjectionGrowsAndDecays(t *testing.T) {
	a, b, c := newReplica(t, "a"), newReplica(t, "b"), newReplica(t, "c")
	b.status.Store(http.StatusInternalServerError)
	fake := clock.NewFake(time.Now())
	var events []policy.Event
	cfg := roundRobin()
	cfg.Outlier = OutlierConfig{ConsecutiveFailures: 3, Interval: 10 * time.Second,
		BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 50}
	bal := newTestBalancer(t, newTestInstancer(a.url(), b.url(), c.url()), balancerOpts{cfg: cfg, clock: fake,
		hook: func(e policy.Event) { events = append(events, e) }})
	e := bal.Endpoint("whoami", whoamiFactory(nil))

	// callUntilEjected calls until b is ejected and returns how long for.
	callUntilEjected := func() time.Duration {
		t.Helper()
		for i := 0; i < 100; i++ {
			name, err := call(context.Background(), e)
			if pe, ok := platform.AsError(err); (err != nil && (!ok || pe.Status != 500)) || name == "b" {
				t.Fatalf("call %d: %q, %v; want a or c, or b's 500", i, name, err)
			}
			if until := ejectedUntil(bal, b.url()); until != nil {
				return until.Sub(fake.Now())
			}
		}
		t.Fatal("b never ejected")
		return 0
	}
	assertNoTraffic := func(what string) {
		t.Helper()
		before := b.hits.Load()
		for i := 0; i < 20; i++ {
			if name, err := call(context.Background(), e); err != nil || name == "b" {
				t.Fatalf("%s: call went to %q (%v)", what, name, err)
			}
		}
		if b.hits.Load() != before {
			t.Fatalf("%s: the ejected replica got calls", what)
		}
	}

	if d := callUntilEjected(); d != 30*time.Second {
		t.Fatalf("first ejection for %s, want base 30s", d)
	}
	if b.hits.Load() != 3 {
		t.Fatalf("b ejected after %d failures, want 3", b.hits.Load())
	}
	assertNoTraffic("first ejection")
	fake.Advance(30 * time.Second)
	if ejectedUntil(bal, b.url()) != nil {
		t.Fatal("b still ejected after its 30s")
	}
	if d := callUntilEjected(); d != 60*time.Second {
		t.Fatalf("second ejection for %s, want 2 × base", d)
	}
	fake.Advance(30 * time.Second)
	assertNoTraffic("second ejection, half-way")
	fake.Advance(30 * time.Second)
	// Two intervals in service take the ejection count from 2 back to 0: the next ejection is base again.
	fake.Advance(20 * time.Second)
	if d := callUntilEjected(); d != 30*time.Second {
		t.Fatalf("ejection after 2 healthy intervals for %s, want base 30s", d)
	}
	if got := testutil.ToFloat64(bal.m.ejections.WithLabelValues(b.url())); got != 3 {
		t.Errorf("discovery_ejections_total{b} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(bal.m.ejected); got != 1 {
		t.Errorf("discovery_instances_ejected = %v, want 1", got)
	}
	if got := testutil.ToFloat64(bal.m.requests.WithLabelValues(b.url(), "failure")); got != 9 {
		t.Errorf("b's failures = %v, want 9 (3 per ejection)", got)
	}
	var kinds []string
	for _, ev := range events {
		kinds = append(kinds, string(ev.Kind))
	}
	if want := "ejection return_to_service ejection return_to_service ejection"; strings.Join(kinds, " ") != want {
		t.Errorf("events %v, want %s", kinds, want)
	}
}

func ejectedUntil(b *Balancer, instance string) *time.Time {
	for _, s := range b.Snapshot().Instances {
		if s.Instance == instance {
			return s.EjectedUntil
		}
	}
	return nil
}

func TestMaxEjectionPercent(t *testing.T) {
	a, b, c := newReplica(t, "a"), newReplica(t, "b"), newReplica(t, "c")
	b.status.Store(http.StatusServiceUnavailable)
	c.status.Store(http.StatusServiceUnavailable)
	cfg := roundRobin()
	cfg.Outlier.ConsecutiveFailures = 2
	cfg.Outlier.MaxEjectionPercent = 50 // of 3 instances: one may be out, not two
	bal := newTestBalancer(t, newTestInstancer(a.url(), b.url(), c.url()), balancerOpts{cfg: cfg, clock: clock.NewFake(time.Now())})
	e := bal.Endpoint("whoami", whoamiFactory(nil))
	for i := 0; i < 30; i++ {
		_, _ = call(context.Background(), e)
	}
	if got := testutil.ToFloat64(bal.m.ejected); got != 1 {
		t.Fatalf("ejected = %v, want 1 (50%% of 3)", got)
	}
	if got := testutil.ToFloat64(bal.m.overflow); got < 1 {
		t.Fatalf("overflow = %v, want the refused ejection counted", got)
	}
}

func TestEveryInstanceEjectedStillGetsCalls(t *testing.T) {
	only := newReplica(t, "only")
	only.status.Store(http.StatusInternalServerError)
	cfg := roundRobin()
	cfg.Outlier.ConsecutiveFailures = 1
	cfg.Outlier.MaxEjectionPercent = 100
	bal := newTestBalancer(t, newTestInstancer(only.url()), balancerOpts{cfg: cfg, clock: clock.NewFake(time.Now())})
	e := bal.Endpoint("whoami", whoamiFactory(nil))
	_, _ = call(context.Background(), e)
	if ejectedUntil(bal, only.url()) == nil {
		t.Fatal("not ejected")
	}
	only.status.Store(http.StatusOK)
	// Panic routing: the ejected instance is called rather than failing every call.
	if name, err := call(context.Background(), e); err != nil || name != "only" {
		t.Fatalf("%q, %v; want the ejected instance to be called", name, err)
	}
}

// linkConfig is a link with retries and no breaker (the tests are about where attempts go).
func linkConfig(timeout time.Duration) resilience.LinkConfig {
	c := resilience.DefaultLinkConfig()
	c.Breaker.Backend = resilience.BreakerOff
	c.Retry.BaseDelay, c.Retry.MaxDelay = 0, 0
	c.Timeout = timeout
	return c
}

func TestRetryGoesToAnotherInstance(t *testing.T) {
	for _, tc := range []struct {
		name         string
		scoped       bool
		wantFailures bool
	}{
		{"scoped: retry avoids the failed instance", true, false},
		{"unscoped: every attempt may hit the same instance", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, good := replicasInOrder(t)
			bad.status.Store(http.StatusServiceUnavailable)
			cfg := pinnedLeastRequest()
			cfg.Outlier.ConsecutiveFailures = 0 // where retries go, not ejection
			bal := newTestBalancer(t, newTestInstancer(bad.url(), good.url()), balancerOpts{cfg: cfg})
			link, err := resilience.NewLink("orders-catalog", linkConfig(time.Second), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer link.Close()
			policies := link.Policies()
			if tc.scoped {
				policies = Policies(policies)
			}
			e := policies("whoami", true)(bal.Endpoint("whoami", whoamiFactory(nil)))
			failures := 0
			for i := 0; i < 10; i++ {
				if _, err := call(context.Background(), e); err != nil {
					failures++
				}
			}
			if tc.wantFailures {
				if failures != 10 || bad.hits.Load() != 30 || good.hits.Load() != 0 {
					t.Fatalf("failures %d, bad %d, good %d; want 10, 30 (3 attempts each), 0", failures, bad.hits.Load(), good.hits.Load())
				}
				return
			}
			if failures != 0 || bad.hits.Load() != 10 || good.hits.Load() != 10 {
				t.Fatalf("failures %d, bad %d, good %d; want 0, 10 (first attempts), 10 (retries)", failures, bad.hits.Load(), good.hits.Load())
			}
		})
	}
}

func TestPerAttemptTimeoutCountsAgainstTheInstance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scoped  bool
		outcome string
	}{
		{"scoped: the attempt's timeout is the instance's failure", true, "failure"},
		{"unscoped: indistinguishable from the caller giving up", false, "cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slow, good := replicasInOrder(t)
			slow.hang.Store(true)
			cfg := pinnedLeastRequest()
			cfg.Outlier.ConsecutiveFailures = 0
			bal := newTestBalancer(t, newTestInstancer(slow.url(), good.url()), balancerOpts{cfg: cfg})
			link, err := resilience.NewLink("orders-catalog", linkConfig(100*time.Millisecond), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer link.Close()
			policies := link.Policies()
			if tc.scoped {
				policies = Policies(policies)
			}
			e := policies("whoami", true)(bal.Endpoint("whoami", whoamiFactory(nil)))
			_, _ = call(context.Background(), e)
			if got := testutil.ToFloat64(bal.m.requests.WithLabelValues(slow.url(), tc.outcome)); got < 1 {
				t.Fatalf("slow replica's %s attempts = %v, want >= 1", tc.outcome, got)
			}
		})
	}
}

func TestRegistryErrorKeepsTheLastSet(t *testing.T) {
	a, b := newReplica(t, "a"), newReplica(t, "b")
	src := newTestInstancer(a.url(), b.url())
	bal := newTestBalancer(t, src, balancerOpts{cfg: roundRobin()})
	e := bal.Endpoint("whoami", whoamiFactory(nil))
	src.Update(sd.Event{Err: errors.New("registry: context deadline exceeded")})
	eventually(t, 10*time.Second, "the error is seen", func() bool { return testutil.ToFloat64(bal.m.registryErrors) == 1 })
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		name, err := call(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		seen[name] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("calls reached %v; want both cached instances", seen)
	}
	src.Update(sd.Event{Instances: []string{a.url()}})
	eventually(t, 10*time.Second, "the new set is applied", func() bool { return instanceCount(bal) == 1 })
}

func TestSeedsServeUntilTheRegistryAnswers(t *testing.T) {
	a, b := newReplica(t, "a"), newReplica(t, "b")
	src := &testInstancer{state: sd.Event{Err: errors.New("registry down")}, subs: map[chan<- sd.Event]bool{}}
	cfg := roundRobin()
	cfg.Seeds = []string{a.url()}
	bal := newTestBalancer(t, src, balancerOpts{cfg: cfg})
	e := bal.Endpoint("whoami", whoamiFactory(nil))
	if name, err := call(context.Background(), e); err != nil || name != "a" {
		t.Fatalf("%q, %v; want the seed", name, err)
	}
	src.Update(sd.Event{Instances: []string{b.url()}})
	eventually(t, 10*time.Second, "the registry's set replaces the seeds", func() bool {
		name, err := call(context.Background(), e)
		return err == nil && name == "b"
	})
}

func TestRemovedInstanceIsClosedAndForgotten(t *testing.T) {
	a, b := newReplica(t, "a"), newReplica(t, "b")
	src := newTestInstancer(a.url(), b.url())
	reg := prometheus.NewRegistry()
	bal := newTestBalancer(t, src, balancerOpts{cfg: roundRobin(), reg: reg})
	var closed atomic.Int32
	e := bal.Endpoint("whoami", whoamiFactory(&closed))
	for i := 0; i < 4; i++ {
		_, _ = call(context.Background(), e)
	}
	src.Update(sd.Event{Instances: []string{a.url()}})
	eventually(t, 10*time.Second, "b removed", func() bool { return instanceCount(bal) == 1 })
	if closed.Load() != 1 {
		t.Fatalf("closers called %d times, want 1 (b's endpoint)", closed.Load())
	}
	before := b.hits.Load()
	for i := 0; i < 4; i++ {
		if name, err := call(context.Background(), e); err != nil || name != "a" {
			t.Fatalf("%q, %v", name, err)
		}
	}
	if b.hits.Load() != before {
		t.Fatal("a removed instance got calls")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "instance" && l.GetValue() == b.url() {
					t.Fatalf("%s still has a series for the removed instance", f.GetName())
				}
			}
		}
	}
}

func TestProxiesDialAnotherAddress(t *testing.T) {
	proxy := newReplica(t, "via-proxy")
	const registered = "http://catalog-1:8081"
	cfg := roundRobin()
	cfg.Proxies = map[string]string{registered + "/": proxy.url()} // the trailing slash does not matter
	bal := newTestBalancer(t, newTestInstancer(registered), balancerOpts{cfg: cfg})
	e := bal.Endpoint("whoami", whoamiFactory(nil))
	if name, err := call(context.Background(), e); err != nil || name != "via-proxy" {
		t.Fatalf("%q, %v", name, err)
	}
	if got := testutil.ToFloat64(bal.m.requests.WithLabelValues(registered, "success")); got != 1 {
		t.Fatalf("requests{instance=%s} = %v; metrics keep the registered URL", registered, got)
	}
}

func TestNoInstances(t *testing.T) {
	bal := newTestBalancer(t, newTestInstancer(), balancerOpts{cfg: roundRobin()})
	_, err := call(context.Background(), bal.Endpoint("whoami", whoamiFactory(nil)))
	if !errors.Is(err, ErrNoInstances) || !errors.Is(err, lb.ErrNoEndpoints) {
		t.Fatalf("%v; want ErrNoInstances wrapping lb.ErrNoEndpoints", err)
	}
	if policy.Classify(context.Background(), err) != policy.Failure {
		t.Fatal("no instance must count as a failure for the policies")
	}
}

func TestBadInstancesAreIgnored(t *testing.T) {
	a := newReplica(t, "a")
	bal := newTestBalancer(t, newTestInstancer("not a url", "ftp://x:1", a.url()), balancerOpts{cfg: roundRobin()})
	if got := instanceCount(bal); got != 1 {
		t.Fatalf("%d instances, want only the valid one", got)
	}
	if name, err := call(context.Background(), bal.Endpoint("whoami", whoamiFactory(nil))); err != nil || name != "a" {
		t.Fatalf("%q, %v", name, err)
	}
}

func TestBalancerConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*BalancerConfig)
		ok     bool
	}{
		{"default", func(*BalancerConfig) {}, true},
		{"ejection off ignores times", func(c *BalancerConfig) { c.Outlier = OutlierConfig{} }, true},
		{"unknown strategy", func(c *BalancerConfig) { c.Strategy = "random" }, false},
		{"negative failures", func(c *BalancerConfig) { c.Outlier.ConsecutiveFailures = -1 }, false},
		{"percent over 100", func(c *BalancerConfig) { c.Outlier.MaxEjectionPercent = 101 }, false},
		{"max below base", func(c *BalancerConfig) { c.Outlier.MaxEjectionTime = time.Second }, false},
		{"zero interval", func(c *BalancerConfig) { c.Outlier.Interval = 0 }, false},
		{"bad proxy", func(c *BalancerConfig) { c.Proxies = map[string]string{"http://a:1": "a:1"} }, false},
		{"negative empty set grace", func(c *BalancerConfig) { c.EmptySetGrace = -time.Second }, false},
	} {
		c := DefaultBalancerConfig()
		tc.modify(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestDebugHandler(t *testing.T) {
	a := newReplica(t, "a")
	bal := newTestBalancer(t, newTestInstancer(a.url()), balancerOpts{cfg: roundRobin()})
	rec := httptest.NewRecorder()
	DebugHandler(bal).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/discovery", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"downstream":"orders-catalog"`) ||
		!strings.Contains(rec.Body.String(), a.url()) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestMetricsArePromlintClean(t *testing.T) {
	a := newReplica(t, "a")
	a.status.Store(http.StatusInternalServerError)
	reg := prometheus.NewRegistry()
	cfg := roundRobin()
	cfg.Outlier.ConsecutiveFailures, cfg.Outlier.MaxEjectionPercent = 1, 100
	bal := newTestBalancer(t, newTestInstancer(a.url()), balancerOpts{cfg: cfg, reg: reg, clock: clock.NewFake(time.Now())})
	_, _ = call(context.Background(), bal.Endpoint("whoami", whoamiFactory(nil)))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("promlint: %+v", problems)
	}
	if n := testutil.CollectAndCount(bal.m.ejections); n != 1 {
		t.Fatalf("%d ejection series, want 1", n)
	}
}

func TestClassify(t *testing.T) {
	caller := context.Background()
	scoped := func(attempt context.Context) context.Context {
		var inner context.Context
		_, _ = Scope(func(ctx context.Context, _ any) (any, error) { inner = ctx; return nil, nil })(caller, nil)
		// The attempt context derives from the scoped one, as a timeout or hedge policy's does.
		return mergeValues(attempt, inner)
	}
	timedOut, cancel1 := context.WithTimeout(context.Background(), 0)
	defer cancel1()
	hedgeLoser, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want policy.Outcome
	}{
		{"success", scoped(caller), nil, policy.Success},
		{"business", scoped(caller), platform.NotFound("x"), policy.Business},
		{"5xx", scoped(caller), platform.Errorf(503, "u", "x"), policy.Failure},
		{"per-attempt timeout", scoped(timedOut), context.DeadlineExceeded, policy.Failure},
		{"attempt cancelled by our side (hedge loser)", scoped(hedgeLoser), context.Canceled, policy.Cancelled},
		{"no scope: the attempt's own deadline looks like the caller's", timedOut, context.DeadlineExceeded, policy.Cancelled},
	} {
		if got := Classify(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// mergeValues is attempt with the scope value of scoped.
func mergeValues(attempt, scoped context.Context) context.Context {
	return context.WithValue(attempt, scopeKey{}, scopeFrom(scoped))
}

func TestHedgeGoesToAnotherInstanceAndItsLoserIsNotAFailure(t *testing.T) {
	slow, fast := replicasInOrder(t)
	slow.hang.Store(true)
	cfg := pinnedLeastRequest()
	bal := newTestBalancer(t, newTestInstancer(slow.url(), fast.url()), balancerOpts{cfg: cfg})
	lc := linkConfig(5 * time.Second)
	lc.HedgeDelay = 20 * time.Millisecond
	link, err := resilience.NewLink("orders-catalog", lc, prometheus.NewRegistry(), resilience.WithHedgedOps("whoami"))
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	e := Policies(link.Policies())("whoami", true)(bal.Endpoint("whoami", whoamiFactory(nil)))
	for i := 1; i <= 3; i++ {
		if name, err := call(context.Background(), e); err != nil || name != fast.name {
			t.Fatalf("call %d: %q, %v; want the hedge's answer from the other instance", i, name, err)
		}
		// The losing copy ends, so the next call's first attempt again goes to the slow instance.
		eventually(t, 10*time.Second, "the losing copy ends", func() bool {
			return testutil.ToFloat64(bal.m.requests.WithLabelValues(slow.url(), "cancelled")) == float64(i)
		})
	}
	if slow.hits.Load() != 3 || fast.hits.Load() != 3 {
		t.Fatalf("slow %d, fast %d attempts; want 3 first attempts and 3 hedges", slow.hits.Load(), fast.hits.Load())
	}
	if got := testutil.ToFloat64(bal.m.requests.WithLabelValues(slow.url(), "failure")); got != 0 {
		t.Fatalf("the slow instance's failures = %v; a hedge's losing copy is not a failure", got)
	}
}

// Calls racing a changing instance set never reach a removed instance's cleared endpoints: each call
// gets an endpoint or ErrNoInstances (a call once got the nil endpoint of an instance retired between
// the pick and the call, and panicked — found by CI in TestSeedsServeUntilTheRegistryAnswers).
func TestCallsRacingInstanceChangesNeverGetANilEndpoint(t *testing.T) {
	src := newTestInstancer("http://a:1")
	bal := newTestBalancer(t, src, balancerOpts{cfg: roundRobin()})
	echo := func(instance string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return instance, nil }, nil, nil
	}
	e := bal.Endpoint("echo", echo)
	stop := make(chan struct{})
	var calls, panics atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				func() {
					defer func() {
						if recover() != nil {
							panics.Add(1)
						}
					}()
					if _, err := e(context.Background(), nil); err != nil && !errors.Is(err, ErrNoInstances) {
						t.Errorf("call: %v", err)
					}
					calls.Add(1)
				}()
			}
		})
	}
	for i := range 2000 {
		src.Update(sd.Event{Instances: []string{fmt.Sprintf("http://i%d:1", i%3)}})
	}
	close(stop)
	wg.Wait()
	if n := panics.Load(); n != 0 {
		t.Fatalf("%d of %d calls panicked on an instance removed under them", n, calls.Load())
	}
	t.Logf("%d calls across 2000 instance changes", calls.Load())
}

// After a registry outage longer than the lease TTL, a caller's watch reads every instance deleted before
// the instances register again. The balancer keeps its set through that moment (no call fails), takes a
// set with instances at once, and believes an empty set that outlasts the grace.
func TestAnEmptySetIsBelievedOnlyAfterTheGrace(t *testing.T) {
	a, b := newReplica(t, "a"), newReplica(t, "b")
	src := newTestInstancer(a.url(), b.url())
	cfg := roundRobin()
	cfg.EmptySetGrace = 300 * time.Millisecond
	bal := newTestBalancer(t, src, balancerOpts{cfg: cfg})
	e := bal.Endpoint("whoami", whoamiFactory(nil))

	src.Update(sd.Event{Instances: []string{}})
	eventually(t, 10*time.Second, "the empty set is seen", func() bool { return testutil.ToFloat64(bal.m.emptySets) == 1 })
	for range 4 {
		if _, err := call(context.Background(), e); err != nil {
			t.Fatalf("a call during the grace failed: %v", err)
		}
	}
	src.Update(sd.Event{Instances: []string{b.url()}}) // b registered again; a not yet
	eventually(t, 10*time.Second, "the set with an instance is applied", func() bool { return instanceCount(bal) == 1 })
	time.Sleep(2 * cfg.EmptySetGrace) // the first grace's end must not drop the new set
	if name, err := call(context.Background(), e); err != nil || name != "b" {
		t.Fatalf("%q, %v; want b", name, err)
	}

	src.Update(sd.Event{Instances: []string{}})
	began := time.Now()
	eventually(t, 10*time.Second, "an empty set that lasts is believed", func() bool { return instanceCount(bal) == 0 })
	if took := time.Since(began); took < cfg.EmptySetGrace-50*time.Millisecond {
		t.Fatalf("the empty set was applied after %s, before the %s grace", took, cfg.EmptySetGrace)
	}
	if _, err := call(context.Background(), e); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("%v; want ErrNoInstances once the registry's empty set is believed", err)
	}
	if got := testutil.ToFloat64(bal.m.emptySets); got != 2 {
		t.Fatalf("empty sets counted %v, want 2", got)
	}

	// With no grace the empty set is believed at once.
	src2 := newTestInstancer(a.url())
	cfg.EmptySetGrace = 0
	bal2 := newTestBalancer(t, src2, balancerOpts{cfg: cfg})
	src2.Update(sd.Event{Instances: []string{}})
	eventually(t, 10*time.Second, "the empty set is applied at once", func() bool { return instanceCount(bal2) == 0 })
}
