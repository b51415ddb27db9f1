// Command gateway serves the shop's public API (see docs/architecture.md): JWT auth, per-client rate
// limits, and forwarding to catalog, orders and payments. `gateway healthcheck URL` probes URL instead
// (the image has no shell nor curl).
package main

import (
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Main("gateway", gateway.ConfigFromEnv, func(c gateway.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, gateway.Open)
}
