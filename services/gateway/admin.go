package gateway

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/platform"
)

// AdminCanaryRoute serves the catalog canary's admin API (canary.Router.Handler: GET the status, PUT
// {"weight": n}) when the canary is on. It is an operator route beside /metrics, not part of /api.
const AdminCanaryRoute = "/admin/canary/catalog"

// CodeForbidden answers an admin route called with a valid token that lacks AdminRole.
const CodeForbidden = "forbidden"

// adminOnly lets through only a request whose bearer token is valid (else 401, as on /api) and carries
// AdminRole (else 403). Admin calls are not rate limited: an operator must be able to roll a canary back
// while the gateway is flooded. failures counts the refusals by code; every accepted change is logged
// with who made it (the router logs what changed).
func adminOnly(auth *Authenticator, failures *prometheus.CounterVec, logger *slog.Logger, next http.Handler) http.Handler {
	count := func(code string) { failures.WithLabelValues(code).Inc() }
	return auth.identify(requireAuth(count, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := r.Context().Value(identityKey{}).(identity)
		if !id.has(AdminRole) {
			count(CodeForbidden)
			platform.WriteError(w, platform.Errorf(http.StatusForbidden, CodeForbidden,
				"the admin API needs a token with the %q role", AdminRole))
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		logger.InfoContext(r.Context(), "admin call", "subject", id.subject, "method", r.Method, "path", r.URL.Path, "status", sw.status)
	})))
}

// newAdminFailures is gateway_admin_auth_failures_total: refused admin calls (401 codes and forbidden).
func newAdminFailures(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_admin_auth_failures_total", Help: "Admin API calls refused, by error code (401 codes, forbidden).",
	}, []string{"code"})
	reg.MustRegister(c)
	return c
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// AdminToken is `gateway admin-token [-subject s] [-ttl d]`: it prints a token with AdminRole signed
// with the gateway's GATEWAY_JWT_SECRET and GATEWAY_JWT_ISSUER, for an operator who holds the secret
// (`docker compose exec gateway /gateway admin-token`). Like the gateway it falls back to the public
// DevJWTSecret when no secret is set, saying so. It returns the exit code.
func AdminToken(args []string, env *platform.Env, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("admin-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	subject := fs.String("subject", "admin", "the token's subject (who the admin calls are logged as)")
	ttl := fs.Duration("ttl", time.Hour, "the token's lifetime, at most "+MaxTokenTTL.String())
	if err := fs.Parse(args); err != nil {
		return 2
	}
	secret, issuer := env.String("GATEWAY_JWT_SECRET", ""), env.String("GATEWAY_JWT_ISSUER", "resilience-lab")
	if err := env.Err(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if secret == "" {
		fmt.Fprintln(stderr, "GATEWAY_JWT_SECRET is unset: signing with the public dev secret, as the gateway does")
		secret = DevJWTSecret
	}
	auth, err := NewAuthenticator([]byte(secret), issuer, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	tok, err := auth.Issue(*subject, *ttl, AdminRole)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprintln(stdout, tok.Token)
	return 0
}
