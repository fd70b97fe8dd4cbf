package endpoints

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

// logoutPage is the data of logout.html.
type logoutPage struct {
	Title, Action, CSRF, Account, Via string
}

// logout serves <issuer path>/oauth/logout: GET shows who is signed in
// and a form; its CSRF-protected POST ends the sign-in session, so a
// person can switch accounts. Tokens already issued stay valid.
func (s *signIn) logout(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		page := logoutPage{Title: "Sign out", Action: s.issuerPath + "/oauth/logout"}
		if user, ok := s.currentUser(r); ok {
			page.Account, page.Via = s.accountName(user)
			page.CSRF = s.pageCSRF(w, r)
		}
		s.renderPage(w, http.StatusOK, "logout.html", page)
	case http.MethodPost:
		form, ok := s.parseForm(w, r)
		cookie, err := r.Cookie(cookieName(r, loginCSRFCookie))
		if !ok || err != nil || form.Get("csrf_token") == "" || !equalSecrets(form.Get("csrf_token"), cookie.Value) {
			s.cfg.Logger.Debug("logout: refused, CSRF token missing or wrong")
			s.renderError(w, http.StatusBadRequest, "Sign-out failed", "The sign-out form expired. Open the sign-out page again.")
			return
		}
		user, _ := s.currentUser(r)
		if c, err := r.Cookie(cookieName(r, sessionCookie)); err == nil && c.Value != "" {
			if err := s.cfg.Storage.Store.DeleteSession(r.Context(), c.Value); err != nil {
				s.cfg.Logger.Error("logout: deleting the session", zap.Error(err))
			}
			// Provider tokens still waiting for a grant go with the session.
			if s.passesUpstream(user.profile.Provider) {
				if err := s.cfg.Storage.Store.DeleteUpstreamToken(r.Context(), user.subject, "", sessionRef(r)); err != nil {
					s.cfg.Logger.Error("logout: deleting the session's upstream tokens", zap.Error(err))
				}
			}
		}
		s.setCookie(w, r, sessionCookie, "", -time.Second)
		s.setCookie(w, r, loginCSRFCookie, "", -time.Second)
		s.audit.info(eventSignOut, zap.String("sub", user.subject))
		s.renderError(w, http.StatusOK, "Signed out", "You are signed out. The next application that sends you here will ask you to sign in.")
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Use the sign-out form.")
	}
}

// accountName is how a user is shown: the e-mail address, login or name
// an identity provider gave, with the provider's label; else the subject.
func (s *signIn) accountName(user identity) (account, via string) {
	p := user.profile
	account = user.subject
	for _, v := range []string{p.Email, p.PreferredUsername, p.Name} {
		if v != "" {
			account = v
			break
		}
	}
	if provider, ok := s.providerByName[p.Provider]; ok {
		via = provider.Label()
	}
	return account, via
}
