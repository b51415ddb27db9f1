// Package fault injects faults into a running shop and always takes them back: Toxiproxy toxics on a
// link (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, either or both
// directions, with a toxicity), a link going down, HTTP faults through the lab's http_fault toxic
// (error answers, delayed response headers) and container faults (stop, kill, pause, restart).
//
// A Schedule plays faults on a timeline (on at T+a, off at T+b) as loadtest Actions and rolls back
// whatever is still on when it is closed, whatever happened. Parse reads the textual form the CLI
// takes (`payments:latency=500ms@30s-60s`). The package needs only a Toxiproxy API and, for container
// faults, something that controls containers, so it works against the test harness's stack and a
// compose stack alike.
package fault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// Target is what faults act on.
type Target struct {
	// Toxiproxy is the API holding one proxy per link, named after the link ("orders-payments").
	Toxiproxy *toxiclient.Client
	// Containers controls the services' containers; nil when container faults are not available.
	Containers Containers
}

// Containers controls the container of one service by its name ("payments").
type Containers interface {
	StopService(ctx context.Context, service string) error    // SIGTERM, then SIGKILL after a grace
	KillService(ctx context.Context, service string) error    // SIGKILL
	StartService(ctx context.Context, service string) error   // start a stopped or killed one
	PauseService(ctx context.Context, service string) error   // freeze every process (SIGSTOP-like)
	UnpauseService(ctx context.Context, service string) error // thaw
	RestartService(ctx context.Context, service string) error // stop and start again
}

// Fault is one fault that can be put on and taken off. Inject and Revert are each called at most once
// per Schedule step; Revert must succeed after a partly failed Inject.
type Fault interface {
	// Name describes the fault in reports ("orders-payments: latency 500ms ±50ms downstream").
	Name() string
	Inject(ctx context.Context, t Target) error
	Revert(ctx context.Context, t Target) error
}

// Disabler is a Fault that can stop acting at once, before Revert cleans it up; a Schedule counts the
// fault off when Disable returns. Toxics are: removing a toxic flushes what it holds into the next stage
// under the proxy's lock, and Toxiproxy waits up to 5 s per chunk when that link's client has gone (its
// writer waits for the same lock to leave), while turning it into a pass-through does not flush.
type Disabler interface {
	Disable(ctx context.Context, t Target) error
}

// Stream names a direction of a link: upstream carries requests (caller → callee), downstream carries
// answers.
type Stream string

const (
	Upstream   Stream = "upstream"
	Downstream Stream = "downstream"
	Both       Stream = "both"
)

func (s Stream) streams() []string {
	switch s {
	case Upstream:
		return []string{"upstream"}
	case Both:
		return []string{"downstream", "upstream"}
	}
	return []string{"downstream"}
}

// toxicSeq makes toxic names unique within a process, so two faults on one link never collide.
var toxicSeq atomic.Int64

// Toxic is a Toxiproxy toxic on one link.
type Toxic struct {
	Link       string
	Type       string // latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, http_fault
	Stream     Stream
	Toxicity   float32 // share of connections affected, (0, 1]; 0 means 1
	Attributes map[string]any
	label      string
	names      []string // the toxics Inject created, in order
}

// Name implements Fault.
func (t *Toxic) Name() string {
	s := fmt.Sprintf("%s: %s", t.Link, t.label)
	if t.Stream != "" && t.Stream != Downstream {
		s += " " + string(t.Stream)
	}
	if t.Toxicity > 0 && t.Toxicity < 1 {
		s += fmt.Sprintf(" on %.0f%% of connections", t.Toxicity*100)
	}
	return s
}

// Inject adds the toxic to each of its streams.
func (t *Toxic) Inject(_ context.Context, target Target) error {
	p, err := target.Toxiproxy.Proxy(t.Link)
	if err != nil {
		return fmt.Errorf("fault: proxy %s: %w", t.Link, err)
	}
	tox := t.Toxicity
	if tox <= 0 || tox > 1 {
		tox = 1
	}
	n := toxicSeq.Add(1)
	for _, s := range t.Stream.streams() {
		name := fmt.Sprintf("lab-%d-%s-%s", n, t.Type, s)
		if _, err := p.AddToxic(name, t.Type, s, tox, toxiclient.Attributes(t.Attributes)); err != nil {
			return fmt.Errorf("fault: add %s to %s: %w", t.Type, t.Link, err)
		}
		t.names = append(t.names, name)
	}
	return nil
}

// Revert removes the toxics in reverse order (for http_fault: the request half before the answer half).
func (t *Toxic) Revert(_ context.Context, target Target) error {
	p, err := target.Toxiproxy.Proxy(t.Link)
	if err != nil {
		return fmt.Errorf("fault: proxy %s: %w", t.Link, err)
	}
	var errs []error
	for i := len(t.names) - 1; i >= 0; i-- {
		if err := p.RemoveToxic(t.names[i]); err != nil && !isNotFound(err) {
			errs = append(errs, err)
		}
		if t.Type == "http_fault" && i > 0 {
			// Let requests already rewritten by the request half get their answers replaced.
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.names = nil
	return errors.Join(errs...)
}

// passThrough are the attributes that make the lab's own toxics (package interruptible) pass data on
// untouched; they hold no data across the change.
var passThrough = map[string]map[string]any{
	"bandwidth": {"rate": int64(1) << 40},
	"slicer":    {"average_size": 1 << 30, "size_variation": 0, "delay": 0},
}

// Disable implements Disabler: the lab's bandwidth and slicer become pass-throughs on every connection,
// Toxiproxy's own toxics get toxicity 0 (connections run its no-op toxic); http_fault, whose halves
// must go in order, is reverted.
func (t *Toxic) Disable(ctx context.Context, target Target) error {
	switch t.Type {
	case "bandwidth", "slicer", "latency", "timeout", "reset_peer", "slow_close", "limit_data":
	default: // http_fault
		return t.Revert(ctx, target)
	}
	p, err := target.Toxiproxy.Proxy(t.Link)
	if err != nil {
		return fmt.Errorf("fault: proxy %s: %w", t.Link, err)
	}
	// Toxiproxy decodes an update's attributes into the running toxic, which its own toxics read unguarded:
	// null attributes leave it untouched (the lab's toxics guard theirs).
	toxicity, attrs := float32(0), map[string]any(nil)
	if pt, ok := passThrough[t.Type]; ok {
		toxicity, attrs = 1, pt // every connection runs the toxic, so each passes on what it holds
	}
	var errs []error
	for i := len(t.names) - 1; i >= 0; i-- {
		if _, err := p.UpdateToxic(t.names[i], toxicity, toxiclient.Attributes(attrs)); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("fault: disable %s on %s: %w", t.Type, t.Link, err))
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool {
	var apiErr *toxiclient.ApiError
	return errors.As(err, &apiErr) && apiErr.Status == 404
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Latency delays every chunk on the link by latency ± jitter.
func Latency(link string, latency, jitter time.Duration) *Toxic {
	label := "latency " + latency.String()
	if jitter > 0 {
		label += " ±" + jitter.String()
	}
	return &Toxic{Link: link, Type: "latency", label: label,
		Attributes: map[string]any{"latency": ms(latency), "jitter": ms(jitter)}}
}

// Bandwidth caps the link at kbPerSecond kilobytes per second.
func Bandwidth(link string, kbPerSecond int64) *Toxic {
	return &Toxic{Link: link, Type: "bandwidth", label: fmt.Sprintf("bandwidth %d KB/s", kbPerSecond),
		Attributes: map[string]any{"rate": kbPerSecond}}
}

// SlowClose delays the closing of connections by delay.
func SlowClose(link string, delay time.Duration) *Toxic {
	return &Toxic{Link: link, Type: "slow_close", label: "slow_close " + delay.String(),
		Attributes: map[string]any{"delay": ms(delay)}}
}

// Timeout swallows all data and closes the connection after d (never, when d is 0).
func Timeout(link string, d time.Duration) *Toxic {
	return &Toxic{Link: link, Type: "timeout", label: "timeout " + d.String(),
		Attributes: map[string]any{"timeout": ms(d)}}
}

// ResetPeer answers with a TCP RST after d.
func ResetPeer(link string, d time.Duration) *Toxic {
	return &Toxic{Link: link, Type: "reset_peer", label: "reset_peer after " + d.String(),
		Attributes: map[string]any{"timeout": ms(d)}}
}

// Slicer cuts data into pieces of about avgSize (± variation) bytes sent delay apart.
func Slicer(link string, avgSize, variation int, delay time.Duration) *Toxic {
	return &Toxic{Link: link, Type: "slicer", label: fmt.Sprintf("slicer %d±%d B every %s", avgSize, variation, delay),
		Attributes: map[string]any{"average_size": avgSize, "size_variation": variation, "delay": delay.Microseconds()}}
}

// LimitData closes each connection after bytes bytes.
func LimitData(link string, bytes int64) *Toxic {
	return &Toxic{Link: link, Type: "limit_data", label: fmt.Sprintf("limit_data %d B", bytes),
		Attributes: map[string]any{"bytes": bytes}}
}

// HTTPError answers a share rate of the link's requests with status, without the callee seeing them.
func HTTPError(link string, status int, rate float64) *Toxic {
	return &Toxic{Link: link, Type: "http_fault", Stream: Both,
		label:      fmt.Sprintf("HTTP %d on %.0f%% of requests", status, rate*100),
		Attributes: map[string]any{"status": status, "rate": rate}}
}

// HeaderDelay holds every answer's headers on the link for d (a slow time to first byte).
func HeaderDelay(link string, d time.Duration) *Toxic {
	return &Toxic{Link: link, Type: "http_fault", Stream: Both, label: "response headers delayed " + d.String(),
		Attributes: map[string]any{"header_delay": ms(d)}}
}

// On returns the toxic on stream instead (http_fault toxics always need both streams).
func (t *Toxic) On(s Stream) *Toxic {
	c := *t
	if c.Type != "http_fault" {
		c.Stream = s
	}
	return &c
}

// WithToxicity returns the toxic applied to a share p of the connections only. An http_fault toxic
// already picks requests by its rate; it must see every connection.
func (t *Toxic) WithToxicity(p float32) *Toxic {
	c := *t
	if c.Type != "http_fault" {
		c.Toxicity = p
	}
	return &c
}

// LinkDown disables the link's proxy: connections are refused and open ones are closed.
type LinkDown struct{ Link string }

func (f LinkDown) Name() string { return f.Link + ": down" }

func (f LinkDown) Inject(_ context.Context, t Target) error {
	p, err := t.Toxiproxy.Proxy(f.Link)
	if err != nil {
		return fmt.Errorf("fault: proxy %s: %w", f.Link, err)
	}
	return p.Disable()
}

func (f LinkDown) Revert(_ context.Context, t Target) error {
	p, err := t.Toxiproxy.Proxy(f.Link)
	if err != nil {
		return fmt.Errorf("fault: proxy %s: %w", f.Link, err)
	}
	return p.Enable()
}

// ContainerAction is what a container fault does to a service.
type ContainerAction string

const (
	Stop    ContainerAction = "stop"
	Kill    ContainerAction = "kill"
	Pause   ContainerAction = "pause"
	Restart ContainerAction = "restart"
	// Start starts a created, stopped container (a standby replica joining mid-run); stopped again on
	// revert (SIGTERM, so it deregisters).
	Start ContainerAction = "start"
)

// Container is a fault on a service's container: stop or kill it (started again on revert), pause it
// (unpaused on revert), restart it (at once; nothing to revert) or start a standby one (stopped again
// on revert). Not every change is a failure: a replica joining is an event to measure too.
type Container struct {
	Service string
	Action  ContainerAction
}

func (f Container) Name() string { return fmt.Sprintf("%s: container %s", f.Service, f.Action) }

func (f Container) Inject(ctx context.Context, t Target) error {
	if t.Containers == nil {
		return errors.New("fault: container faults need container control")
	}
	switch f.Action {
	case Stop:
		return t.Containers.StopService(ctx, f.Service)
	case Kill:
		return t.Containers.KillService(ctx, f.Service)
	case Pause:
		return t.Containers.PauseService(ctx, f.Service)
	case Restart:
		return t.Containers.RestartService(ctx, f.Service)
	case Start:
		return t.Containers.StartService(ctx, f.Service)
	}
	return fmt.Errorf("fault: unknown container action %q", f.Action)
}

func (f Container) Revert(ctx context.Context, t Target) error {
	if t.Containers == nil {
		return nil
	}
	switch f.Action {
	case Stop, Kill:
		return t.Containers.StartService(ctx, f.Service)
	case Pause:
		return t.Containers.UnpauseService(ctx, f.Service)
	case Start:
		return t.Containers.StopService(ctx, f.Service)
	}
	return nil
}

// Group applies several faults as one (a service down on every link that reaches it).
type Group struct {
	Label  string
	Faults []Fault
}

func (g Group) Name() string {
	if g.Label != "" {
		return g.Label
	}
	names := make([]string, len(g.Faults))
	for i, f := range g.Faults {
		names[i] = f.Name()
	}
	return strings.Join(names, " + ")
}

func (g Group) Inject(ctx context.Context, t Target) error {
	for _, f := range g.Faults {
		if err := f.Inject(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (g Group) Revert(ctx context.Context, t Target) error {
	var errs []error
	for i := len(g.Faults) - 1; i >= 0; i-- {
		errs = append(errs, g.Faults[i].Revert(ctx, t))
	}
	return errors.Join(errs...)
}
