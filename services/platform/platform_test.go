package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/resilience-lab/lab/services/platform"
)

func TestDecodeJSONRejectsBadInput(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	cases := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"malformed", "application/json", `{"name":`, 400, "malformed_json"},
		{"syntax", "application/json", `{"name" "x"}`, 400, "malformed_json"},
		{"empty", "application/json", ``, 400, "empty_body"},
		{"unknown field", "application/json", `{"name":"a","extra":1}`, 400, "unknown_field"},
		{"wrong type", "application/json", `{"count":"three"}`, 400, "wrong_type"},
		{"two values", "application/json", `{"name":"a"}{"name":"b"}`, 400, "malformed_json"},
		{"not json", "text/plain", `{"name":"a"}`, 415, "unsupported_media_type"},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", platform.MaxBodyBytes) + `"}`, 413, "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
			r.Header.Set("Content-Type", c.contentType)
			var v body
			err := platform.DecodeJSON(r, &v)
			e, ok := platform.AsError(err)
			if !ok {
				t.Fatalf("DecodeJSON = %v, want *platform.Error", err)
			}
			if e.Status != c.status || e.Code != c.code {
				t.Fatalf("got %d %s (%s), want %d %s", e.Status, e.Code, e.Message, c.status, c.code)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"ok","count":2}`))
	var v body
	if err := platform.DecodeJSON(r, &v); err != nil || v.Name != "ok" || v.Count != 2 {
		t.Fatalf("valid body: %v %+v", err, v)
	}
}

func TestEncodeErrorMapsStatus(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{platform.NotFound("no order %s", "x"), 404, "not_found"},
		{context.DeadlineExceeded, 504, "deadline_exceeded"},
		{errors.New("db exploded: secret detail"), 500, "internal"},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		platform.EncodeError(context.Background(), c.err, w)
		var body struct {
			Error platform.Error `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status || body.Error.Code != c.code {
			t.Errorf("%v: got %d %s, want %d %s", c.err, w.Code, body.Error.Code, c.status, c.code)
		}
		if strings.Contains(w.Body.String(), "secret") {
			t.Errorf("internal detail leaked: %s", w.Body.String())
		}
	}
}

func TestIsBusiness(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{platform.NotFound("x"), true},
		{platform.Conflict("out_of_stock", "x"), true},
		{platform.Errorf(429, "rate_limited", "x"), false},
		{platform.Errorf(408, "timeout", "x"), false},
		{platform.Errorf(503, "unavailable", "x"), false},
		{errors.New("connection refused"), false},
	} {
		if got := platform.IsBusiness(c.err); got != c.want {
			t.Errorf("IsBusiness(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// newService serves api behind the platform middleware on a test server.
func newService(t *testing.T, api http.Handler) *httptest.Server {
	t.Helper()
	s := &platform.Service{Name: "test", API: api, Registry: platform.NewRegistry(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestRequestIDAndDeadlinePropagateAcrossAHop(t *testing.T) {
	type seen struct {
		id       string
		deadline time.Duration
	}
	got := make(chan seen, 1)
	callee := newService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dl, ok := r.Context().Deadline()
		if !ok {
			t.Error("callee has no deadline")
		}
		got <- seen{platform.RequestID(r.Context()), time.Until(dl)}
		w.WriteHeader(204)
	}))
	client := platform.NewHTTPClient()
	caller := newService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", callee.URL+"/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			platform.EncodeError(r.Context(), err, w)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	req, _ := http.NewRequest("GET", caller.URL+"/y", nil)
	req.Header.Set(platform.HeaderRequestID, "req-42")
	req.Header.Set(platform.HeaderDeadline, "800")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get(platform.HeaderRequestID) != "req-42" {
		t.Fatalf("status %d, request id %q", resp.StatusCode, resp.Header.Get(platform.HeaderRequestID))
	}
	s := <-got
	if s.id != "req-42" {
		t.Errorf("callee saw request id %q", s.id)
	}
	if s.deadline <= 0 || s.deadline > 800*time.Millisecond {
		t.Errorf("callee's remaining budget %v, want within (0, 800ms]", s.deadline)
	}
}

func TestBadDeadlineHeaderIs400AndSpentBudgetIs504(t *testing.T) {
	srv := newService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	for value, want := range map[string]int{"abc": 400, "-5": 400, "0": 504, "50": 204, "86400000": 204, "86400001": 400, "9223372036855": 400} {
		req, _ := http.NewRequest("GET", srv.URL+"/z", nil)
		req.Header.Set(platform.HeaderDeadline, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s=%s: status %d, want %d", platform.HeaderDeadline, value, resp.StatusCode, want)
		}
	}
}

func TestUnmatchedRoutesAnswerJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	srv := newService(t, platform.JSONMux(mux))
	for _, c := range []struct {
		method, path string
		status       int
	}{{"GET", "/things/1", 204}, {"DELETE", "/things/1", 405}, {"GET", "/nope", 404}} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		if c.status >= 400 && !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s %s: body %q is not the JSON error shape", c.method, c.path, body)
		}
	}
}

func TestPanicBecomesJSON500(t *testing.T) {
	srv := newService(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	resp, err := http.Get(srv.URL + "/p")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 500 || !strings.Contains(string(body), `"internal"`) {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestEnvCollectsEveryBadValue(t *testing.T) {
	env := platform.EnvFrom(map[string]string{"N": "x", "D": "soon", "B": "maybe", "L": "loud", "OK": "7"})
	if env.Int("OK", 1) != 7 || env.String("MISSING", "def") != "def" {
		t.Fatal("defaults or values wrong")
	}
	env.Int("N", 1)
	env.Duration("D", time.Second)
	env.Bool("B", false)
	env.LogLevel("L", slog.LevelInfo)
	err := env.Err()
	for _, key := range []string{"N=", "D=", "B=", "L="} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

func TestMetricsCountByRoute(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	srv := newService(t, mux)
	for i := range 3 {
		resp, err := http.Get(srv.URL + "/items/" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `http_server_requests_total{code="200",method="GET",route="GET /items/{id}",service="test"} 3`
	if !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s", want)
	}
}
