package scenarios

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"strings"

	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

// Ordered lists every scenario in the order the suite runs them: the "without" variants with no policy
// at all first (they share one configuration, so no service is recreated between them), then the other
// "without" variants, then the "with" variants in the pairs' order.
func Ordered(pairs []Pair) []experiment.Scenario {
	var out, later []experiment.Scenario
	for _, p := range pairs {
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

// Select returns the scenarios of Ordered(All()) whose id contains only ("" selects every one).
func Select(only string) []experiment.Scenario {
	var out []experiment.Scenario
	for _, sc := range Ordered(All()) {
		if strings.Contains(sc.ID, only) {
			out = append(out, sc)
		}
	}
	return out
}

// StackConfig is the stack to start for scenarios: it already runs the first one's configuration, so
// that one needs no service recreated.
func StackConfig(scs []experiment.Scenario, progress io.Writer) lab.Config {
	cfg := lab.Config{Progress: progress}
	if len(scs) > 0 {
		cfg.Env = scs[0].Env
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

// RunOne runs sc on stack and writes its report into dir.
func RunOne(ctx context.Context, stack experiment.Lab, sc experiment.Scenario, dir string, progress io.Writer) (*experiment.Report, error) {
	rep, err := experiment.Run(ctx, stack, sc, progress)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sc.Name(), err)
	}
	if err := experiment.Write(dir, rep); err != nil {
		return rep, fmt.Errorf("%s: write report: %w", sc.Name(), err)
	}
	return rep, nil
}
