package broker

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// ConsumerVersionSelector picks consumer versions whose pacts a provider must verify, with the fields
// of the Pact Broker's selectors (https://docs.pact.io/pact_broker/advanced_topics/consumer_version_selectors).
// The flags are pointers because the clients send them only when set, and "false" is invalid for most.
type ConsumerVersionSelector struct {
	Consumer           string `json:"consumer,omitempty"`
	Tag                string `json:"tag,omitempty"`
	FallbackTag        string `json:"fallbackTag,omitempty"`
	Latest             *bool  `json:"latest,omitempty"`
	DeployedOrReleased *bool  `json:"deployedOrReleased,omitempty"`
	Deployed           *bool  `json:"deployed,omitempty"`
	Released           *bool  `json:"released,omitempty"`
	Environment        string `json:"environment,omitempty"`
	MainBranch         *bool  `json:"mainBranch,omitempty"`
	Branch             string `json:"branch,omitempty"`
	MatchingBranch     *bool  `json:"matchingBranch,omitempty"`
	FallbackBranch     string `json:"fallbackBranch,omitempty"`
}

// PactsForVerificationQuery is the body the verifier POSTs to pb:provider-pacts-for-verification.
type PactsForVerificationQuery struct {
	ProviderVersionTags      []string                  `json:"providerVersionTags,omitempty"`
	ProviderVersionBranch    string                    `json:"providerVersionBranch,omitempty"`
	IncludePendingStatus     bool                      `json:"includePendingStatus"`
	IncludeWipPactsSince     string                    `json:"includeWipPactsSince,omitempty"`
	ConsumerVersionSelectors []ConsumerVersionSelector `json:"consumerVersionSelectors"`
}

func isTrue(b *bool) bool { return b != nil && *b }

// Validate returns what is wrong with s, or "" when it is a selector the broker understands.
func (s ConsumerVersionSelector) Validate() string {
	for name, flag := range map[string]*bool{"mainBranch": s.MainBranch, "deployedOrReleased": s.DeployedOrReleased,
		"deployed": s.Deployed, "released": s.Released, "matchingBranch": s.MatchingBranch} {
		if flag != nil && !*flag {
			return name + " can only be set to true"
		}
	}
	deployment := isTrue(s.Deployed) || isTrue(s.Released) || isTrue(s.DeployedOrReleased) || s.Environment != ""
	ways := 0
	for _, used := range []bool{s.Tag != "", s.Branch != "", isTrue(s.MainBranch), isTrue(s.MatchingBranch), deployment} {
		if used {
			ways++
		}
	}
	switch {
	case ways > 1:
		return "use only one of tag, branch, mainBranch, matchingBranch and deployed/released/environment in a selector"
	case ways == 0 && !isTrue(s.Latest):
		return "a selector needs one of tag, branch, mainBranch, matchingBranch, deployedOrReleased, deployed, released, environment or latest: true"
	case s.Latest != nil && deployment:
		return "latest cannot be combined with deployed, released, deployedOrReleased or environment"
	case s.Latest != nil && !*s.Latest && (isTrue(s.MainBranch) || isTrue(s.MatchingBranch)):
		return "mainBranch and matchingBranch always select the latest version; latest: false cannot apply"
	case isTrue(s.Deployed) && isTrue(s.Released):
		return "deployed and released cannot both be set; use deployedOrReleased"
	case isTrue(s.DeployedOrReleased) && (isTrue(s.Deployed) || isTrue(s.Released)):
		return "deployedOrReleased cannot be combined with deployed or released"
	case s.FallbackTag != "" && (s.Tag == "" || !isTrue(s.Latest)):
		return "fallbackTag needs a tag and latest: true"
	case s.FallbackBranch != "" && s.Branch == "":
		return "fallbackBranch needs a branch"
	}
	return ""
}

// selectorReason says why a pact was selected: the selector's description and the consumer version
// that matched it.
type selectorReason struct {
	Description     string
	Consumer        string
	ConsumerVersion string
}

// VerifiablePact is one pact content a provider must verify, with the reasons it was selected.
type VerifiablePact struct {
	Publication     *Publication
	Consumer        *Pacticipant
	ConsumerVersion *Version // the newest consumer version that selected this content
	Reasons         []selectorReason
	Pending         bool
}

// ShortDescription joins the selectors' descriptions, e.g. "latest from main branch, currently deployed".
func (vp *VerifiablePact) ShortDescription() string {
	var ds []string
	for _, r := range vp.Reasons {
		if !slices.Contains(ds, r.Description) {
			ds = append(ds, r.Description)
		}
	}
	return strings.Join(ds, ", ")
}

// selectorSpec turns a selector into the versions it picks from one consumer: the spec, its fallback
// (if any) and a description. ok is false when the selector picks nothing for this query.
func selectorSpec(s ConsumerVersionSelector, q PactsForVerificationQuery) (spec, fallback *VersionSpec, desc string, ok bool) {
	switch {
	case isTrue(s.MainBranch):
		return &VersionSpec{MainBranch: true, Latest: true}, nil, "latest from main branch", true
	case isTrue(s.MatchingBranch):
		if q.ProviderVersionBranch == "" {
			return nil, nil, "", false
		}
		return &VersionSpec{Branch: q.ProviderVersionBranch, Latest: true}, nil,
			fmt.Sprintf("latest from branch %s matching the provider's branch", q.ProviderVersionBranch), true
	case s.Branch != "":
		latest := s.Latest == nil || *s.Latest
		spec = &VersionSpec{Branch: s.Branch, Latest: latest}
		if s.FallbackBranch != "" {
			fallback = &VersionSpec{Branch: s.FallbackBranch, Latest: latest}
		}
		if latest {
			return spec, fallback, "latest from branch " + s.Branch, true
		}
		return spec, fallback, "from branch " + s.Branch, true
	case s.Tag != "":
		latest := isTrue(s.Latest)
		spec = &VersionSpec{Tag: s.Tag, Latest: latest}
		if s.FallbackTag != "" {
			fallback = &VersionSpec{Tag: s.FallbackTag, Latest: true}
		}
		if latest {
			return spec, fallback, "latest with tag " + s.Tag, true
		}
		return spec, fallback, "with tag " + s.Tag, true
	case isTrue(s.Released):
		return nil, nil, "", false // releases are not recorded by this broker
	case isTrue(s.Deployed) || isTrue(s.DeployedOrReleased) || s.Environment != "":
		if s.Environment != "" {
			return &VersionSpec{Deployed: true, Environment: s.Environment}, nil, "currently deployed to " + s.Environment, true
		}
		return &VersionSpec{Deployed: true}, nil, "currently deployed", true
	case isTrue(s.Latest):
		return &VersionSpec{Latest: true}, nil, "latest", true
	}
	return nil, nil, "", false
}

// defaultSelectors are used when the verifier sends none, as the Pact Broker does: the latest version of
// each consumer's main branch (or its overall latest version when it has no main branch with a pact),
// and every currently deployed version.
func defaultSelectors(g *Graph, provider *Pacticipant) []ConsumerVersionSelector {
	yes := true
	var sels []ConsumerVersionSelector
	for _, c := range g.Consumers(provider.ID) {
		hasPact := func(v *Version) bool { return g.Publication(v.ID, provider.ID) != nil }
		if len(g.Versions(c, VersionSpec{MainBranch: true, Latest: true}, hasPact)) > 0 {
			sels = append(sels, ConsumerVersionSelector{Consumer: c.Name, MainBranch: &yes})
		} else {
			sels = append(sels, ConsumerVersionSelector{Consumer: c.Name, Latest: &yes})
		}
	}
	return append(sels, ConsumerVersionSelector{Deployed: &yes})
}

// SelectPacts returns the pacts provider must verify for q, one per distinct pact content, ordered by
// consumer name and then consumer version. Selectors must have been validated.
func SelectPacts(g *Graph, provider *Pacticipant, q PactsForVerificationQuery) []*VerifiablePact {
	selectors := q.ConsumerVersionSelectors
	if len(selectors) == 0 {
		selectors = defaultSelectors(g, provider)
	}
	bySha := map[string]*VerifiablePact{}
	for _, s := range selectors {
		spec, fallback, desc, ok := selectorSpec(s, q)
		if !ok {
			continue
		}
		for _, c := range g.Consumers(provider.ID) {
			if s.Consumer != "" && s.Consumer != c.Name {
				continue
			}
			hasPact := func(v *Version) bool { return g.Publication(v.ID, provider.ID) != nil }
			versions, d := g.Versions(c, *spec, hasPact), desc
			if len(versions) == 0 && fallback != nil {
				versions = g.Versions(c, *fallback, hasPact)
				d = desc + " (fallback " + cmp.Or(fallback.Tag, fallback.Branch) + ")"
			}
			for _, v := range versions {
				pub := g.Publication(v.ID, provider.ID)
				vp := bySha[pub.Sha]
				if vp == nil {
					vp = &VerifiablePact{Publication: pub, Consumer: c, ConsumerVersion: v}
					bySha[pub.Sha] = vp
				} else if v.ID > vp.ConsumerVersion.ID {
					vp.Publication, vp.Consumer, vp.ConsumerVersion = pub, c, v
				}
				reason := selectorReason{Description: d, Consumer: c.Name, ConsumerVersion: v.Number}
				if !slices.Contains(vp.Reasons, reason) {
					vp.Reasons = append(vp.Reasons, reason)
				}
			}
		}
	}
	out := make([]*VerifiablePact, 0, len(bySha))
	for _, vp := range bySha {
		if q.IncludePendingStatus {
			vp.Pending = isPending(g, provider, vp.Publication.Sha, q)
		}
		out = append(out, vp)
	}
	slices.SortFunc(out, func(a, b *VerifiablePact) int {
		return cmp.Or(cmp.Compare(a.Consumer.Name, b.Consumer.Name), cmp.Compare(a.ConsumerVersion.ID, b.ConsumerVersion.ID))
	})
	return out
}

// isPending reports whether pact content sha has never been verified successfully by a provider version
// from the branch (or with one of the tags) being verified now; without either, by any provider version.
// A pending pact's failure does not fail the provider's build.
func isPending(g *Graph, provider *Pacticipant, sha string, q PactsForVerificationQuery) bool {
	for _, ver := range g.Verifications(sha) {
		if !ver.Success || ver.ProviderID != provider.ID {
			continue
		}
		pv := g.Version(ver.ProviderVersionID)
		if pv == nil {
			continue
		}
		switch {
		case q.ProviderVersionBranch != "":
			if pv.hasBranch(q.ProviderVersionBranch) {
				return false
			}
		case len(q.ProviderVersionTags) > 0:
			if slices.ContainsFunc(q.ProviderVersionTags, pv.hasTag) {
				return false
			}
		default:
			return false
		}
	}
	return true
}
