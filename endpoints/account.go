package endpoints

import (
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// accountPage is the data of account.html: the apps a user authorized.
type accountPage struct {
	Title, Action, LogoutAction, CSRF, Account, Via, Notice string
	Apps                                                    []connectedApp
}

// connectedApp is one grant as its user sees it.
type connectedApp struct {
	ID, Name, Host, Resource, Granted, LastUsed string
	Scopes                                      []scopeItem
}

// account serves <issuer path>/oauth/account: a signed-in user's connected
// apps, each with a Revoke button (a CSRF-protected POST that revokes its
// refresh tokens, live access tokens and remembered consent), and a Sign
// out button. Without a session the user signs in first and comes back.
func (s *signIn) account(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		user, ok := s.identify(w, r)
		if !ok {
			return
		}
		notice := ""
		if r.URL.Query().Get("revoked") != "" {
			notice = "The app was revoked. It has to ask you again to connect."
		}
		s.showAccount(w, r, user, notice)
	case http.MethodPost:
		s.revokeApp(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Use the connected-apps page.")
	}
}

func (s *signIn) showAccount(w http.ResponseWriter, r *http.Request, user identity, notice string) {
	grants, err := s.ListGrants(r.Context(), storage.GrantFilter{Subject: user.subject})
	if err != nil {
		s.pageUnavailable(w, "account: listing grants", err)
		return
	}
	page := accountPage{Title: "Connected apps", Action: s.issuerPath + "/oauth/account", LogoutAction: s.issuerPath + "/oauth/logout",
		CSRF: s.pageCSRF(w, r), Notice: notice}
	page.Account, page.Via = s.accountName(user)
	for _, g := range grants {
		app := connectedApp{ID: g.ID, Name: g.ClientID, Resource: g.Resource, Scopes: s.scopes.items(splitScope(g.Scope)), Granted: day(g.CreatedAt)}
		if !g.LastUsedAt.IsZero() {
			app.LastUsed = day(g.LastUsedAt)
		}
		if c := g.client; c != nil {
			if c.Name != "" {
				app.Name = c.Name
			}
			app.Host = documentHost(c)
			if app.Host == "" && len(c.RedirectURIs) > 0 {
				app.Host = redirectHost(c.RedirectURIs[0])
			}
		}
		page.Apps = append(page.Apps, app)
	}
	s.renderPage(w, http.StatusOK, "account.html", page)
}

func day(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") }

// revokeApp answers a Revoke button: only the signed-in user's own grant.
func (s *signIn) revokeApp(w http.ResponseWriter, r *http.Request) {
	form, ok := s.parseForm(w, r)
	cookie, err := r.Cookie(cookieName(r, loginCSRFCookie))
	user, signedIn := s.currentUser(r)
	if !ok || err != nil || form.Get("csrf_token") == "" || !equalSecrets(form.Get("csrf_token"), cookie.Value) || !signedIn {
		s.cfg.Logger.Debug("account: refused, CSRF token or session missing or wrong")
		s.renderError(w, http.StatusBadRequest, "This request cannot be completed", "The page expired. Open your connected apps again.")
		return
	}
	f, err := ParseGrantID(form.Get("grant"))
	if err != nil || f.Subject != user.subject || form.Get("action") != "revoke" {
		s.renderError(w, http.StatusBadRequest, "This request cannot be completed", "That is not one of your apps.")
		return
	}
	if _, err := s.RevokeGrants(r.Context(), f, "user"); err != nil {
		s.pageUnavailable(w, "account: revoking", err)
		return
	}
	http.Redirect(w, r, s.issuerPath+"/oauth/account?"+url.Values{"revoked": {"1"}}.Encode(), http.StatusSeeOther)
}
