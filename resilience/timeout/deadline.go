package timeout

import (
	"context"
	"sync"
	"time"

	"github.com/resilience-lab/lab/resilience/clock"
)

// deadlineCtx is a context with a deadline, read from an injected clock, that costs one allocation on a
// call that nobody waits on: the Done channel, the timer that closes it and the watch on the parent are
// only set up when someone asks for Done (net/http does, a trivial endpoint does not). Err checks the
// clock itself, so an expired deadline is seen even before a timer would have fired. It is released
// (cancelled) when the call returns, like the cancel func of context.WithTimeout.
type deadlineCtx struct {
	parent   context.Context
	deadline time.Time
	clock    clock.Clock

	mu    sync.Mutex
	err   error
	armed *armed // set by the first Done: most calls never need it
}

type armed struct {
	done       chan struct{}
	timer      clock.Timer
	stopParent func() bool
	afterFuncs []*afterFunc
}

type afterFunc struct {
	f       func()
	stopped bool
}

// closedDone is returned by Done once the context ended before anyone asked for Done.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newDeadlineCtx(parent context.Context, deadline time.Time, c clock.Clock) *deadlineCtx {
	return &deadlineCtx{parent: parent, deadline: deadline, clock: c}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *deadlineCtx) Value(key any) any           { return c.parent.Value(key) }

func (c *deadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkLocked()
}

// checkLocked notices a parent that ended or a deadline that passed and cancels c accordingly.
func (c *deadlineCtx) checkLocked() error {
	if c.err != nil {
		return c.err
	}
	if err := c.parent.Err(); err != nil {
		c.cancelLocked(err)
	} else if !c.clock.Now().Before(c.deadline) {
		c.cancelLocked(context.DeadlineExceeded)
	}
	return c.err
}

func (c *deadlineCtx) Done() <-chan struct{} {
	c.mu.Lock()
	if c.armed != nil {
		defer c.mu.Unlock()
		return c.armed.done
	}
	if c.checkLocked() != nil {
		c.mu.Unlock()
		return closedDone
	}
	a := &armed{done: make(chan struct{})}
	c.armed = a
	c.mu.Unlock()
	// Armed without the lock: a timer or parent that fires at once calls cancel, which takes it.
	timer := c.clock.AfterFunc(c.deadline.Sub(c.clock.Now()), func() { c.cancel(context.DeadlineExceeded) })
	var stopParent func() bool
	if c.parent.Done() != nil {
		stopParent = context.AfterFunc(c.parent, func() { c.cancel(c.parent.Err()) })
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil { // ended while arming
		timer.Stop()
		if stopParent != nil {
			stopParent()
		}
		return a.done
	}
	a.timer, a.stopParent = timer, stopParent
	return a.done
}

// AfterFunc lets context.WithCancel and friends hang children on c without a goroutine each
// (net/http and go-kit's client derive such children from every request context).
func (c *deadlineCtx) AfterFunc(f func()) (stop func() bool) {
	c.Done() // a child watching c needs the timer armed
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	af := &afterFunc{f: f}
	c.armed.afterFuncs = append(c.armed.afterFuncs, af)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if af.stopped || c.err != nil {
			return false
		}
		af.stopped = true
		return true
	}
}

func (c *deadlineCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelLocked(err)
}

func (c *deadlineCtx) cancelLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	a := c.armed
	if a == nil {
		return
	}
	close(a.done)
	if a.timer != nil {
		a.timer.Stop()
	}
	if a.stopParent != nil {
		a.stopParent()
	}
	for _, af := range a.afterFuncs {
		if !af.stopped {
			go af.f()
		}
	}
	a.afterFuncs = nil
}

// finish ends the context when the call returns. For a failed call it reports whether the context's
// own deadline (not the parent's end) had passed by then; a successful call costs no clock read.
func (c *deadlineCtx) finish(failed bool) (timedOut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if failed {
		timedOut = c.checkLocked() == context.DeadlineExceeded && c.parent.Err() == nil
	}
	c.cancelLocked(context.Canceled)
	return timedOut
}
