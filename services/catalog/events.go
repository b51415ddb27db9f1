package catalog

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
)

// startRelay starts publishing the catalog's outbox (StockReserved, StockReleased) when cfg has a
// broker URL; the outbox metrics are registered either way. instance names it in the outbox's lease,
// which the replicas share (the registered instance id; empty: the host name). Close the relay before
// the store.
func startRelay(ctx context.Context, cfg events.Config, instance string, st *store, logger *slog.Logger, reg prometheus.Registerer) (*events.Relay, error) {
	return events.StartRelay(ctx, cfg, events.RelayOptions{Service: "catalog", DB: st.write, ReadDB: st.read,
		Logger: logger, Registry: reg, Instance: instance})
}
