// Package natstest runs a real NATS server with JetStream inside a test process, the same way for every
// package's tests: listening on 127.0.0.1 on a free port, storing in a t.TempDir(), stopped when the test
// ends. Stop and Start take the broker down and bring it back on the same address and store, so tests
// can play a broker outage.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded NATS server.
type Server struct {
	t    testing.TB
	dir  string
	mu   sync.Mutex
	srv  *server.Server
	port int
}

// Start runs a JetStream-enabled server for the test and stops it at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), port: -1}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start brings the server (back) up on its address with the streams it had stored. It is a no-op while
// the server runs.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       s.port, // -1 the first time: a free port, kept for restarts
		JetStream:  true,
		StoreDir:   s.dir,
		NoLog:      true,
		NoSigs:     true,
		// Small limits: tests never need more, and the machine is shared.
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  256 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		s.t.Fatalf("natstest: new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		s.t.Fatalf("natstest: server not ready on 127.0.0.1:%d", s.port)
	}
	s.srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down (a broker outage); its store is kept for Start. It is a no-op while the
// server is down.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// URL is the client URL, nats://127.0.0.1:port; it stays the same across Stop and Start.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", s.port)
}

// Messages returns the data of every message stream holds, in stream order, read through a fresh
// connection to url (an empty slice when the stream does not exist yet).
func Messages(t testing.TB, url, stream string) [][]byte {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return [][]byte{}
	}
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	out := [][]byte{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			t.Fatalf("natstest: %s #%d: %v", stream, seq, err)
		}
		out = append(out, m.Data)
	}
	return out
}
