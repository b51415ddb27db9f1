// Package report writes a load test's results: JSON for machines and a self-contained HTML page (inline
// CSS and SVG charts from package plot, no scripts) for people.
package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/loadtest/plot"
)

// Data is what a report shows; results.json is its JSON encoding.
type Data struct {
	Title      string                     `json:"title"`
	Target     string                     `json:"target"`
	Mix        string                     `json:"mix"`
	Command    string                     `json:"command,omitempty"`
	Result     *loadtest.Result           `json:"result"`
	Thresholds []loadtest.ThresholdResult `json:"thresholds,omitempty"`
	// Windows are stretches to shade on every chart (faults injected, say), in seconds from the start.
	Windows []plot.Window `json:"windows,omitempty"`
	// Bands are state bands to draw under every chart (a breaker's state, say).
	Bands []plot.Band `json:"bands,omitempty"`
}

// WriteJSON writes d as indented JSON.
func WriteJSON(w io.Writer, d Data) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// Charts are the standard three plots of a run: throughput, success rate and latency per second, each
// with the given windows shaded and bands drawn. Points sit mid-second: second t covers [t, t+1).
func Charts(r *loadtest.Result, windows []plot.Window, bands []plot.Band) []plot.Chart {
	n := len(r.Seconds)
	target := make([]plot.Point, n)
	sent := make([]plot.Point, n)
	completed := make([]plot.Point, n)
	ok := make([]plot.Point, n)
	success := make([]plot.Point, n)
	p50 := make([]plot.Point, n)
	p90 := make([]plot.Point, n)
	p99 := make([]plot.Point, n)
	for i, s := range r.Seconds {
		x := float64(s.T) + 0.5
		// A partial last second is scaled to a per-second rate.
		width := math.Min(1, r.SpanSeconds-float64(s.T))
		if width <= 0 {
			width = 1
		}
		target[i] = plot.Point{X: x, Y: s.Target / width}
		sent[i] = plot.Point{X: x, Y: float64(s.Sent) / width}
		completed[i] = plot.Point{X: x, Y: float64(s.Completed) / width}
		ok[i] = plot.Point{X: x, Y: float64(s.OK) / width}
		rate, has := s.SuccessRate()
		y := math.NaN()
		if has {
			y = rate * 100
		}
		success[i] = plot.Point{X: x, Y: y}
		lat := func(v float64) float64 {
			if s.Sent == 0 || s.Sent == s.Errors[loadtest.ClassBuild] {
				return math.NaN() // nothing completed: no latency, not zero latency
			}
			return v
		}
		p50[i] = plot.Point{X: x, Y: lat(s.Latency.P50)}
		p90[i] = plot.Point{X: x, Y: lat(s.Latency.P90)}
		p99[i] = plot.Point{X: x, Y: lat(s.Latency.P99)}
	}
	xmax := math.Max(1, math.Ceil(r.SpanSeconds))
	return []plot.Chart{
		{
			Title: "Throughput", YLabel: "requests / s", XMax: xmax, Windows: windows, Bands: bands,
			Lines: []plot.Line{
				{Name: "target", Points: target, Color: "#7f7f7f", Dashed: true},
				{Name: "sent", Points: sent, Color: "#1f77b4"},
				{Name: "ok (by due second)", Points: ok, Color: "#2ca02c"},
				{Name: "completed", Points: completed, Color: "#9467bd"},
			},
		},
		{
			Title: "Success rate", YLabel: "% of due requests", YUnit: "%", YMax: 100, XMax: xmax, Windows: windows, Bands: bands,
			Lines: []plot.Line{{Name: "success", Points: success, Color: "#2ca02c"}},
		},
		{
			Title: "Latency from due time", YLabel: "ms", YUnit: "ms", XMax: xmax, Windows: windows, Bands: bands,
			Lines: []plot.Line{
				{Name: "p50", Points: p50, Color: "#1f77b4"},
				{Name: "p90", Points: p90, Color: "#ff7f0e"},
				{Name: "p99", Points: p99, Color: "#d62728"},
			},
		},
	}
}

// WriteHTML writes the report page.
func WriteHTML(w io.Writer, d Data) error {
	if d.Result == nil {
		return fmt.Errorf("report: no result")
	}
	view := struct {
		Data
		Charts []template.HTML
		Errors []classCount
		Expect []classCount
		Pass   bool
	}{Data: d, Pass: true}
	for _, c := range Charts(d.Result, d.Windows, d.Bands) {
		view.Charts = append(view.Charts, c.SVG())
	}
	view.Errors = sorted(d.Result.Totals.Errors)
	view.Expect = sorted(d.Result.Totals.Expected)
	for _, t := range d.Thresholds {
		view.Pass = view.Pass && t.Pass
	}
	return page.Execute(w, view)
}

type classCount struct {
	Class string
	Count uint64
}

func sorted(m map[string]uint64) []classCount {
	out := make([]classCount, 0, len(m))
	for k, v := range m {
		out = append(out, classCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].Class < out[j].Class
	})
	return out
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct": func(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" },
	"f1":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"ms":  func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"success": func(s loadtest.Second) string {
		if r, ok := s.SuccessRate(); ok {
			return strconv.FormatFloat(r*100, 'f', 1, 64) + "%"
		}
		return "–"
	},
	"classes": func(m map[string]uint64) string {
		s := ""
		for _, c := range sorted(m) {
			if s != "" {
				s += ", "
			}
			s += c.Class + " " + strconv.FormatUint(c.Count, 10)
		}
		return s
	},
	"fmt": func(t loadtest.ThresholdResult, v float64) string { return t.Format(v) },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 20px; margin-bottom: 4px; }
h2 { font-size: 16px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; }
td.l, th.l { text-align: left; }
.meta { color: #555; font-size: 13px; }
.pass { color: #1a7f37; font-weight: bold; }
.fail { color: #c62828; font-weight: bold; }
svg.chart { display: block; margin: 12px 0; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 1px 4px; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<div class="meta">
target <code>{{.Target}}</code> · mix <code>{{.Mix}}</code> · profile <code>{{.Result.Profile.Spec}}</code><br>
started {{.Result.Started.Format "2006-01-02 15:04:05 MST"}} · span {{f1 .Result.SpanSeconds}} s · max in flight {{.Result.MaxInFlight}} · max requests {{.Result.MaxRequests}}
{{- if .Result.Capped}} · <span class="fail">stopped at the request cap</span>{{end}}
{{- if .Result.Canceled}} · <span class="fail">canceled</span>{{end}}
{{- if .Command}}<br>command <code>{{.Command}}</code>{{end}}
</div>

{{if .Thresholds}}
<h2>Thresholds: {{if .Pass}}<span class="pass">all passed</span>{{else}}<span class="fail">violated</span>{{end}}</h2>
<table>
<tr><th class="l">threshold</th><th>actual</th><th class="l">result</th></tr>
{{range .Thresholds}}<tr><td class="l"><code>{{.Expr}}</code></td><td>{{if .Note}}–{{else}}{{fmt . .Actual}}{{end}}</td><td class="l">{{if .Pass}}<span class="pass">pass</span>{{else}}<span class="fail">FAIL</span>{{end}}{{if .Note}} ({{.Note}}){{end}}</td></tr>
{{end}}</table>
{{end}}

<h2>Totals</h2>
{{with .Result.Totals}}
<table>
<tr><th>scheduled</th><th>sent</th><th>dropped</th><th>ok</th><th>failed</th><th>error rate</th><th>throughput</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th><th>mean</th><th>generator lag max</th></tr>
<tr><td>{{.Scheduled}}</td><td>{{.Sent}}</td><td>{{.Dropped}}</td><td>{{.OK}}</td><td>{{.Failed}}</td><td>{{pct .ErrorRate}}</td><td>{{f1 .Throughput}}/s</td>
<td>{{ms .Latency.P50}} ms</td><td>{{ms .Latency.P90}} ms</td><td>{{ms .Latency.P95}} ms</td><td>{{ms .Latency.P99}} ms</td><td>{{ms .Latency.Max}} ms</td><td>{{ms .Latency.Mean}} ms</td><td>{{ms .LagMaxMs}} ms</td></tr>
</table>
{{end}}
{{if .Errors}}<table><tr><th class="l">failure class</th><th>count</th></tr>{{range .Errors}}<tr><td class="l">{{.Class}}</td><td>{{.Count}}</td></tr>{{end}}</table>{{end}}
{{if .Expect}}<table><tr><th class="l">expected outcome</th><th>count</th></tr>{{range .Expect}}<tr><td class="l">{{.Class}}</td><td>{{.Count}}</td></tr>{{end}}</table>{{end}}

<h2>Request kinds</h2>
<table>
<tr><th class="l">kind</th><th>sent</th><th>dropped</th><th>ok</th><th class="l">failures</th><th class="l">expected</th><th>p50</th><th>p99</th><th>max</th></tr>
{{range .Result.Kinds}}<tr><td class="l">{{.Name}}</td><td>{{.Sent}}</td><td>{{.Dropped}}</td><td>{{.OK}}</td><td class="l">{{classes .Errors}}</td><td class="l">{{classes .Expected}}</td><td>{{ms .Latency.P50}} ms</td><td>{{ms .Latency.P99}} ms</td><td>{{ms .Latency.Max}} ms</td></tr>
{{end}}</table>

<h2>Over time</h2>
{{range .Charts}}{{.}}
{{end}}

{{if .Result.Actions}}
<h2>Actions</h2>
<table>
<tr><th class="l">action</th><th>due (s)</th><th>started (s)</th><th>finished (s)</th><th class="l">outcome</th></tr>
{{range .Result.Actions}}<tr><td class="l">{{.Name}}</td><td>{{f1 .At}}</td><td>{{if .Skipped}}–{{else}}{{f1 .Started}}{{end}}</td><td>{{if .Skipped}}–{{else}}{{f1 .Finished}}{{end}}</td><td class="l">{{if .Skipped}}skipped{{else if .Error}}<span class="fail">{{.Error}}</span>{{else}}ok{{end}}</td></tr>
{{end}}</table>
{{end}}

<h2>Per second</h2>
<details><summary>{{len .Result.Seconds}} seconds</summary>
<table>
<tr><th>t</th><th>target</th><th>sent</th><th>dropped</th><th>completed</th><th>ok</th><th>success</th><th class="l">failures</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th><th>lag max</th></tr>
{{range .Result.Seconds}}<tr><td>{{.T}}</td><td>{{f1 .Target}}</td><td>{{.Sent}}</td><td>{{.Dropped}}</td><td>{{.Completed}}</td><td>{{.OK}}</td><td>{{success .}}</td><td class="l">{{classes .Errors}}</td><td>{{ms .Latency.P50}}</td><td>{{ms .Latency.P90}}</td><td>{{ms .Latency.P95}}</td><td>{{ms .Latency.P99}}</td><td>{{ms .Latency.Max}}</td><td>{{ms .LagMaxMs}}</td></tr>
{{end}}</table>
</details>
<p class="meta">Latency runs from each request's due time, not its send time, so a stalled target cannot hide behind a stalled generator. Rows describe requests due in that second; "completed" counts responses that arrived in it.</p>
</body>
</html>
`
