package loadtest

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestScheduleConstantIsExact(t *testing.T) {
	s := newSchedule(Constant(100, 10*time.Second))
	var n int
	for {
		due, ok := s.next()
		if !ok {
			break
		}
		if want := time.Duration(n) * 10 * time.Millisecond; absDur(due-want) > time.Microsecond {
			t.Fatalf("request %d due at %s, want %s", n, due, want)
		}
		n++
	}
	if n != 1000 {
		t.Fatalf("scheduled %d requests, want 1000", n)
	}
}

// perSecond counts the schedule's arrivals in each whole second.
func perSecond(p Profile) []int {
	counts := make([]int, int(math.Ceil(p.Duration().Seconds())))
	s := newSchedule(p)
	for {
		due, ok := s.next()
		if !ok {
			return counts
		}
		counts[int(due/time.Second)]++
	}
}

func TestScheduleFollowsEveryShape(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Profile
		want []float64 // expected arrivals per second
	}{
		{"constant", Constant(37.5, 4*time.Second), []float64{37.5, 37.5, 37.5, 37.5}},
		{"ramp up", Ramp(0, 100, 4*time.Second), []float64{12.5, 37.5, 62.5, 87.5}},
		{"ramp down", Ramp(100, 20, 4*time.Second), []float64{90, 70, 50, 30}},
		{"step", Steps(10, 20, 2*time.Second, 3), []float64{10, 10, 30, 30, 50, 50}},
		{"spike", Spike(10, 200, 2*time.Second, time.Second, 5*time.Second), []float64{10, 10, 200, 10, 10}},
		{"spike at start", Spike(10, 200, 0, time.Second, 2*time.Second), []float64{200, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Validate(); err != nil {
				t.Fatal(err)
			}
			got := perSecond(tc.p)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d seconds, want %d", len(got), len(tc.want))
			}
			var total int
			for i, w := range tc.want {
				// Whole requests fall on either side of a fractional boundary: ±1 per second at most.
				if math.Abs(float64(got[i])-w) > 1 {
					t.Errorf("second %d: %d arrivals, want %.1f±1", i, got[i], w)
				}
				if c := tc.p.Count(time.Duration(i+1)*time.Second) - tc.p.Count(time.Duration(i)*time.Second); math.Abs(c-w) > 1e-9 {
					t.Errorf("second %d: Count says %.3f, want %.1f", i, c, w)
				}
				total += got[i]
			}
			if want := math.Ceil(tc.p.Count(tc.p.Duration())); float64(total) != want {
				t.Errorf("total %d arrivals, want %.0f", total, want)
			}
		})
	}
}

func TestScheduleIsMonotonic(t *testing.T) {
	s := newSchedule(Profile{Segments: []Segment{
		{Duration: time.Second, From: 0, To: 50},
		{Duration: time.Second, From: 0, To: 0},
		{Duration: 1500 * time.Millisecond, From: 80, To: 3},
	}})
	prev := time.Duration(-1)
	for {
		due, ok := s.next()
		if !ok {
			break
		}
		if due < prev || due > 3500*time.Millisecond {
			t.Fatalf("due %s after %s, or past the end", due, prev)
		}
		if due >= time.Second && due < 2*time.Second {
			t.Fatalf("request due at %s inside a zero-rate segment", due)
		}
		prev = due
	}
}

func TestRateAt(t *testing.T) {
	p := Spike(10, 200, 2*time.Second, time.Second, 5*time.Second)
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 10}, {1999 * time.Millisecond, 10}, {2 * time.Second, 200}, {3 * time.Second, 10}, {5 * time.Second, 0}} {
		if got := p.RateAt(tc.at); got != tc.want {
			t.Errorf("RateAt(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if got := Ramp(0, 100, 10*time.Second).RateAt(5 * time.Second); got != 50 {
		t.Errorf("ramp midpoint rate = %v, want 50", got)
	}
}

func TestParseProfile(t *testing.T) {
	good := []struct {
		spec string
		want []Segment
	}{
		{"constant:rate=500,d=30s", []Segment{{30 * time.Second, 500, 500}}},
		{" ramp:from=100, to=2000,d=1m ", []Segment{{time.Minute, 100, 2000}}},
		{"step:from=100,step=50,every=10s,steps=3", []Segment{{10 * time.Second, 100, 100}, {10 * time.Second, 150, 150}, {10 * time.Second, 200, 200}}},
		{"spike:base=200,peak=2000,at=20s,for=5s,d=60s", []Segment{{20 * time.Second, 200, 200}, {5 * time.Second, 2000, 2000}, {35 * time.Second, 200, 200}}},
	}
	for _, tc := range good {
		p, err := ParseProfile(tc.spec)
		if err != nil {
			t.Errorf("ParseProfile(%q): %v", tc.spec, err)
			continue
		}
		if len(p.Segments) != len(tc.want) {
			t.Errorf("ParseProfile(%q) = %+v, want %+v", tc.spec, p.Segments, tc.want)
			continue
		}
		for i := range tc.want {
			if p.Segments[i] != tc.want[i] {
				t.Errorf("ParseProfile(%q) segment %d = %+v, want %+v", tc.spec, i, p.Segments[i], tc.want[i])
			}
		}
	}
	bad := []struct{ spec, wantErr string }{
		{"", `unknown kind ""`},
		{"sine:rate=1", `unknown kind "sine"`},
		{"constant", "missing d, rate"},
		{"constant:rate=10", "missing d"},
		{"constant:rate=10,d=10s,x=1", `unknown key "x"`},
		{"constant:rate=10,rate=20,d=1s", "given twice"},
		{"constant:rate=ten,d=1s", `rate="ten": want a number`},
		{"constant:rate=-5,d=1s", "want a rate ≥ 0"},
		{"constant:rate=NaN,d=1s", "want a number"},
		{"constant:rate=5,d=0s", "want a positive duration"},
		{"constant:rate=5,d=soon", "want a duration"},
		{"constant:rate,d=1s", `"rate" is not key=value`},
		{"step:from=10,step=5,every=1s,steps=0", "want a whole number ≥ 1"},
		{"step:from=100,step=-60,every=1s,steps=3", "must be a finite number ≥ 0"},
		{"spike:base=1,peak=2,at=50s,for=20s,d=60s", "ends after d"},
	}
	for _, tc := range bad {
		_, err := ParseProfile(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseProfile(%q) error = %v, want one containing %q", tc.spec, err, tc.wantErr)
		}
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
