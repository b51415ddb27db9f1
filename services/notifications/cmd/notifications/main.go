// Command notifications stores a notification per order event and serves them per customer.
package main

import (
	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Main("notifications", notifications.ConfigFromEnv, func(c notifications.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, notifications.Open)
}
