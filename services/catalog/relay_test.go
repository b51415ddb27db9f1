package catalog_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/platform"
)

// TestOpenPublishesOutboxToBroker runs the catalog as its main does with NATS_URL set: a reservation's
// StockReserved reaches the CATALOG stream, carrying the request id as correlation id.
func TestOpenPublishesOutboxToBroker(t *testing.T) {
	broker := natstest.Start(t)
	cat := start(t, map[string]string{"NATS_URL": broker.URL(), "EVENTS_RELAY_INTERVAL": "20ms"})
	ctx := platform.WithRequestID(context.Background(), "req-catalog-1")
	r, err := cat.client.Reserve(ctx, catalog.ReserveRequest{OrderID: "o-1", Items: []catalog.Item{{ProductID: "p-mug", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	deadline := time.Now().Add(30 * time.Second)
	for len(msgs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no event reached the CATALOG stream")
		}
		time.Sleep(20 * time.Millisecond)
		msgs = natstest.Messages(t, broker.URL(), events.StreamCatalog)
	}
	ev, p, err := events.Decode(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := p.(events.StockReserved); !ok || res.ReservationID != r.ID || ev.CorrelationID != "req-catalog-1" {
		t.Errorf("event %+v %+v, want StockReserved of %s correlated to req-catalog-1", ev, p, r.ID)
	}
	if body := get(t, cat.url+"/readyz"); !strings.Contains(body, `"events_relay":"ok"`) {
		t.Errorf("/readyz %s does not report the relay", body)
	}
}

func TestReadyzReportsRelayDisabledWithoutNATS(t *testing.T) {
	cat := start(t, nil)
	body := get(t, cat.url+"/readyz")
	if !strings.Contains(body, `"events_relay_disabled_nats_url_unset":"ok"`) || !strings.Contains(body, `"ready":true`) {
		t.Errorf("/readyz %s, want ready with the relay reported disabled", body)
	}
	if body := get(t, cat.url+"/metrics"); !strings.Contains(body, "events_relay_running 0") || !strings.Contains(body, "events_outbox_backlog 0") {
		t.Errorf("/metrics lacks the outbox metrics")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
