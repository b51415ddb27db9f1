package broker

import (
	"slices"
	"testing"
	"time"
)

// graphBuilder builds a Graph by hand for the pure selector and matrix tests; IDs grow in call order,
// so later versions are newer.
type graphBuilder struct {
	ps   []*Pacticipant
	vs   []*Version
	pubs []*Publication
	vers []*Verification
	deps []*Deployment
	id   int64
}

func (b *graphBuilder) next() int64 { b.id++; return b.id }

func (b *graphBuilder) pacticipant(name, mainBranch string) *Pacticipant {
	p := &Pacticipant{ID: b.next(), Name: name, MainBranch: mainBranch}
	b.ps = append(b.ps, p)
	return p
}

// version adds a version; labels are "branch:x" or "tag:y".
func (b *graphBuilder) version(p *Pacticipant, number string, labels ...string) *Version {
	v := &Version{ID: b.next(), PacticipantID: p.ID, Pacticipant: p.Name, Number: number, CreatedAt: time.Unix(b.id, 0)}
	for _, l := range labels {
		switch l[:4] {
		case "bran":
			v.Branches = append(v.Branches, l[len("branch:"):])
		case "tag:":
			v.Tags = append(v.Tags, l[len("tag:"):])
		}
	}
	b.vs = append(b.vs, v)
	return v
}

func (b *graphBuilder) pact(cv *Version, provider *Pacticipant, sha string) *Publication {
	pub := &Publication{ID: b.next(), ConsumerID: cv.PacticipantID, ProviderID: provider.ID, ConsumerVersionID: cv.ID, Sha: sha, Revision: 1}
	b.pubs = append(b.pubs, pub)
	return pub
}

func (b *graphBuilder) verify(sha string, pv *Version, success bool) *Verification {
	v := &Verification{ID: b.next(), Sha: sha, ProviderID: pv.PacticipantID, ProviderVersionID: pv.ID, Success: success}
	b.vers = append(b.vers, v)
	return v
}

func (b *graphBuilder) deploy(v *Version, env string) {
	b.deps = append(b.deps, &Deployment{ID: b.next(), VersionID: v.ID, PacticipantID: v.PacticipantID, Environment: env})
}

func (b *graphBuilder) graph() *Graph { return NewGraph(b.ps, b.vs, b.pubs, b.vers, b.deps) }

func yes() *bool { t := true; return &t }
func no() *bool  { f := false; return &f }

// selected returns "consumer@version:sha" per selected pact, in order.
func selected(pacts []*VerifiablePact) []string {
	var out []string
	for _, vp := range pacts {
		out = append(out, vp.Consumer.Name+"@"+vp.ConsumerVersion.Number+":"+vp.Publication.Sha)
	}
	return out
}

func TestSelectPacts(t *testing.T) {
	var b graphBuilder
	web := b.pacticipant("web", "main")
	mobile := b.pacticipant("mobile", "")
	catalog := b.pacticipant("catalog", "main")
	other := b.pacticipant("other", "")

	w1 := b.version(web, "w1", "branch:main", "tag:prod")
	b.pact(w1, catalog, "s1")
	w2 := b.version(web, "w2", "branch:main", "tag:prod")
	b.pact(w2, catalog, "s2")
	b.version(web, "w3", "branch:main") // newest on main, but without a pact for catalog
	w4 := b.version(web, "w4", "branch:feat")
	b.pact(w4, catalog, "s4")
	w5 := b.version(web, "w5", "branch:main")
	b.pact(w5, other, "s5") // a pact for another provider only
	w6 := b.version(web, "w6", "tag:prod")
	b.pact(w6, catalog, "s2") // the same content as w2: one pact version, served for the newest
	m1 := b.version(mobile, "m1", "tag:prod")
	b.pact(m1, catalog, "m1sha")
	m2 := b.version(mobile, "m2")
	b.pact(m2, catalog, "m2sha")
	b.deploy(w1, "production")
	b.deploy(m1, "test")
	g := b.graph()

	cases := []struct {
		name string
		q    PactsForVerificationQuery
		want []string
	}{
		{"main branch: latest with a pact", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{MainBranch: yes()}}},
			[]string{"web@w2:s2"}},
		{"branch", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Branch: "feat"}}},
			[]string{"web@w4:s4"}},
		{"tag latest", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Tag: "prod", Latest: yes()}}},
			[]string{"mobile@m1:m1sha", "web@w6:s2"}},
		{"tag all, deduplicated by content", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Tag: "prod", Consumer: "web"}}},
			[]string{"web@w1:s1", "web@w6:s2"}},
		{"overall latest", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Latest: yes()}}},
			[]string{"mobile@m2:m2sha", "web@w6:s2"}},
		{"deployed or released", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{DeployedOrReleased: yes()}}},
			[]string{"mobile@m1:m1sha", "web@w1:s1"}},
		{"environment", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Environment: "production"}}},
			[]string{"web@w1:s1"}},
		{"matching branch", PactsForVerificationQuery{ProviderVersionBranch: "feat",
			ConsumerVersionSelectors: []ConsumerVersionSelector{{MatchingBranch: yes()}}}, []string{"web@w4:s4"}},
		{"matching branch without a provider branch", PactsForVerificationQuery{
			ConsumerVersionSelectors: []ConsumerVersionSelector{{MatchingBranch: yes()}}}, nil},
		{"fallback branch", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Branch: "nope", FallbackBranch: "feat"}}},
			[]string{"web@w4:s4"}},
		{"fallback tag", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Tag: "nope", Latest: yes(), FallbackTag: "prod", Consumer: "web"}}},
			[]string{"web@w6:s2"}},
		{"released: not recorded here", PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{{Released: yes()}}}, nil},
		{"defaults: main branch or latest, plus deployed", PactsForVerificationQuery{},
			[]string{"mobile@m1:m1sha", "mobile@m2:m2sha", "web@w1:s1", "web@w2:s2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range tc.q.ConsumerVersionSelectors {
				if p := s.Validate(); p != "" {
					t.Fatalf("selector %+v invalid: %s", s, p)
				}
			}
			got := selected(SelectPacts(g, catalog, tc.q))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("reasons are merged per content", func(t *testing.T) {
		pacts := SelectPacts(g, catalog, PactsForVerificationQuery{ConsumerVersionSelectors: []ConsumerVersionSelector{
			{Environment: "production"}, {Tag: "prod", Consumer: "web"}}})
		if got := selected(pacts); !slices.Equal(got, []string{"web@w1:s1", "web@w6:s2"}) {
			t.Fatalf("got %v", got)
		}
		if d := pacts[0].ShortDescription(); d != "currently deployed to production, with tag prod" {
			t.Errorf("shortDescription = %q", d)
		}
		if len(pacts[1].Reasons) != 2 || pacts[1].ShortDescription() != "with tag prod" {
			t.Errorf("w2 and w6 share content: reasons = %+v", pacts[1].Reasons)
		}
	})
}

func TestPendingStatus(t *testing.T) {
	var b graphBuilder
	web := b.pacticipant("web", "main")
	catalog := b.pacticipant("catalog", "main")
	w1 := b.version(web, "w1", "branch:main")
	b.pact(w1, catalog, "s1")
	w2 := b.version(web, "w2", "branch:main")
	b.pact(w2, catalog, "s2")
	pMain := b.version(catalog, "c1", "branch:main")
	pFeat := b.version(catalog, "c2", "branch:feat", "tag:feat")
	b.verify("s1", pMain, true)
	b.verify("s2", pFeat, true)
	b.verify("s2", pMain, false)
	g := b.graph()

	pending := func(q PactsForVerificationQuery) map[string]bool {
		q.IncludePendingStatus = true
		q.ConsumerVersionSelectors = []ConsumerVersionSelector{{Branch: "main", Latest: no()}}
		out := map[string]bool{}
		for _, vp := range SelectPacts(g, catalog, q) {
			out[vp.Publication.Sha] = vp.Pending
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    PactsForVerificationQuery
		want map[string]bool
	}{
		{"by branch", PactsForVerificationQuery{ProviderVersionBranch: "main"}, map[string]bool{"s1": false, "s2": true}},
		{"by other branch", PactsForVerificationQuery{ProviderVersionBranch: "feat"}, map[string]bool{"s1": true, "s2": false}},
		{"by tag", PactsForVerificationQuery{ProviderVersionTags: []string{"feat"}}, map[string]bool{"s1": true, "s2": false}},
		{"by any version", PactsForVerificationQuery{}, map[string]bool{"s1": false, "s2": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pending(tc.q)
			if len(got) != len(tc.want) || got["s1"] != tc.want["s1"] || got["s2"] != tc.want["s2"] {
				t.Errorf("pending = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSelectorValidation(t *testing.T) {
	for _, tc := range []struct {
		s     ConsumerVersionSelector
		valid bool
	}{
		{ConsumerVersionSelector{MainBranch: yes()}, true},
		{ConsumerVersionSelector{MainBranch: yes(), Latest: yes()}, true},
		{ConsumerVersionSelector{Branch: "x"}, true},
		{ConsumerVersionSelector{Branch: "x", Latest: no()}, true},
		{ConsumerVersionSelector{Tag: "x"}, true},
		{ConsumerVersionSelector{Tag: "x", Latest: yes(), FallbackTag: "y"}, true},
		{ConsumerVersionSelector{Latest: yes()}, true},
		{ConsumerVersionSelector{Latest: yes(), Consumer: "web"}, true},
		{ConsumerVersionSelector{DeployedOrReleased: yes()}, true},
		{ConsumerVersionSelector{Deployed: yes(), Environment: "prod"}, true},
		{ConsumerVersionSelector{Environment: "prod"}, true},
		{ConsumerVersionSelector{MatchingBranch: yes()}, true},
		{ConsumerVersionSelector{}, false},
		{ConsumerVersionSelector{Consumer: "web"}, false},
		{ConsumerVersionSelector{Latest: no()}, false},
		{ConsumerVersionSelector{MainBranch: no()}, false},
		{ConsumerVersionSelector{MainBranch: yes(), Latest: no()}, false},
		{ConsumerVersionSelector{Tag: "x", Branch: "y"}, false},
		{ConsumerVersionSelector{MainBranch: yes(), Branch: "y"}, false},
		{ConsumerVersionSelector{Deployed: yes(), Latest: yes()}, false},
		{ConsumerVersionSelector{Deployed: yes(), Released: yes()}, false},
		{ConsumerVersionSelector{DeployedOrReleased: yes(), Deployed: yes()}, false},
		{ConsumerVersionSelector{Tag: "x", FallbackTag: "y"}, false},
		{ConsumerVersionSelector{FallbackBranch: "y", Latest: yes()}, false},
		{ConsumerVersionSelector{Environment: "prod", Tag: "x"}, false},
	} {
		if got := tc.s.Validate(); (got == "") != tc.valid {
			t.Errorf("%+v: Validate() = %q, want valid=%v", tc.s, got, tc.valid)
		}
	}
}
