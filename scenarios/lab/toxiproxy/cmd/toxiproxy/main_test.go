package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestObserveRelaysOnlyTheObservationPaths(t *testing.T) {
	var gotAuth, gotQuery string
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotQuery = r.Header.Get("Authorization"), r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"path":"`+r.URL.Path+`"}`)
	}))
	defer service.Close()
	observed, err := parseObserve("catalog-1=" + service.URL + ", registry=" + service.URL)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /observe/{service}/{path...}", observeHandler(observed))
	relay := httptest.NewServer(mux)
	defer relay.Close()

	get := func(path, auth string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, relay.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s: undecodable answer: %v", path, err)
		}
		return resp.StatusCode, body
	}
	for _, path := range []string{"metrics", "debug/resilience", "debug/discovery", "readyz"} {
		if code, body := get("/observe/catalog-1/"+path, ""); code != 200 || body["path"] != "/"+path {
			t.Errorf("%s: %d %v, want the service's answer", path, code, body)
		}
	}
	if code, body := get("/observe/registry/health", ""); code != 200 || body["path"] != "/health" {
		t.Errorf("registry health: %d %v", code, body)
	}
	if code, _ := get("/observe/catalog-1/notifications?customer_id=c-1", "Bearer t0ken"); code != 200 || gotAuth != "Bearer t0ken" || gotQuery != "customer_id=c-1" {
		t.Errorf("notifications: %d, forwarded auth %q query %q", code, gotAuth, gotQuery)
	}
	for _, path := range []string{"/observe/catalog-1/products", "/observe/catalog-1/debug/pprof", "/observe/stranger/metrics"} {
		code, body := get(path, "")
		errBody, _ := body["error"].(map[string]any)
		if code != http.StatusNotFound || errBody["code"] == nil {
			t.Errorf("%s: %d %v, want a 404 in the shop's error shape", path, code, body)
		}
	}
}

func TestParseObserveRejectsBadPairs(t *testing.T) {
	for _, bad := range []string{"catalog", "=http://catalog:8081", "catalog=ftp://x", "catalog=not a url"} {
		if _, err := parseObserve(bad); err == nil {
			t.Errorf("parseObserve(%q) accepted", bad)
		}
	}
}
