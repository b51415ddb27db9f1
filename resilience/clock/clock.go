// Package clock is the time source every resilience policy is built with, so tests drive sleep windows,
// backoffs, queue waits and deadlines by advancing a Fake clock instead of sleeping.
package clock

import "time"

// Clock tells the time and schedules work after a delay.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer whose channel receives once, d from now.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f once, d from now (Real: in its own goroutine; Fake: inside Advance).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending timer of a Clock.
type Timer interface {
	// C is the timer's channel (nil for AfterFunc timers).
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time                            { return time.Now() }
func (Real) NewTimer(d time.Duration) Timer            { return realTimer{time.NewTimer(d)} }
func (Real) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// OrReal returns c, or Real when c is nil.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}
