package experiment

import (
	"strings"
	"testing"
)

func TestParseInstanceMetricsKeepsTheCallersPerInstanceSeries(t *testing.T) {
	const exposition = `# TYPE discovery_instance_requests_total counter
discovery_instance_requests_total{downstream="gateway-catalog",instance="catalog-1",outcome="success",service="gateway"} 7
discovery_instance_requests_total{downstream="gateway-catalog",instance="catalog-2",outcome="failure",service="gateway"} 3
# TYPE canary_weight_ratio gauge
canary_weight_ratio{downstream="gateway-catalog",service="gateway"} 0.2
# TYPE http_server_requests_total counter
http_server_requests_total{code="200",route="GET /products"} 11
# TYPE resilience_retries_total counter
resilience_retries_total{downstream="gateway-catalog"} 5
`
	got, err := ParseInstanceMetrics("gateway", strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := map[InstanceKey]float64{
		{Service: "gateway", Metric: "discovery_instance_requests_total", Downstream: "gateway-catalog", Instance: "catalog-1", Outcome: "success"}: 7,
		{Service: "gateway", Metric: "discovery_instance_requests_total", Downstream: "gateway-catalog", Instance: "catalog-2", Outcome: "failure"}: 3,
		{Service: "gateway", Metric: "canary_weight_ratio", Downstream: "gateway-catalog"}:                                                          0.2,
		{Service: "gateway", Metric: "http_server_requests_total", Route: "GET /products"}:                                                          11,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d series %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%+v = %v, want %v", k, got[k], v)
		}
	}
	if _, err := ParseInstanceMetrics("gateway", strings.NewReader("not an exposition {")); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Errorf("garbage: err %v, want a parse error naming the service", err)
	}
}
