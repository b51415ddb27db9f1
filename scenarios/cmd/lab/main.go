// Command lab runs the chaos lab's whole suite (or the scenarios whose id contains -only): the shop's
// pairs on a fresh stack, then the discovery pairs on a fresh replicated stack; it writes every report
// and the index page to results/, prints the summary table and exits non-zero when a verdict failed.
// `make lab` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/resilience-lab/lab/scenarios"
	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

func main() {
	only := flag.String("only", "", "run only the scenarios whose id contains this, or one of these comma-separated parts (e.g. payments,canary)")
	list := flag.Bool("list", false, "list the scenarios and exit")
	dir := flag.String("results", "", "where to write the reports (default results/ at the repository root)")
	render := flag.Bool("render", false, "render the reports already in the results folder again (HTML, SVG, Markdown, index) and exit")
	flag.Parse()
	if *render {
		os.Exit(rerender(*dir))
	}
	if *list {
		for _, p := range scenarios.All() {
			fmt.Printf("%-24s %s\n", p.With.ID, p.With.Title)
		}
		for _, p := range scenarios.Replicated() {
			fmt.Printf("%-24s %s (replicated stack)\n", p.With.ID, p.With.Title)
		}
		return
	}
	os.Exit(run(*only, *dir))
}

func run(only, dir string) int {
	ctx := context.Background()
	begin := time.Now()
	if dir == "" {
		var err error
		if dir, err = scenarios.ResultsDir(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	var reports []*experiment.Report
	failed := 0
	// One stack at a time: the shop's, then the replicated one (each takes what the machine has).
	for _, selected := range [][]experiment.Scenario{scenarios.Select(only), scenarios.SelectReplicated(only)} {
		if len(selected) == 0 {
			continue
		}
		reps, fails, err := runOn(ctx, selected, dir)
		reports, failed = append(reports, reps...), failed+fails
		if err != nil {
			if errors.Is(err, lab.ErrNoDocker) {
				fmt.Fprintln(os.Stderr, "lab: a Docker engine is needed: run `make docker-engine` first:", err)
			} else {
				fmt.Fprintln(os.Stderr, err)
			}
			return 2
		}
	}
	if len(reports) == 0 {
		fmt.Fprintf(os.Stderr, "lab: -only %q selects no scenario (see -list)\n", only)
		return 2
	}
	if err := experiment.WriteIndex(dir, reports); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("\n%s\n%d of %d passed · reports: %s/index.html · wall time %.0f s\n",
		experiment.Table(experiment.Summarize(reports)), len(reports)-failed, len(reports), dir, time.Since(begin).Seconds())
	if failed > 0 {
		return 1
	}
	return 0
}

// runOn runs selected on a fresh stack, which it closes, and returns their reports and how many failed.
func runOn(ctx context.Context, selected []experiment.Scenario, dir string) ([]*experiment.Report, int, error) {
	stack, err := lab.Start(ctx, scenarios.StackConfig(selected, os.Stderr))
	if err != nil {
		return nil, 0, err
	}
	defer stack.Close(ctx)
	defer stack.CloseOnPanic()
	var reports []*experiment.Report
	failed := 0
	runner := &scenarios.Runner{Stack: stack, Dir: dir, Progress: os.Stderr}
	for _, sc := range selected {
		rep, err := runner.Run(ctx, sc)
		if rep != nil {
			reports = append(reports, rep)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed++
			continue
		}
		if !rep.Passed() {
			failed++
		}
		fmt.Fprintf(os.Stderr, "%s: %s (score %.1f)\n", sc.Name(), rep.Verdict, rep.Score)
	}
	return reports, failed, nil
}

// rerender writes every report of dir again from its JSON, and the index.
func rerender(dir string) int {
	if dir == "" {
		var err error
		if dir, err = scenarios.ResultsDir(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var reports []*experiment.Report
	for _, p := range paths {
		r, err := experiment.Read(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := experiment.Write(dir, r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		reports = append(reports, r)
	}
	if err := experiment.WriteIndex(dir, reports); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("%d reports rendered in %s\n", len(reports), dir)
	return 0
}
