package experiment

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/resilience-lab/lab/loadtest/plot"
	"github.com/resilience-lab/lab/scenarios/measure"
)

// InstanceProbe samples the callers' client-side discovery series — per-instance attempts and
// ejections of their balancers (discovery_*), the canary's weight, rollbacks and per-version attempts
// (canary_*) — through a run, to tell which instance got how many calls when. The Runner (package
// scenarios) starts it before experiment.Run and stops it after; expectations read it through the
// report's start time. One probe serves one run.
type InstanceProbe struct {
	// Services are the callers scraped (default gateway and orders, the shop's two clients).
	Services []string
	// Interval between samples (default 200 ms): the resolution of the times it measures.
	Interval time.Duration

	mu      sync.Mutex
	samples []InstanceSample
	stop    context.CancelFunc
	done    chan struct{}
}

// InstanceKey names one series of a caller: metric, link, and the instance (registered URL), outcome
// and version labels where the metric has them.
type InstanceKey struct {
	Service, Metric, Downstream, Instance, Outcome, Version, Route string
}

// InstanceSample is one reading of every caller.
type InstanceSample struct {
	At      time.Time
	Values  map[InstanceKey]float64
	Missing []string
}

// Start begins sampling lab until Stop.
func (p *InstanceProbe) Start(ctx context.Context, lab Lab) {
	if len(p.Services) == 0 {
		p.Services = []string{"gateway", "orders"}
	}
	if p.Interval == 0 {
		p.Interval = 200 * time.Millisecond
	}
	ctx, p.stop = context.WithCancel(ctx)
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		hc := &http.Client{Timeout: 2 * time.Second}
		t := time.NewTicker(p.Interval)
		defer t.Stop()
		for {
			s := p.sampleOnce(ctx, hc, lab)
			p.mu.Lock()
			p.samples = append(p.samples, s)
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends sampling and waits for the sampler.
func (p *InstanceProbe) Stop() {
	if p.stop != nil {
		p.stop()
		<-p.done
	}
}

// Samples returns what was read so far.
func (p *InstanceProbe) Samples() []InstanceSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]InstanceSample(nil), p.samples...)
}

func (p *InstanceProbe) sampleOnce(ctx context.Context, hc *http.Client, lab Lab) InstanceSample {
	at := time.Now()
	values, missing := measure.ReadEach(ctx, p.Services, func(ctx context.Context, svc string) (map[InstanceKey]float64, error) {
		return measure.Fetch(ctx, hc, svc, lab.ObserveURL(svc, "metrics"), ParseInstanceMetrics)
	})
	return InstanceSample{At: at, Values: values, Missing: missing}
}

// ParseInstanceMetrics keeps the discovery_* and canary_* series of one caller's exposition, and the
// requests it served by route (http_server_requests_total): what an instance itself saw.
func ParseInstanceMetrics(service string, r io.Reader) (map[InstanceKey]float64, error) {
	out := map[InstanceKey]float64{}
	keep := func(name string) bool {
		return strings.HasPrefix(name, "discovery_") || strings.HasPrefix(name, "canary_") || name == "http_server_requests_total"
	}
	err := measure.EachSeries(r, keep, func(name string, label func(string) string, v float64) {
		out[InstanceKey{Service: service, Metric: name, Downstream: label("downstream"), Instance: label("instance"),
			Outcome: label("outcome"), Version: label("version"), Route: label("route")}] += v
	})
	if err != nil {
		return nil, fmt.Errorf("parse metrics of %s: %w", service, err)
	}
	return out, nil
}

// Match selects series: by metric, and, where set, the service scraped, links (any of), an instance
// name (the registered URL's host: catalog-2), outcome, version and routes (any of).
type Match struct {
	Metric   string
	Service  string
	Links    []string
	Instance string
	Outcome  string
	Version  string
	Routes   []string
}

func (m Match) has(k InstanceKey) bool {
	if k.Metric != m.Metric || (m.Service != "" && k.Service != m.Service) || (m.Outcome != "" && k.Outcome != m.Outcome) ||
		(m.Version != "" && k.Version != m.Version) {
		return false
	}
	if (len(m.Links) > 0 && !contains(m.Links, k.Downstream)) || (len(m.Routes) > 0 && !contains(m.Routes, k.Route)) {
		return false
	}
	return m.Instance == "" || InstanceName(k.Instance) == m.Instance
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// InstanceName is the host of a registered instance URL (http://catalog-2:8081 → catalog-2).
func InstanceName(url string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
	if i := strings.IndexAny(s, ":/"); i >= 0 {
		s = s[:i]
	}
	return s
}

// growth is how much the counters m selects grew from sample a to b: per series, a series that
// appeared counts from zero, one that disappeared (an instance retired) adds nothing, and a service
// that did not answer either sample adds nothing.
func growth(a, b InstanceSample, m Match) float64 {
	var total float64
	for k, v := range b.Values {
		if !m.has(k) || contains(a.Missing, k.Service) {
			continue
		}
		if d := v - a.Values[k]; d > 0 {
			total += d
		}
	}
	return total
}

// value is the sum of the series m selects in one sample (gauges).
func value(s InstanceSample, m Match) (float64, bool) {
	var total float64
	found := false
	for k, v := range s.Values {
		if m.has(k) {
			total += v
			found = true
		}
	}
	return total, found
}

// Between returns the samples from from to to (inclusive).
func Between(samples []InstanceSample, from, to time.Time) []InstanceSample {
	var out []InstanceSample
	for _, s := range samples {
		if !s.At.Before(from) && !s.At.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// Calls is how many attempts the counters m selects counted from from to to.
func Calls(samples []InstanceSample, m Match, from, to time.Time) float64 {
	ss := Between(samples, from, to)
	var total float64
	for i := 1; i < len(ss); i++ {
		total += growth(ss[i-1], ss[i], m)
	}
	return total
}

// LastCall is the time of the last sample from from to to in which the counters m selects grew (zero
// when they never did): when the callers last sent such a call, to the sampling interval.
func LastCall(samples []InstanceSample, m Match, from, to time.Time) time.Time {
	ss := Between(samples, from, to)
	var last time.Time
	for i := 1; i < len(ss); i++ {
		if growth(ss[i-1], ss[i], m) > 0 {
			last = ss[i].At
		}
	}
	return last
}

// FirstCall is the time of the first sample after from in which the counters m selects grew (zero
// when they never did).
func FirstCall(samples []InstanceSample, m Match, from time.Time) time.Time {
	ss := Between(samples, from, time.Now().Add(time.Hour))
	for i := 1; i < len(ss); i++ {
		if growth(ss[i-1], ss[i], m) > 0 {
			return ss[i].At
		}
	}
	return time.Time{}
}

// FirstValue is the time of the first sample after from in which the gauges m selects satisfy ok
// (zero when none does).
func FirstValue(samples []InstanceSample, m Match, from time.Time, ok func(float64) bool) time.Time {
	for _, s := range Between(samples, from, time.Now().Add(time.Hour)) {
		if v, found := value(s, m); found && ok(v) {
			return s.At
		}
	}
	return time.Time{}
}

// InstanceSeries is one line of an instance chart: calls per second over the run.
type InstanceSeries struct {
	Name   string    `json:"name"`
	PerSec []float64 `json:"per_second"` // NaN where no complete sample bounds the second
}

// PerSecond is the growth of the counters m selects in each second of a run of seconds seconds that
// started at start, as a rate over the samples nearest each second's bounds.
func PerSecond(samples []InstanceSample, m Match, start time.Time, seconds int) []float64 {
	ss := Between(samples, start.Add(-time.Second), start.Add(time.Duration(seconds+1)*time.Second))
	out := make([]float64, seconds)
	for t := range out {
		from, to := start.Add(time.Duration(t)*time.Second), start.Add(time.Duration(t+1)*time.Second)
		a, b := nearest(ss, from), nearest(ss, to)
		if a < 0 || b <= a {
			out[t] = math.NaN()
			continue
		}
		var n float64
		for i := a + 1; i <= b; i++ {
			n += growth(ss[i-1], ss[i], m)
		}
		out[t] = n / ss[b].At.Sub(ss[a].At).Seconds()
	}
	return out
}

// nearest is the index of the sample closest to t (-1 when there is none within a second).
func nearest(ss []InstanceSample, t time.Time) int {
	i := sort.Search(len(ss), func(i int) bool { return !ss[i].At.Before(t) })
	best, bestD := -1, time.Second
	for _, j := range []int{i - 1, i} {
		if j >= 0 && j < len(ss) {
			d := ss[j].At.Sub(t)
			if d < 0 {
				d = -d
			}
			if d <= bestD {
				best, bestD = j, d
			}
		}
	}
	return best
}

// InstanceChart plots calls per second to each instance (all outcomes, summed over the links given),
// with r's fault window and extra windows (what else happened: a replica started, a rollback).
func InstanceChart(r *Report, samples []InstanceSample, title string, lines []Match, names []string, extra ...plot.Window) plot.Chart {
	windows := append([]plot.Window{{From: r.FaultOnS, To: r.FaultOffS, Label: "fault"}}, extra...)
	c := plot.Chart{Title: title, YLabel: "calls/s", XMax: r.DurationS, Windows: windows}
	seconds := int(math.Ceil(r.DurationS))
	for i, m := range lines {
		l := plot.Line{Name: names[i]}
		for t, v := range PerSecond(samples, m, r.Started, seconds) {
			l.Points = append(l.Points, plot.Point{X: float64(t) + 0.5, Y: v})
		}
		c.Lines = append(c.Lines, l)
	}
	return c
}

// FaultTime is when the report's fault with name containing part went on (on) or off, as a time (zero
// when it did not).
func FaultTime(r *Report, part string, on bool) time.Time {
	for _, e := range r.FaultEvents {
		if e.On == on && strings.Contains(e.Fault, part) && e.Error == "" {
			return e.At
		}
	}
	return time.Time{}
}

// FirstAnswer is the time of the first sample from from on in which service answered its scrape (zero
// when it never did): when an instance that was started came up.
func FirstAnswer(samples []InstanceSample, service string, from time.Time) time.Time {
	for _, s := range Between(samples, from, time.Now().Add(time.Hour)) {
		if !contains(s.Missing, service) {
			return s.At
		}
	}
	return time.Time{}
}

// LastValue is the sum of the gauges m selects in the last sample that has them.
func LastValue(samples []InstanceSample, m Match) (float64, bool) {
	for i := len(samples) - 1; i >= 0; i-- {
		if v, ok := value(samples[i], m); ok {
			return v, true
		}
	}
	return 0, false
}
