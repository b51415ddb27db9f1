package timeout

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/clock"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func build(d time.Duration) (*Timeout, *clock.Fake, *[]policy.Event) {
	fake := clock.NewFake(t0)
	var events []policy.Event
	return New(d, policy.Options{Clock: fake, Hook: func(e policy.Event) { events = append(events, e) }}), fake, &events
}

func TestTimeoutCancelsTheCall(t *testing.T) {
	to, fake, events := build(100 * time.Millisecond)
	seen := make(chan time.Time, 1)
	e := to.Middleware(func(ctx context.Context, _ any) (any, error) {
		dl, _ := ctx.Deadline()
		seen <- dl
		<-ctx.Done()
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() { _, err := e(context.Background(), nil); done <- err }()
	if dl := <-seen; !dl.Equal(t0.Add(100 * time.Millisecond)) {
		t.Fatalf("deadline = %v, want t0+100ms", dl)
	}
	if !fake.BlockUntil(1, 10*time.Second) {
		t.Fatal("the deadline timer was never armed")
	}
	fake.Advance(99 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("returned before the deadline: %v", err)
	default:
	}
	fake.Advance(time.Millisecond)
	err := <-done
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout (and DeadlineExceeded)", err)
	}
	if policy.Classify(context.Background(), err) != policy.Failure {
		t.Fatal("a per-attempt timeout must classify as a failure for the caller's policies")
	}
	if v := testutil.ToFloat64(to.timeouts); v != 1 {
		t.Fatalf("timeouts = %v, want 1", v)
	}
	if len(*events) != 1 || (*events)[0].Kind != policy.EventTimeout || !(*events)[0].Time.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("events = %+v", *events)
	}
}

func TestErrSeesTheDeadlineWithoutATimer(t *testing.T) {
	to, fake, _ := build(100 * time.Millisecond)
	_, err := to.Middleware(func(ctx context.Context, _ any) (any, error) {
		if ctx.Err() != nil {
			t.Fatal("expired at the start")
		}
		fake.Advance(100 * time.Millisecond) // the work took the whole budget; nobody watched Done
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err = %v after the deadline", ctx.Err())
		}
		select {
		case <-ctx.Done():
		default:
			t.Fatal("Err is set but Done is open")
		}
		return nil, ctx.Err()
	})(context.Background(), nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if fake.Pending() != 0 {
		t.Fatalf("%d timers left behind", fake.Pending())
	}
}

func TestSuccessAfterTheDeadlineIsKept(t *testing.T) {
	to, fake, _ := build(100 * time.Millisecond)
	resp, err := to.Middleware(func(ctx context.Context, _ any) (any, error) {
		fake.Advance(time.Second)
		return "late but fine", nil
	})(context.Background(), nil)
	if err != nil || resp != "late but fine" || testutil.ToFloat64(to.timeouts) != 0 {
		t.Fatalf("resp = %v, err = %v", resp, err)
	}
	_, err = to.Middleware(func(ctx context.Context, _ any) (any, error) {
		fake.Advance(time.Second)
		return nil, platform.NotFound("no such product")
	})(context.Background(), nil)
	if !platform.IsBusiness(err) || errors.Is(err, ErrTimeout) || testutil.ToFloat64(to.timeouts) != 0 {
		t.Fatalf("a business answer is not a timeout: %v", err)
	}
}

func TestParentDeadlineSoonerIsKept(t *testing.T) {
	to := New(time.Hour, policy.Options{})
	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = to.Middleware(func(ctx context.Context, _ any) (any, error) {
		if ctx != parent {
			t.Fatal("a context was derived although the caller's deadline comes first")
		}
		return nil, nil
	})(parent, nil)
}

func TestParentCancellationPropagates(t *testing.T) {
	to, _, _ := build(time.Hour)
	parent, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := to.Middleware(func(ctx context.Context, _ any) (any, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})(parent, nil)
		done <- err
	}()
	<-started
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want the caller's cancellation, not a timeout", err)
	}
	if v := testutil.ToFloat64(to.timeouts); v != 0 {
		t.Fatalf("timeouts = %v", v)
	}
}

// TestChildContexts: go-kit's client and net/http derive children from the call's context; they must be
// cancelled at the deadline and when the call returns.
func TestChildContexts(t *testing.T) {
	to, fake, _ := build(100 * time.Millisecond)
	var leftover context.Context
	_, err := to.Middleware(func(ctx context.Context, _ any) (any, error) {
		child, cancel := context.WithCancel(ctx)
		defer cancel()
		value := context.WithValue(child, struct{}{}, 1)
		var cancelLeftover context.CancelFunc
		leftover, cancelLeftover = context.WithCancel(ctx) // kept to check the call's end cancels it
		t.Cleanup(cancelLeftover)
		fake.Advance(100 * time.Millisecond)
		select {
		case <-value.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("child not cancelled at the deadline")
		}
		return nil, value.Err()
	})(context.Background(), nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	select {
	case <-leftover.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a child still open after the call returned")
	}

	// A call that returns before its deadline releases everything it armed.
	_, _ = to.Middleware(func(ctx context.Context, _ any) (any, error) {
		var cancelLeftover context.CancelFunc
		leftover, cancelLeftover = context.WithCancel(ctx)
		t.Cleanup(cancelLeftover)
		return nil, nil
	})(context.Background(), nil)
	select {
	case <-leftover.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("child not cancelled when the call returned")
	}
	if !errors.Is(leftover.Err(), context.Canceled) {
		t.Fatalf("leftover err = %v", leftover.Err())
	}
	if fake.Pending() != 0 {
		t.Fatalf("%d timers left behind", fake.Pending())
	}
}

func TestOff(t *testing.T) {
	to := New(0, policy.Options{})
	parent := context.Background()
	_, _ = to.Middleware(func(ctx context.Context, _ any) (any, error) {
		if _, ok := ctx.Deadline(); ok || ctx != parent {
			t.Fatal("timeout 0 must pass the context through")
		}
		return nil, nil
	})(parent, nil)
}

// TestConcurrentUseWithTheRealClock hammers one context from many goroutines while its deadline fires,
// for the race detector, and checks every observer agrees on the outcome.
func TestConcurrentUseWithTheRealClock(t *testing.T) {
	to := New(time.Millisecond, policy.Options{})
	for range 50 {
		_, err := to.Middleware(func(ctx context.Context, _ any) (any, error) {
			errs := make(chan error, 8)
			for i := range 8 {
				go func() {
					if i%2 == 0 {
						child, cancel := context.WithCancel(ctx)
						defer cancel()
						<-child.Done()
						errs <- child.Err()
						return
					}
					<-ctx.Done()
					errs <- ctx.Err()
				}()
			}
			for range 8 {
				if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
					return nil, err
				}
			}
			return nil, ctx.Err()
		})(context.Background(), nil)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	}
}
