//go:build pact

// This test links pact-go, which needs cgo and libpact_ffi 0.4.28 (provisioned by scripts/pact-tools.sh):
//
//	CGO_LDFLAGS=-L$PWD/.cache/pact/lib LD_LIBRARY_PATH=$PWD/.cache/pact/lib go test -tags pact ./contracts/broker/

package broker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pact-foundation/pact-go/v2/models"
	"github.com/pact-foundation/pact-go/v2/provider"
)

func TestPactGoVerifierAgainstTheBroker(t *testing.T) {
	pactTool(t, "lib/libpact_ffi.so")
	// The verifier reports usage statistics to the internet unless told not to; tests stay on loopback.
	t.Setenv("PACT_DO_NOT_TRACK", "true")
	const token = "verifier-t0ken"
	auth := []string{"Authorization", "Bearer " + token}
	b := startBroker(t, Config{Auth: Auth{Token: token}})

	// shop-web 1.0.0 on main holds the pact the provider honours; 1.1.0 on a feature branch holds one it
	// breaks. Verifying by {mainBranch: true} must pick only the first.
	mainPact, err := os.ReadFile(filepath.Join("testdata", "shop-web-catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1.0.0", "main", nil, "catalog", mainPact), auth...)
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1.1.0", "feat-tea", nil, "catalog",
		samplePact("shop-web", "catalog", "Tea cup")), auth...)

	catalog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/products/p-mug" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "p-mug", "name": "Ceramic mug", "price_cents": 1450})
	}))
	defer catalog.Close()

	// The state handler runs on pact-go's proxy goroutine and the verifier syncs with it through the FFI,
	// which the race detector cannot see: count atomically.
	var states atomic.Int32
	err = provider.NewVerifier().VerifyProvider(t, provider.VerifyRequest{
		ProviderBaseURL:            catalog.URL,
		Provider:                   "catalog",
		BrokerURL:                  b.URL,
		BrokerToken:                token,
		ConsumerVersionSelectors:   []provider.Selector{&provider.ConsumerVersionSelector{MainBranch: true}},
		PublishVerificationResults: true,
		ProviderVersion:            "3.1.0",
		ProviderBranch:             "main",
		FailIfNoPactsFound:         true,
		DisableColoredOutput:       true,
		StateHandlers: models.StateHandlers{
			"product p-mug exists": func(setup bool, _ models.ProviderState) (models.ProviderStateResponse, error) {
				if setup {
					states.Add(1)
				}
				return nil, nil
			},
		},
	})
	if err != nil {
		t.Fatalf("verification: %v", err)
	}
	if n := states.Load(); n != 1 {
		t.Errorf("the provider state was set up %d times, want 1 (only the main-branch pact)", n)
	}

	// The verifier only logs a failed publication, so check that the result really arrived: the
	// provider version with its branch, and a successful result for exactly the main-branch pact.
	v := b.must(t, 200, "GET", "/pacticipants/catalog/versions/3.1.0", nil, auth...)
	if v["branch"] != "main" {
		t.Errorf("provider version = %v, want it on branch main (PUT by the verifier)", v)
	}
	mainSha := dig(t, b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/version/1.0.0", nil, auth...), "_links", "pb:pact-version", "name").(string)
	res := b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/pact-version/"+mainSha+"/verification-results/latest", nil, auth...)
	if res["success"] != true || res["providerApplicationVersion"] != "3.1.0" || !strings.HasPrefix(dig(t, res, "verifiedBy", "implementation").(string), "Pact-Rust") {
		t.Errorf("verification result = %v", res)
	}
	featSha := dig(t, b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/version/1.1.0", nil, auth...), "_links", "pb:pact-version", "name").(string)
	if status, _ := b.call(t, "GET", "/pacts/provider/catalog/consumer/shop-web/pact-version/"+featSha+"/verification-results/latest", nil, auth...); status != 404 {
		t.Errorf("the feature-branch pact has a verification result (status %d): the selector picked it", status)
	}

	// And the official CLI draws the conclusions: the main-branch version may be deployed, the feature one not.
	cli := pactCLI{t: t, path: pactTool(t, "cli/pact"), url: b.URL, token: token}
	cli.must(0, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.0.0")
	cli.must(1, "can-i-deploy", "--pacticipant", "shop-web", "--version", "1.1.0")
}
