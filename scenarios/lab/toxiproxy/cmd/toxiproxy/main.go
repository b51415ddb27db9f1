// Command toxiproxy is the lab's Toxiproxy server: the upstream server of github.com/Shopify/toxiproxy/v2
// with the lab's http_fault toxic registered, so HTTP-level faults (error answers, delayed headers) go
// through the same API as the TCP toxics, and bandwidth and slicer replaced by versions that can always
// be removed (package interruptible). It is built into a FROM-scratch image like the services.
//
// Only the gateway and this API are published to the host, so the API also relays a few read-only
// observation paths of the services (GET /observe/{service}/metrics, …/debug/resilience,
// …/debug/discovery, …/readyz, the registry's …/health, the broker's …/jsz, notifications'
// …/notifications?customer_id=…) for the lab's measurements. The relay
// dials the services directly, never through a proxy, so a fault on a link does not blind the
// measurement of it. LAB_OBSERVE lists the services: catalog=http://catalog:8081,…
//
// The API is also the lab's trace collector (package tracestore): the services export their spans to
// POST /v1/traces (OTLP/HTTP) and the harness reads a trace back with GET /traces/{traceid}.
// LAB_TRACE_MAX_TRACES bounds how many traces it keeps (default 4096, the oldest go first).
//
//	toxiproxy [-host 0.0.0.0] [-port 8474]
//	toxiproxy healthcheck http://127.0.0.1:8474/version
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/httpfault"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/interruptible"
	"github.com/resilience-lab/lab/scenarios/lab/toxiproxy/tracestore"
	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Healthcheck(os.Args)
	host := flag.String("host", "0.0.0.0", "address of the API")
	port := flag.String("port", "8474", "port of the API")
	config := flag.String("config", "", "JSON file of proxies to create at start")
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

	observed, err := parseObserve(os.Getenv("LAB_OBSERVE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	maxTraces, err := strconv.Atoi(cmp.Or(os.Getenv("LAB_TRACE_MAX_TRACES"), "0"))
	if err != nil || maxTraces < 0 {
		fmt.Fprintf(os.Stderr, "LAB_TRACE_MAX_TRACES=%q: want a count of traces\n", os.Getenv("LAB_TRACE_MAX_TRACES"))
		os.Exit(2)
	}

	httpfault.Register()
	interruptible.Register()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), logger)
	if *config != "" {
		f, err := os.Open(*config)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		proxies, err := server.Collection.PopulateJson(server, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "-config %s: %v\n", *config, err)
			os.Exit(2)
		}
		logger.Info().Int("proxies", len(proxies)).Str("config", *config).Msg("proxies created")
	}
	mux := http.NewServeMux()
	mux.Handle("GET /observe/{service}/{path...}", observeHandler(observed))
	tracestore.New(tracestore.Options{MaxTraces: maxTraces}).Register(mux)
	mux.Handle("/", server.Routes())
	srv := &http.Server{Addr: net.JoinHostPort(*host, *port), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		logger.Error().Err(err).Msg("API server stopped")
		os.Exit(1)
	case <-signals:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Error().Err(err).Msg("shutdown")
		os.Exit(1)
	}
}

// observablePaths are the read-only paths the relay forwards (with their query): the services'
// probes, metrics, policy and balancer state, the broker's JetStream summary, the registry's health
// (etcd's /health), and the notifications a scenario counts to account for every order event.
var observablePaths = map[string]bool{"metrics": true, "debug/resilience": true, "debug/discovery": true,
	"readyz": true, "healthz": true, "health": true, "jsz": true, "notifications": true}

// parseObserve reads LAB_OBSERVE: comma-separated name=base-URL pairs.
func parseObserve(spec string) (map[string]*url.URL, error) {
	out := map[string]*url.URL{}
	for _, part := range strings.Split(spec, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, raw, ok := strings.Cut(part, "=")
		u, err := platform.ParseBaseURL(raw)
		if !ok || name == "" || err != nil {
			return nil, fmt.Errorf("LAB_OBSERVE: %q: want name=http://host:port", part)
		}
		out[name] = u
	}
	return out, nil
}

func observeHandler(services map[string]*url.URL) http.Handler {
	client := &http.Client{Timeout: 5 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base, ok := services[r.PathValue("service")]
		if !ok || !observablePaths[r.PathValue("path")] {
			platform.WriteError(w, platform.NotFound("no observable %s/%s", r.PathValue("service"), r.PathValue("path")))
			return
		}
		target := base.JoinPath(r.PathValue("path"))
		target.RawQuery = r.URL.RawQuery
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target.String(), nil)
		if err != nil {
			platform.WriteError(w, platform.Errorf(http.StatusInternalServerError, "internal", "%v", err))
			return
		}
		req.Header.Set("Accept", r.Header.Get("Accept"))
		if auth := r.Header.Get("Authorization"); auth != "" {
			req.Header.Set("Authorization", auth) // a service token for an API read (notifications)
		}
		resp, err := client.Do(req)
		if err != nil {
			platform.WriteError(w, platform.Errorf(http.StatusBadGateway, "unreachable", "%v", err))
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}
