package discovery

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"

	"github.com/resilience-lab/lab/services/platform"
)

// replica is a test instance answering GET /whoami with its name, or with the status the test sets; a
// hang makes it wait until the caller gives up.
type replica struct {
	name   string
	status atomic.Int32
	hang   atomic.Bool
	hits   atomic.Int32
	srv    *httptest.Server
}

type whoami struct {
	Name string `json:"name"`
}

func newReplica(t *testing.T, name string) *replica {
	t.Helper()
	r := &replica{name: name}
	r.status.Store(http.StatusOK)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		if r.hang.Load() {
			<-req.Context().Done()
			return
		}
		if s := int(r.status.Load()); s != http.StatusOK {
			platform.WriteError(w, platform.Errorf(s, "broken", "%s answers %d", name, s))
			return
		}
		platform.WriteJSON(w, http.StatusOK, whoami{Name: name})
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replica) url() string { return r.srv.URL }

// replicasInOrder returns two replicas in the order a balancer keeps them (sorted by URL), so a test
// with pinned random draws knows which one is drawn first.
func replicasInOrder(t *testing.T) (first, second *replica) {
	t.Helper()
	x, y := newReplica(t, "x"), newReplica(t, "y")
	if y.url() < x.url() {
		return y, x
	}
	return x, y
}

// whoamiFactory builds the client endpoint of GET /whoami for one instance, as a typed client would.
func whoamiFactory(closed *atomic.Int32) sd.Factory {
	client := platform.NewHTTPClient()
	f := URLFactory(func(base *url.URL) endpoint.Endpoint {
		return platform.ClientEndpoint[struct{}, whoami](client, base, http.MethodGet, func(struct{}) string { return "whoami" })
	})
	if closed == nil {
		return f
	}
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		e, _, err := f(instance)
		return e, closerFunc(func() error { closed.Add(1); return nil }), err
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// call sends one GET /whoami through e and returns the name of the replica that answered.
func call(ctx context.Context, e endpoint.Endpoint) (string, error) {
	resp, err := e(ctx, struct{}{})
	if err != nil {
		return "", err
	}
	return resp.(*whoami).Name, nil
}

// testInstancer is an sd.Instancer the test drives: Update sends a set (or an error) to every subscriber,
// as go-kit's instancers do.
type testInstancer struct {
	mu    sync.Mutex
	state sd.Event
	subs  map[chan<- sd.Event]bool
}

func newTestInstancer(instances ...string) *testInstancer {
	return &testInstancer{state: sd.Event{Instances: instances}, subs: map[chan<- sd.Event]bool{}}
}

func (s *testInstancer) Register(ch chan<- sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[ch] = true
	ch <- s.state
}

func (s *testInstancer) Deregister(ch chan<- sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, ch)
}

func (s *testInstancer) Stop() {}

func (s *testInstancer) Update(ev sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = ev
	for ch := range s.subs {
		ch <- ev
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// eventually polls cond every 10ms until it holds, failing the test after timeout (generous: the machine
// is shared). It is a wait, never an assertion on timing.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func instanceCount(b *Balancer) int { return len(b.Snapshot().Instances) }
