// Package loadtest is an open-model HTTP load generator.
//
// Requests are sent on a schedule derived from a rate Profile whether or not earlier ones have returned,
// so a slow server cannot slow the generator down and hide its own latency (no coordinated omission).
// Each request's latency is measured from the instant it was *meant* to be sent, recorded into one HDR
// histogram per second of the schedule, and summarised per second and in total. When MaxInFlight
// requests are outstanding a due request is not queued behind them: it is counted as dropped.
//
// A Mix of weighted request Kinds says what to send: each Kind builds its own *http.Request from the
// request's sequence number (so it can mint idempotency keys or carry tokens) and classifies the answer
// (by default 2xx/3xx is success; ExpectStatus turns chosen 4xx into expected business outcomes).
//
// Run drives a Profile and a Mix; Actions run at fixed offsets during a run (the hook the chaos lab uses
// to inject and lift faults). ParseProfile and ParseThreshold read the CLI's textual forms.
package loadtest
