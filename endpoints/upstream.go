package endpoints

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/upstream"
)

// upstreamSignInLifetime is how long a sign-in sent to a provider waits
// for its callback.
const upstreamSignInLifetime = 10 * time.Minute

// callbackPath is where a provider sends the browser back; the operator
// registers s.endpoint(callbackPath + name) at the provider.
const callbackPath = "/oauth/callback/"

// attempt is the upstream.Attempt of a state, with the PKCE verifier and
// the nonce derived from the browser's secret.
func (s *signIn) attempt(p upstream.Provider, state, browserSecret string) upstream.Attempt {
	return upstream.Attempt{
		State:       state,
		RedirectURI: s.endpoint(callbackPath + p.Name()),
		Verifier:    upstream.Derive(browserSecret, "pkce code verifier", state),
		Nonce:       upstream.Derive(browserSecret, "oidc nonce", state),
	}
}

// startUpstream serves GET /oauth/login/<name>: the sign-in is recorded
// (bound to this browser by a short-lived cookie and to the provider) and
// the browser sent to the provider.
func (s *signIn) startUpstream(w http.ResponseWriter, r *http.Request, p upstream.Provider) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Open this address with GET.")
		return
	}
	log := s.cfg.Logger.With(zap.String("provider", p.Name()))
	secret, state := randomToken(), randomToken()
	target, err := p.AuthURL(r.Context(), s.attempt(p, state, secret))
	if err != nil {
		s.metrics.signIns.WithLabelValues(p.Kind(), "failure").Inc()
		log.Error("login: identity provider unavailable", zap.Error(err))
		s.renderError(w, http.StatusBadGateway, "Sign-in is unavailable", "The identity provider "+p.Label()+" cannot be reached right now. Please try again in a moment.")
		return
	}
	now := time.Now()
	err = s.cfg.Storage.Store.SaveUpstreamSignIn(r.Context(), state, &storage.UpstreamSignIn{
		Provider:    p.Name(),
		BrowserHash: storage.Hash(secret),
		ReturnTo:    s.safeReturnTo(r.URL.Query().Get("return_to")),
		ExpiresAt:   now.Add(upstreamSignInLifetime),
	})
	if err != nil {
		s.pageUnavailable(w, "login: storing the sign-in", err)
		return
	}
	s.setCookie(w, r, upstreamCookie, secret, upstreamSignInLifetime)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// callbackParams is the query of a provider's callback.
type callbackParams struct {
	code, state, iss, err, errDescription string
}

// maxCallbackValue caps each callback parameter.
const maxCallbackValue = 4096

// parseCallback reads a callback query: each parameter at most once and at
// most 4 KiB, a state, and a code or an error.
func parseCallback(rawQuery string) (callbackParams, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return callbackParams{}, errors.New("the query is malformed")
	}
	var c callbackParams
	for name, v := range map[string]*string{"code": &c.code, "state": &c.state, "iss": &c.iss, "error": &c.err, "error_description": &c.errDescription} {
		switch vals := q[name]; {
		case len(vals) > 1:
			return callbackParams{}, errors.New(name + " is repeated")
		case len(vals) == 1 && len(vals[0]) > maxCallbackValue:
			return callbackParams{}, errors.New(name + " is too long")
		case len(vals) == 1:
			*v = vals[0]
		}
	}
	switch {
	case c.state == "":
		return callbackParams{}, errors.New("state is missing")
	case c.code == "" && c.err == "":
		return callbackParams{}, errors.New("neither code nor error is given")
	case c.code != "" && c.err != "":
		return callbackParams{}, errors.New("both code and error are given")
	}
	return c, nil
}

// upstreamCallback serves GET /oauth/callback/<name>.
func (s *signIn) upstreamCallback(w http.ResponseWriter, r *http.Request, p upstream.Provider) {
	fail := func(status int, reason, message string) {
		s.metrics.signIns.WithLabelValues(p.Kind(), "failure").Inc()
		s.audit.info(eventSignInFailed, zap.String("method", p.Kind()), zap.String("provider", p.Name()), zap.String("reason", reason))
		s.renderError(w, status, "Sign-in failed", message)
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Open this address with GET.")
		return
	}
	params, err := parseCallback(r.URL.RawQuery)
	if err != nil {
		fail(http.StatusBadRequest, "callback: "+err.Error(), "The identity provider sent you back with a malformed answer. Start again from the application.")
		return
	}
	const startAgain = "This sign-in expired, was already used, or was started in another browser. Start again from the application."
	secret := ""
	if c, err := r.Cookie(cookieName(r, upstreamCookie)); err == nil {
		secret = c.Value
	}
	var browser []byte
	if secret != "" {
		browser = storage.Hash(secret)
	}
	// The browser check is part of the one step that takes the sign-in:
	// a state presented by another browser leaves it for its user.
	signIn, err := s.cfg.Storage.Store.TakeUpstreamSignIn(r.Context(), params.state, browser, time.Now())
	switch {
	case storageDown(err):
		s.pageUnavailable(w, "login callback", err)
		return
	case errors.Is(err, storage.ErrWrongBrowser):
		fail(http.StatusBadRequest, "the sign-in was started in another browser", startAgain)
		return
	case err != nil:
		fail(http.StatusBadRequest, "unknown, used or expired state", startAgain)
		return
	}
	s.setCookie(w, r, upstreamCookie, "", -time.Second)
	issuer, issRequired, err := p.CallbackIssuer(r.Context())
	if err != nil {
		fail(http.StatusBadGateway, err.Error(), "The identity provider "+p.Label()+" cannot be reached right now. Please try again in a moment.")
		return
	}
	switch {
	case signIn.Provider != p.Name():
		fail(http.StatusBadRequest, "the state belongs to provider "+signIn.Provider+" (mix-up)", startAgain)
		return
	case params.iss == "" && issRequired:
		fail(http.StatusBadRequest, "the callback has no iss, though the provider says it sends one (RFC 9207; mix-up)", startAgain)
		return
	case params.iss != "" && params.iss != issuer:
		fail(http.StatusBadRequest, "the callback's iss is not the provider's (mix-up)", startAgain)
		return
	case params.err == "access_denied":
		s.metrics.signIns.WithLabelValues(p.Kind(), "cancelled").Inc()
		s.audit.info(eventSignInFailed, zap.String("method", p.Kind()), zap.String("provider", p.Name()), zap.String("reason", "cancelled at the provider"))
		s.abandonAuthorization(w, r, signIn.ReturnTo, true, "Sign-in cancelled", "You cancelled the sign-in at "+p.Label()+".")
		return
	case params.err != "":
		fail(http.StatusBadGateway, "the provider answered error="+params.err+": "+params.errDescription, "The identity provider "+p.Label()+" could not sign you in. Start again from the application.")
		return
	}
	id, err := p.Identify(r.Context(), s.attempt(p, params.state, secret), params.code)
	if err != nil {
		status, message := http.StatusBadRequest, "The identity provider's answer could not be verified. Start again from the application."
		var ue *upstream.Error
		if errors.As(err, &ue) && ue.Status == http.StatusBadGateway {
			status, message = ue.Status, "The identity provider "+p.Label()+" cannot be reached right now. Please try again in a moment."
		}
		fail(status, err.Error(), message)
		return
	}
	if !p.Admit(id) {
		s.metrics.signIns.WithLabelValues(p.Kind(), "refused").Inc()
		s.audit.warn(eventSignInRefused, zap.String("method", p.Kind()), zap.String("provider", p.Name()), zap.String("sub", id.Subject),
			zap.String("email", id.Email), zap.String("login", id.PreferredUsername))
		s.abandonAuthorization(w, r, signIn.ReturnTo, false, "Not allowed", "This account is not allowed to sign in here. Ask the operator of this server for access, or sign in with another account.")
		return
	}
	sid, now := randomToken(), time.Now()
	profile := storage.Profile{Provider: p.Name(), Email: id.Email, Name: id.Name, PreferredUsername: id.PreferredUsername}
	err = s.cfg.Storage.Store.SaveSession(r.Context(), sid, &storage.Session{Subject: id.Subject, Profile: profile, AuthTime: now, ExpiresAt: now.Add(s.cfg.SignIn.SessionLifetime)})
	if err != nil {
		s.pageUnavailable(w, "login: storing session", err)
		return
	}
	if s.passesUpstream(p.Name()) && id.Token != nil {
		if err := s.keepSignInTokens(r.Context(), sid, id.Subject, p.Name(), id.Token, now.Add(s.cfg.SignIn.SessionLifetime)); err != nil {
			s.pageUnavailable(w, "login: storing the identity provider's tokens", err)
			return
		}
	}
	s.setCookie(w, r, sessionCookie, sid, s.cfg.SignIn.SessionLifetime)
	s.metrics.signIns.WithLabelValues(p.Kind(), "success").Inc()
	s.audit.info(eventSignIn, zap.String("method", p.Kind()), zap.String("provider", p.Name()), zap.String("sub", id.Subject))
	if signIn.ReturnTo == "" {
		s.renderError(w, http.StatusOK, "Signed in", "You are signed in. Return to the application to continue.")
		return
	}
	http.Redirect(w, r, signIn.ReturnTo, http.StatusSeeOther)
}

// abandonAuthorization ends an authorization the user could not sign in
// for. The client gets access_denied (with state and iss): at once when
// it is a Caddyfile client and the user cancelled; otherwise only if the
// user follows "Back to the application" from the page explaining why.
func (s *signIn) abandonAuthorization(w http.ResponseWriter, r *http.Request, returnTo string, cancelled bool, title, message string) {
	page := errorPage{Title: title, Message: message}
	status := http.StatusForbidden
	if req := s.pendingRequest(r, returnTo); req != nil {
		params := url.Values{"error": {"access_denied"}, "error_description": {"the user could not sign in"}, "iss": {s.cfg.Issuer}}
		if req.state != "" {
			params.Set("state", req.state)
		}
		if cancelled && s.configuredClient(req.client) {
			s.redirectToClient(w, r, req, params)
			return
		}
		page.BackURL = template.URL(withParams(req.redirectURI, params)) // a registered, validated redirect URI
	}
	s.renderPage(w, status, "error.html", page)
}

// pendingRequest is the authorization request a return URL holds, when
// its client and redirect URI are valid (so an error may be sent there).
func (s *signIn) pendingRequest(r *http.Request, returnTo string) *authorizeRequest {
	_, rawQuery, ok := strings.Cut(returnTo, "?")
	if !ok {
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil
	}
	req, aerr := s.parseAuthorizeRequest(r.Context(), q)
	if req == nil || aerr != nil && aerr.page {
		return nil
	}
	return req
}
