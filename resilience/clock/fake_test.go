package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInDeadlineOrder(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	var fired []string
	f.AfterFunc(30*time.Millisecond, func() { fired = append(fired, "c@"+f.Now().Sub(start).String()) })
	f.AfterFunc(10*time.Millisecond, func() {
		fired = append(fired, "a@"+f.Now().Sub(start).String())
		f.AfterFunc(5*time.Millisecond, func() { fired = append(fired, "b@"+f.Now().Sub(start).String()) }) // re-arming inside Advance
	})
	stopped := f.AfterFunc(20*time.Millisecond, func() { fired = append(fired, "stopped") })
	timer := f.NewTimer(40 * time.Millisecond)
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop must report true once, for a pending timer")
	}
	f.Advance(35 * time.Millisecond)
	if got := len(fired); got != 3 || fired[0] != "a@10ms" || fired[1] != "b@15ms" || fired[2] != "c@30ms" {
		t.Fatalf("fired = %v", fired)
	}
	if !f.Now().Equal(start.Add(35 * time.Millisecond)) {
		t.Fatalf("now = %v", f.Now())
	}
	select {
	case <-timer.C():
		t.Fatal("timer fired early")
	default:
	}
	f.Advance(5 * time.Millisecond)
	if at := <-timer.C(); !at.Equal(start.Add(40 * time.Millisecond)) {
		t.Fatalf("timer fired at %v", at)
	}
	if f.Pending() != 0 {
		t.Fatalf("pending = %d", f.Pending())
	}
}

func TestBlockUntil(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	go func() { f.NewTimer(time.Second) }()
	if !f.BlockUntil(1, 10*time.Second) {
		t.Fatal("never saw the timer")
	}
	if f.BlockUntil(2, 10*time.Millisecond) {
		t.Fatal("saw a timer that does not exist")
	}
}

func TestReal(t *testing.T) {
	c := OrReal(nil)
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() || c.Now().IsZero() {
		t.Fatal("real timer")
	}
}
