package discovery

import (
	"fmt"
	"strings"

	"github.com/resilience-lab/lab/services/platform"
)

// Root is the key prefix under which every instance registers.
const Root = "/lab/services/"

// DefaultVersion is the version an instance registers under when none is set.
const DefaultVersion = "v1"

// Instance is one running copy of a service as the registry knows it: the key is
// Root/<service>/<version>/<id>, the value the base URL its callers reach it at.
type Instance struct {
	Service string // catalog, payments, …
	Version string // v1, v2: a canary is a second version of the same service
	ID      string // unique among the service's instances, e.g. the host name
	URL     string // http://host:port, as ParseBaseURL accepts it
}

// Validate reports an instance that cannot be registered: an empty or slash-containing name part (it
// would land under another prefix), or a URL that is not http(s)://host:port.
func (i Instance) Validate() error {
	for _, part := range [...]struct{ name, v string }{{"service", i.Service}, {"version", i.Version}, {"id", i.ID}} {
		if part.v == "" || strings.ContainsAny(part.v, "/ ") {
			return fmt.Errorf("instance %s %q: want a non-empty name without '/' or spaces", part.name, part.v)
		}
	}
	if _, err := platform.ParseBaseURL(i.URL); err != nil {
		return fmt.Errorf("instance url: %w", err)
	}
	return nil
}

// Key is the instance's registry key.
func (i Instance) Key() string { return Prefix(i.Service, i.Version) + i.ID }

// Prefix is the registry prefix of every instance of one version of a service. It ends in '/', so
// catalog/v1/ never matches catalog/v10/ nor catalog-admin/.
func Prefix(service, version string) string { return Root + service + "/" + version + "/" }
