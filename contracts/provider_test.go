//go:build pact

package contracts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pact-foundation/pact-go/v2/message"
	"github.com/pact-foundation/pact-go/v2/models"
	"github.com/pact-foundation/pact-go/v2/provider"

	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
	ordersclient "github.com/resilience-lab/lab/services/orders/client"
	paymentsclient "github.com/resilience-lab/lab/services/payments/client"
	"github.com/resilience-lab/lab/services/platform"
)

// instance is one running copy of a provider, on its own fresh temp-dir databases.
type instance struct {
	api   http.Handler // the provider's HTTP handler (platform.Service.Handler) under verification
	close func()
	// clients reach the instance's services through their own APIs, so state handlers seed real data.
	clients
	// events is the URL of the instance's own NATS JetStream broker, which its outbox relay publishes
	// to (orders, for its message pact); failCommits makes its catalog fail every commit.
	events      string
	failCommits *atomic.Bool
}

// clients are the typed clients of the services an instance runs (nil for those it does not run).
type clients struct {
	catalog  *catalogclient.Client
	payments *paymentsclient.Client
	orders   *ordersclient.Client
}

// stateFunc makes a provider state true on in and returns the values the pact may inject
// (fromProviderState); params are the state's parameters from the pact.
type stateFunc func(ctx context.Context, in *instance, params map[string]any) (map[string]any, error)

// liveProvider serves the current instance of a provider on one URL and replaces the instance with a
// fresh one after every interaction, so no interaction sees data another one left behind.
type liveProvider struct {
	t      *testing.T
	start  startFunc
	states map[string]stateFunc
	// wrap, when set, changes the provider's answers (negative tests: a provider that breaks a contract).
	wrap func(http.Handler) http.Handler
	// messages produce the messages of message pacts, by description (set before verifying).
	messages message.Handlers

	mu      sync.Mutex
	current *instance
	stale   bool // an interaction ended: the next setup starts a fresh instance

	api     *httptest.Server // what the verifier calls
	setup   *httptest.Server // the provider-state endpoint the verifier posts setup and teardown to
	message *httptest.Server // the message endpoint the verifier asks for each message of a message pact
}

// startFunc starts a fresh instance of a provider; t gives it temp dirs and test output.
type startFunc func(t *testing.T) (*instance, error)

// startProvider starts the provider behind its two test servers; everything stops when t ends.
func startProvider(t *testing.T, start startFunc, states map[string]stateFunc,
	wrap func(http.Handler) http.Handler) *liveProvider {
	t.Helper()
	p := &liveProvider{t: t, start: start, states: states, wrap: wrap}
	in, err := start(t)
	if err != nil {
		t.Fatal(err)
	}
	p.current = in
	p.api = httptest.NewServer(http.HandlerFunc(p.serveAPI))
	p.setup = httptest.NewServer(http.HandlerFunc(p.serveState))
	p.message = httptest.NewServer(http.HandlerFunc(p.serveMessage))
	t.Cleanup(func() {
		p.api.Close()
		p.setup.Close()
		p.message.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.current.close()
	})
	return p
}

func (p *liveProvider) instance() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

func (p *liveProvider) serveAPI(w http.ResponseWriter, r *http.Request) {
	h := p.instance().api
	if p.wrap != nil {
		h = p.wrap(h)
	}
	h.ServeHTTP(w, r)
}

// stateChange is what the verifier posts to the provider-state URL.
type stateChange struct {
	State  string         `json:"state"`
	Params map[string]any `json:"params"`
	Action string         `json:"action"` // setup or teardown
}

// serveState runs the handler of a state. pact-go's own StateHandlers only log a warning for a state
// they do not know, and the interaction then runs against whatever data is there; this endpoint answers
// 500 instead, which fails the interaction, so a consumer's new state cannot pass unnoticed.
func (p *liveProvider) serveState(w http.ResponseWriter, r *http.Request) {
	var sc stateChange
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&sc); err != nil {
		p.refuse(w, fmt.Sprintf("undecodable state change: %v", err))
		return
	}
	switch sc.Action {
	case "teardown":
		p.mu.Lock()
		p.stale = true
		p.mu.Unlock()
		platform.WriteJSON(w, http.StatusOK, map[string]any{})
		return
	case "setup":
	default:
		p.refuse(w, fmt.Sprintf("state change %q: unknown action %q", sc.State, sc.Action))
		return
	}
	handler, ok := p.states[sc.State]
	if !ok {
		p.refuse(w, fmt.Sprintf("no state handler for provider state %q", sc.State))
		return
	}
	in, err := p.fresh()
	if err != nil {
		p.refuse(w, fmt.Sprintf("provider state %q: start a fresh provider: %v", sc.State, err))
		return
	}
	values, err := handler(r.Context(), in, sc.Params)
	if err != nil {
		p.refuse(w, fmt.Sprintf("provider state %q: %v", sc.State, err))
		return
	}
	if values == nil {
		values = map[string]any{}
	}
	platform.WriteJSON(w, http.StatusOK, values)
}

// fresh returns the instance the next interaction runs against, replacing it first when an interaction
// has ended since (several states of one interaction share one instance).
func (p *liveProvider) fresh() (*instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stale {
		in, err := p.start(p.t)
		if err != nil {
			return nil, err
		}
		p.current.close()
		p.current, p.stale = in, false
	}
	return p.current, nil
}

// messageRequest is what the verifier posts to the message endpoint.
type messageRequest struct {
	Description string                 `json:"description"`
	States      []models.ProviderState `json:"providerStates"`
}

// serveMessage answers the verifier's request for a message with what the handler of its description
// produces: the body as is, its metadata base64-encoded JSON in the Pact-Message-Metadata header, as
// pact-go's own message proxy does. That proxy answers a description without a handler 404 and a
// failing handler 503, and the verifier then only compares an empty message with the pact's (which an
// empty expected message would pass); this endpoint fails the test instead, saying why, as serveState
// does for states.
func (p *liveProvider) serveMessage(w http.ResponseWriter, r *http.Request) {
	var mr messageRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&mr); err != nil {
		p.refuse(w, fmt.Sprintf("undecodable message request: %v", err))
		return
	}
	handler, ok := p.messages[mr.Description]
	if !ok {
		p.refuse(w, fmt.Sprintf("no message handler for message %q", mr.Description))
		return
	}
	body, metadata, err := handler(mr.States)
	if err != nil {
		p.refuse(w, fmt.Sprintf("message %q: %v", mr.Description, err))
		return
	}
	raw, ok := body.([]byte)
	if !ok {
		if raw, err = json.Marshal(body); err != nil {
			p.refuse(w, fmt.Sprintf("message %q: encode the body: %v", mr.Description, err))
			return
		}
	}
	md, err := json.Marshal(metadata)
	if err != nil {
		p.refuse(w, fmt.Sprintf("message %q: encode the metadata: %v", mr.Description, err))
		return
	}
	contentType, _ := metadata["contentType"].(string)
	if contentType == "" {
		contentType = "application/json"
	}
	w.Header().Set("Pact-Message-Metadata", base64.StdEncoding.EncodeToString(md))
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(raw)
}

func (p *liveProvider) refuse(w http.ResponseWriter, msg string) {
	p.t.Errorf("%s", msg)
	platform.WriteJSON(w, http.StatusInternalServerError, map[string]any{"error": msg})
}

// verifyRequest is the verification of provider name against p: from contracts/pacts (fast path) or
// from the broker by consumer version selectors, publishing the results.
func (p *liveProvider) verifyRequest(t *testing.T, r run, name string) provider.VerifyRequest {
	req := p.baseRequest(name)
	if !r.fromBroker {
		req.PactFiles = localPacts(t, name)
		return req
	}
	req.BrokerURL = r.brokerURL
	req.BrokerToken = r.brokerToken
	req.ConsumerVersionSelectors = []provider.Selector{
		&provider.ConsumerVersionSelector{MainBranch: true},
		&provider.ConsumerVersionSelector{MatchingBranch: true},
		&provider.ConsumerVersionSelector{DeployedOrReleased: true},
	}
	req.ProviderVersion = r.providerVersion
	req.ProviderBranch = r.providerBranch
	req.PublishVerificationResults = r.publish
	return req
}

// baseRequest verifies provider name against p, with p's state endpoint, and its message endpoint
// when it has message handlers; the caller adds the pacts.
func (p *liveProvider) baseRequest(name string) provider.VerifyRequest {
	var transports []provider.Transport
	if p.messages != nil {
		transports = append(transports, provider.Transport{Protocol: "message", Scheme: "http", Path: "/",
			Port: uint16(p.message.Listener.Addr().(*net.TCPAddr).Port)})
	}
	return provider.VerifyRequest{
		Provider:               name,
		ProviderBaseURL:        p.api.URL,
		Transports:             transports,
		ProviderStatesSetupURL: p.setup.URL,
		FailIfNoPactsFound:     true,
		DisableColoredOutput:   true,
		// Per request and per state change; generous, so a loaded machine is not a failed contract.
		RequestTimeout: 30 * time.Second,
	}
}

// localPacts lists the pact files in contracts/pacts whose provider is name; none is an error, since
// the consumer tests (earlier in this package) write them.
func localPacts(t *testing.T, name string) []string {
	t.Helper()
	entries, err := os.ReadDir(pactDir(t))
	if err != nil {
		t.Fatalf("no pact files to verify (%v): the consumer tests write them; run go test -tags pact ./contracts/", err)
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), "-"+name+".json") {
			files = append(files, pactDir(t)+"/"+e.Name())
		}
	}
	if len(files) == 0 {
		t.Fatalf("no pact for provider %s in %s: the consumer tests write them", name, pactDir(t))
	}
	return files
}

// verify runs the verification of name against p; failures fail t.
func verify(t *testing.T, p *liveProvider, name string) {
	t.Helper()
	r := runFromEnv(t)
	if err := provider.NewVerifier().VerifyProvider(t, p.verifyRequest(t, r, name)); err != nil {
		t.Fatalf("verification of %s: %v", name, err)
	}
}

// testLogger writes a service's warnings and errors to the test's output.
func testLogger(t *testing.T, service string) *slog.Logger {
	return platform.NewLogger(t.Output(), service, slog.LevelWarn)
}

// intParam returns the integer parameter key of a state (JSON numbers arrive as float64), or def.
func intParam(params map[string]any, key string, def int64) (int64, error) {
	v, ok := params[key]
	if !ok {
		return def, nil
	}
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) {
		return 0, fmt.Errorf("parameter %q = %v: want an integer", key, v)
	}
	return int64(f), nil
}

// stringParam returns the string parameter key of a state.
func stringParam(params map[string]any, key string) (string, error) {
	v, ok := params[key].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("parameter %q is missing or not a string (params %v)", key, params)
	}
	return v, nil
}
