package endpoints

import (
	"crypto/subtle"
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
	Scopes                             []string
}

// showConsent keeps the validated request server-side, bound to the user
// and to a one-time CSRF token, and shows the consent screen. The form
// carries only the request's id and that token.
func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, req *authorizeRequest, user identity) {
	id, csrf := randomToken(), randomToken()
	now := time.Now()
	err := s.cfg.Store.SavePendingAuthorization(r.Context(), id, &storage.PendingAuthorization{
		ClientID:         req.client.ID,
		RedirectURI:      req.redirectURI,
		RedirectURIGiven: req.redirectGiven,
		State:            req.state,
		CodeChallenge:    req.challenge,
		Scope:            req.scope,
		Resource:         req.resource,
		Subject:          user.subject,
		AuthTime:         user.authTime,
		CSRFHash:         storage.Hash(csrf),
		ExpiresAt:        now.Add(s.cfg.AuthorizationCodeLifetime),
	})
	if err != nil {
		s.cfg.Logger.Error("authorize: storing pending request", zap.Error(err))
		s.redirectToClient(w, r, req, url.Values{"error": {"server_error"}, "error_description": {"the request could not be stored"}})
		return
	}
	name := req.client.Name
	if name == "" {
		name = req.client.ID
	}
	s.renderPage(w, http.StatusOK, "consent.html", consentPage{
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
		Subject:      user.subject,
		Scopes:       splitScope(req.scope),
	})
}

// consent serves POST /oauth/consent: the user's Allow or Deny.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
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
		s.cfg.Logger.Info("consent: refused form", zap.String("reason", reason))
		s.renderError(w, http.StatusBadRequest, "This request cannot be completed",
			"The consent form expired, was already answered, or was not sent by this page. Start again from the application.")
	}
	id := form.Get("request_id")
	if id == "" {
		refuse("no request id")
		return
	}
	pending, err := s.cfg.Store.TakePendingAuthorization(r.Context(), id, time.Now())
	if err != nil {
		refuse("unknown, answered or expired request")
		return
	}
	if subtle.ConstantTimeCompare(storage.Hash(form.Get("csrf_token")), pending.CSRFHash) != 1 {
		refuse("CSRF token mismatch")
		return
	}
	user, ok := s.currentUser(r)
	if !ok || user.subject != pending.Subject {
		refuse("not the user the request was shown to")
		return
	}
	client, err := s.lookupClient(r.Context(), pending.ClientID)
	if err != nil {
		refuse("client no longer exists")
		return
	}
	req := &authorizeRequest{
		client: client, redirectURI: pending.RedirectURI, redirectGiven: pending.RedirectURIGiven,
		state: pending.State, challenge: pending.CodeChallenge, scope: pending.Scope, resource: pending.Resource,
	}
	log := s.cfg.Logger.With(zap.String("client_id", client.ID), zap.String("resource", req.resource), zap.String("sub", user.subject))
	switch form.Get("decision") {
	case "allow":
	case "deny":
		log.Info("consent: denied")
		s.redirectToClient(w, r, req, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}})
		return
	default:
		refuse("no decision")
		return
	}
	if err := s.rememberConsent(r, user.subject, client.ID, req.scope); err != nil {
		log.Error("consent: storing", zap.Error(err))
	}
	if err := s.issueCode(w, r, req, identity{subject: pending.Subject, authTime: pending.AuthTime}); err != nil {
		log.Error("consent: issuing code", zap.Error(err))
		return
	}
	log.Info("consent: allowed, code issued", zap.String("scope", req.scope))
}

// rememberConsent adds scope to what the user has granted the client.
func (s *Server) rememberConsent(r *http.Request, subject, clientID, scope string) error {
	granted := splitScope(scope)
	if old, err := s.cfg.Store.GetConsent(r.Context(), subject, clientID); err == nil {
		granted = dedupe(append(splitScope(old.Scope), granted...))
	}
	return s.cfg.Store.PutConsent(r.Context(), &storage.Consent{
		Subject: subject, ClientID: clientID, Scope: strings.Join(granted, " "), GrantedAt: time.Now(),
	})
}
