package hedge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// attempts is an endpoint whose calls the test answers one by one.
type attempts struct {
	started chan *call
}

type call struct {
	n      int
	ctx    context.Context
	answer chan error
	ended  chan error // what the attempt saw: the answer, or its context's end
}

func newAttempts() *attempts { return &attempts{started: make(chan *call, 4)} }

func (a *attempts) endpoint() func(context.Context, any) (any, error) {
	n := 0
	return func(ctx context.Context, _ any) (any, error) {
		n++
		c := &call{n: n, ctx: ctx, answer: make(chan error, 1), ended: make(chan error, 1)}
		a.started <- c
		select {
		case err := <-c.answer:
			c.ended <- err
			if err != nil {
				return nil, err
			}
			return c.n, nil
		case <-ctx.Done():
			c.ended <- ctx.Err()
			return nil, ctx.Err()
		}
	}
}

type budget struct{ left int }

func (b *budget) Withdraw() bool {
	if b.left == 0 {
		return false
	}
	b.left--
	return true
}

func setup(b Budget) (*Hedge, *clock.Fake, *attempts) {
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return New(50*time.Millisecond, b, policy.Options{Clock: fake}), fake, newAttempts()
}

type result struct {
	resp any
	err  error
}

func start(h *Hedge, a *attempts) chan result {
	out := make(chan result, 1)
	e := h.Middleware(a.endpoint())
	go func() { resp, err := e(context.Background(), nil); out <- result{resp, err} }()
	return out
}

func TestFastAnswerSendsNoHedge(t *testing.T) {
	h, fake, a := setup(nil)
	out := start(h, a)
	first := <-a.started
	first.answer <- nil
	if r := <-out; r.err != nil || r.resp != 1 {
		t.Fatalf("got %+v", r)
	}
	if testutil.ToFloat64(h.hedges) != 0 || fake.Pending() != 0 {
		t.Fatalf("hedges = %v, timers = %d", testutil.ToFloat64(h.hedges), fake.Pending())
	}
}

func TestHedgeWinsAndTheFirstIsCancelled(t *testing.T) {
	h, fake, a := setup(nil)
	out := start(h, a)
	first := <-a.started
	if !fake.BlockUntil(1, 10*time.Second) {
		t.Fatal("no hedge timer")
	}
	fake.Advance(50 * time.Millisecond)
	second := <-a.started
	second.answer <- nil
	if r := <-out; r.err != nil || r.resp != 2 {
		t.Fatalf("got %+v, want the hedge's answer", r)
	}
	if err := <-first.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the losing first attempt ended with %v, want its context cancelled", err)
	}
	if testutil.ToFloat64(h.hedges) != 1 || testutil.ToFloat64(h.wins) != 1 {
		t.Fatalf("hedges = %v, wins = %v", testutil.ToFloat64(h.hedges), testutil.ToFloat64(h.wins))
	}
}

func TestFirstWinsAndTheHedgeIsCancelled(t *testing.T) {
	h, fake, a := setup(nil)
	out := start(h, a)
	first := <-a.started
	fake.BlockUntil(1, 10*time.Second)
	fake.Advance(50 * time.Millisecond)
	second := <-a.started
	first.answer <- nil
	if r := <-out; r.err != nil || r.resp != 1 {
		t.Fatalf("got %+v", r)
	}
	if err := <-second.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the losing hedge ended with %v", err)
	}
	if testutil.ToFloat64(h.wins) != 0 {
		t.Fatal("the first attempt won, not the hedge")
	}
}

func TestAFailureDoesNotWinWhileTheOtherIsOut(t *testing.T) {
	h, fake, a := setup(nil)
	out := start(h, a)
	first := <-a.started
	fake.BlockUntil(1, 10*time.Second)
	fake.Advance(50 * time.Millisecond)
	second := <-a.started
	first.answer <- errors.New("connection reset")
	if err := <-first.ended; err == nil {
		t.Fatal("first should have failed")
	}
	second.answer <- nil
	if r := <-out; r.err != nil || r.resp != 2 {
		t.Fatalf("got %+v, want the hedge's success", r)
	}
}

func TestFailureBeforeTheDelayEndsTheCall(t *testing.T) {
	h, fake, a := setup(nil)
	out := start(h, a)
	first := <-a.started
	first.answer <- errors.New("connection refused")
	if r := <-out; r.err == nil {
		t.Fatal("want the failure")
	}
	if testutil.ToFloat64(h.hedges) != 0 || fake.Pending() != 0 {
		t.Fatal("no hedge after an early failure")
	}
}

func TestBudgetLimitsHedges(t *testing.T) {
	h, fake, a := setup(&budget{left: 0})
	out := start(h, a)
	first := <-a.started
	fake.BlockUntil(1, 10*time.Second)
	fake.Advance(50 * time.Millisecond)
	first.answer <- nil
	if r := <-out; r.err != nil || r.resp != 1 {
		t.Fatalf("got %+v", r)
	}
	select {
	case c := <-a.started:
		t.Fatalf("hedge %d sent without budget", c.n)
	default:
	}
	if testutil.ToFloat64(h.hedges) != 0 {
		t.Fatal("hedge counted without budget")
	}
}
