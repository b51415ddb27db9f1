package scenarios

import (
	"fmt"
	"strconv"
	"time"

	"github.com/resilience-lab/lab/loadtest/plot"
	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/fault"
	"github.com/resilience-lab/lab/scenarios/lab"
	"github.com/resilience-lab/lab/scenarios/measure"
)

// The discovery pairs run on the replicated stack (lab.Config.Replicas): etcd as the registry, catalog
// and payments twice each, every replica behind its own proxy per link, the callers (gateway, orders)
// balancing over what the registry lists. docs/patterns/discovery.md explains them.

// catalogLinks are the links whose callee is catalog: a catalog replica's fault and calls show on both.
var catalogLinks = []string{"gateway-catalog", "orders-catalog"}

// balancedLinks are the links a caller balances over instances it discovers.
var balancedLinks = []string{"gateway-catalog", "gateway-orders", "gateway-payments", "orders-catalog", "orders-payments"}

// Replicated returns the pairs that run on the replicated stack, in the order the suite runs them.
func Replicated() []Pair {
	return []Pair{catalogReplicaFailing(), registryDown(), catalogReplicaKilled(), badCanary()}
}

// replicaLoad drives catalog from both callers: browsing through gateway→catalog (primary) and orders,
// whose saga reserves and commits through orders→catalog.
func replicaLoad() []experiment.Stream {
	return []experiment.Stream{
		{Name: "browse", Rate: 20, Kinds: map[string]int{measure.KindBrowse: 1, measure.KindProduct: 1}},
		{Name: "orders", Rate: 8, Kinds: map[string]int{measure.KindPlaceOrder: 1}},
	}
}

// replicaBase is base on the replicated stack with its load.
func replicaBase(id, title, teaches string, d time.Duration, faults ...fault.Step) experiment.Scenario {
	s := base(id, title, teaches, faults...)
	s.Replicas, s.Streams, s.Duration = true, replicaLoad(), d
	return s
}

// roundRobin is the balancing of every link with outlier ejection off: a caller spreads its calls evenly
// over what the registry lists, healthy or not. Every discovery variant starts from it, so only what
// it teaches differs.
func roundRobin() map[string]settings {
	out := map[string]settings{}
	for _, l := range balancedLinks {
		out[l] = settings{"LB": "round_robin", "OUTLIER_CONSECUTIVE_FAILURES": "0"}
	}
	return out
}

// ReplicatedBase is the replicated stack's configuration every discovery variant starts from: no
// policy, every link round robin without ejection.
func ReplicatedBase() map[string]map[string]string { return withLinks(nil, nil) }

func withLinks(extra map[string]settings, services map[string]map[string]string) map[string]map[string]string {
	links := roundRobin()
	for l, s := range extra {
		links[l] = merge(links[l], s)
	}
	env := with(links, nil)
	// Services may name instances (catalog-3), which bare() has no entry for.
	for svc, vars := range services {
		env[svc] = merge(env[svc], vars)
	}
	return env
}

// replicaPair is pair for the replicated stack: each variant gets its own probe of the callers'
// per-instance series (and of the instances named in probed, besides gateway and orders) before its
// expectations are built, so they read it.
func replicaPair(s experiment.Scenario, probed []string, without, with func(*experiment.Scenario)) Pair {
	probe := func() *experiment.InstanceProbe {
		return &experiment.InstanceProbe{Services: append([]string{"gateway", "orders"}, probed...)}
	}
	p := pair(s, func(w *experiment.Scenario) {
		w.Env, w.Probe = withLinks(nil, nil), probe()
		without(w)
	}, func(p *experiment.Scenario) {
		p.Env, p.Probe = withLinks(nil, nil), probe()
		with(p)
	})
	return p
}

// calls matches every attempt the callers' balancers sent to instance on links.
func calls(instance string, links ...string) experiment.Match {
	return experiment.Match{Metric: "discovery_instance_requests_total", Links: links, Instance: instance}
}

// instanceChart plots calls per second to each named instance, from both callers.
func instanceChart(title string, instances []string, extra ...plot.Window) func(*experiment.Report, []experiment.InstanceSample) map[string]plot.Chart {
	return func(r *experiment.Report, samples []experiment.InstanceSample) map[string]plot.Chart {
		var lines []experiment.Match
		for _, inst := range instances {
			lines = append(lines, calls(inst, catalogLinks...))
		}
		c := experiment.InstanceChart(r, samples, r.Title+" — "+r.Variant+": "+title, lines, instances, extra...)
		return map[string]plot.Chart{"instances": c}
	}
}

// share is calls to instance ÷ calls to every instance of catalog on catalogLinks between from and to.
func share(samples []experiment.InstanceSample, instance string, from, to time.Time) (float64, float64) {
	bad := experiment.Calls(samples, calls(instance, catalogLinks...), from, to)
	all := experiment.Calls(samples, calls("", catalogLinks...), from, to)
	if all == 0 {
		return 0, 0
	}
	return bad / all, all
}

// ---- one replica failing: outlier ejection --------------------------------------------------------

const (
	ejectAfter     = 5
	baseEjection   = 2 * time.Second
	replicaRunFor  = 10 * time.Second
	replicaFaultOn = 2 * time.Second
	replicaFaultTo = 6 * time.Second
)

// replicaDown is the fault of a catalog replica on every link that reaches it.
func replicaFault(instance string, f func(link string) fault.Fault, label string) fault.Fault {
	var fs []fault.Fault
	for _, l := range catalogLinks {
		fs = append(fs, f(lab.InstanceLink(l, instance)))
	}
	return fault.Group{Label: instance + ": " + label, Faults: fs}
}

func catalogReplicaFailing() Pair {
	bad := "catalog-2"
	f := replicaFault(bad, func(link string) fault.Fault { return fault.HTTPError(link, 503, 1) }, "every call answered 503")
	s := replicaBase("catalog-replica-failing", "One catalog replica answers 503",
		"catalog-2, one of two replicas, answers every call 503 for 4 s (both callers' proxies to it). Round robin without outlier ejection keeps sending it half of the catalog calls: half of the browsing and of the orders fail. With outlier ejection (5 consecutive failures eject a replica for 2 s × the times it was ejected, at most 50 % of the replicas) and one retry that goes to another replica than the one that failed, the callers stop calling catalog-2 after five failures each and every request succeeds.",
		replicaRunFor, fault.Step{Fault: f, From: replicaFaultOn, To: replicaFaultTo})
	chart := instanceChart("calls to each catalog replica", []string{"catalog-1", "catalog-2"})
	return replicaPair(s, nil, func(w *experiment.Scenario) {
		w.Charts = chart
		w.Expect = []experiment.Expectation{
			successDuringBelow("browse", 0.75),
			shareDuring(w.Probe, bad, true, 0.4),
			nothingLost(), eventsIntact(),
		}
	}, func(p *experiment.Scenario) {
		retry := settings{"RETRY_MAX_ATTEMPTS": "2", "RETRY_BASE_DELAY": "5ms", "RETRY_MAX_DELAY": "10ms"}
		eject := settings{"OUTLIER_CONSECUTIVE_FAILURES": strconv.Itoa(ejectAfter), "OUTLIER_INTERVAL": "10s",
			"OUTLIER_BASE_EJECTION_TIME": baseEjection.String(), "OUTLIER_MAX_EJECTION_TIME": "30s", "OUTLIER_MAX_EJECTION_PERCENT": "50"}
		p.Env = withLinks(map[string]settings{"gateway-catalog": merge(retry, eject), "orders-catalog": merge(retry, eject)}, nil)
		p.Charts = chart
		p.During = &experiment.Thresholds{MinSuccess: 0.999}
		p.Expect = []experiment.Expectation{
			successDuringAtLeast("browse", 0.999), successDuringAtLeast("orders", 0.999),
			shareDuring(p.Probe, bad, false, 0.25),
			ejections(p.Probe, bad),
			nothingLost(), eventsIntact(),
		}
	})
}

// faultWindow is when r's fault on instance went on and off.
func faultWindow(r *experiment.Report, instance string) (on, off time.Time) {
	return experiment.FaultTime(r, instance, true), experiment.FaultTime(r, instance, false)
}

// shareDuring checks the share of catalog calls the callers sent to instance while its fault was on.
func shareDuring(probe *experiment.InstanceProbe, instance string, atLeast bool, p float64) experiment.Expectation {
	name := fmt.Sprintf("calls to %s during the fault ≤ %.0f%% of catalog calls", instance, p*100)
	if atLeast {
		name = fmt.Sprintf("calls to %s during the fault ≥ %.0f%% of catalog calls (round robin keeps calling it)", instance, p*100)
	}
	return experiment.Expectation{Name: name, Weight: 2, Check: func(r *experiment.Report) (bool, string) {
		on, off := faultWindow(r, instance)
		v, all := share(probe.Samples(), instance, on, off)
		if all == 0 {
			return false, "no catalog call measured"
		}
		return (v >= p) == atLeast, fmt.Sprintf("%s of %.0f calls", experiment.Pct(v), all)
	}}
}

// ejections checks that both callers ejected instance during its fault, and reports when the last call
// to it went out after the fault began.
func ejections(probe *experiment.InstanceProbe, instance string) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("both callers ejected %s", instance), Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			on, off := faultWindow(r, instance)
			ss := probe.Samples()
			var got string
			ok := true
			for _, l := range catalogLinks {
				n := experiment.Calls(ss, experiment.Match{Metric: "discovery_ejections_total", Links: []string{l}, Instance: instance}, on, off)
				got += fmt.Sprintf("%s: %.0f ejection(s); ", l, n)
				ok = ok && n >= 1
			}
			return ok, got + fmt.Sprintf("%.0f calls to %s during the fault", experiment.Calls(ss, calls(instance, catalogLinks...), on, off), instance)
		}}
}

// ---- the registry down: the cached set --------------------------------------------------------------

// catalogRoutes are what a catalog instance serves its callers (not its probes and scrapes).
var catalogRoutes = []string{"GET /products", "GET /products/{id}", "POST /reservations", "GET /reservations/{id}",
	"POST /reservations/{id}/commit", "POST /reservations/{id}/release"}

// served matches the calls instance itself served (its own server counter, scraped through the relay).
func served(instance string) experiment.Match {
	return experiment.Match{Metric: "http_server_requests_total", Service: instance, Routes: catalogRoutes}
}

// The registry is away for 6 s (less than the 10 s lease, so no registration is lost). The spare
// replica starts just after it goes and takes 2–5 s to come up on this busy machine, so it is up before
// the registry returns; it is stopped (and deregisters) at 14.5 s, which takes up to 3 s, leaving two
// seconds to judge recovery.
const (
	registryOff    = 2 * time.Second
	registryBack   = 8 * time.Second
	spareStart     = 2100 * time.Millisecond
	spareStop      = 14500 * time.Millisecond
	registryRunFor = 19 * time.Second
	// joinBound is how soon after the registry returns the spare must get calls: the etcd clients'
	// connections come back on gRPC's reconnect backoff (1 s × 1.6ⁿ), the registration's own retries
	// back off to at most 5 s, and the callers' watch then delivers the new key at once. Measured
	// 0.9–1.9 s after outages of 3.5–4.5 s, 3.0 and 3.6 s after this 6 s one; the bound leaves the spare time
	// to be called before it is stopped.
	joinBound = 6 * time.Second
)

func registryDown() Pair {
	spare := "catalog-3"
	s := replicaBase("registry-down", "Registry down while a replica joins",
		"The registry (etcd) is unreachable for 6 s: its proxy goes down, cutting every watch, keep-alive and registration. At once a third catalog replica starts and tries to register. Without discovery (the callers' static URLs) nothing changes during the outage, and the new replica never gets a call: a static list does not learn of it. With discovery, the callers keep the instance set they had (two catalog replicas) while the registry is away, so no request fails; the new replica registers once the registry is back, and the callers' watch brings it calls within seconds.",
		registryRunFor,
		fault.Step{Fault: fault.LinkDown{Link: lab.RegistryLink}, From: registryOff, To: registryBack},
		fault.Step{Fault: fault.Container{Service: spare, Action: fault.Start}, From: spareStart, To: spareStop})
	standby := map[string]map[string]string{spare: {lab.StandbyEnv: "true"}}
	chart := func(r *experiment.Report, samples []experiment.InstanceSample) map[string]plot.Chart {
		names := []string{"catalog-1", "catalog-2", spare}
		var lines []experiment.Match
		for _, n := range names {
			lines = append(lines, served(n))
		}
		on, off := experiment.FaultTime(r, "registry", true), experiment.FaultTime(r, "registry", false)
		c := experiment.InstanceChart(r, samples, r.Title+" — "+r.Variant+": calls each catalog replica served", lines, names,
			plot.Window{From: on.Sub(r.Started).Seconds(), To: off.Sub(r.Started).Seconds(), Label: "registry down", Color: "#fdd0a2"})
		c.Windows = c.Windows[1:] // the scenario's window spans the spare's whole life: show the outage only
		return map[string]plot.Chart{"instances": c}
	}
	probed := []string{"catalog-1", "catalog-2", spare}
	return replicaPair(s, probed, func(w *experiment.Scenario) {
		w.Env = withLinks(nil, map[string]map[string]string{
			"gateway": {"REGISTRY_ENDPOINTS": ""}, "orders": {"REGISTRY_ENDPOINTS": ""}, spare: standby[spare]})
		w.Charts = chart
		w.During = &experiment.Thresholds{MinSuccess: 0.99}
		w.Expect = []experiment.Expectation{servedNothing(w.Probe, spare), nothingLost(), eventsIntact()}
	}, func(p *experiment.Scenario) {
		p.Env = withLinks(nil, map[string]map[string]string{spare: standby[spare]})
		p.Charts = chart
		p.During = &experiment.Thresholds{MinSuccess: 0.99}
		p.Expect = []experiment.Expectation{cachedSet(p.Probe), joinedAfterRegistry(p.Probe, spare, joinBound), nothingLost(), eventsIntact()}
	})
}

// servedNothing checks that instance served no call in the whole run.
func servedNothing(probe *experiment.InstanceProbe, instance string) experiment.Expectation {
	return experiment.Expectation{Name: instance + " serves no call (the callers' static URLs do not know it)", Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			ss := probe.Samples()
			n := experiment.Calls(ss, served(instance), r.Started, r.Started.Add(time.Duration(r.DurationS*float64(time.Second))+time.Second))
			return n == 0, fmt.Sprintf("%.0f calls served", n)
		}}
}

// cachedSet checks that the callers kept both catalog replicas while the registry was down.
func cachedSet(probe *experiment.InstanceProbe) experiment.Expectation {
	return experiment.Expectation{Name: "the callers keep 2 catalog instances while the registry is down", Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			on, off := experiment.FaultTime(r, "registry", true), experiment.FaultTime(r, "registry", false)
			lo, n := 1e9, 0
			for _, smp := range experiment.Between(probe.Samples(), on, off) {
				for k, v := range smp.Values {
					if k.Metric == "discovery_instances" && (k.Downstream == "gateway-catalog" || k.Downstream == "orders-catalog") {
						lo, n = min(lo, v), n+1
					}
				}
			}
			return n > 0 && lo >= 2, fmt.Sprintf("fewest catalog instances known %.0f (%d readings during the outage)", lo, n)
		}}
}

// joinedAfterRegistry checks that instance served nothing while the registry was down, and its first
// call within bound of the registry's return.
func joinedAfterRegistry(probe *experiment.InstanceProbe, instance string, bound time.Duration) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("%s unseen while the registry is down, called within %s of its return", instance, bound), Weight: 3,
		Check: func(r *experiment.Report) (bool, string) {
			ss := probe.Samples()
			on, off := experiment.FaultTime(r, "registry", true), experiment.FaultTime(r, "registry", false)
			ready := experiment.FirstAnswer(ss, instance, on)
			during := experiment.Calls(ss, served(instance), on, off)
			first := experiment.FirstCall(ss, served(instance), off)
			if first.IsZero() {
				return false, fmt.Sprintf("%.0f calls during the outage; no call after it", during)
			}
			got := fmt.Sprintf("up %.1f s into the outage, %.0f calls during it, first call %.2f s after the registry returned",
				ready.Sub(on).Seconds(), during, first.Sub(off).Seconds())
			return during == 0 && !ready.IsZero() && ready.Before(off) && first.Sub(off) <= bound, got
		}}
}

// ---- a replica killed: lease expiry -------------------------------------------------------------

// catalog-2 is killed at 2 s and started again at 7 s; being ready again takes it up to 3 s on this
// machine, and recovery is judged over two seconds after that.
const (
	killAt      = 2 * time.Second
	killUntil   = 7 * time.Second
	killRunFor  = 13 * time.Second
	shortLease  = 3 * time.Second
	longLease   = 30 * time.Second
	leaseMargin = 1500 * time.Millisecond
)

func catalogReplicaKilled() Pair {
	dead := "catalog-2"
	s := replicaBase("catalog-replica-killed", "A catalog replica killed",
		"catalog-2 gets SIGKILL: it cannot deregister, its key stays in the registry until its lease expires. With a 30 s lease the callers keep sending it half of the catalog calls until it is started again 5 s later (each of those calls hangs until the client's 3 s timeout: the dead container's address no longer answers); with a 3 s lease (kept alive every second) etcd deletes the key 2–3 s after the kill and the callers' watch drops it: no call goes to it after that. Outlier ejection and retries are off in both variants, so the lease alone decides.",
		killRunFor, fault.Step{Fault: fault.Container{Service: dead, Action: fault.Kill}, From: killAt, To: killUntil})
	chart := instanceChart("calls to each catalog replica", []string{"catalog-1", "catalog-2"})
	lease := func(ttl time.Duration) map[string]map[string]string {
		return withLinks(nil, map[string]map[string]string{"catalog": {"REGISTRY_TTL": ttl.String()}})
	}
	return replicaPair(s, nil, func(w *experiment.Scenario) {
		w.Env = lease(longLease)
		w.Charts = chart
		w.Expect = []experiment.Expectation{routedUntil(w.Probe, dead, longLease, false), successDuringBelow("browse", 0.8), nothingLost(), eventsIntact()}
	}, func(p *experiment.Scenario) {
		p.Env = lease(shortLease)
		p.Charts = chart
		p.Expect = []experiment.Expectation{routedUntil(p.Probe, dead, shortLease, true), nothingLost(), eventsIntact()}
	})
}

// routedUntil measures how long after the kill the callers still sent calls to instance (until it was
// started again): with expiring true it must stop within the lease plus a margin (the lease is renewed
// every third of it, and etcd checks expiries every half second); else it must go on to the restart.
func routedUntil(probe *experiment.InstanceProbe, instance string, ttl time.Duration, expiring bool) experiment.Expectation {
	name := fmt.Sprintf("no call to %s later than its lease (%s) + %s after the kill", instance, ttl, leaseMargin)
	if !expiring {
		name = fmt.Sprintf("calls to %s go on until it is started again (its %s lease outlives the fault)", instance, ttl)
	}
	return experiment.Expectation{Name: name, Weight: 3, Check: func(r *experiment.Report) (bool, string) {
		ss := probe.Samples()
		kill := experiment.FaultTime(r, instance, true)
		restart := r.Started.Add(killUntil)
		last := experiment.LastCall(ss, calls(instance, catalogLinks...), kill, restart)
		if last.IsZero() {
			return false, "no call after the kill"
		}
		gone := experiment.FirstValue(ss, experiment.Match{Metric: "discovery_instances", Links: []string{"gateway-catalog"}}, kill,
			func(v float64) bool { return v < 2 })
		after := last.Sub(kill)
		got := fmt.Sprintf("last call %.2f s after the kill", after.Seconds())
		if !gone.IsZero() && gone.Before(restart) {
			got += fmt.Sprintf(", gone from gateway's balancer %.2f s after it", gone.Sub(kill).Seconds())
		} else {
			got += ", still in gateway's balancer at the restart"
		}
		if expiring {
			return after <= ttl+leaseMargin, got
		}
		return restart.Sub(last) <= time.Second, got
	}}
}

// ---- a bad canary: automatic rollback -------------------------------------------------------------

const (
	canaryWeight      = 20
	canaryRollbackFor = 2 // consecutive bad seconds
	canaryOn          = 2 * time.Second
	canaryOff         = 6500 * time.Millisecond
	canaryRunFor      = 9 * time.Second
)

// canaryCalls matches the gateway's calls to one version of catalog by outcome ("" any).
func canaryCalls(version, outcome string) experiment.Match {
	return experiment.Match{Metric: "canary_requests_total", Service: "gateway", Links: []string{"gateway-catalog"}, Version: version, Outcome: outcome}
}

func badCanary() Pair {
	s := replicaBase("bad-canary", "A bad canary of catalog",
		fmt.Sprintf("catalog v2 (catalog-v2) takes %d %% of the gateway's catalog calls; from t=2 s to 6.5 s it answers every call 503 (its proxy's http_fault toxic). Without a rollback rule the canary keeps failing a fifth of the browsing until someone notices. With the rule (error rate over 5 %% for %d consecutive seconds, at least 3 calls a second) the gateway sets the canary's weight to 0 on its own, logs why and counts it: the failures stop within seconds.", canaryWeight, canaryRollbackFor),
		canaryRunFor, fault.Step{Fault: fault.HTTPError(lab.InstanceLink("gateway-catalog", "catalog-v2"), 503, 1), From: canaryOn, To: canaryOff})
	s.Streams[0].Rate = 30 // six canary calls a second at 20 %: enough for the rule to judge each second
	canaryEnv := func(rollbackSeconds int) map[string]map[string]string {
		return withLinks(nil, map[string]map[string]string{
			"catalog-v2": {},
			"gateway": {"GATEWAY_CATALOG_CANARY_VERSION": "v2", "GATEWAY_CATALOG_CANARY_WEIGHT": strconv.Itoa(canaryWeight),
				"GATEWAY_CATALOG_CANARY_ROLLBACK_SECONDS": strconv.Itoa(rollbackSeconds), "GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_ERROR_RATE": "0.05",
				"GATEWAY_CATALOG_CANARY_ROLLBACK_MAX_P99": "0s", "GATEWAY_CATALOG_CANARY_ROLLBACK_MIN_REQUESTS": "3"},
		})
	}
	chart := func(r *experiment.Report, samples []experiment.InstanceSample) map[string]plot.Chart {
		lines := []experiment.Match{canaryCalls("v1", ""), canaryCalls("v2", ""), canaryCalls("v2", "failure")}
		var extra []plot.Window
		if at := rollbackTime(samples, r); !at.IsZero() {
			x := at.Sub(r.Started).Seconds()
			extra = append(extra, plot.Window{From: x, To: x + 0.08, Label: "rollback", Color: "#2ca02c"})
		}
		c := experiment.InstanceChart(r, samples, r.Title+" — "+r.Variant+": gateway's calls to each catalog version", lines,
			[]string{"v1", "v2 (canary)", "v2 failures"}, extra...)
		c.Windows[0].Label = "v2 answers 503"
		return map[string]plot.Chart{"canary": c}
	}
	return replicaPair(s, nil, func(w *experiment.Scenario) {
		w.Env = canaryEnv(0)
		w.Charts = chart
		w.Expect = []experiment.Expectation{noRollback(w.Probe), successDuringBelow("browse", 0.95), nothingLost(), eventsIntact()}
	}, func(p *experiment.Scenario) {
		p.Env = canaryEnv(canaryRollbackFor)
		p.Charts = chart
		p.Expect = []experiment.Expectation{rolledBack(p.Probe, time.Duration(canaryRollbackFor)*time.Second+1500*time.Millisecond), nothingLost(), eventsIntact()}
	})
}

// rollbackTime is when the gateway's canary_rollbacks_total first grew after the run started.
func rollbackTime(samples []experiment.InstanceSample, r *experiment.Report) time.Time {
	return experiment.FirstCall(samples, experiment.Match{Metric: "canary_rollbacks_total", Service: "gateway", Links: []string{"gateway-catalog"}}, r.Started)
}

// canaryFailures counts the canary's failed calls from the fault's start on, and after at.
func canaryFailures(samples []experiment.InstanceSample, r *experiment.Report, at time.Time) (total, after float64) {
	end := r.Started.Add(time.Duration(r.DurationS*float64(time.Second)) + time.Second)
	on := r.Started.Add(time.Duration(r.FaultOnS * float64(time.Second)))
	total = experiment.Calls(samples, canaryCalls("v2", "failure"), on.Add(-250*time.Millisecond), end)
	if !at.IsZero() {
		after = experiment.Calls(samples, canaryCalls("v2", ""), at.Add(250*time.Millisecond), end)
	}
	return total, after
}

// rolledBack checks that the rule set the canary's weight to 0 within bound of the fault, and that no
// call went to the canary after that.
func rolledBack(probe *experiment.InstanceProbe, bound time.Duration) experiment.Expectation {
	return experiment.Expectation{Name: fmt.Sprintf("the canary is rolled back within %s of going bad; no call to it after", bound), Weight: 3,
		Check: func(r *experiment.Report) (bool, string) {
			ss := probe.Samples()
			at := rollbackTime(ss, r)
			if at.IsZero() {
				return false, "no rollback"
			}
			on := r.Started.Add(time.Duration(r.FaultOnS * float64(time.Second)))
			failed, after := canaryFailures(ss, r, at)
			weight, _ := experiment.LastValue(ss, experiment.Match{Metric: "canary_weight_ratio", Service: "gateway", Links: []string{"gateway-catalog"}})
			took := at.Sub(on)
			return took <= bound && after == 0 && weight == 0, fmt.Sprintf("rolled back %.2f s after the canary went bad; %.0f requests failed on it; %.0f calls to it after; weight now %.2f",
				took.Seconds(), failed, after, weight)
		}}
}

// noRollback checks that, without the rule, the canary kept its weight and kept failing calls.
func noRollback(probe *experiment.InstanceProbe) experiment.Expectation {
	return experiment.Expectation{Name: "without the rule the canary keeps its weight and its failures go on", Weight: 2,
		Check: func(r *experiment.Report) (bool, string) {
			ss := probe.Samples()
			failed, _ := canaryFailures(ss, r, time.Time{})
			weight, _ := experiment.LastValue(ss, experiment.Match{Metric: "canary_weight_ratio", Service: "gateway", Links: []string{"gateway-catalog"}})
			late := experiment.LastCall(ss, canaryCalls("v2", "failure"), r.Started, r.Started.Add(time.Duration(r.DurationS*float64(time.Second))+time.Second))
			return rollbackTime(ss, r).IsZero() && weight > 0 && !late.IsZero() && late.Sub(r.Started) >= time.Duration(r.FaultOffS*float64(time.Second))-time.Second,
				fmt.Sprintf("%.0f requests failed on the canary, the last %.1f s into the run; weight %.2f", failed, late.Sub(r.Started).Seconds(), weight)
		}}
}
