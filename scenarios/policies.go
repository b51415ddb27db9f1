// Package scenarios is the chaos lab's catalogue: pairs of experiments, each run without and with the
// resilience policy it teaches, on one shared stack (package lab). `go test ./scenarios` runs them all
// and fails on any verdict; `go run ./scenarios/cmd/lab` runs them and prints the summary table.
package scenarios

import (
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/resilience-lab/lab/scenarios/experiment"
	"github.com/resilience-lab/lab/scenarios/lab"
)

// Policy settings travel as environment variables named <LINK>_<SETTING> (resilience.LinkConfigFromEnv):
// ORDERS_PAYMENTS_BREAKER=gobreaker, …_TIMEOUT=300ms, …_RETRY_MAX_ATTEMPTS=3.
func prefix(link string) string { return strings.ToUpper(strings.ReplaceAll(link, "-", "_")) + "_" }

// policyServices are the services with server-side policies (rate limit, shedding) and client links.
var policyServices = []string{"catalog", "payments", "orders", "gateway"}

// settings is a link's policy settings by short name (BREAKER, TIMEOUT, …).
type settings map[string]string

// bare turns every client-side policy of every link off and every server-side one of every service:
// the shop as it behaves with no resilience at all. The "without" variants start from it.
func bare() map[string]map[string]string {
	env := map[string]map[string]string{}
	for _, l := range lab.Links {
		e := env[l.Caller]
		if e == nil {
			e = map[string]string{}
			env[l.Caller] = e
		}
		p := prefix(l.Name)
		e[p+"BREAKER"] = "off"
		e[p+"BULKHEAD_MAX_CONCURRENT"] = "0"
		e[p+"RETRY_MAX_ATTEMPTS"] = "1"
		e[p+"TIMEOUT"] = "0s"
	}
	for _, svc := range policyServices {
		if env[svc] == nil {
			env[svc] = map[string]string{}
		}
		env[svc][prefix(svc)+"SHED_MAX_IN_FLIGHT"] = "0"
	}
	env["gateway"]["GATEWAY_RATE_LIMIT_RPS"] = "1000"
	env["gateway"]["GATEWAY_RATE_LIMIT_BURST"] = "2000"
	// The fallbacks: stale catalog answers at the gateway, pending_payment in orders.
	env["gateway"]["GATEWAY_STALE_CATALOG"] = "false"
	env["orders"]["ORDERS_PENDING_PAYMENT"] = "false"
	return env
}

// with returns bare() plus the given settings of links (and plain variables of services, keyed by the
// service's name: "gateway" → {"GATEWAY_RATE_LIMIT_RPS": "5"}).
func with(links map[string]settings, services map[string]map[string]string) map[string]map[string]string {
	env := bare()
	for link, s := range links {
		l, ok := lab.LinkByName(link)
		if !ok {
			panic("scenarios: unknown link " + link)
		}
		for k, v := range s {
			env[l.Caller][prefix(link)+k] = v
		}
	}
	for svc, vars := range services {
		maps.Copy(env[svc], vars)
	}
	return env
}

// breakerConfig is the lab's circuit breaker on one link: it trips once at least five calls completed
// in its rolling window and ratio of them failed, and probes (one call) after a one-second sleep window.
//
// The window is longer than the load before the fault plus the detection, and the runner keeps the
// shop quiet before such a run (Runner.Run): when the fault comes, the window holds exactly the calls
// of the two steady seconds and none rolls out before the breaker trips. So the failures needed are
// ratio ÷ (1 − ratio) × those successes, and TTD is failures needed ÷ failure arrival rate.
type breakerConfig struct {
	ratio  float64
	window time.Duration
}

const (
	tripAfter   = 5
	sleepWindow = time.Second
)

var (
	// breakerFast is for faults that fail calls at once (refused, 503, a dead container): half of the
	// calls, about a second of failures at the lab's rate.
	breakerFast = breakerConfig{ratio: 0.5, window: 3500 * time.Millisecond}
	// breakerSlow is for faults whose failures are timeouts: 40 %, so it opens early enough in the
	// fault to show a whole open → half-open → open cycle before the fault ends.
	breakerSlow = breakerConfig{ratio: 0.4, window: 4 * time.Second}
)

func (b breakerConfig) settings() settings {
	return settings{
		"BREAKER": "gobreaker", "BREAKER_FAILURE_RATIO": strconv.FormatFloat(b.ratio, 'f', -1, 64),
		"BREAKER_MIN_REQUESTS": strconv.Itoa(tripAfter), "BREAKER_WINDOW": b.window.String(),
		"BREAKER_SLEEP_WINDOW": sleepWindow.String(), "BREAKER_HALF_OPEN_PROBES": "1",
	}
}

// watch watches this breaker on link under rate calls per second before the fault and failingRate
// requests per second failing during it, each with two failed calls one failure latency apart: the
// saga's compensation re-sends a charge whose outcome is unknown (orders→payments) or looks for a
// reservation whose answer was lost (orders→catalog).
func (b breakerConfig) watch(link string, rate, failingRate float64, failureLatency time.Duration) []experiment.Watch {
	l, _ := lab.LinkByName(link)
	return []experiment.Watch{{Service: l.Caller, Downstream: link, FailureRatio: b.ratio, MinRequests: tripAfter,
		Window: b.window, LinkRate: rate, FailureRate: failingRate, FailuresPerRequest: 2,
		FailureLatency: failureLatency, SleepWindow: sleepWindow}}
}

func merge(ss ...settings) settings {
	out := settings{}
	for _, s := range ss {
		maps.Copy(out, s)
	}
	return out
}
