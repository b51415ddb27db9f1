package scenarios

import (
	"strings"
	"testing"

	"github.com/resilience-lab/lab/scenarios/lab"
)

// TestReplicatedPairs checks what the discovery pairs ask of the replicated stack without running it:
// each variant has its own probe and charts, runs on the replicated topology, names only instances
// the stack has, and differs from its baseline only in what it teaches.
func TestReplicatedPairs(t *testing.T) {
	instances := map[string]bool{}
	for _, inst := range lab.ReplicaInstances {
		instances[inst.Name], instances[inst.Service] = true, true
	}
	for _, p := range Replicated() {
		w, v := p.Without, p.With
		if !w.Replicas || !v.Replicas {
			t.Errorf("%s: not on the replicated stack", w.ID)
		}
		if w.Probe == nil || v.Probe == nil || w.Probe == v.Probe {
			t.Errorf("%s: each variant needs its own probe", w.ID)
		}
		if w.Charts == nil || v.Charts == nil {
			t.Errorf("%s: no charts", w.ID)
		}
		if envEqual(w.Env, v.Env) {
			t.Errorf("%s: both variants run the same configuration", w.ID)
		}
		for _, sc := range []*struct {
			name string
			env  map[string]map[string]string
		}{{"without", w.Env}, {"with", v.Env}} {
			for svc := range sc.env {
				if !instances[svc] {
					t.Errorf("%s/%s: env for %q, which the replicated stack does not run", w.ID, sc.name, svc)
				}
			}
			// The baseline of every discovery variant: round robin, no ejection, unless it says otherwise.
			if sc.env["gateway"]["GATEWAY_PAYMENTS_LB"] != "round_robin" {
				t.Errorf("%s/%s: gateway-payments not round robin", w.ID, sc.name)
			}
		}
		if len(w.Expect) == 0 || len(v.Expect) == 0 {
			t.Errorf("%s: a variant checks nothing", w.ID)
		}
		if SelectReplicated(w.ID)[0].ID != w.ID || len(Select(w.ID)) != 0 {
			t.Errorf("%s: selected on the wrong stack", w.ID)
		}
	}
	if got := lab.InstanceLink("orders-catalog", "catalog-2"); got != "orders-catalog-2" {
		t.Errorf("InstanceLink = %q", got)
	}
	if !strings.Contains(describe(Replicated()[0].With.Env), "OUTLIER_CONSECUTIVE_FAILURES=5") {
		t.Errorf("the ejection pair's policy does not name its ejection: %s", describe(Replicated()[0].With.Env))
	}
}
