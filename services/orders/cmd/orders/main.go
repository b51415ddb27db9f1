// Command orders serves the shop's orders and runs their saga over catalog and payments.
package main

import (
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Main("orders", orders.ConfigFromEnv, func(c orders.Config) platform.MainSettings {
		return platform.MainSettings{Addr: c.Addr, LogLevel: c.LogLevel, Drain: c.ShutdownTimeout}
	}, orders.Open)
}
