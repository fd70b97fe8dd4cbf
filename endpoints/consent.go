package endpoints

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// consentPage is the data of consent.html.
type consentPage struct {
	Title, Action, RequestID, CSRF     string
	ClientName, ClientID, RedirectHost string
	ClientHost                         string // host of a metadata document
	Resource, ResourceName, Subject    string
	// Via is the label of the identity provider the user signed in with.
	Via    string
	Scopes []scopeItem
	// LoopbackHost is host:port of the redirect URI when every redirect
	// URI of the client is on loopback: the application runs on the
	// user's own computer.
	LoopbackHost string
}

// showConsent keeps the validated request server-side, bound to the user
// and to a one-time CSRF token, and shows the consent screen. The form
// carries only the request's id and that token.
func (s *authorization) showConsent(w http.ResponseWriter, r *http.Request, req *authorizeRequest, user identity) {
	id, csrf := randomToken(), randomToken()
	now := time.Now()
	err := s.cfg.Storage.Store.SavePendingAuthorization(r.Context(), id, &storage.PendingAuthorization{
		Kind:             kindCode,
		ClientID:         req.client.ID,
		RedirectURI:      req.redirectURI,
		RedirectURIGiven: req.redirectGiven,
		State:            req.state,
		CodeChallenge:    req.challenge,
		DPoPJKT:          req.dpopJKT,
		Scope:            req.scope,
		Resource:         req.resource,
		Subject:          user.subject,
		Profile:          user.profile,
		AuthTime:         user.authTime,
		CSRFHash:         storage.Hash(csrf),
		ExpiresAt:        now.Add(s.cfg.Tokens.AuthorizationCodeLifetime),
	})
	if err != nil {
		s.cfg.Logger.Error("authorize: storing pending request", zap.Error(err))
		s.redirectToClient(w, r, req, url.Values{"error": {"temporarily_unavailable"}, "error_description": {"the request could not be stored; retry shortly"}})
		return
	}
	name := cmp.Or(req.client.Name, req.client.ID)
	account, via := s.accountName(user)
	page := consentPage{
		Title:        "Allow " + name + "?",
		Action:       s.issuerPath + "/oauth/consent",
		RequestID:    id,
		CSRF:         csrf,
		ClientName:   name,
		ClientID:     req.client.ID,
		RedirectHost: redirectHost(req.redirectURI),
		ClientHost:   documentHost(req.client),
		Resource:     req.resource,
		ResourceName: s.cfg.ResourceName,
		Subject:      account,
		Via:          via,
		Scopes:       s.scopes.items(splitScope(req.scope)),
	}
	if loopbackRedirects(req.client.RedirectURIs) {
		page.LoopbackHost = redirectHost(req.redirectURI)
	}
	s.renderPage(w, http.StatusOK, "consent.html", page)
}

// consentReplayWindow is how long after answering a consent form its
// user may submit it again (a double click, a client's "Reconnect" button)
// and be sent where the first answer sent them.
const consentReplayWindow = 2 * time.Minute

// consent serves POST /oauth/consent: the user's Allow or Deny.
func (s *authorization) consent(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Use the consent form.")
		return
	}
	form, ok := s.parseForm(w, r)
	if !ok {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The consent form could not be read.")
		return
	}
	refuse := func(reason string) {
		s.cfg.Logger.Debug("consent: refused form", zap.String("reason", reason))
		s.renderError(w, http.StatusBadRequest, "This request cannot be completed",
			"The consent form expired, was already answered, or was not sent by this page. Start again from the application.")
	}
	id, csrf, decision := form.Get("request_id"), form.Get("csrf_token"), form.Get("decision")
	switch {
	case id == "":
		refuse("no request id")
		return
	case decision != "allow" && decision != "deny":
		refuse("no decision")
		return
	}
	user, _ := s.currentUser(r)
	pending, repeated, err := s.cfg.Storage.Store.AnswerPendingAuthorization(r.Context(), id, storage.ConsentAnswer{
		CSRF: csrf, Subject: user.subject, Decision: decision, Now: time.Now(), ReplayWindow: consentReplayWindow,
	})
	if storageDown(err) {
		s.pageUnavailable(w, "consent", err)
		return
	}
	if err != nil {
		refuse("unknown, expired or already answered request, a wrong CSRF token, or not the user it was shown to")
		return
	}
	complete, known := s.completionOf(pending.Kind)
	if !known {
		refuse("a kind of request this server does not complete: " + pending.Kind)
		return
	}
	client, err := s.lookupClient(r.Context(), pending.ClientID)
	if storageDown(err) {
		s.pageUnavailable(w, "consent", err)
		return
	}
	if err != nil {
		refuse("client no longer exists")
		return
	}
	req := &authorizeRequest{
		client: client, redirectURI: pending.RedirectURI, redirectGiven: pending.RedirectURIGiven,
		state: pending.State, challenge: pending.CodeChallenge, dpopJKT: pending.DPoPJKT, scope: pending.Scope, resource: pending.Resource,
	}
	who := []zap.Field{zap.String("client_id", client.ID), zap.String("sub", pending.Subject), zap.String("resource", req.resource)}
	answerer := identity{subject: pending.Subject, authTime: pending.AuthTime, profile: pending.Profile}
	code := consentCode(csrf, id)
	switch {
	case pending.Decision == "deny":
		if !repeated {
			s.audit.info(eventConsentDenied, who...)
		}
		complete.deny(w, r, req)
	case repeated:
		// The same form again: the same answer, delivered already.
		s.cfg.Logger.Debug("consent: repeated submit answered as before", who...)
		complete.allow(w, r, req, answerer, code, true)
	default:
		if err := s.rememberConsent(r, pending.Subject, client.ID, req.resource, req.scope); err != nil {
			s.cfg.Logger.Error("consent: storing", append(who, zap.Error(err))...)
		}
		if err := complete.allow(w, r, req, answerer, code, false); err != nil {
			s.cfg.Logger.Error("consent: completing", append(who, zap.Error(err))...)
			return
		}
		s.audit.info(eventConsentGranted, append(who, zap.String("scope", req.scope))...)
	}
}

// consentCode is the authorization code of an allowed consent form,
// derived from the form's one-time CSRF token (256 random bits only the
// user's browser holds; the server keeps its hash): a repeated submit of
// the form gets the same code, and the code is never stored in the clear.
func consentCode(csrf, requestID string) string {
	mac := hmac.New(sha256.New, []byte(csrf))
	mac.Write([]byte("authorization code\x00" + requestID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// rememberConsent adds scope to what the user has granted the client for
// the resource.
func (s *authorization) rememberConsent(r *http.Request, subject, clientID, resource, scope string) error {
	granted := splitScope(scope)
	if old, err := s.cfg.Storage.Store.GetConsent(r.Context(), subject, clientID, resource); err == nil && old.Via == "" {
		granted = dedupe(append(splitScope(old.Scope), granted...))
	}
	return s.cfg.Storage.Store.PutConsent(r.Context(), &storage.Consent{
		Subject: subject, ClientID: clientID, Resource: resource, Scope: strings.Join(granted, " "), GrantedAt: time.Now(),
	})
}
