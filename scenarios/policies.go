// Package scenarios is the chaos lab's catalogue: pairs of experiments, each run without and with the
// resilience policy it teaches, on one shared stack (package lab). `go test ./scenarios` runs them all
// and fails on any verdict; `go run ./scenarios/cmd/lab` runs them and prints the summary table.
package scenarios

import (
	"maps"
	"strconv"
	"strings"
	"time"

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

// The breaker the "with" variants share, sized for the lab's short runs: it trips when failures are half
// of the calls in its two-second rolling window (and at least five calls completed) and probes after a
// one-second sleep window. With the window full of successes when a fault makes every call fail, the
// failures needed are as many as the successes still in the window: detection takes ratio × window.
const (
	breakerRatio  = 0.5
	tripAfter     = 5
	breakerWindow = 2 * time.Second
	sleepWindow   = time.Second
)

func breakerOn() settings {
	return settings{
		"BREAKER": "gobreaker", "BREAKER_FAILURE_RATIO": strconv.FormatFloat(breakerRatio, 'f', -1, 64),
		"BREAKER_MIN_REQUESTS": strconv.Itoa(tripAfter), "BREAKER_WINDOW": breakerWindow.String(),
		"BREAKER_SLEEP_WINDOW": sleepWindow.String(), "BREAKER_HALF_OPEN_PROBES": "1",
	}
}

func merge(ss ...settings) settings {
	out := settings{}
	for _, s := range ss {
		maps.Copy(out, s)
	}
	return out
}
