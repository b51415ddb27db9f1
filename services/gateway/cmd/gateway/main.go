// Command gateway serves the shop's public API (see docs/architecture.md): JWT auth, per-client rate
// limits, and forwarding to catalog, orders and payments. `gateway healthcheck URL` probes URL instead
// (the image has no shell nor curl); `gateway admin-token` prints a token for the admin API (see
// docs/patterns/canary.md).
package main

import (
	"os"

	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "admin-token" {
		os.Exit(gateway.AdminToken(os.Args[2:], platform.NewEnv(), os.Stdout, os.Stderr))
	}
	platform.Main("gateway", gateway.ConfigFromEnv, func(c gateway.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, gateway.Open)
}
