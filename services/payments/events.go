package payments

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/events"
)

// startRelay starts publishing the payments outbox (PaymentCaptured, PaymentRefunded) when cfg has a
// broker URL; the outbox metrics are registered either way. instance names it in the outbox's lease,
// which its replicas share (their registered instance id; empty: the host name).
func startRelay(ctx context.Context, cfg events.Config, instance string, st *store, logger *slog.Logger, reg prometheus.Registerer) (*events.Relay, error) {
	return events.StartRelay(ctx, cfg, events.RelayOptions{Service: "payments", DB: st.wr, ReadDB: st.rd,
		Logger: logger, Registry: reg, Instance: instance})
}

// relayAndStore closes the relay, then the store it reads.
type relayAndStore struct {
	relay *events.Relay
	store *store
}

func (c relayAndStore) Close() error { return errors.Join(c.relay.Close(), c.store.Close()) }
