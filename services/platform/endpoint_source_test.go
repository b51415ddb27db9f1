package platform

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
)

// pinnedSource sends every call of an operation to one instance, recording which operations asked.
type pinnedSource struct {
	instance string
	ops      []string
}

func (s *pinnedSource) Endpoint(op string, f sd.Factory) endpoint.Endpoint {
	s.ops = append(s.ops, op)
	e, _, err := f(s.instance)
	if err != nil {
		return func(context.Context, any) (any, error) { return nil, err }
	}
	return e
}

type pathAnswer struct {
	Path string `json:"path"`
}

func TestClientOperationGoesThroughTheSourceWhenThereIsOne(t *testing.T) {
	echo := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, pathAnswer{Path: name + r.URL.Path})
		}))
		t.Cleanup(s.Close)
		return s
	}
	static, instance := echo("static"), echo("instance")
	base, err := ParseBaseURL(static.URL)
	if err != nil {
		t.Fatal(err)
	}
	path := func(string) string { return "things" }
	tests := []struct {
		name     string
		source   *pinnedSource
		wantPath string
	}{
		{"no source: the base URL", nil, "static/things"},
		{"source: the instance it picks", &pinnedSource{instance: instance.URL}, "instance/things"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []ClientOption
			if tt.source != nil {
				opts = append(opts, WithEndpointSource(tt.source))
			}
			e := ClientOperation[string, pathAnswer](NewClientConfig(opts...), "get_thing", true, base, http.MethodGet, path)
			resp, err := e(context.Background(), "x")
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.(*pathAnswer).Path; got != tt.wantPath {
				t.Errorf("answer from %q, want %q", got, tt.wantPath)
			}
			if tt.source != nil && (len(tt.source.ops) != 1 || tt.source.ops[0] != "get_thing") {
				t.Errorf("source asked for %v, want [get_thing]", tt.source.ops)
			}
		})
	}
}

func TestClientConfigEndpointRejectsABadInstanceURL(t *testing.T) {
	cfg := NewClientConfig(WithEndpointSource(&pinnedSource{instance: "not a url"}))
	base, _ := url.Parse("http://127.0.0.1:1/")
	e := cfg.Endpoint("op", base, func(*url.URL) endpoint.Endpoint {
		t.Fatal("build called for a bad instance URL")
		return nil
	})
	if _, err := e(context.Background(), nil); err == nil {
		t.Fatal("want an error for an unparsable instance URL")
	}
}
