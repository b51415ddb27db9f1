//go:build pact

package contracts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pact-foundation/pact-go/v2/consumer"
	pactlog "github.com/pact-foundation/pact-go/v2/log"
	"github.com/pact-foundation/pact-go/v2/matchers"

	"github.com/resilience-lab/lab/services/platform"
)

// Pacticipant names: the service names, so the pact of a link is <caller>-<callee>.json.
const (
	gatewayName  = "gateway"
	ordersName   = "orders"
	catalogName  = "catalog"
	paymentsName = "payments"
	// notificationsName consumes the order events (message pact notifications-orders).
	notificationsName = "notifications"
)

// Environment variables of a run (scripts/pact-flow.sh sets them for the broker steps).
const (
	// envSource selects where provider tests get pacts: "files" (default, contracts/pacts) or "broker".
	envSource = "CONTRACTS_SOURCE"
	// envProviderVersion and envProviderBranch name the provider version whose results are published
	// (broker source only; the flow passes the git sha and branch).
	envProviderVersion = "CONTRACTS_PROVIDER_VERSION"
	envProviderBranch  = "CONTRACTS_PROVIDER_BRANCH"
	// envPublish=false verifies from the broker without publishing results (default true).
	envPublish = "CONTRACTS_PUBLISH_RESULTS"
	// The broker itself, as the pact CLI names it.
	envBrokerURL   = "PACT_BROKER_BASE_URL"
	envBrokerToken = "PACT_BROKER_TOKEN"
)

// TestMain keeps the Pact libraries on loopback (they send anonymous usage events to the internet unless
// PACT_DO_NOT_TRACK is set) and quiet: warnings and errors only, unless PACT_LOG_LEVEL asks for more. The
// verifier's summary of each pact is printed whatever the level.
func TestMain(m *testing.M) {
	os.Setenv("PACT_DO_NOT_TRACK", "true")
	if os.Getenv("PACT_LOG_LEVEL") == "" {
		if err := pactlog.SetLogLevel("WARN"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// run says where provider tests take pacts from and what they publish.
type run struct {
	fromBroker      bool
	brokerURL       string
	brokerToken     string
	providerVersion string
	providerBranch  string
	publish         bool
}

// runFromEnv reads the run settings; a broker run without its broker or version fails the test instead
// of quietly verifying local files.
func runFromEnv(t *testing.T) run {
	t.Helper()
	r := run{providerBranch: "main", publish: true}
	switch src := os.Getenv(envSource); src {
	case "", "files":
		return r
	case "broker":
		r.fromBroker = true
	default:
		t.Fatalf("%s=%q: want files or broker", envSource, src)
	}
	r.brokerURL = os.Getenv(envBrokerURL)
	r.brokerToken = os.Getenv(envBrokerToken)
	r.providerVersion = os.Getenv(envProviderVersion)
	if b := os.Getenv(envProviderBranch); b != "" {
		r.providerBranch = b
	}
	if p := os.Getenv(envPublish); p != "" {
		v, err := strconv.ParseBool(p)
		if err != nil {
			t.Fatalf("%s=%q: want true or false", envPublish, p)
		}
		r.publish = v
	}
	if r.brokerURL == "" || r.providerVersion == "" {
		t.Fatalf("%s=broker needs %s and %s", envSource, envBrokerURL, envProviderVersion)
	}
	return r
}

// pactDir is where consumer tests write the pact files and the fast path verifies them from (gitignored).
func pactDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd() // go test runs in the package directory, contracts/
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "pacts")
}

// pactFile is the pact of the link consumer-provider.
func pactFile(t *testing.T, consumerName, providerName string) string {
	return filepath.Join(pactDir(t), consumerName+"-"+providerName+".json")
}

// newPact starts the contract of one link. The FFI merges interactions into an existing pact file, so
// the link's file from an earlier run is removed first: the file holds exactly this run's interactions.
func newPact(t *testing.T, consumerName, providerName string) *consumer.V3HTTPMockProvider {
	t.Helper()
	if err := os.Remove(pactFile(t, consumerName, providerName)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	p, err := consumer.NewV3Pact(consumer.MockHTTPProviderConfig{
		Consumer: consumerName,
		Provider: providerName,
		PactDir:  pactDir(t),
		LogDir:   t.TempDir(),
		Host:     "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mockURL is the base URL of the mock server of one interaction.
func mockURL(cfg consumer.MockServerConfig) string {
	return fmt.Sprintf("http://%s:%d", cfg.Host, cfg.Port)
}

// callContext bounds a consumer call: the mock server answers at once, so this only stops a hang.
func callContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Matchers shared by the consumer tests.
var (
	// rfc3339 matches the times the services write: RFC 3339 in UTC, with or without fractions.
	rfc3339 = `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`
	// jsonContentType is what every answer of the shop carries.
	jsonContentType = matchers.Regex("application/json", `^application/json(;.*)?$`)
)

// timestamp matches an RFC 3339 UTC time.
func timestamp() matchers.Matcher { return matchers.Regex("2026-01-02T15:04:05Z", rfc3339) }

// apiError is the shop's error body with a fixed code (consumers branch on codes) and any message.
func apiError(code string) map[string]any {
	return map[string]any{"error": map[string]any{
		"code":    code,
		"message": matchers.Like("what went wrong"),
	}}
}

// expectAPIError checks that a typed client returned the shop's error with status and code.
func expectAPIError(err error, status int, code string) error {
	e, ok := platform.AsError(err)
	if !ok {
		return fmt.Errorf("got error %v, want a %d %s answer", err, status, code)
	}
	if e.Status != status || e.Code != code || e.Message == "" {
		return fmt.Errorf("got %d %s %q, want %d %s with a message", e.Status, e.Code, e.Message, status, code)
	}
	return nil
}

// jsonBody sets a JSON response body with the shop's content type.
func jsonBody(body any) consumer.V3ResponseBuilderFunc {
	return func(b *consumer.V3ResponseBuilder) {
		b.Header("Content-Type", jsonContentType).JSONBody(body)
	}
}

// jsonRequest sets a JSON request body, as the typed clients send it.
func jsonRequest(body any) consumer.V3RequestBuilderFunc {
	return func(b *consumer.V3RequestBuilder) {
		b.Header("Content-Type", matchers.S("application/json")).JSONBody(body)
	}
}
