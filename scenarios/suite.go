package scenarios

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

// Ordered lists every scenario in the order the suite runs them: all "without" variants first (they
// share one configuration, so the stack is reconfigured once), then the "with" variants.
func Ordered(pairs []Pair) []experiment.Scenario {
	var out []experiment.Scenario
	for _, p := range pairs {
		out = append(out, p.Without)
	}
	for _, p := range pairs {
		out = append(out, p.With)
	}
	return out
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
