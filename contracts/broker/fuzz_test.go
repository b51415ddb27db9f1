package broker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/resilience-lab/lab/contracts/broker"
	"github.com/resilience-lab/lab/services/platform"
)

// FuzzPublishContracts drives POST /contracts/publish of the broker as cmd/broker serves it (Open over a
// temp-dir database, the platform's full handler). Each fuzz process builds one broker and every
// iteration reuses it: publications pile up, and a republication with other content is the documented
// 409. Properties, whatever the body: no panic, no 5xx, every error in the broker's shape (the shop's
// {"error":{"code","message"}} plus the "errors" list the Pact clients print), every success decoding
// strictly into the documented answer and naming what was published, with hrefs that parse back to the
// names. Seeds: testdata/fuzz/FuzzPublishContracts/; scripts/fuzz.sh runs the target.
func FuzzPublishContracts(f *testing.F) {
	svc, closer, err := broker.Open(context.Background(), broker.Config{Addr: ":0", DB: filepath.Join(f.TempDir(), "broker.db")},
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := closer.Close(); err != nil {
			f.Errorf("close broker: %v", err)
		}
	})
	handler := svc.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/contracts/publish", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		if rec.Code < 200 || rec.Code >= 300 {
			checkBrokerError(t, rec)
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", rec.Code)
		}
		var req broker.PublishContractsRequest
		if err := platform.DecodeStrict(body, &req); err != nil {
			t.Fatalf("HTTP %d for a body the strict decoder refuses (%v)", rec.Code, err)
		}
		var res publishAnswer
		if err := platform.DecodeStrict(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("the answer is not the documented publish answer: %v: %q", err, rec.Body)
		}
		name, number := req.PacticipantName, req.PacticipantVersionNumber
		if res.Embedded.Pacticipant.Name != name || res.Embedded.Version.Number != number ||
			len(res.Links.Contracts) != len(req.Contracts) || len(res.Notices) != 1+len(req.Contracts) || len(res.Logs) != len(res.Notices) {
			t.Fatalf("answer %+v for request %+v", res, req)
		}
		base := "http://" + r.Host
		hrefPath := func(l halLink) string {
			u, err := url.Parse(l.Href)
			if err != nil || !strings.HasPrefix(l.Href, base+"/") {
				t.Fatalf("href %q is no URL under %s (%v)", l.Href, base, err)
			}
			return u.Path
		}
		if p := hrefPath(res.Links.Pacticipant); p != "/pacticipants/"+name {
			t.Fatalf("pb:pacticipant of %q is %q", name, p)
		}
		if p := hrefPath(res.Links.PacticipantVersion); p != "/pacticipants/"+name+"/versions/"+number {
			t.Fatalf("pb:pacticipant-version of %q %q is %q", name, number, p)
		}
		for _, l := range append(res.Links.Tags, res.Links.Contracts...) {
			hrefPath(l)
		}
		for i, c := range res.Links.Contracts {
			if !strings.HasPrefix(hrefPath(c), "/pacts/provider/"+req.Contracts[i].ProviderName+"/consumer/"+name+"/pact-version/") {
				t.Fatalf("pb:contracts[%d] %q is not the pact of %+v", i, c.Href, req.Contracts[i])
			}
		}
	})
}

// publishAnswer is the answer of POST /contracts/publish the Pact CLI parses (docs/contracts.md).
type publishAnswer struct {
	Notices []broker.Notice `json:"notices"`
	Logs    []struct {
		Level              string `json:"level"`
		Message            string `json:"message"`
		DeprecationWarning string `json:"deprecationWarning"`
	} `json:"logs"`
	Embedded struct {
		Pacticipant struct {
			Name  string             `json:"name"`
			Links map[string]halLink `json:"_links"`
		} `json:"pacticipant"`
		Version struct {
			Number string             `json:"number"`
			Links  map[string]halLink `json:"_links"`
		} `json:"version"`
	} `json:"_embedded"`
	Links struct {
		Pacticipant        halLink   `json:"pb:pacticipant"`
		PacticipantVersion halLink   `json:"pb:pacticipant-version"`
		Tags               []halLink `json:"pb:pacticipant-version-tags"`
		Contracts          []halLink `json:"pb:contracts"`
	} `json:"_links"`
}

type halLink struct {
	Href  string `json:"href"`
	Title string `json:"title"`
	Name  string `json:"name"`
}

// checkBrokerError: an error is a 4xx in the broker's shape, with a code and the same message listed.
func checkBrokerError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 || rec.Code >= 500 {
		t.Fatalf("HTTP %d for a publication: %q", rec.Code, rec.Body)
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Errors  []string        `json:"errors"`
		Notices []broker.Notice `json:"notices"`
	}
	if err := platform.DecodeStrict(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == "" ||
		len(e.Errors) != 1 || e.Errors[0] != e.Error.Message {
		t.Fatalf("HTTP %d without the broker's error shape: %q (%v)", rec.Code, rec.Body, err)
	}
}
