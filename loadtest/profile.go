package loadtest

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Segment is a stretch of a profile whose arrival rate (requests per second) moves linearly from From to
// To over Duration; From == To holds a constant rate.
type Segment struct {
	Duration time.Duration `json:"duration_ns"`
	From     float64       `json:"from_rps"`
	To       float64       `json:"to_rps"`
}

// Profile is the target arrival rate over time: its segments played back to back. Every shape offered
// (constant, ramp, step, spike) is piecewise linear, which keeps the schedule exact: request n is due at
// the instant the integral of the rate reaches n, found in closed form rather than by accumulating
// rounded intervals.
type Profile struct {
	Spec     string    `json:"spec"` // the textual form it came from (ParseProfile), for reports
	Segments []Segment `json:"segments"`
}

// Constant holds rate for d.
func Constant(rate float64, d time.Duration) Profile {
	return Profile{
		Spec:     fmt.Sprintf("constant:rate=%s,d=%s", fmtRate(rate), d),
		Segments: []Segment{{Duration: d, From: rate, To: rate}},
	}
}

// Ramp moves the rate linearly from from to to over d.
func Ramp(from, to float64, d time.Duration) Profile {
	return Profile{
		Spec:     fmt.Sprintf("ramp:from=%s,to=%s,d=%s", fmtRate(from), fmtRate(to), d),
		Segments: []Segment{{Duration: d, From: from, To: to}},
	}
}

// Steps holds from for every, then from+step for every, and so on for n steps in all.
func Steps(from, step float64, every time.Duration, n int) Profile {
	p := Profile{Spec: fmt.Sprintf("step:from=%s,step=%s,every=%s,steps=%d", fmtRate(from), fmtRate(step), every, n)}
	for i := 0; i < n; i++ {
		r := from + float64(i)*step
		p.Segments = append(p.Segments, Segment{Duration: every, From: r, To: r})
	}
	return p
}

// Spike holds base for total, except for the window [at, at+length) where it holds peak.
func Spike(base, peak float64, at, length, total time.Duration) Profile {
	p := Profile{Spec: fmt.Sprintf("spike:base=%s,peak=%s,at=%s,for=%s,d=%s", fmtRate(base), fmtRate(peak), at, length, total)}
	if at > 0 {
		p.Segments = append(p.Segments, Segment{Duration: at, From: base, To: base})
	}
	p.Segments = append(p.Segments, Segment{Duration: length, From: peak, To: peak})
	if rest := total - at - length; rest > 0 {
		p.Segments = append(p.Segments, Segment{Duration: rest, From: base, To: base})
	}
	return p
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// Validate reports a profile that cannot be played: no segments, a non-positive duration, or a negative
// or non-finite rate.
func (p Profile) Validate() error {
	if len(p.Segments) == 0 {
		return errors.New("profile has no segments")
	}
	for i, s := range p.Segments {
		if s.Duration <= 0 {
			return fmt.Errorf("profile segment %d: duration %s must be positive", i, s.Duration)
		}
		for _, r := range []float64{s.From, s.To} {
			if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
				return fmt.Errorf("profile segment %d: rate %v must be a finite number ≥ 0", i, r)
			}
		}
	}
	return nil
}

// Duration is the length of the whole profile.
func (p Profile) Duration() time.Duration {
	var d time.Duration
	for _, s := range p.Segments {
		d += s.Duration
	}
	return d
}

// RateAt is the target rate at offset t (0 outside the profile).
func (p Profile) RateAt(t time.Duration) float64 {
	for _, s := range p.Segments {
		if t < s.Duration {
			return s.From + (s.To-s.From)*t.Seconds()/s.Duration.Seconds()
		}
		t -= s.Duration
	}
	return 0
}

// Count is the number of arrivals the profile asks for in [0, t): the integral of the rate.
func (p Profile) Count(t time.Duration) float64 {
	var n float64
	for _, s := range p.Segments {
		if t <= 0 {
			break
		}
		x := math.Min(t.Seconds(), s.Duration.Seconds())
		n += s.From*x + (s.To-s.From)*x*x/(2*s.Duration.Seconds())
		t -= s.Duration
	}
	return n
}

// schedule yields the due offsets of successive requests: request n is due when Count reaches n.
type schedule struct {
	segs     []Segment
	i        int     // current segment
	segStart float64 // seconds from the start of the profile to segment i
	segBase  float64 // arrivals due before segment i
	n        uint64  // index of the next request
}

func newSchedule(p Profile) *schedule { return &schedule{segs: p.Segments} }

// next returns the due offset of the next request, or false when the profile has no more.
func (s *schedule) next() (time.Duration, bool) {
	for s.i < len(s.segs) {
		seg := s.segs[s.i]
		d := seg.Duration.Seconds()
		segCount := (seg.From + seg.To) / 2 * d
		local := float64(s.n) - s.segBase // arrivals into this segment
		if local < segCount {
			// Solve From·t + a·t² = local for t; this form stays exact when a is 0 (constant rate).
			var t float64
			if local > 0 {
				a := (seg.To - seg.From) / (2 * d)
				t = 2 * local / (seg.From + math.Sqrt(math.Max(0, seg.From*seg.From+4*a*local)))
			}
			s.n++
			return time.Duration((s.segStart + math.Min(t, d)) * float64(time.Second)), true
		}
		s.segStart += d
		s.segBase += segCount
		s.i++
	}
	return 0, false
}

// profileKeys lists, per profile kind, the keys its spec needs.
var profileKeys = map[string][]string{
	"constant": {"rate", "d"},
	"ramp":     {"from", "to", "d"},
	"step":     {"from", "step", "every", "steps"},
	"spike":    {"base", "peak", "at", "for", "d"},
}

// ParseProfile reads the CLI's profile form, kind:key=value,…:
//
//	constant:rate=500,d=30s
//	ramp:from=100,to=2000,d=60s
//	step:from=100,step=100,every=10s,steps=5
//	spike:base=200,peak=2000,at=20s,for=5s,d=60s
func ParseProfile(spec string) (Profile, error) {
	kind, rest, _ := strings.Cut(strings.TrimSpace(spec), ":")
	want, ok := profileKeys[kind]
	if !ok {
		return Profile{}, fmt.Errorf("profile %q: unknown kind %q (want constant, ramp, step or spike)", spec, kind)
	}
	vals := map[string]string{}
	if strings.TrimSpace(rest) != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, found := strings.Cut(strings.TrimSpace(kv), "=")
			if !found || k == "" || v == "" {
				return Profile{}, fmt.Errorf("profile %q: %q is not key=value", spec, kv)
			}
			if !contains(want, k) {
				return Profile{}, fmt.Errorf("profile %q: unknown key %q for %s (want %s)", spec, k, kind, strings.Join(want, ", "))
			}
			if _, dup := vals[k]; dup {
				return Profile{}, fmt.Errorf("profile %q: key %q given twice", spec, k)
			}
			vals[k] = v
		}
	}
	var missing []string
	for _, k := range want {
		if _, ok := vals[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Profile{}, fmt.Errorf("profile %q: missing %s (a %s profile needs %s)", spec, strings.Join(missing, ", "), kind, strings.Join(want, ", "))
	}
	pr := profileParser{spec: spec, vals: vals}
	var p Profile
	switch kind {
	case "constant":
		p = Constant(pr.rate("rate"), pr.dur("d"))
	case "ramp":
		p = Ramp(pr.rate("from"), pr.rate("to"), pr.dur("d"))
	case "step":
		p = Steps(pr.rate("from"), pr.float("step"), pr.dur("every"), pr.count("steps"))
	case "spike":
		p = Spike(pr.rate("base"), pr.rate("peak"), pr.durZero("at"), pr.dur("for"), pr.dur("d"))
		if pr.err == nil && pr.durZero("at")+pr.dur("for") > pr.dur("d") {
			pr.err = fmt.Errorf("profile %q: the spike (at+for) ends after d", spec)
		}
	}
	if pr.err != nil {
		return Profile{}, pr.err
	}
	if err := p.Validate(); err != nil {
		return Profile{}, fmt.Errorf("profile %q: %w", spec, err)
	}
	p.Spec = strings.TrimSpace(spec)
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// profileParser converts spec values, keeping the first error so a parse reads straight through.
type profileParser struct {
	spec string
	vals map[string]string
	err  error
}

func (p *profileParser) fail(k, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("profile %q: %s=%q: want %s", p.spec, k, p.vals[k], want)
	}
}

func (p *profileParser) float(k string) float64 {
	f, err := strconv.ParseFloat(p.vals[k], 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.fail(k, "a number")
	}
	return f
}

func (p *profileParser) rate(k string) float64 {
	f := p.float(k)
	if f < 0 {
		p.fail(k, "a rate ≥ 0 (requests per second)")
	}
	return f
}

func (p *profileParser) durZero(k string) time.Duration {
	d, err := time.ParseDuration(p.vals[k])
	if err != nil || d < 0 {
		p.fail(k, "a duration such as 500ms or 30s")
	}
	return d
}

func (p *profileParser) dur(k string) time.Duration {
	d := p.durZero(k)
	if d == 0 {
		p.fail(k, "a positive duration")
	}
	return d
}

func (p *profileParser) count(k string) int {
	n, err := strconv.Atoi(p.vals[k])
	if err != nil || n < 1 {
		p.fail(k, "a whole number ≥ 1")
	}
	return n
}
