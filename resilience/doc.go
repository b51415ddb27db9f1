// Package resilience builds the client-side policy chain of each link (caller → callee) from env
// configuration, and the server-side policies of a service, with metrics on an injected registerer,
// timestamped events for the chaos lab, and a /debug/resilience handler.
//
// One policy per package, each a go-kit endpoint.Middleware built with its settings and
// policy.Options (clock, registerer, labels, event hook): breaker, bulkhead, retry, timeout, fallback,
// hedge, adaptive (client side); ratelimit, shed (server side). No global state: every policy lives in
// the Link or Server that built it (hystrix-go's own registry excepted, see breaker).
//
// # The one composition order
//
//	fallback → retry → [hedge] → breaker → bulkhead → [adaptive] → timeout → transport
//
// Outermost first; why each sits where it does:
//
//   - fallback is outermost so it sees the final outcome after every retry, including the other
//     policies' rejections (breaker open, bulkhead full, budget spent), and can substitute an answer
//     for all of them.
//   - retry wraps everything below, so every attempt is a fresh trip through breaker, bulkhead and
//     timeout: an open breaker stops a retry storm at once (ErrOpen is not retried), each attempt
//     waits for its own bulkhead slot and gets its own deadline. Retry above breaker also means the
//     breaker counts attempts, which is what the callee saw.
//   - hedge (idempotent reads named by WithHedgedOps) sits under retry and over breaker: both copies of
//     a read pass the breaker and bulkhead, and a hedged pair is one attempt for the retry.
//   - breaker sits above bulkhead so an open breaker rejects before a slot is taken, and so that a
//     bulkhead rejection (our saturation, not the callee's failure) reaches it as a rejection, which it
//     does not count.
//   - bulkhead (and the adaptive limit, when on) sit above timeout so that time spent waiting for a
//     slot is not taken from the call's own deadline, and a slot is held exactly as long as the call.
//   - timeout is innermost, next to the transport: it bounds one attempt (the per-attempt timeout),
//     and its deadline travels to the callee as X-Deadline-Ms (platform.PropagatingTransport), where it
//     becomes the callee's own context deadline, so no hop works past its caller's deadline.
//
// Outcomes (policy.Classify) are judged against the caller's context: a 2xx is a success, a 4xx but
// 408/429 a business outcome (never a failure, never retried), our rejections are neither, the caller's
// own cancellation or expired deadline is neither, and everything else — transport errors, 5xx, 408,
// 429, a per-attempt timeout — is a failure.
//
// Server side, Server.Middleware wraps a service's API handler: rate limit (429 + Retry-After), then
// load shedding (503 + Retry-After).
package resilience
