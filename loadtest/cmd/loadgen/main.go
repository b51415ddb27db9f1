// Command loadgen is an open-model HTTP load generator: it sends a request mix at a target's arrival
// rate profile, measures latency from each request's due time, checks k6-style thresholds and writes
// JSON results and an HTML report. See docs/loadtest.md.
//
//	loadgen --mix loadtest/mixes/shop.json --profile ramp:from=10,to=200,d=60s \
//	        --threshold 'p99<300ms' --threshold 'errors<1%' --out out/shop
//
// --fault injects faults into the compose stack during the run (Toxiproxy toxics on its links, or its
// containers stopped, killed, paused or restarted) and always takes them back:
//
//	loadgen --mix loadtest/mixes/shop.json --profile constant:rate=40,d=30s \
//	        --fault 'payments:latency=500ms@10s-20s' --out out/fault
//
// Exit codes: 0 run done and thresholds passed; 1 a threshold was violated; 2 usage or configuration
// error (nothing was sent); 3 the run could not be done (token, setup, Toxiproxy or Docker unreachable, a
// fault that failed to go on or off or to be rolled back, output, interrupted).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), where progress rewrites one line.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
