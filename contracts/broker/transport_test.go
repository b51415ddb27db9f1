package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestIndexIsHALWithEveryRelationTheClientsUse(t *testing.T) {
	b := startBroker(t, Config{})
	resp, err := http.Get(b.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/hal+json") {
		t.Errorf("Content-Type = %q, want application/hal+json", ct)
	}
	_, index := b.call(t, "GET", "/", nil)
	templated := map[string]string{
		"pb:provider-pacts-for-verification": "/pacts/provider/{provider}/for-verification",
		"pb:pacticipant":                     "/pacticipants/{pacticipant}",
		"pb:pacticipant-version":             "/pacticipants/{pacticipant}/versions/{version}",
		"pb:latest-provider-pacts":           "/pacts/provider/{provider}/latest",
		"pb:environment":                     "/environments/{uuid}",
	}
	for rel, path := range templated {
		link := dig(t, index, "_links", rel)
		if dig(t, link, "href") != b.URL+path || dig(t, link, "templated") != true {
			t.Errorf("%s = %v, want templated %s", rel, link, b.URL+path)
		}
	}
	for rel, path := range map[string]string{"pb:publish-contracts": "/contracts/publish", "pb:environments": "/environments",
		"pb:pacticipants": "/pacticipants"} {
		if got := dig(t, index, "_links", rel, "href"); got != b.URL+path {
			t.Errorf("%s href = %v, want %s", rel, got, b.URL+path)
		}
	}
}

func TestPublicURLIsTheBaseOfEveryHref(t *testing.T) {
	b := startBroker(t, Config{PublicURL: "https://broker.example.test/base/"})
	_, index := b.call(t, "GET", "/", nil)
	if got := dig(t, index, "_links", "pb:environments", "href"); got != "https://broker.example.test/base/environments" {
		t.Errorf("href = %v", got)
	}
}

func TestVersionCarriesARecordDeploymentLinkPerEnvironment(t *testing.T) {
	b := startBroker(t, Config{})
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "main", nil, "catalog", samplePact("shop-web", "catalog", "mug")))
	env := b.must(t, 201, "POST", "/environments", map[string]any{"name": "production", "production": true})
	v := b.must(t, 200, "GET", "/pacticipants/shop-web/versions/1", nil)
	links, _ := dig(t, v, "_links", "pb:record-deployment").([]any)
	if len(links) != 1 || dig(t, links[0], "name") != "production" ||
		dig(t, links[0], "href") != b.URL+"/pacticipants/shop-web/versions/1/deployed-versions/environment/"+env["uuid"].(string) {
		t.Fatalf("pb:record-deployment = %v", links)
	}
	dep := b.must(t, 201, "POST", strings.TrimPrefix(dig(t, links[0], "href").(string), b.URL), map[string]any{})
	if dep["currentlyDeployed"] != true {
		t.Errorf("deployment = %v", dep)
	}
	cur := b.must(t, 200, "GET", "/environments/"+env["uuid"].(string)+"/deployed-versions/currently-deployed", nil)
	if n := len(dig(t, cur, "_embedded", "deployedVersions").([]any)); n != 1 {
		t.Errorf("currently deployed: %d versions, want 1", n)
	}
	// A newer version deployed to the same environment replaces the old one.
	b.must(t, 201, "PUT", "/pacticipants/shop-web/versions/2", map[string]any{})
	b.must(t, 201, "POST", "/pacticipants/shop-web/versions/2/deployed-versions/environment/"+env["uuid"].(string), nil)
	cur = b.must(t, 200, "GET", "/environments/"+env["uuid"].(string)+"/deployed-versions/currently-deployed?pacticipant=shop-web", nil)
	deployed := dig(t, cur, "_embedded", "deployedVersions").([]any)
	if len(deployed) != 1 || dig(t, deployed[0], "_embedded", "version", "number") != "2" {
		t.Errorf("currently deployed after redeploy = %v", deployed)
	}
	b.must(t, 200, "PATCH", "/deployed-versions/"+dig(t, deployed[0], "uuid").(string), map[string]any{"currentlyDeployed": false})
	cur = b.must(t, 200, "GET", "/environments/"+env["uuid"].(string)+"/deployed-versions/currently-deployed", nil)
	if n := len(dig(t, cur, "_embedded", "deployedVersions").([]any)); n != 0 {
		t.Errorf("after undeploy: %d versions deployed, want 0", n)
	}
}

func TestRepublishingDifferentContentForTheSameVersionConflicts(t *testing.T) {
	b := startBroker(t, Config{})
	first := samplePact("shop-web", "catalog", "mug")
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "main", nil, "catalog", first))
	// The same content again is fine (CI retries).
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "main", nil, "catalog", first))
	status, body := b.call(t, "POST", "/contracts/publish", publishBody("shop-web", "1", "main", nil, "catalog", samplePact("shop-web", "catalog", "cup")))
	if status != http.StatusConflict || dig(t, body, "error", "code") != "pact_content_changed" {
		t.Fatalf("re-publish: %d %v, want 409 pact_content_changed", status, body)
	}
	if errs, _ := body["errors"].([]any); len(errs) != 1 {
		t.Errorf("errors = %v, want the message for the Pact CLI", body["errors"])
	}
	pact := b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/version/1", nil)
	if got := dig(t, pact, "interactions", 0, "response", "body", "name"); got != "mug" {
		t.Errorf("stored pact changed: name = %v", got)
	}
}

func TestMergePublishingAddsInteractions(t *testing.T) {
	b := startBroker(t, Config{})
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "", nil, "catalog", samplePact("shop-web", "catalog", "mug")))
	other := []byte(`{"consumer":{"name":"shop-web"},"provider":{"name":"catalog"},"interactions":[{"description":"a request for all products",
		"request":{"method":"GET","path":"/products"},"response":{"status":200}}],"metadata":{"pactSpecification":{"version":"3.0.0"}}}`)
	body := publishBody("shop-web", "1", "", nil, "catalog", other)
	body["contracts"].([]map[string]any)[0]["onConflict"] = "merge"
	b.must(t, 200, "POST", "/contracts/publish", body)
	pact := b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/latest", nil)
	if n := len(pact["interactions"].([]any)); n != 2 {
		t.Errorf("merged pact has %d interactions, want 2", n)
	}
}

func TestDataSurvivesARestart(t *testing.T) {
	b := startBroker(t, Config{})
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "main", []string{"prod"}, "catalog", samplePact("shop-web", "catalog", "mug")))
	env := b.must(t, 201, "POST", "/environments", map[string]any{"name": "production", "production": true})
	b.must(t, 201, "POST", "/pacticipants/shop-web/versions/1/deployed-versions/environment/"+env["uuid"].(string), nil)
	pact := b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/latest", nil)
	results := strings.TrimPrefix(dig(t, pact, "_links", "pb:publish-verification-results", "href").(string), b.URL)
	b.must(t, 201, "POST", results, map[string]any{"providerApplicationVersion": "7", "success": true})
	b.stop()

	again := startBroker(t, Config{DB: b.DB})
	v := again.must(t, 200, "GET", "/pacticipants/shop-web/versions/1", nil)
	if dig(t, v, "branch") != "main" || dig(t, v, "_embedded", "tags", 0, "name") != "prod" {
		t.Errorf("version after restart = %v", v)
	}
	p := again.must(t, 200, "GET", "/pacticipants/shop-web", nil)
	if p["mainBranch"] != "main" {
		t.Errorf("main branch after restart = %v (auto-detected from the first version on main)", p["mainBranch"])
	}
	m := again.must(t, 200, "GET", "/matrix?q[][pacticipant]=shop-web&q[][version]=1&latestby=cvp&latest=true", nil)
	if dig(t, m, "summary", "deployable") != true {
		t.Errorf("matrix after restart = %v", m["summary"])
	}
	cur := again.must(t, 200, "GET", "/environments/"+env["uuid"].(string)+"/deployed-versions/currently-deployed", nil)
	if n := len(dig(t, cur, "_embedded", "deployedVersions").([]any)); n != 1 {
		t.Errorf("deployments after restart: %d, want 1", n)
	}
}

func TestAuth(t *testing.T) {
	b := startBroker(t, Config{Auth: Auth{Token: "s3cret", Username: "ci", Password: "pw"}})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:pw"))
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"no header", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"bearer", "Bearer s3cret", 200},
		{"basic", basic, 200},
		{"wrong basic", "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:nope")), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var body map[string]any
			if tc.header == "" {
				status, body = b.call(t, "GET", "/", nil)
			} else {
				status, body = b.call(t, "GET", "/", nil, "Authorization", tc.header)
			}
			if status != tc.want {
				t.Fatalf("status %d, want %d (%v)", status, tc.want, body)
			}
			if tc.want == 401 && dig(t, body, "error", "code") != "unauthorized" {
				t.Errorf("body = %v", body)
			}
		})
	}
	// Health and metrics stay open for probes and scrapers.
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(b.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
}

func TestBadInputIsA4xxWithTheErrorShape(t *testing.T) {
	b := startBroker(t, Config{})
	pact := samplePact("shop-web", "catalog", "mug")
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "main", nil, "catalog", pact))
	sha := strings.TrimPrefix(dig(t, b.must(t, 200, "GET", "/pacts/provider/catalog/consumer/shop-web/latest", nil), "_links", "pb:pact-version", "name").(string), "")
	env := b.must(t, 201, "POST", "/environments", map[string]any{"name": "production", "production": true})
	mutate := func(f func(m map[string]any)) map[string]any {
		body := publishBody("shop-web", "2", "main", nil, "catalog", pact)
		f(body)
		return body
	}
	contract := func(f func(c map[string]any)) map[string]any {
		return mutate(func(m map[string]any) { f(m["contracts"].([]map[string]any)[0]) })
	}
	results := "/pacts/provider/catalog/consumer/shop-web/pact-version/" + sha + "/verification-results"
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/contracts/publish", `{"pacticipantName":`, 400, "malformed_json"},
		{"not an object", "POST", "/contracts/publish", `[1]`, 400, "wrong_type"},
		{"unknown field", "POST", "/contracts/publish", mutate(func(m map[string]any) { m["colour"] = "red" }), 400, "unknown_field"},
		{"empty body", "POST", "/contracts/publish", "", 400, "empty_body"},
		{"body over 1 MiB", "POST", "/contracts/publish", `{"pacticipantName":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "body_too_large"},
		{"no version number", "POST", "/contracts/publish", mutate(func(m map[string]any) { m["pacticipantVersionNumber"] = "" }), 400, "invalid_argument"},
		{"no contracts", "POST", "/contracts/publish", mutate(func(m map[string]any) { m["contracts"] = []any{} }), 400, "invalid_argument"},
		{"consumer is not the pacticipant", "POST", "/contracts/publish", contract(func(c map[string]any) { c["consumerName"] = "someone-else" }), 400, "invalid_argument"},
		{"bad base64", "POST", "/contracts/publish", contract(func(c map[string]any) { c["content"] = "%%%not base64" }), 400, "bad_base64"},
		{"content not JSON", "POST", "/contracts/publish", contract(func(c map[string]any) { c["content"] = base64.StdEncoding.EncodeToString([]byte("nope")) }), 400, "invalid_argument"},
		{"pact of other parties", "POST", "/contracts/publish", contract(func(c map[string]any) { c["providerName"] = "payments" }), 400, "invalid_argument"},
		{"unsupported specification", "POST", "/contracts/publish", contract(func(c map[string]any) { c["specification"] = "oas" }), 400, "invalid_argument"},
		{"bad onConflict", "POST", "/contracts/publish", contract(func(c map[string]any) { c["onConflict"] = "ignore" }), 400, "invalid_argument"},
		{"pacticipant name with a slash", "POST", "/contracts/publish", contract(func(c map[string]any) { c["providerName"] = "a/b" }), 400, "invalid_argument"},
		{"wrong content type", "POST", "/environments", nil, 415, "unsupported_media_type"},
		{"unknown pacticipant", "GET", "/pacticipants/nobody", nil, 404, "not_found"},
		{"unknown version", "GET", "/pacticipants/shop-web/versions/9", nil, 404, "not_found"},
		{"unknown provider for verification", "POST", "/pacts/provider/nobody/for-verification", map[string]any{"consumerVersionSelectors": []any{}}, 404, "not_found"},
		{"selector without criteria", "POST", "/pacts/provider/catalog/for-verification",
			map[string]any{"consumerVersionSelectors": []any{map[string]any{"consumer": "shop-web"}}}, 400, "invalid_selector"},
		{"selector mixing tag and branch", "POST", "/pacts/provider/catalog/for-verification",
			map[string]any{"consumerVersionSelectors": []any{map[string]any{"tag": "a", "branch": "b"}}}, 400, "invalid_selector"},
		{"selector flag false", "POST", "/pacts/provider/catalog/for-verification",
			map[string]any{"consumerVersionSelectors": []any{map[string]any{"mainBranch": false}}}, 400, "invalid_selector"},
		{"selector unknown field", "POST", "/pacts/provider/catalog/for-verification",
			map[string]any{"consumerVersionSelectors": []any{map[string]any{"colour": "red"}}}, 400, "unknown_field"},
		{"unknown pact version", "GET", "/pacts/provider/catalog/consumer/shop-web/pact-version/abc", nil, 404, "not_found"},
		{"verification without success", "POST", results, map[string]any{"providerApplicationVersion": "1"}, 400, "invalid_argument"},
		{"verification without version", "POST", results, map[string]any{"success": true}, 400, "invalid_argument"},
		{"verification of an unknown pact", "POST", strings.Replace(results, sha, "0000", 1), map[string]any{"providerApplicationVersion": "1", "success": true}, 404, "not_found"},
		{"bad verification id", "GET", results + "/x", nil, 400, "invalid_argument"},
		{"environment without production", "POST", "/environments", map[string]any{"name": "staging"}, 400, "invalid_argument"},
		{"environment name taken", "POST", "/environments", map[string]any{"name": "production", "production": true}, 409, "environment_exists"},
		{"environment name with space", "POST", "/environments", map[string]any{"name": "my env", "production": false}, 400, "invalid_argument"},
		{"unknown environment", "GET", "/environments/" + strings.Repeat("0", 8) + "-0000-4000-a000-000000000000", nil, 404, "not_found"},
		{"deploy to unknown environment", "POST", "/pacticipants/shop-web/versions/1/deployed-versions/environment/nope", nil, 404, "not_found"},
		{"deploy an unknown version", "POST", "/pacticipants/shop-web/versions/9/deployed-versions/environment/" + env["uuid"].(string), nil, 404, "not_found"},
		{"deployment instance mismatch", "POST", "/pacticipants/shop-web/versions/1/deployed-versions/environment/" + env["uuid"].(string),
			map[string]any{"applicationInstance": "a", "target": "b"}, 400, "invalid_argument"},
		{"redeploy via PATCH", "PATCH", "/deployed-versions/nope", map[string]any{"currentlyDeployed": true}, 400, "invalid_argument"},
		{"tag name mismatch", "PUT", "/pacticipants/shop-web/versions/1/tags/prod", map[string]any{"name": "dev"}, 400, "invalid_argument"},
		{"pacticipant exists", "POST", "/pacticipants", map[string]any{"name": "shop-web"}, 409, "pacticipant_exists"},
		{"rename pacticipant", "PATCH", "/pacticipants/shop-web", map[string]any{"name": "other"}, 400, "invalid_argument"},
		{"patch unknown pacticipant", "PATCH", "/pacticipants/nobody", map[string]any{"mainBranch": "main"}, 404, "not_found"},
		{"matrix without selectors", "GET", "/matrix?latestby=cvp", nil, 400, "invalid_query"},
		{"matrix field before pacticipant", "GET", "/matrix?q[][version]=1&q[][pacticipant]=shop-web", nil, 400, "invalid_query"},
		{"matrix unknown parameter", "GET", "/matrix?q[][pacticipant]=shop-web&colour=red", nil, 400, "invalid_query"},
		{"matrix bad latestby", "GET", "/matrix?q[][pacticipant]=shop-web&latestby=x", nil, 400, "invalid_query"},
		{"matrix unknown pacticipant", "GET", "/matrix?q[][pacticipant]=nobody&q[][version]=1&latestby=cvp&latest=true", nil, 400, "unknown_pacticipant"},
		{"matrix unknown environment", "GET", "/matrix?q[][pacticipant]=shop-web&q[][version]=1&latestby=cvpv&environment=mars", nil, 400, "unknown_environment"},
		{"no such route", "GET", "/nowhere", nil, 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var body map[string]any
			if tc.code == "unsupported_media_type" {
				status, body = b.call(t, tc.method, tc.path, `{"name":"x","production":true}`, "Content-Type", "text/plain")
			} else {
				status, body = b.call(t, tc.method, tc.path, tc.body)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			if got := dig(t, body, "error", "code"); got != tc.code {
				t.Errorf("code %v, want %s: %v", got, tc.code, body)
			}
			if msg, _ := dig(t, body, "error", "message").(string); msg == "" {
				t.Errorf("no message: %v", body)
			}
		})
	}
	// Nothing of the rejected publications was stored.
	if status, _ := b.call(t, "GET", "/pacticipants/shop-web/versions/2", nil); status != 404 {
		t.Errorf("rejected publications created version 2 (status %d)", status)
	}
}

func TestBranchNamesWithSlashesRoundTrip(t *testing.T) {
	b := startBroker(t, Config{})
	b.must(t, 200, "POST", "/contracts/publish", publishBody("shop-web", "1", "feat/x", nil, "catalog", samplePact("shop-web", "catalog", "mug")))
	bv := b.must(t, 200, "GET", "/pacticipants/shop-web/branches/feat%2Fx/versions/1", nil)
	if bv["branch"] != "feat/x" {
		t.Errorf("branch version = %v", bv)
	}
	// The verifier PUTs {} to the templated pb:branch-version link with the branch URL-encoded.
	b.must(t, 201, "PUT", "/pacticipants/catalog/branches/fix%2Fy/versions/3", "{}")
	v := b.must(t, 200, "GET", "/pacticipants/catalog/versions/3", nil)
	if v["branch"] != "fix/y" {
		t.Errorf("provider version branch = %v", v["branch"])
	}
	vp := b.must(t, 200, "POST", "/pacts/provider/catalog/for-verification",
		map[string]any{"consumerVersionSelectors": []any{map[string]any{"branch": "feat/x"}}})
	if got := dig(t, vp, "_embedded", "pacts", 0, "shortDescription"); got != "latest from branch feat/x" {
		t.Errorf("shortDescription = %v", got)
	}
}

func TestConcurrentPublicationsAllSucceed(t *testing.T) {
	b := startBroker(t, Config{})
	const n = 64
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		version := fmt.Sprintf("1.0.%d", i)
		data, err := json.Marshal(publishBody("shop-web", version, "main", []string{"t"}, "catalog", samplePact("shop-web", "catalog", version)))
		if err != nil {
			t.Fatal(err)
		}
		go func() { // no t.Fatal off the test goroutine: errors travel back on errs
			resp, err := http.Post(b.URL+"/contracts/publish", "application/json", bytes.NewReader(data))
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("publish %s: %d %s", version, resp.StatusCode, body)
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	_, vs := b.call(t, "GET", "/pacticipants/shop-web/versions", nil)
	if got := len(dig(t, vs, "_embedded", "versions").([]any)); got != n {
		t.Errorf("%d versions stored, want %d", got, n)
	}
}
