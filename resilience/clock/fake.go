package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a manual clock for tests: time moves only when Advance is called, and timers due by then fire
// inside Advance, in deadline order. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed *sync.Cond
}

// NewFake returns a Fake clock set to start.
func NewFake(start time.Time) *Fake {
	f := &Fake{now: start}
	f.changed = sync.NewCond(&f.mu)
	return f
}

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(d, &fakeTimer{ch: make(chan time.Time, 1)})
}

func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(d, &fakeTimer{fn: fn})
}

func (f *Fake) add(d time.Duration, t *fakeTimer) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t.clock, t.when = f, f.now.Add(d)
	if d <= 0 {
		f.fireLocked(t)
		return t
	}
	f.timers = append(f.timers, t)
	f.changed.Broadcast()
	return t
}

// fireLocked delivers t. An AfterFunc callback runs without the lock held, so it may use the clock.
func (f *Fake) fireLocked(t *fakeTimer) {
	if t.ch != nil {
		t.ch <- t.when
		return
	}
	f.mu.Unlock()
	t.fn()
	f.mu.Lock()
}

// Advance moves the clock forward by d and fires every timer due by the new time.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.now.Add(d)
	for {
		sort.SliceStable(f.timers, func(i, j int) bool { return f.timers[i].when.Before(f.timers[j].when) })
		if len(f.timers) == 0 || f.timers[0].when.After(end) {
			break
		}
		t := f.timers[0]
		f.timers = f.timers[1:]
		if t.when.After(f.now) {
			f.now = t.when
		}
		f.fireLocked(t)
	}
	f.now = end
	f.changed.Broadcast()
}

// Pending returns the number of timers waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// BlockUntil waits until at least n timers are pending, so a test knows the code under test is waiting
// before it advances the clock. It gives up after timeout (a real duration) and reports whether n was
// reached.
func (f *Fake) BlockUntil(n int, timeout time.Duration) bool {
	expired := false
	stop := time.AfterFunc(timeout, func() {
		f.mu.Lock()
		expired = true
		f.changed.Broadcast()
		f.mu.Unlock()
	})
	defer stop.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.timers) < n && !expired {
		f.changed.Wait()
	}
	return len(f.timers) >= n
}

type fakeTimer struct {
	clock *Fake
	when  time.Time
	ch    chan time.Time
	fn    func()
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	f := t.clock
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.timers {
		if p == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			f.changed.Broadcast()
			return true
		}
	}
	return false
}
