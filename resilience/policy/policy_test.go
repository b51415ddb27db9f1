package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/resilience-lab/lab/services/platform"
)

func TestIsBusinessAgreesWithPlatform(t *testing.T) {
	for status := 100; status < 600; status++ {
		pe := platform.Errorf(status, "code", "message")
		for _, err := range []error{
			pe,
			fmt.Errorf("wrapped: %w", pe),
			errors.Join(errors.New("other"), fmt.Errorf("deep: %w", pe)),
		} {
			if got, want := isBusiness(err), platform.IsBusiness(err); got != want {
				t.Fatalf("status %d, %v: isBusiness = %v, platform.IsBusiness = %v", status, err, got, want)
			}
		}
	}
	if isBusiness(errors.New("plain")) || isBusiness(nil) {
		t.Fatal("a plain error is not a business outcome")
	}
}

func TestClassify(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	rejection := &Rejection{Policy: "bulkhead", Reason: "full"}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want Outcome
	}{
		{"nil", bg, nil, Success},
		{"404", bg, platform.NotFound("x"), Business},
		{"409 wrapped", bg, fmt.Errorf("call: %w", platform.Conflict("c", "x")), Business},
		{"408", bg, platform.Errorf(408, "t", "x"), Failure},
		{"429", bg, platform.Errorf(429, "r", "x"), Failure},
		{"500", bg, platform.Errorf(500, "i", "x"), Failure},
		{"transport", bg, errors.New("connection refused"), Failure},
		{"per-attempt deadline, caller alive", bg, context.DeadlineExceeded, Failure},
		{"rejection", bg, rejection, Rejected},
		{"rejection joined", bg, errors.Join(errors.New("x"), rejection), Rejected},
		{"caller cancelled", cancelled, context.Canceled, Cancelled},
		{"caller cancelled, 503 seen", cancelled, platform.Errorf(503, "u", "x"), Cancelled},
		{"business beats cancellation", cancelled, platform.NotFound("x"), Business},
	} {
		if got := Classify(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", platform.Errorf(503, "u", "x"))
	rej := error(&Rejection{Policy: "breaker", Reason: "open"})
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { Classify(ctx, err); Classify(ctx, rej) }); n != 0 {
		t.Fatalf("Classify allocates %v times per call", n)
	}
}
