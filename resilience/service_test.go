package resilience

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/breaker"
	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

func TestServiceConfigFromEnvReadsEveryLink(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"ORDERS_PAYMENTS_BREAKER": "off", "ORDERS_CATALOG_TIMEOUT": "250ms", "ORDERS_SHED_MAX_IN_FLIGHT": "12",
	})
	c := ServiceConfigFromEnv(env, "orders", "orders-catalog", "orders-payments")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Links["orders-payments"].Breaker.Backend != BreakerOff || c.Links["orders-catalog"].Timeout.Milliseconds() != 250 ||
		c.Server.Shed.MaxInFlight != 12 || len(c.Links) != 2 {
		t.Fatalf("%+v", c)
	}
}

// TestPoliciesLogBreakerTransitions: the state changes the chaos lab times arrive in /debug/resilience,
// and a link that was not configured gives a client no policies.
func TestPoliciesLogBreakerTransitions(t *testing.T) {
	c := newCallee(t)
	c.status.Store(503)
	fake, _ := httpClock()
	cfg := ServiceConfig{Service: "orders", Links: map[string]LinkConfig{"orders-payments": testConfig()}}
	p, err := cfg.Build(prometheus.NewRegistry(), map[string][]Option{"orders-payments": {WithClock(fake)}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	e := p.Link("orders-payments").Policies()("get_payment", true)(c.endpoint(t))
	for range 10 {
		_, _ = e(context.Background(), struct{}{})
	}
	if st := p.Link("orders-payments").Breaker().State(); st != breaker.Open {
		t.Fatalf("breaker %v, want open after failures", st)
	}
	rec := httptest.NewRecorder()
	p.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/resilience", nil))
	var snap DebugSnapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &snap); err != nil {
		t.Fatal(err)
	}
	var opened bool
	for _, ev := range snap.Events {
		if ev.Kind == policy.EventStateChange && ev.To == "open" && ev.Downstream == "orders-payments" && ev.Service == "orders" && !ev.Time.IsZero() {
			opened = true
		}
	}
	if !opened {
		t.Fatalf("no state_change to open in %d events: %s", len(snap.Events), rec.Body.String())
	}
	var cc platform.ClientConfig
	p.Client("orders-catalog")(&cc)
	if cc.Policies != nil {
		t.Fatal("an unconfigured link must give no policies")
	}
	p.Client("orders-payments")(&cc)
	if cc.Policies == nil {
		t.Fatal("a configured link must give its policies")
	}
}

func TestEventLogKeepsTheNewest(t *testing.T) {
	l := &eventLog{max: 3}
	for i := 1; i <= 5; i++ {
		l.add(policy.Event{Attempt: i})
	}
	got := l.all()
	if len(got) != 3 || got[0].Attempt != 3 || got[2].Attempt != 5 {
		t.Fatalf("%+v", got)
	}
}

// An inner service's links time out at InnerTimeout unless set; every other default and the variables
// read are the same as any link's.
func TestInnerServiceConfigNestsTheTimeout(t *testing.T) {
	env := platform.EnvFrom(map[string]string{"ORDERS_CATALOG_TIMEOUT": "450ms", "ORDERS_PAYMENTS_RETRY_MAX_ATTEMPTS": "2"})
	c := InnerServiceConfigFromEnv(env, "orders", "orders-catalog", "orders-payments")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	payments := DefaultLinkConfig()
	payments.Timeout, payments.Retry.MaxAttempts = InnerTimeout, 2
	if got := c.Links["orders-payments"]; !reflect.DeepEqual(got, payments) {
		t.Fatalf("orders-payments %+v\nwant %+v", got, payments)
	}
	if got := c.Links["orders-catalog"].Timeout; got != 450*time.Millisecond {
		t.Fatalf("orders-catalog timeout %s, want the variable's 450ms", got)
	}
	if outer := DefaultLinkConfig().Timeout; 3*InnerTimeout >= outer {
		t.Fatalf("inner timeout %s leaves no room for a retry within the outer %s", InnerTimeout, outer)
	}
}
