package endpoints

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// maxStateLength caps the state parameter, which is echoed back verbatim.
const maxStateLength = 2048

// authorizeRequest is a validated authorization request.
type authorizeRequest struct {
	client        *storage.Client
	redirectURI   string
	redirectGiven bool
	state         string
	challenge     string
	dpopJKT       string // the DPoP key the code is bound to (dpop_jkt)
	scope         string
	resource      string
	prompt        prompt
}

// authorizeError is a refused authorization request. Before the client
// and redirect URI are known to be good it is shown to the user (page);
// after, it is sent to the client's redirect URI.
type authorizeError struct {
	page        bool
	code        string
	description string
}

func (e *authorizeError) Error() string { return e.code + ": " + e.description }

func pageError(description string) *authorizeError {
	return &authorizeError{page: true, code: "invalid_request", description: description}
}

// errPageUnavailable: the storage is down; the page says so with 503.
var errPageUnavailable = &authorizeError{page: true, code: "temporarily_unavailable", description: unavailableDescription}

func redirectError(code, description string) *authorizeError {
	return &authorizeError{code: code, description: description}
}

// parseAuthorizeRequest validates an authorization request's query, in the
// order that decides between an error page and an error redirect.
func (s *clients) parseAuthorizeRequest(ctx context.Context, q url.Values) (*authorizeRequest, *authorizeError) {
	for _, name := range []string{"client_id", "redirect_uri"} {
		if len(q[name]) > 1 {
			return nil, pageError("The " + name + " parameter is repeated.")
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, pageError("The request names no client (client_id is missing).")
	}
	client, err := s.resolveClient(ctx, clientID)
	if storageDown(err) && !(isMetadataDocumentURL(clientID) && s.fetcher != nil) {
		s.cfg.Logger.Error("authorize: storage unavailable", zap.Error(err))
		return nil, errPageUnavailable
	}
	if err != nil {
		if isMetadataDocumentURL(clientID) && s.fetcher != nil {
			s.cfg.Logger.Debug("authorize: client ID metadata document refused", zap.String("client_id", clientID), zap.Error(err))
			return nil, pageError("The application's metadata document cannot be used: " + err.Error())
		}
		return nil, pageError("The application that sent you here is not registered with this server.")
	}
	req := &authorizeRequest{client: client}
	if uris := q["redirect_uri"]; len(uris) == 1 {
		if !matchRedirectURI(client.RedirectURIs, uris[0]) {
			return nil, pageError("The application asked to send you to an address it has not registered.")
		}
		req.redirectURI, req.redirectGiven = uris[0], true
	} else if len(client.RedirectURIs) == 1 {
		req.redirectURI = client.RedirectURIs[0]
	} else {
		return nil, pageError("The request does not say where to send you back (redirect_uri is missing).")
	}

	// From here on, errors go back to the client.
	if state, ok := q["state"]; ok {
		if len(state) > 1 {
			return req, redirectError("invalid_request", "state is repeated")
		}
		if len(state[0]) > maxStateLength {
			return req, redirectError("invalid_request", "state is longer than 2048 bytes")
		}
		req.state = state[0]
	}
	for name, vals := range q {
		if len(vals) > 1 && name != "resource" {
			return req, redirectError("invalid_request", name+" is repeated")
		}
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		return req, redirectError("invalid_request", "response_type is missing")
	case rt != "code":
		return req, redirectError("unsupported_response_type", "only response_type=code is supported")
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		return req, redirectError("invalid_request", "code_challenge is required (PKCE with S256)")
	case method == "" || method == "plain":
		return req, redirectError("invalid_request", "code_challenge_method must be S256; plain is not allowed")
	case method != "S256":
		return req, redirectError("invalid_request", "code_challenge_method must be S256")
	case !validChallenge(challenge):
		return req, redirectError("invalid_request", "code_challenge must be 43 base64url characters (S256)")
	}
	req.challenge = challenge
	if jkt, ok := q["dpop_jkt"]; ok {
		if len(jkt) != 1 || !validChallenge(jkt[0]) {
			return req, redirectError("invalid_request", "dpop_jkt must be the key's SHA-256 thumbprint: 43 base64url characters")
		}
		req.dpopJKT = jkt[0]
	}

	scope, aerr := s.requestedScope(client, q)
	if aerr != nil {
		return req, aerr
	}
	req.scope = scope

	resource, aerr := s.requestedResource(q["resource"])
	if aerr != nil {
		return req, aerr
	}
	req.resource = resource
	if req.prompt, aerr = parsePrompt(q); aerr != nil {
		return req, aerr
	}
	return req, nil
}

// requestedScope returns the scope to grant: the request's, checked
// against the catalogue (and, for a client configured in the Caddyfile,
// its `scopes`), or by default the client's scopes (or the catalogue).
// A registered client's `scope` is not a ceiling: MCP clients register
// with the scope of their first challenge and step up later. A request
// whose scope holds nothing to grant (empty, or only accepted OpenID
// Connect scopes such as offline_access) gets the default, as one
// without the parameter.
func (s *clients) requestedScope(client *storage.Client, q url.Values) (string, *authorizeError) {
	var granted []string
	if raw, given := q["scope"]; given {
		for _, sc := range splitScope(raw[0]) {
			if !ValidScopeToken(sc) {
				return "", redirectError("invalid_scope", "scope contains an invalid token")
			}
		}
		granted = s.grantable(raw[0])
	}
	if len(granted) == 0 {
		if client.Scope != "" {
			return client.Scope, nil
		}
		return strings.Join(s.cfg.Scopes, " "), nil
	}
	for _, sc := range granted {
		if s.cfg.EnforceScopes && !slices.Contains(s.cfg.Scopes, sc) {
			return "", redirectError("invalid_scope", "unknown scope: "+sc)
		}
		if s.configuredClient(client) && client.Scope != "" && !slices.Contains(splitScope(client.Scope), sc) {
			return "", redirectError("invalid_scope", "scope not allowed for this client: "+sc)
		}
	}
	return joinScope(granted), nil
}

// configuredClient reports whether a client comes from the Caddyfile:
// vetted by the operator, unlike a registered or metadata-document client,
// which anyone could have created.
func (s *clients) configuredClient(c *storage.Client) bool {
	_, ok := s.staticClients[c.ID]
	return ok
}

// requestedResource returns the resource (RFC 8707) the token will be
// for: the one requested, or the default.
func (s *core) requestedResource(values []string) (string, *authorizeError) {
	switch len(values) {
	case 0:
		return s.resources[0].id, nil
	case 1:
	default:
		return "", redirectError("invalid_target", "only one resource may be requested")
	}
	res, ok := s.matchResource(values[0])
	if !ok {
		return "", redirectError("invalid_target", "resource is not served by this authorization server")
	}
	return res, nil
}

// authorization is the part that serves the authorization endpoint and
// the consent page, and ends an authorization by its kind (completion.go).
type authorization struct {
	*core
	*pages
	*clients                          // validates the request against the client's registration
	*custody                          // moves the sign-in's upstream tokens to the grant
	*signIn                           // who the user is
	completions map[string]completion // per kind of pending authorization
}

func newAuthorization(c *core, p *pages, cl *clients, k *custody, in *signIn) *authorization {
	a := &authorization{core: c, pages: p, clients: cl, custody: k, signIn: in}
	a.completions = map[string]completion{kindCode: codeCompletion{a}}
	return a
}

// mount serves the authorization endpoint and the consent form.
func (s *authorization) mount(m routeTable) {
	s.at(m, "/oauth/authorize", s.authorize, true)
	s.at(m, "/oauth/consent", s.consent, false)
}

// authorize serves GET /oauth/authorize.
func (s *authorization) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet { // not even HEAD: a prefetch must not issue codes
		w.Header().Set("Allow", "GET")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Open this address with GET.")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The authorization request is malformed.")
		return
	}
	req, aerr := s.parseAuthorizeRequest(r.Context(), q)
	if aerr != nil {
		// Anyone could have registered this client and its redirect URI:
		// the browser is sent there only once the user has signed in here
		// (RFC 9700 §4.11.2), never straight from a link.
		if !aerr.page && !s.configuredClient(req.client) {
			if _, ok := s.identify(w, r); !ok {
				return
			}
		}
		s.refuseAuthorization(w, r, req, aerr)
		return
	}
	user, signedIn := s.currentUser(r)
	if !signedIn || !req.prompt.fresh(user, time.Now()) {
		switch {
		case req.prompt.none:
			s.interactionRequired(w, r, req, signedIn, "login_required", "the user must sign in")
		case signedIn: // prompt=login, or a sign-in older than max_age
			s.sendToSignIn(w, r, afterSignIn(r))
		default:
			s.identify(w, r)
		}
		return
	}
	if s.needsUpstreamSignIn(r, user, req.client.ID, req.resource) {
		if req.prompt.none {
			s.interactionRequired(w, r, req, true, "interaction_required", "the user must sign in at the identity provider again")
			return
		}
		// The session's upstream tokens went to another grant: this one
		// gets its own from a new sign-in at the same provider.
		back := url.Values{"return_to": {r.URL.EscapedPath() + "?" + r.URL.RawQuery}}.Encode()
		http.Redirect(w, r, s.issuerPath+"/oauth/login/"+user.profile.Provider+"?"+back, http.StatusSeeOther)
		return
	}
	if req.prompt.consent || s.needsConsent(r.Context(), req, user.subject) {
		if req.prompt.none {
			s.interactionRequired(w, r, req, true, "consent_required", "the user must consent")
			return
		}
		s.showConsent(w, r, req, user)
		s.cfg.Logger.Debug("authorize: consent requested", zap.String("client_id", req.client.ID), zap.String("sub", user.subject))
		return
	}
	if req.client.Trusted {
		// No screen, but the grant is remembered all the same, so that it
		// can be listed and revoked.
		if err := s.rememberConsent(r, user.subject, req.client.ID, req.resource, req.scope); err != nil {
			s.cfg.Logger.Error("authorize: storing consent", zap.String("client_id", req.client.ID), zap.Error(err))
		}
	}
	complete, _ := s.completionOf(kindCode)
	if err := complete.allow(w, r, req, user, randomToken(), false); err != nil {
		s.cfg.Logger.Error("authorize: issuing code", zap.String("client_id", req.client.ID), zap.Error(err))
		return
	}
	s.cfg.Logger.Debug("authorize: code issued without consent screen", zap.String("client_id", req.client.ID), zap.String("sub", user.subject))
}

// refuseAuthorization shows a page or redirects, as aerr says.
func (s *authorization) refuseAuthorization(w http.ResponseWriter, r *http.Request, req *authorizeRequest, aerr *authorizeError) {
	fields := []zap.Field{zap.String("error", aerr.code), zap.String("description", aerr.description)}
	if req != nil {
		fields = append(fields, zap.String("client_id", req.client.ID))
	}
	s.cfg.Logger.Debug("authorize: refused", fields...)
	if aerr == errPageUnavailable {
		w.Header().Set("Retry-After", unavailableRetryAfter)
		s.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "The sign-in service cannot be reached right now. Please try again in a moment.")
		return
	}
	if aerr.page {
		s.renderError(w, http.StatusBadRequest, "This sign-in request cannot be completed", aerr.description)
		return
	}
	s.redirectToClient(w, r, req, url.Values{"error": {aerr.code}, "error_description": {aerr.description}})
}

// redirectToClient sends the browser back to the client with params, the
// state and the issuer (RFC 9207).
func (s *core) redirectToClient(w http.ResponseWriter, r *http.Request, req *authorizeRequest, params url.Values) {
	if req.state != "" {
		params.Set("state", req.state)
	}
	params.Set("iss", s.cfg.Issuer)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, withParams(req.redirectURI, params), http.StatusFound)
}

// needsConsent reports whether the user must see the consent screen:
// unless the client is trusted, when the user has not yet granted it the
// requested scopes for this resource, and always for a public client that
// anyone could have registered with loopback or private-use redirect URIs
// (RFC 8252 §8.6: any program on the user's computer could be listening
// there).
func (s *authorization) needsConsent(ctx context.Context, req *authorizeRequest, subject string) bool {
	if req.client.Trusted {
		return false
	}
	if !kindOf(req.client).confidential() && !s.configuredClient(req.client) && nativeRedirects(req.client.RedirectURIs) {
		return true
	}
	c, err := s.cfg.Storage.Store.GetConsent(ctx, subject, req.client.ID, req.resource)
	if err != nil || c.Via != "" {
		return true
	}
	granted := strings.Fields(c.Scope)
	for _, sc := range strings.Fields(req.scope) {
		if !slices.Contains(granted, sc) {
			return true
		}
	}
	return false
}

// issueCode stores the authorization code and redirects to the client.
func (s *authorization) issueCode(w http.ResponseWriter, r *http.Request, req *authorizeRequest, user identity, code string) error {
	now := time.Now()
	if err := s.attachUpstream(r, user, req.client.ID, req.resource); err != nil {
		s.redirectToClient(w, r, req, url.Values{"error": {"temporarily_unavailable"}, "error_description": {"the authorization could not be stored; retry shortly"}})
		return err
	}
	err := s.cfg.Storage.Store.SaveAuthorizationCode(r.Context(), code, &storage.AuthorizationCode{
		ClientID:         req.client.ID,
		RedirectURI:      req.redirectURI,
		RedirectURIGiven: req.redirectGiven,
		CodeChallenge:    req.challenge,
		DPoPJKT:          req.dpopJKT,
		Scope:            req.scope,
		Resource:         req.resource,
		Subject:          user.subject,
		Profile:          user.profile,
		AuthTime:         user.authTime,
		IssuedAt:         now,
		ExpiresAt:        now.Add(s.cfg.Tokens.AuthorizationCodeLifetime),
	})
	if err != nil {
		s.redirectToClient(w, r, req, url.Values{"error": {"temporarily_unavailable"}, "error_description": {"the authorization code could not be stored; retry shortly"}})
		return err
	}
	s.redirectToClient(w, r, req, url.Values{"code": {code}})
	return nil
}
