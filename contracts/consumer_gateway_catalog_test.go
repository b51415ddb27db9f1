//go:build pact

package contracts

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/pact-foundation/pact-go/v2/consumer"
	"github.com/pact-foundation/pact-go/v2/matchers"
	"github.com/pact-foundation/pact-go/v2/models"

	"github.com/resilience-lab/lab/services/catalog"
	catalogclient "github.com/resilience-lab/lab/services/catalog/client"
)

// The gateway serves /api/products from catalog's ListProducts and GetProduct and hands each product
// to its caller whole, so every field of a product is part of the contract.
func TestConsumerGatewayCatalog(t *testing.T) {
	p := newPact(t, gatewayName, catalogName)
	product := func(id matchers.Matcher) map[string]any {
		return map[string]any{
			"id":          id,
			"name":        matchers.Like("Espresso beans, 1 kg"),
			"price_cents": matchers.Integer(2490),
			"stock":       matchers.Integer(100),
		}
	}
	wantProduct := catalog.Product{ID: "p-espresso", Name: "Espresso beans, 1 kg", PriceCents: 2490, Stock: 100}

	t.Run("list products", func(t *testing.T) {
		err := p.AddInteraction().
			Given(stateProductExists).
			UponReceiving("a request for every product").
			WithRequest(http.MethodGet, "/products").
			WillRespondWith(http.StatusOK, jsonBody(map[string]any{
				"products": matchers.EachLike(product(matchers.Like("p-espresso")), 1),
			})).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newCatalogClient(t, cfg).ListProducts(callContext(t))
				if err != nil {
					return err
				}
				if len(got) != 1 || got[0] != wantProduct {
					return fmt.Errorf("ListProducts = %+v, want [%+v]", got, wantProduct)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("get a product", func(t *testing.T) {
		err := p.AddInteraction().
			Given(stateProductExists).
			UponReceiving("a request for one product").
			WithRequestPathMatcher(http.MethodGet, matchers.FromProviderState("/products/${productId}", "/products/p-espresso")).
			WillRespondWith(http.StatusOK, jsonBody(product(matchers.FromProviderState("${productId}", "p-espresso")))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				got, err := newCatalogClient(t, cfg).GetProduct(callContext(t), "p-espresso")
				if err != nil {
					return err
				}
				if got != wantProduct {
					return fmt.Errorf("GetProduct = %+v, want %+v", got, wantProduct)
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
	})

	// The gateway passes a 404 through to its caller as not_found.
	t.Run("get an unknown product", func(t *testing.T) {
		err := p.AddInteraction().
			GivenWithParameter(models.ProviderState{Name: stateProductDoesNotExist, Parameters: map[string]any{"productId": "p-missing"}}).
			UponReceiving("a request for a product that does not exist").
			WithRequest(http.MethodGet, "/products/p-missing").
			WillRespondWith(http.StatusNotFound, jsonBody(apiError("not_found"))).
			ExecuteTest(t, func(cfg consumer.MockServerConfig) error {
				_, err := newCatalogClient(t, cfg).GetProduct(callContext(t), "p-missing")
				return expectAPIError(err, http.StatusNotFound, "not_found")
			})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// newCatalogClient is the typed catalog client both consumers build, aimed at the mock server.
func newCatalogClient(t *testing.T, cfg consumer.MockServerConfig) *catalogclient.Client {
	t.Helper()
	c, err := catalogclient.New(mockURL(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
