package fault

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Parse reads fault specs separated by ';' into timeline steps. A spec is
//
//	TARGET:FAULT[=VALUE][,OPTION=VALUE…][@FROM[-TO]]
//
// TARGET is a link ("orders-payments") or a service ("payments": every link whose callee it is, or its
// container for container faults). links lists the link names the stack has ("caller-callee").
//
//	latency=500ms[,jitter=50ms]    bandwidth=64 (KB/s)         slow_close=2s      timeout=1s
//	reset_peer[=100ms]             slicer=64[,variation=16,delay=1ms]            limit_data=4096
//	down                           http503=0.3 (any status, share of requests)   header_delay=300ms
//	stop  kill  pause  restart  start (container faults; start: a standby container)
//
// Options of toxics: stream=up|down|both, toxicity=0.5. FROM and TO are offsets from the start of the
// run ("30s-60s"); without them the fault is on from the start until the end.
//
//	payments:latency=500ms@30s-60s; orders-catalog:reset_peer,stream=up@10s-20s; payments:kill@5s-15s
func Parse(specs string, links []string) ([]Step, error) {
	var steps []Step
	for _, spec := range strings.Split(specs, ";") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		st, err := parseOne(spec, links)
		if err != nil {
			return nil, fmt.Errorf("fault spec %q: %w", spec, err)
		}
		steps = append(steps, st)
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("no fault spec in %q", specs)
	}
	return steps, nil
}

func parseOne(spec string, links []string) (Step, error) {
	var step Step
	body, window, hasWindow := strings.Cut(spec, "@")
	if hasWindow {
		from, to, hasTo := strings.Cut(window, "-")
		var err error
		if step.From, err = time.ParseDuration(strings.TrimSpace(from)); err != nil || step.From < 0 {
			return step, fmt.Errorf("start %q: want a duration such as 30s", from)
		}
		if hasTo {
			if step.To, err = time.ParseDuration(strings.TrimSpace(to)); err != nil || step.To <= step.From {
				return step, fmt.Errorf("end %q: want a duration after the start", to)
			}
		}
	}
	target, rest, ok := strings.Cut(body, ":")
	target = strings.TrimSpace(target)
	if !ok || target == "" {
		return step, fmt.Errorf("want TARGET:FAULT")
	}
	parts := strings.Split(rest, ",")
	kind, value, _ := strings.Cut(strings.TrimSpace(parts[0]), "=")
	opts := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return step, fmt.Errorf("option %q: want name=value", p)
		}
		opts[k] = v
	}

	switch ContainerAction(kind) {
	case Stop, Kill, Pause, Restart, Start:
		if slices.Contains(links, target) {
			return step, fmt.Errorf("%s is a container fault: give a service, not the link %s", kind, target)
		}
		step.Fault = Container{Service: target, Action: ContainerAction(kind)}
		return step, nil
	}

	targets, err := resolveLinks(target, links)
	if err != nil {
		return step, err
	}
	var faults []Fault
	for _, link := range targets {
		f, err := linkFault(link, kind, value, opts)
		if err != nil {
			return step, err
		}
		faults = append(faults, f)
	}
	if len(faults) == 1 {
		step.Fault = faults[0]
	} else {
		step.Fault = Group{Label: fmt.Sprintf("%s (%d links): %s", target, len(faults), spec), Faults: faults}
	}
	return step, nil
}

// resolveLinks returns target when it is a link, else every link whose callee is target: the link
// itself (caller-target) and the proxy of each of target's instances on it (caller-target-1,
// caller-target-v2), so a fault on a replicated service reaches every replica.
func resolveLinks(target string, links []string) ([]string, error) {
	if slices.Contains(links, target) {
		return []string{target}, nil
	}
	var out []string
	for _, l := range links {
		_, instance, replica := strings.Cut(l, "-"+target+"-")
		if strings.HasSuffix(l, "-"+target) || (replica && instance != "" && !strings.Contains(instance, "-")) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q is neither a link nor a service reached by one (links: %s)", target, strings.Join(links, ", "))
	}
	return out, nil
}

func linkFault(link, kind, value string, opts map[string]string) (Fault, error) {
	dur := func(v, what string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%s %q: want a duration such as 500ms", what, v)
		}
		return d, nil
	}
	num := func(v, what string) (int64, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s %q: want a non-negative integer", what, v)
		}
		return n, nil
	}
	var t *Toxic
	switch {
	case kind == "down":
		if len(opts) > 0 || value != "" {
			return nil, fmt.Errorf("down takes no value or options")
		}
		return LinkDown{Link: link}, nil
	case kind == "latency":
		lat, err := dur(value, "latency")
		if err != nil {
			return nil, err
		}
		var jit time.Duration
		if v, ok := opts["jitter"]; ok {
			if jit, err = dur(v, "jitter"); err != nil {
				return nil, err
			}
			delete(opts, "jitter")
		}
		t = Latency(link, lat, jit)
	case kind == "bandwidth":
		n, err := num(value, "bandwidth")
		if err != nil {
			return nil, err
		}
		t = Bandwidth(link, n)
	case kind == "slow_close":
		d, err := dur(value, "slow_close")
		if err != nil {
			return nil, err
		}
		t = SlowClose(link, d)
	case kind == "timeout":
		d, err := dur(value, "timeout")
		if err != nil {
			return nil, err
		}
		t = Timeout(link, d)
	case kind == "reset_peer":
		var d time.Duration
		if value != "" {
			var err error
			if d, err = dur(value, "reset_peer"); err != nil {
				return nil, err
			}
		}
		t = ResetPeer(link, d)
	case kind == "slicer":
		size, err := num(value, "slicer size")
		if err != nil || size == 0 {
			return nil, fmt.Errorf("slicer %q: want an average size in bytes", value)
		}
		variation, delay := int64(0), time.Duration(0)
		if v, ok := opts["variation"]; ok {
			if variation, err = num(v, "variation"); err != nil {
				return nil, err
			}
			delete(opts, "variation")
		}
		if v, ok := opts["delay"]; ok {
			if delay, err = dur(v, "delay"); err != nil {
				return nil, err
			}
			delete(opts, "delay")
		}
		t = Slicer(link, int(size), int(variation), delay)
	case kind == "limit_data":
		n, err := num(value, "limit_data")
		if err != nil {
			return nil, err
		}
		t = LimitData(link, n)
	case kind == "header_delay":
		d, err := dur(value, "header_delay")
		if err != nil {
			return nil, err
		}
		t = HeaderDelay(link, d)
	case strings.HasPrefix(kind, "http") && len(kind) == 7:
		status, err := strconv.Atoi(kind[4:])
		if err != nil || status < 400 || status > 599 {
			return nil, fmt.Errorf("%s: want http followed by a 4xx or 5xx status", kind)
		}
		rate := 1.0
		if value != "" {
			if rate, err = strconv.ParseFloat(value, 64); err != nil || rate <= 0 || rate > 1 {
				return nil, fmt.Errorf("%s=%s: want a share of requests in (0, 1]", kind, value)
			}
		}
		t = HTTPError(link, status, rate)
	default:
		return nil, fmt.Errorf("unknown fault %q", kind)
	}
	for k, v := range opts {
		switch k {
		case "stream":
			s, ok := map[string]Stream{"up": Upstream, "upstream": Upstream, "down": Downstream, "downstream": Downstream, "both": Both}[v]
			if !ok {
				return nil, fmt.Errorf("stream=%s: want up, down or both", v)
			}
			t = t.On(s)
		case "toxicity":
			p, err := strconv.ParseFloat(v, 32)
			if err != nil || p <= 0 || p > 1 {
				return nil, fmt.Errorf("toxicity=%s: want a share of connections in (0, 1]", v)
			}
			t = t.WithToxicity(float32(p))
		default:
			return nil, fmt.Errorf("unknown option %q for %s", k, kind)
		}
	}
	return t, nil
}
