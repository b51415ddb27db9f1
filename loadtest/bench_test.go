package loadtest

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// BenchmarkRequestPath is one request's work in the engine, without a network: build, send through a
// transport that answers at once, classify, and report to the collector.
func BenchmarkRequestPath(b *testing.B) {
	for _, traced := range []bool{false, true} {
		name := "untraced"
		if traced {
			name = "traced"
		}
		b.Run(name, func(b *testing.B) {
			mix, err := NewMix(getKind("browse", 1))
			if err != nil {
				b.Fatal(err)
			}
			r := &runner{o: Options{Client: &http.Client{Transport: answer(200)}, Trace: traced}, kinds: mix.kinds}
			r.ctx = context.Background()
			col := newCollector([]string{"browse"}, nil, nil)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				out := r.do(r.ctx, &r.kinds[0], uint64(i))
				col.done(doneEvent{second: int32(i / 1000), latency: time.Duration(i%5000) * time.Microsecond, outcome: out.Outcome,
					completed: time.Duration(i) * time.Millisecond, status: int32(out.status), trace: out.trace})
			}
		})
	}
}

// BenchmarkCollectorDone is the collector's share of one request.
func BenchmarkCollectorDone(b *testing.B) {
	col := newCollector([]string{"browse"}, nil, nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		col.done(doneEvent{second: int32(i / 1000), latency: time.Duration(i%5000) * time.Microsecond,
			completed: time.Duration(i) * time.Millisecond, outcome: Outcome{OK: true}})
	}
}
