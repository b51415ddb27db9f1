// Command broker serves the Pact-Broker-compatible contract broker (see docs/contracts.md).
package main

import (
	"github.com/resilience-lab/lab/contracts/broker"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Main("broker", broker.ConfigFromEnv, func(c broker.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, broker.Open)
}
