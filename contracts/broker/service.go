package broker

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/services/platform"
)

// Service holds the broker's use cases over the store. Its errors are *platform.Error for everything the
// caller can fix (unknown names, invalid input, conflicts); anything else is a fault of the broker.
type Service struct {
	st      *store
	now     func() time.Time
	metrics *metrics
}

type metrics struct {
	pacts         *prometheus.CounterVec
	verifications *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		pacts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_pact_publications_total", Help: "Pacts published, by outcome (created, unchanged, merged).",
		}, []string{"outcome"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_verification_results_total", Help: "Verification results published, by success.",
		}, []string{"success"}),
	}
	reg.MustRegister(m.pacts, m.verifications)
	return m
}

func newService(st *store, now func() time.Time, m *metrics) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, now: func() time.Time { return now().UTC() }, metrics: m}
}

func notFound(format string, args ...any) error { return platform.NotFound(format, args...) }
func invalid(format string, args ...any) error {
	return platform.BadRequest("invalid_argument", format, args...)
}

// requireName rejects empty, overlong and NUL-carrying names.
func requireName(what, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return invalid("%s must not be empty", what)
	case len(name) > 255:
		return invalid("%s must be at most 255 characters", what)
	case strings.ContainsRune(name, 0):
		return invalid("%s must not contain NUL", what)
	}
	return nil
}

// requirePacticipantName also rejects '/': the CLI puts pacticipant names into paths unescaped.
func requirePacticipantName(what, name string) error {
	if strings.ContainsRune(name, '/') {
		return invalid("%s %q must not contain '/'", what, name)
	}
	return requireName(what, name)
}

// ---- pacticipants and versions -------------------------------------------------------------------

func (s *Service) mustPacticipant(ctx context.Context, q querier, name string) (*Pacticipant, error) {
	p, err := getPacticipant(ctx, q, name)
	if err == nil && p == nil {
		err = notFound("pacticipant %q does not exist", name)
	}
	return p, err
}

func (s *Service) mustVersion(ctx context.Context, q querier, pacticipant, number string) (*Pacticipant, *Version, error) {
	p, err := s.mustPacticipant(ctx, q, pacticipant)
	if err != nil {
		return nil, nil, err
	}
	v, err := getVersion(ctx, q, p.ID, number)
	if err == nil && v == nil {
		err = notFound("version %q of pacticipant %q does not exist", number, pacticipant)
	}
	return p, v, err
}

// Pacticipant returns the pacticipant called name.
func (s *Service) Pacticipant(ctx context.Context, name string) (*Pacticipant, error) {
	return s.mustPacticipant(ctx, s.st.read, name)
}

// Pacticipants lists every pacticipant by name.
func (s *Service) Pacticipants(ctx context.Context) ([]*Pacticipant, error) {
	return listPacticipants(ctx, s.st.read)
}

// PacticipantChange is what POST, PUT and PATCH /pacticipants/… may set; nil fields are left alone.
type PacticipantChange struct {
	Name          *string `json:"name,omitempty"`
	DisplayName   *string `json:"displayName,omitempty"`
	MainBranch    *string `json:"mainBranch,omitempty"`
	RepositoryURL *string `json:"repositoryUrl,omitempty"`
}

// SavePacticipant applies change to the pacticipant called name; mode "create" fails when it exists,
// "update" when it does not, "upsert" never. It reports whether the pacticipant was created.
func (s *Service) SavePacticipant(ctx context.Context, name string, change PacticipantChange, mode string) (*Pacticipant, bool, error) {
	if err := requirePacticipantName("pacticipant name", name); err != nil {
		return nil, false, err
	}
	if change.Name != nil && *change.Name != name {
		return nil, false, invalid("the body's name %q differs from the pacticipant %q in the URL; renaming is not supported", *change.Name, name)
	}
	if change.MainBranch != nil && *change.MainBranch != "" {
		if err := requireName("mainBranch", *change.MainBranch); err != nil {
			return nil, false, err
		}
	}
	var p *Pacticipant
	var created bool
	err := s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		existing, err := getPacticipant(ctx, tx, name)
		if err != nil {
			return err
		}
		switch {
		case existing != nil && mode == "create":
			return platform.Conflict("pacticipant_exists", "pacticipant %q already exists", name)
		case existing == nil && mode == "update":
			return notFound("pacticipant %q does not exist", name)
		}
		now := s.now()
		p, created, err = ensurePacticipant(ctx, tx, name, now)
		if err != nil {
			return err
		}
		if change.DisplayName != nil {
			p.DisplayName = *change.DisplayName
		}
		if change.MainBranch != nil {
			p.MainBranch = *change.MainBranch
		}
		if change.RepositoryURL != nil {
			p.RepositoryURL = *change.RepositoryURL
		}
		p.UpdatedAt = now
		return updatePacticipant(ctx, tx, p)
	})
	return p, created, err
}

// Version returns version number of pacticipant.
func (s *Service) Version(ctx context.Context, pacticipant, number string) (*Pacticipant, *Version, error) {
	return s.mustVersion(ctx, s.st.read, pacticipant, number)
}

// Versions lists the versions of pacticipant, newest first.
func (s *Service) Versions(ctx context.Context, pacticipant string) (*Pacticipant, []*Version, error) {
	p, err := s.mustPacticipant(ctx, s.st.read, pacticipant)
	if err != nil {
		return nil, nil, err
	}
	vs, err := queryVersions(ctx, s.st.read, "v.pacticipant_id = ?", p.ID)
	slices.Reverse(vs)
	return p, vs, err
}

// LatestVersion returns the newest version of pacticipant, or the newest with tag when tag is set.
func (s *Service) LatestVersion(ctx context.Context, pacticipant, tag string) (*Pacticipant, *Version, error) {
	p, vs, err := s.Versions(ctx, pacticipant)
	if err != nil {
		return nil, nil, err
	}
	for _, v := range vs {
		if tag == "" || v.hasTag(tag) {
			return p, v, nil
		}
	}
	if tag != "" {
		return nil, nil, notFound("pacticipant %q has no version with tag %q", pacticipant, tag)
	}
	return nil, nil, notFound("pacticipant %q has no versions", pacticipant)
}

// PutVersion creates version number of pacticipant (and the pacticipant) when missing; a non-empty
// buildURL replaces the stored one.
func (s *Service) PutVersion(ctx context.Context, pacticipant, number, buildURL string) (*Pacticipant, *Version, bool, error) {
	var p *Pacticipant
	var v *Version
	var created bool
	err := s.withVersion(ctx, pacticipant, number, buildURL, func(tx *sql.Tx, pp *Pacticipant, vv *Version, c bool) error {
		p, v, created = pp, vv, c
		return nil
	})
	return p, v, created, err
}

// withVersion runs fn in a transaction on version number of pacticipant, creating both when missing,
// as the Pact Broker's PUT endpoints do.
func (s *Service) withVersion(ctx context.Context, pacticipant, number, buildURL string,
	fn func(tx *sql.Tx, p *Pacticipant, v *Version, created bool) error) error {
	if err := requirePacticipantName("pacticipant name", pacticipant); err != nil {
		return err
	}
	if err := requireName("version number", number); err != nil {
		return err
	}
	return s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := s.now()
		p, _, err := ensurePacticipant(ctx, tx, pacticipant, now)
		if err != nil {
			return err
		}
		v, created, err := ensureVersion(ctx, tx, p, number, buildURL, now)
		if err != nil {
			return err
		}
		return fn(tx, p, v, created)
	})
}

// PutTag tags version number of pacticipant (creating both when missing); it reports whether the tag is new.
func (s *Service) PutTag(ctx context.Context, pacticipant, number, tag string) (*Version, bool, error) {
	if err := requireName("tag", tag); err != nil {
		return nil, false, err
	}
	var v *Version
	var created bool
	err := s.withVersion(ctx, pacticipant, number, "", func(tx *sql.Tx, _ *Pacticipant, vv *Version, _ bool) error {
		var err error
		v = vv
		created, err = addTag(ctx, tx, v, tag, s.now())
		return err
	})
	return v, created, err
}

// Tag returns version number of pacticipant when it has tag.
func (s *Service) Tag(ctx context.Context, pacticipant, number, tag string) (*Version, error) {
	_, v, err := s.Version(ctx, pacticipant, number)
	if err == nil && !v.hasTag(tag) {
		err = notFound("version %q of pacticipant %q has no tag %q", number, pacticipant, tag)
	}
	return v, err
}

// DeleteTag removes tag from version number of pacticipant.
func (s *Service) DeleteTag(ctx context.Context, pacticipant, number, tag string) error {
	return s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, v, err := s.mustVersion(ctx, tx, pacticipant, number)
		if err != nil {
			return err
		}
		deleted, err := deleteTag(ctx, tx, v, tag)
		if err == nil && !deleted {
			err = notFound("version %q of pacticipant %q has no tag %q", number, pacticipant, tag)
		}
		return err
	})
}

// PutBranchVersion puts version number of pacticipant on branch (creating both when missing); it
// reports whether that is new.
func (s *Service) PutBranchVersion(ctx context.Context, pacticipant, branch, number string) (*Version, bool, error) {
	if err := requireName("branch", branch); err != nil {
		return nil, false, err
	}
	var v *Version
	var created bool
	err := s.withVersion(ctx, pacticipant, number, "", func(tx *sql.Tx, p *Pacticipant, vv *Version, _ bool) error {
		var err error
		v = vv
		created, err = addBranch(ctx, tx, p, v, branch, s.now())
		return err
	})
	return v, created, err
}

// BranchVersion returns version number of pacticipant when it is on branch.
func (s *Service) BranchVersion(ctx context.Context, pacticipant, branch, number string) (*Version, error) {
	_, v, err := s.Version(ctx, pacticipant, number)
	if err == nil && !v.hasBranch(branch) {
		err = notFound("version %q of pacticipant %q is not on branch %q", number, pacticipant, branch)
	}
	return v, err
}

// ---- publishing ----------------------------------------------------------------------------------

// PublishContractsRequest is the body of POST /contracts/publish.
type PublishContractsRequest struct {
	PacticipantName          string            `json:"pacticipantName"`
	PacticipantVersionNumber string            `json:"pacticipantVersionNumber"`
	Branch                   string            `json:"branch,omitempty"`
	Tags                     []string          `json:"tags,omitempty"`
	BuildURL                 string            `json:"buildUrl,omitempty"`
	Contracts                []ContractRequest `json:"contracts"`
}

// ContractRequest is one contract in a publication; Content is the base64 of the pact JSON.
type ContractRequest struct {
	ConsumerName  string `json:"consumerName"`
	ProviderName  string `json:"providerName"`
	Specification string `json:"specification"`
	ContentType   string `json:"contentType"`
	Content       string `json:"content"`
	OnConflict    string `json:"onConflict,omitempty"`
}

// PublishedContract is the outcome of publishing one contract.
type PublishedContract struct {
	Consumer    *Pacticipant
	Provider    *Pacticipant
	Version     *Version
	Publication *Publication
	Outcome     string // created, unchanged or merged
}

// PublishResult is the outcome of POST /contracts/publish.
type PublishResult struct {
	Pacticipant *Pacticipant
	Version     *Version
	Contracts   []PublishedContract
	Notices     []Notice
}

type decodedContract struct {
	ContractRequest
	doc pactDoc
}

func (r PublishContractsRequest) validate() ([]decodedContract, error) {
	if err := requirePacticipantName("pacticipantName", r.PacticipantName); err != nil {
		return nil, err
	}
	if err := requireName("pacticipantVersionNumber", r.PacticipantVersionNumber); err != nil {
		return nil, err
	}
	if r.Branch != "" {
		if err := requireName("branch", r.Branch); err != nil {
			return nil, err
		}
	}
	for _, t := range r.Tags {
		if err := requireName("tag", t); err != nil {
			return nil, err
		}
	}
	if len(r.Contracts) == 0 {
		return nil, invalid("contracts must hold at least one contract")
	}
	out := make([]decodedContract, 0, len(r.Contracts))
	for i, c := range r.Contracts {
		where := fmt.Sprintf("contracts[%d]", i)
		if c.ConsumerName != r.PacticipantName {
			return nil, invalid("%s.consumerName %q must be the pacticipantName %q: a version publishes its own pacts", where, c.ConsumerName, r.PacticipantName)
		}
		if err := requirePacticipantName(where+".providerName", c.ProviderName); err != nil {
			return nil, err
		}
		if c.Specification != "pact" {
			return nil, invalid("%s.specification %q is not supported; only \"pact\" is", where, c.Specification)
		}
		if c.ContentType != "application/json" {
			return nil, invalid("%s.contentType %q is not supported; only application/json is", where, c.ContentType)
		}
		switch c.OnConflict {
		case "", "overwrite", "merge":
		default:
			return nil, invalid("%s.onConflict %q: want overwrite or merge", where, c.OnConflict)
		}
		raw, err := base64.StdEncoding.DecodeString(c.Content)
		if err != nil {
			return nil, platform.BadRequest("bad_base64", "%s.content is not valid base64: %v", where, err)
		}
		doc, err := parsePact(raw)
		if err != nil {
			return nil, invalid("%s.content: %v", where, err)
		}
		if doc.party("consumer") != c.ConsumerName || doc.party("provider") != c.ProviderName {
			return nil, invalid("%s: the pact is between %q and %q, not %q and %q", where,
				doc.party("consumer"), doc.party("provider"), c.ConsumerName, c.ProviderName)
		}
		out = append(out, decodedContract{ContractRequest: c, doc: doc})
	}
	return out, nil
}

// PublishContracts stores a consumer version with its branch, tags and pacts, all or nothing. A pact
// whose content differs from the one already published for the same consumer version is a conflict
// (409), unless its onConflict is "merge", which adds its interactions to the published ones.
func (s *Service) PublishContracts(ctx context.Context, r PublishContractsRequest) (*PublishResult, error) {
	contracts, err := r.validate()
	if err != nil {
		return nil, err
	}
	res := &PublishResult{}
	err = s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := s.now()
		p, _, err := ensurePacticipant(ctx, tx, r.PacticipantName, now)
		if err != nil {
			return err
		}
		v, created, err := ensureVersion(ctx, tx, p, r.PacticipantVersionNumber, r.BuildURL, now)
		if err != nil {
			return err
		}
		res.Pacticipant, res.Version = p, v
		var labels []string
		if r.Branch != "" {
			if added, err := addBranch(ctx, tx, p, v, r.Branch, now); err != nil {
				return err
			} else if added {
				labels = append(labels, "branch "+r.Branch)
			}
		}
		for _, t := range r.Tags {
			if added, err := addTag(ctx, tx, v, t, now); err != nil {
				return err
			} else if added {
				labels = append(labels, "tag "+t)
			}
		}
		verb := "Updated"
		if created {
			verb = "Created"
		}
		text := fmt.Sprintf("%s %s version %s", verb, p.Name, v.Number)
		if len(labels) > 0 {
			text += " with " + strings.Join(labels, " and ")
		}
		res.Notices = append(res.Notices, Notice{"success", text})
		for _, c := range contracts {
			pc, err := s.publishPact(ctx, tx, p, v, c.ProviderName, c.doc, c.OnConflict == "merge", now)
			if err != nil {
				return err
			}
			res.Contracts = append(res.Contracts, *pc)
			res.Notices = append(res.Notices, Notice{"success", fmt.Sprintf("Pact for provider %s %s for %s version %s",
				c.ProviderName, map[string]string{"created": "published", "unchanged": "was already published with the same content",
					"merged": "merged into the published one"}[pc.Outcome], p.Name, v.Number)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range res.Contracts {
		s.metrics.pacts.WithLabelValues(c.Outcome).Inc()
	}
	return res, nil
}

func (s *Service) publishPact(ctx context.Context, tx *sql.Tx, consumer *Pacticipant, v *Version, providerName string,
	doc pactDoc, merge bool, now time.Time) (*PublishedContract, error) {
	provider, _, err := ensurePacticipant(ctx, tx, providerName, now)
	if err != nil {
		return nil, err
	}
	out := &PublishedContract{Consumer: consumer, Provider: provider, Version: v}
	existing, err := latestPublication(ctx, tx, v.ID, provider.ID)
	if err != nil {
		return nil, err
	}
	sha, outcome := doc.sha(), "created"
	if existing != nil {
		if existing.Sha == sha {
			out.Publication, out.Outcome = existing, "unchanged"
			return out, nil
		}
		if !merge {
			return nil, platform.Conflict("pact_content_changed",
				"the pact of %s version %s for provider %s was already published with different content; publish changed pacts with a new "+
					"consumer version number (can-i-deploy results would be unreliable otherwise), or merge them with --merge",
				consumer.Name, v.Number, provider.Name)
		}
		pc, err := getPactContent(ctx, tx, existing.Sha)
		if err != nil {
			return nil, err
		}
		base, err := parsePact(pc.Content)
		if err != nil {
			return nil, fmt.Errorf("stored pact %s: %w", existing.Sha, err)
		}
		if doc, err = base.merge(doc); err != nil {
			return nil, platform.Conflict("pact_merge_conflict", "cannot merge into the pact of %s version %s for provider %s: %v",
				consumer.Name, v.Number, provider.Name, err)
		}
		if sha = doc.sha(); sha == existing.Sha {
			out.Publication, out.Outcome = existing, "unchanged"
			return out, nil
		}
		outcome = "merged"
	}
	out.Publication, err = insertPublication(ctx, tx, v, provider.ID, sha, doc.canonical(), now)
	out.Outcome = outcome
	return out, err
}

// PublishPact publishes one pact for consumer version number, the older API behind pb:publish-pact
// (PUT /pacts/provider/P/consumer/C/version/V): the same rules as PublishContracts without merging.
func (s *Service) PublishPact(ctx context.Context, provider, consumer, number string, content []byte) (*PublishedContract, error) {
	doc, err := parsePact(content)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if doc.party("consumer") != consumer || doc.party("provider") != provider {
		return nil, invalid("the pact is between %q and %q, not %q and %q", doc.party("consumer"), doc.party("provider"), consumer, provider)
	}
	if err := requirePacticipantName("provider name", provider); err != nil {
		return nil, err
	}
	var out *PublishedContract
	err = s.withVersion(ctx, consumer, number, "", func(tx *sql.Tx, p *Pacticipant, v *Version, _ bool) error {
		var err error
		out, err = s.publishPact(ctx, tx, p, v, provider, doc, false, s.now())
		return err
	})
	if err == nil {
		s.metrics.pacts.WithLabelValues(out.Outcome).Inc()
	}
	return out, err
}

// ---- pacts ---------------------------------------------------------------------------------------

// Pact is a pact as served: its content, the parties, and the consumer version it is served for.
type Pact struct {
	Content         *PactContent
	Consumer        *Pacticipant
	Provider        *Pacticipant
	ConsumerVersion *Version
	Publication     *Publication
}

// pactParties looks up both parties of a pact URL.
func (s *Service) pactParties(ctx context.Context, provider, consumer string) (*Pacticipant, *Pacticipant, error) {
	p, err := s.mustPacticipant(ctx, s.st.read, provider)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.mustPacticipant(ctx, s.st.read, consumer)
	return p, c, err
}

func (s *Service) pactFor(ctx context.Context, c, p *Pacticipant, pub *Publication) (*Pact, error) {
	pc, err := getPactContent(ctx, s.st.read, pub.Sha)
	if err != nil {
		return nil, err
	}
	vs, err := queryVersions(ctx, s.st.read, "v.id = ?", pub.ConsumerVersionID)
	if err != nil || len(vs) == 0 {
		return nil, fmt.Errorf("publication %d: consumer version: %v", pub.ID, err)
	}
	return &Pact{Content: pc, Consumer: c, Provider: p, ConsumerVersion: vs[0], Publication: pub}, nil
}

// PactVersion returns the pact content sha between consumer and provider, served for the newest
// consumer version that published it.
func (s *Service) PactVersion(ctx context.Context, provider, consumer, sha string) (*Pact, error) {
	p, c, err := s.pactParties(ctx, provider, consumer)
	if err != nil {
		return nil, err
	}
	pubs, err := queryPublications(ctx, s.st.read, "v.pacticipant_id = ? AND pp.provider_id = ? AND pp.pact_sha = ?", c.ID, p.ID, sha)
	if err != nil {
		return nil, err
	}
	if len(pubs) == 0 {
		return nil, notFound("there is no pact version %s between %s and %s", sha, consumer, provider)
	}
	return s.pactFor(ctx, c, p, pubs[len(pubs)-1])
}

// PactForVersion returns the pact consumer version number holds for provider.
func (s *Service) PactForVersion(ctx context.Context, provider, consumer, number string) (*Pact, error) {
	p, c, err := s.pactParties(ctx, provider, consumer)
	if err != nil {
		return nil, err
	}
	v, err := getVersion(ctx, s.st.read, c.ID, number)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, notFound("version %q of pacticipant %q does not exist", number, consumer)
	}
	pub, err := latestPublication(ctx, s.st.read, v.ID, p.ID)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, notFound("version %s of %s has no pact with %s", number, consumer, provider)
	}
	return s.pactFor(ctx, c, p, pub)
}

// LatestPact returns the pact of consumer's newest version (with tag, when set) that has one for provider.
func (s *Service) LatestPact(ctx context.Context, provider, consumer, tag string) (*Pact, error) {
	p, c, err := s.pactParties(ctx, provider, consumer)
	if err != nil {
		return nil, err
	}
	pacts, err := s.latestPacts(ctx, p, c, tag)
	if err != nil {
		return nil, err
	}
	if len(pacts) == 0 {
		return nil, notFound("there is no pact between %s and %s%s", consumer, provider, map[bool]string{true: " with tag " + tag}[tag != ""])
	}
	return pacts[0], nil
}

// LatestProviderPacts returns the latest pact (with tag, when set) of each consumer of provider.
func (s *Service) LatestProviderPacts(ctx context.Context, provider, tag string) (*Pacticipant, []*Pact, error) {
	p, err := s.mustPacticipant(ctx, s.st.read, provider)
	if err != nil {
		return nil, nil, err
	}
	pacts, err := s.latestPacts(ctx, p, nil, tag)
	return p, pacts, err
}

// LatestPacts returns the latest pact of every integration.
func (s *Service) LatestPacts(ctx context.Context) ([]*Pact, error) {
	return s.latestPacts(ctx, nil, nil, "")
}

// latestPacts returns the newest pact (of a version with tag, when set) per consumer and provider,
// optionally restricted to one provider and one consumer.
func (s *Service) latestPacts(ctx context.Context, provider, consumer *Pacticipant, tag string) ([]*Pact, error) {
	where, args := "1 = 1", []any{}
	if provider != nil {
		where, args = where+" AND pp.provider_id = ?", append(args, provider.ID)
	}
	if consumer != nil {
		where, args = where+" AND v.pacticipant_id = ?", append(args, consumer.ID)
	}
	if tag != "" {
		where, args = where+" AND EXISTS (SELECT 1 FROM tags t WHERE t.version_id = v.id AND t.name = ?)", append(args, tag)
	}
	pubs, err := queryPublications(ctx, s.st.read, where, args...)
	if err != nil {
		return nil, err
	}
	latest := map[[2]int64]*Publication{}
	for _, pub := range pubs { // ordered by consumer version, so the last one per pair wins
		latest[[2]int64{pub.ConsumerID, pub.ProviderID}] = pub
	}
	names := map[int64]*Pacticipant{}
	all, err := listPacticipants(ctx, s.st.read)
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		names[p.ID] = p
	}
	var out []*Pact
	for _, pub := range latest {
		pact, err := s.pactFor(ctx, names[pub.ConsumerID], names[pub.ProviderID], pub)
		if err != nil {
			return nil, err
		}
		out = append(out, pact)
	}
	slices.SortFunc(out, func(a, b *Pact) int {
		if c := strings.Compare(a.Consumer.Name, b.Consumer.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Provider.Name, b.Provider.Name)
	})
	return out, nil
}

// ---- verification --------------------------------------------------------------------------------

// graphAround loads the graph of the named pacticipants and every pacticipant integrated with them.
func (s *Service) graphAround(ctx context.Context, ids ...int64) (*Graph, error) {
	pairs, err := integrations(ctx, s.st.read)
	if err != nil {
		return nil, err
	}
	set := map[int64]bool{}
	for _, id := range ids {
		set[id] = true
	}
	for _, pr := range pairs {
		if set[pr[0]] || set[pr[1]] {
			ids = append(ids, pr[0], pr[1])
		}
	}
	slices.Sort(ids)
	return loadGraph(ctx, s.st.read, slices.Compact(ids))
}

// PactsForVerification returns the pacts provider must verify for q.
func (s *Service) PactsForVerification(ctx context.Context, provider string, q PactsForVerificationQuery) (*Pacticipant, []*VerifiablePact, error) {
	for i, sel := range q.ConsumerVersionSelectors {
		if problem := sel.Validate(); problem != "" {
			return nil, nil, platform.BadRequest("invalid_selector", "consumerVersionSelectors[%d]: %s", i, problem)
		}
	}
	if q.IncludeWipPactsSince != "" {
		if _, err := time.Parse(time.RFC3339, q.IncludeWipPactsSince); err != nil {
			if _, err := time.Parse(time.DateOnly, q.IncludeWipPactsSince); err != nil {
				return nil, nil, invalid("includeWipPactsSince %q: want an RFC 3339 date", q.IncludeWipPactsSince)
			}
		}
	}
	p, err := s.mustPacticipant(ctx, s.st.read, provider)
	if err != nil {
		return nil, nil, err
	}
	g, err := s.graphAround(ctx, p.ID)
	if err != nil {
		return nil, nil, err
	}
	return p, SelectPacts(g, g.Pacticipant(p.Name), q), nil
}

// VerificationRequest is the body the verifier POSTs to pb:publish-verification-results.
type VerificationRequest struct {
	ProviderApplicationVersion string          `json:"providerApplicationVersion"`
	Success                    *bool           `json:"success"`
	BuildURL                   string          `json:"buildUrl,omitempty"`
	TestResults                json.RawMessage `json:"testResults,omitempty"`
	VerifiedBy                 json.RawMessage `json:"verifiedBy,omitempty"`
}

// PublishVerification records provider version's result of verifying pact content sha; the provider
// version is created when missing, as the Pact Broker does.
func (s *Service) PublishVerification(ctx context.Context, provider, consumer, sha string, r VerificationRequest) (*VerificationRecord, error) {
	if r.Success == nil {
		return nil, invalid("success is required (true or false)")
	}
	if err := requireName("providerApplicationVersion", r.ProviderApplicationVersion); err != nil {
		return nil, err
	}
	if _, err := s.PactVersion(ctx, provider, consumer, sha); err != nil {
		return nil, err
	}
	var id int64
	err := s.withVersion(ctx, provider, r.ProviderApplicationVersion, "", func(tx *sql.Tx, _ *Pacticipant, pv *Version, _ bool) error {
		var err error
		id, err = insertVerification(ctx, tx, sha, pv, *r.Success, r.BuildURL, r.TestResults, r.VerifiedBy, s.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	s.metrics.verifications.WithLabelValues(fmt.Sprint(*r.Success)).Inc()
	return getVerification(ctx, s.st.read, sha, id)
}

// Verification returns verification id (0: the latest) of pact content sha between consumer and provider.
func (s *Service) Verification(ctx context.Context, provider, consumer, sha string, id int64) (*VerificationRecord, error) {
	if _, err := s.PactVersion(ctx, provider, consumer, sha); err != nil {
		return nil, err
	}
	r, err := getVerification(ctx, s.st.read, sha, id)
	if err == nil && r == nil {
		err = notFound("pact version %s between %s and %s has no such verification result", sha, consumer, provider)
	}
	return r, err
}

// ---- matrix --------------------------------------------------------------------------------------

// Matrix answers a can-i-deploy query. Unknown pacticipants in the selectors are a 400, as in the Pact Broker.
func (s *Service) Matrix(ctx context.Context, q MatrixQuery) (*MatrixResult, error) {
	var ids []int64
	for _, sel := range q.Selectors {
		p, err := getPacticipant(ctx, s.st.read, sel.Pacticipant)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, platform.BadRequest("unknown_pacticipant", "pacticipant %q does not exist", sel.Pacticipant)
		}
		ids = append(ids, p.ID)
	}
	if q.Environment != "" {
		e, err := getEnvironment(ctx, s.st.read, "name", q.Environment)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, platform.BadRequest("unknown_environment", "environment %q does not exist", q.Environment)
		}
	}
	g, err := s.graphAround(ctx, ids...)
	if err != nil {
		return nil, err
	}
	return EvaluateMatrix(g, q), nil
}

// ---- environments and deployments ----------------------------------------------------------------

// EnvironmentRequest is the body of POST /environments and PUT /environments/{uuid}.
type EnvironmentRequest struct {
	UUID        string          `json:"uuid,omitempty"`
	Name        string          `json:"name"`
	DisplayName string          `json:"displayName,omitempty"`
	Production  *bool           `json:"production"`
	Contacts    json.RawMessage `json:"contacts,omitempty"`
}

func (r EnvironmentRequest) validate() error {
	if err := requireName("name", r.Name); err != nil {
		return err
	}
	if strings.ContainsAny(r.Name, " \t") {
		return invalid("name %q must not contain spaces", r.Name)
	}
	if r.Production == nil {
		return invalid("production is required (true or false)")
	}
	return nil
}

// CreateEnvironment creates an environment; its name must be unused.
func (s *Service) CreateEnvironment(ctx context.Context, r EnvironmentRequest) (*Environment, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	if r.UUID != "" && !isUUID(r.UUID) {
		return nil, invalid("uuid %q is not a UUID", r.UUID)
	}
	now := s.now()
	e := &Environment{UUID: r.UUID, Name: r.Name, DisplayName: r.DisplayName, Production: *r.Production, Contacts: r.Contacts,
		CreatedAt: now, UpdatedAt: now}
	if e.UUID == "" {
		e.UUID = newUUID()
	}
	err := s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for col, val := range map[string]string{"name": e.Name, "uuid": e.UUID} {
			if other, err := getEnvironment(ctx, tx, col, val); err != nil {
				return err
			} else if other != nil {
				return platform.Conflict("environment_exists", "an environment with %s %q already exists", col, val)
			}
		}
		return insertEnvironment(ctx, tx, e)
	})
	return e, err
}

// UpdateEnvironment replaces the fields of environment uuid.
func (s *Service) UpdateEnvironment(ctx context.Context, uuid string, r EnvironmentRequest) (*Environment, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	var e *Environment
	err := s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if e, err = s.mustEnvironment(ctx, tx, uuid); err != nil {
			return err
		}
		if other, err := getEnvironment(ctx, tx, "name", r.Name); err != nil {
			return err
		} else if other != nil && other.ID != e.ID {
			return platform.Conflict("environment_exists", "an environment with name %q already exists", r.Name)
		}
		e.Name, e.DisplayName, e.Production, e.Contacts, e.UpdatedAt = r.Name, r.DisplayName, *r.Production, r.Contacts, s.now()
		return updateEnvironment(ctx, tx, e)
	})
	return e, err
}

// DeleteEnvironment deletes environment uuid; one with deployments cannot be deleted.
func (s *Service) DeleteEnvironment(ctx context.Context, uuid string) error {
	return s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		e, err := s.mustEnvironment(ctx, tx, uuid)
		if err != nil {
			return err
		}
		deps, err := queryDeployments(ctx, tx, "d.environment_id = ?", e.ID)
		if err != nil {
			return err
		}
		if len(deps) > 0 {
			return platform.Conflict("environment_in_use", "environment %q has recorded deployments and cannot be deleted", e.Name)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM environments WHERE id = ?", e.ID)
		return err
	})
}

func (s *Service) mustEnvironment(ctx context.Context, q querier, uuid string) (*Environment, error) {
	e, err := getEnvironment(ctx, q, "uuid", uuid)
	if err == nil && e == nil {
		err = notFound("environment %q does not exist", uuid)
	}
	return e, err
}

// Environment returns environment uuid.
func (s *Service) Environment(ctx context.Context, uuid string) (*Environment, error) {
	return s.mustEnvironment(ctx, s.st.read, uuid)
}

// Environments lists the environments by name, or the one called name when it is set.
func (s *Service) Environments(ctx context.Context, name string) ([]*Environment, error) {
	if name != "" {
		return queryEnvironments(ctx, s.st.read, "name = ?", name)
	}
	return queryEnvironments(ctx, s.st.read, "1 = 1")
}

// RecordDeployment records that version number of pacticipant is deployed to environment uuid (for
// one application instance), ending the deployment of the version it replaces there.
func (s *Service) RecordDeployment(ctx context.Context, pacticipant, number, envUUID, instance string) (*DeploymentRecord, error) {
	id := newUUID()
	err := s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, v, err := s.mustVersion(ctx, tx, pacticipant, number)
		if err != nil {
			return err
		}
		e, err := s.mustEnvironment(ctx, tx, envUUID)
		if err != nil {
			return err
		}
		return recordDeployment(ctx, tx, v, e, instance, id, s.now())
	})
	if err != nil {
		return nil, err
	}
	return s.Deployment(ctx, id)
}

// Deployment returns deployed version uuid.
func (s *Service) Deployment(ctx context.Context, uuid string) (*DeploymentRecord, error) {
	ds, err := queryDeployments(ctx, s.st.read, "d.uuid = ?", uuid)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, notFound("deployed version %q does not exist", uuid)
	}
	return ds[0], nil
}

// VersionDeployments lists the deployments of version number of pacticipant to environment uuid.
func (s *Service) VersionDeployments(ctx context.Context, pacticipant, number, envUUID string) ([]*DeploymentRecord, error) {
	_, v, err := s.Version(ctx, pacticipant, number)
	if err != nil {
		return nil, err
	}
	e, err := s.Environment(ctx, envUUID)
	if err != nil {
		return nil, err
	}
	return queryDeployments(ctx, s.st.read, "d.version_id = ? AND d.environment_id = ?", v.ID, e.ID)
}

// CurrentlyDeployed lists the versions currently deployed to environment uuid, optionally of one pacticipant.
func (s *Service) CurrentlyDeployed(ctx context.Context, envUUID, pacticipant string) (*Environment, []*DeploymentRecord, error) {
	e, err := s.Environment(ctx, envUUID)
	if err != nil {
		return nil, nil, err
	}
	where, args := "d.undeployed_at IS NULL AND d.environment_id = ?", []any{e.ID}
	if pacticipant != "" {
		where, args = where+" AND p.name = ?", append(args, pacticipant)
	}
	ds, err := queryDeployments(ctx, s.st.read, where, args...)
	return e, ds, err
}

// Undeploy ends deployed version uuid; ending an ended one changes nothing.
func (s *Service) Undeploy(ctx context.Context, uuid string) (*DeploymentRecord, error) {
	if _, err := s.Deployment(ctx, uuid); err != nil {
		return nil, err
	}
	err := s.st.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE deployed_versions SET undeployed_at = ? WHERE uuid = ? AND undeployed_at IS NULL", millis(s.now()), uuid)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.Deployment(ctx, uuid)
}

// DeployableEnvironments lists every environment, for a version's pb:record-deployment links.
func (s *Service) DeployableEnvironments(ctx context.Context) ([]*Environment, error) {
	return s.Environments(ctx, "")
}

func newUUID() string {
	h := platform.NewID()
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}
