// Command payments serves the payments API (see docs/architecture.md), configured from the environment.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Healthcheck(os.Args)
	os.Exit(run())
}

func run() int {
	env := platform.NewEnv()
	cfg := payments.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "payments: bad configuration:\n%v\n", err)
		return 2
	}
	logger := platform.NewLogger(os.Stdout, "payments", cfg.LogLevel)
	ctx := context.Background()
	svc, db, err := payments.Open(ctx, cfg, logger, platform.NewRegistry())
	if err != nil {
		logger.Error("open", "err", err)
		return 1
	}
	defer db.Close()
	if err := platform.Run(ctx, svc, cfg.Addr, cfg.ShutdownTimeout); err != nil {
		logger.Error("serve", "err", err)
		return 1
	}
	return 0
}
