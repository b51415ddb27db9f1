package canary

import (
	"net/http"

	"github.com/resilience-lab/lab/services/platform"
)

// WeightRequest is the body of PUT on the admin handler.
type WeightRequest struct {
	Weight *int `json:"weight"`
}

// Handler is the router's admin API (mount it e.g. at /admin/canary/catalog, behind the gateway's
// admin authentication): GET answers the Status; PUT {"weight": n} sets the canary's percent of the calls
// (and re-arms the rule after a rollback) and answers the new Status. Bad input is a 4xx in the shop's
// error shape.
func (r *Router) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPut:
			var body WeightRequest
			if err := platform.DecodeJSON(req, &body); err != nil {
				platform.EncodeError(req.Context(), err, w)
				return
			}
			if body.Weight == nil {
				platform.WriteError(w, platform.BadRequest("invalid_argument", "weight is required"))
				return
			}
			if err := r.SetWeight(*body.Weight); err != nil {
				platform.WriteError(w, platform.BadRequest("invalid_argument", "%v", err))
				return
			}
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT")
			platform.WriteError(w, platform.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "use GET or PUT"))
			return
		}
		platform.WriteJSON(w, http.StatusOK, r.Status())
	})
}
