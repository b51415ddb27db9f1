package broker

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/resilience-lab/lab/services/platform"
)

// Auth is the broker's authentication: a bearer token, and optionally a basic-auth user. With neither
// set, every request is let in.
type Auth struct {
	Token    string
	Username string
	Password string
}

func (a Auth) enabled() bool { return a.Token != "" || a.Username != "" }

func (a Auth) allows(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if a.Token != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) == 1 {
			return true
		}
	}
	if a.Username != "" {
		if u, p, ok := r.BasicAuth(); ok &&
			subtle.ConstantTimeCompare([]byte(u), []byte(a.Username))&subtle.ConstantTimeCompare([]byte(p), []byte(a.Password)) == 1 {
			return true
		}
	}
	return false
}

type handler struct {
	svc       *Service
	publicURL string // without a trailing slash; "" derives the base from each request
	logger    *slog.Logger
}

// NewHTTPHandler serves the broker's API (HAL resources under publicURL, or under the request's own
// host when it is empty) behind auth.
func NewHTTPHandler(svc *Service, publicURL string, auth Auth, logger *slog.Logger) http.Handler {
	h := &handler{svc: svc, publicURL: strings.TrimSuffix(publicURL, "/"), logger: logger}
	mux := http.NewServeMux()
	route := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				h.fail(w, r, err)
			}
		})
	}
	route("GET /{$}", h.index)
	route("POST /contracts/publish", h.publishContracts)

	route("GET /pacticipants", h.listPacticipants)
	route("POST /pacticipants", h.createPacticipant)
	route("GET /pacticipants/{pacticipant}", h.getPacticipant)
	route("PUT /pacticipants/{pacticipant}", h.savePacticipant("upsert"))
	route("PATCH /pacticipants/{pacticipant}", h.savePacticipant("update"))
	route("GET /pacticipants/{pacticipant}/versions", h.listVersions)
	route("GET /pacticipants/{pacticipant}/versions/{version}", h.getVersion)
	route("PUT /pacticipants/{pacticipant}/versions/{version}", h.putVersion)
	route("GET /pacticipants/{pacticipant}/latest-version", h.latestVersion)
	route("GET /pacticipants/{pacticipant}/latest-version/{tag}", h.latestVersion)
	route("GET /pacticipants/{pacticipant}/versions/{version}/tags/{tag}", h.getTag)
	route("PUT /pacticipants/{pacticipant}/versions/{version}/tags/{tag}", h.putTag)
	route("DELETE /pacticipants/{pacticipant}/versions/{version}/tags/{tag}", h.deleteTag)
	route("GET /pacticipants/{pacticipant}/branches/{branch}/versions/{version}", h.getBranchVersion)
	route("PUT /pacticipants/{pacticipant}/branches/{branch}/versions/{version}", h.putBranchVersion)
	route("GET /pacticipants/{pacticipant}/versions/{version}/deployed-versions/environment/{environment}", h.versionDeployments)
	route("POST /pacticipants/{pacticipant}/versions/{version}/deployed-versions/environment/{environment}", h.recordDeployment)

	route("GET /pacts/latest", h.latestPacts)
	route("GET /pacts/provider/{provider}/latest", h.latestProviderPacts)
	route("GET /pacts/provider/{provider}/latest/{tag}", h.latestProviderPacts)
	route("GET /pacts/provider/{provider}/for-verification", h.forVerificationLink)
	route("POST /pacts/provider/{provider}/for-verification", h.pactsForVerification)
	route("GET /pacts/provider/{provider}/consumer/{consumer}/latest", h.latestPact)
	route("GET /pacts/provider/{provider}/consumer/{consumer}/latest/{tag}", h.latestPact)
	route("GET /pacts/provider/{provider}/consumer/{consumer}/version/{version}", h.pactForVersion)
	route("PUT /pacts/provider/{provider}/consumer/{consumer}/version/{version}", h.publishPact)
	route("GET /pacts/provider/{provider}/consumer/{consumer}/pact-version/{sha}", h.pactVersion)
	route("POST /pacts/provider/{provider}/consumer/{consumer}/pact-version/{sha}/verification-results", h.publishVerification)
	route("GET /pacts/provider/{provider}/consumer/{consumer}/pact-version/{sha}/verification-results/{id}", h.getVerification)

	route("GET /environments", h.listEnvironments)
	route("POST /environments", h.createEnvironment)
	route("GET /environments/{uuid}", h.getEnvironment)
	route("PUT /environments/{uuid}", h.updateEnvironment)
	route("DELETE /environments/{uuid}", h.deleteEnvironment)
	route("GET /environments/{uuid}/deployed-versions/currently-deployed", h.currentlyDeployed)
	route("GET /deployed-versions/{uuid}", h.getDeployment)
	route("PATCH /deployed-versions/{uuid}", h.patchDeployment)

	route("GET /matrix", h.matrix)
	route("/", func(w http.ResponseWriter, r *http.Request) error {
		return notFound("no resource %s %s on this broker (docs/contracts.md lists what it serves)", r.Method, r.URL.Path)
	})

	if !auth.enabled() {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.allows(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pact-broker"`)
			h.writeError(w, platform.Errorf(http.StatusUnauthorized, "unauthorized",
				"this broker needs an Authorization header: Bearer <BROKER_TOKEN> (or Basic with the configured user)"), nil)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// hal returns the renderer for r: hrefs under the public URL, or under the host r was sent to.
func (h *handler) hal(r *http.Request) hal {
	if h.publicURL != "" {
		return hal{base: h.publicURL}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return hal{base: scheme + "://" + r.Host}
}

// errorBody is the platform's error shape plus the "errors" list (and "notices") the Pact clients print.
type errorBody struct {
	Error   *platform.Error `json:"error"`
	Errors  []string        `json:"errors"`
	Notices []Notice        `json:"notices,omitempty"`
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := platform.AsError(err)
	switch {
	case ok:
	case errors.Is(err, context.DeadlineExceeded):
		e = platform.Errorf(http.StatusGatewayTimeout, "deadline_exceeded", "the request's deadline passed")
	case errors.Is(err, context.Canceled):
		e = platform.Errorf(499, "cancelled", "the caller went away")
	default:
		h.logger.ErrorContext(r.Context(), "broker fault", "method", r.Method, "path", r.URL.Path, "err", err)
		e = platform.Errorf(http.StatusInternalServerError, "internal", "internal error")
	}
	var notices []Notice
	if e.Status == http.StatusConflict {
		notices = []Notice{{Type: "error", Text: e.Message}}
	}
	h.writeError(w, e, notices)
}

func (h *handler) writeError(w http.ResponseWriter, e *platform.Error, notices []Notice) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: e, Errors: []string{e.Message}, Notices: notices})
}

// writeHAL answers with a HAL document; the Pact clients accept application/hal+json and application/json.
func writeHAL(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/hal+json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func createdOr(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// decodeOptional decodes a JSON body strictly like platform.DecodeJSON, but accepts an empty body: the
// clients' PUTs send {} or nothing.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, platform.MaxBodyBytes+1))
	if err != nil {
		return platform.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body exceeds %d bytes", platform.MaxBodyBytes)
	}
	if strings.TrimSpace(string(body)) == "" {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
		return platform.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json, not %q", ct)
	}
	return platform.DecodeStrict(body, v)
}

// ---- index, pacticipants, versions ---------------------------------------------------------------

func (h *handler) index(w http.ResponseWriter, r *http.Request) error {
	return writeHAL(w, http.StatusOK, h.hal(r).index())
}

func (h *handler) listPacticipants(w http.ResponseWriter, r *http.Request) error {
	ps, err := h.svc.Pacticipants(r.Context())
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).pacticipants(ps))
}

func (h *handler) getPacticipant(w http.ResponseWriter, r *http.Request) error {
	p, err := h.svc.Pacticipant(r.Context(), r.PathValue("pacticipant"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).pacticipant(p))
}

func (h *handler) createPacticipant(w http.ResponseWriter, r *http.Request) error {
	var change PacticipantChange
	if err := platform.DecodeJSON(r, &change); err != nil {
		return err
	}
	if change.Name == nil {
		return invalid("name is required")
	}
	p, _, err := h.svc.SavePacticipant(r.Context(), *change.Name, change, "create")
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusCreated, h.hal(r).pacticipant(p))
}

func (h *handler) savePacticipant(mode string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var change PacticipantChange
		if err := decodeOptional(r, &change); err != nil {
			return err
		}
		p, created, err := h.svc.SavePacticipant(r.Context(), r.PathValue("pacticipant"), change, mode)
		if err != nil {
			return err
		}
		return writeHAL(w, createdOr(created), h.hal(r).pacticipant(p))
	}
}

func (h *handler) listVersions(w http.ResponseWriter, r *http.Request) error {
	p, vs, err := h.svc.Versions(r.Context(), r.PathValue("pacticipant"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).versions(p, vs))
}

func (h *handler) getVersion(w http.ResponseWriter, r *http.Request) error {
	_, v, err := h.svc.Version(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"))
	if err != nil {
		return err
	}
	envs, err := h.svc.DeployableEnvironments(r.Context())
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).version(v, envs))
}

func (h *handler) putVersion(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		BuildURL string `json:"buildUrl,omitempty"`
	}
	if err := decodeOptional(r, &body); err != nil {
		return err
	}
	_, v, created, err := h.svc.PutVersion(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), body.BuildURL)
	if err != nil {
		return err
	}
	return writeHAL(w, createdOr(created), h.hal(r).version(v, nil))
}

func (h *handler) latestVersion(w http.ResponseWriter, r *http.Request) error {
	_, v, err := h.svc.LatestVersion(r.Context(), r.PathValue("pacticipant"), r.PathValue("tag"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).version(v, nil))
}

// labelBody is what the clients PUT to tags and branch versions: {} from the verifier, {"name": …} from the CLI.
type labelBody struct {
	Name *string `json:"name,omitempty"`
}

func (b labelBody) check(what, want string) error {
	if b.Name != nil && *b.Name != want {
		return invalid("the body's name %q differs from the %s %q in the URL", *b.Name, what, want)
	}
	return nil
}

func (h *handler) getTag(w http.ResponseWriter, r *http.Request) error {
	v, err := h.svc.Tag(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("tag"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).tag(v, r.PathValue("tag")))
}

func (h *handler) putTag(w http.ResponseWriter, r *http.Request) error {
	var body labelBody
	if err := decodeOptional(r, &body); err != nil {
		return err
	}
	if err := body.check("tag", r.PathValue("tag")); err != nil {
		return err
	}
	v, created, err := h.svc.PutTag(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("tag"))
	if err != nil {
		return err
	}
	return writeHAL(w, createdOr(created), h.hal(r).tag(v, r.PathValue("tag")))
}

func (h *handler) deleteTag(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.DeleteTag(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("tag")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) getBranchVersion(w http.ResponseWriter, r *http.Request) error {
	v, err := h.svc.BranchVersion(r.Context(), r.PathValue("pacticipant"), r.PathValue("branch"), r.PathValue("version"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).branchVersion(v, r.PathValue("branch")))
}

func (h *handler) putBranchVersion(w http.ResponseWriter, r *http.Request) error {
	var body labelBody
	if err := decodeOptional(r, &body); err != nil {
		return err
	}
	if err := body.check("branch", r.PathValue("branch")); err != nil {
		return err
	}
	v, created, err := h.svc.PutBranchVersion(r.Context(), r.PathValue("pacticipant"), r.PathValue("branch"), r.PathValue("version"))
	if err != nil {
		return err
	}
	return writeHAL(w, createdOr(created), h.hal(r).branchVersion(v, r.PathValue("branch")))
}

// ---- publishing and pacts ------------------------------------------------------------------------

func (h *handler) publishContracts(w http.ResponseWriter, r *http.Request) error {
	var req PublishContractsRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return err
	}
	res, err := h.svc.PublishContracts(r.Context(), req)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).publishResult(res))
}

func (h *handler) publishPact(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
		return platform.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json, not %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, platform.MaxBodyBytes))
	if err != nil {
		return platform.Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body exceeds %d bytes", platform.MaxBodyBytes)
	}
	pc, err := h.svc.PublishPact(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("version"), body)
	if err != nil {
		return err
	}
	pact, err := h.svc.PactForVersion(r.Context(), pc.Provider.Name, pc.Consumer.Name, pc.Version.Number)
	if err != nil {
		return err
	}
	doc, err := h.hal(r).pact(pact)
	if err != nil {
		return err
	}
	return writeHAL(w, createdOr(pc.Outcome == "created"), doc)
}

func (h *handler) writePact(w http.ResponseWriter, r *http.Request, pact *Pact, err error) error {
	if err != nil {
		return err
	}
	doc, err := h.hal(r).pact(pact)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, doc)
}

func (h *handler) pactVersion(w http.ResponseWriter, r *http.Request) error {
	pact, err := h.svc.PactVersion(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("sha"))
	return h.writePact(w, r, pact, err)
}

func (h *handler) pactForVersion(w http.ResponseWriter, r *http.Request) error {
	pact, err := h.svc.PactForVersion(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("version"))
	return h.writePact(w, r, pact, err)
}

func (h *handler) latestPact(w http.ResponseWriter, r *http.Request) error {
	pact, err := h.svc.LatestPact(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("tag"))
	return h.writePact(w, r, pact, err)
}

func (h *handler) latestProviderPacts(w http.ResponseWriter, r *http.Request) error {
	p, pacts, err := h.svc.LatestProviderPacts(r.Context(), r.PathValue("provider"), r.PathValue("tag"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).providerPacts(p, pacts, r.URL.Path))
}

func (h *handler) latestPacts(w http.ResponseWriter, r *http.Request) error {
	pacts, err := h.svc.LatestPacts(r.Context())
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).latestPacts(pacts))
}

// forVerificationLink answers the verifier's first GET, which it makes only to find the href to POST to.
func (h *handler) forVerificationLink(w http.ResponseWriter, r *http.Request) error {
	p, err := h.svc.Pacticipant(r.Context(), r.PathValue("provider"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).forVerificationSelf(p.Name))
}

func (h *handler) pactsForVerification(w http.ResponseWriter, r *http.Request) error {
	var q PactsForVerificationQuery
	if err := decodeOptional(r, &q); err != nil {
		return err
	}
	p, pacts, err := h.svc.PactsForVerification(r.Context(), r.PathValue("provider"), q)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).pactsForVerification(p, pacts, q))
}

func (h *handler) publishVerification(w http.ResponseWriter, r *http.Request) error {
	var req VerificationRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return err
	}
	rec, err := h.svc.PublishVerification(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("sha"), req)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusCreated, h.hal(r).verification(rec))
}

func (h *handler) getVerification(w http.ResponseWriter, r *http.Request) error {
	var id int64
	if s := r.PathValue("id"); s != "latest" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return invalid("verification result id %q: want a positive integer or \"latest\"", s)
		}
		id = n
	}
	rec, err := h.svc.Verification(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("sha"), id)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).verification(rec))
}

// ---- environments and deployments ----------------------------------------------------------------

func (h *handler) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	es, err := h.svc.Environments(r.Context(), r.URL.Query().Get("name"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).environments(es))
}

func (h *handler) createEnvironment(w http.ResponseWriter, r *http.Request) error {
	var req EnvironmentRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return err
	}
	e, err := h.svc.CreateEnvironment(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", h.hal(r).base+environmentPath(e.UUID))
	return writeHAL(w, http.StatusCreated, h.hal(r).environment(e))
}

func (h *handler) getEnvironment(w http.ResponseWriter, r *http.Request) error {
	e, err := h.svc.Environment(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).environment(e))
}

func (h *handler) updateEnvironment(w http.ResponseWriter, r *http.Request) error {
	var req EnvironmentRequest
	if err := platform.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.UUID != "" && req.UUID != r.PathValue("uuid") {
		return invalid("the body's uuid %q differs from the one in the URL", req.UUID)
	}
	e, err := h.svc.UpdateEnvironment(r.Context(), r.PathValue("uuid"), req)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).environment(e))
}

func (h *handler) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.DeleteEnvironment(r.Context(), r.PathValue("uuid")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) recordDeployment(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		ApplicationInstance *string `json:"applicationInstance,omitempty"`
		Target              *string `json:"target,omitempty"` // the CLI's old name for applicationInstance
	}
	if err := decodeOptional(r, &body); err != nil {
		return err
	}
	var instance string
	switch a, t := body.ApplicationInstance, body.Target; {
	case a != nil && t != nil && *a != *t:
		return invalid("applicationInstance %q and target %q differ; target is the old name of applicationInstance", *a, *t)
	case a != nil:
		instance = *a
	case t != nil:
		instance = *t
	}
	d, err := h.svc.RecordDeployment(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("environment"), instance)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusCreated, h.hal(r).deployment(d))
}

func (h *handler) versionDeployments(w http.ResponseWriter, r *http.Request) error {
	ds, err := h.svc.VersionDeployments(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("environment"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).deployments(r.URL.Path, ds))
}

func (h *handler) currentlyDeployed(w http.ResponseWriter, r *http.Request) error {
	_, ds, err := h.svc.CurrentlyDeployed(r.Context(), r.PathValue("uuid"), r.URL.Query().Get("pacticipant"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).deployments(r.URL.Path, ds))
}

func (h *handler) getDeployment(w http.ResponseWriter, r *http.Request) error {
	d, err := h.svc.Deployment(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).deployment(d))
}

func (h *handler) patchDeployment(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		CurrentlyDeployed *bool `json:"currentlyDeployed"`
	}
	if err := platform.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.CurrentlyDeployed == nil || *body.CurrentlyDeployed {
		return invalid("only {\"currentlyDeployed\": false} (recording an undeployment) is supported")
	}
	d, err := h.svc.Undeploy(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).deployment(d))
}

// ---- matrix --------------------------------------------------------------------------------------

func (h *handler) matrix(w http.ResponseWriter, r *http.Request) error {
	q, err := ParseMatrixQuery(r.URL.RawQuery)
	if err != nil {
		return platform.BadRequest("invalid_query", "%v", err)
	}
	res, err := h.svc.Matrix(r.Context(), q)
	if err != nil {
		return err
	}
	return writeHAL(w, http.StatusOK, h.hal(r).matrix(res))
}
