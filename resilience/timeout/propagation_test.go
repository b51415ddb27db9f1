package timeout

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

type workRequest struct{}
type workResponse struct {
	OK bool `json:"ok"`
}

// hop records what one server saw.
type hop struct {
	start    time.Time
	deadline time.Time
	hasDL    bool
	endErr   error
}

func serve(t *testing.T, name string, api http.HandlerFunc) *httptest.Server {
	t.Helper()
	svc := &platform.Service{Name: name, API: api, Registry: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, base string, mw endpoint.Middleware) endpoint.Endpoint {
	t.Helper()
	u, err := platform.ParseBaseURL(base)
	if err != nil {
		t.Fatal(err)
	}
	e := platform.ClientEndpoint[workRequest, workResponse](platform.NewHTTPClient(), u, http.MethodGet,
		func(workRequest) string { return "work" })
	if mw != nil {
		e = mw(e)
	}
	return e
}

// TestDeadlinePropagatesAcrossTwoHops: A calls B with a 300ms timeout policy, B calls C with no policy
// of its own, and C works until its context ends. C's deadline, derived hop by hop from X-Deadline-Ms,
// is never later than A's — save the transit time and one millisecond of rounding up per hop, both
// measured here, not assumed — and C's context does end, so C stops working when A's budget is spent.
func TestDeadlinePropagatesAcrossTwoHops(t *testing.T) {
	cSeen, bSeen := make(chan hop, 1), make(chan hop, 1)
	c := serve(t, "c", func(w http.ResponseWriter, r *http.Request) {
		h := hop{start: time.Now()}
		h.deadline, h.hasDL = r.Context().Deadline()
		select {
		case <-r.Context().Done():
			h.endErr = r.Context().Err()
		case <-time.After(30 * time.Second): // a safety net only: reaching it fails the test
		}
		cSeen <- h
		platform.EncodeError(r.Context(), r.Context().Err(), w)
	})
	callC := client(t, c.URL, nil)
	b := serve(t, "b", func(w http.ResponseWriter, r *http.Request) {
		h := hop{start: time.Now()}
		h.deadline, h.hasDL = r.Context().Deadline()
		bSeen <- h
		if _, err := callC(r.Context(), workRequest{}); err != nil {
			platform.EncodeError(r.Context(), err, w)
			return
		}
		platform.WriteJSON(w, http.StatusOK, workResponse{OK: true})
	})

	var aStart, aDeadline time.Time
	record := func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			aStart = time.Now()
			aDeadline, _ = ctx.Deadline()
			return next(ctx, req)
		}
	}
	callB := client(t, b.URL, func(next endpoint.Endpoint) endpoint.Endpoint {
		return New(300*time.Millisecond, policy.Options{}).Middleware(record(next))
	})
	aErr := make(chan error, 1)
	a := serve(t, "a", func(w http.ResponseWriter, r *http.Request) {
		_, err := callB(r.Context(), workRequest{})
		aErr <- err
		if err != nil {
			platform.EncodeError(r.Context(), err, w)
			return
		}
		platform.WriteJSON(w, http.StatusOK, workResponse{OK: true})
	})

	resp, err := http.Get(a.URL + "/work")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("A answered %d, want 504", resp.StatusCode)
	}
	if err := <-aErr; !errors.Is(err, ErrTimeout) {
		t.Fatalf("A's call: %v, want ErrTimeout", err)
	}
	bh, ch := <-bSeen, <-cSeen
	if aDeadline.IsZero() || !bh.hasDL || !ch.hasDL {
		t.Fatalf("deadline missing: A %v, B %v, C %v", aDeadline, bh.hasDL, ch.hasDL)
	}
	const rounding = time.Millisecond // X-Deadline-Ms rounds the remaining budget up to whole milliseconds
	if limit := aDeadline.Add(bh.start.Sub(aStart) + rounding); bh.deadline.After(limit) {
		t.Fatalf("B's deadline %v is past A's %v plus transit and rounding (%v)", bh.deadline, aDeadline, limit)
	}
	if limit := aDeadline.Add(ch.start.Sub(aStart) + 2*rounding); ch.deadline.After(limit) {
		t.Fatalf("C's deadline %v is past A's %v plus transit and rounding (%v)", ch.deadline, aDeadline, limit)
	}
	if !errors.Is(ch.endErr, context.DeadlineExceeded) && !errors.Is(ch.endErr, context.Canceled) {
		t.Fatalf("C kept working: its context ended with %v", ch.endErr)
	}
	t.Logf("A deadline %s after its call; B %s, C %s after A's; C stopped with %v",
		aDeadline.Sub(aStart), bh.deadline.Sub(aDeadline), ch.deadline.Sub(aDeadline), ch.endErr)
}
