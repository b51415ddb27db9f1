package resilience

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/services/platform"
)

// linkVars are every variable LinkConfigFromEnv reads, without the link prefix.
var linkVars = []string{
	"BREAKER", "BREAKER_FAILURE_RATIO", "BREAKER_MIN_REQUESTS", "BREAKER_WINDOW", "BREAKER_SLEEP_WINDOW",
	"BREAKER_HALF_OPEN_PROBES", "BULKHEAD_MAX_CONCURRENT", "BULKHEAD_MAX_WAIT", "RETRY_MAX_ATTEMPTS",
	"RETRY_BASE_DELAY", "RETRY_MAX_DELAY", "RETRY_BUDGET_RATIO", "RETRY_BUDGET_MIN_PER_SEC",
	"RETRY_BUDGET_WINDOW", "TIMEOUT", "HEDGE_DELAY", "ADAPTIVE_MAX_LIMIT", "ADAPTIVE_LATENCY",
}

var serverVars = []string{"RATE_LIMIT_RPS", "RATE_LIMIT_BURST", "SHED_MAX_IN_FLIGHT"}

func TestDefaults(t *testing.T) {
	env := platform.EnvFrom(map[string]string{})
	got := LinkConfigFromEnv(env, "orders-payments")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, DefaultLinkConfig()) {
		t.Fatalf("got %+v, want the defaults", got)
	}
	if _, err := NewLink("orders-payments", got, nil); err != nil {
		t.Fatalf("defaults do not build: %v", err)
	}
}

func TestLinkConfigFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"ORDERS_PAYMENTS_BREAKER":                  "HYSTRIX",
		"ORDERS_PAYMENTS_BREAKER_FAILURE_RATIO":    "0.25",
		"ORDERS_PAYMENTS_BREAKER_MIN_REQUESTS":     "7",
		"ORDERS_PAYMENTS_BREAKER_WINDOW":           "30s",
		"ORDERS_PAYMENTS_BREAKER_SLEEP_WINDOW":     "2s",
		"ORDERS_PAYMENTS_BREAKER_HALF_OPEN_PROBES": "3",
		"ORDERS_PAYMENTS_BULKHEAD_MAX_CONCURRENT":  "8",
		"ORDERS_PAYMENTS_BULKHEAD_MAX_WAIT":        "20ms",
		"ORDERS_PAYMENTS_RETRY_MAX_ATTEMPTS":       "5",
		"ORDERS_PAYMENTS_RETRY_BASE_DELAY":         "10ms",
		"ORDERS_PAYMENTS_RETRY_MAX_DELAY":          "400ms",
		"ORDERS_PAYMENTS_RETRY_BUDGET_RATIO":       "0.1",
		"ORDERS_PAYMENTS_RETRY_BUDGET_MIN_PER_SEC": "2",
		"ORDERS_PAYMENTS_RETRY_BUDGET_WINDOW":      "5s",
		"ORDERS_PAYMENTS_TIMEOUT":                  "750ms",
		"ORDERS_PAYMENTS_HEDGE_DELAY":              "30ms",
		"ORDERS_PAYMENTS_ADAPTIVE_MAX_LIMIT":       "50",
		"ORDERS_PAYMENTS_ADAPTIVE_LATENCY":         "100ms",
		"GATEWAY_CATALOG_TIMEOUT":                  "1ms", // another link's: ignored
	})
	c := LinkConfigFromEnv(env, "orders-payments")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	want := DefaultLinkConfig()
	want.Breaker = breaker.Config{Backend: breaker.Hystrix, FailureRatio: 0.25, MinRequests: 7, Window: 30 * time.Second,
		SleepWindow: 2 * time.Second, HalfOpenProbes: 3}
	want.Bulkhead.MaxConcurrent, want.Bulkhead.MaxWait = 8, 20*time.Millisecond
	want.Retry.MaxAttempts, want.Retry.BaseDelay, want.Retry.MaxDelay = 5, 10*time.Millisecond, 400*time.Millisecond
	want.Retry.Budget.Ratio, want.Retry.Budget.MinPerSec, want.Retry.Budget.Window = 0.1, 2, 5*time.Second
	want.Timeout, want.HedgeDelay = 750*time.Millisecond, 30*time.Millisecond
	want.Adaptive.Max, want.Adaptive.Latency = 50, 100*time.Millisecond
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestSwitchingPoliciesOff(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"GATEWAY_CATALOG_BREAKER": "off", "GATEWAY_CATALOG_BULKHEAD_MAX_CONCURRENT": "0",
		"GATEWAY_CATALOG_RETRY_MAX_ATTEMPTS": "1", "GATEWAY_CATALOG_TIMEOUT": "0", "GATEWAY_CATALOG_HEDGE_DELAY": "0",
	})
	c := LinkConfigFromEnv(env, "gateway-catalog")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	l, err := NewLink("gateway-catalog", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Breaker() != nil || l.Snapshot().Breaker != nil {
		t.Fatal("breaker not off")
	}
}

func TestBadValues(t *testing.T) {
	for _, tc := range []struct{ name, key, value string }{
		{"unknown backend", "BREAKER", "resilience4j"},
		{"ratio above 1", "BREAKER_FAILURE_RATIO", "1.5"},
		{"ratio not a number", "BREAKER_FAILURE_RATIO", "half"},
		{"min requests 0", "BREAKER_MIN_REQUESTS", "0"},
		{"sleep window below 1ms", "BREAKER_SLEEP_WINDOW", "0s"},
		{"probes 0", "BREAKER_HALF_OPEN_PROBES", "0"},
		{"negative bulkhead", "BULKHEAD_MAX_CONCURRENT", "-1"},
		{"negative wait", "BULKHEAD_MAX_WAIT", "-5ms"},
		{"zero attempts", "RETRY_MAX_ATTEMPTS", "0"},
		{"attempts not an integer", "RETRY_MAX_ATTEMPTS", "three"},
		{"base above max delay", "RETRY_BASE_DELAY", "5s"},
		{"negative budget ratio", "RETRY_BUDGET_RATIO", "-0.1"},
		{"zero budget window", "RETRY_BUDGET_WINDOW", "0s"},
		{"timeout without unit", "TIMEOUT", "100"},
		{"negative adaptive max", "ADAPTIVE_MAX_LIMIT", "-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := platform.EnvFrom(map[string]string{"ORDERS_CATALOG_" + tc.key: tc.value})
			LinkConfigFromEnv(env, "orders-catalog")
			if err := env.Err(); err == nil {
				t.Fatalf("ORDERS_CATALOG_%s=%q accepted", tc.key, tc.value)
			}
		})
	}
}

func TestServerConfigFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{"GATEWAY_RATE_LIMIT_RPS": "50", "GATEWAY_RATE_LIMIT_BURST": "100", "GATEWAY_SHED_MAX_IN_FLIGHT": "0"})
	c := ServerConfigFromEnv(env, "gateway")
	if err := env.Err(); err != nil || c.RateLimit.Rate != 50 || c.RateLimit.Burst != 100 || c.Shed.MaxInFlight != 0 {
		t.Fatalf("%+v %v", c, err)
	}
	env = platform.EnvFrom(map[string]string{"ORDERS_RATE_LIMIT_RPS": "5", "ORDERS_RATE_LIMIT_BURST": "0"})
	ServerConfigFromEnv(env, "orders")
	if env.Err() == nil {
		t.Fatal("burst 0 with a rate accepted")
	}
}

// TestEveryVariableIsDocumented keeps docs/patterns/README.md's table in step with the code.
func TestEveryVariableIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/patterns/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range linkVars {
		if !strings.Contains(string(doc), "`<LINK>_"+v+"`") {
			t.Errorf("<LINK>_%s is not in docs/patterns/README.md", v)
		}
	}
	for _, v := range serverVars {
		if !strings.Contains(string(doc), "`<SERVICE>_"+v+"`") {
			t.Errorf("<SERVICE>_%s is not in docs/patterns/README.md", v)
		}
	}
}
