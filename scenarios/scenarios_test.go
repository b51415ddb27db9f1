package scenarios

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

var only = flag.String("lab.only", "", "run only the scenarios whose id contains this")

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
	stack, stackErr = lab.Start(ctx, StackConfig(Select(*only), os.Stderr))
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
	}
	return stack
}

func TestScenarios(t *testing.T) {
	s := needStack(t)
	defer s.CloseOnPanic()
	dir, err := ResultsDir()
	if err != nil {
		t.Fatal(err)
	}
	runner := &Runner{Stack: s, Dir: dir, Progress: os.Stderr}
	for _, sc := range Select(*only) {
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
