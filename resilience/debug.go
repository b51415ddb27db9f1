package resilience

import (
	"net/http"

	"github.com/resilience-lab/lab/services/platform"
)

// DebugSnapshot is the body of /debug/resilience.
type DebugSnapshot struct {
	Server *ServerSnapshot `json:"server"` // null when the service has no server-side policies
	Links  []LinkSnapshot  `json:"links"`
}

// DebugHandler serves the settings and live state of a service's server-side policies (server may be
// nil) and of its links as JSON, for GET /debug/resilience.
func DebugHandler(server *Server, links ...*Link) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := DebugSnapshot{Links: make([]LinkSnapshot, 0, len(links))}
		if server != nil {
			s := server.Snapshot()
			snap.Server = &s
		}
		for _, l := range links {
			snap.Links = append(snap.Links, l.Snapshot())
		}
		platform.WriteJSON(w, http.StatusOK, snap)
	})
}
