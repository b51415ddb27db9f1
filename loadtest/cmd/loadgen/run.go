package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/loadtest/mixfile"
	"github.com/resilience-lab/lab/loadtest/plot"
	"github.com/resilience-lab/lab/loadtest/report"
	"github.com/resilience-lab/lab/scenarios/fault"
)

const (
	exitOK         = 0
	exitThresholds = 1
	exitUsage      = 2
	exitFailed     = 3

	defaultTarget = "http://127.0.0.1:8080"
	// maxProfile bounds a run in time; --max-requests bounds it in count.
	maxProfile = time.Hour
)

// repeated collects a flag given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// config is the checked command line.
type config struct {
	target      string
	allowRemote bool
	mixPath     string
	profile     loadtest.Profile
	maxInFlight int
	maxRequests uint64
	timeout     time.Duration
	thresholds  []loadtest.Threshold
	windows     []plot.Window
	out         string
	title       string
	progress    string
	faults      []string // --fault values, each one or more ';'-separated specs
	toxiproxy   string
	trace       bool
}

func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var profile string
	var thresholds, annotations, faults repeated
	fs.StringVar(&c.target, "target", "", "base URL of the target (default $LOADGEN_TARGET, else "+defaultTarget+")")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a target that is not loopback (refused by default)")
	fs.StringVar(&c.mixPath, "mix", "", "request mix file, JSON (required), e.g. loadtest/mixes/shop.json")
	fs.StringVar(&profile, "profile", "constant:rate=50,d=10s", "arrival rate profile: constant:rate=R,d=D | ramp:from=R,to=R,d=D |\nstep:from=R,step=R,every=D,steps=N | spike:base=R,peak=R,at=D,for=D,d=D (at most "+maxProfile.String()+")")
	fs.IntVar(&c.maxInFlight, "max-inflight", loadtest.DefaultMaxInFlight, "most requests outstanding at once; a request due beyond it is dropped and counted")
	fs.Uint64Var(&c.maxRequests, "max-requests", 1_000_000, "hard cap on requests scheduled; the run stops when it is reached")
	fs.DurationVar(&c.timeout, "timeout", loadtest.DefaultTimeout, "per-request timeout, body included")
	fs.Var(&thresholds, "threshold", "pass/fail criterion, repeatable: p50|p90|p95|p99|max|mean<300ms, errors<1%, dropped<0.1%, rate>=500")
	fs.Var(&annotations, "annotate", "shade a window in the report charts, repeatable: LABEL@FROM-TO, e.g. 'payments slow@30s-60s' (marks only; injects nothing)")
	fs.Var(&faults, "fault", "inject a fault during the run, repeatable or ';'-separated: TARGET:FAULT[=VALUE][,OPTION=VALUE…][@FROM[-TO]],\ne.g. 'payments:latency=500ms@30s-60s', 'orders-catalog:down@10s-20s', 'payments:kill@5s-15s' (docs/loadtest.md)")
	fs.StringVar(&c.toxiproxy, "toxiproxy", "", "Toxiproxy API of the stack, for --fault (default $LOADGEN_TOXIPROXY, else "+defaultToxiproxy+")")
	fs.BoolVar(&c.trace, "trace", false, "start a trace on every request (a sampled W3C traceparent with a fresh trace id); the summary cites the trace ids of the slowest seconds")
	fs.StringVar(&c.out, "out", "", "directory to write results.json and report.html to")
	fs.StringVar(&c.title, "title", "", "report title (default: mix and profile)")
	fs.StringVar(&c.progress, "progress", "auto", "progress on stderr: auto (rewrite one line on a terminal, else a line per second), line, off")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.target == "" {
		c.target = getenv("LOADGEN_TARGET")
	}
	if c.target == "" {
		c.target = defaultTarget
	}
	if _, err := loadtest.ParseTarget(c.target, c.allowRemote); err != nil {
		return nil, err
	}
	if c.mixPath == "" {
		return nil, errors.New("--mix is required (e.g. --mix loadtest/mixes/trivial.json)")
	}
	var err error
	if c.profile, err = loadtest.ParseProfile(profile); err != nil {
		return nil, err
	}
	if d := c.profile.Duration(); d > maxProfile {
		return nil, fmt.Errorf("profile %q lasts %s: at most %s", profile, d, maxProfile)
	}
	if c.maxInFlight < 1 || c.maxRequests < 1 || c.timeout <= 0 {
		return nil, errors.New("--max-inflight, --max-requests and --timeout must be positive")
	}
	for _, t := range thresholds {
		th, err := loadtest.ParseThreshold(t)
		if err != nil {
			return nil, err
		}
		c.thresholds = append(c.thresholds, th)
	}
	for _, a := range annotations {
		w, err := parseAnnotation(a, c.profile.Duration())
		if err != nil {
			return nil, err
		}
		c.windows = append(c.windows, w)
	}
	if len(faults) > 0 {
		if err := checkFaults(faults, c.profile.Duration()); err != nil {
			return nil, err
		}
		c.faults = faults
		if c.toxiproxy == "" {
			c.toxiproxy = getenv("LOADGEN_TOXIPROXY")
		}
		if c.toxiproxy == "" {
			c.toxiproxy = defaultToxiproxy
		}
		if _, err := loadtest.ParseTarget(c.toxiproxy, c.allowRemote); err != nil {
			return nil, fmt.Errorf("--toxiproxy: %w", err)
		}
	}
	switch c.progress {
	case "auto", "line", "off":
	default:
		return nil, fmt.Errorf("--progress %q: want auto, line or off", c.progress)
	}
	return c, nil
}

// parseAnnotation reads LABEL@FROM-TO, offsets as durations into the run.
func parseAnnotation(s string, end time.Duration) (plot.Window, error) {
	i := strings.LastIndex(s, "@")
	if i <= 0 {
		return plot.Window{}, fmt.Errorf("--annotate %q: want LABEL@FROM-TO, e.g. 'payments slow@30s-60s'", s)
	}
	from, to, ok := strings.Cut(s[i+1:], "-")
	f, err1 := time.ParseDuration(from)
	t, err2 := time.ParseDuration(to)
	if !ok || err1 != nil || err2 != nil || f < 0 || t <= f || t > end {
		return plot.Window{}, fmt.Errorf("--annotate %q: want FROM-TO as durations with FROM < TO ≤ the profile's %s, e.g. 30s-60s", s, end)
	}
	return plot.Window{From: f.Seconds(), To: t.Seconds(), Label: s[:i]}, nil
}

// run is the whole command, testable: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, tty bool) int {
	c, err := parseArgs(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitUsage
	}
	mf, err := mixfile.Load(c.mixPath)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitUsage
	}
	base, _ := loadtest.ParseTarget(c.target, c.allowRemote) // checked in parseArgs
	// Faults are checked against the stack before anything is sent; they go on only during the run.
	var faults *faultSetup
	if len(c.faults) > 0 {
		var code int
		if faults, code, err = setupFaults(ctx, c, getenv); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return code
		}
		defer faults.close()
	}
	client := loadtest.NewClient(c.maxInFlight)
	setupClient := &http.Client{Transport: client.Transport, Timeout: c.timeout, CheckRedirect: client.CheckRedirect}
	mix, err := mf.Build(ctx, base, setupClient)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: preparing the mix:", err)
		return exitFailed
	}
	if want := math.Ceil(c.profile.Count(c.profile.Duration())); want > float64(c.maxRequests) {
		fmt.Fprintf(stderr, "loadgen: warning: the profile asks for %.0f requests; --max-requests %d will stop it early\n", want, c.maxRequests)
	}
	mixName := mf.Name
	if mixName == "" {
		mixName = filepath.Base(c.mixPath)
	}
	fmt.Fprintf(stderr, "loadgen: %s → %s, profile %s (%s), max in flight %d\n",
		mixName, base, c.profile.Spec, c.profile.Duration(), c.maxInFlight)

	// A failing fault stops the run through runCtx; Ctrl-C stops it through ctx.
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	var actions []loadtest.Action
	if faults != nil {
		actions = faults.actions(stopRun)
		for _, s := range faults.schedule.Steps() {
			fmt.Fprintf(stderr, "loadgen: fault %s at %s–%s\n", s.Fault.Name(), s.From, stepEnd(s, c.profile.Duration()))
		}
		faults.schedule.Start(time.Now()) // event offsets count from here, as the run's seconds do
	}
	res, err := loadtest.Run(runCtx, loadtest.Options{
		Profile:     c.profile,
		Mix:         mix,
		MaxRequests: c.maxRequests,
		MaxInFlight: c.maxInFlight,
		Timeout:     c.timeout,
		Client:      client,
		Actions:     actions,
		Progress:    progressPrinter(c.progress, stderr, tty),
		Trace:       c.trace,
	})
	var faultErr, rollbackErr error
	if runCtx.Err() != nil && ctx.Err() == nil {
		faultErr = context.Cause(runCtx)
	}
	rolledBack := 0
	if faults != nil {
		before := len(faults.schedule.Events())
		rollbackErr = faults.rollback()
		rolledBack = len(faults.schedule.Events()) - before
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitUsage
	}
	results, pass := loadtest.EvaluateAll(c.thresholds, res.Totals)
	title := c.title
	if title == "" {
		title = fmt.Sprintf("loadgen: %s, %s", mixName, c.profile.Spec)
	}
	out := outputs{Data: report.Data{
		Title: title, Target: base.String(), Mix: mixName, Command: commandLine(args),
		Result: res, Thresholds: results, Windows: c.windows,
	}}
	if faults != nil {
		out.Faults = faults.schedule.Events()
		out.Windows = append(out.Windows, faultWindows(out.Faults, res.SpanSeconds)...)
		if faults.toxiproxy != nil {
			out.Toxiproxy = faults.toxiproxy.String()
		}
	}
	printSummary(stdout, out.Data)
	printFaultEvents(stdout, out.Faults)

	code := exitOK
	if !pass {
		code = exitThresholds
	}
	switch {
	case faultErr != nil:
		fmt.Fprintf(stderr, "loadgen: %v; the run was stopped, results are partial\n", faultErr)
		code = exitFailed
	case res.Canceled:
		fmt.Fprintln(stderr, "loadgen: interrupted; results are partial")
		code = exitFailed
	}
	if rollbackErr != nil {
		where := "`docker ps -a`"
		if out.Toxiproxy != "" {
			where = out.Toxiproxy + "/proxies and " + where
		}
		fmt.Fprintf(stderr, "loadgen: rolling back the faults failed, some may still be on (check %s): %v\n", where, rollbackErr)
		code = exitFailed
	} else if rolledBack > 0 {
		fmt.Fprintf(stderr, "loadgen: took back %d fault(s) still on at the end\n", rolledBack)
	}
	if c.out != "" {
		if err := writeOutputs(c.out, out); err != nil {
			fmt.Fprintln(stderr, "loadgen: writing results:", err)
			return exitFailed
		}
		fmt.Fprintf(stdout, "results: %s, %s\n", filepath.Join(c.out, "results.json"), filepath.Join(c.out, "report.html"))
	}
	return code
}

// outputs is what results.json holds: the report's data and, for a run with --fault, where the faults
// acted and what they did, as it happened.
type outputs struct {
	report.Data
	Toxiproxy string        `json:"toxiproxy,omitempty"`
	Faults    []fault.Event `json:"faults,omitempty"`
}

func writeOutputs(dir string, o outputs) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	err := write("results.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ") // as report.WriteJSON
		return enc.Encode(o)
	})
	if err != nil {
		return err
	}
	return write("report.html", func(w io.Writer) error { return report.WriteHTML(w, o.Data) })
}

// stepEnd describes when a step goes off.
func stepEnd(s fault.Step, profile time.Duration) string {
	if s.To == 0 {
		return profile.String() + " (the end)"
	}
	return s.To.String()
}

func commandLine(args []string) string {
	parts := []string{"loadgen"}
	for _, a := range args {
		if strings.ContainsAny(a, " '\"<>|&;*?$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// progressPrinter prints one line per second: rewritten in place on a terminal, appended otherwise.
func progressPrinter(mode string, w io.Writer, tty bool) func(loadtest.Progress) {
	if mode == "off" {
		return nil
	}
	inPlace := mode == "auto" && tty
	return func(p loadtest.Progress) {
		line := progressLine(p)
		if inPlace {
			fmt.Fprintf(w, "\r%s\x1b[K", line)
			return
		}
		fmt.Fprintln(w, line)
	}
}

func progressLine(p loadtest.Progress) string {
	s := p.Second
	done := s.OK + s.Failed()
	ok := "–"
	if done > 0 {
		ok = strconv.FormatFloat(float64(s.OK)*100/float64(done), 'f', 1, 64) + "%"
	}
	return fmt.Sprintf("%4ds target %7.1f/s sent %6d drop %5d completed %6d/s ok %6s p50 %8.2fms p99 %8.2fms in-flight %4d | total sent %d ok %d failed %d dropped %d",
		s.T+1, s.Target, s.Sent, s.Dropped, s.Completed, ok, s.Latency.P50, s.Latency.P99, p.InFlight, p.Sent, p.OK, p.Failed, p.Dropped)
}

func printSummary(w io.Writer, d report.Data) {
	r := d.Result
	t := r.Totals
	fmt.Fprintf(w, "\n%s\n", d.Title)
	fmt.Fprintf(w, "  span %.1fs  scheduled %d  sent %d  dropped %d  ok %d  failed %d  error rate %.3f%%  throughput %.1f/s",
		r.SpanSeconds, t.Scheduled, t.Sent, t.Dropped, t.OK, t.Failed(), t.ErrorRate*100, t.Throughput)
	if r.Capped {
		fmt.Fprint(w, "  (stopped at --max-requests)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  latency from due time: p50 %.2fms  p90 %.2fms  p95 %.2fms  p99 %.2fms  max %.2fms  mean %.2fms  (generator lag max %.2fms)\n",
		t.Latency.P50, t.Latency.P90, t.Latency.P95, t.Latency.P99, t.Latency.Max, t.Latency.Mean, t.LagMaxMs)
	if len(t.Errors) > 0 {
		fmt.Fprintf(w, "  failures: %s\n", classList(t.Errors))
	}
	if len(t.Expected) > 0 {
		fmt.Fprintf(w, "  expected outcomes: %s\n", classList(t.Expected))
	}
	if len(r.Kinds) > 1 {
		fmt.Fprintf(w, "  %-20s %9s %9s %9s %9s %10s %10s\n", "kind", "sent", "dropped", "ok", "failed", "p50", "p99")
		for _, k := range r.Kinds {
			var failed uint64
			for _, v := range k.Errors {
				failed += v
			}
			fmt.Fprintf(w, "  %-20s %9d %9d %9d %9d %8.2fms %8.2fms\n", k.Name, k.Sent, k.Dropped, k.OK, failed, k.Latency.P50, k.Latency.P99)
		}
	}
	printSlowestTraced(w, r.Seconds, 3)
	if len(d.Thresholds) > 0 {
		fmt.Fprintln(w, "  thresholds:")
		for _, th := range d.Thresholds {
			mark, actual := "ok  ", th.Format(th.Actual)
			if !th.Pass {
				mark = "FAIL"
			}
			if th.Note != "" {
				actual = th.Note
			}
			fmt.Fprintf(w, "    %s %-20s actual %s\n", mark, th.Expr, actual)
		}
	}
}

func classList(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// printSlowestTraced lists the slowest request of each of the n slowest seconds, with its trace id, when
// the run traced its requests (--trace): what to look up first in the trace store.
func printSlowestTraced(w io.Writer, seconds []loadtest.Second, n int) {
	var slow []*loadtest.SlowRequest
	var at []int
	for _, sec := range seconds {
		if s := sec.Slowest; s != nil && s.TraceID != "" {
			slow, at = append(slow, s), append(at, sec.T)
		}
	}
	if len(slow) == 0 {
		return
	}
	order := make([]int, len(slow))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return slow[order[a]].LatencyMs > slow[order[b]].LatencyMs })
	fmt.Fprintln(w, "  slowest traced requests:")
	for _, i := range order[:min(n, len(order))] {
		s := slow[i]
		outcome := strconv.Itoa(s.Status)
		if s.Status == 0 {
			outcome = s.Class
		}
		fmt.Fprintf(w, "    t=%ds %8.2fms %s %s %s → %s  trace %s\n", at[i], s.LatencyMs, s.Kind, s.Method, s.Path, outcome, s.TraceID)
	}
}
