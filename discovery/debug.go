package discovery

import (
	"net/http"

	"github.com/resilience-lab/lab/services/platform"
)

// DebugHandler serves the snapshots of a service's balancers (mount it at GET /debug/discovery).
func DebugHandler(balancers ...*Balancer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := make([]BalancerSnapshot, 0, len(balancers))
		for _, b := range balancers {
			out = append(out, b.Snapshot())
		}
		platform.WriteJSON(w, http.StatusOK, map[string]any{"balancers": out})
	})
}
