// Package etcdtest runs a real etcd member in-process for tests: loopback ports, data in the test's temp
// dir, stopped when the test ends. Stop and Start take the registry down and bring it back on the same
// ports and data, so tests can play a registry outage (as events/natstest does for the broker).
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is one embedded etcd member.
type Server struct {
	t   testing.TB
	cfg *embed.Config
	e   *embed.Etcd
}

// Start runs a single-member etcd on two free loopback ports; it is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "registry"
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Short ticks: the member elects itself at once, and the shortest lease etcd grants (1.5 election
	// timeouts) stays under a second, so a lease-expiry test waits one second, not two.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.UnsafeNoFsync = true // tests do not need durability against power loss
	client, peer := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	s := &Server{t: t, cfg: cfg}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Endpoints are the client URLs to dial.
func (s *Server) Endpoints() []string { return []string{s.cfg.AdvertiseClientUrls[0].String()} }

// Stop shuts the member down (a registry outage); its data is kept for Start. It is a no-op while the
// member is down.
func (s *Server) Stop() {
	if s.e == nil {
		return
	}
	s.e.Close()
	s.e = nil
}

// Start brings the member back on the same ports and data, so every key and lease written before the
// outage is back (etcd renews every lease to its full TTL when it elects itself). It is a no-op while
// the member runs.
func (s *Server) Start() {
	s.t.Helper()
	if s.e != nil {
		return
	}
	s.cfg.ClusterState = embed.ClusterStateFlagExisting
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	e, err := embed.StartEtcd(s.cfg)
	if err != nil {
		s.t.Fatalf("start etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		s.t.Fatalf("etcd failed while starting: %v", err)
	case <-time.After(60 * time.Second):
		e.Close()
		s.t.Fatal("etcd not ready after 60s")
	}
	s.e = e
}

// freeURL reserves a loopback port long enough to learn its number. Another process could take it before
// etcd binds it; on loopback in a test run that is rare enough to accept, and Restart needs a fixed port.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserve a port: %v", err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port)}
}
