package experiment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/resilience-lab/lab/loadtest/plot"
)

// FileBase is the name (without extension) of a report's files: id-variant.
func (r *Report) FileBase() string { return r.ID + "-" + r.Variant }

// Write writes the report's JSON, Markdown and HTML (with its plots, also as standalone SVG) into dir.
func Write(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report %s: %w", r.FileBase(), err)
	}
	files := map[string][]byte{r.FileBase() + ".json": data, r.FileBase() + ".md": []byte(Markdown(r))}
	// Each chart also stands alone: <base>.svg (success), <base>-p99.svg, <base>-backlog.svg.
	charts := Charts(r)
	for i, c := range charts {
		var svg bytes.Buffer
		if err := c.WriteSVG(&svg); err != nil {
			return err
		}
		files[r.FileBase()+[]string{"", "-p99", "-backlog"}[i]+".svg"] = svg.Bytes()
	}
	var page bytes.Buffer
	if err := pageTmpl.Execute(&page, pageData{R: r, Charts: charts}); err != nil {
		return err
	}
	files[r.FileBase()+".html"] = page.Bytes()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Read reads a report Write wrote as JSON (to render it again without running it again).
func Read(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	return &r, nil
}

// Charts are the report's plots: success rate with the fault window shaded and the breakers as bands,
// then p99 latency per stream.
func Charts(r *Report) []plot.Chart {
	window := []plot.Window{{From: r.FaultOnS, To: r.FaultOffS, Label: "fault"}}
	bands := breakerBands(r)
	success := plot.Chart{Title: r.Title + " — " + r.Variant + ": success rate", YLabel: "success", YUnit: "%",
		YMax: 100, XMax: r.DurationS, Windows: window, Bands: bands}
	p99 := plot.Chart{Title: "p99 latency", YLabel: "p99", YUnit: "ms", XMax: r.DurationS, Windows: window, Bands: bands}
	names := make([]string, 0, len(r.Streams))
	for _, s := range r.Streams {
		names = append(names, s.Name)
	}
	for _, name := range names {
		sl := plot.Line{Name: name}
		pl := plot.Line{Name: name}
		for _, s := range r.Seconds {
			st, ok := s.Streams[name]
			y := math.NaN()
			if ok && !math.IsNaN(float64(st.Success)) {
				y = float64(st.Success) * 100
			}
			sl.Points = append(sl.Points, plot.Point{X: float64(s.T) + 0.5, Y: y})
			p := math.NaN()
			if ok && st.Sent > 0 {
				p = st.P99
			}
			pl.Points = append(pl.Points, plot.Point{X: float64(s.T) + 0.5, Y: p})
		}
		success.Lines = append(success.Lines, sl)
		p99.Lines = append(p99.Lines, pl)
	}
	confirmed := plot.Line{Name: "orders confirmed", Dashed: true, Color: "#9467bd"}
	for _, s := range r.Seconds {
		confirmed.Points = append(confirmed.Points, plot.Point{X: float64(s.T) + 0.5, Y: float64(s.Confirmed) * 100})
	}
	success.Lines = append(success.Lines, confirmed)
	charts := []plot.Chart{success, p99}
	if r.PeakBacklog > 0 {
		backlog := plot.Chart{Title: "events waiting in the outboxes", YLabel: "events", XMax: r.DurationS, Windows: window, Bands: bands}
		line := plot.Line{Name: "outbox backlog"}
		for _, s := range r.Seconds {
			line.Points = append(line.Points, plot.Point{X: float64(s.T) + 0.5, Y: float64(s.Backlog)})
		}
		backlog.Lines = append(backlog.Lines, line)
		charts = append(charts, backlog)
	}
	return charts
}

var stateNames = map[float64]string{0: "closed", 1: "half-open", 2: "open"}

func breakerBands(r *Report) []plot.Band {
	keys := map[string]bool{}
	for _, s := range r.Seconds {
		for k := range s.Breakers {
			keys[k] = true
		}
	}
	var bands []plot.Band
	for _, k := range sortedKeys(keys) {
		// The band's label has room for a word: "breaker", or the link when several are watched.
		label := "breaker"
		if len(keys) > 1 {
			_, label, _ = strings.Cut(k, "→")
		}
		b := plot.Band{Label: label}
		for _, s := range r.Seconds {
			v, ok := s.Breakers[k]
			if !ok {
				continue
			}
			state := stateNames[v]
			if n := len(b.Spans); n > 0 && b.Spans[n-1].State == state && b.Spans[n-1].To == float64(s.T) {
				b.Spans[n-1].To = float64(s.T + 1)
				continue
			}
			b.Spans = append(b.Spans, plot.StateSpan{From: float64(s.T), To: float64(s.T + 1), State: state})
		}
		// Policy events are exact: when there are any, they replace the per-second states.
		if spans := eventSpans(r, k); len(spans) > 0 {
			b.Spans = spans
		}
		bands = append(bands, b)
	}
	return bands
}

// eventSpans draws a breaker band from its state-change events.
func eventSpans(r *Report, key string) []plot.StateSpan {
	var spans []plot.StateSpan
	state, from := "closed", 0.0
	for _, e := range r.PolicyEvents {
		if e.Kind != "state_change" || e.Service+"→"+e.Downstream != key || e.To == "" {
			continue
		}
		at := e.Time.Sub(r.Started).Seconds()
		spans = append(spans, plot.StateSpan{From: from, To: at, State: state})
		state, from = e.To, at
	}
	if len(spans) == 0 {
		return nil
	}
	return append(spans, plot.StateSpan{From: from, To: r.DurationS, State: state})
}

// Markdown renders the report for a terminal or a doc page.
func Markdown(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s — %s the policy\n\n", r.Title, r.Variant)
	fmt.Fprintf(&b, "**Verdict: %s** · resilience score %.1f %%\n\n", strings.ToUpper(r.Verdict), r.Score)
	if r.Teaches != "" {
		fmt.Fprintf(&b, "%s\n\n", r.Teaches)
	}
	fmt.Fprintf(&b, "- Faults: %s\n", strings.Join(r.Faults, "; "))
	fmt.Fprintf(&b, "- Load: ")
	for i, s := range r.Streams {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f req/s %v", s.Name, s.Rate, s.Kinds)
	}
	policy := r.Policy
	if policy == "" {
		policy = envString(r.Env)
	}
	fmt.Fprintf(&b, "\n- Policies: %s\n", policy)
	fmt.Fprintf(&b, "- Steady state: %s\n\n", r.Steady)
	b.WriteString("| measure | value |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| fault on → off | %.2f s → %.2f s |\n", r.FaultOnS, r.FaultOffS)
	fmt.Fprintf(&b, "| time to detect | %s (bound %.2f s, from %s) |\n", fmtSeconds(r.TTD), r.TTDBoundS, orDash(r.TTDSource))
	fmt.Fprintf(&b, "| time to recover | %s (bound %.2f s) |\n", fmtSeconds(r.TTR), r.TTRBoundS)
	if r.BreakerClosedS != nil {
		fmt.Fprintf(&b, "| breaker closed after fault off | %s |\n", fmtSeconds(r.BreakerClosedS))
	}
	fmt.Fprintf(&b, "| success during fault (primary) | %s |\n", Pct(float64(r.DuringSuccess)))
	fmt.Fprintf(&b, "| p99 during fault (primary) | %.0f ms |\n", r.DuringP99)
	fmt.Fprintf(&b, "| orders confirmed during fault | %s |\n", Pct(float64(r.DuringConfirmed)))
	for _, name := range sortedKeys(r.StreamDuring) {
		v := r.StreamDuring[name]
		fmt.Fprintf(&b, "| stream %s during fault | %s, p99 %.0f ms |\n", name, Pct(float64(v[0])), float64(v[1]))
	}
	fmt.Fprintf(&b, "| worst second | %s success, p99 %.0f ms |\n", Pct(float64(r.WorstSuccess)), r.WorstP99)
	if !math.IsNaN(float64(r.Amplification)) {
		fmt.Fprintf(&b, "| retry amplification | %.2f (%.0f calls arrived for %.0f served) |\n", float64(r.Amplification), r.AmplificationArrived, r.AmplificationServed)
	}
	if a := r.Accounting; a != nil {
		fmt.Fprintf(&b, "| orders | %d keys, %d acknowledged, %d confirmed, %d rejected, %d cancelled |\n", a.Attempted, a.Acknowledged, a.Confirmed, a.Rejected, a.Cancelled)
		fmt.Fprintf(&b, "| lost / duplicated / stuck | %d / %d / %d |\n", a.Lost, a.Duplicated, a.Stuck)
		fmt.Fprintf(&b, "| payment / stock mismatches | %d / %d |\n", a.PaymentMismatches, a.StockMismatches)
	}
	b.WriteString("\n## Checks\n\n| check | weight | result | measured |\n| --- | --- | --- | --- |\n")
	for _, c := range r.Checks {
		res := "✅ held"
		switch {
		case !c.OK && c.Reported:
			res = "➖ not met (reported)"
		case !c.OK:
			res = "❌ failed"
		}
		fmt.Fprintf(&b, "| %s | %g | %s | %s |\n", c.Name, c.Weight, res, c.Got)
	}
	writeSlowTraces(&b, r)
	if len(r.PolicyTotals) > 0 {
		b.WriteString("\n## Policy activity\n\n| policy counter | total |\n| --- | --- |\n")
		for _, k := range sortedKeys(r.PolicyTotals) {
			fmt.Fprintf(&b, "| %s | %.0f |\n", k, r.PolicyTotals[k])
		}
	}
	if r.Aborted != "" || len(r.Problems) > 0 || (r.Accounting != nil && len(r.Accounting.Problems) > 0) {
		b.WriteString("\n## Problems\n\n")
		if r.Aborted != "" {
			fmt.Fprintf(&b, "- %s\n", r.Aborted)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
		if r.Accounting != nil {
			for _, p := range r.Accounting.Problems {
				fmt.Fprintf(&b, "- %s\n", p)
			}
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func envString(env map[string]map[string]string) string {
	if len(env) == 0 {
		return "none (no policies)"
	}
	var parts []string
	for _, svc := range sortedKeys(env) {
		for _, k := range sortedKeys(env[svc]) {
			parts = append(parts, fmt.Sprintf("%s: %s=%s", svc, k, env[svc][k]))
		}
	}
	return strings.Join(parts, ", ")
}

type pageData struct {
	R      *Report
	Charts []plot.Chart
}

var funcs = template.FuncMap{
	"md":   func(r *Report) string { return Markdown(r) },
	"pct":  func(v Num) string { return Pct(float64(v)) },
	"secs": fmtSeconds,
}

var pageTmpl = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.R.Title}} — {{.R.Variant}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:860px;color:#222}
.pass{color:#1a7f37}.fail{color:#c62828} pre{white-space:pre-wrap;background:#f6f8fa;padding:12px;border-radius:6px;font-size:12px}
.fig{margin:12px 0}
</style></head><body>
<p><a href="index.html">← all experiments</a></p>
<h1>{{.R.Title}} <small>— {{.R.Variant}} the policy</small></h1>
<p><b class="{{.R.Verdict}}">{{.R.Verdict}}</b> · score {{printf "%.1f" .R.Score}} % · TTD {{secs .R.TTD}} · TTR {{secs .R.TTR}} ·
success during fault {{pct .R.DuringSuccess}} · worst p99 {{printf "%.0f" .R.WorstP99}} ms</p>
{{range .Charts}}<div class="fig">{{.SVG}}</div>{{end}}
<pre>{{md .R}}</pre>
</body></html>
`))

// Summary is one line of the suite's table.
type Summary struct {
	Name, Verdict string
	Score         float64
	TTD, TTR      string
	WorstP99      float64
	Lost          string
	File          string
}

// Summarize turns reports into table rows, in order.
func Summarize(reports []*Report) []Summary {
	out := make([]Summary, 0, len(reports))
	for _, r := range reports {
		lost := "—"
		if r.Accounting != nil {
			lost = fmt.Sprint(r.Accounting.Lost + r.Accounting.Duplicated + r.Accounting.Stuck)
		}
		out = append(out, Summary{Name: r.ID + "/" + r.Variant, Verdict: r.Verdict, Score: r.Score,
			TTD: fmtSeconds(r.TTD), TTR: fmtSeconds(r.TTR), WorstP99: r.WorstP99, Lost: lost, File: r.FileBase() + ".html"})
	}
	return out
}

// Table renders the summary as a Markdown table (scenario, verdict, TTD, TTR, worst p99, lost orders).
func Table(rows []Summary) string {
	var b strings.Builder
	b.WriteString("| scenario | verdict | score | TTD | TTR | worst p99 | lost orders |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.1f | %s | %s | %.0f ms | %s |\n", s.Name, s.Verdict, s.Score, s.TTD, s.TTR, s.WorstP99, s.Lost)
	}
	return b.String()
}

// WriteIndex writes index.html and summary.md linking every report in dir.
func WriteIndex(dir string, reports []*Report) error {
	rows := Summarize(reports)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(Table(rows)), 0o644); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := indexTmpl.Execute(&b, rows); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.html"), b.Bytes(), 0o644)
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Resilience lab — experiments</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:900px}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}
.pass{color:#1a7f37}.fail{color:#c62828}</style></head><body>
<h1>Resilience lab — experiments</h1>
<table><tr><th>scenario</th><th>verdict</th><th>score</th><th>TTD</th><th>TTR</th><th>worst p99</th><th>lost orders</th></tr>
{{range .}}<tr><td><a href="{{.File}}">{{.Name}}</a></td><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{printf "%.1f" .Score}}</td>
<td>{{.TTD}}</td><td>{{.TTR}}</td><td>{{printf "%.0f" .WorstP99}} ms</td><td>{{.Lost}}</td></tr>
{{end}}</table></body></html>
`))

// writeSlowTraces renders the cited traces: per second, the slowest request, then its critical path
// hop by hop (the longest child at each step) and the hops off it.
func writeSlowTraces(b *strings.Builder, r *Report) {
	if len(r.SlowTraces) == 0 {
		return
	}
	b.WriteString("\n## Slowest requests, by hop\n\nThe slowest request of each of the fault's slowest seconds, with its trace " +
		"(from the lab's trace store; `curl <toxiproxy>/traces/<trace id>` for every span).\n\n")
	for _, c := range r.SlowTraces {
		s := c.Slowest
		answer := s.Class
		if s.Status != 0 {
			answer = strconv.Itoa(s.Status)
		}
		fmt.Fprintf(b, "- **t=%d s** %s · %s `%s` %s %s → %s", c.T, fmtMs(s.LatencyMs), s.Stream, s.Kind, s.Method, s.Path, orDash(answer))
		if s.TraceID != "" {
			fmt.Fprintf(b, " · trace `%s`", s.TraceID)
		}
		if c.Missing != "" {
			fmt.Fprintf(b, "\n  - trace missing: %s\n", c.Missing)
			continue
		}
		fmt.Fprintf(b, " (%d spans)\n", c.Spans)
		var path, off []string
		for _, h := range c.Hops {
			if h.Critical {
				path = append(path, hopText(h))
			} else if len(off) < maxOffPath {
				off = append(off, hopText(h))
			}
		}
		fmt.Fprintf(b, "  - %s\n", strings.Join(path, " → "))
		if len(off) > 0 {
			fmt.Fprintf(b, "  - also: %s\n", strings.Join(off, "; "))
		}
	}
}

// maxOffPath bounds the hops listed off a trace's critical path.
const maxOffPath = 6

// hopText is one hop in a line: "orders→payments charge 1.48 s (3 attempts: 503, 503, 200; retry.retry ×2)".
func hopText(h Hop) string {
	name := h.Name
	if len(h.Attempts) == 0 && h.Service != "" && !strings.HasPrefix(name, h.Service) {
		name = h.Service + " " + name
	}
	text := name + " " + fmtMs(h.DurationMs)
	var notes []string
	switch n := len(h.Attempts); {
	case n > 1:
		notes = append(notes, fmt.Sprintf("%d attempts: %s", n, strings.Join(h.Attempts, ", ")))
	case n == 1 && h.Attempts[0] != "200" && h.Attempts[0] != "201":
		notes = append(notes, "answered "+h.Attempts[0])
	}
	if h.Status != "" && (len(h.Attempts) > 0 || h.Error) {
		notes = append(notes, h.Status)
	}
	notes = append(notes, h.Events...)
	if len(notes) > 0 {
		text += " (" + strings.Join(notes, "; ") + ")"
	}
	return text
}

// fmtMs formats a latency: "840 ms", "1.52 s".
func fmtMs(ms float64) string {
	if ms < 1000 {
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.2f s", ms/1000)
}
