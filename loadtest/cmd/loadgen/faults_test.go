package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/resilience-lab/lab/loadtest/plot"
	"github.com/resilience-lab/lab/scenarios/fault"
)

// env returns a getenv that knows only kv.
func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestFaultUsageErrorsExitTwoWithAMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown fault", nil, []string{"--fault", "payments:earthquake"}, `unknown fault "earthquake"`},
		{"unknown target", nil, []string{"--fault", "warehouse:latency=1s"}, "neither a link nor a service"},
		{"bad duration", nil, []string{"--fault", "orders-payments:latency=fast"}, `latency "fast"`},
		{"end before start", nil, []string{"--fault", "payments:latency=1s@20s-10s"}, "after the start"},
		{"ends after the profile", nil, []string{"--fault", "payments:latency=1s@5s-20s"}, "after the end of the profile (10s)"},
		{"starts at the end", nil, []string{"--fault", "payments:latency=1s@10s"}, "not before the end of the profile"},
		{"second of two specs", nil, []string{"--fault", "payments:latency=1s@1s-2s; payments:latency=1s,colour=red"}, `unknown option "colour"`},
		{"container fault on a link", nil, []string{"--fault", "orders-payments:kill"}, "container fault"},
		{"no spec", nil, []string{"--fault", " ; "}, "no fault spec"},
		{"remote toxiproxy", nil, []string{"--fault", "payments:down", "--toxiproxy", "http://toxiproxy.example:8474"}, "--toxiproxy: target"},
		{"remote toxiproxy from the environment", map[string]string{"LOADGEN_TOXIPROXY": "http://10.0.0.5:8474"},
			[]string{"--fault", "payments:down"}, "not a loopback address"},
		{"toxiproxy not a URL", nil, []string{"--fault", "payments:down", "--toxiproxy", "127.0.0.1:8474"}, "want an http://"},
	} {
		args := append([]string{"--mix", trivialMix, "--profile", "constant:rate=1,d=10s"}, tc.args...)
		code, out, errOut := runCLI(t, env(tc.env), args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d stderr %q, want exit %d and %q (stdout %q)", tc.name, code, errOut, exitUsage, tc.want, out)
		}
	}
}

// labToxiproxy is an in-process Toxiproxy with one proxy, named after a link of the lab, in front of an
// httptest server.
type labToxiproxy struct {
	api    *httptest.Server
	client *toxiclient.Client
	proxy  *toxiclient.Proxy
}

// startToxiproxy starts a Toxiproxy API (wrapped by wrap, when not nil) with a proxy called link in front
// of upstream.
func startToxiproxy(t *testing.T, link string, upstream *httptest.Server, wrap func(http.Handler) http.Handler) *labToxiproxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	var h http.Handler = server.Routes()
	if wrap != nil {
		h = wrap(h)
	}
	api := httptest.NewServer(h)
	t.Cleanup(api.Close)
	client := toxiclient.NewClient(api.URL)
	proxy, err := client.CreateProxy(link, "127.0.0.1:0", strings.TrimPrefix(upstream.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Delete() }) // stops its listener before the API goes
	return &labToxiproxy{api: api, client: client, proxy: proxy}
}

func (l *labToxiproxy) target() string { return "http://" + l.proxy.Listen }

// toxicsLeft returns the toxics still on the proxy.
func (l *labToxiproxy) toxicsLeft(t *testing.T) []toxiclient.Toxic {
	t.Helper()
	toxics, err := l.proxy.Toxics()
	if err != nil {
		t.Fatal(err)
	}
	return toxics
}

func healthz() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
}

func readOutputs(t *testing.T, dir string) outputs {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var o outputs
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestLatencyFaultShowsInsideItsWindowOnly injects 600 ms of latency from 2 s to 4 s of a 6 s run: the
// seconds inside the window have a p99 of at least 600 ms, the seconds a whole second away from it
// are fast, the window is shaded and recorded, and no toxic is left.
func TestLatencyFaultShowsInsideItsWindowOnly(t *testing.T) {
	upstream := healthz()
	defer upstream.Close()
	tp := startToxiproxy(t, "gateway-payments", upstream, nil)
	dir := t.TempDir()
	// "payments" is every link into payments: in the lab, two; in this Toxiproxy, only gateway-payments.
	code, out, errOut := runCLI(t, noEnv, "--target", tp.target(), "--mix", trivialMix,
		"--profile", "constant:rate=10,d=6s", "--fault", "payments:latency=600ms@2s-4s",
		"--toxiproxy", tp.api.URL, "--threshold", "errors<1%", "--out", dir, "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if left := tp.toxicsLeft(t); len(left) != 0 {
		t.Errorf("toxics left after the run: %+v", left)
	}
	o := readOutputs(t, dir)
	secs := o.Result.Seconds
	if len(secs) != 6 {
		t.Fatalf("%d seconds in the results, want 6", len(secs))
	}
	for _, s := range secs {
		t.Logf("second %d: p99 %.1f ms", s.T, s.Latency.P99)
	}
	for _, s := range []int{2, 3} {
		if p99 := secs[s].Latency.P99; p99 < 590 {
			t.Errorf("second %d, inside the fault: p99 %.1f ms, want ≥ 600 ms", s, p99)
		}
	}
	for _, s := range []int{0, 5} {
		if p99 := secs[s].Latency.P99; p99 >= 300 {
			t.Errorf("second %d, a second away from the fault: p99 %.1f ms, want well under 600 ms", s, p99)
		}
	}
	if len(o.Faults) != 2 || !o.Faults[0].On || o.Faults[1].On || o.Faults[0].Error != "" || o.Faults[1].Error != "" ||
		o.Faults[0].Fault != "gateway-payments: latency 600ms" {
		t.Fatalf("fault events: %+v", o.Faults)
	}
	if on, off := o.Faults[0].Offset, o.Faults[1].Offset; on < 2 || on > 3 || off < 4 || off > 5 {
		t.Errorf("fault on at %.2fs, off at %.2fs: want about 2s and 4s", on, off)
	}
	if len(o.Windows) != 1 || o.Windows[0].From != o.Faults[0].Offset || o.Windows[0].To != o.Faults[1].Offset ||
		o.Windows[0].Label != "gateway-payments: latency 600ms" {
		t.Errorf("windows %+v, want one from the on event to the off event", o.Windows)
	}
	if o.Toxiproxy != tp.api.URL || !strings.Contains(out, "on  gateway-payments: latency 600ms") {
		t.Errorf("toxiproxy %q; summary:\n%s", o.Toxiproxy, out)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil || !strings.Contains(string(html), "gateway-payments: latency 600ms") {
		t.Errorf("report.html does not shade the fault: %v", err)
	}
}

// TestViolatedThresholdWithAFaultExitsOne keeps a fault on for the whole run: the threshold it breaks
// fails the run with exit 1, and the rollback at the end takes the toxic off.
func TestViolatedThresholdWithAFaultExitsOne(t *testing.T) {
	upstream := healthz()
	defer upstream.Close()
	tp := startToxiproxy(t, "orders-payments", upstream, nil)
	code, out, errOut := runCLI(t, noEnv, "--target", tp.target(), "--mix", trivialMix,
		"--profile", "constant:rate=10,d=1s", "--fault", "orders-payments:latency=100ms",
		"--toxiproxy", tp.api.URL, "--threshold", "p50<50ms", "--progress", "off")
	if code != exitThresholds || !strings.Contains(out, "FAIL p50<50ms") {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitThresholds, out, errOut)
	}
	if !strings.Contains(errOut, "took back 1 fault(s) still on at the end") {
		t.Errorf("stderr does not tell of the rollback:\n%s", errOut)
	}
	if left := tp.toxicsLeft(t); len(left) != 0 {
		t.Errorf("toxics left after the run: %+v", left)
	}
}

// TestFaultThatFailsToInjectStopsTheRun makes the Toxiproxy refuse the second fault: the run stops,
// the first fault is rolled back, and the exit code is 3.
func TestFaultThatFailsToInjectStopsTheRun(t *testing.T) {
	upstream := healthz()
	defer upstream.Close()
	refuseBandwidth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/toxics") {
				body, _ := io.ReadAll(r.Body)
				if strings.Contains(string(body), `"bandwidth"`) {
					http.Error(w, `{"error":"refused by the test","status":500}`, http.StatusInternalServerError)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			next.ServeHTTP(w, r)
		})
	}
	tp := startToxiproxy(t, "gateway-payments", upstream, refuseBandwidth)
	dir := t.TempDir()
	code, out, errOut := runCLI(t, noEnv, "--target", tp.target(), "--mix", trivialMix,
		"--profile", "constant:rate=10,d=30s", "--fault", "gateway-payments:latency=10ms",
		"--fault", "gateway-payments:bandwidth=1@1s", "--toxiproxy", tp.api.URL, "--out", dir, "--progress", "off")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailed, out, errOut)
	}
	if !strings.Contains(errOut, `fault "on: gateway-payments: bandwidth 1 KB/s" failed`) || !strings.Contains(errOut, "refused by the test") ||
		!strings.Contains(errOut, "the run was stopped") {
		t.Errorf("stderr does not say which fault failed and why:\n%s", errOut)
	}
	if left := tp.toxicsLeft(t); len(left) != 0 {
		t.Errorf("toxics left after the run: %+v", left)
	}
	o := readOutputs(t, dir)
	if !o.Result.Canceled || o.Result.SpanSeconds >= 30 {
		t.Errorf("the run went on after the failure: canceled %v, span %.1fs", o.Result.Canceled, o.Result.SpanSeconds)
	}
	var failed int
	for _, e := range o.Faults {
		if e.Error != "" {
			failed++
		}
	}
	if len(o.Faults) != 4 || failed != 1 { // latency on, bandwidth on (failed), both off in the rollback
		t.Errorf("fault events: %+v", o.Faults)
	}
}

// TestInterruptRollsBackTheFaults cancels the run (as Ctrl-C does) while a fault is on.
func TestInterruptRollsBackTheFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var n atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 3 {
			cancel()
		}
		fmt.Fprint(w, "ok")
	}))
	defer upstream.Close()
	tp := startToxiproxy(t, "gateway-catalog", upstream, nil)
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"--target", tp.target(), "--mix", trivialMix, "--profile", "constant:rate=10,d=30s",
		"--fault", "catalog:latency=20ms", "--toxiproxy", tp.api.URL, "--progress", "off"}, noEnv, &out, &errOut, false)
	if code != exitFailed || !strings.Contains(errOut.String(), "interrupted") {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailed, &out, &errOut)
	}
	if left := tp.toxicsLeft(t); len(left) != 0 {
		t.Errorf("toxics left after the interrupted run: %+v", left)
	}
}

func TestFaultsTheStackCannotTake(t *testing.T) {
	upstream := healthz()
	defer upstream.Close()
	tp := startToxiproxy(t, "gateway-payments", upstream, nil)
	var sent atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent.Add(1) }))
	defer target.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		// A lab link this Toxiproxy has no proxy for: an error before the run, not in its middle.
		{"link not in the stack", []string{"--fault", "orders-catalog:latency=1s", "--toxiproxy", tp.api.URL},
			exitUsage, `"orders-catalog" is neither a link nor a service reached by one (links: gateway-payments)`},
		{"toxiproxy down", []string{"--fault", "payments:latency=1s", "--toxiproxy", "http://127.0.0.1:1"},
			exitFailed, "the Toxiproxy API at http://127.0.0.1:1 does not answer"},
	} {
		code, out, errOut := runCLI(t, noEnv, append([]string{"--target", target.URL, "--mix", trivialMix}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d stderr %q, want exit %d and %q (stdout %q)", tc.name, code, errOut, tc.code, tc.want, out)
		}
	}
	if sent.Load() != 0 {
		t.Errorf("%d requests were sent despite the refused faults", sent.Load())
	}
}

// fakeDocker is enough of the Docker engine API for container faults: it lists containers by label
// filter and records the calls made on them.
type fakeDocker struct {
	containers []fakeContainer
	mu         sync.Mutex
	calls      []string
}

type fakeContainer struct {
	ID     string
	Labels map[string]string
}

var versioned = regexp.MustCompile(`^/v[0-9.]+`)

func (f *fakeDocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := versioned.ReplaceAllString(r.URL.Path, "")
	w.Header().Set("Api-Version", "1.41")
	switch {
	case path == "/_ping":
		fmt.Fprint(w, "OK")
	case path == "/containers/json" && r.Method == http.MethodGet:
		var filters map[string]map[string]bool
		if err := json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters); err != nil {
			http.Error(w, `{"message":"bad filters"}`, http.StatusBadRequest)
			return
		}
		list := []map[string]any{}
		for _, c := range f.containers {
			match := true
			for label := range filters["label"] {
				k, v, _ := strings.Cut(label, "=")
				match = match && c.Labels[k] == v
			}
			if match {
				list = append(list, map[string]any{"Id": c.ID, "Labels": c.Labels})
			}
		}
		_ = json.NewEncoder(w).Encode(list)
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/containers/"):
		f.mu.Lock()
		f.calls = append(f.calls, path+"?"+r.URL.RawQuery)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, `{"message":"not in the fake"}`, http.StatusNotFound)
	}
}

func (f *fakeDocker) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func composeLabels(project, service string) map[string]string {
	return map[string]string{composeProjectLabel: project, composeServiceLabel: service}
}

// TestContainerFaultActsOnTheComposeService stops payments from 1 s to 2 s through a fake Docker engine:
// the reslab project's payments container is stopped and started again; another project's is untouched.
func TestContainerFaultActsOnTheComposeService(t *testing.T) {
	docker := &fakeDocker{containers: []fakeContainer{
		{ID: "reslab-payments", Labels: composeLabels("reslab", "payments")},
		{ID: "reslab-orders", Labels: composeLabels("reslab", "orders")},
		{ID: "other-payments", Labels: composeLabels("other", "payments")},
	}}
	engine := httptest.NewServer(docker)
	defer engine.Close()
	target := healthz()
	defer target.Close()
	dockerEnv := env(map[string]string{"DOCKER_HOST": "tcp://" + strings.TrimPrefix(engine.URL, "http://")})
	dir := t.TempDir()
	code, out, errOut := runCLI(t, dockerEnv, "--target", target.URL, "--mix", trivialMix,
		"--profile", "constant:rate=5,d=3s", "--fault", "payments:stop@1s-2s", "--out", dir, "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := []string{"/containers/reslab-payments/stop?t=2", "/containers/reslab-payments/start?"}
	if got := docker.recorded(); !slices.Equal(got, want) {
		t.Errorf("engine calls %q, want %q", got, want)
	}
	o := readOutputs(t, dir)
	if len(o.Faults) != 2 || o.Faults[0].Fault != "payments: container stop" || len(o.Windows) != 1 || o.Toxiproxy != "" {
		t.Errorf("faults %+v, windows %+v, toxiproxy %q", o.Faults, o.Windows, o.Toxiproxy)
	}

	// A service without a container in the project, and no engine at all, are refused before the run.
	for _, tc := range []struct {
		name string
		env  func(string) string
		want string
	}{
		{"no container", dockerEnv, `no container of service "catalog" in compose project "reslab"`},
		{"no engine", env(map[string]string{"DOCKER_HOST": "unix://" + filepath.Join(t.TempDir(), "none.sock")}), "the Docker engine does not answer"},
		{"remote engine", env(map[string]string{"DOCKER_HOST": "tcp://docker.example:2375"}), "not a loopback address"},
	} {
		code, out, errOut := runCLI(t, tc.env, "--target", target.URL, "--mix", trivialMix,
			"--profile", "constant:rate=5,d=3s", "--fault", "catalog:kill@1s-2s", "--progress", "off")
		if code != exitFailed || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d stderr %q, want exit %d and %q (stdout %q)", tc.name, code, errOut, exitFailed, tc.want, out)
		}
	}
	if got := docker.recorded(); len(got) != 2 {
		t.Errorf("refused runs touched containers: %q", got)
	}
}

func TestFaultWindows(t *testing.T) {
	at := func(name string, on bool, offset float64, errText string) fault.Event {
		return fault.Event{Fault: name, On: on, Offset: offset, Error: errText}
	}
	events := []fault.Event{
		at("a", true, 1, ""), at("b", true, 2, "refused"), at("a", false, 3, ""),
		at("a", true, 4, ""), at("b", false, 9.5, ""), at("a", false, 9.6, ""), // rolled back after a 9 s run
	}
	got := faultWindows(events, 9)
	want := []plot.Window{
		{From: 1, To: 3, Label: "a"}, {From: 2, To: 9, Label: "b (failed to inject)"}, {From: 4, To: 9, Label: "a"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("windows %+v, want %+v", got, want)
	}
}

// TestFailedRollbackExitsThree makes the Toxiproxy refuse to remove toxics: the run says so and fails.
func TestFailedRollbackExitsThree(t *testing.T) {
	upstream := healthz()
	defer upstream.Close()
	refuseRemoval := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/toxics/") {
				http.Error(w, `{"error":"removal refused by the test","status":500}`, http.StatusInternalServerError)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	tp := startToxiproxy(t, "gateway-payments", upstream, refuseRemoval)
	code, out, errOut := runCLI(t, noEnv, "--target", tp.target(), "--mix", trivialMix,
		"--profile", "constant:rate=10,d=1s", "--fault", "gateway-payments:latency=10ms",
		"--toxiproxy", tp.api.URL, "--progress", "off")
	if code != exitFailed || !strings.Contains(errOut, "rolling back the faults failed, some may still be on (check "+tp.api.URL+"/proxies") ||
		!strings.Contains(errOut, "removal refused by the test") {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailed, out, errOut)
	}
}

// TestFaultOnAReplicaActsOnItsProxy targets one replica of the compose stack (catalog-1, behind
// gateway-catalog-1): the name passes the check against the lab's proxy names and the toxic lands on
// that replica's proxy.
func TestFaultOnAReplicaActsOnItsProxy(t *testing.T) {
	upstream := healthz()
	defer upstream.Close()
	tp := startToxiproxy(t, "gateway-catalog-1", upstream, nil)
	dir := t.TempDir()
	code, out, errOut := runCLI(t, noEnv, "--target", tp.target(), "--mix", trivialMix,
		"--profile", "constant:rate=10,d=3s", "--fault", "catalog-1:latency=300ms@1s-2s",
		"--toxiproxy", tp.api.URL, "--out", dir, "--progress", "off")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	o := readOutputs(t, dir)
	if len(o.Faults) != 2 || o.Faults[0].Fault != "gateway-catalog-1: latency 300ms" || o.Faults[0].Error != "" {
		t.Fatalf("fault events: %+v", o.Faults)
	}
	if p99 := o.Result.Seconds[1].Latency.P99; p99 < 290 {
		t.Errorf("second 1, inside the fault: p99 %.1f ms, want ≥ 300 ms", p99)
	}
}
