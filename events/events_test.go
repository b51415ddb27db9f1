package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestRoundTripEveryType(t *testing.T) {
	items := []Item{{ProductID: "p-mug", Quantity: 2}}
	payloads := []Payload{
		OrderPlaced{OrderID: "o1", CustomerID: "c1", Items: items},
		OrderConfirmed{OrderID: "o1", CustomerID: "c1", TotalCents: 2900, ReservationID: "r1", PaymentID: "pay1"},
		OrderRejected{OrderID: "o1", CustomerID: "c1", Reason: "out_of_stock"},
		OrderCancelled{OrderID: "o1", CustomerID: "c1", Reason: "charge_failed"},
		StockReserved{ReservationID: "r1", OrderID: "o1", Items: items, TotalCents: 2900, ExpiresAt: at.Add(5 * time.Minute)},
		StockReleased{ReservationID: "r1", OrderID: "o1", Items: items, Cause: ReleaseExpired},
		PaymentCaptured{PaymentID: "pay1", OrderID: "o1", AmountCents: 2900},
		PaymentRefunded{PaymentID: "pay1", OrderID: "o1", AmountCents: 2900},
	}
	subjects := map[string]bool{}
	for _, p := range payloads {
		ev, err := New(p, at, "req-1")
		if err != nil {
			t.Fatalf("New(%T): %v", p, err)
		}
		if ev.ID == "" || ev.Version != 1 || ev.Type != p.EventType() || !ev.Time.Equal(at) || ev.CorrelationID != "req-1" {
			t.Errorf("envelope of %T = %+v", p, ev)
		}
		if !strings.HasPrefix(ev.Subject(), ev.Source+".") {
			t.Errorf("%s: subject %q is not under its source %q", ev.Type, ev.Subject(), ev.Source)
		}
		subjects[ev.Subject()] = true
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, gotP, err := Decode(raw)
		if err != nil {
			t.Fatalf("Decode(%s): %v", raw, err)
		}
		if got.ID != ev.ID || got.Type != ev.Type || !got.Time.Equal(ev.Time) {
			t.Errorf("decoded envelope %+v, want %+v", got, ev)
		}
		gotJSON, _ := json.Marshal(gotP)
		wantJSON, _ := json.Marshal(p)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("%s payload %s, want %s", ev.Type, gotJSON, wantJSON)
		}
		if gotP.EventType() != p.EventType() {
			t.Errorf("decoded payload is %T, want %T", gotP, p)
		}
	}
	if len(subjects) != len(payloads) {
		t.Errorf("subjects %v: want one per type", subjects)
	}
}

func TestNewRefusesInvalidPayloads(t *testing.T) {
	for _, p := range []Payload{
		OrderPlaced{CustomerID: "c1", Items: []Item{{ProductID: "p", Quantity: 1}}},
		OrderPlaced{OrderID: "o1", CustomerID: "c1"},
		OrderConfirmed{OrderID: "o1", ReservationID: "r", PaymentID: "p"},
		StockReleased{ReservationID: "r1", OrderID: "o1", Items: []Item{{ProductID: "p", Quantity: 1}}, Cause: "lost"},
		PaymentCaptured{PaymentID: "p", OrderID: "o", AmountCents: -1},
	} {
		if _, err := New(p, at, ""); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", p)
		}
	}
}

func TestDecodeRejectsBadEvents(t *testing.T) {
	valid := `{"order_id":"o1","customer_id":"c1","items":[{"product_id":"p","quantity":1}]}`
	envelope := func(fields string) string {
		return `{"id":"e1","type":"OrderPlaced","version":1,"time":"2026-11-22T12:00:00Z","source":"orders"` + fields + `}`
	}
	cases := []struct {
		name, raw, want string
	}{
		{"empty", ``, "empty_body"},
		{"malformed", `{"id":`, "malformed_json"},
		{"not an object", `[1,2]`, "wrong_type"},
		{"trailing data", envelope(`,"data":`+valid) + `{}`, "malformed_json"},
		{"unknown envelope field", envelope(`,"data":` + valid + `,"extra":1`), "unknown_field"},
		{"unknown data field", envelope(`,"data":{"order_id":"o1","customer_id":"c1","items":[{"product_id":"p","quantity":1}],"x":1}`), "unknown_field"},
		{"wrong data type", envelope(`,"data":{"order_id":7,"customer_id":"c1","items":[]}`), "wrong_type"},
		{"missing id", `{"type":"OrderPlaced","version":1,"time":"2026-11-22T12:00:00Z","data":` + valid + `}`, "id is required"},
		{"missing time", `{"id":"e1","type":"OrderPlaced","version":1,"data":` + valid + `}`, "time is required"},
		{"missing data", envelope(``), "data is required"},
		{"unknown type", strings.Replace(envelope(`,"data":`+valid), "OrderPlaced", "OrderShipped", 1), "unknown type"},
		{"newer version", strings.Replace(envelope(`,"data":`+valid), `"version":1`, `"version":2`, 1), "version 2"},
		{"missing version", strings.Replace(envelope(`,"data":`+valid), `"version":1,`, ``, 1), "version 0"},
		{"invalid payload", envelope(`,"data":{"order_id":"o1","customer_id":"","items":[{"product_id":"p","quantity":1}]}`), "customer_id is required"},
		{"bad quantity", envelope(`,"data":{"order_id":"o1","customer_id":"c1","items":[{"product_id":"p","quantity":0}]}`), "positive quantity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Decode([]byte(c.raw))
			if err == nil {
				t.Fatalf("Decode(%s) succeeded", c.raw)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := platformEnv(map[string]string{"NATS_URL": "nats://127.0.0.1:4222", "EVENTS_MAX_DELIVER": "7", "EVENTS_ACK_WAIT": "3s"})
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "nats://127.0.0.1:4222" || cfg.MaxDeliver != 7 || cfg.AckWait != 3*time.Second ||
		cfg.RelayBatch != DefaultRelayBatch || cfg.RelayInterval != DefaultRelayInterval {
		t.Errorf("config %+v", cfg)
	}
	bad := platformEnv(map[string]string{"EVENTS_MAX_DELIVER": "0", "EVENTS_RELAY_BATCH": "x", "EVENTS_ACK_WAIT": "0s"})
	ConfigFromEnv(bad)
	err := bad.Err()
	for _, want := range []string{"EVENTS_MAX_DELIVER", "EVENTS_RELAY_BATCH", "EVENTS_ACK_WAIT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
