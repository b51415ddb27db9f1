package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/resilience-lab/lab/services/platform"
)

// MaxTokenTTL bounds the lifetime of a dev token.
const MaxTokenTTL = 24 * time.Hour

// maxTokenBytes bounds the bearer token the gateway will parse.
const maxTokenBytes = 4096

// Codes of 401 answers.
const (
	CodeMissingToken = "missing_token"
	CodeInvalidToken = "invalid_token"
	CodeTokenExpired = "token_expired"
)

// Token is a signed bearer token and when it expires.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Authenticator issues and verifies the gateway's HS256 JWTs. Only HS256 is accepted (never "none" nor
// another algorithm an attacker could pick), exp is required, nbf is honoured and the issuer must match.
type Authenticator struct {
	secret []byte
	keys   any // what verifies a token: secret, or a jwt.VerificationKeySet with an accepted key
	issuer string
	now    func() time.Time
	parser *jwt.Parser
}

// NewAuthenticator returns an Authenticator; secret must hold at least MinJWTSecretBytes.
func NewAuthenticator(secret []byte, issuer string, now func() time.Time) (*Authenticator, error) {
	if len(secret) < MinJWTSecretBytes {
		return nil, fmt.Errorf("jwt secret: want at least %d bytes, got %d", MinJWTSecretBytes, len(secret))
	}
	if issuer == "" {
		return nil, errors.New("jwt issuer must not be empty")
	}
	if now == nil {
		now = time.Now
	}
	return &Authenticator{
		secret: secret,
		keys:   secret,
		issuer: issuer,
		now:    now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(now),
		),
	}, nil
}

// Accept makes a also accept tokens signed with key, never issuing with it: the next key while the
// identity provider moves to it, or the previous one after, so a key rotation logs nobody out.
func (a *Authenticator) Accept(key []byte) error {
	if len(key) < MinJWTSecretBytes {
		return fmt.Errorf("accepted jwt key: want at least %d bytes, got %d", MinJWTSecretBytes, len(key))
	}
	a.keys = jwt.VerificationKeySet{Keys: []jwt.VerificationKey{a.secret, key}}
	return nil
}

// AdminRole is the role a token needs for the gateway's admin API (the canary's weight): a "roles"
// claim holding "admin". POST /api/token never grants it, so dev tokens cannot steer traffic; an operator
// mints one with the secret (`gateway admin-token`).
const AdminRole = "admin"

// tokenClaims are the gateway's JWT claims: the registered ones and the caller's roles.
type tokenClaims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
}

// Issue signs a token for subject valid for ttl from now, carrying roles (each one of the known roles).
func (a *Authenticator) Issue(subject string, ttl time.Duration, roles ...string) (Token, error) {
	if err := validateSubject(subject); err != nil {
		return Token{}, err
	}
	for _, r := range roles {
		if r != AdminRole {
			return Token{}, platform.BadRequest("invalid_argument", "unknown role %q: the only role is %q", r, AdminRole)
		}
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return Token{}, platform.BadRequest("invalid_argument", "ttl_seconds must be between 1 and %d", int(MaxTokenTTL/time.Second))
	}
	// JWT times have whole-second resolution; truncate so expires_at is exactly what the token says.
	now := a.now().UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	c := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    a.issuer,
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}, Roles: roles}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.secret)
	if err != nil {
		return Token{}, fmt.Errorf("sign token: %w", err)
	}
	return Token{Token: signed, ExpiresAt: exp}, nil
}

// Verify checks a raw token and returns its subject, or a 401 *platform.Error whose message says what was
// wrong without echoing the token or the parser's internals.
func (a *Authenticator) Verify(raw string) (string, *platform.Error) {
	id := a.verify(raw)
	return id.subject, id.err
}

// verify checks a raw token and returns who it names and their roles, or why it is not accepted.
func (a *Authenticator) verify(raw string) identity {
	if len(raw) > maxTokenBytes {
		return identity{err: unauthorized(CodeInvalidToken, "the token is too large")}
	}
	var claims tokenClaims
	_, err := a.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return a.keys, nil })
	fail := func(code, msg string) identity { return identity{err: unauthorized(code, msg)} }
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(CodeTokenExpired, "the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fail(CodeInvalidToken, "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fail(CodeInvalidToken, "the token has no expiry")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(CodeInvalidToken, "the token's issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(CodeInvalidToken, "the token is malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fail(CodeInvalidToken, "the token's algorithm or signature is not accepted")
	default:
		return fail(CodeInvalidToken, "the token is not valid")
	}
	if validateSubject(claims.Subject) != nil {
		return fail(CodeInvalidToken, "the token has no valid subject")
	}
	return identity{subject: claims.Subject, roles: claims.Roles}
}

func unauthorized(code, msg string) *platform.Error {
	return platform.Errorf(http.StatusUnauthorized, code, "%s", msg)
}

// validateSubject keeps subjects short and plain: a subject is the customer id sent to orders and the
// rate limiter's key.
func validateSubject(s string) error {
	if s == "" || len(s) > 64 {
		return platform.BadRequest("invalid_argument", "subject must be 1 to 64 characters")
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._@-", c)
		if !ok {
			return platform.BadRequest("invalid_argument", "subject may hold only letters, digits and . _ @ -")
		}
	}
	return nil
}

// identity is what identify learned from the Authorization header: a subject, or why there is none.
type identity struct {
	subject string
	roles   []string
	err     *platform.Error
}

func (id identity) has(role string) bool { return slices.Contains(id.roles, role) }

type identityKey struct{}

// Subject returns the verified token subject of the request, or "".
func Subject(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id.subject
}

// identify verifies the bearer token, if any, before the rate limiter runs, so the limiter can key on the
// subject; requireAuth later rejects requests without a valid one.
func (a *Authenticator) identify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id identity
		h := r.Header.Get("Authorization")
		scheme, raw, _ := strings.Cut(h, " ")
		switch {
		case h == "":
			id.err = unauthorized(CodeMissingToken, "an Authorization: Bearer token is required")
		case !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "":
			id.err = unauthorized(CodeInvalidToken, "the Authorization header must be: Bearer <token>")
		default:
			id = a.verify(strings.TrimSpace(raw))
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// requireAuth answers 401 (RFC 6750 WWW-Authenticate) unless identify found a valid token.
func requireAuth(failures func(code string), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := r.Context().Value(identityKey{}).(identity)
		if id.subject == "" {
			e := id.err
			if e == nil {
				e = unauthorized(CodeMissingToken, "an Authorization: Bearer token is required")
			}
			failures(e.Code)
			challenge := `Bearer realm="api"`
			if e.Code != CodeMissingToken {
				challenge += `, error="invalid_token", error_description="` + e.Message + `"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			platform.WriteError(w, e)
			return
		}
		next.ServeHTTP(w, r)
	})
}
