package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/resilience-lab/lab/loadtest"
	"github.com/resilience-lab/lab/loadtest/plot"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/lab"
)

const (
	defaultToxiproxy = "http://127.0.0.1:8474"
	// rollbackTimeout bounds taking the faults back at the end; it runs after Ctrl-C too, when a second
	// Ctrl-C no longer stops the process, so it must not hang.
	rollbackTimeout = 30 * time.Second
)

// checkFaults parses the --fault specs against the lab's links (the names the compose stack's proxies
// share) and checks that every window lies within the profile, so a bad spec fails before anything is
// sent or dialled. The steps are parsed again against the Toxiproxy's own proxies at run time.
func checkFaults(specs []string, profile time.Duration) error {
	for _, spec := range specs {
		steps, err := fault.Parse(spec, lab.LinkNames())
		if err != nil {
			return fmt.Errorf("--fault: %w", err)
		}
		for _, s := range steps {
			if s.From >= profile {
				return fmt.Errorf("--fault %q: starts at %s, not before the end of the profile (%s)", spec, s.From, profile)
			}
			if s.To > profile {
				return fmt.Errorf("--fault %q: ends at %s, after the end of the profile (%s); leave out the end to keep it on until the run ends", spec, s.To, profile)
			}
		}
	}
	return nil
}

// faultSetup is what a run with faults needs: the schedule and where its faults act.
type faultSetup struct {
	schedule  *fault.Schedule
	toxiproxy *url.URL // nil when only container faults were asked for
	docker    *composeContainers
}

// close releases the Docker client; the faults are rolled back by rollback.
func (f *faultSetup) close() {
	if f.docker != nil {
		f.docker.docker.Close()
	}
}

// setupFaults connects to what the faults act on and builds their schedule; nothing is injected yet.
// The returned exit code says whose fault an error is: the specs' (exitUsage) or the environment's
// (exitFailed: Toxiproxy or Docker not reachable, a service without a container).
func setupFaults(ctx context.Context, c *config, getenv func(string) string) (*faultSetup, int, error) {
	all := strings.Join(c.faults, ";")
	steps, err := fault.Parse(all, lab.LinkNames()) // checked in parseArgs
	if err != nil {
		return nil, exitUsage, fmt.Errorf("--fault: %w", err)
	}
	setup := &faultSetup{}
	var target fault.Target
	var services []string
	needsProxy := false
	for _, s := range steps {
		if cf, ok := s.Fault.(fault.Container); ok {
			services = append(services, cf.Service)
		} else {
			needsProxy = true
		}
	}
	if needsProxy {
		setup.toxiproxy, _ = loadtest.ParseTarget(c.toxiproxy, c.allowRemote) // checked in parseArgs
		tc := toxiclient.NewClient(setup.toxiproxy.String())
		proxies, err := tc.Proxies()
		if err != nil {
			return nil, exitFailed, fmt.Errorf("the Toxiproxy API at %s does not answer (is the stack up? make stack-up; else set --toxiproxy): %w", setup.toxiproxy, err)
		}
		names := make([]string, 0, len(proxies))
		for name := range proxies {
			names = append(names, name)
		}
		slices.Sort(names)
		// The links this stack really has: a lab link missing from it (a broker link, say) is an error now,
		// not a failed injection in the middle of the run.
		if steps, err = fault.Parse(all, names); err != nil {
			return nil, exitUsage, fmt.Errorf("--fault against the Toxiproxy at %s: %w", setup.toxiproxy, err)
		}
		target.Toxiproxy = tc
	}
	if len(services) > 0 {
		docker, err := dialDocker(ctx, getenv, c.allowRemote)
		if err != nil {
			return nil, exitFailed, fmt.Errorf("container faults (%s) act on the compose stack through the Docker engine: %w", strings.Join(services, ", "), err)
		}
		setup.docker = &composeContainers{docker: docker, project: composeProject}
		for _, svc := range services {
			if _, err := setup.docker.containerIDs(ctx, svc); err != nil {
				setup.close()
				return nil, exitFailed, fmt.Errorf("--fault: %w", err)
			}
		}
		target.Containers = setup.docker
	}
	if setup.schedule, err = fault.NewSchedule(target, steps...); err != nil {
		setup.close()
		return nil, exitUsage, err
	}
	return setup, exitOK, nil
}

// actions are the schedule's actions, each stopping the run (through stop) when it fails: a fault that
// did not go on or off leaves the run measuring something other than what was asked for.
func (f *faultSetup) actions(stop context.CancelCauseFunc) []loadtest.Action {
	acts := f.schedule.Actions()
	for i := range acts {
		name, do := acts[i].Name, acts[i].Do
		acts[i].Do = func(ctx context.Context) error {
			err := do(ctx)
			if err != nil {
				stop(fmt.Errorf("fault %q failed: %w", name, err))
			}
			return err
		}
	}
	return acts
}

// rollback takes back every fault still on, whatever ended the run (its end, Ctrl-C, a failure).
func (f *faultSetup) rollback() error {
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	return f.schedule.Close(ctx)
}

// faultWindows turns the schedule's events into shaded windows: each fault from when it went on to
// when it went off, or to the end of the run (span) when it stayed on until the rollback.
func faultWindows(events []fault.Event, span float64) []plot.Window {
	var windows []plot.Window
	used := make([]bool, len(events))
	for i, on := range events {
		if !on.On {
			continue
		}
		w := plot.Window{From: min(on.Offset, span), To: span, Label: on.Fault}
		if on.Error != "" {
			w.Label += " (failed to inject)"
		}
		for j := i + 1; j < len(events); j++ {
			if off := events[j]; !off.On && !used[j] && off.Fault == on.Fault {
				used[j] = true
				w.To = min(off.Offset, span)
				break
			}
		}
		windows = append(windows, w)
	}
	return windows
}

func printFaultEvents(w io.Writer, events []fault.Event) {
	if len(events) == 0 {
		return
	}
	fmt.Fprintln(w, "  faults:")
	for _, e := range events {
		state := "on "
		if !e.On {
			state = "off"
		}
		line := fmt.Sprintf("    %7.2fs %s %s", e.Offset, state, e.Fault)
		if e.Error != "" {
			line += "  ERROR " + e.Error
		}
		fmt.Fprintln(w, line)
	}
}
