package fallback

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/platform"
)

func TestFallback(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name         string
		ctx          context.Context
		err          error
		wantFallback bool
	}{
		{"success passes", context.Background(), nil, false},
		{"transport failure falls back", context.Background(), errors.New("connection refused"), true},
		{"5xx falls back", context.Background(), platform.Errorf(502, "bad_gateway", "x"), true},
		{"a rejection falls back", context.Background(), &policy.Rejection{Policy: "breaker", Reason: "open"}, true},
		{"business 404 passes", context.Background(), platform.NotFound("no such product"), false},
		{"the caller's cancellation passes", cancelled, context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []policy.Event
			var gotErr error
			f := New(func(ctx context.Context, req any, err error) (any, error) {
				gotErr = err
				return "stale copy of " + req.(string), nil
			}, policy.Options{Hook: func(e policy.Event) { events = append(events, e) }})
			resp, err := f.Middleware(func(context.Context, any) (any, error) {
				if tc.err != nil {
					return nil, tc.err
				}
				return "fresh", nil
			})(tc.ctx, "catalog")
			if tc.wantFallback {
				if resp != "stale copy of catalog" || err != nil || !errors.Is(gotErr, tc.err) {
					t.Fatalf("resp = %v, err = %v, fallback saw %v", resp, err, gotErr)
				}
				if testutil.ToFloat64(f.fallbacks) != 1 || len(events) != 1 || events[0].Kind != policy.EventFallback {
					t.Fatalf("fallbacks = %v, events = %+v", testutil.ToFloat64(f.fallbacks), events)
				}
				return
			}
			if gotErr != nil || testutil.ToFloat64(f.fallbacks) != 0 {
				t.Fatalf("fallback called for %v", tc.err)
			}
			if !errors.Is(err, tc.err) || (tc.err == nil && resp != "fresh") {
				t.Fatalf("resp = %v, err = %v", resp, err)
			}
		})
	}
}
