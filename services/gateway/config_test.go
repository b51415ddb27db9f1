package gateway

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

func TestConfigFromEnvDefaults(t *testing.T) {
	// Service auth has no default: it needs a secret or SERVICE_AUTH=off.
	env := platform.EnvFrom(map[string]string{"SERVICE_AUTH": "off"})
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	if cfg.Addr != ":8080" || cfg.JWTIssuer != "resilience-lab" || !cfg.DevTokens || cfg.JWTSecret != "" ||
		cfg.RateLimitRPS != 100 || cfg.RateLimitBurst != 200 || cfg.TokenTTL != time.Hour ||
		cfg.LogLevel != slog.LevelInfo || cfg.CatalogURL != "http://localhost:8081" ||
		cfg.RateLimitMaxClients != 100_000 || !cfg.StaleCatalog {
		t.Errorf("defaults %+v", cfg)
	}
	if cfg.Resilience.Service != "gateway" || len(cfg.Resilience.Links) != 3 {
		t.Fatalf("resilience %+v, want the gateway's three links", cfg.Resilience)
	}
	for _, link := range []string{LinkCatalog, LinkOrders, LinkPayments} {
		if l, ok := cfg.Resilience.Links[link]; !ok || l.HedgeDelay != 0 {
			t.Errorf("link %s: %+v (configured %v), want the defaults with hedging off", link, l, ok)
		}
	}
}

func TestConfigFromEnvReadsPolicies(t *testing.T) {
	env := platform.EnvFrom(map[string]string{
		"GATEWAY_CATALOG_HEDGE_DELAY": "20ms", "GATEWAY_ORDERS_BREAKER": "off", "GATEWAY_PAYMENTS_TIMEOUT": "300ms",
		"GATEWAY_SHED_MAX_IN_FLIGHT": "9", "GATEWAY_STALE_CATALOG": "false",
		"GATEWAY_RATE_LIMIT_RPS": "5", "GATEWAY_RATE_LIMIT_BURST": "7", "GATEWAY_RATE_LIMIT_MAX_CLIENTS": "11",
		"SERVICE_AUTH": "off",
	})
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	links := cfg.Resilience.Links
	if links[LinkCatalog].HedgeDelay != 20*time.Millisecond || links[LinkOrders].Breaker.Backend != "off" ||
		links[LinkPayments].Timeout != 300*time.Millisecond || cfg.Resilience.Server.Shed.MaxInFlight != 9 {
		t.Errorf("resilience %+v", cfg.Resilience)
	}
	if cfg.StaleCatalog || cfg.RateLimitRPS != 5 || cfg.RateLimitBurst != 7 || cfg.RateLimitMaxClients != 11 {
		t.Errorf("config %+v", cfg)
	}
}

func TestConfigFromEnvRejectsBadValues(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"secret required without dev tokens", map[string]string{"GATEWAY_DEV_TOKENS": "false"}, "GATEWAY_JWT_SECRET is required"},
		{"short secret", map[string]string{"GATEWAY_JWT_SECRET": "short"}, "at least 32 bytes"},
		{"bad url", map[string]string{"ORDERS_URL": "orders:8082"}, "ORDERS_URL"},
		{"zero rps", map[string]string{"GATEWAY_RATE_LIMIT_RPS": "0"}, "GATEWAY_RATE_LIMIT_RPS"},
		{"rps not a number", map[string]string{"GATEWAY_RATE_LIMIT_RPS": "fast"}, "GATEWAY_RATE_LIMIT_RPS"},
		{"zero burst", map[string]string{"GATEWAY_RATE_LIMIT_BURST": "0"}, "GATEWAY_RATE_LIMIT_BURST"},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"token ttl over a day", map[string]string{"GATEWAY_TOKEN_TTL": "48h"}, "GATEWAY_TOKEN_TTL"},
		{"dev tokens not a bool", map[string]string{"GATEWAY_DEV_TOKENS": "maybe"}, "GATEWAY_DEV_TOKENS"},
		{"zero max clients", map[string]string{"GATEWAY_RATE_LIMIT_MAX_CLIENTS": "0"}, "GATEWAY_RATE_LIMIT_MAX_CLIENTS"},
		{"stale catalog not a bool", map[string]string{"GATEWAY_STALE_CATALOG": "maybe"}, "GATEWAY_STALE_CATALOG"},
		{"unknown breaker", map[string]string{"GATEWAY_CATALOG_BREAKER": "fuse"}, "GATEWAY_CATALOG_"},
		{"negative hedge delay", map[string]string{"GATEWAY_ORDERS_HEDGE_DELAY": "-1s"}, "GATEWAY_ORDERS_HEDGE_DELAY"},
		{"negative shed bound", map[string]string{"GATEWAY_SHED_MAX_IN_FLIGHT": "-1"}, "GATEWAY_"},
		{"accepted key without a secret", map[string]string{"GATEWAY_JWT_ACCEPT_SECRET": strings.Repeat("n", 32)}, "needs GATEWAY_JWT_SECRET"},
		{"short accepted key", map[string]string{"GATEWAY_JWT_SECRET": strings.Repeat("k", 32), "GATEWAY_JWT_ACCEPT_SECRET": "short"}, "GATEWAY_JWT_ACCEPT_SECRET must be at least 32 bytes"},
		{"accepted key equal to the secret", map[string]string{"GATEWAY_JWT_SECRET": strings.Repeat("k", 32), "GATEWAY_JWT_ACCEPT_SECRET": strings.Repeat("k", 32)}, "the same key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := platform.EnvFrom(tc.env)
			ConfigFromEnv(env)
			if err := env.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("every bad value is listed", func(t *testing.T) {
		env := platform.EnvFrom(map[string]string{"GATEWAY_RATE_LIMIT_BURST": "0", "PAYMENTS_URL": "x"})
		ConfigFromEnv(env)
		err := env.Err()
		if err == nil || !strings.Contains(err.Error(), "BURST") || !strings.Contains(err.Error(), "PAYMENTS_URL") {
			t.Fatalf("error %v, want both problems", err)
		}
	})
}

func TestOpenRefusesMissingSecret(t *testing.T) {
	cfg := testConfig(newFakeClock())
	cfg.JWTSecret, cfg.DevTokens = "", false
	if _, _, err := Open(t.Context(), cfg, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("Open accepted no secret without dev tokens")
	}
}
