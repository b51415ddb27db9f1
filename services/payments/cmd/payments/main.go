// Command payments serves the payments API (see docs/architecture.md), configured from the environment.
package main

import (
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Main("payments", payments.ConfigFromEnv, func(c payments.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, payments.Open)
}
