package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilience-lab/lab/loadtest/report"
)

const trivialMix = "../../mixes/trivial.json"

func noEnv(string) string { return "" }

// runCLI runs the command and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, env func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, args, env, &out, &errOut, false)
	return code, out.String(), errOut.String()
}

func TestViolatedLatencyThresholdFailsTheRun(t *testing.T) {
	// Every answer takes at least 30 ms, so a 5 ms p50 cannot pass however fast the machine is.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
		fmt.Fprint(w, "ok")
	}))
	defer slow.Close()
	code, out, errOut := runCLI(t, noEnv, "--target", slow.URL, "--mix", trivialMix,
		"--profile", "constant:rate=20,d=1s", "--threshold", "p50<5ms", "--threshold", "errors<1%")
	if code != exitThresholds {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitThresholds, out, errOut)
	}
	if !strings.Contains(out, "FAIL p50<5ms") || !strings.Contains(out, "ok   errors<1%") {
		t.Errorf("summary does not show which threshold failed:\n%s", out)
	}
}

func TestViolatedErrorThresholdFailsTheRun(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"code":"unavailable"}}`, http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	code, out, _ := runCLI(t, noEnv, "--target", failing.URL, "--mix", trivialMix,
		"--profile", "constant:rate=20,d=1s", "--threshold", "errors<1%", "--progress", "off")
	if code != exitThresholds || !strings.Contains(out, "FAIL errors<1%") || !strings.Contains(out, "http_503 20") {
		t.Fatalf("exit %d, want %d with 20 http_503 failures:\n%s", code, exitThresholds, out)
	}
}

func TestPassingRunWritesResultsAndReport(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	dir := t.TempDir()
	env := func(k string) string {
		if k == "LOADGEN_TARGET" {
			return srv.URL // the target comes from the environment
		}
		return ""
	}
	code, out, errOut := runCLI(t, env, "--mix", trivialMix, "--profile", "step:from=10,step=10,every=1s,steps=2",
		"--threshold", "errors<1%", "--threshold", "rate>=14", "--threshold", "dropped<=0",
		"--annotate", "pretend fault@0.5s-1.5s", "--out", dir, "--progress", "line", "--title", "cli test")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if hits.Load() != 30 {
		t.Errorf("server saw %d requests, want 30 (10 + 20)", hits.Load())
	}
	// One progress line per second when stderr is not a terminal.
	if n := strings.Count(errOut, " target "); n != 2 || !strings.Contains(errOut, "   1s target    10.0/s sent     10") {
		t.Errorf("progress lines:\n%s", errOut)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d report.Data
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title != "cli test" || d.Result.Totals.OK != 30 || len(d.Thresholds) != 3 || !d.Thresholds[1].Pass ||
		len(d.Windows) != 1 || d.Windows[0].From != 0.5 || d.Mix != "trivial" || !strings.Contains(d.Command, `"pretend fault@0.5s-1.5s"`) {
		t.Errorf("results.json: %+v", d)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil || !strings.Contains(string(html), "<svg") || !strings.Contains(string(html), "pretend fault") {
		t.Errorf("report.html missing or without charts: %v", err)
	}
}

func TestUsageErrorsExitTwoWithAMessage(t *testing.T) {
	dir := t.TempDir()
	badMix := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badMix, []byte(`{"requests":[{"method":"GET","path":"nope"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad threshold", []string{"--mix", trivialMix, "--threshold", "p99<fast"}, `threshold "p99<fast": p99 needs a duration`},
		{"unknown metric", []string{"--mix", trivialMix, "--threshold", "p42<1s"}, `unknown metric "p42"`},
		{"no mix", nil, "--mix is required"},
		{"missing mix file", []string{"--mix", filepath.Join(dir, "none.json")}, "no such file"},
		{"bad mix file", []string{"--mix", badMix}, "must start with /"},
		{"bad profile", []string{"--mix", trivialMix, "--profile", "constant:rate=5"}, "missing d"},
		{"too long", []string{"--mix", trivialMix, "--profile", "constant:rate=1,d=2h"}, "at most 1h0m0s"},
		{"remote target", []string{"--mix", trivialMix, "--target", "http://remote.example:8080"}, "not a loopback address"},
		{"bad annotation", []string{"--mix", trivialMix, "--annotate", "fault@60s-30s"}, "FROM < TO"},
		{"unknown flag", []string{"--mix", trivialMix, "--rps", "5"}, "flag provided but not defined"},
		{"stray argument", []string{"--mix", trivialMix, "go"}, "unexpected arguments"},
		{"zero cap", []string{"--mix", trivialMix, "--max-requests", "0"}, "must be positive"},
		{"bad progress", []string{"--mix", trivialMix, "--progress", "loud"}, "--progress"},
	} {
		code, out, errOut := runCLI(t, noEnv, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d stderr %q, want exit %d and %q (stdout %q)", tc.name, code, errOut, exitUsage, tc.want, out)
		}
	}
}

func TestGatewayTokenFailureExitsThree(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"code":"not_found"}}`, http.StatusNotFound)
	}))
	defer srv.Close()
	code, _, errOut := runCLI(t, noEnv, "--target", srv.URL, "--mix", "../../mixes/shop.json")
	if code != exitFailed || !strings.Contains(errOut, "dev token") {
		t.Errorf("exit %d, stderr %q; want %d and a token error", code, errOut, exitFailed)
	}
}

func TestParseAnnotation(t *testing.T) {
	w, err := parseAnnotation("orders@payments slow@30s-1m", 2*time.Minute)
	if err != nil || w.Label != "orders@payments slow" || w.From != 30 || w.To != 60 {
		t.Errorf("got %+v, %v", w, err)
	}
	for _, bad := range []string{"@1s-2s", "x", "x@1s", "x@2s-1s", "x@1s-3m", "x@-1s-2s"} {
		if _, err := parseAnnotation(bad, 2*time.Minute); err == nil {
			t.Errorf("parseAnnotation(%q) accepted", bad)
		}
	}
}

func TestTraceSendsATraceparentAndCitesTheSlowest(t *testing.T) {
	var traced, untraced atomic.Int64
	var mu sync.Mutex
	var slowest string // the trace id of the one slow request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp := r.Header.Get("traceparent")
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || parts[3] != "01" {
			untraced.Add(1)
			return
		}
		if traced.Add(1) == 5 {
			mu.Lock()
			slowest = parts[1]
			mu.Unlock()
			time.Sleep(80 * time.Millisecond)
		}
	}))
	defer srv.Close()
	code, out, errOut := runCLI(t, noEnv, "--target", srv.URL, "--mix", trivialMix,
		"--profile", "constant:rate=20,d=1s", "--progress", "off", "--trace")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if untraced.Load() != 0 || traced.Load() != 20 {
		t.Fatalf("%d requests carried a sampled traceparent, %d did not; want all 20", traced.Load(), untraced.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(out, "slowest traced requests:") || !strings.Contains(out, "trace "+slowest) {
		t.Errorf("the summary does not cite the slow request's trace %s:\n%s", slowest, out)
	}

	// Without --trace nothing is sent and nothing is cited.
	traced.Store(0)
	code, out, _ = runCLI(t, noEnv, "--target", srv.URL, "--mix", trivialMix, "--profile", "constant:rate=20,d=1s", "--progress", "off")
	if code != exitOK || traced.Load() != 0 || strings.Contains(out, "slowest traced") {
		t.Errorf("without --trace: exit %d, %d traced requests, summary:\n%s", code, traced.Load(), out)
	}
}
