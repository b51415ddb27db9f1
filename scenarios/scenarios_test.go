package scenarios

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

var only = flag.String("lab.only", "", "run only the scenarios whose id contains this (or one of its comma-separated parts)")

// The one stack of this test process, shared by every scenario.
var (
	stack    *lab.Stack
	stackErr error
	reports  []*experiment.Report
	reportMu sync.Mutex
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testing.Short() {
		return m.Run()
	}
	ctx := context.Background()
	begin := time.Now()
	// The shop's stack runs first, when -lab.only selects any of its scenarios; the replicated stack
	// follows it (TestReplicatedScenarios).
	if plain := Select(*only); len(plain) > 0 {
		stack, stackErr = lab.Start(ctx, StackConfig(plain, os.Stderr))
	}
	if stack != nil {
		defer func() {
			if err := stack.Close(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "lab:", err)
			}
		}()
	}
	code := m.Run()
	if len(reports) > 0 {
		dir, _ := ResultsDir()
		if err := experiment.WriteIndex(dir, reports); err != nil {
			fmt.Fprintln(os.Stderr, "index:", err)
		}
		fmt.Fprintf(os.Stderr, "\n%s\nreports: %s/index.html · suite wall time %.0f s\n",
			experiment.Table(experiment.Summarize(reports)), dir, time.Since(begin).Seconds())
	}
	return code
}

// needStack skips (or, in CI, fails) when there is no Docker engine.
func needStack(t *testing.T) *lab.Stack {
	t.Helper()
	switch {
	case testing.Short():
		t.Skip("the chaos lab needs Docker and minutes: skipped with -short")
	case errors.Is(stackErr, lab.ErrNoDocker) && os.Getenv("CI") != "true":
		t.Skipf("the chaos lab needs a Docker engine (run `make docker-engine`): %v", stackErr)
	case stackErr != nil:
		t.Fatalf("the lab's stack did not start: %v", stackErr)
	case stack == nil:
		t.Skipf("-lab.only=%q selects no scenario of the shop's stack, so it was not started", *only)
	}
	return stack
}

// TestContainersAreHardened checks the lab runs its containers as docs/security.md says: a non-root
// user, a read-only root filesystem, writable /tmp (tmpfs) and /data (a volume) only, and nothing
// published beyond 127.0.0.1.
func TestContainersAreHardened(t *testing.T) {
	s := needStack(t)
	checkHardened(t, s, append(slices.Clone(lab.Services), lab.Broker, "toxiproxy"))
}

// checkHardened checks the containers names of s as TestContainersAreHardened says.
func checkHardened(t *testing.T, s *lab.Stack, names []string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		c, ok := s.Container(name)
		if !ok {
			t.Errorf("%s: no container", name)
			continue
		}
		res, err := s.Docker().ContainerInspect(ctx, c.GetContainerID(), client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("%s: inspect: %v", name, err)
		}
		in := res.Container
		if in.Config.User != "65532:65532" {
			t.Errorf("%s runs as user %q, want 65532:65532", name, in.Config.User)
		}
		if !in.HostConfig.ReadonlyRootfs {
			t.Errorf("%s: root filesystem is writable", name)
		}
		if _, ok := in.HostConfig.Tmpfs["/tmp"]; !ok {
			t.Errorf("%s: no tmpfs on /tmp (tmpfs: %v)", name, in.HostConfig.Tmpfs)
		}
		writable := map[string]bool{}
		for _, m := range in.Mounts {
			if m.RW {
				writable[m.Destination] = true
			}
		}
		if !writable["/data"] || len(writable) != 1 {
			t.Errorf("%s: writable mounts %v, want /data only", name, writable)
		}
		for port, bindings := range in.HostConfig.PortBindings {
			for _, b := range bindings {
				if !b.HostIP.IsLoopback() {
					t.Errorf("%s: %s published on %v, want 127.0.0.1 only", name, port, b.HostIP)
				}
			}
		}
	}
}

func TestScenarios(t *testing.T) {
	s := needStack(t)
	defer s.CloseOnPanic()
	runScenarios(t, s, Select(*only))
}

// runScenarios runs scs on s one after the other, each a subtest judged by its report.
func runScenarios(t *testing.T, s *lab.Stack, scs []experiment.Scenario) {
	dir, err := ResultsDir()
	if err != nil {
		t.Fatal(err)
	}
	runner := &Runner{Stack: s, Dir: dir, Progress: os.Stderr}
	for _, sc := range scs {
		t.Run(sc.ID+"/"+sc.Variant, func(t *testing.T) {
			defer s.CloseOnPanic()
			rep, err := runner.Run(context.Background(), sc)
			if rep != nil {
				reportMu.Lock()
				reports = append(reports, rep)
				reportMu.Unlock()
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rep.Checks {
				switch {
				case !c.OK && c.Reported:
					t.Logf("reported, not required: %s: %s — measured %s", c.Kind, c.Name, c.Got)
				case !c.OK:
					t.Errorf("%s: %s — measured %s", c.Kind, c.Name, c.Got)
				}
			}
			for _, p := range rep.Problems {
				t.Errorf("problem: %s", p)
			}
			t.Logf("score %.1f, TTD %s, TTR %s, report %s/%s.html", rep.Score, experiment.Seconds(rep.TTD), experiment.Seconds(rep.TTR), dir, rep.FileBase())
		})
	}
}

// TestReplicatedScenarios runs the discovery pairs on the replicated stack (registry, two replicas of
// catalog and payments), started once the shop's stack is gone so the two never share the machine. It
// first checks the stack: every caller discovers both replicas of each service, and the replicas of
// catalog, which started together on one database, serve the same catalog.
func TestReplicatedScenarios(t *testing.T) {
	scs := SelectReplicated(*only)
	if len(scs) == 0 {
		t.Skipf("-lab.only=%q selects no scenario of the replicated stack", *only)
	}
	if testing.Short() {
		t.Skip("the chaos lab needs Docker and minutes: skipped with -short")
	}
	ctx := context.Background()
	if stack != nil {
		if err := stack.Close(ctx); err != nil {
			t.Logf("closing the shop's stack: %v", err)
		}
	}
	begin := time.Now()
	rs, err := lab.Start(ctx, StackConfig(scs, os.Stderr))
	switch {
	case errors.Is(err, lab.ErrNoDocker) && os.Getenv("CI") != "true":
		t.Skipf("the chaos lab needs a Docker engine (run `make docker-engine`): %v", err)
	case err != nil:
		t.Fatalf("the replicated stack did not start: %v", err)
	}
	defer func() {
		if err := rs.Close(ctx); err != nil {
			t.Logf("lab: %v", err)
		}
		t.Logf("replicated stack and its %d scenario runs: %.0f s", len(scs), time.Since(begin).Seconds())
	}()
	defer rs.CloseOnPanic()
	names := []string{lab.Broker, lab.Registry, "toxiproxy"}
	for _, inst := range lab.ReplicaInstances {
		if !inst.Optional {
			names = append(names, inst.Name)
		}
	}
	checkHardened(t, rs, names)
	checkReplicas(t, rs)
	runScenarios(t, rs, scs)
}

// checkReplicas checks the replicated stack before any scenario: gateway's balancers know both
// replicas of catalog and payments (each registered itself in etcd, and gateway found them there),
// read from the per-instance series its /metrics lists for every instance it knows.
func checkReplicas(t *testing.T, s *lab.Stack) {
	t.Helper()
	if e := s.Env("gateway"); e != nil && e["REGISTRY_ENDPOINTS"] == "" {
		if _, off := e["REGISTRY_ENDPOINTS"]; off {
			// The first scenario runs the callers on static URLs: check with discovery on.
			if err := s.Reconfigure(context.Background(), ReplicatedBase()); err != nil {
				t.Fatal(err)
			}
		}
	}
	resp, err := http.Get(s.ObserveURL("gateway", "metrics"))
	if err != nil {
		t.Fatalf("gateway's metrics: %v", err)
	}
	defer resp.Body.Close()
	vals, err := experiment.ParseInstanceMetrics("gateway", resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string][]string{}
	for k := range vals {
		if k.Metric == "discovery_instance_requests_total" && k.Outcome == "success" {
			known[k.Downstream] = append(known[k.Downstream], experiment.InstanceName(k.Instance))
		}
	}
	want := map[string][]string{"gateway-catalog": {"catalog-1", "catalog-2"}, "gateway-payments": {"payments-1", "payments-2"}, "gateway-orders": {"orders"}}
	for link, w := range want {
		got := slices.Sorted(slices.Values(known[link]))
		if !slices.Equal(got, w) {
			t.Errorf("gateway's %s balancer knows %v, want %v", link, got, w)
		}
	}
}
