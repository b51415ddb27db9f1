package gateway

import (
	"strings"
	"testing"

	"github.com/resilience-lab/lab/services/platform"
)

func TestBadInput(t *testing.T) {
	g := newTestGateway(t, nil)
	auth := bearer(g.token(t, "alice"))
	withKey := append(append([]string(nil), auth...), platform.HeaderIdempotencyKey, "key-1")
	item := `{"product_id":"p-1","quantity":1}`
	manyItems := "[" + strings.Repeat(item+",", maxOrderItems) + item + "]"

	cases := []struct {
		name    string
		method  string
		path    string
		body    any
		headers []string
		status  int
		code    string
	}{
		// POST /api/orders
		{"missing idempotency key", "POST", "/api/orders", `{"items":[` + item + `]}`, auth, 400, "missing_idempotency_key"},
		{"idempotency key too long", "POST", "/api/orders", `{"items":[` + item + `]}`,
			append(append([]string(nil), auth...), platform.HeaderIdempotencyKey, strings.Repeat("k", 256)), 400, "invalid_argument"},
		{"idempotency key with control bytes", "POST", "/api/orders", `{"items":[` + item + `]}`,
			append(append([]string(nil), auth...), platform.HeaderIdempotencyKey, "clé"), 400, "invalid_argument"},
		{"empty body", "POST", "/api/orders", "", withKey, 400, "empty_body"},
		{"malformed JSON", "POST", "/api/orders", `{"items":[`, withKey, 400, "malformed_json"},
		{"not JSON", "POST", "/api/orders", `items=1`, withKey, 400, "malformed_json"},
		{"two JSON values", "POST", "/api/orders", `{"items":[` + item + `]}{}`, withKey, 400, "malformed_json"},
		{"unknown field", "POST", "/api/orders", `{"items":[` + item + `],"discount":5}`, withKey, 400, "unknown_field"},
		{"customer_id is not the caller's to set", "POST", "/api/orders", `{"customer_id":"bob","items":[` + item + `]}`, withKey, 400, "unknown_field"},
		{"unknown item field", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":1,"price":1}]}`, withKey, 400, "unknown_field"},
		{"items wrong type", "POST", "/api/orders", `{"items":"p-1"}`, withKey, 400, "wrong_type"},
		{"quantity wrong type", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":"2"}]}`, withKey, 400, "wrong_type"},
		{"quantity fractional", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":1.5}]}`, withKey, 400, "wrong_type"},
		{"quantity overflows", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":99999999999999999999}]}`, withKey, 400, "wrong_type"},
		{"no items", "POST", "/api/orders", `{"items":[]}`, withKey, 400, "invalid_argument"},
		{"items missing", "POST", "/api/orders", `{}`, withKey, 400, "invalid_argument"},
		{"too many items", "POST", "/api/orders", `{"items":` + manyItems + `}`, withKey, 400, "invalid_argument"},
		{"zero quantity", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":0}]}`, withKey, 400, "invalid_argument"},
		{"negative quantity", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":-3}]}`, withKey, 400, "invalid_argument"},
		{"huge quantity", "POST", "/api/orders", `{"items":[{"product_id":"p-1","quantity":1000000}]}`, withKey, 400, "invalid_argument"},
		{"empty product id", "POST", "/api/orders", `{"items":[{"product_id":"","quantity":1}]}`, withKey, 400, "invalid_argument"},
		{"product id with a slash", "POST", "/api/orders", `{"items":[{"product_id":"../x","quantity":1}]}`, withKey, 400, "invalid_argument"},
		{"card number with letters", "POST", "/api/orders", `{"items":[` + item + `],"card_number":"4242abcd42424242"}`, withKey, 400, "invalid_argument"},
		{"card number too short", "POST", "/api/orders", `{"items":[` + item + `],"card_number":"4242"}`, withKey, 400, "invalid_argument"},
		{"card number wrong type", "POST", "/api/orders", `{"items":[` + item + `],"card_number":4242424242424242}`, withKey, 400, "wrong_type"},
		{"body over 1 MiB", "POST", "/api/orders", `{"items":[` + item + `],"card_number":"` + strings.Repeat("4", platform.MaxBodyBytes) + `"}`, withKey, 413, "body_too_large"},
		{"wrong content type", "POST", "/api/orders", textBody{`{"items":[` + item + `]}`}, withKey, 415, "unsupported_media_type"},
		// ids in paths
		{"order id with dots only", "GET", "/api/orders/..%2F..", nil, auth, 400, "invalid_argument"},
		{"order id with an escaped slash", "GET", "/api/orders/a%2Fb/details", nil, auth, 400, "invalid_argument"},
		{"order id too long", "GET", "/api/orders/" + strings.Repeat("a", maxIDBytes+1), nil, auth, 400, "invalid_argument"},
		{"product id with a space", "GET", "/api/products/a%20b", nil, auth, 400, "invalid_argument"},
		{"payment id with a quote", "GET", "/api/payments/a%22b", nil, auth, 400, "invalid_argument"},
		{"unknown product", "GET", "/api/products/p-none", nil, auth, 404, "not_found"},
		{"unknown route", "GET", "/api/nope", nil, auth, 404, "not_found"},
		{"wrong method", "DELETE", "/api/orders/o-alice", nil, auth, 405, "method_not_allowed"},
		{"bad deadline header", "GET", "/api/orders", nil, append(append([]string(nil), auth...), platform.HeaderDeadline, "soon"), 400, "bad_deadline"},
		// POST /api/token
		{"token: no subject", "POST", "/api/token", `{}`, nil, 400, "invalid_argument"},
		{"token: subject too long", "POST", "/api/token", `{"subject":"` + strings.Repeat("a", 65) + `"}`, nil, 400, "invalid_argument"},
		{"token: subject with a space", "POST", "/api/token", `{"subject":"a b"}`, nil, 400, "invalid_argument"},
		{"token: subject wrong type", "POST", "/api/token", `{"subject":7}`, nil, 400, "wrong_type"},
		{"token: unknown field", "POST", "/api/token", `{"subject":"a","admin":true}`, nil, 400, "unknown_field"},
		{"token: ttl zero", "POST", "/api/token", `{"subject":"a","ttl_seconds":0}`, nil, 400, "invalid_argument"},
		{"token: ttl negative", "POST", "/api/token", `{"subject":"a","ttl_seconds":-5}`, nil, 400, "invalid_argument"},
		{"token: ttl over a day", "POST", "/api/token", `{"subject":"a","ttl_seconds":86401}`, nil, 400, "invalid_argument"},
		{"token: ttl that would overflow", "POST", "/api/token", `{"subject":"a","ttl_seconds":9223372036854775807}`, nil, 400, "invalid_argument"},
		{"token: malformed", "POST", "/api/token", `{"subject":`, nil, 400, "malformed_json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var a answer
			if tb, ok := tc.body.(textBody); ok {
				a = g.doText(t, tc.method, tc.path, tb.s, tc.headers...)
			} else {
				a = g.do(t, tc.method, tc.path, tc.body, tc.headers...)
			}
			if a.status >= 500 {
				t.Fatalf("5xx for bad input: %d %s", a.status, a.body)
			}
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if code := a.errorCode(t); code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
		})
	}
	g.shop.mu.Lock()
	defer g.shop.mu.Unlock()
	if len(g.shop.placed) != 0 {
		t.Errorf("bad input reached orders: %+v", g.shop.placed)
	}
}

// textBody is a body sent as text/plain.
type textBody struct{ s string }

func (g *testGateway) doText(t *testing.T, method, path, body string, headers ...string) answer {
	t.Helper()
	return g.do(t, method, path, []byte(body), append([]string{"Content-Type", "text/plain"}, headers...)...)
}
