package broker

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// MatrixSelector selects versions of one pacticipant in a matrix query (q[][…] or ignore[][…]).
type MatrixSelector struct {
	Pacticipant string
	Version     string
	Tag         string
	Branch      string
	Environment string
	Latest      bool
	MainBranch  bool
}

func (s MatrixSelector) spec() VersionSpec {
	return VersionSpec{Number: s.Version, Tag: s.Tag, Branch: s.Branch, Environment: s.Environment, Latest: s.Latest, MainBranch: s.MainBranch}
}

// describe names the versions s selects, e.g. "version 1.0.0 of Foo" or "the latest version of Foo with tag prod".
func (s MatrixSelector) describe() string {
	switch {
	case s.Version != "":
		return fmt.Sprintf("version %s of %s", s.Version, s.Pacticipant)
	case s.MainBranch:
		return fmt.Sprintf("the latest version of %s from its main branch", s.Pacticipant)
	case s.Branch != "" && s.Latest:
		return fmt.Sprintf("the latest version of %s from branch %s", s.Pacticipant, s.Branch)
	case s.Branch != "":
		return fmt.Sprintf("the versions of %s from branch %s", s.Pacticipant, s.Branch)
	case s.Tag != "" && s.Latest:
		return fmt.Sprintf("the latest version of %s with tag %s", s.Pacticipant, s.Tag)
	case s.Tag != "":
		return fmt.Sprintf("the versions of %s with tag %s", s.Pacticipant, s.Tag)
	case s.Environment != "":
		return fmt.Sprintf("the version of %s currently in %s", s.Pacticipant, s.Environment)
	case s.Latest:
		return fmt.Sprintf("the latest version of %s", s.Pacticipant)
	}
	return "any version of " + s.Pacticipant
}

// MatrixQuery is a parsed GET /matrix query: the selectors for the versions being checked, the versions
// to ignore, and the target they are checked against (latest, a tag, an environment or main branches).
type MatrixQuery struct {
	Selectors   []MatrixSelector
	Ignore      []MatrixSelector
	LatestBy    string // "", "cvp", "cvpv" or "cp"
	Latest      bool
	Tag         string
	Environment string
	MainBranch  bool
	Limit       int
}

// ParseMatrixQuery parses the raw query string of GET /matrix. The clients send Rails-style repeated
// groups (q[][pacticipant]=A&q[][version]=1&q[][pacticipant]=B…) whose grouping url.Values loses, so the
// pairs are walked in order and each q[][pacticipant] starts a new selector.
func ParseMatrixQuery(raw string) (MatrixQuery, error) {
	q := MatrixQuery{Limit: 100}
	var cur *MatrixSelector
	var curList *[]MatrixSelector
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return q, fmt.Errorf("bad escape in query parameter %q", pair)
		}
		group, field, grouped := splitGroupKey(key)
		if grouped {
			list := &q.Selectors
			if group == "ignore" {
				list = &q.Ignore
			}
			if field == "pacticipant" {
				if val == "" {
					return q, fmt.Errorf("%s[][pacticipant] must not be empty", group)
				}
				*list = append(*list, MatrixSelector{Pacticipant: val})
				cur, curList = &(*list)[len(*list)-1], list
				continue
			}
			if cur == nil || curList != list {
				return q, fmt.Errorf("%s[][%s] must follow a %s[][pacticipant]", group, field, group)
			}
			if err := setSelectorField(cur, group, field, val); err != nil {
				return q, err
			}
			continue
		}
		var err error
		switch key {
		case "latestby":
			switch val {
			case "", "cvp", "cvpv", "cp":
				q.LatestBy = val
			default:
				return q, fmt.Errorf("latestby=%q: want cvp, cvpv or cp", val)
			}
		case "latest":
			q.Latest, err = parseBoolParam(key, val)
		case "mainBranch":
			q.MainBranch, err = parseBoolParam(key, val)
		case "tag":
			q.Tag = val
		case "environment":
			q.Environment = val
		case "limit":
			n, perr := strconv.Atoi(val)
			if perr != nil || n < 1 || n > 1000 {
				return q, fmt.Errorf("limit=%q: want an integer from 1 to 1000", val)
			}
			q.Limit = n
		default:
			return q, fmt.Errorf("unknown matrix parameter %q (expected q[][…], ignore[][…], latestby, latest, tag, environment, mainBranch, limit)", key)
		}
		if err != nil {
			return q, err
		}
	}
	if len(q.Selectors) == 0 {
		return q, fmt.Errorf("at least one q[][pacticipant] is required")
	}
	if q.Environment != "" && q.Tag != "" {
		return q, fmt.Errorf("use either environment or tag as the target, not both")
	}
	return q, nil
}

// splitGroupKey splits "q[][version]" (or "q[0][version]") into ("q", "version").
func splitGroupKey(key string) (group, field string, ok bool) {
	for _, g := range []string{"q", "ignore"} {
		if !strings.HasPrefix(key, g+"[") {
			continue
		}
		rest := key[len(g)+1:]
		i := strings.Index(rest, "][")
		if i < 0 || !strings.HasSuffix(rest, "]") {
			return "", "", false
		}
		if idx := rest[:i]; idx != "" && strings.Trim(idx, "0123456789") != "" {
			return "", "", false
		}
		return g, rest[i+2 : len(rest)-1], true
	}
	return "", "", false
}

func setSelectorField(s *MatrixSelector, group, field, val string) error {
	var err error
	switch field {
	case "version":
		s.Version = val
	case "tag":
		s.Tag = val
	case "branch":
		s.Branch = val
	case "environment":
		s.Environment = val
	case "latest":
		s.Latest, err = parseBoolParam(group+"[][latest]", val)
	case "mainBranch":
		s.MainBranch, err = parseBoolParam(group+"[][mainBranch]", val)
	default:
		return fmt.Errorf("unknown selector field %s[][%s]", group, field)
	}
	return err
}

func parseBoolParam(name, val string) (bool, error) {
	switch val {
	case "true":
		return true, nil
	case "false", "":
		return false, nil
	}
	return false, fmt.Errorf("%s=%q: want true or false", name, val)
}

// MatrixRow is one consumer version's pact with a provider and, when there is one, a verification of it
// by a provider version. A row without a verification means the pact was never verified by the provider
// versions considered.
type MatrixRow struct {
	Consumer        *Pacticipant
	ConsumerVersion *Version
	Provider        *Pacticipant
	ProviderVersion *Version // nil without a verification
	Publication     *Publication
	Verification    *Verification // nil when not verified
	Ignored         bool
}

// Success is the row's verification outcome; nil when unknown.
func (r *MatrixRow) Success() *bool {
	if r.Verification == nil {
		return nil
	}
	return &r.Verification.Success
}

// Notice is a message for the user, as the Pact Broker's notices: type is success, warning, error or info.
type Notice struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// MatrixResult is the matrix's answer: the rows considered, those ignored, and whether the selected
// versions may be deployed (nil: unknown, because a verification is missing).
type MatrixResult struct {
	Rows       []*MatrixRow
	Ignored    []*MatrixRow
	Deployable *bool
	Notices    []Notice
	Success    int
	Failed     int
	Unknown    int
}

// Reason joins the texts of the notices that explain the decision.
func (m *MatrixResult) Reason() string {
	var texts []string
	for _, n := range m.Notices {
		if n.Type != "warning" {
			texts = append(texts, n.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// resolvedSelector is a selector with the versions it picks; all means every version of the
// pacticipant (a selector naming only the pacticipant).
type resolvedSelector struct {
	sel      MatrixSelector
	p        *Pacticipant
	versions []*Version
	all      bool
	inferred bool
}

func (r *resolvedSelector) includes(v *Version) bool {
	return r.all || slices.ContainsFunc(r.versions, func(x *Version) bool { return x.ID == v.ID })
}

// EvaluateMatrix answers q over g. Every specified pacticipant must exist in g (callers turn unknown
// names into a 4xx first). It follows the Pact Broker: the versions of the pacticipants integrated with
// the specified ones are inferred from the target (latest, tag, environment, main branch); each
// consumer version's pact is joined with its verifications by the considered provider versions; latestby
// keeps the newest row per group; and the versions are deployable when every considered row is a
// successful verification.
func EvaluateMatrix(g *Graph, q MatrixQuery) *MatrixResult {
	res := &MatrixResult{}
	specified := map[int64]*resolvedSelector{}
	var order []int64
	var missing []MatrixSelector
	for _, s := range q.Selectors {
		p := g.Pacticipant(s.Pacticipant)
		if p == nil {
			missing = append(missing, s)
			continue
		}
		spec := s.spec()
		vs := g.Versions(p, spec, nil)
		if !spec.IsAll() && len(vs) == 0 {
			missing = append(missing, s)
		}
		r := specified[p.ID]
		if r == nil {
			r = &resolvedSelector{sel: s, p: p}
			specified[p.ID] = r
			order = append(order, p.ID)
		}
		r.all = r.all || spec.IsAll()
		r.versions = append(r.versions, vs...)
	}

	infer := q.Latest || q.Tag != "" || q.Environment != "" || q.MainBranch
	target := MatrixSelector{Tag: q.Tag, Environment: q.Environment, Latest: q.Latest, MainBranch: q.MainBranch}
	partners := map[int64]*resolvedSelector{}
	partner := func(p *Pacticipant) *resolvedSelector {
		if r := specified[p.ID]; r != nil {
			return r
		}
		if r := partners[p.ID]; r != nil {
			return r
		}
		sel := target
		sel.Pacticipant = p.Name
		r := &resolvedSelector{sel: sel, p: p, inferred: true}
		if infer {
			r.versions = g.Versions(p, sel.spec(), nil)
		} else {
			r.all = true
		}
		partners[p.ID] = r
		return r
	}

	// The integrations to check: with a target, every integration of a specified pacticipant; without
	// one, the integrations between the specified pacticipants (or all of the only one named).
	type integration struct{ consumer, provider *resolvedSelector }
	var integrations []integration
	seen := map[[2]int64]bool{}
	add := func(c, p *Pacticipant) {
		key := [2]int64{c.ID, p.ID}
		if seen[key] {
			return
		}
		_, cSpecified := specified[c.ID]
		_, pSpecified := specified[p.ID]
		if !infer && len(specified) > 1 && !(cSpecified && pSpecified) {
			return
		}
		seen[key] = true
		integrations = append(integrations, integration{partner(c), partner(p)})
	}
	for _, id := range order {
		r := specified[id]
		if r.all {
			for _, p := range g.Providers(r.p.ID, 0) {
				add(r.p, p)
			}
		} else {
			for _, v := range r.versions {
				for _, p := range g.Providers(r.p.ID, v.ID) {
					add(r.p, p)
				}
			}
		}
		for _, c := range g.Consumers(r.p.ID) {
			add(c, r.p)
		}
	}

	var rows []*MatrixRow
	for _, in := range integrations {
		cvs := in.consumer.versions
		if in.consumer.all {
			cvs = g.Versions(in.consumer.p, VersionSpec{}, nil)
		}
		for _, cv := range cvs {
			pub := g.Publication(cv.ID, in.provider.p.ID)
			if pub == nil {
				continue
			}
			verified := false
			for _, ver := range g.Verifications(pub.Sha) {
				pv := g.Version(ver.ProviderVersionID)
				if ver.ProviderID != in.provider.p.ID || pv == nil || !in.provider.includes(pv) {
					continue
				}
				verified = true
				rows = append(rows, &MatrixRow{Consumer: in.consumer.p, ConsumerVersion: cv, Provider: in.provider.p,
					ProviderVersion: pv, Publication: pub, Verification: ver})
			}
			if !verified {
				rows = append(rows, &MatrixRow{Consumer: in.consumer.p, ConsumerVersion: cv, Provider: in.provider.p, Publication: pub})
			}
		}
	}
	rows = applyLatestBy(rows, q.LatestBy)
	slices.SortFunc(rows, func(a, b *MatrixRow) int {
		return cmp.Or(cmp.Compare(a.Consumer.Name, b.Consumer.Name), cmp.Compare(b.ConsumerVersion.ID, a.ConsumerVersion.ID),
			cmp.Compare(a.Provider.Name, b.Provider.Name), cmp.Compare(providerOrder(b), providerOrder(a)),
			cmp.Compare(verificationID(b), verificationID(a)))
	})
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
	}
	for _, r := range rows {
		if ignored(q.Ignore, r) {
			r.Ignored = true
			res.Ignored = append(res.Ignored, r)
		} else {
			res.Rows = append(res.Rows, r)
		}
	}
	decide(res, q, missing, specified, partners)
	return res
}

func providerOrder(r *MatrixRow) int64 {
	if r.ProviderVersion == nil {
		return 0
	}
	return r.ProviderVersion.ID
}

func verificationID(r *MatrixRow) int64 {
	if r.Verification == nil {
		return 0
	}
	return r.Verification.ID
}

// applyLatestBy keeps the row with the newest provider version (then the newest verification) per
// group: cvpv groups by consumer version and provider version, cvp by consumer version and provider, cp
// by consumer and provider. Unverified rows are alone in their group and always kept.
func applyLatestBy(rows []*MatrixRow, by string) []*MatrixRow {
	if by == "" {
		return rows
	}
	type key struct{ c, cv, p, pv int64 }
	best := map[key]*MatrixRow{}
	var keys []key
	for _, r := range rows {
		k := key{c: r.Consumer.ID, cv: r.ConsumerVersion.ID, p: r.Provider.ID, pv: providerOrder(r)}
		switch by {
		case "cvp":
			k.pv = 0
		case "cp":
			k.cv, k.pv = 0, 0
		}
		if r.Verification == nil {
			k.pv = -r.ConsumerVersion.ID // unverified rows never merge with verified ones
		}
		cur, ok := best[k]
		if !ok {
			keys = append(keys, k)
			best[k] = r
			continue
		}
		if cmp.Or(cmp.Compare(providerOrder(r), providerOrder(cur)), cmp.Compare(verificationID(r), verificationID(cur))) > 0 {
			best[k] = r
		}
	}
	out := make([]*MatrixRow, 0, len(keys))
	for _, k := range keys {
		out = append(out, best[k])
	}
	return out
}

func ignored(ignore []MatrixSelector, r *MatrixRow) bool {
	for _, s := range ignore {
		if s.Pacticipant == r.Consumer.Name && (s.Version == "" || s.Version == r.ConsumerVersion.Number) {
			return true
		}
		if s.Pacticipant == r.Provider.Name && (s.Version == "" || (r.ProviderVersion != nil && s.Version == r.ProviderVersion.Number)) {
			return true
		}
	}
	return false
}

// decide fills the deployable flag, the counts and the notices, with the Pact Broker's rules: a
// specified version that does not exist makes it false; any considered row without a verification
// makes it unknown (nil); otherwise it is true when every considered row succeeded.
func decide(res *MatrixResult, q MatrixQuery, missing []MatrixSelector, specified, partners map[int64]*resolvedSelector) {
	var errs []Notice
	missingConsidered := 0
	for _, s := range missing {
		if slices.ContainsFunc(q.Ignore, func(i MatrixSelector) bool { return i.Pacticipant == s.Pacticipant && i.Version == "" }) {
			continue
		}
		missingConsidered++
		errs = append(errs, Notice{"error", fmt.Sprintf("There is no %s in the broker", strings.TrimPrefix(s.describe(), "the "))})
	}
	describeProvider := func(r *MatrixRow) string {
		sel := specified[r.Provider.ID]
		if sel == nil {
			sel = partners[r.Provider.ID]
		}
		if sel == nil || sel.all {
			return "any version of " + r.Provider.Name
		}
		d := sel.sel.describe()
		if sel.inferred && len(sel.versions) == 0 {
			return d + " (there is none)"
		}
		return d
	}
	for _, r := range res.Rows {
		switch s := r.Success(); {
		case s == nil:
			res.Unknown++
			errs = append(errs, Notice{"error", fmt.Sprintf("There is no verified pact between version %s of %s and %s",
				r.ConsumerVersion.Number, r.Consumer.Name, describeProvider(r))})
		case *s:
			res.Success++
		default:
			res.Failed++
			errs = append(errs, Notice{"error", fmt.Sprintf("The verification for the pact between version %s of %s and version %s of %s failed",
				r.ConsumerVersion.Number, r.Consumer.Name, r.ProviderVersion.Number, r.Provider.Name)})
		}
	}
	var deployable *bool
	switch {
	case missingConsidered > 0:
		deployable = new(bool)
	case res.Unknown > 0:
		deployable = nil
	default:
		ok := res.Failed == 0
		deployable = &ok
	}
	res.Deployable = deployable
	if len(specified) == 1 && q.Tag == "" && q.Environment == "" && !q.MainBranch {
		res.Notices = append(res.Notices, Notice{"warning", "For a more reliable result, specify the environment (or tag) you are deploying to"})
	}
	for _, s := range q.Ignore {
		if !slices.ContainsFunc(res.Ignored, func(r *MatrixRow) bool { return r.Consumer.Name == s.Pacticipant || r.Provider.Name == s.Pacticipant }) {
			res.Notices = append(res.Notices, Notice{"info", fmt.Sprintf("Ignoring %s, which is not part of any row", s.describe())})
		}
	}
	switch {
	case len(errs) > 0:
		res.Notices = append(res.Notices, dedupeNotices(errs)...)
	case len(res.Rows) == 0:
		res.Notices = append(res.Notices, Notice{"success", "There are no missing dependencies"})
	default:
		res.Notices = append(res.Notices, Notice{"success", "All required verification results are published and successful"})
	}
}

func dedupeNotices(ns []Notice) []Notice {
	var out []Notice
	for _, n := range ns {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
