// Command toxiproxy is the lab's Toxiproxy server: the upstream server of github.com/Shopify/toxiproxy/v2
// with the lab's http_fault toxic registered, so HTTP-level faults (error answers, delayed headers) go
// through the same API as the TCP toxics. It is built into a FROM-scratch image like the services.
//
//	toxiproxy [-host 0.0.0.0] [-port 8474]
//	toxiproxy healthcheck http://127.0.0.1:8474/version
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/httpfault"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Healthcheck(os.Args)
	host := flag.String("host", "0.0.0.0", "address of the API")
	port := flag.String("port", "8474", "port of the API")
	flag.Parse()

	logger := zerolog.New(os.Stdout).With().Timestamp().Str("service", "toxiproxy").Logger()
	level := zerolog.InfoLevel
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		l, err := zerolog.ParseLevel(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "LOG_LEVEL=%q: %v\n", v, err)
			os.Exit(2)
		}
		level = l
	}
	logger = logger.Level(level)

	httpfault.Register()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger)
	errc := make(chan error, 1)
	go func() { errc <- server.Listen(net.JoinHostPort(*host, *port)) }()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		logger.Error().Err(err).Msg("API server stopped")
		os.Exit(1)
	case <-signals:
	}
	if err := server.Shutdown(); err != nil {
		logger.Error().Err(err).Msg("shutdown")
		os.Exit(1)
	}
}
