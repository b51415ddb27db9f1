package broker

import (
	"cmp"
	"slices"
	"time"
)

// Pacticipant is an application taking part in contracts, as consumer, provider or both.
type Pacticipant struct {
	ID            int64
	Name          string
	DisplayName   string
	MainBranch    string
	RepositoryURL string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Version is one version of a pacticipant with its branches and tags. Versions are ordered by ID: a
// later ID is a later version (the order they were first seen in), as in the Pact Broker.
type Version struct {
	ID            int64
	PacticipantID int64
	Pacticipant   string
	Number        string
	BuildURL      string
	CreatedAt     time.Time
	Branches      []string
	Tags          []string
}

func (v *Version) hasTag(tag string) bool       { return slices.Contains(v.Tags, tag) }
func (v *Version) hasBranch(branch string) bool { return slices.Contains(v.Branches, branch) }

// Publication is the pact a consumer version holds for a provider: its latest revision, pointing at the
// pact content (a "pact version") by hash.
type Publication struct {
	ID                int64
	ConsumerID        int64
	ProviderID        int64
	ConsumerVersionID int64
	Sha               string
	Revision          int
	CreatedAt         time.Time
}

// Verification is a provider version's result of verifying one pact content.
type Verification struct {
	ID                int64
	Sha               string
	ProviderID        int64
	ProviderVersionID int64
	Success           bool
	BuildURL          string
	CreatedAt         time.Time
}

// Deployment is a version currently deployed to an environment (undeployed ones are not loaded into a
// graph).
type Deployment struct {
	ID                  int64
	UUID                string
	VersionID           int64
	PacticipantID       int64
	EnvironmentID       int64
	Environment         string
	ApplicationInstance string
	CreatedAt           time.Time
}

// Graph is the part of the broker's data one decision needs: pacticipants, their versions, the latest
// publication of each consumer version for each provider, verifications and current deployments.
// It is loaded from the store per query, so the decisions are pure functions over it.
type Graph struct {
	pacticipants  map[int64]*Pacticipant
	byName        map[string]*Pacticipant
	versions      map[int64][]*Version // by pacticipant, ascending ID
	versionByID   map[int64]*Version
	publications  []*Publication
	pubIndex      map[[2]int64]*Publication  // by consumer version and provider
	verifications map[string][]*Verification // by pact sha, ascending ID
	deployments   []*Deployment
}

// NewGraph builds a graph; versions must be in ascending ID order per pacticipant.
func NewGraph(ps []*Pacticipant, vs []*Version, pubs []*Publication, vers []*Verification, deps []*Deployment) *Graph {
	g := &Graph{
		pacticipants:  map[int64]*Pacticipant{},
		byName:        map[string]*Pacticipant{},
		versions:      map[int64][]*Version{},
		versionByID:   map[int64]*Version{},
		publications:  pubs,
		pubIndex:      map[[2]int64]*Publication{},
		verifications: map[string][]*Verification{},
		deployments:   deps,
	}
	for _, p := range ps {
		g.pacticipants[p.ID] = p
		g.byName[p.Name] = p
	}
	for _, v := range vs {
		g.versions[v.PacticipantID] = append(g.versions[v.PacticipantID], v)
		g.versionByID[v.ID] = v
	}
	for _, pv := range g.versions {
		slices.SortFunc(pv, func(a, b *Version) int { return cmp.Compare(a.ID, b.ID) })
	}
	for _, p := range pubs {
		g.pubIndex[[2]int64{p.ConsumerVersionID, p.ProviderID}] = p
	}
	for _, v := range vers {
		g.verifications[v.Sha] = append(g.verifications[v.Sha], v)
	}
	for _, vs := range g.verifications {
		slices.SortFunc(vs, func(a, b *Verification) int { return cmp.Compare(a.ID, b.ID) })
	}
	return g
}

// Pacticipant returns the pacticipant called name, or nil.
func (g *Graph) Pacticipant(name string) *Pacticipant { return g.byName[name] }

// VersionSpec describes a set of versions of one pacticipant, the way both the matrix and the consumer
// version selectors do. Zero fields do not constrain; Latest keeps only the newest match.
type VersionSpec struct {
	Number      string // exactly this version
	Tag         string // versions with this tag
	Branch      string // versions on this branch
	MainBranch  bool   // versions on the pacticipant's main branch
	Environment string // versions currently deployed to this environment
	Deployed    bool   // versions currently deployed to any environment
	Latest      bool   // only the newest of the matching versions
}

// IsAll reports whether the spec selects every version of the pacticipant.
func (s VersionSpec) IsAll() bool { return s == VersionSpec{} }

// Versions returns the versions of p matching spec in ascending order, restricted to those for which
// keep returns true (nil keeps all) before Latest is applied: "the latest version with a pact for this
// provider" is not "the latest version".
func (g *Graph) Versions(p *Pacticipant, spec VersionSpec, keep func(*Version) bool) []*Version {
	if p == nil {
		return nil
	}
	if spec.MainBranch && p.MainBranch == "" {
		return nil
	}
	deployedIn := map[int64]bool{}
	if spec.Environment != "" || spec.Deployed {
		for _, d := range g.deployments {
			if d.PacticipantID == p.ID && (spec.Environment == "" || d.Environment == spec.Environment) {
				deployedIn[d.VersionID] = true
			}
		}
	}
	var out []*Version
	for _, v := range g.versions[p.ID] {
		switch {
		case spec.Number != "" && v.Number != spec.Number,
			spec.Tag != "" && !v.hasTag(spec.Tag),
			spec.Branch != "" && !v.hasBranch(spec.Branch),
			spec.MainBranch && !v.hasBranch(p.MainBranch),
			(spec.Environment != "" || spec.Deployed) && !deployedIn[v.ID],
			keep != nil && !keep(v):
			continue
		}
		out = append(out, v)
	}
	if spec.Latest && len(out) > 1 {
		out = out[len(out)-1:]
	}
	return out
}

// Publication returns the pact consumer version cv holds for provider, or nil.
func (g *Graph) Publication(consumerVersionID, providerID int64) *Publication {
	return g.pubIndex[[2]int64{consumerVersionID, providerID}]
}

// Consumers returns the pacticipants holding a pact with provider, by name.
func (g *Graph) Consumers(providerID int64) []*Pacticipant {
	seen := map[int64]bool{}
	var out []*Pacticipant
	for _, p := range g.publications {
		if p.ProviderID == providerID && !seen[p.ConsumerID] {
			seen[p.ConsumerID] = true
			if c := g.pacticipants[p.ConsumerID]; c != nil {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Pacticipant) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Providers returns the pacticipants consumer version cv (or any version of consumer when cv is 0) holds
// a pact with, by name.
func (g *Graph) Providers(consumerID, consumerVersionID int64) []*Pacticipant {
	seen := map[int64]bool{}
	var out []*Pacticipant
	for _, p := range g.publications {
		if p.ConsumerID != consumerID || (consumerVersionID != 0 && p.ConsumerVersionID != consumerVersionID) || seen[p.ProviderID] {
			continue
		}
		seen[p.ProviderID] = true
		if pr := g.pacticipants[p.ProviderID]; pr != nil {
			out = append(out, pr)
		}
	}
	slices.SortFunc(out, func(a, b *Pacticipant) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Verifications returns the verifications of pact content sha, oldest first.
func (g *Graph) Verifications(sha string) []*Verification { return g.verifications[sha] }

// Version returns the version with id, or nil.
func (g *Graph) Version(id int64) *Version { return g.versionByID[id] }

// DeploymentsOf returns the current deployments of version id.
func (g *Graph) DeploymentsOf(versionID int64) []*Deployment {
	var out []*Deployment
	for _, d := range g.deployments {
		if d.VersionID == versionID {
			out = append(out, d)
		}
	}
	return out
}
