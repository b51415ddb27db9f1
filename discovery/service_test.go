package discovery

import (
	"testing"

	"github.com/resilience-lab/lab/services/platform"
)

func TestServiceConfigFromEnv(t *testing.T) {
	links := map[string]SeededLink{"orders-catalog": {Service: "catalog", Seed: "http://catalog:8081"}}
	tests := []struct {
		name     string
		vars     map[string]string
		register bool
		wantErr  bool
		wantOn   bool
	}{
		{"off: nothing read, nothing required", map[string]string{"ORDERS_CATALOG_LB": "bogus"}, true, false, false},
		{"on without advertise url", map[string]string{"REGISTRY_ENDPOINTS": "http://127.0.0.1:2379"}, true, true, true},
		{"on, caller only", map[string]string{"REGISTRY_ENDPOINTS": "http://127.0.0.1:2379"}, false, false, true},
		{"on, bad balancer", map[string]string{"REGISTRY_ENDPOINTS": "http://127.0.0.1:2379", "ORDERS_CATALOG_LB": "bogus"}, false, true, true},
		{"on, registered", map[string]string{"REGISTRY_ENDPOINTS": "http://127.0.0.1:2379",
			"SERVICE_ADVERTISE_URL": "http://orders-1:8082", "SERVICE_INSTANCE_ID": "orders-1"}, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := platform.EnvFrom(tt.vars)
			c := ServiceConfigFromEnv(env, "orders", tt.register, links)
			if err := env.Err(); (err != nil) != tt.wantErr {
				t.Fatalf("env error %v, want error: %v", err, tt.wantErr)
			}
			if c.Enabled() != tt.wantOn {
				t.Fatalf("enabled %v, want %v", c.Enabled(), tt.wantOn)
			}
			if !tt.wantOn {
				if c.Links != nil || c.Register {
					t.Fatalf("off config carries links or a registration: %+v", c)
				}
				return
			}
			l := c.Links["orders-catalog"]
			if l.Service != "catalog" || l.Version != DefaultVersion || len(l.Balancer.Seeds) != 1 || l.Balancer.Seeds[0] != "http://catalog:8081" {
				t.Fatalf("link %+v", l)
			}
			if c.Register != tt.register {
				t.Fatalf("register %v, want %v", c.Register, tt.register)
			}
		})
	}
}

// Off, a nil *Discovery changes nothing in a service's wiring.
func TestNilDiscoveryIsANoOp(t *testing.T) {
	d, err := ServiceConfig{}.Start("orders", nil, nil, nil)
	if err != nil || d != nil {
		t.Fatalf("Start off: %v, %v; want nil, nil", d, err)
	}
	cfg := platform.NewClientConfig(d.Client("orders-catalog"))
	if cfg.Source != nil || cfg.Policies != nil {
		t.Fatalf("client option of nil discovery changed the config: %+v", cfg)
	}
	if extra := d.Extra(nil); extra != nil {
		t.Fatalf("Extra added routes: %v", extra)
	}
	if d.BeforeDrain() != nil || d.Close() != nil {
		t.Fatal("nil discovery has a drain hook or fails to close")
	}
}
