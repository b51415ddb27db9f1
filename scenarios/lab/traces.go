package lab

import (
	"context"

	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/tracestore"
)

// Trace reads trace id from the trace store of the lab's Toxiproxy, where every service exports its
// spans (serviceEnv). tracestore.ErrNotFound means the store does not hold it: evicted, or not exported
// yet (the services' exporters send in batches, every 5 s at most).
func (s *Stack) Trace(ctx context.Context, id string) (*tracestore.Trace, error) {
	return tracestore.Fetch(ctx, nil, s.ToxiproxyURL, id)
}
