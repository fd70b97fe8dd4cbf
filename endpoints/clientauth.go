package endpoints

import (
	"crypto/subtle"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// authenticateClient identifies the client of a token-endpoint style
// request by client_secret_basic, client_secret_post or, for public
// clients, client_id alone (none). A confidential client must use the
// method it registered (a Caddyfile client without
// token_endpoint_auth_method may use either), and only one per request:
// a secret both in Basic and in the body is 400 invalid_request (RFC 6749
// §2.3). Any other failure answers 401 invalid_client (real MCP clients
// take that as "register again"). On failure it returns the error code
// it answered with.
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, form url.Values) (*storage.Client, string) {
	id, secret, basic := r.BasicAuth()
	fail := func(description string) (*storage.Client, string) {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+s.cfg.Issuer+`", charset="UTF-8"`)
		}
		s.cfg.Logger.Debug("client authentication failed", zap.String("client_id", id), zap.String("reason", description))
		writeError(w, http.StatusUnauthorized, "invalid_client", description)
		return nil, "invalid_client"
	}
	if basic {
		// RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return fail("malformed Basic credentials")
		}
		if form.Get("client_secret") != "" {
			s.cfg.Logger.Debug("client authentication refused: two methods", zap.String("client_id", id))
			writeError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method per request, not Basic and client_secret both")
			return nil, "invalid_request"
		}
		if formID := form.Get("client_id"); formID != "" && formID != id {
			return fail("client_id does not match the Basic credentials")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" {
		return fail("client authentication is required")
	}
	client, err := s.lookupClient(r.Context(), id)
	if storageDown(err) {
		s.unavailable(w, "client authentication", err)
		return nil, "temporarily_unavailable"
	}
	if err != nil {
		return fail("unknown client")
	}
	if confidential(client) {
		if secret == "" {
			return fail("this client must authenticate with its secret")
		}
		used := "client_secret_post"
		if basic {
			used = "client_secret_basic"
		}
		if m := client.TokenEndpointAuthMethod; m != "" && m != used {
			return fail("this client authenticates with " + m + ", not " + used)
		}
		if subtle.ConstantTimeCompare(storage.Hash(secret), client.SecretHash) != 1 {
			return fail("wrong client secret")
		}
	}
	return client, ""
}
