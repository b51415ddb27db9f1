package broker

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// obj is a JSON object of a HAL representation.
type obj = map[string]any

// hal renders the broker's resources as the Pact Broker does, with hrefs under base (the broker's public
// URL). Names in paths are escaped; templated links keep their {placeholders}.
type hal struct{ base string }

func esc(s string) string { return url.PathEscape(s) }

func (h hal) href(path string) obj { return obj{"href": h.base + path} }

func (h hal) named(path, title, name string) obj {
	return obj{"href": h.base + path, "title": title, "name": name}
}

func (h hal) templated(path, title string) obj {
	return obj{"href": h.base + path, "title": title, "templated": true}
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ---- paths ---------------------------------------------------------------------------------------

func pacticipantPath(p string) string { return "/pacticipants/" + esc(p) }
func versionPath(p, v string) string  { return pacticipantPath(p) + "/versions/" + esc(v) }
func tagPath(p, v, t string) string   { return versionPath(p, v) + "/tags/" + esc(t) }
func branchPath(p, b string) string   { return pacticipantPath(p) + "/branches/" + esc(b) }
func branchVersionPath(p, b, v string) string {
	return branchPath(p, b) + "/versions/" + esc(v)
}
func pactVersionPath(provider, consumer, sha string) string {
	return "/pacts/provider/" + esc(provider) + "/consumer/" + esc(consumer) + "/pact-version/" + esc(sha)
}
func consumerVersionPactPath(provider, consumer, v string) string {
	return "/pacts/provider/" + esc(provider) + "/consumer/" + esc(consumer) + "/version/" + esc(v)
}
func verificationPath(provider, consumer, sha string, id int64) string {
	return pactVersionPath(provider, consumer, sha) + "/verification-results/" + strconv.FormatInt(id, 10)
}
func environmentPath(uuid string) string     { return "/environments/" + esc(uuid) }
func deployedVersionPath(uuid string) string { return "/deployed-versions/" + esc(uuid) }
func recordDeploymentPath(p, v, envUUID string) string {
	return versionPath(p, v) + "/deployed-versions/environment/" + esc(envUUID)
}

// ---- resources -----------------------------------------------------------------------------------

// index lists every relation the clients look up; each one is served.
func (h hal) index() obj {
	return obj{"_links": obj{
		"self":                 h.named("", "Index", "index"),
		"pb:publish-contracts": h.named("/contracts/publish", "Publish contracts", "publish-contracts"),
		"pb:publish-pact": h.templated("/pacts/provider/{provider}/consumer/{consumer}/version/{consumerApplicationVersion}",
			"Publish a pact"),
		"pb:latest-pact-versions":           h.named("/pacts/latest", "Latest pact versions", "latest-pact-versions"),
		"pb:pacticipants":                   h.named("/pacticipants", "Pacticipants", "pacticipants"),
		"pb:pacticipant":                    h.templated("/pacticipants/{pacticipant}", "Fetch pacticipant by name"),
		"pb:latest-provider-pacts":          h.templated("/pacts/provider/{provider}/latest", "Latest pacts by provider"),
		"pb:latest-provider-pacts-with-tag": h.templated("/pacts/provider/{provider}/latest/{tag}", "Latest pacts for provider with the specified tag"),
		"pb:provider-pacts-for-verification": h.templated("/pacts/provider/{provider}/for-verification",
			"Pact versions to be verified for the specified provider"),
		"pb:latest-version":        h.templated("/pacticipants/{pacticipant}/latest-version", "Latest pacticipant version"),
		"pb:latest-tagged-version": h.templated("/pacticipants/{pacticipant}/latest-version/{tag}", "Latest pacticipant version with the specified tag"),
		"pb:pacticipant-version":   h.templated("/pacticipants/{pacticipant}/versions/{version}", "Get, create or delete a pacticipant version"),
		"pb:pacticipant-version-tag": h.templated("/pacticipants/{pacticipant}/versions/{version}/tags/{tag}",
			"Get, create or delete a tag for a version"),
		"pb:pacticipant-branch-version": h.templated("/pacticipants/{pacticipant}/branches/{branch}/versions/{version}",
			"Get or add/create a pacticipant version for a branch"),
		"pb:environments": h.named("/environments", "Environments", "environments"),
		"pb:environment":  h.templated("/environments/{uuid}", "Environment"),
		"pb:matrix":       h.named("/matrix", "The matrix of verification results (can-i-deploy)", "matrix"),
	}}
}

func (h hal) pacticipant(p *Pacticipant) obj {
	path := pacticipantPath(p.Name)
	out := obj{
		"name":        p.Name,
		"displayName": displayName(p),
		"createdAt":   ts(p.CreatedAt),
		"updatedAt":   ts(p.UpdatedAt),
		"_links": obj{
			"self":              h.named(path, "Pacticipant", p.Name),
			"pb:versions":       h.href(path + "/versions"),
			"pb:version":        h.templated(path+"/versions/{version}", "Get, create or delete a pacticipant version"),
			"pb:version-tag":    h.templated(path+"/versions/{version}/tags/{tag}", "Get, create or delete a tag for a version"),
			"pb:branch-version": h.templated(path+"/branches/{branch}/versions/{version}", "Get or add/create a version for a branch"),
			"pb:latest-version": h.href(path + "/latest-version"),
		},
	}
	if p.MainBranch != "" {
		out["mainBranch"] = p.MainBranch
	}
	if p.RepositoryURL != "" {
		out["repositoryUrl"] = p.RepositoryURL
	}
	return out
}

func displayName(p *Pacticipant) string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return p.Name
}

func (h hal) pacticipants(ps []*Pacticipant) obj {
	items := make([]obj, len(ps))
	for i, p := range ps {
		items[i] = h.pacticipant(p)
	}
	return obj{"_embedded": obj{"pacticipants": items}, "_links": obj{"self": h.href("/pacticipants")}}
}

// version renders a version; envs become its pb:record-deployment links, one per environment.
func (h hal) version(v *Version, envs []*Environment) obj {
	path := versionPath(v.Pacticipant, v.Number)
	branches := make([]obj, len(v.Branches))
	for i, b := range v.Branches {
		branches[i] = obj{"name": b, "_links": obj{"self": h.href(branchVersionPath(v.Pacticipant, b, v.Number))}}
	}
	tags := make([]obj, len(v.Tags))
	for i, t := range v.Tags {
		tags[i] = obj{"name": t, "_links": obj{"self": h.href(tagPath(v.Pacticipant, v.Number, t))}}
	}
	deploy := make([]obj, 0, len(envs))
	for _, e := range envs {
		deploy = append(deploy, h.named(recordDeploymentPath(v.Pacticipant, v.Number, e.UUID),
			"Record deployment to "+envDisplayName(e), e.Name))
	}
	out := obj{
		"number":    v.Number,
		"createdAt": ts(v.CreatedAt),
		"_embedded": obj{"branchVersions": branches, "tags": tags},
		"_links": obj{
			"self":                 h.named(path, "Version", v.Number),
			"pb:pacticipant":       h.named(pacticipantPath(v.Pacticipant), "Pacticipant", v.Pacticipant),
			"pb:tag":               h.templated(path+"/tags/{tag}", "Get, create or delete a tag for this pacticipant version"),
			"pb:record-deployment": deploy,
		},
	}
	if len(v.Branches) > 0 {
		out["branch"] = v.Branches[len(v.Branches)-1]
	}
	if v.BuildURL != "" {
		out["buildUrl"] = v.BuildURL
	}
	return out
}

func (h hal) versions(p *Pacticipant, vs []*Version) obj {
	items := make([]obj, len(vs))
	for i, v := range vs {
		items[i] = h.version(v, nil)
	}
	return obj{"_embedded": obj{"versions": items}, "_links": obj{
		"self":           h.href(pacticipantPath(p.Name) + "/versions"),
		"pb:pacticipant": h.named(pacticipantPath(p.Name), "Pacticipant", p.Name),
	}}
}

func (h hal) tag(v *Version, tag string) obj {
	return obj{"name": tag, "_links": obj{
		"self":           h.named(tagPath(v.Pacticipant, v.Number, tag), "Tag", tag),
		"pb:version":     h.named(versionPath(v.Pacticipant, v.Number), "Version", v.Number),
		"pb:pacticipant": h.named(pacticipantPath(v.Pacticipant), "Pacticipant", v.Pacticipant),
	}}
}

func (h hal) branchVersion(v *Version, branch string) obj {
	return obj{"branch": branch, "number": v.Number, "_links": obj{
		"self":           h.named(branchVersionPath(v.Pacticipant, branch, v.Number), "Branch version", v.Number),
		"pb:version":     h.named(versionPath(v.Pacticipant, v.Number), "Version", v.Number),
		"pb:pacticipant": h.named(pacticipantPath(v.Pacticipant), "Pacticipant", v.Pacticipant),
	}}
}

// publishResult is the answer to POST /contracts/publish, shaped as the CLI parses it.
func (h hal) publishResult(r *PublishResult) obj {
	p, v := r.Pacticipant, r.Version
	logs := make([]obj, len(r.Notices))
	for i, n := range r.Notices {
		logs[i] = obj{"level": "info", "message": n.Text, "deprecationWarning": "Replaced by notices"}
	}
	tags := make([]obj, len(v.Tags))
	for i, t := range v.Tags {
		tags[i] = h.named(tagPath(p.Name, v.Number, t), "Tag", t)
	}
	contracts := make([]obj, len(r.Contracts))
	for i, c := range r.Contracts {
		contracts[i] = h.named(pactVersionPath(c.Provider.Name, p.Name, c.Publication.Sha), "Pact",
			fmt.Sprintf("Pact between %s (%s) and %s", p.Name, v.Number, c.Provider.Name))
	}
	return obj{
		"notices": r.Notices,
		"logs":    logs,
		"_embedded": obj{
			"pacticipant": obj{"name": p.Name, "_links": obj{"self": h.href(pacticipantPath(p.Name))}},
			"version":     obj{"number": v.Number, "_links": obj{"self": h.named(versionPath(p.Name, v.Number), "Version", v.Number)}},
		},
		"_links": obj{
			"pb:pacticipant":              h.named(pacticipantPath(p.Name), "Pacticipant", p.Name),
			"pb:pacticipant-version":      h.named(versionPath(p.Name, v.Number), "Pacticipant version", v.Number),
			"pb:pacticipant-version-tags": tags,
			"pb:contracts":                contracts,
		},
	}
}

// pact renders a pact: its content with the broker's _links and createdAt merged in, as the Pact Broker
// serves it; the verifier reads pb:publish-verification-results and pb:provider from it.
func (h hal) pact(p *Pact) (obj, error) {
	var doc obj
	if err := json.Unmarshal(p.Content.Content, &doc); err != nil {
		return nil, fmt.Errorf("stored pact %s: %w", p.Content.Sha, err)
	}
	c, pr, sha := p.Consumer.Name, p.Provider.Name, p.Content.Sha
	self := pactVersionPath(pr, c, sha)
	doc["createdAt"] = ts(p.Publication.CreatedAt)
	doc["_links"] = obj{
		"self":                h.named(self, "Pact", fmt.Sprintf("Pact between %s (%s) and %s", c, p.ConsumerVersion.Number, pr)),
		"pb:consumer":         h.named(pacticipantPath(c), "Consumer", c),
		"pb:consumer-version": h.named(versionPath(c, p.ConsumerVersion.Number), "Consumer version", p.ConsumerVersion.Number),
		"pb:provider":         h.named(pacticipantPath(pr), "Provider", pr),
		"pb:pact-version":     h.named(self, "Pact content version permalink", sha),
		"pb:latest-pact-version": h.named("/pacts/provider/"+esc(pr)+"/consumer/"+esc(c)+"/latest",
			"Latest version of this pact", "latest"),
		"pb:publish-verification-results": h.named(self+"/verification-results", "Publish verification results", "publish-verification-results"),
		"pb:latest-verification-results": h.named(self+"/verification-results/latest", "Latest verification result for this pact",
			"latest-verification-results"),
	}
	return doc, nil
}

// pactSummary is a pact in a list: its parties, consumer version and link.
func (h hal) pactSummary(p *Pact) obj {
	c, pr := p.Consumer.Name, p.Provider.Name
	return obj{
		"createdAt": ts(p.Publication.CreatedAt),
		"_embedded": obj{
			"consumer": obj{"name": c, "_embedded": obj{"version": obj{"number": p.ConsumerVersion.Number}},
				"_links": obj{"self": h.href(pacticipantPath(c))}},
			"provider": obj{"name": pr, "_links": obj{"self": h.href(pacticipantPath(pr))}},
		},
		"_links": obj{"self": h.named(pactVersionPath(pr, c, p.Content.Sha), "Pact",
			fmt.Sprintf("Pact between %s (%s) and %s", c, p.ConsumerVersion.Number, pr))},
	}
}

func (h hal) pactLinks(pacts []*Pact) []obj {
	out := make([]obj, len(pacts))
	for i, p := range pacts {
		out[i] = h.named(pactVersionPath(p.Provider.Name, p.Consumer.Name, p.Content.Sha),
			"Pact between "+p.Consumer.Name+" ("+p.ConsumerVersion.Number+") and "+p.Provider.Name, p.Consumer.Name)
	}
	return out
}

func (h hal) providerPacts(provider *Pacticipant, pacts []*Pact, self string) obj {
	links := h.pactLinks(pacts)
	return obj{"_links": obj{
		"self":        h.href(self),
		"pb:provider": h.named(pacticipantPath(provider.Name), "Provider", provider.Name),
		"pb:pacts":    links,
		"pacts":       links,
	}}
}

func (h hal) latestPacts(pacts []*Pact) obj {
	items := make([]obj, len(pacts))
	for i, p := range pacts {
		items[i] = h.pactSummary(p)
	}
	return obj{"pacts": items, "_links": obj{"self": h.href("/pacts/latest")}}
}

func (h hal) forVerificationSelf(provider string) obj {
	return obj{"_links": obj{"self": h.named("/pacts/provider/"+esc(provider)+"/for-verification", "Pacts to be verified", "for-verification")}}
}

// pactsForVerification renders the verifier's list. verificationProperties always carries notices (with
// string values only): without them the Rust verifier cannot parse the entry and reports no pacts.
func (h hal) pactsForVerification(provider *Pacticipant, pacts []*VerifiablePact, q PactsForVerificationQuery) obj {
	items := make([]obj, len(pacts))
	for i, vp := range pacts {
		href := h.base + pactVersionPath(provider.Name, vp.Consumer.Name, vp.Publication.Sha)
		notices := make([]map[string]string, 0, len(vp.Reasons)+1)
		for _, r := range vp.Reasons {
			notices = append(notices, map[string]string{"when": "before_verification", "text": fmt.Sprintf(
				"The pact at %s is being verified because the pact content belongs to the consumer version matching the following criterion:\n    * %s (%s %s)",
				href, r.Description, r.Consumer, r.ConsumerVersion)})
		}
		props := obj{"notices": notices}
		if q.IncludePendingStatus {
			props["pending"] = vp.Pending
			state := "This pact is not in pending state: it has been successfully verified by a version of " + provider.Name +
				" from this branch or with these tags before, so a failure will fail the build."
			if vp.Pending {
				state = "This pact is in pending state for this version of " + provider.Name + ": no successful verification result " +
					"from this branch or with these tags has been published yet, so a failure will not fail the build."
			}
			notices = append(notices, map[string]string{"when": "before_verification", "text": state})
			props["notices"] = notices
		}
		items[i] = obj{
			"shortDescription":       vp.ShortDescription(),
			"verificationProperties": props,
			"_links": obj{"self": obj{"href": href,
				"name": fmt.Sprintf("Pact between %s (%s) and %s", vp.Consumer.Name, vp.ConsumerVersion.Number, provider.Name)}},
		}
	}
	out := h.forVerificationSelf(provider.Name)
	out["_embedded"] = obj{"pacts": items}
	return out
}

func (h hal) verification(r *VerificationRecord) obj {
	out := obj{
		"providerName":               r.Provider,
		"providerApplicationVersion": r.ProviderVersion,
		"success":                    r.Success,
		"verificationDate":           ts(r.CreatedAt),
		"testResults":                r.TestResults,
		"_links": obj{
			"self":                h.named(verificationPath(r.Provider, r.Consumer, r.Sha, r.ID), "Verification result", strconv.FormatInt(r.ID, 10)),
			"pb:pact-version":     h.named(pactVersionPath(r.Provider, r.Consumer, r.Sha), "Pact", r.Sha),
			"pb:provider-version": h.named(versionPath(r.Provider, r.ProviderVersion), "Provider version", r.ProviderVersion),
		},
	}
	if string(r.VerifiedBy) != "null" {
		out["verifiedBy"] = r.VerifiedBy
	}
	if r.BuildURL != "" {
		out["buildUrl"] = r.BuildURL
	}
	return out
}

func envDisplayName(e *Environment) string {
	if e.DisplayName != "" {
		return e.DisplayName
	}
	return e.Name
}

func (h hal) environment(e *Environment) obj {
	path := environmentPath(e.UUID)
	out := obj{
		"uuid":        e.UUID,
		"name":        e.Name,
		"displayName": envDisplayName(e),
		"production":  e.Production,
		"createdAt":   ts(e.CreatedAt),
		"updatedAt":   ts(e.UpdatedAt),
		"_links": obj{
			"self": h.named(path, "Environment", e.Name),
			"pb:currently-deployed-deployed-versions": h.named(path+"/deployed-versions/currently-deployed",
				"Versions currently deployed to "+envDisplayName(e), "currently-deployed"),
			"pb:environments": h.href("/environments"),
		},
	}
	if len(e.Contacts) > 0 && string(e.Contacts) != "null" {
		out["contacts"] = e.Contacts
	}
	return out
}

func (h hal) environments(es []*Environment) obj {
	items := make([]obj, len(es))
	for i, e := range es {
		items[i] = h.environment(e)
	}
	return obj{"_embedded": obj{"environments": items}, "_links": obj{"self": h.href("/environments")}}
}

func (h hal) deployment(d *DeploymentRecord) obj {
	var instance any
	if d.ApplicationInstance != "" {
		instance = d.ApplicationInstance
	}
	out := obj{
		"uuid":                d.UUID,
		"currentlyDeployed":   d.UndeployedAt == nil,
		"applicationInstance": instance,
		"target":              instance,
		"createdAt":           ts(d.CreatedAt),
		"_embedded": obj{
			"pacticipant": obj{"name": d.Pacticipant, "_links": obj{"self": h.href(pacticipantPath(d.Pacticipant))}},
			"version":     obj{"number": d.Version, "_links": obj{"self": h.href(versionPath(d.Pacticipant, d.Version))}},
			"environment": obj{"uuid": d.EnvironmentUUID, "name": d.Environment, "_links": obj{"self": h.href(environmentPath(d.EnvironmentUUID))}},
		},
		"_links": obj{
			"self":           h.named(deployedVersionPath(d.UUID), "Deployed version", d.UUID),
			"pb:version":     h.named(versionPath(d.Pacticipant, d.Version), "Version", d.Version),
			"pb:environment": h.named(environmentPath(d.EnvironmentUUID), "Environment", d.Environment),
		},
	}
	if d.UndeployedAt != nil {
		out["undeployedAt"] = ts(*d.UndeployedAt)
	}
	return out
}

func (h hal) deployments(self string, ds []*DeploymentRecord) obj {
	items := make([]obj, len(ds))
	for i, d := range ds {
		items[i] = h.deployment(d)
	}
	return obj{"_embedded": obj{"deployedVersions": items}, "_links": obj{"self": h.href(self)}}
}

// matrix renders a matrix answer as the CLI's can-i-deploy reads it.
func (h hal) matrix(m *MatrixResult) obj {
	rows := make([]obj, 0, len(m.Rows)+len(m.Ignored))
	for _, r := range append(append([]*MatrixRow(nil), m.Rows...), m.Ignored...) {
		c, p := r.Consumer.Name, r.Provider.Name
		row := obj{
			"consumer": obj{"name": c, "version": obj{"number": r.ConsumerVersion.Number, "branches": r.ConsumerVersion.Branches,
				"tags": r.ConsumerVersion.Tags, "_links": obj{"self": h.href(versionPath(c, r.ConsumerVersion.Number))}},
				"_links": obj{"self": h.href(pacticipantPath(c))}},
			"provider": obj{"name": p, "version": nil, "_links": obj{"self": h.href(pacticipantPath(p))}},
			"pact": obj{"createdAt": ts(r.Publication.CreatedAt),
				"_links": obj{"self": h.href(pactVersionPath(p, c, r.Publication.Sha))}},
			"verificationResult": nil,
		}
		if r.ProviderVersion != nil {
			row["provider"].(obj)["version"] = obj{"number": r.ProviderVersion.Number, "branches": r.ProviderVersion.Branches,
				"tags": r.ProviderVersion.Tags, "_links": obj{"self": h.href(versionPath(p, r.ProviderVersion.Number))}}
		}
		if r.Verification != nil {
			row["verificationResult"] = obj{"success": r.Verification.Success, "verifiedAt": ts(r.Verification.CreatedAt),
				"_links": obj{"self": h.href(verificationPath(p, c, r.Publication.Sha, r.Verification.ID))}}
		}
		if r.Ignored {
			row["ignored"] = true
		}
		rows = append(rows, row)
	}
	summary := obj{"deployable": m.Deployable, "reason": m.Reason(), "success": m.Success, "failed": m.Failed, "unknown": m.Unknown}
	if len(m.Ignored) > 0 {
		summary["ignored"] = len(m.Ignored)
	}
	notices := m.Notices
	if notices == nil {
		notices = []Notice{}
	}
	return obj{"summary": summary, "notices": notices, "matrix": rows}
}
