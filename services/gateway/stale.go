package gateway

import (
	"context"
	"slices"
	"sync"

	"github.com/resilience-lab/lab/resilience/policy"
	"github.com/resilience-lab/lab/services/catalog"
)

// staleProductsMax bounds the products kept one by one (those fetched since the last product list).
const staleProductsMax = 10_000

// catalogCache is the gateway's copy of what the catalog last said: the last product list and the
// products fetched one by one since, so product reads can still be answered, marked stale, while the
// catalog fails. Memory is bounded: one list (no larger than the catalog client accepts) and at most
// staleProductsMax single products.
//
// It lives in the service rather than in a resilience.WithFallback on the catalog link: the cache is
// filled from successes, which a fallback never sees, and the typed client's answer ([]catalog.Product)
// has no way to say "stale". The decision to serve it is the fallback's rule all the same (servesStale).
type catalogCache struct {
	mu       sync.Mutex
	list     []catalog.Product
	listed   bool
	inList   map[string]int // product id → index in list
	products map[string]catalog.Product
}

func newCatalogCache() *catalogCache {
	return &catalogCache{inList: map[string]int{}, products: map[string]catalog.Product{}}
}

// servesStale reports whether a failed catalog call may be answered from the cache: a failure or one of
// our policies' rejections (breaker open, bulkhead full…), as resilience/fallback decides. A business
// answer (404) is the catalog's word and the caller's own cancellation or deadline leaves nobody to answer.
func servesStale(ctx context.Context, err error) bool {
	switch policy.Classify(ctx, err) {
	case policy.Failure, policy.Rejected:
		return true
	}
	return false
}

// putList keeps ps as the last list. The list is newer than every product kept one by one, so those go.
func (c *catalogCache) putList(ps []catalog.Product) {
	list := slices.Clone(ps)
	inList := make(map[string]int, len(list))
	for i, p := range list {
		inList[p.ID] = i
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list, c.inList, c.listed = list, inList, true
	clear(c.products)
}

// lastList returns a copy of the last list, if there was one.
func (c *catalogCache) lastList() ([]catalog.Product, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list), c.listed
}

// putProduct keeps p as the last word on its id. When full it drops an arbitrary product: losing one only
// means that product cannot be answered stale until it is read again or listed.
func (c *catalogCache) putProduct(p catalog.Product) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.products[p.ID]; !ok && len(c.products) >= staleProductsMax {
		for id := range c.products {
			delete(c.products, id)
			break
		}
	}
	c.products[p.ID] = p
}

// product returns the last known state of product id: fetched on its own since the last list, or in it.
func (c *catalogCache) product(id string) (catalog.Product, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.products[id]; ok {
		return p, true
	}
	if i, ok := c.inList[id]; ok {
		return c.list[i], true
	}
	return catalog.Product{}, false
}
