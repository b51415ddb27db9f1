package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/resilience-lab/lab/services/platform"
)

// testBroker is a broker served in-process on 127.0.0.1 by httptest, over a temp-dir database.
type testBroker struct {
	URL    string
	DB     string
	svc    *platform.Service
	server *httptest.Server
	closer io.Closer
}

func startBroker(t *testing.T, cfg Config) *testBroker {
	t.Helper()
	if cfg.DB == "" {
		cfg.DB = filepath.Join(t.TempDir(), "broker.db")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, closer, err := Open(context.Background(), cfg, logger, platform.NewRegistry())
	if err != nil {
		t.Fatalf("open broker: %v", err)
	}
	srv := httptest.NewServer(svc.Handler())
	b := &testBroker{URL: srv.URL, DB: cfg.DB, svc: svc, server: srv, closer: closer}
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) stop() {
	b.server.Close()
	_ = b.closer.Close()
}

// call sends method path with body (JSON-encoded unless it is a string or nil) and decodes a JSON
// answer into a map; it returns the status and the decoded body.
func (b *testBroker) call(t *testing.T, method, path string, body any, header ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(v))
	default:
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, b.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: answer is not JSON (%d): %s", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, out
}

// must calls and fails the test unless the answer has status want.
func (b *testBroker) must(t *testing.T, want int, method, path string, body any, header ...string) map[string]any {
	t.Helper()
	status, out := b.call(t, method, path, body, header...)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %v", method, path, status, want, out)
	}
	return out
}

// samplePact returns the pact JSON between consumer and provider with one interaction whose product
// name is name (so different names make different pact contents).
func samplePact(consumer, provider, name string) []byte {
	return []byte(`{"consumer":{"name":"` + consumer + `"},"provider":{"name":"` + provider + `"},
		"interactions":[{"description":"a request for product p-mug","providerStates":[{"name":"product p-mug exists"}],
		"request":{"method":"GET","path":"/products/p-mug"},
		"response":{"status":200,"headers":{"Content-Type":"application/json"},"body":{"id":"p-mug","name":"` + name + `"}}}],
		"metadata":{"pactSpecification":{"version":"3.0.0"}}}`)
}

func publishBody(consumer, version, branch string, tags []string, provider string, pact []byte) map[string]any {
	body := map[string]any{
		"pacticipantName": consumer, "pacticipantVersionNumber": version,
		"contracts": []map[string]any{{"consumerName": consumer, "providerName": provider, "specification": "pact",
			"contentType": "application/json", "content": base64.StdEncoding.EncodeToString(pact)}},
	}
	if branch != "" {
		body["branch"] = branch
	}
	if tags != nil {
		body["tags"] = tags
	}
	return body
}

// dig walks a decoded JSON document by keys (strings) and indexes (ints).
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("dig %v: %v is not an object", path, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("dig %v: %v has no index %d", path, v, k)
			}
			v = a[k]
		}
	}
	return v
}

// repoRoot finds the module root (the directory holding go.mod) above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// pactTool returns the path of a file provisioned by scripts/pact-tools.sh (relative to .cache/pact).
// When it is missing the test fails under CI=true and is skipped otherwise, saying how to provision it.
func pactTool(t *testing.T, rel string) string {
	t.Helper()
	path := filepath.Join(repoRoot(t), ".cache", "pact", rel)
	if _, err := os.Stat(path); err != nil {
		msg := path + " is missing: run `bash scripts/pact-tools.sh` (or `make pact-tools`) to provision the Pact tools"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}
