package discovery

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A link with a canary version gets a second balancer, link@version, known only from the registry; a
// canary that is the stable version is refused. The registry need not be up: the client connects lazily.
func TestStartBalancesALinksCanaryVersion(t *testing.T) {
	link := func(canary string) ServiceConfig {
		b := DefaultBalancerConfig()
		b.Seeds = []string{"http://catalog:8081"}
		reg := DefaultRegistryConfig()
		reg.Endpoints = []string{"http://127.0.0.1:1"}
		reg.DialTimeout, reg.RequestTimeout = 100*time.Millisecond, 100*time.Millisecond // nothing answers there
		return ServiceConfig{Registry: reg,
			Links: map[string]LinkConfig{"gateway-catalog": {Service: "catalog", Version: "v1", Canary: canary, Balancer: b}}}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := link("v2").Start("gateway", prometheus.NewRegistry(), nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	stable, canary := d.Balancer("gateway-catalog"), d.Balancer(VersionedLink("gateway-catalog", "v2"))
	if stable == nil || canary == nil {
		t.Fatalf("balancers: stable %v, canary %v", stable, canary)
	}
	if s := stable.Snapshot(); len(s.Instances) != 1 || s.Downstream != "gateway-catalog" {
		t.Fatalf("stable %+v, want its seed", s)
	}
	if s := canary.Snapshot(); len(s.Instances) != 0 || s.Downstream != "gateway-catalog@v2" || s.ConsecutiveFailures != 5 {
		t.Fatalf("canary %+v, want no seed and the link's outlier settings", s)
	}
	if _, err := link("v1").Start("gateway", prometheus.NewRegistry(), nil, logger); err == nil || !strings.Contains(err.Error(), "is the stable version") {
		t.Fatalf("canary = stable version: %v", err)
	}
}
