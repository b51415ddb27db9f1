package platform

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MainSettings are what Main needs from a service's configuration.
type MainSettings struct {
	Addr     string
	LogLevel slog.Level
	Drain    time.Duration
}

// Main is the whole main of a service: `<binary> healthcheck URL` probes URL (the images have no
// shell); otherwise the configuration is read from the environment (every bad value listed, exit 2),
// the service opened (exit 1 on failure), served until SIGTERM with a graceful drain, and closed.
func Main[C any](name string, fromEnv func(*Env) C, settings func(C) MainSettings,
	open func(context.Context, C, *slog.Logger, *prometheus.Registry) (*Service, io.Closer, error)) {
	Healthcheck(os.Args)
	os.Exit(runMain(name, fromEnv, settings, open))
}

func runMain[C any](name string, fromEnv func(*Env) C, settings func(C) MainSettings,
	open func(context.Context, C, *slog.Logger, *prometheus.Registry) (*Service, io.Closer, error)) int {
	env := NewEnv()
	cfg := fromEnv(env)
	if err := env.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: bad configuration:\n%v\n", name, err)
		return 2
	}
	s := settings(cfg)
	logger := NewLogger(os.Stdout, name, s.LogLevel)
	ctx := context.Background()
	svc, closer, err := open(ctx, cfg, logger, NewRegistry())
	if err != nil {
		logger.Error("start", "err", err)
		return 1
	}
	runErr := Run(ctx, svc, s.Addr, s.Drain)
	if err := closer.Close(); err != nil {
		logger.Error("close", "err", err)
	}
	if runErr != nil {
		logger.Error("serve", "err", runErr)
		return 1
	}
	return 0
}
