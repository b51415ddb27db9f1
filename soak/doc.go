// Package soak holds the shop's soak test, behind the build tag soak so `make test` never runs it:
// `make soak` (go test -tags soak ./soak/) runs the whole shop in process — catalog, payments, orders,
// notifications and the gateway with service tokens on, over an embedded NATS — measures its capacity
// through the gateway with the shop mix, then loads it at half that capacity for SOAK_DURATION (10m) and
// fails if the shop at rest afterwards holds more goroutines or live heap than at rest before (after a
// SOAK_WARMUP of load). docs/performance.md (## Soak) has the last result.
package soak
