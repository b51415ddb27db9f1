// Command catalog serves the shop's product catalog and stock reservations.
package main

import (
	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Main("catalog", catalog.ConfigFromEnv, func(c catalog.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, catalog.Open)
}
