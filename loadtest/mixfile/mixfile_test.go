package mixfile

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestShippedMixesParse(t *testing.T) {
	for _, name := range []string{"shop", "trivial"} {
		f, err := Load("../mixes/" + name + ".json")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.Name != name || len(f.Requests) == 0 {
			t.Errorf("%s: %+v", name, f)
		}
	}
}

func TestParseRejectsBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"not json", `{"requests": [`, "not valid"},
		{"unknown field", `{"requests":[{"method":"GET","path":"/","wieght":2}]}`, `unknown field "wieght"`},
		{"two values", `{"requests":[{"method":"GET","path":"/"}]} {}`, "more than one JSON value"},
		{"wrong type", `{"requests":[{"method":"GET","path":"/","weight":"2"}]}`, "cannot unmarshal"},
		{"no requests", `{"name":"x"}`, "no requests"},
		{"bad method", `{"requests":[{"method":"get","path":"/"}]}`, `method "get"`},
		{"relative path", `{"requests":[{"method":"GET","path":"api"}]}`, "must start with /"},
		{"unknown placeholder", `{"requests":[{"method":"GET","path":"/{{seqq}}"}]}`, "unknown placeholder {{seqq}}"},
		{"unclosed placeholder", `{"requests":[{"method":"GET","path":"/{{seq"}]}`, "unclosed {{"},
		{"bad header template", `{"requests":[{"method":"GET","path":"/","headers":{"X-A":"{{uid}}"}}]}`, "header X-A"},
		{"bad header name", `{"requests":[{"method":"GET","path":"/","headers":{"X A":"1"}}]}`, `header name "X A"`},
		{"bad body template", `{"requests":[{"method":"POST","path":"/","body":{"a":"{{var}}"}}]}`, "body: unknown placeholder"},
		{"zero weight", `{"requests":[{"method":"GET","path":"/","weight":0}]}`, "weight 0 must be ≥ 1"},
		{"bad auth", `{"requests":[{"method":"GET","path":"/","auth":"basic"}]}`, `auth "basic"`},
		{"bad expect", `{"requests":[{"method":"GET","path":"/","expect":[700]}]}`, "700 is not an HTTP status"},
		{"bad capture", `{"requests":[{"method":"GET","path":"/","capture":{"id":"a..b"}}]}`, `capture "id"`},
		{"unfilled var", `{"requests":[{"name":"one","method":"GET","path":"/p/{{var pid}}"}]}`, "{{var pid}} is never filled"},
		{"duplicate name", `{"requests":[{"name":"a","method":"GET","path":"/"},{"name":"a","method":"GET","path":"/x"}]}`, `name "a" is used twice`},
		{"empty var", `{"vars":{"pid":[]},"requests":[{"method":"GET","path":"/"}]}`, `vars: "pid"`},
		{"bad token", `{"token":{"path":"api/token"},"requests":[{"method":"GET","path":"/"}]}`, "token:"},
	} {
		_, err := Parse([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// Every problem is reported, not just the first.
	_, err := Parse([]byte(`{"requests":[{"method":"GET","path":"x"},{"name":"b","method":"PUTT","path":"/"}]}`))
	if err == nil || !strings.Contains(err.Error(), "requests[0]") || !strings.Contains(err.Error(), "requests[1] (b)") {
		t.Errorf("error %v, want both requests named", err)
	}
}

func TestTemplates(t *testing.T) {
	pool := newVarPool(map[string][]string{"pid": {"p-1"}}, nil)
	tmpl, err := compile(`/orders/{{ seq }}/{{var pid}}?k={{uuid}}`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tmpl.render(&renderCtx{seq: 42, vars: pool})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^/orders/42/p-1\?k=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(s) {
		t.Errorf("rendered %q", s)
	}
	if _, ok := tmpl.constant(); ok {
		t.Error("a template with placeholders claims to be constant")
	}
	if c, _ := compile("/plain"); c.parts[0].text != "/plain" {
		t.Errorf("plain template %+v", c)
	}
	empty := newVarPool(nil, []string{"oid"})
	o, _ := compile("{{var oid}}")
	if _, err := o.render(&renderCtx{vars: empty}); err == nil || !strings.Contains(err.Error(), "no value yet") {
		t.Errorf("rendering an empty variable: %v", err)
	}
}

func TestExtract(t *testing.T) {
	var doc any
	_ = json.Unmarshal([]byte(`{"products":[{"id":"a","n":1},{"id":"b","n":2.5},{"x":1}],"id":"top","deep":{"k":[{"v":"z"}]}}`), &doc)
	for _, tc := range []struct{ path, want string }{
		{"products.id", "a,b"},
		{"products.n", "1,2.500000"},
		{"id", "top"},
		{"deep.k.v", "z"},
		{"products", ""},
		{"missing.x", ""},
	} {
		if got := strings.Join(extract(doc, strings.Split(tc.path, ".")), ","); got != tc.want {
			t.Errorf("extract(%s) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// fakeGateway is the shop gateway's API as far as the shop mix uses it.
type fakeGateway struct {
	mu         sync.Mutex
	keys       map[string]bool
	orders     int
	authFailed int
	tokenCalls int
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.URL.Path == "/api/token" {
		g.tokenCalls++
		var req struct {
			Subject    string `json:"subject"`
			TTLSeconds int64  `json:"ttl_seconds"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields() // as strict as the gateway
		if dec.Decode(&req) != nil || req.Subject != "loadgen" || req.TTLSeconds != 7200 {
			http.Error(w, `{"error":{"code":"invalid_argument"}}`, http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, `{"token":"tok-loadgen"}`)
		return
	}
	if r.Header.Get("Authorization") != "Bearer tok-loadgen" {
		g.authFailed++
		http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/products":
		fmt.Fprint(w, `{"products":[{"id":"p-1"},{"id":"p-2"}]}`)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/api/products/"):
		if id := strings.TrimPrefix(r.URL.Path, "/api/products/"); id != "p-1" && id != "p-2" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{}`)
	case r.Method == "POST" && r.URL.Path == "/api/orders":
		key := r.Header.Get("Idempotency-Key")
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Items []struct {
				ProductID string `json:"product_id"`
				Quantity  int    `json:"quantity"`
			} `json:"items"`
		}
		if key == "" || g.keys[key] || r.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &req) != nil || len(req.Items) != 1 || !strings.HasPrefix(req.Items[0].ProductID, "p-") {
			http.Error(w, "bad order: "+string(body), http.StatusBadRequest)
			return
		}
		g.keys[key] = true
		g.orders++
		if g.orders%4 == 0 {
			http.Error(w, `{"error":{"code":"out_of_stock"}}`, http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"o-%d","status":"confirmed"}`, g.orders)
	case r.Method == "GET" && r.URL.Path == "/api/orders":
		fmt.Fprint(w, `{"orders":[]}`)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/api/orders/o-") && strings.HasSuffix(r.URL.Path, "/details"):
		fmt.Fprint(w, `{}`)
	default:
		http.NotFound(w, r)
	}
}

func TestBuildShopMixAgainstAGateway(t *testing.T) {
	g := &fakeGateway{keys: map[string]bool{}}
	srv := httptest.NewServer(g)
	defer srv.Close()
	f, err := Load("../mixes/shop.json")
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(srv.URL)
	mix, err := f.Build(context.Background(), base, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if g.tokenCalls != 1 || g.orders != 1 {
		t.Fatalf("token fetched %d times, %d orders placed by setup; want 1 and 1", g.tokenCalls, g.orders)
	}
	// Play every kind a few times by hand, as the engine would.
	for seq, k := range mix.Kinds() {
		for i := 0; i < 5; i++ {
			req, err := k.Build(context.Background(), uint64(seq*10+i))
			if err != nil {
				t.Fatalf("%s: %v", k.Name, err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out := k.Classify
			if out == nil {
				t.Fatalf("%s has no classifier", k.Name)
			}
			o := out(resp, nil)
			if !o.OK {
				t.Errorf("%s: %s %s → %d %s", k.Name, req.Method, req.URL.Path, resp.StatusCode, body)
			}
			if k.Name == "place_order" && resp.StatusCode == http.StatusConflict && o.Class != "http_409" {
				t.Errorf("out_of_stock classed %+v, want an expected http_409", o)
			}
			if o.OK && k.OnResponse != nil {
				k.OnResponse(resp, body)
			}
		}
	}
	if g.authFailed != 0 || len(g.keys) != 6 {
		t.Errorf("%d requests without the token, %d distinct idempotency keys (want 0 and 6)", g.authFailed, len(g.keys))
	}
}

func TestBuildReportsTokenAndSetupFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/token" {
			http.Error(w, `{"error":{"code":"not_found"}}`, http.StatusNotFound)
			return
		}
		http.Error(w, `{"error":{"code":"unavailable"}}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	shop, _ := Load("../mixes/shop.json")
	if _, err := shop.Build(context.Background(), base, srv.Client()); err == nil || !strings.Contains(err.Error(), "dev token") || !strings.Contains(err.Error(), "404") {
		t.Errorf("token failure: %v", err)
	}
	f, err := Parse([]byte(`{"setup":[{"name":"warm","method":"GET","path":"/warm"}],"requests":[{"method":"GET","path":"/"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Build(context.Background(), base, srv.Client()); err == nil || !strings.Contains(err.Error(), "setup[0] (warm)") || !strings.Contains(err.Error(), "503") {
		t.Errorf("setup failure: %v", err)
	}
}
