//go:build pact

package contracts

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pact-foundation/pact-go/v2/message"
	"github.com/pact-foundation/pact-go/v2/models"
	"github.com/pact-foundation/pact-go/v2/provider"
)

// A verification that must fail cannot run in the test that expects the failure, because pact-go fails
// the *testing.T it verifies with. So each negative test re-runs the test binary for itself alone as a
// child (envChild names the test), and asserts on the child's exit status and output.
const (
	envChild = "CONTRACTS_NEGATIVE_CHILD"
	// failedMarker is logged by a child whose verification the verifier itself failed, so the parent can
	// tell that apart from any other failure of the child.
	failedMarker = "NEGATIVE-TEST: the verifier failed the verification: "
	// brokenSuffix and brokenBranch name the provider version a broken provider's results are published
	// under (broker runs), so that can-i-deploy can be asked about it and nothing real is affected.
	brokenSuffix = "-broken"
	brokenBranch = "contracts-negative-test"
)

// TestBrokenProviderFailsVerification verifies a catalog whose answers call price_cents "price" (a
// rename that breaks the gateway, which shows prices, but not orders, which does not read them): the
// verification must fail and say why. From a broker (CONTRACTS_SOURCE=broker), the child publishes its
// failed results as version <CONTRACTS_PROVIDER_VERSION>-broken, and scripts/pact-flow.sh then checks
// that can-i-deploy refuses that version.
func TestBrokenProviderFailsVerification(t *testing.T) {
	if os.Getenv(envChild) == t.Name() {
		r := runFromEnv(t)
		r.providerVersion += brokenSuffix
		r.providerBranch = brokenBranch
		p := startProvider(t, startCatalog, catalogStates(), renamingField("price_cents", "price"))
		verifyExpectingFailure(t, p.verifyRequest(t, r, catalogName))
		return
	}
	out := runChildExpectingFailure(t)
	if !strings.Contains(out, "Verifying a pact between gateway and catalog Given") || !strings.Contains(out, "price_cents") {
		t.Errorf("the failures do not name the gateway's pact and price_cents:\n%s", out)
	}
	if strings.Contains(out, "Verifying a pact between orders and catalog Given") {
		t.Errorf("the orders pact failed too, but orders does not read prices:\n%s", out)
	}
}

// TestUnknownStateFailsVerification verifies a pact whose interaction names a provider state the
// catalog has no handler for: the interaction must fail instead of running against whatever data is there.
func TestUnknownStateFailsVerification(t *testing.T) {
	const state = "a state no handler knows"
	if os.Getenv(envChild) == t.Name() {
		file := filepath.Join(t.TempDir(), "selftest-catalog.json")
		pact := `{
  "consumer": {"name": "contracts-selftest"},
  "provider": {"name": "catalog"},
  "interactions": [{
    "description": "a request in a state the provider does not know",
    "providerStates": [{"name": "` + state + `"}],
    "request": {"method": "GET", "path": "/products"},
    "response": {"status": 200}
  }],
  "metadata": {"pactSpecification": {"version": "3.0.0"}}
}`
		if err := os.WriteFile(file, []byte(pact), 0o644); err != nil {
			t.Fatal(err)
		}
		p := startProvider(t, startCatalog, catalogStates(), nil)
		req := p.baseRequest(catalogName)
		req.PactFiles = []string{file}
		verifyExpectingFailure(t, req)
		return
	}
	out := runChildExpectingFailure(t)
	for _, want := range []string{
		`no state handler for provider state "` + state + `"`,       // the state endpoint's refusal
		"One or more of the setup state change handlers has failed", // the verifier's verdict on it
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the failed verification's output does not say %q:\n%s", want, out)
		}
	}
}

// TestBrokenEventProducerFailsVerification verifies an orders service whose events call total_cents
// "total" (a rename of the OrderConfirmed payload that compiles, and passes orders' own tests once they
// are updated with it, yet breaks notifications, which tells the customer the amount): the
// notifications pact must fail on that message and field, while the gateway's HTTP pact, which reads
// total_cents from the orders API, not from events, must still pass. From a broker, the child
// publishes its results as orders version <CONTRACTS_PROVIDER_VERSION>-broken, as the catalog test does.
func TestBrokenEventProducerFailsVerification(t *testing.T) {
	if os.Getenv(envChild) == t.Name() {
		r := runFromEnv(t)
		r.providerVersion += brokenSuffix
		r.providerBranch = brokenBranch
		p := startProvider(t, startOrders, ordersStates(), nil)
		p.messages = renamingEventField(orderEventMessages(p), "total_cents", "total")
		verifyExpectingFailure(t, p.verifyRequest(t, r, ordersName))
		return
	}
	out := runChildExpectingFailure(t)
	failures := out
	if i := strings.Index(out, "Failures:"); i >= 0 {
		failures = out[i:]
	}
	if !strings.Contains(failures, "Verifying a pact between notifications and orders Given an order was confirmed") ||
		!strings.Contains(failures, "total_cents") {
		t.Errorf("the failures do not name the OrderConfirmed message of the notifications pact and total_cents:\n%s", out)
	}
	for _, other := range []string{"an order was placed", "an order was rejected", "an order was cancelled"} {
		if strings.Contains(failures, "Verifying a pact between notifications and orders Given "+other) {
			t.Errorf("the message of %q failed too, but it has no total_cents:\n%s", other, out)
		}
	}
	if strings.Contains(failures, "Verifying a pact between gateway and orders") {
		t.Errorf("the gateway's pact failed too, but the rename is in the events only:\n%s", out)
	}
}

// TestUnknownMessageFailsVerification verifies a message pact whose message orders has no handler for:
// the interaction must fail, not pass or be skipped.
func TestUnknownMessageFailsVerification(t *testing.T) {
	const description = "a message no handler knows"
	if os.Getenv(envChild) == t.Name() {
		file := filepath.Join(t.TempDir(), "selftest-orders.json")
		pact := `{
  "consumer": {"name": "contracts-selftest"},
  "provider": {"name": "orders"},
  "interactions": [{
    "type": "Asynchronous/Messages",
    "description": "` + description + `",
    "providerStates": [{"name": "` + stateOrderPlaced + `"}],
    "contents": {"content": {"id": "e-1"}, "contentType": "application/json", "encoded": false},
    "metadata": {"subject": "orders.placed"}
  }],
  "metadata": {"pactSpecification": {"version": "4.0"}}
}`
		if err := os.WriteFile(file, []byte(pact), 0o644); err != nil {
			t.Fatal(err)
		}
		p := startProvider(t, startOrders, ordersStates(), nil)
		p.messages = orderEventMessages(p)
		req := p.baseRequest(ordersName)
		req.PactFiles = []string{file}
		verifyExpectingFailure(t, req)
		return
	}
	out := runChildExpectingFailure(t)
	for _, want := range []string{
		`no message handler for message "` + description + `"`,                             // the message endpoint's refusal
		"Verifying a pact between contracts-selftest and orders Given " + stateOrderPlaced, // the verifier's verdict
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the failed verification's output does not say %q:\n%s", want, out)
		}
	}
}

// renamingEventField wraps message handlers so that every event they produce calls the field from
// "to", as renamingField does to HTTP answers.
func renamingEventField(hs message.Handlers, from, to string) message.Handlers {
	out := message.Handlers{}
	for desc, h := range hs {
		out[desc] = func(states []models.ProviderState) (message.Body, message.Metadata, error) {
			body, md, err := h(states)
			if raw, ok := body.([]byte); ok {
				body = bytes.ReplaceAll(raw, []byte(`"`+from+`":`), []byte(`"`+to+`":`))
			}
			return body, md, err
		}
	}
	return out
}

// verifyExpectingFailure runs a verification in a child and logs failedMarker when the verifier fails
// it (the child then fails, as it should).
func verifyExpectingFailure(t *testing.T, req provider.VerifyRequest) {
	if err := provider.NewVerifier().VerifyProvider(t, req); err != nil {
		t.Log(failedMarker + err.Error())
	}
}

// runChildExpectingFailure runs t's test alone in a child test binary and returns its output, failing t
// unless the child failed because its verifier did.
func runChildExpectingFailure(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"="+t.Name())
	output, err := cmd.CombinedOutput()
	out := string(output)
	var exit *exec.ExitError
	switch {
	case err == nil:
		t.Fatalf("the verification passed; it must fail:\n%s", out)
	case !errors.As(err, &exit):
		t.Fatalf("run the child test: %v", err)
	case !strings.Contains(out, failedMarker):
		t.Fatalf("the child failed, but not in the verifier:\n%s", out)
	}
	if i := strings.Index(out, "Failures:"); i >= 0 {
		summary, _, _ := strings.Cut(out[i:], "=== RUN")
		t.Logf("the verification failed, as it must:\n%s", strings.TrimSpace(summary))
	}
	return out
}

// renamingField wraps a provider so that every JSON answer calls the field from "to": the kind of
// refactoring that compiles and passes the provider's own tests (once they are updated with it) yet
// breaks every consumer that reads the field.
func renamingField(from, to string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := bytes.ReplaceAll(rec.Body.Bytes(), []byte(`"`+from+`":`), []byte(`"`+to+`":`))
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}
