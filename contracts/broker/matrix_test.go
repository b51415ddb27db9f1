package broker

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMatrixQuery(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      MatrixQuery
	}{
		{"can-i-deploy without a target",
			"q[][pacticipant]=web&q[][version]=1.0.0&latestby=cvp&latest=true",
			MatrixQuery{Selectors: []MatrixSelector{{Pacticipant: "web", Version: "1.0.0"}}, LatestBy: "cvp", Latest: true, Limit: 100}},
		{"to an environment",
			"q[][pacticipant]=web&q[][version]=1&latestby=cvpv&environment=production",
			MatrixQuery{Selectors: []MatrixSelector{{Pacticipant: "web", Version: "1"}}, LatestBy: "cvpv", Environment: "production", Limit: 100}},
		{"groups follow q[][pacticipant] in order",
			"q[][pacticipant]=web&q[][latest]=true&q[][tag]=prod&q[][pacticipant]=catalog&q[][branch]=main&q[][mainBranch]=true&latestby=cvpv",
			MatrixQuery{Selectors: []MatrixSelector{{Pacticipant: "web", Latest: true, Tag: "prod"},
				{Pacticipant: "catalog", Branch: "main", MainBranch: true}}, LatestBy: "cvpv", Limit: 100}},
		{"encoded brackets and values",
			"q%5B%5D%5Bpacticipant%5D=shop+web&q%5B%5D%5Bversion%5D=1%2B2&ignore%5B%5D%5Bpacticipant%5D=catalog&ignore[][version]=3&tag=prod&limit=5",
			MatrixQuery{Selectors: []MatrixSelector{{Pacticipant: "shop web", Version: "1+2"}},
				Ignore: []MatrixSelector{{Pacticipant: "catalog", Version: "3"}}, Tag: "prod", Limit: 5}},
		{"indexed groups",
			"q[0][pacticipant]=web&q[0][version]=1&mainBranch=true",
			MatrixQuery{Selectors: []MatrixSelector{{Pacticipant: "web", Version: "1"}}, MainBranch: true, Limit: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMatrixQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	for _, raw := range []string{
		"", "latestby=cvp", "q[][version]=1", "q[][pacticipant]=", "q[][pacticipant]=a&q[][colour]=red",
		"q[][pacticipant]=a&latestby=abc", "q[][pacticipant]=a&latest=yes", "q[][pacticipant]=a&limit=0",
		"q[][pacticipant]=a&unknown=1", "q[][pacticipant]=a&tag=x&environment=y", "q[][pacticipant]=%zz",
		"q[][pacticipant]=a&ignore[][version]=1",
	} {
		if _, err := ParseMatrixQuery(raw); err == nil {
			t.Errorf("ParseMatrixQuery(%q): no error", raw)
		}
	}
}

func deployableString(d *bool) string {
	if d == nil {
		return "null"
	}
	if *d {
		return "true"
	}
	return "false"
}

func TestEvaluateMatrix(t *testing.T) {
	type fixture struct {
		b            *graphBuilder
		web, catalog *Pacticipant
		v1, v2, v3   *Version // web: v1 and v3 publish the same content s1, v2 publishes s2
		c1, c2, c3   *Version // catalog, oldest first
	}
	setup := func() *fixture {
		b := &graphBuilder{}
		f := &fixture{b: b, web: b.pacticipant("web", "main"), catalog: b.pacticipant("catalog", "main")}
		f.v1 = b.version(f.web, "v1", "branch:main")
		b.pact(f.v1, f.catalog, "s1")
		f.v2 = b.version(f.web, "v2", "branch:feat")
		b.pact(f.v2, f.catalog, "s2")
		f.v3 = b.version(f.web, "v3", "branch:main")
		b.pact(f.v3, f.catalog, "s1")
		f.c1 = b.version(f.catalog, "c1", "branch:main", "tag:prod")
		f.c2 = b.version(f.catalog, "c2", "branch:main")
		f.c3 = b.version(f.catalog, "c3", "branch:feat")
		return f
	}
	const consumerNoTarget = "q[][pacticipant]=web&q[][version]=%s&latestby=cvp&latest=true"
	for _, tc := range []struct {
		name       string
		arrange    func(f *fixture)
		query      string
		deployable string
		counts     [3]int // success, failed, unknown
		reason     string // a part of the reason
	}{
		{"verified by the latest provider version", func(f *fixture) { f.b.verify("s1", f.c3, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvp&latest=true", "true", [3]int{1, 0, 0}, "All required verification results"},
		{"failed by the latest provider version", func(f *fixture) { f.b.verify("s1", f.c1, true); f.b.verify("s1", f.c3, false) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvp&latest=true", "false", [3]int{0, 1, 0}, "version c3 of catalog failed"},
		{"never verified by the latest provider version", func(f *fixture) { f.b.verify("s1", f.c1, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvp&latest=true", "null", [3]int{0, 0, 1}, "the latest version of catalog"},
		{"new content not verified", func(f *fixture) { f.b.verify("s1", f.c3, true) },
			"q[][pacticipant]=web&q[][version]=v2&latestby=cvp&latest=true", "null", [3]int{0, 0, 1}, "no verified pact between version v2"},
		{"the same content keeps its verification", func(f *fixture) { f.b.verify("s1", f.c3, true) },
			"q[][pacticipant]=web&q[][version]=v3&latestby=cvp&latest=true", "true", [3]int{1, 0, 0}, ""},
		{"unknown version", func(f *fixture) {},
			"q[][pacticipant]=web&q[][version]=v9&latestby=cvp&latest=true", "false", [3]int{}, "There is no version v9 of web"},
		{"to an environment where the provider version verified it", func(f *fixture) {
			f.b.verify("s1", f.c1, true)
			f.b.deploy(f.c1, "production")
		}, "q[][pacticipant]=web&q[][version]=v1&latestby=cvpv&environment=production", "true", [3]int{1, 0, 0}, ""},
		{"to an environment without the provider", func(f *fixture) { f.b.verify("s1", f.c1, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvpv&environment=production", "null", [3]int{0, 0, 1}, "currently in production (there is none)"},
		{"provider to an environment where the consumer's pact is verified", func(f *fixture) {
			f.b.deploy(f.v1, "production")
			f.b.verify("s1", f.c2, true)
		}, "q[][pacticipant]=catalog&q[][version]=c2&latestby=cvpv&environment=production", "true", [3]int{1, 0, 0}, ""},
		{"provider version that never verified the deployed consumer's pact", func(f *fixture) {
			f.b.deploy(f.v1, "production")
			f.b.verify("s1", f.c2, true)
		}, "q[][pacticipant]=catalog&q[][version]=c3&latestby=cvpv&environment=production", "null", [3]int{0, 0, 1}, "version c3 of catalog"},
		{"provider to an environment without consumers", func(f *fixture) {},
			"q[][pacticipant]=catalog&q[][version]=c3&latestby=cvpv&environment=production", "true", [3]int{}, "no missing dependencies"},
		{"ignoring the failing provider", func(f *fixture) { f.b.verify("s1", f.c3, false) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvp&latest=true&ignore[][pacticipant]=catalog", "true", [3]int{}, ""},
		{"two versions checked together", func(f *fixture) { f.b.verify("s1", f.c1, true); f.b.verify("s1", f.c3, false) },
			"q[][pacticipant]=web&q[][version]=v1&q[][pacticipant]=catalog&q[][version]=c1&latestby=cvpv", "true", [3]int{1, 0, 0}, ""},
		{"cvp keeps only the newest provider version", func(f *fixture) { f.b.verify("s1", f.c1, false); f.b.verify("s1", f.c2, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvp", "true", [3]int{1, 0, 0}, ""},
		{"cvpv keeps every provider version", func(f *fixture) { f.b.verify("s1", f.c1, false); f.b.verify("s1", f.c2, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvpv", "false", [3]int{1, 1, 0}, "version c1 of catalog failed"},
		{"cvpv keeps the newest verification of a provider version", func(f *fixture) { f.b.verify("s1", f.c2, false); f.b.verify("s1", f.c2, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvpv", "true", [3]int{1, 0, 0}, ""},
		{"with the latest provider version tagged prod", func(f *fixture) { f.b.verify("s1", f.c1, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvpv&tag=prod&latest=true", "true", [3]int{1, 0, 0}, ""},
		{"with the provider's main branch", func(f *fixture) { f.b.verify("s1", f.c3, true) },
			"q[][pacticipant]=web&q[][version]=v1&latestby=cvpv&mainBranch=true&latest=true", "null", [3]int{0, 0, 1}, "from its main branch"},
		{"consumer selected by branch", func(f *fixture) { f.b.verify("s2", f.c3, true) },
			"q[][pacticipant]=web&q[][branch]=feat&q[][latest]=true&latestby=cvp&latest=true", "true", [3]int{1, 0, 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup()
			tc.arrange(f)
			q, err := ParseMatrixQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			res := EvaluateMatrix(f.b.graph(), q)
			if got := deployableString(res.Deployable); got != tc.deployable {
				t.Errorf("deployable = %s, want %s (reason %q)", got, tc.deployable, res.Reason())
			}
			if got := [3]int{res.Success, res.Failed, res.Unknown}; got != tc.counts {
				t.Errorf("success/failed/unknown = %v, want %v", got, tc.counts)
			}
			if !strings.Contains(res.Reason(), tc.reason) {
				t.Errorf("reason %q does not mention %q", res.Reason(), tc.reason)
			}
		})
	}
}
