package resilience

import "github.com/resilience-lab/lab/resilience/policy"

// DebugSnapshot is the body of /debug/resilience.
type DebugSnapshot struct {
	Server *ServerSnapshot `json:"server"` // null when the service has no server-side policies
	Links  []LinkSnapshot  `json:"links"`
	// Events are the most recent policy events, oldest first.
	Events []policy.Event `json:"events,omitempty"`
}
