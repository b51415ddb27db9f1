package bulkhead

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
)

// blocking is an endpoint that signals when it starts and returns when released.
type blocking struct {
	entered chan struct{}
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blocking) endpoint(ctx context.Context, _ any) (any, error) {
	b.entered <- struct{}{}
	<-b.release
	return "ok", nil
}

func setup(t *testing.T, cfg Config) (*Bulkhead, *clock.Fake, *prometheus.Registry) {
	t.Helper()
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	b, err := New(cfg, policy.Options{Clock: fake, Registerer: reg, Service: "gateway", Downstream: "gateway-catalog"})
	if err != nil {
		t.Fatal(err)
	}
	return b, fake, reg
}

func TestRejectsFastWhenFull(t *testing.T) {
	b, _, reg := setup(t, Config{MaxConcurrent: 2})
	blk := newBlocking()
	e := b.Middleware(blk.endpoint)
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := e(context.Background(), nil); errs <- err }()
	}
	<-blk.entered
	<-blk.entered
	if n := b.InFlight(); n != 2 {
		t.Fatalf("in flight = %d, want 2", n)
	}
	if v := inFlightGauge(t, reg); v != 2 {
		t.Fatalf("in-flight gauge = %v, want 2", v)
	}
	ran := false
	_, err := b.Middleware(func(context.Context, any) (any, error) { ran = true; return nil, nil })(context.Background(), nil)
	if !errors.Is(err, ErrFull) || ran {
		t.Fatalf("third call: err = %v, ran = %v; want ErrFull without running", err, ran)
	}
	if !policy.IsRejection(err) {
		t.Fatal("ErrFull must be a rejection so the breaker ignores it")
	}
	if v := testutil.ToFloat64(b.rejected); v != 1 {
		t.Fatalf("rejected = %v, want 1", v)
	}
	close(blk.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := b.InFlight(); n != 0 {
		t.Fatalf("in flight after = %d, want 0", n)
	}
}

// inFlightGauge reads resilience_bulkhead_in_flight as a scrape would.
func inFlightGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "resilience_bulkhead_in_flight" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no resilience_bulkhead_in_flight")
	return 0
}

func TestQueueWaitGetsASlot(t *testing.T) {
	b, fake, _ := setup(t, Config{MaxConcurrent: 1, MaxWait: 100 * time.Millisecond})
	blk := newBlocking()
	e := b.Middleware(blk.endpoint)
	first := make(chan error, 1)
	go func() { _, err := e(context.Background(), nil); first <- err }()
	<-blk.entered

	second := make(chan error, 1)
	go func() { _, err := e(context.Background(), nil); second <- err }()
	if !fake.BlockUntil(1, 10*time.Second) {
		t.Fatal("second call never queued")
	}
	fake.Advance(99 * time.Millisecond) // still within the max wait
	blk.release <- struct{}{}           // the first call ends and frees its slot
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-blk.entered // the queued call got the slot
	blk.release <- struct{}{}
	if err := <-second; err != nil {
		t.Fatalf("queued call: %v", err)
	}
}

func TestQueueWaitTimesOut(t *testing.T) {
	b, fake, _ := setup(t, Config{MaxConcurrent: 1, MaxWait: 100 * time.Millisecond})
	blk := newBlocking()
	e := b.Middleware(blk.endpoint)
	go func() { _, _ = e(context.Background(), nil) }()
	<-blk.entered
	second := make(chan error, 1)
	go func() { _, err := e(context.Background(), nil); second <- err }()
	if !fake.BlockUntil(1, 10*time.Second) {
		t.Fatal("second call never queued")
	}
	fake.Advance(100 * time.Millisecond)
	if err := <-second; !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v, want ErrFull after the max wait", err)
	}
	close(blk.release)
}

func TestQueueWaitCallerGivesUp(t *testing.T) {
	b, fake, _ := setup(t, Config{MaxConcurrent: 1, MaxWait: time.Second})
	blk := newBlocking()
	e := b.Middleware(blk.endpoint)
	go func() { _, _ = e(context.Background(), nil) }()
	<-blk.entered
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { _, err := e(ctx, nil); second <- err }()
	if !fake.BlockUntil(1, 10*time.Second) {
		t.Fatal("second call never queued")
	}
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if v := testutil.ToFloat64(b.rejected); v != 0 {
		t.Fatalf("a caller giving up is not a rejection: rejected = %v", v)
	}
	close(blk.release)
}

func TestOff(t *testing.T) {
	b, _, _ := setup(t, Config{MaxConcurrent: 0})
	blk := newBlocking()
	e := b.Middleware(blk.endpoint)
	for range 5 {
		go func() { _, _ = e(context.Background(), nil) }()
	}
	for range 5 {
		<-blk.entered
	}
	close(blk.release)
	if _, err := New(Config{MaxConcurrent: -1}, policy.Options{}); err == nil {
		t.Fatal("negative max concurrent accepted")
	}
}
