package endpoints

import (
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// authenticateClient identifies the client of a token-endpoint style
// request (token, revocation, introspection).
//
// What is enforced is the kind of credential the client registered: a
// client with a secret presents it, by client_secret_basic or
// client_secret_post — either, since both send the same secret (a
// Caddyfile client's token_endpoint_auth_method, when the operator set
// one, allows only that method); a public client presents its client_id
// alone (none), and a secret or a client_assertion it is not registered
// for is refused. One method per request: a secret both in Basic and in
// the body is 400 invalid_request (RFC 6749 §2.3). An Authorization
// header of another scheme (an MCP client's expired Bearer token) is not
// client authentication and is ignored. Any other failure answers 401
// invalid_client (real MCP clients take that as "register again"). On
// failure it returns the error code it answered with.
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
	assertion := form.Get("client_assertion") != "" || form.Get("client_assertion_type") != ""
	if basic {
		// RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return fail("malformed Basic credentials")
		}
		if form.Get("client_secret") != "" || assertion {
			s.cfg.Logger.Debug("client authentication refused: two methods", zap.String("client_id", id))
			writeError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method per request, not Basic and client_secret (or client_assertion) both")
			return nil, "invalid_request"
		}
		if formID := form.Get("client_id"); formID != "" && formID != id {
			return fail("client_id does not match the Basic credentials")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
		if secret != "" && assertion {
			writeError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method per request, not client_secret and client_assertion both")
			return nil, "invalid_request"
		}
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
	if !confidential(client) {
		if secret != "" || assertion {
			return fail("this client is public: it authenticates with its client_id alone (none), not with a secret or an assertion")
		}
		return client, ""
	}
	if assertion {
		return fail("this client authenticates with its client secret, not with an assertion")
	}
	if secret == "" {
		return fail("this client must authenticate with its secret")
	}
	used := "client_secret_post"
	if basic {
		used = "client_secret_basic"
	}
	if m := s.onlyMethod(client); m != "" && m != used {
		return fail("this client authenticates with " + m + ", not " + used)
	}
	if !equalSecretHash(secret, client.SecretHash) {
		return fail("wrong client secret")
	}
	return client, ""
}

// onlyMethod is the one secret method a client must use: the one an
// operator set on a Caddyfile client; "" (either) for every other.
func (s *Server) onlyMethod(c *storage.Client) string {
	if _, static := s.staticClients[c.ID]; static {
		return c.TokenEndpointAuthMethod
	}
	return ""
}
