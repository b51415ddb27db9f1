// Command notifications stores a notification per order event and serves them per customer.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/resilience-lab/lab/services/notifications"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Healthcheck(os.Args)
	env := platform.NewEnv()
	cfg := notifications.ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "notifications: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	logger := platform.NewLogger(os.Stdout, "notifications", cfg.LogLevel)
	ctx := context.Background()
	svc, closer, err := notifications.Open(ctx, cfg, logger, platform.NewRegistry())
	if err != nil {
		logger.Error("start", "err", err)
		os.Exit(1)
	}
	runErr := platform.Run(ctx, svc, cfg.Addr, cfg.ShutdownTimeout)
	if err := closer.Close(); err != nil {
		logger.Error("close", "err", err)
	}
	if runErr != nil {
		logger.Error("serve", "err", runErr)
		os.Exit(1)
	}
}
