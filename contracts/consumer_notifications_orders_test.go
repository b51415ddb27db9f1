//go:build pact

package contracts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pact-foundation/pact-go/v2/matchers"
	message "github.com/pact-foundation/pact-go/v2/message/v4"

	"github.com/resilience-lab/lab/events"
	"github.com/resilience-lab/lab/events/natstest"
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/platform"
)

// orderEvent is one message of the notifications-orders pact: an order event as the orders relay
// publishes it (the events.Event envelope, JSON) on its subject.
type orderEvent struct {
	state     string         // the provider state that makes orders produce it
	eventType string         // also names the message (eventDescription), which orders has a handler for
	data      map[string]any // the payload, with matchers
	// mentions are what the notification's text must say: the payload fields notifications reads.
	mentions []string
}

// Examples of the message pact: what the consumer test delivers.
const (
	exampleOrderID    = "ord-1"
	exampleCustomerID = "c-1"
)

// orderEvents are the events notifications consumes (stream ORDERS, subjects orders.>): one message
// per type, holding only the fields notifications reads, and what its notification must tell.
func orderEvents() []orderEvent {
	ids := func(extra map[string]any) map[string]any {
		m := map[string]any{"order_id": nonEmpty(exampleOrderID), "customer_id": nonEmpty(exampleCustomerID)}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []orderEvent{{
		state: stateOrderPlaced, eventType: events.TypeOrderPlaced,
		data: ids(map[string]any{"items": matchers.EachLike(map[string]any{
			"product_id": nonEmpty("p-espresso"),
			"quantity":   matchers.Integer(2),
		}, 1)}),
		mentions: []string{exampleOrderID, "(1 item lines)"},
	}, {
		state: stateOrderConfirmed, eventType: events.TypeOrderConfirmed,
		data:     ids(map[string]any{"total_cents": matchers.Integer(4980)}),
		mentions: []string{exampleOrderID, "49.80 charged"},
	}, {
		state: stateOrderRejected, eventType: events.TypeOrderRejected,
		data:     ids(map[string]any{"reason": nonEmpty("out_of_stock")}),
		mentions: []string{exampleOrderID, "rejected (out_of_stock)"},
	}, {
		state: stateOrderCancelled, eventType: events.TypeOrderCancelled,
		data:     ids(map[string]any{"reason": nonEmpty("commit_failed")}),
		mentions: []string{exampleOrderID, "cancelled (commit_failed)"},
	}}
}

// TestConsumerNotificationsOrders writes the message pact of the order events notifications consumes.
// Each message is delivered the way production delivers it: published on its subject to a real
// JetStream broker, consumed by the real notifications service (its durable consumer, events.Decode,
// its handler and SQLite store) and read back through its API. A message the service cannot decode is
// dead-lettered, which fails the interaction with the decoder's reason.
//
// The envelope holds what events.Decode requires (id, type, version, time, data) and no more: source,
// correlation_id and traceparent are optional to notifications, so the pact leaves them to orders. The
// type and version are literals (the decoder accepts exactly version 1 of each type), the subject is
// the message's metadata (notifications reads orders.>), values the consumer only needs the shape of
// are matchers, and required strings must be non-empty (the decoder rejects empty ones).
func TestConsumerNotificationsOrders(t *testing.T) {
	p := newMessagePact(t, notificationsName, ordersName)
	for _, ev := range orderEvents() {
		t.Run(ev.eventType, func(t *testing.T) {
			subject := events.Subject(ev.eventType)
			// Verify writes the pact file, merging into the one there; FFI 0.4.28 duplicates V4 messages
			// when it merges, so the file goes first: the pact holds every message so far anyway.
			removePactFile(t, notificationsName, ordersName)
			err := p.AddAsynchronousMessage().
				Given(ev.state).
				ExpectsToReceive(eventDescription(ev.eventType)).
				WithMetadata(map[string]string{"subject": subject}).
				WithJSONContent(map[string]any{
					"id":      nonEmpty("3f1c6a0e9b2d4c8f8a7e5d4c3b2a1f0e"),
					"type":    ev.eventType,
					"version": 1,
					"time":    timestamp(),
					"data":    ev.data,
				}).
				ConsumedBy(func(m message.AsynchronousMessage) error {
					return deliverToNotifications(t, subject, m.Contents, ev)
				}).
				Verify(t)
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// newMessagePact starts the V4 message pact of consumerName reading events of providerName; like
// newPact, it removes the link's file from an earlier run, since the FFI merges into it.
func newMessagePact(t *testing.T, consumerName, providerName string) *message.AsynchronousPact {
	t.Helper()
	removePactFile(t, consumerName, providerName)
	p, err := message.NewAsynchronousPact(message.Config{Consumer: consumerName, Provider: providerName, PactDir: pactDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func removePactFile(t *testing.T, consumerName, providerName string) {
	t.Helper()
	if err := os.Remove(pactFile(t, consumerName, providerName)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// nonEmpty matches any non-empty string: the consumer needs the value, not this one.
func nonEmpty(example string) matchers.Matcher { return matchers.Regex(example, `^.+$`) }

// deliverToNotifications publishes raw on subject to a fresh broker read by a fresh notifications
// service, and checks the notification it stores for ev. It returns an error (the pact's verdict)
// when the service dead-letters the message or stores something else.
func deliverToNotifications(t *testing.T, subject string, raw []byte, ev orderEvent) error {
	broker := natstest.Start(t)
	cfg := notifications.Config{
		Addr:   "127.0.0.1:0",
		DB:     filepath.Join(t.TempDir(), "notifications.db"),
		Events: events.Config{URL: broker.URL()},
	}
	// Errors only: a dead-lettered message is logged at error; the rest (auth off, disconnect on close) is noise here.
	logger := platform.NewLogger(t.Output(), notificationsName, slog.LevelError)
	svc, closer, err := notifications.Open(context.Background(), cfg, logger, platform.NewRegistry())
	if err != nil {
		return err
	}
	api := httptest.NewServer(svc.Handler())
	defer func() {
		api.Close()
		closer.Close()
		broker.Stop()
	}()

	nc, err := nats.Connect(broker.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js); err != nil {
		return err
	}
	if _, err := js.Publish(ctx, subject, raw); err != nil {
		return fmt.Errorf("publish on %s: %w", subject, err)
	}

	var got []notifications.Notification
	for {
		if got, err = listNotifications(ctx, api.URL, exampleCustomerID); err != nil {
			return err
		}
		if len(got) > 0 {
			break
		}
		if why, ok := deadLettered(ctx, js); ok {
			return fmt.Errorf("notifications dead-lettered the message: %s\n%s", why, raw)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no notification for customer %s after 30s (message %s)", exampleCustomerID, raw)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if len(got) != 1 {
		return fmt.Errorf("%d notifications %+v, want one", len(got), got)
	}
	n := got[0]
	if n.EventType != ev.eventType || n.OrderID != exampleOrderID || n.CustomerID != exampleCustomerID || n.ID == "" ||
		n.CreatedAt.IsZero() {
		return fmt.Errorf("notification %+v, want a %s for order %s of %s", n, ev.eventType, exampleOrderID, exampleCustomerID)
	}
	for _, m := range ev.mentions {
		if !strings.Contains(n.Message, m) {
			return fmt.Errorf("notification %q does not say %q", n.Message, m)
		}
	}
	return nil
}

// listNotifications reads a customer's notifications through the service's API.
func listNotifications(ctx context.Context, baseURL, customerID string) ([]notifications.Notification, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/notifications?customer_id="+url.QueryEscape(customerID), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /notifications: %s", resp.Status)
	}
	var out notifications.ListNotificationsResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Notifications, nil
}

// deadLettered reports why notifications dead-lettered a message, if it did.
func deadLettered(ctx context.Context, js jetstream.JetStream) (string, bool) {
	s, err := js.Stream(ctx, events.StreamDeadLetter)
	if err != nil {
		return "", false
	}
	m, err := s.GetLastMsgForSubject(ctx, events.DeadLetterPrefix+notifications.ConsumerName)
	if errors.Is(err, jetstream.ErrMsgNotFound) || err != nil {
		return "", false
	}
	return m.Header.Get("Events-Error"), true
}
