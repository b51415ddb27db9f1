package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/platform"
)

// Config configures the broker. ConfigFromEnv fills it from the environment with the defaults
// documented on each field.
type Config struct {
	Addr      string // BROKER_ADDR, default ":9292"
	DB        string // BROKER_DB, the SQLite file, default "broker.db"
	PublicURL string // BROKER_PUBLIC_URL, the base of every href; default: derived from each request's Host
	// Auth: BROKER_TOKEN (bearer token) and BROKER_USERNAME/BROKER_PASSWORD (basic auth); with neither,
	// auth is off and Open logs a warning.
	Auth            Auth
	LogLevel        slog.Level    // LOG_LEVEL, default info
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT, default 10s: how long in-flight requests may drain
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ConfigFromEnv reads the broker's configuration; bad values are collected in env (see env.Err).
func ConfigFromEnv(env *platform.Env) Config {
	cfg := Config{
		Addr:      env.String("BROKER_ADDR", ":9292"),
		DB:        env.String("BROKER_DB", "broker.db"),
		PublicURL: env.String("BROKER_PUBLIC_URL", ""),
		Auth: Auth{
			Token:    env.String("BROKER_TOKEN", ""),
			Username: env.String("BROKER_USERNAME", ""),
			Password: env.String("BROKER_PASSWORD", ""),
		},
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(env.String("LOG_LEVEL", "info"))); err != nil {
		env.Fail("LOG_LEVEL=%q: want debug, info, warn or error", env.String("LOG_LEVEL", ""))
	}
	for _, p := range cfg.problems() {
		env.Fail("%s", p)
	}
	return cfg
}

// problems lists what makes cfg unusable; ConfigFromEnv and Open both refuse such a configuration.
func (c Config) problems() []string {
	var ps []string
	if c.Addr == "" {
		ps = append(ps, "BROKER_ADDR must not be empty")
	}
	if c.DB == "" {
		ps = append(ps, "BROKER_DB must not be empty")
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" {
			ps = append(ps, fmt.Sprintf("BROKER_PUBLIC_URL=%q: want http(s)://host[:port][/path]", c.PublicURL))
		}
	}
	if (c.Auth.Username == "") != (c.Auth.Password == "") {
		ps = append(ps, "BROKER_USERNAME and BROKER_PASSWORD must be set together")
	}
	return ps
}

// Open assembles the broker: it opens and migrates the store and builds service → HTTP handler as a
// platform.Service (health, readiness, metrics and logs come from the platform). Close the returned
// io.Closer to close the database.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) (*platform.Service, io.Closer, error) {
	if ps := cfg.problems(); len(ps) > 0 {
		return nil, nil, fmt.Errorf("broker config: %v", ps)
	}
	st, err := openStore(ctx, cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.Auth.enabled() {
		logger.Warn("authentication is off: set BROKER_TOKEN (or BROKER_USERNAME and BROKER_PASSWORD) to require it")
	}
	svc := newService(st, cfg.Now, newMetrics(reg))
	return &platform.Service{
		Name:     "broker",
		API:      NewHTTPHandler(svc, cfg.PublicURL, cfg.Auth, logger),
		Registry: reg,
		Logger:   logger,
		Ready:    []platform.ReadyCheck{{Name: "db", Check: st.Ping}},
	}, &closer{close: st.Close}, nil
}

// closer runs close once, however often Close is called.
type closer struct {
	once  sync.Once
	close func() error
	err   error
}

func (c *closer) Close() error {
	c.once.Do(func() { c.err = c.close() })
	return c.err
}
