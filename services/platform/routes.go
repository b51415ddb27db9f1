package platform

import "net/http"

// JSONMux wraps a ServeMux so requests no route matches (an unknown path, a wrong method) are answered
// in the shop's error shape instead of ServeMux's plain text, keeping the Allow header of a 405.
func JSONMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
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
