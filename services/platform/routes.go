package platform

import (
	"context"
	"net/http"
)

// matchedRoute holds the pattern of the route that served a request. A handler between the server's
// own mux and a service's JSONMux (the gateway's token check) may hand the inner mux a copy of the
// request, so the pattern that mux records on it never reaches the server's metrics and span: JSONMux
// writes it here too.
type matchedRoute struct{ pattern string }

type routeKey struct{}

// withRouteHolder returns ctx carrying an empty holder for the pattern of the route that will match.
func withRouteHolder(ctx context.Context) context.Context {
	return context.WithValue(ctx, routeKey{}, &matchedRoute{})
}

// routePattern is the pattern of the innermost route that served r, or "" when none matched.
func routePattern(r *http.Request) string {
	if h, ok := r.Context().Value(routeKey{}).(*matchedRoute); ok && h.pattern != "" {
		return h.pattern
	}
	return r.Pattern
}

// JSONMux wraps a ServeMux so requests no route matches (an unknown path, a wrong method) are answered
// in the shop's error shape instead of ServeMux's plain text, keeping the Allow header of a 405.
func JSONMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			if holder, ok := r.Context().Value(routeKey{}).(*matchedRoute); ok {
				holder.pattern = pattern
			}
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			WriteError(w, Errorf(http.StatusMethodNotAllowed, "method_not_allowed",
				"%s is not allowed on %s", r.Method, r.URL.Path))
		case http.StatusNotFound:
			WriteError(w, NotFound("no route for %s %s", r.Method, r.URL.Path))
		default: // redirects to the cleaned path and the like
			mux.ServeHTTP(w, r)
		}
	})
}

// headerProbe records what ServeMux's fallback handler would answer, discarding the body.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header { return p.header }
func (p *headerProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}
func (p *headerProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}
