package gateway

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

func TestConfigFromEnvDefaults(t *testing.T) {
	env := platform.EnvFrom(map[string]string{})
	cfg := ConfigFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatalf("defaults are invalid: %v", err)
	}
	if cfg.Addr != ":8080" || cfg.JWTIssuer != "resilience-lab" || !cfg.DevTokens || cfg.JWTSecret != "" ||
		cfg.RateLimitRPS != 100 || cfg.RateLimitBurst != 200 || cfg.TokenTTL != time.Hour ||
		cfg.LogLevel != slog.LevelInfo || cfg.CatalogURL != "http://localhost:8081" {
		t.Errorf("defaults %+v", cfg)
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
