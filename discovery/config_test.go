package discovery

import (
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

func TestRegistryConfigFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"REGISTRY_ENDPOINTS": "http://etcd:2379, http://etcd-2:2379", "REGISTRY_TTL": "5s", "REGISTRY_REQUEST_TIMEOUT": "1s",
	})
	c := RegistryConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints) != 2 || c.Endpoints[1] != "http://etcd-2:2379" || c.TTL != 5*time.Second ||
		c.RequestTimeout != time.Second || c.ResyncInterval != 30*time.Second {
		t.Fatalf("%+v", c)
	}
	if c := RegistryConfigFromEnv(platform.EnvFrom(nil)); len(c.Endpoints) != 0 {
		t.Fatalf("no REGISTRY_ENDPOINTS must mean discovery off, got %v", c.Endpoints)
	}
	for _, bad := range []map[string]string{
		{"REGISTRY_ENDPOINTS": "etcd:2379"},
		{"REGISTRY_TTL": "500ms"},
		{"REGISTRY_TTL": "ten"},
		{"REGISTRY_REQUEST_TIMEOUT": "0s"},
		{"REGISTRY_RESYNC_INTERVAL": "-1s"},
	} {
		env := platform.EnvFrom(bad)
		RegistryConfigFromEnv(env)
		if env.Err() == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestInstanceFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{"SERVICE_ADVERTISE_URL": "http://catalog-2:8081", "SERVICE_INSTANCE_ID": "catalog-2", "SERVICE_VERSION": "v2"})
	i := InstanceFromEnv(env, "catalog")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if i.Key() != "/lab/services/catalog/v2/catalog-2" || i.URL != "http://catalog-2:8081" {
		t.Fatalf("%+v key %s", i, i.Key())
	}
	for _, bad := range []map[string]string{
		{},
		{"SERVICE_ADVERTISE_URL": "catalog:8081"},
		{"SERVICE_ADVERTISE_URL": "http://catalog:8081", "SERVICE_INSTANCE_ID": "a/b"},
		{"SERVICE_ADVERTISE_URL": "http://catalog:8081", "SERVICE_VERSION": "v 2"},
	} {
		env := platform.EnvFrom(bad)
		InstanceFromEnv(env, "catalog")
		if env.Err() == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBalancerConfigFromEnv(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"ORDERS_CATALOG_LB": "ROUND_ROBIN", "ORDERS_CATALOG_OUTLIER_CONSECUTIVE_FAILURES": "3",
		"ORDERS_CATALOG_OUTLIER_BASE_EJECTION_TIME": "10s", "ORDERS_CATALOG_OUTLIER_MAX_EJECTION_PERCENT": "100",
		"ORDERS_CATALOG_INSTANCE_PROXIES": "http://catalog-1:8081=http://toxiproxy:21001, http://catalog-2:8081=http://toxiproxy:21002",
	})
	c := BalancerConfigFromEnv(env, "orders-catalog")
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Strategy != RoundRobin || c.Outlier.ConsecutiveFailures != 3 || c.Outlier.BaseEjectionTime != 10*time.Second ||
		c.Outlier.MaxEjectionPercent != 100 || c.Outlier.MaxEjectionTime != 300*time.Second ||
		c.Proxies["http://catalog-2:8081"] != "http://toxiproxy:21002" || len(c.Proxies) != 2 {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []map[string]string{
		{"ORDERS_CATALOG_LB": "random"},
		{"ORDERS_CATALOG_OUTLIER_CONSECUTIVE_FAILURES": "-1"},
		{"ORDERS_CATALOG_OUTLIER_CONSECUTIVE_FAILURES": "five"},
		{"ORDERS_CATALOG_OUTLIER_MAX_EJECTION_PERCENT": "150"},
		{"ORDERS_CATALOG_OUTLIER_MAX_EJECTION_TIME": "1s"},
		{"ORDERS_CATALOG_OUTLIER_INTERVAL": "0s"},
		{"ORDERS_CATALOG_INSTANCE_PROXIES": "http://catalog-1:8081"},
		{"ORDERS_CATALOG_INSTANCE_PROXIES": "http://catalog-1:8081=toxiproxy:21001"},
	} {
		env := platform.EnvFrom(bad)
		BalancerConfigFromEnv(env, "orders-catalog")
		if env.Err() == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestInstanceValidate(t *testing.T) {
	ok := Instance{Service: "catalog", Version: "v1", ID: "catalog-1", URL: "http://catalog-1:8081"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		modify func(*Instance)
	}{
		{"no service", func(i *Instance) { i.Service = "" }},
		{"slash in service", func(i *Instance) { i.Service = "catalog/v2" }},
		{"no version", func(i *Instance) { i.Version = "" }},
		{"space in id", func(i *Instance) { i.ID = "catalog 1" }},
		{"url without scheme", func(i *Instance) { i.URL = "catalog-1:8081" }},
		{"ftp url", func(i *Instance) { i.URL = "ftp://catalog-1:21" }},
	} {
		i := ok
		tc.modify(&i)
		if err := i.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", tc.name, i)
		}
	}
	if Prefix("catalog", "v1") != "/lab/services/catalog/v1/" {
		t.Fatal(Prefix("catalog", "v1"))
	}
}
