// Command lab runs the chaos lab's whole suite (or the scenarios whose id contains -only) on a fresh
// stack, writes every report and the index page to results/, prints the summary table and exits
// non-zero when a verdict failed. `make lab` runs it.
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
	only := flag.String("only", "", "run only the scenarios whose id contains this (e.g. payments)")
	list := flag.Bool("list", false, "list the scenarios and exit")
	dir := flag.String("results", "", "where to write the reports (default results/ at the repository root)")
	render := flag.Bool("render", false, "render the reports already in the results folder again (HTML, SVG, Markdown, index) and exit")
	flag.Parse()
	if *render {
		os.Exit(rerender(*dir))
	}
	if *list {
		for _, p := range scenarios.All() {
			fmt.Printf("%-20s %s\n", p.With.ID, p.With.Title)
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
	selected := scenarios.Select(only)
	stack, err := lab.Start(ctx, scenarios.StackConfig(selected, os.Stderr))
	if err != nil {
		if errors.Is(err, lab.ErrNoDocker) {
			fmt.Fprintln(os.Stderr, "lab: a Docker engine is needed: run `make docker-engine` first:", err)
		} else {
			fmt.Fprintln(os.Stderr, err)
		}
		return 2
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
