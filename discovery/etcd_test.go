package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/go-kit/kit/sd/etcdv3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilience-lab/lab/discovery/etcdtest"
)

// These tests run against a real etcd member embedded in the test process.

func newRegistryClient(t *testing.T, srv *etcdtest.Server, ttl time.Duration) *Client {
	t.Helper()
	cfg := DefaultRegistryConfig()
	cfg.Endpoints, cfg.TTL = srv.Endpoints(), ttl
	// Short bounds, so an outage shows within a second (the defaults are for production).
	cfg.RequestTimeout, cfg.ResyncInterval, cfg.DialTimeout = 500*time.Millisecond, 200*time.Millisecond, time.Second
	c, err := NewClient(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// register registers r as an instance of catalog v1 with its own client (one registration per process).
func register(t *testing.T, srv *etcdtest.Server, r *replica, ttl time.Duration) (*Client, *etcdv3.Registrar) {
	t.Helper()
	c := newRegistryClient(t, srv, ttl)
	reg, err := NewRegistrar(c, Instance{Service: "catalog", Version: "v1", ID: r.name, URL: r.url()}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	reg.Register()
	return c, reg
}

// watch returns a round-robin balancer over catalog v1 as a caller sees it through the registry.
func watch(t *testing.T, srv *etcdtest.Server) *Balancer {
	t.Helper()
	c := newRegistryClient(t, srv, 10*time.Second)
	inst, err := NewInstancer(c, "catalog", "v1", discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Stop)
	return newTestBalancer(t, inst, balancerOpts{cfg: roundRobin()})
}

func reached(t *testing.T, b *Balancer, calls int) map[string]int {
	t.Helper()
	e := b.Endpoint("whoami", whoamiFactory(nil))
	seen := map[string]int{}
	for i := 0; i < calls; i++ {
		name, err := call(context.Background(), e)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		seen[name]++
	}
	return seen
}

func TestRegisterDiscoverDeregister(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newReplica(t, "a"), newReplica(t, "b")
	register(t, srv, a, 10*time.Second)
	_, regB := register(t, srv, b, 10*time.Second)
	bal := watch(t, srv)
	eventually(t, 30*time.Second, "both instances discovered", func() bool { return instanceCount(bal) == 2 })
	if seen := reached(t, bal, 10); seen["a"] != 5 || seen["b"] != 5 {
		t.Fatalf("calls reached %v, want 5 each", seen)
	}

	start := time.Now()
	regB.Deregister()
	eventually(t, 30*time.Second, "the deregistered instance dropped", func() bool { return instanceCount(bal) == 1 })
	t.Logf("deregistered instance out of the balancer after %s", time.Since(start))
	if seen := reached(t, bal, 10); seen["a"] != 10 {
		t.Fatalf("calls reached %v, want only a", seen)
	}
}

func TestDeadInstanceDisappearsWhenItsLeaseExpires(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newReplica(t, "a"), newReplica(t, "b")
	register(t, srv, a, 10*time.Second)
	clientB, _ := register(t, srv, b, time.Second) // the shortest lease etcd grants
	bal := watch(t, srv)
	eventually(t, 30*time.Second, "both instances discovered", func() bool { return instanceCount(bal) == 2 })

	start := time.Now()
	if err := clientB.Close(); err != nil { // b crashes: no deregistration, its keep-alive stops
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the dead instance dropped when its lease expired", func() bool { return instanceCount(bal) == 1 })
	t.Logf("dead instance (TTL 1s) out of the balancer after %s", time.Since(start))
	if seen := reached(t, bal, 4); seen["a"] != 4 {
		t.Fatalf("calls reached %v, want only a", seen)
	}
}

func TestRegistryOutageKeepsTheCachedSet(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b, c := newReplica(t, "a"), newReplica(t, "b"), newReplica(t, "c")
	register(t, srv, a, 5*time.Second)
	register(t, srv, b, 5*time.Second)
	bal := watch(t, srv)
	eventually(t, 30*time.Second, "both instances discovered", func() bool { return instanceCount(bal) == 2 })

	srv.Stop()
	eventually(t, 90*time.Second, "the instancer reports the registry unreachable", func() bool {
		return testutil.ToFloat64(bal.m.registryErrors) >= 1
	})
	if seen := reached(t, bal, 20); seen["a"] != 10 || seen["b"] != 10 {
		t.Fatalf("during the outage calls reached %v, want the cached a and b, 10 each", seen)
	}
	register(t, srv, c, 5*time.Second) // a new instance starts while the registry is down
	if seen := reached(t, bal, 20); seen["c"] != 0 || c.hits.Load() != 0 {
		t.Fatalf("the new instance was seen during the outage: %v", seen)
	}
	// A new caller starts while the registry is down: go-kit's own etcd client would block it in
	// NewInstancer until the registry is back; ours gives up after its request timeout, and the
	// balancer serves its seeds.
	seed := newReplica(t, "seed")
	lateClient := newRegistryClient(t, srv, 10*time.Second)
	lateInstancer, err := NewInstancer(lateClient, "catalog", "v1", discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lateInstancer.Stop)
	cfg := roundRobin()
	cfg.Seeds = []string{seed.url()}
	late := newTestBalancer(t, lateInstancer, balancerOpts{cfg: cfg})
	if seen := reached(t, late, 2); seen["seed"] != 2 {
		t.Fatalf("the caller started during the outage reached %v, want its seed", seen)
	}

	start := time.Now()
	srv.Start()
	for _, b := range []*Balancer{bal, late} {
		eventually(t, 60*time.Second, "a, b and the new instance c discovered once the registry is back", func() bool {
			s := b.Snapshot().Instances
			return len(s) == 3 && s[0].Instance != seed.url() && s[1].Instance != seed.url() && s[2].Instance != seed.url()
		})
	}
	t.Logf("new instance in the balancers %s after the registry came back", time.Since(start))
	if seen := reached(t, bal, 30); seen["a"] == 0 || seen["b"] == 0 || seen["c"] == 0 {
		t.Fatalf("after the outage calls reached %v, want a, b and c", seen)
	}
}

func TestRegistrationComesBackAfterTheLeaseIsLost(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newReplica(t, "a")
	client, _ := register(t, srv, a, 2*time.Second)
	lease := client.LeaseID()
	if lease == 0 {
		t.Fatal("no lease after Register")
	}
	// Someone revokes the lease (as a registry restored without it would have lost it): the key goes.
	admin := newRegistryClient(t, srv, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.cli.Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	key := Instance{Service: "catalog", Version: "v1", ID: "a"}.Key()
	eventually(t, 30*time.Second, "registered again under a new lease", func() bool {
		resp, err := admin.cli.Get(ctx, key)
		return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != lease && string(resp.Kvs[0].Value) == a.url()
	})
}

// A stopping instance deregisters and keeps serving for the deregister grace: by the time its listener
// would close, the callers' watch has already dropped it, so no call is sent to a closed port.
func TestBeforeDrainWaitsForTheCallersToDropTheInstance(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newReplica(t, "a"), newReplica(t, "b")
	register(t, srv, a, 10*time.Second)
	cfg := ServiceConfig{Registry: DefaultRegistryConfig(), Register: true,
		Instance: Instance{Service: "catalog", Version: "v1", ID: "b", URL: b.url()}}
	cfg.Registry.Endpoints = srv.Endpoints()
	cfg.Registry.DeregisterGrace = 600 * time.Millisecond
	d, err := cfg.Start("catalog", prometheus.NewRegistry(), nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	bal := watch(t, srv)
	eventually(t, 30*time.Second, "both instances discovered", func() bool { return instanceCount(bal) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begin := time.Now()
	d.BeforeDrain()(ctx)
	took := time.Since(begin)
	if took < cfg.Registry.DeregisterGrace {
		t.Errorf("BeforeDrain returned after %s, before its %s grace", took, cfg.Registry.DeregisterGrace)
	}
	if n := instanceCount(bal); n != 1 {
		t.Fatalf("when the drain would close the listener the caller still knows %d instances, want only a", n)
	}
	if seen := reached(t, bal, 4); seen["a"] != 4 {
		t.Fatalf("calls reached %v, want only a", seen)
	}

	// The grace never takes more than half of what is left of the drain.
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	begin = time.Now()
	d.BeforeDrain()(short)
	if took := time.Since(begin); took > 150*time.Millisecond {
		t.Errorf("with 200 ms of drain left BeforeDrain took %s, want at most half", took)
	}
}

// While the registry is down, clientv3's Watch blocks until its stream opens; the resync ticks must
// still reach the instancer, whose failing reads are how callers learn the registry is unreachable.
func TestWatchPrefixResyncsWhileTheRegistryIsDown(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Stop()
	c := newRegistryClient(t, srv, 10*time.Second) // resyncs every 200ms
	ch := make(chan struct{})
	watching := make(chan struct{})
	go func() { defer close(watching); c.WatchPrefix(Prefix("catalog", "v1"), ch) }()
	for i := range 3 {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("signal %d: none within 10s while the registry is down", i+1)
		}
	}
	if _, err := c.GetEntries(Prefix("catalog", "v1")); err == nil {
		t.Fatal("GetEntries succeeded with the registry down")
	}
	_ = c.Close()
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("WatchPrefix still running 10s after Close")
	}
}
