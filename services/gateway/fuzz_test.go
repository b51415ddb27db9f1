package gateway_test

import (
	"cmp"
	"context"
	"fmt"
	"github.com/resilience-lab/lab/services/platform/platformtest"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/catalog"
	"github.com/resilience-lab/lab/services/gateway"
	"github.com/resilience-lab/lab/services/orders"
	"github.com/resilience-lab/lab/services/payments"
	"github.com/resilience-lab/lab/services/platform"
)

// The fuzz targets drive the gateway as cmd/gateway serves it (Open, the platform's full handler: JWT
// check, rate limiter, routing, decoding) in front of the real catalog, orders and payments on loopback
// httptest servers. Each fuzz process builds this shop once and every iteration reuses it. The gateway's
// clock is fixed, so the committed seed tokens (HS256 with the dev secret, issued at fuzzEpoch for an
// hour) stay valid, and its rate limit is far above any fuzzing rate. Properties, whatever the input: no
// panic, no 5xx (but a 504 the caller's own short X-Deadline-Ms explains), every error in the shop's
// shape with a code, every success decoding strictly into the documented type, agreeing with the request
// and never showing another customer's data. Seeds: testdata/fuzz/<target>/; scripts/fuzz.sh runs them.

// fuzzEpoch is the gateway's clock: ten minutes into the seed tokens' hour (issued 2030-01-01T00:00:00Z).
var fuzzEpoch = time.Date(2030, 1, 1, 0, 10, 0, 0, time.UTC)

const fuzzIssuer = "resilience-lab"

type fuzzGateway struct {
	handler http.Handler
	auth    *gateway.Authenticator
	verify  *jwt.Parser
	// The harness's orders and payments: alice's are the caller's, bob's another customer's.
	aliceOrder, alicePayment, bobOrder, bobPayment string
	aliceToken                                     string
}

func newFuzzGateway(f *testing.F) *fuzzGateway {
	f.Helper()
	ctx, dir, logger := context.Background(), f.TempDir(), slog.New(slog.DiscardHandler)
	serve := func(svc *platform.Service, closer interface{ Close() error }) string {
		srv := httptest.NewServer(svc.Handler())
		f.Cleanup(func() {
			srv.Close()
			if err := closer.Close(); err != nil {
				f.Errorf("close %s: %v", svc.Name, err)
			}
		})
		return srv.URL
	}
	cat, catCloser, err := catalog.Open(ctx, catalog.Config{Addr: ":0", DB: filepath.Join(dir, "catalog.db"), Seed: true,
		SeedStock: 1 << 40, ReservationTTL: time.Hour, SweepInterval: time.Hour}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	catURL := serve(cat, catCloser)
	pay, payCloser, err := payments.Open(ctx, payments.Config{Addr: ":0", DBPath: filepath.Join(dir, "payments.db"),
		DeclineOverCents: payments.DefaultDeclineOverCents}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	payURL := serve(pay, payCloser)
	ord, ordCloser, err := orders.Open(ctx, orders.Config{Addr: ":0", DB: filepath.Join(dir, "orders.db"),
		CatalogURL: catURL, PaymentsURL: payURL, ResumeInterval: time.Hour, ResumeGrace: time.Minute,
		SagaTimeout: 30 * time.Second}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	ordURL := serve(ord, ordCloser)

	now := func() time.Time { return fuzzEpoch }
	gw, _, err := gateway.Open(ctx, gateway.Config{
		Addr: ":0", CatalogURL: catURL, OrdersURL: ordURL, PaymentsURL: payURL,
		JWTIssuer: fuzzIssuer, DevTokens: true, TokenTTL: time.Hour,
		RateLimitRPS: 1e9, RateLimitBurst: 1 << 30, RateLimitMaxClients: 1 << 20,
		DetailsPartTimeout: 10 * time.Second, Now: now,
	}, logger, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	auth, err := gateway.NewAuthenticator([]byte(gateway.DevJWTSecret), fuzzIssuer, now)
	if err != nil {
		f.Fatal(err)
	}
	g := &fuzzGateway{
		handler: gw.Handler(),
		auth:    auth,
		verify: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(fuzzIssuer),
			jwt.WithExpirationRequired(), jwt.WithTimeFunc(now)),
	}
	g.aliceToken = g.token(f, "alice")
	g.aliceOrder, g.alicePayment = g.harnessOrder(f, g.aliceToken)
	g.bobOrder, g.bobPayment = g.harnessOrder(f, g.token(f, "bob"))
	return g
}

func (g *fuzzGateway) token(f *testing.F, subject string) string {
	f.Helper()
	tok, err := g.auth.Issue(subject, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	return tok.Token
}

func (g *fuzzGateway) harnessOrder(f *testing.F, token string) (orderID, paymentID string) {
	f.Helper()
	r := platformtest.Request(http.MethodPost, "/api/orders", "", []byte(`{"items":[{"product_id":"p-mug","quantity":1}]}`))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set(platform.HeaderIdempotencyKey, "fuzz-harness")
	rec := g.serve(r)
	var o orders.Order
	if rec.Code != http.StatusCreated || platform.DecodeStrict(rec.Body.Bytes(), &o) != nil || o.Status != orders.StatusConfirmed {
		f.Fatalf("harness order: HTTP %d %s", rec.Code, rec.Body)
	}
	return o.ID, o.PaymentID
}

func (g *fuzzGateway) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	g.handler.ServeHTTP(rec, r)
	return rec
}

// FuzzAuthorization fuzzes the Authorization header of GET /api/orders: a token the gateway accepts
// must be a valid HS256 token of its issuer, and the answer must hold only its subject's orders.
func FuzzAuthorization(f *testing.F) {
	g := newFuzzGateway(f)
	f.Fuzz(func(t *testing.T, authorization string) {
		authorization, ok := platformtest.WireHeader(authorization)
		if !ok {
			return // no HTTP request can carry this header value
		}
		r := platformtest.Request(http.MethodGet, "/api/orders", "", nil)
		platformtest.SetHeader(r, "Authorization", authorization)
		rec := g.serve(r)
		if !platformtest.CheckAnswer(t, rec, false) {
			if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), `Bearer realm="api"`) {
				t.Fatalf("HTTP %d (WWW-Authenticate %q) for a bad Authorization header, want 401 with a challenge",
					rec.Code, rec.Header().Get("WWW-Authenticate"))
			}
			return
		}
		_, raw, _ := strings.Cut(authorization, " ")
		var claims jwt.RegisteredClaims
		if _, err := g.verify.ParseWithClaims(strings.TrimSpace(raw), &claims, func(*jwt.Token) (any, error) {
			return []byte(gateway.DevJWTSecret), nil
		}); err != nil || claims.Subject == "" {
			t.Fatalf("HTTP %d for Authorization %q, which is no valid token (%v)", rec.Code, authorization, err)
		}
		var list orders.ListOrdersResponse
		platformtest.DecodeAnswer(t, rec, &list)
		for _, o := range list.Orders {
			if o.CustomerID != claims.Subject {
				t.Fatalf("%q was shown order %+v of another customer", claims.Subject, o)
			}
		}
	})
}

// placeOrderBody mirrors the documented body of POST /api/orders; decoding it with the same strict rules
// tells what the gateway understood.
type placeOrderBody struct {
	Items      []orders.Item `json:"items"`
	CardNumber string        `json:"card_number,omitempty"`
}

func FuzzPlaceOrder(f *testing.F) {
	g := newFuzzGateway(f)
	f.Fuzz(func(t *testing.T, key, deadline string, body []byte) {
		key, ok1 := platformtest.WireHeader(key)
		deadline, ok2 := platformtest.WireHeader(deadline)
		if !ok1 || !ok2 {
			return // no HTTP request can carry these header values
		}
		r := platformtest.Request(http.MethodPost, "/api/orders", "", body)
		r.Header.Set("Authorization", "Bearer "+g.aliceToken)
		platformtest.SetHeader(r, platform.HeaderIdempotencyKey, key)
		platformtest.SetHeader(r, platform.HeaderDeadline, deadline)
		rec := g.serve(r)
		short := platformtest.ShortDeadline(deadline)
		if !platformtest.CheckAnswer(t, rec, short) {
			return
		}
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 201 or 200 (a repeat)", rec.Code)
		}
		var req placeOrderBody
		if err := platform.DecodeStrict(body, &req); err != nil {
			t.Fatalf("HTTP %d for a body the strict decoder refuses (%v)", rec.Code, err)
		}
		var o orders.Order
		platformtest.DecodeAnswer(t, rec, &o)
		byProduct := func(a, b orders.Item) int { return cmp.Compare(a.ProductID, b.ProductID) }
		got, asked := slices.Clone(o.Items), slices.Clone(req.Items)
		slices.SortFunc(got, byProduct)
		slices.SortFunc(asked, byProduct)
		if o.ID == "" || o.CustomerID != "alice" || !slices.Equal(got, asked) || (!short && !o.Status.Terminal()) {
			t.Fatalf("order %+v for alice's request %+v", o, req)
		}
	})
}

// FuzzToken fuzzes the body of POST /api/token: a token handed out must verify and name the subject
// asked for, and expire when asked.
func FuzzToken(f *testing.F) {
	g := newFuzzGateway(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := g.serve(platformtest.Request(http.MethodPost, "/api/token", "", body))
		if !platformtest.CheckAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		var req gateway.TokenRequest
		if err := platform.DecodeStrict(body, &req); err != nil {
			t.Fatalf("HTTP %d for a body the strict decoder refuses (%v)", rec.Code, err)
		}
		var tok gateway.Token
		platformtest.DecodeAnswer(t, rec, &tok)
		ttl := time.Hour
		if req.TTLSeconds != nil {
			ttl = time.Duration(*req.TTLSeconds) * time.Second
		}
		var claims jwt.RegisteredClaims
		if _, err := g.verify.ParseWithClaims(tok.Token, &claims, func(*jwt.Token) (any, error) {
			return []byte(gateway.DevJWTSecret), nil
		}); err != nil || claims.Subject != req.Subject || !tok.ExpiresAt.Equal(fuzzEpoch.Add(ttl)) {
			t.Fatalf("token %+v (claims %+v, %v) for request %s", tok, claims, err, body)
		}
	})
}

// Markers in a fuzzed id stand for the harness's random ids.
var idMarkers = []string{"@alice-order", "@alice-payment", "@bob-order", "@bob-payment"}

// FuzzPathID fuzzes the ids of alice's GET routes: any answer about an order or payment is about hers.
func FuzzPathID(f *testing.F) {
	g := newFuzzGateway(f)
	routes := []string{"/api/products/%s", "/api/orders/%s", "/api/orders/%s/details", "/api/payments/%s"}
	f.Fuzz(func(t *testing.T, route uint8, id string) {
		id = strings.NewReplacer(idMarkers[0], g.aliceOrder, idMarkers[1], g.alicePayment,
			idMarkers[2], g.bobOrder, idMarkers[3], g.bobPayment).Replace(id)
		pattern := routes[int(route)%len(routes)]
		r := platformtest.Request(http.MethodGet, fmt.Sprintf(pattern, id), fmt.Sprintf(pattern, url.PathEscape(id)), nil)
		r.Header.Set("Authorization", "Bearer "+g.aliceToken)
		rec := g.serve(r)
		if !platformtest.CheckAnswer(t, rec, false) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		switch pattern {
		case "/api/products/%s":
			var p catalog.Product
			platformtest.DecodeAnswer(t, rec, &p)
			if p.ID != id {
				t.Fatalf("product %+v for id %q", p, id)
			}
		case "/api/orders/%s":
			var o orders.Order
			platformtest.DecodeAnswer(t, rec, &o)
			if o.ID != id || o.CustomerID != "alice" {
				t.Fatalf("alice was shown order %+v for id %q", o, id)
			}
		case "/api/orders/%s/details":
			var d gateway.OrderDetails
			platformtest.DecodeAnswer(t, rec, &d)
			if d.Order.ID != id || d.Order.CustomerID != "alice" || (d.Payment != nil && d.Payment.OrderID != id) {
				t.Fatalf("alice was shown details %+v for id %q", d, id)
			}
		default:
			var p payments.Payment
			platformtest.DecodeAnswer(t, rec, &p)
			if p.ID != id || p.OrderID != g.aliceOrder {
				t.Fatalf("alice was shown payment %+v for id %q", p, id)
			}
		}
	})
}
