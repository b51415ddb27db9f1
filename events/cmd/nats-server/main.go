// Command nats-server runs the NATS server with JetStream, built from the nats-server module, so the
// lab's FROM-scratch image needs nothing pulled (deploy/docker/Dockerfile with BINARY=nats-server).
//
// Configuration, flags over environment:
//
//	-listen   NATS_LISTEN      client address            (default 0.0.0.0:4222)
//	-http     NATS_HTTP        monitoring address, /healthz (default 0.0.0.0:8222; "" disables it)
//	-store    NATS_STORE_DIR   JetStream store directory (default /data)
//	-name     NATS_SERVER_NAME server name               (default lab-nats)
//	-max-store NATS_MAX_STORE_BYTES  JetStream file store limit (default 1 GiB)
//	-max-mem  NATS_MAX_MEMORY_BYTES JetStream memory store limit (default 256 MiB)
//
// `nats-server healthcheck URL` probes URL (e.g. http://127.0.0.1:8222/healthz?js-enabled-only=true)
// for container healthchecks, as the services' binaries do.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/resilience-lab/lab/services/platform"
)

func main() {
	platform.Healthcheck(os.Args)
	env := platform.NewEnv()
	fs := flag.NewFlagSet("nats-server", flag.ExitOnError)
	listen := fs.String("listen", env.String("NATS_LISTEN", "0.0.0.0:4222"), "client listen address")
	httpAddr := fs.String("http", env.String("NATS_HTTP", "0.0.0.0:8222"), "monitoring listen address (empty: none)")
	store := fs.String("store", env.String("NATS_STORE_DIR", "/data"), "JetStream store directory")
	name := fs.String("name", env.String("NATS_SERVER_NAME", "lab-nats"), "server name")
	maxStore := fs.Int64("max-store", int64(env.Int("NATS_MAX_STORE_BYTES", 1<<30)), "JetStream file store limit in bytes")
	maxMem := fs.Int64("max-mem", int64(env.Int("NATS_MAX_MEMORY_BYTES", 256<<20)), "JetStream memory store limit in bytes")
	_ = fs.Parse(os.Args[1:])
	if err := env.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "nats-server: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	opts, err := options(*listen, *httpAddr, *store, *name, *maxStore, *maxMem)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nats-server: %v\n", err)
		os.Exit(2)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nats-server: %v\n", err)
		os.Exit(1)
	}
	srv.ConfigureLogger()
	// The server handles SIGTERM and SIGINT itself (NoSigs is false): it shuts down cleanly, flushing
	// the JetStream store.
	if err := server.Run(srv); err != nil {
		fmt.Fprintf(os.Stderr, "nats-server: %v\n", err)
		os.Exit(1)
	}
	srv.WaitForShutdown()
}

// options builds the server options from the configuration, rejecting bad addresses.
func options(listen, httpAddr, store, name string, maxStore, maxMem int64) (*server.Options, error) {
	host, port, err := splitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("-listen %q: %w", listen, err)
	}
	opts := &server.Options{
		ServerName:         name,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           store,
		JetStreamMaxStore:  maxStore,
		JetStreamMaxMemory: maxMem,
		Logtime:            true,
		LogtimeUTC:         true,
	}
	if httpAddr != "" {
		h, p, err := splitHostPort(httpAddr)
		if err != nil {
			return nil, fmt.Errorf("-http %q: %w", httpAddr, err)
		}
		opts.HTTPHost, opts.HTTPPort = h, p
	}
	if store == "" {
		return nil, fmt.Errorf("-store must not be empty")
	}
	if maxStore <= 0 || maxMem <= 0 {
		return nil, fmt.Errorf("-max-store and -max-mem must be positive")
	}
	return opts, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}
