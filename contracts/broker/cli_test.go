package broker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pactCLI runs the official `pact` CLI (provisioned by scripts/pact-tools.sh) against a broker.
type pactCLI struct {
	t     *testing.T
	path  string
	url   string
	token string
}

// run executes `pact broker <args> -b URL [-k TOKEN]` and returns its output and exit code.
func (c pactCLI) run(args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"broker"}, args...)
	full = append(full, "--broker-base-url", c.url)
	if c.token != "" {
		full = append(full, "--broker-token", c.token)
	}
	cmd := exec.CommandContext(ctx, c.path, full...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PACT_BROKER_") {
			env = append(env, kv)
		}
	}
	// One retry at most: a 5xx from this broker is a bug to see at once, not after minutes of back-off.
	cmd.Env = append(env, "PACT_BROKER_HTTP_RETRIES=1", "NO_COLOR=1", "PACT_DO_NOT_TRACK=true")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	c.t.Fatalf("pact %s: %v\n%s", strings.Join(full, " "), err, out)
	return "", -1
}

// must runs the CLI and fails the test unless it exits with want (0, or non-zero when want is 1).
func (c pactCLI) must(want int, args ...string) string {
	c.t.Helper()
	out, code := c.run(args...)
	if (code == 0) != (want == 0) {
		c.t.Fatalf("pact broker %s: exit %d, want %s\n%s", strings.Join(args, " "), code, map[bool]string{true: "0", false: "non-zero"}[want == 0], out)
	}
	return out
}

func TestPactCLIAgainstTheBroker(t *testing.T) {
	cli := pactCLI{t: t, path: pactTool(t, "cli/pact"), token: "cli-t0ken"}
	b := startBroker(t, Config{Auth: Auth{Token: cli.token}})
	cli.url = b.URL
	pactFile := filepath.Join("testdata", "shop-web-catalog.json")

	// Publish with a consumer version, a branch and tags.
	out := cli.must(0, "publish", pactFile, "--consumer-app-version", "1.0.0", "--branch", "main", "--tag", "dev,prod")
	if !strings.Contains(out, "Created shop-web version 1.0.0 with branch main and tag dev and tag prod") ||
		strings.Contains(out, "Failed to process response notices") {
		t.Errorf("publish output:\n%s", out)
	}
	v := b.must(t, 200, "GET", "/pacticipants/shop-web/versions/1.0.0", nil, "Authorization", "Bearer "+cli.token)
	if v["branch"] != "main" || len(dig(t, v, "_embedded", "tags").([]any)) != 2 {
		t.Errorf("published version = %v", v)
	}
	// Publishing again is idempotent; different content for the same version is refused.
	cli.must(0, "publish", pactFile, "--consumer-app-version", "1.0.0", "--branch", "main")
	changed := filepath.Join(t.TempDir(), "changed.json")
	data, err := os.ReadFile(pactFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, []byte(strings.Replace(string(data), "Ceramic mug", "Tea cup", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cli.must(1, "publish", changed, "--consumer-app-version", "1.0.0"); !strings.Contains(out, "already published with different content") {
		t.Errorf("conflicting publish output:\n%s", out)
	}

	out = cli.must(0, "create-environment", "--name", "production", "--display-name", "Production", "--production")
	if !strings.Contains(out, "Created production environment") {
		t.Errorf("create-environment output:\n%s", out)
	}
	if out := cli.must(0, "list-environments"); !strings.Contains(out, "production") || !strings.Contains(out, "Production") {
		t.Errorf("list-environments output:\n%s", out)
	}

	// No verification yet: can-i-deploy says no.
	out = cli.must(1, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0")
	if !strings.Contains(out, "Computer says no") || !strings.Contains(out, "There is no verified pact") {
		t.Errorf("can-i-deploy without verification:\n%s", out)
	}

	// A successful verification by catalog 1.0.0 (published the way the verifier does): yes.
	pact := b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/latest", nil, "Authorization", "Bearer "+cli.token)
	results := strings.TrimPrefix(dig(t, pact, "_links", "pb:publish-verification-results", "href").(string), b.URL)
	verify := func(providerVersion string, success bool) {
		t.Helper()
		b.must(t, 201, "POST", results, map[string]any{"providerApplicationVersion": providerVersion, "success": success,
			"testResults": []any{map[string]any{"interactionId": "1", "success": success}},
			"verifiedBy":  map[string]any{"implementation": "Pact-Rust", "version": "1.0.0"}}, "Authorization", "Bearer "+cli.token)
	}
	verify("1.0.0", true)
	if out := cli.must(0, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0"); !strings.Contains(out, "Computer says yes") {
		t.Errorf("can-i-deploy after a successful verification:\n%s", out)
	}

	// A failed verification by the newer catalog 2.0.0: the latest provider version fails it, so no.
	verify("2.0.0", false)
	if out := cli.must(1, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0"); !strings.Contains(out, "failed") {
		t.Errorf("can-i-deploy after a failed verification:\n%s", out)
	}
	// -o json exits 0 whatever the answer; the answer is in the body.
	out = cli.must(0, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0", "--output", "json")
	var m struct {
		Summary struct {
			Deployable *bool `json:"deployable"`
		} `json:"summary"`
		Matrix []json.RawMessage `json:"matrix"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil || m.Summary.Deployable == nil || *m.Summary.Deployable || len(m.Matrix) != 1 {
		t.Errorf("can-i-deploy -o json: %v\n%s", err, out)
	}

	// Deployments: with catalog 1.0.0 in production, shop-web 1.0.0 may go there.
	out = cli.must(0, "record-deployment", "--pacticipant", "catalog", "--version", "1.0.0", "--environment", "production")
	if !strings.Contains(out, "Recorded deployment of catalog version 1.0.0 to production") {
		t.Errorf("record-deployment output:\n%s", out)
	}
	if out := cli.must(0, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0", "--to-environment", "production"); !strings.Contains(out, "Computer says yes") {
		t.Errorf("can-i-deploy --to-environment with a verified provider there:\n%s", out)
	}
	// The failed catalog 2.0.0 may not join shop-web 1.0.0 once that is in production.
	cli.must(0, "record-deployment", "--pacticipant", "shop-web", "--version", "1.0.0", "--environment", "production")
	cli.must(1, "can-i-deploy", "--pacticipant", "catalog", "--version", "2.0.0", "--to-environment", "production")
	cli.must(0, "can-i-deploy", "--pacticipant", "catalog", "--version", "1.0.0", "--to-environment", "production")
	// Once catalog 2.0.0 is deployed anyway, shop-web 1.0.0 is no longer safe to (re)deploy there.
	cli.must(0, "record-deployment", "--pacticipant", "catalog", "--version", "2.0.0", "--environment", "production")
	cli.must(1, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0", "--to-environment", "production")
	// Unknown environments are reported, not treated as empty.
	if out := cli.must(1, "record-deployment", "--pacticipant", "catalog", "--version", "1.0.0", "--environment", "mars"); !strings.Contains(out, "mars does not exist") {
		t.Errorf("record-deployment to an unknown environment:\n%s", out)
	}

	// Without the token the CLI is refused.
	anon := cli
	anon.token = ""
	if out, code := anon.run("list-environments"); code == 0 || !strings.Contains(out, "needs an Authorization header") {
		t.Errorf("list-environments without a token: exit %d\n%s", code, out)
	}
}
