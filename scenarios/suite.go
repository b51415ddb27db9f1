package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/resilience-lab/lab/loadtest/plot"
	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

// Ordered lists every scenario in the order the suite runs them: the "without" variants with no policy
// at all first (they share one configuration, so no service is recreated between them), then the other
// "without" variants, then the "with" variants in the pairs' order. A "without" run two pairs share
// runs once.
func Ordered(pairs []Pair) []experiment.Scenario {
	var out, later []experiment.Scenario
	seen := map[string]bool{} // a "without" run two pairs share runs once
	for _, p := range pairs {
		if seen[p.Without.Name()] {
			continue
		}
		seen[p.Without.Name()] = true
		if envEqual(p.Without.Env, bare()) {
			out = append(out, p.Without)
		} else {
			later = append(later, p.Without)
		}
	}
	out = append(out, later...)
	for _, p := range pairs {
		out = append(out, p.With)
	}
	return out
}

func envEqual(a, b map[string]map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for svc, e := range a {
		if !maps.Equal(e, b[svc]) {
			return false
		}
	}
	return true
}

// Select returns the scenarios of Ordered(All()) whose id contains only or one of its comma-separated
// parts ("" selects every one): the ones that run on the shop's stack of one container per service.
func Select(only string) []experiment.Scenario { return selectFrom(All(), only) }

// SelectReplicated returns the scenarios of Ordered(Replicated()) whose id contains only: the ones that
// run on the replicated stack (lab.Config.Replicas), started after the others.
func SelectReplicated(only string) []experiment.Scenario { return selectFrom(Replicated(), only) }

// selectFrom keeps the scenarios whose id contains only, or any of its comma-separated parts.
func selectFrom(pairs []Pair, only string) []experiment.Scenario {
	var out []experiment.Scenario
	for _, sc := range Ordered(pairs) {
		for _, part := range strings.Split(only, ",") {
			if strings.Contains(sc.ID, part) {
				out = append(out, sc)
				break
			}
		}
	}
	return out
}

// StackConfig is the stack to start for scenarios: it already runs the first one's configuration, so
// that one needs no service recreated, in the topology they need.
func StackConfig(scs []experiment.Scenario, progress io.Writer) lab.Config {
	cfg := lab.Config{Progress: progress}
	if len(scs) > 0 {
		cfg.Env = scs[0].Env
		cfg.Replicas = scs[0].Replicas
	}
	return cfg
}

// ResultsDir is where reports go: results/ at the repository root.
func ResultsDir() (string, error) {
	root, err := lab.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "results"), nil
}

// Runner runs scenarios one after the other on one stack and writes their reports into Dir.
type Runner struct {
	Stack    experiment.Lab
	Dir      string
	Progress io.Writer

	lastEnd time.Time // when the previous scenario finished: the shop has been quiet since
}

// Run runs sc and writes its report. A scenario that watches a breaker starts only once the shop has
// been quiet for the breaker's window minus the load before the fault, so when the fault comes the
// window holds this run's calls and nothing older: the failures it needs are known.
func (r *Runner) Run(ctx context.Context, sc experiment.Scenario) (*experiment.Report, error) {
	quiet := time.Duration(0)
	for _, w := range sc.Watch {
		from, _ := sc.FaultWindow()
		quiet = max(quiet, w.Window-from)
	}
	if wait := time.Until(r.lastEnd.Add(quiet)); wait > 0 && !r.lastEnd.IsZero() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	defer func() { r.lastEnd = time.Now() }()
	if sc.Probe != nil {
		// The probe samples the run only: the stack is configured and reset first (Run then finds
		// nothing to change), so it does not poll services being recreated.
		if err := r.Stack.Reconfigure(ctx, sc.Env); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.Name(), err)
		}
		if err := r.Stack.Reset(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.Name(), err)
		}
		sc.Probe.Start(ctx, r.Stack)
		defer sc.Probe.Stop()
	}
	rep, err := experiment.Run(ctx, r.Stack, sc, r.Progress)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sc.Name(), err)
	}
	if err := experiment.Write(r.Dir, rep); err != nil {
		return rep, fmt.Errorf("%s: write report: %w", sc.Name(), err)
	}
	if sc.Probe != nil && sc.Charts != nil {
		sc.Probe.Stop()
		if err := writeCharts(r.Dir, rep, sc.Charts(rep, sc.Probe.Samples())); err != nil {
			return rep, fmt.Errorf("%s: write charts: %w", sc.Name(), err)
		}
	}
	return rep, nil
}

// writeCharts writes a scenario's own charts beside its report: <base>-<name>.svg.
func writeCharts(dir string, rep *experiment.Report, charts map[string]plot.Chart) error {
	for name, c := range charts {
		var svg bytes.Buffer
		if err := c.WriteSVG(&svg); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, rep.FileBase()+"-"+name+".svg"), svg.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
