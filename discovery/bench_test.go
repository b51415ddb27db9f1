package discovery

import (
	"context"
	"io"
	"testing"

	"github.com/go-kit/kit/endpoint"

	"github.com/resilience-lab/lab/resilience/policy"
)

// BenchmarkBalancedCall is the balancer's own cost per call (pick, accounting, scope) over three
// instances whose endpoint does nothing.
func BenchmarkBalancedCall(b *testing.B) {
	noop := func(string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return nil, nil }, nil, nil
	}
	for _, s := range []Strategy{RoundRobin, LeastRequest} {
		b.Run(string(s), func(b *testing.B) {
			cfg := DefaultBalancerConfig()
			cfg.Strategy = s
			bal, err := NewBalancer(newTestInstancer("http://a:1", "http://b:1", "http://c:1"), cfg, policy.Options{Service: "orders", Downstream: "orders-catalog"}, discardLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer bal.Close()
			e := Scope(bal.Endpoint("op", noop))
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e(ctx, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
