// Command etcd runs a single-member etcd server, built from the go.etcd.io/etcd/server/v3 module
// (embed), so the lab's FROM-scratch image needs nothing pulled (deploy/docker/Dockerfile with
// BINARY=etcd). It is the registry the services register in and discover each other through.
//
// Configuration, flags over environment:
//
//	-name              ETCD_NAME                  member name              (default lab-etcd)
//	-data-dir          ETCD_DATA_DIR              data directory           (default /data)
//	-listen-client     ETCD_LISTEN_CLIENT_URLS    client URLs, comma-separated (default http://0.0.0.0:2379)
//	-advertise-client  ETCD_ADVERTISE_CLIENT_URLS what clients are told    (default http://etcd:2379)
//	-listen-peer       ETCD_LISTEN_PEER_URL       peer URL; one member, so loopback (default http://127.0.0.1:2380)
//	-compaction        ETCD_AUTO_COMPACTION_RETENTION  periodic compaction (default 1h; 0 disables)
//	-quota             ETCD_QUOTA_BACKEND_BYTES   backend size limit       (default 256 MiB)
//	-log-level         ETCD_LOG_LEVEL             debug, info, warn, error (default warn)
//
// `etcd healthcheck URL` probes URL (e.g. http://127.0.0.1:2379/health) for container healthchecks, as
// the services' binaries do. SIGTERM and SIGINT stop the member cleanly.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/resilience-lab/lab/services/platform"
)

// settings are the command's configuration.
type settings struct {
	name, dataDir, listenClient, advertiseClient, listenPeer, compaction, logLevel string
	quota                                                                          int64
}

func main() {
	platform.Healthcheck(os.Args)
	env := platform.NewEnv()
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	var s settings
	fs.StringVar(&s.name, "name", env.String("ETCD_NAME", "lab-etcd"), "member name")
	fs.StringVar(&s.dataDir, "data-dir", env.String("ETCD_DATA_DIR", "/data"), "data directory")
	fs.StringVar(&s.listenClient, "listen-client", env.String("ETCD_LISTEN_CLIENT_URLS", "http://0.0.0.0:2379"), "client URLs to listen on")
	fs.StringVar(&s.advertiseClient, "advertise-client", env.String("ETCD_ADVERTISE_CLIENT_URLS", "http://etcd:2379"), "client URLs to advertise")
	fs.StringVar(&s.listenPeer, "listen-peer", env.String("ETCD_LISTEN_PEER_URL", "http://127.0.0.1:2380"), "peer URL")
	fs.StringVar(&s.compaction, "compaction", env.String("ETCD_AUTO_COMPACTION_RETENTION", "1h"), "periodic compaction retention")
	fs.Int64Var(&s.quota, "quota", int64(env.Int("ETCD_QUOTA_BACKEND_BYTES", 256<<20)), "backend size limit in bytes")
	fs.StringVar(&s.logLevel, "log-level", env.String("ETCD_LOG_LEVEL", "warn"), "log level")
	_ = fs.Parse(os.Args[1:])
	if err := env.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "etcd: bad configuration:\n%v\n", err)
		os.Exit(2)
	}
	cfg, err := config(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		os.Exit(1)
	}
}

// config builds the member's configuration, rejecting bad URLs and values.
func config(s settings) (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel = s.name, s.dataDir, s.logLevel
	if s.name == "" || s.dataDir == "" {
		return nil, fmt.Errorf("-name and -data-dir must not be empty")
	}
	var err error
	if cfg.ListenClientUrls, err = parseURLs("-listen-client", s.listenClient); err != nil {
		return nil, err
	}
	if cfg.AdvertiseClientUrls, err = parseURLs("-advertise-client", s.advertiseClient); err != nil {
		return nil, err
	}
	peer, err := parseURLs("-listen-peer", s.listenPeer)
	if err != nil {
		return nil, err
	}
	if len(peer) != 1 {
		return nil, fmt.Errorf("-listen-peer: want one URL, got %d", len(peer))
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = peer, peer
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	switch s.logLevel { // etcd panics on any other
	case "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", s.logLevel)
	}
	if _, err := time.ParseDuration(s.compaction); err != nil && s.compaction != "0" {
		return nil, fmt.Errorf("-compaction %q: want a duration such as 1h, or 0", s.compaction)
	}
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = embed.CompactorModePeriodic, s.compaction
	if s.quota <= 0 {
		return nil, fmt.Errorf("-quota must be positive")
	}
	cfg.QuotaBackendBytes = s.quota
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func parseURLs(flagName, list string) ([]url.URL, error) {
	var out []url.URL
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%s: %q: want http://host:port", flagName, raw)
		}
		out = append(out, *u)
	}
	return out, nil
}

// run starts the member and serves until SIGTERM or SIGINT, or until it fails.
func run(cfg *embed.Config) error {
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("not ready after 5 minutes")
	}
	fmt.Fprintf(os.Stderr, "etcd: %s ready, serving clients on %s\n", cfg.Name, cfg.ListenClientUrls[0].String())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	select {
	case <-stop:
		return nil // the deferred Close stops the member cleanly
	case err := <-e.Err():
		return err
	}
}
