// Command gateway serves the shop's public API (see docs/architecture.md): JWT auth, per-client rate
// limits, and forwarding to catalog, orders and payments. `gateway healthcheck URL` probes URL instead
// (the image has no shell nor curl).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Healthcheck(os.Args)
	os.Exit(run())
}

func run() int {
	env := platform.NewEnv()
	cfg := gateway.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: bad configuration:\n%v\n", err)
		return 2
	}
	logger := platform.NewLogger(os.Stdout, "gateway", cfg.LogLevel)
	ctx := context.Background()
	svc, closer, err := gateway.Open(ctx, cfg, logger, platform.NewRegistry())
	if err != nil {
		logger.Error("open", "err", err)
		return 1
	}
	defer closer.Close()
	if err := platform.Run(ctx, svc, cfg.Addr, cfg.ShutdownTimeout); err != nil {
		logger.Error("serve", "err", err)
		return 1
	}
	return 0
}
