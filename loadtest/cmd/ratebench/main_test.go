package main

import (
	"os"
	"testing"
	"time"
)

func TestHeldMeansWithinOnePercent(t *testing.T) {
	for _, tc := range []struct {
		ok   uint64
		wall time.Duration
		want bool
	}{
		{100000, 5 * time.Second, true},          // exactly 20k/s
		{99000, 5 * time.Second, true},           // 19.8k/s: 1 % short
		{98900, 5 * time.Second, false},          // 19.78k/s
		{100000, 5100 * time.Millisecond, false}, // all answered, but 2 % late
	} {
		m := measurement{rate: 20000, ok: tc.ok, wall: tc.wall}
		if m.held() != tc.want {
			t.Errorf("ok %d in %s: held=%v, want %v", tc.ok, tc.wall, m.held(), tc.want)
		}
	}
}

func TestCPUReadings(t *testing.T) {
	// Burn a little CPU so both clocks have ticked at least once (USER_HZ is 100).
	deadline := time.Now().Add(60 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	self, proc := selfCPU(), procCPU(os.Getpid())
	if self <= 0 || proc <= 0 {
		t.Fatalf("self %s, /proc %s: want both positive", self, proc)
	}
	// Two views of the same process: /proc counts in 10 ms ticks and was read a moment later; user and system time are truncated separately.
	if proc > self+50*time.Millisecond || proc < self-50*time.Millisecond {
		t.Errorf("getrusage says %s but /proc says %s", self, proc)
	}
	if procCPU(-1) != 0 {
		t.Error("a missing process should read as zero")
	}
}
