package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/resilience-lab/lab/events"
)

// FuzzDecode feeds events.Decode what a consumer may pull off a stream. Properties, whatever the bytes:
// no panic; every refusal wraps events.ErrInvalid (consumers dead-letter on it instead of retrying); an
// accepted event is a known type at the version this build reads, carries an id and a time, holds a
// payload value of its type, and survives a round trip: encoded again, it decodes to the same event.
// Seeds: testdata/fuzz/FuzzDecode/; scripts/fuzz.sh runs the target.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, p, err := events.Decode(raw)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("refusal %v does not wrap ErrInvalid", err)
			}
			if p != nil {
				t.Fatalf("refusal %v came with payload %#v", err, p)
			}
			return
		}
		if ev.ID == "" || ev.Time.IsZero() || ev.Version != 1 || events.Subject(ev.Type) == "" || p == nil || p.EventType() != ev.Type {
			t.Fatalf("accepted event %+v with payload %#v", ev, p)
		}
		if k := reflect.TypeOf(p).Kind(); k != reflect.Struct {
			t.Fatalf("payload of %s is a %s, consumers switch on struct values", ev.Type, k)
		}
		// Round trip: the payload as a producer would write it, in the envelope as the relay would.
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("encode payload %#v: %v", p, err)
		}
		again := ev
		again.Data = data
		raw2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("encode event %+v: %v", again, err)
		}
		ev2, p2, err := events.Decode(raw2)
		if err != nil {
			t.Fatalf("an accepted event does not decode once re-encoded: %v\n%s", err, raw2)
		}
		if ev2.ID != ev.ID || ev2.Type != ev.Type || ev2.Version != ev.Version || !ev2.Time.Equal(ev.Time) ||
			ev2.Source != ev.Source || ev2.CorrelationID != ev.CorrelationID || !bytes.Equal(ev2.Data, data) {
			t.Fatalf("envelope changed in a round trip: %+v, then %+v", ev, ev2)
		}
		if data2, _ := json.Marshal(p2); !bytes.Equal(data2, data) {
			t.Fatalf("payload changed in a round trip: %s, then %s", data, data2)
		}
	})
}
