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
// clients, client_id alone (none). On failure it answers 401
// invalid_client (real MCP clients take that as "register again") and
// returns false.
func (s *Server) authenticateClient(w http.ResponseWriter, r *http.Request, form url.Values) (*storage.Client, bool) {
	id, secret, basic := r.BasicAuth()
	fail := func(description string) (*storage.Client, bool) {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+s.cfg.Issuer+`", charset="UTF-8"`)
		}
		s.cfg.Logger.Info("client authentication failed", zap.String("client_id", id), zap.String("reason", description))
		writeError(w, http.StatusUnauthorized, "invalid_client", description)
		return nil, false
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
			return fail("use one client authentication method, not two")
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
	if err != nil {
		return fail("unknown client")
	}
	if confidential(client) {
		if secret == "" {
			return fail("this client must authenticate with its secret")
		}
		if subtle.ConstantTimeCompare(storage.Hash(secret), client.SecretHash) != 1 {
			return fail("wrong client secret")
		}
	}
	return client, true
}
