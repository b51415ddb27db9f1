package discovery

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/resilience/policy"
)

// balancerMetrics are one balancer's series, labelled service (the caller) and downstream (the link).
type balancerMetrics struct {
	instances      prometheus.Gauge
	ejected        prometheus.Gauge
	ejections      *prometheus.CounterVec
	overflow       prometheus.Counter
	requests       *prometheus.CounterVec
	registryErrors prometheus.Counter
	emptySets      prometheus.Counter
}

func newBalancerMetrics(o policy.Options) balancerMetrics {
	labels := o.Labels()
	reg := o.Registerer
	return balancerMetrics{
		instances: policy.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "discovery_instances", ConstLabels: labels,
			Help: "Instances of a downstream the balancer knows (the last set the registry reported).",
		})),
		ejected: policy.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "discovery_instances_ejected", ConstLabels: labels,
			Help: "Instances of a downstream ejected by outlier detection right now.",
		})),
		ejections: policy.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "discovery_ejections_total", ConstLabels: labels,
			Help: "Outlier ejections of an instance.",
		}, []string{"instance"})),
		overflow: policy.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "discovery_ejections_overflow_total", ConstLabels: labels,
			Help: "Ejections not made because the max ejection percent was reached.",
		})),
		requests: policy.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "discovery_instance_requests_total", ConstLabels: labels,
			Help: "Attempts sent to an instance, by outcome (success, business, failure, cancelled); failure is the instance's errors.",
		}, []string{"instance", "outcome"})),
		registryErrors: policy.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "discovery_registry_errors_total", ConstLabels: labels,
			Help: "Registry reads that failed; the balancer kept its last instance set.",
		})),
		emptySets: policy.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "discovery_registry_empty_sets_total", ConstLabels: labels,
			Help: "Empty instance sets from the registry, kept off for the empty-set grace while instances were known.",
		})),
	}
}
