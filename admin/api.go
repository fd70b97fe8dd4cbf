package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func init() {
	caddy.RegisterModule(API{})
}

// API is the admin module admin.api.oauth2_server: routes under /oauth2/
// of Caddy's admin endpoint (loopback by default) to list and revoke
// clients and grants, rotate keys, inspect tokens and back up, export
// and import the storage. JSON in and out; errors are {"error": "…"}.
type API struct{}

// CaddyModule returns the Caddy module information.
func (API) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.oauth2_server", New: func() caddy.Module { return new(API) }}
}

// Routes implements caddy.AdminRouter.
func (API) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/oauth2/", Handler: caddy.AdminHandlerFunc(handler{sites: sites}.serve)}}
}

// handler serves the routes for a set of sites: the running ones, or
// (the CLI's --storage) one opened from a file.
type handler struct {
	sites func() []*Site
}

// maxBody bounds a request body, except an import's.
const maxBody = 64 << 10

func (h handler) serve(w http.ResponseWriter, r *http.Request) error {
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/oauth2"), "/")
	route, id, _ := strings.Cut(path, "/")
	if route == "clients" || route == "grants" {
		id, _ = url.PathUnescape(id)
	} else if id != "" {
		route += "/" + id
		id = ""
	}
	type endpoint struct {
		method string
		fn     func(*Site, http.ResponseWriter, *http.Request, string) error
	}
	routes := map[string][]endpoint{
		"":               {{http.MethodGet, nil}},
		"clients":        {{http.MethodGet, listClients}, {http.MethodPost, createClient}, {http.MethodDelete, deleteClient}},
		"grants":         {{http.MethodGet, listGrants}, {http.MethodDelete, revokeGrants}},
		"keys":           {{http.MethodGet, listKeys}},
		"keys/rotate":    {{http.MethodPost, rotateKey}},
		"keys/retire":    {{http.MethodPost, retireKey}},
		"tokens/inspect": {{http.MethodPost, inspect}},
		"backup":         {{http.MethodGet, backup}},
		"export":         {{http.MethodGet, export}},
		"import":         {{http.MethodPost, importRecords}},
	}
	eps, ok := routes[route]
	if !ok {
		return apiError(http.StatusNotFound, "unknown route /oauth2/%s", path)
	}
	var allowed []string
	for _, ep := range eps {
		allowed = append(allowed, ep.method)
		if ep.method != r.Method {
			continue
		}
		if route == "" {
			return h.overview(w, r)
		}
		if id != "" && r.Method != http.MethodDelete {
			return apiError(http.StatusNotFound, "unknown route /oauth2/%s", path)
		}
		site, err := find(h.sites(), r.URL.Query().Get("issuer"))
		if err != nil {
			return err
		}
		return ep.fn(site, w, r, id)
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return apiError(http.StatusMethodNotAllowed, "use %s", strings.Join(allowed, " or "))
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// failure turns an endpoints error into an API error.
func failure(err error) error {
	var inv *endpoints.ErrInvalid
	switch {
	case errors.As(err, &inv):
		return apiError(http.StatusBadRequest, "%s", inv.Reason)
	case errors.Is(err, endpoints.ErrUnknown):
		return apiError(http.StatusNotFound, "%v", err)
	case errors.Is(err, endpoints.ErrConfiguredClient), errors.Is(err, storage.ErrConflict), errors.Is(err, endpoints.ErrKeysNotRotatable),
		errors.Is(err, storage.ErrImportConflict), errors.Is(err, storage.ErrKeySigns):
		return apiError(http.StatusConflict, "%v", err)
	}
	return apiError(http.StatusInternalServerError, "%v", err)
}

// serverInfo is an item of GET /oauth2/.
type serverInfo struct {
	Issuer       string   `json:"issuer"`
	Resources    []string `json:"resources"`
	Storage      string   `json:"storage"`
	SigningAlg   string   `json:"signing_alg"`
	KeyID        string   `json:"kid"`
	Clients      int      `json:"clients"`
	LiveGrants   int      `json:"live_grants"`
	LiveSessions int      `json:"sessions"`
}

func (h handler) overview(w http.ResponseWriter, r *http.Request) error {
	out := []serverInfo{}
	for _, s := range h.sites() {
		c, err := s.Server.Counts(r.Context())
		if err != nil {
			return failure(err)
		}
		keys := s.Server.Keys()
		out = append(out, serverInfo{Issuer: s.Server.Issuer(), Resources: s.Server.Resources(), Storage: s.StoragePath,
			SigningAlg: keys.Algorithm(), KeyID: keys.KeyID(), Clients: c.Clients, LiveGrants: c.Grants, LiveSessions: c.Sessions})
	}
	return writeJSON(w, http.StatusOK, out)
}

func listClients(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	clients, err := s.Server.ListClients(r.Context())
	if err != nil {
		return failure(err)
	}
	return writeJSON(w, http.StatusOK, nonNil(clients))
}

// createdClient is the answer to POST /oauth2/clients: the secret, once.
type createdClient struct {
	endpoints.ClientInfo
	Secret string `json:"client_secret,omitempty"`
}

func createClient(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	var n endpoints.NewClient
	if err := decodeBody(r, &n); err != nil {
		return err
	}
	c, secret, err := s.Server.CreateClient(r.Context(), n)
	if err != nil {
		return failure(err)
	}
	return writeJSON(w, http.StatusCreated, createdClient{c, secret})
}

func deleteClient(s *Site, w http.ResponseWriter, r *http.Request, id string) error {
	if id == "" {
		return apiError(http.StatusBadRequest, "name the client: DELETE /oauth2/clients/<client_id>")
	}
	if err := s.Server.RemoveClient(r.Context(), id); err != nil {
		return failure(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// grantFilter reads user= and client= (or a grant id from the path).
func grantFilter(r *http.Request, id string) (storage.GrantFilter, error) {
	if id != "" {
		f, err := endpoints.ParseGrantID(id)
		if err != nil {
			return f, failure(err)
		}
		return f, nil
	}
	q := r.URL.Query()
	return storage.GrantFilter{Subject: q.Get("user"), ClientID: q.Get("client")}, nil
}

func listGrants(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	f, _ := grantFilter(r, "")
	grants, err := s.Server.ListGrants(r.Context(), f)
	if err != nil {
		return failure(err)
	}
	return writeJSON(w, http.StatusOK, nonNil(grants))
}

func revokeGrants(s *Site, w http.ResponseWriter, r *http.Request, id string) error {
	f, err := grantFilter(r, id)
	if err != nil {
		return err
	}
	n, err := s.Server.RevokeGrants(r.Context(), f, "admin")
	if err != nil {
		return failure(err)
	}
	if id != "" && n == 0 {
		return apiError(http.StatusNotFound, "no such grant")
	}
	return writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func listKeys(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	keys, err := s.Server.ListKeys(r.Context())
	if err != nil {
		return failure(err)
	}
	return writeJSON(w, http.StatusOK, keys)
}

// rotateKey publishes a new signing key that signs after the
// pre-publication time, or at once with ?now=true.
func rotateKey(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	next, err := s.Server.RotateKey(r.Context(), "admin", r.URL.Query().Get("now") == "true")
	if err != nil {
		return failure(err)
	}
	activates := next.ActivatesAt
	if activates.IsZero() {
		activates = next.CreatedAt
	}
	return writeJSON(w, http.StatusOK, map[string]any{"kid": next.ID, "alg": next.Algorithm, "activates_at": activates})
}

// retireKey stops a key verifying at once: {"kid": "…"}.
func retireKey(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	var body struct {
		KID string `json:"kid"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.KID == "" {
		return apiError(http.StatusBadRequest, "name the key: {\"kid\": \"…\"}")
	}
	if err := s.Server.RetireKey(r.Context(), body.KID, "admin"); err != nil {
		return failure(err)
	}
	return writeJSON(w, http.StatusOK, map[string]string{"retired": body.KID})
}

func inspect(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	var body struct {
		Token string `json:"token"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Token == "" {
		return apiError(http.StatusBadRequest, `the body must be {"token": "…"}`)
	}
	return writeJSON(w, http.StatusOK, s.Server.Inspect(r.Context(), body.Token))
}

func backup(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	b, ok := s.File.(storage.Backuper)
	if !ok {
		return apiError(http.StatusNotImplemented, "this storage has no backup through Caddy; use the database's own tools (pg_dump)")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="oauth2-backup.db"`)
	w.Header().Set("Cache-Control", "no-store")
	if _, err := b.Backup(r.Context(), w); err != nil {
		return fmt.Errorf("backing up: %v", err) // the stream has begun: the client sees it cut short
	}
	return nil
}

func export(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	_, err := s.File.Export(r.Context(), w)
	return err
}

// maxImportBytes bounds an import's body.
var maxImportBytes int64 = 256 << 20

// importRecords adds the records of an export (see endpoints.VetImport:
// an import is untrusted input) and says how many it added and which it
// left out. ?keep_privileges=true keeps clients that are trusted,
// introspect every token or use client_credentials.
func importRecords(s *Site, w http.ResponseWriter, r *http.Request, _ string) error {
	body := &boundedBody{r: http.MaxBytesReader(w, r.Body, maxImportBytes)}
	records, err := storage.ReadExport(body)
	switch {
	case body.exceeded:
		return apiError(http.StatusRequestEntityTooLarge, "the import is larger than %d MiB", maxImportBytes>>20)
	case err != nil:
		return apiError(http.StatusBadRequest, "%v", err)
	}
	kept, skipped, err := endpoints.VetImport(records, r.URL.Query().Get("keep_privileges") == "true")
	if err != nil {
		return failure(err)
	}
	var buf bytes.Buffer
	out := storage.NewExportWriter(&buf)
	for _, rec := range kept {
		if err := out.Write(rec.Type, rec.Hash, []byte(rec.Record)); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	n, err := s.File.Import(r.Context(), &buf)
	if err != nil {
		if errors.Is(err, storage.ErrImportConflict) {
			return failure(err)
		}
		return apiError(http.StatusBadRequest, "%v", err)
	}
	answer := struct {
		Imported int            `json:"imported"`
		Skipped  map[string]int `json:"skipped,omitempty"`
	}{n, skipped}
	return writeJSON(w, http.StatusOK, answer)
}

// boundedBody notes that a MaxBytesReader hit its bound (the line cut
// short there may be reported as a bad record before the read error).
type boundedBody struct {
	r        io.Reader
	exceeded bool
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		b.exceeded = true
	}
	return n, err
}

// decodeBody reads a JSON body of at most 64 KiB.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return apiError(http.StatusBadRequest, "the body must be at most 64 KiB of JSON")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiError(http.StatusBadRequest, "the body is not valid JSON for this route: %v", err)
	}
	return nil
}

// nonNil answers [] rather than null for an empty list.
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}

// Interface guard
var _ caddy.AdminRouter = API{}
