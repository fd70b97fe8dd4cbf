package endpoints

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/upstream"
)

// identity is who is signing in.
type identity struct {
	subject  string
	authTime time.Time
	// profile is what an upstream identity provider said (empty for
	// built-in users and user_from).
	profile storage.Profile
	// fromHeader: the identity came from user_from, not a session here.
	fromHeader bool
}

// Cookie names; the __Host- prefix (https only) pins a cookie to this host.
const (
	sessionCookie   = "oauth2_session"
	loginCSRFCookie = "oauth2_login_csrf"
	// upstreamCookie holds the browser's secret of a sign-in in progress
	// at an upstream identity provider.
	upstreamCookie = "oauth2_upstream"
)

// signIn is the part that knows who the user is: the session cookie, the
// built-in accounts and their throttle, the identity providers
// (upstream.go), signing out and the account page.
type signIn struct {
	*core
	*pages
	*custody   // keeps what a provider issues at a sign-in
	*operator  // the user's grants on the account page
	providers  []upstream.Provider
	loginLimit *keyedLimiter // failed sign-ins per account and per IP
	decoyHash  string        // compared when a user name is unknown
}

func newSignIn(c *core, p *pages, k *custody, o *operator) *signIn {
	s := &signIn{core: c, pages: p, custody: k, operator: o, providers: c.cfg.SignIn.Providers,
		loginLimit: newKeyedLimiter(5, 15*time.Minute), decoyHash: costliestHash(c.cfg.SignIn.Users)}
	s.loginLimit.shareAcrossNodes(c, "login")
	return s
}

// mount serves the sign-in page (or says there is none), signing out and
// the account page.
func (s *signIn) mount(m routeTable) {
	login := s.login
	if len(s.cfg.SignIn.Users) == 0 && len(s.providers) == 0 {
		login = s.noLogin
	}
	s.at(m, "/oauth/login", login, false)
	s.at(m, "/oauth/logout", s.logout, false)
	s.at(m, "/oauth/account", s.account, false)
}

// route serves the start and the callback of a sign-in at an identity
// provider.
func (s *signIn) route(path string) http.HandlerFunc {
	if name, ok := strings.CutPrefix(path, s.issuerPath+"/oauth/login/"); ok {
		if p, known := s.providerByName[name]; known {
			return func(w http.ResponseWriter, r *http.Request) { s.startUpstream(w, r, p) }
		}
	}
	if name, ok := strings.CutPrefix(path, s.issuerPath+callbackPath); ok {
		if p, known := s.providerByName[name]; known {
			return func(w http.ResponseWriter, r *http.Request) { s.upstreamCallback(w, r, p) }
		}
	}
	return nil
}

// noLogin answers the login route when there are no built-in users.
func (s *signIn) noLogin(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, http.StatusNotFound, "No sign-in page", "This server has no built-in accounts.")
}

func cookieName(r *http.Request, name string) string {
	if r.TLS != nil {
		return "__Host-" + name
	}
	return name
}

func (s *signIn) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName(r, name),
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

// currentUser returns the signed-in user: a live built-in session, or the
// identity an earlier handler put in the user_from placeholder.
func (s *signIn) currentUser(r *http.Request) (identity, bool) {
	if c, err := r.Cookie(cookieName(r, sessionCookie)); err == nil && c.Value != "" {
		if sess, err := s.cfg.Storage.Store.GetSession(r.Context(), c.Value, time.Now()); err == nil {
			return identity{subject: sess.Subject, authTime: sess.AuthTime, profile: sess.Profile}, true
		}
	}
	if s.cfg.SignIn.UserFrom != "" {
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			// The placeholder comes from the config, never from the request.
			if sub := repl.ReplaceKnown(s.cfg.SignIn.UserFrom, ""); sub != "" && sub != s.cfg.SignIn.UserFrom {
				return identity{subject: sub, authTime: time.Now(), fromHeader: true}, true
			}
		}
	}
	return identity{}, false
}

// identify returns the signed-in user, or answers the request by sending
// the browser to sign in (or with 401) and returns false.
func (s *signIn) identify(w http.ResponseWriter, r *http.Request) (identity, bool) {
	if user, ok := s.currentUser(r); ok {
		return user, true
	}
	returnTo := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		returnTo += "?" + r.URL.RawQuery
	}
	s.sendToSignIn(w, r, returnTo)
	return identity{}, false
}

// sendToSignIn sends the browser to sign in (or answers 401 when there is
// no way to), to come back to returnTo.
func (s *signIn) sendToSignIn(w http.ResponseWriter, r *http.Request, returnTo string) {
	back := url.Values{"return_to": {returnTo}}.Encode()
	switch {
	case s.cfg.SignIn.SignInPath != "":
		http.Redirect(w, r, s.cfg.SignIn.SignInPath+"?"+back, http.StatusSeeOther)
	case len(s.providers) == 1 && len(s.cfg.SignIn.Users) == 0:
		// One way to sign in: straight to the provider.
		http.Redirect(w, r, s.issuerPath+"/oauth/login/"+s.providers[0].Name()+"?"+back, http.StatusSeeOther)
	case len(s.cfg.SignIn.Users) > 0 || len(s.providers) > 0:
		http.Redirect(w, r, s.issuerPath+"/oauth/login?"+back, http.StatusSeeOther)
	default:
		s.renderError(w, http.StatusUnauthorized, "Sign-in required", "You are not signed in, and this server has no sign-in page configured.")
	}
}

// safeReturnTo accepts only a same-origin path back to the authorization
// endpoint or the connected-apps page, so the login page is no open
// redirector.
func (s *signIn) safeReturnTo(v string) string {
	if strings.ContainsAny(v, "\\\r\n") {
		return ""
	}
	if account := s.issuerPath + "/oauth/account"; v == account || strings.HasPrefix(v, account+"?") {
		return v
	}
	for _, prefix := range []string{s.issuerPath + "/oauth/authorize?", "/authorize?"} {
		if strings.HasPrefix(v, prefix) {
			return v
		}
	}
	return ""
}

// loginPage is the data of login.html: a button per upstream provider,
// and the password form when there are built-in users.
type loginPage struct {
	Title, Action, CSRF, ReturnTo, Username, Error string
	Providers                                      []providerLink
	Passwords                                      bool
}

// providerLink is a "Continue with <Label>" button.
type providerLink struct {
	Label string
	URL   string
}

// login serves GET and POST /oauth/login.
func (s *signIn) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.showLogin(w, r, http.StatusOK, s.safeReturnTo(r.URL.Query().Get("return_to")), "", "")
	case http.MethodPost:
		if len(s.cfg.SignIn.Users) == 0 {
			s.noLogin(w, r)
			return
		}
		s.postLogin(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.renderError(w, http.StatusMethodNotAllowed, "Method not allowed", "Use the sign-in form.")
	}
}

func (s *signIn) showLogin(w http.ResponseWriter, r *http.Request, status int, returnTo, username, msg string) {
	// Double-submit CSRF token: a cross-site form cannot read or send the
	// cookie (SameSite=Lax, HttpOnly), so it cannot match the field.
	page := loginPage{
		Title: "Sign in", Action: s.issuerPath + "/oauth/login",
		ReturnTo: returnTo, Username: username, Error: msg, Passwords: len(s.cfg.SignIn.Users) > 0,
	}
	if page.Passwords {
		page.CSRF = s.pageCSRF(w, r)
	}
	query := ""
	if returnTo != "" {
		query = "?" + url.Values{"return_to": {returnTo}}.Encode()
	}
	for _, p := range s.providers {
		page.Providers = append(page.Providers, providerLink{Label: p.Label(), URL: s.issuerPath + "/oauth/login/" + p.Name() + query})
	}
	s.renderPage(w, status, "login.html", page)
}

// pageCSRF is the double-submit CSRF token of the sign-in, sign-out and
// connected-apps forms: the browser's, when its cookie holds one, so that
// a page opened in a second tab does not void the first tab's form; else
// a new one, set in the cookie for an hour.
func (s *signIn) pageCSRF(w http.ResponseWriter, r *http.Request) string {
	token := randomToken()
	if c, err := r.Cookie(cookieName(r, loginCSRFCookie)); err == nil && len(c.Value) == len(token) && validTokenSyntax(c.Value) {
		token = c.Value
	}
	s.setCookie(w, r, loginCSRFCookie, token, time.Hour)
	return token
}

// badCredentials is the one message for every failed sign-in.
const badCredentials = "The user name or password is incorrect."

func (s *signIn) postLogin(w http.ResponseWriter, r *http.Request) {
	form, ok := s.parseForm(w, r)
	if !ok {
		s.renderError(w, http.StatusBadRequest, "Invalid request", "The sign-in form could not be read.")
		return
	}
	returnTo := s.safeReturnTo(form.Get("return_to"))
	username := form.Get("username")
	cookie, err := r.Cookie(cookieName(r, loginCSRFCookie))
	if err != nil || form.Get("csrf_token") == "" || !equalSecrets(form.Get("csrf_token"), cookie.Value) {
		s.cfg.Logger.Debug("login: refused, CSRF token missing or wrong")
		s.showLogin(w, r, http.StatusBadRequest, returnTo, "", "Your sign-in form expired. Please try again.")
		return
	}
	ip := clientIP(r)
	if len(username) > maxUsernameLength {
		// Refused before the throttle: no key, no bcrypt, no long line.
		s.metrics.signIns.WithLabelValues("password", "failure").Inc()
		s.audit.info(eventSignInFailed, zap.String("method", "password"), s.typedUser(username), zap.String("client_ip", ip))
		s.showLogin(w, r, http.StatusBadRequest, returnTo, "", badCredentials)
		return
	}
	// The attempt takes its place in the throttle before the password is
	// compared, so parallel guesses cannot all be evaluated.
	try, wait := s.loginLimit.admitShared(r.Context(), "user:"+username, "ip:"+s.limitAddress(ip))
	if try == nil {
		s.metrics.signIns.WithLabelValues("password", "throttled").Inc()
		s.audit.warn(eventSignInThrottled, zap.String("method", "password"), s.typedUser(username), zap.String("client_ip", ip))
		w.Header().Set("Retry-After", retryAfter(wait))
		s.renderError(w, http.StatusTooManyRequests, "Too many attempts", "Too many failed sign-in attempts. Wait a few minutes and try again.")
		return
	}
	valid := s.checkPassword(username, form.Get("password"))
	try.settle(!valid) // failures count, a success gives its place back
	if !valid {
		s.metrics.signIns.WithLabelValues("password", "failure").Inc()
		s.audit.info(eventSignInFailed, zap.String("method", "password"), s.typedUser(username), zap.String("client_ip", ip))
		s.showLogin(w, r, http.StatusUnauthorized, returnTo, username, badCredentials)
		return
	}
	id := randomToken()
	now := time.Now()
	if err := s.cfg.Storage.Store.SaveSession(r.Context(), id, &storage.Session{Subject: username, AuthTime: now, ExpiresAt: now.Add(s.cfg.SignIn.SessionLifetime)}); err != nil {
		s.pageUnavailable(w, "login: storing session", err)
		return
	}
	s.setCookie(w, r, sessionCookie, id, s.cfg.SignIn.SessionLifetime)
	s.setCookie(w, r, loginCSRFCookie, "", -time.Second)
	s.metrics.signIns.WithLabelValues("password", "success").Inc()
	s.audit.info(eventSignIn, zap.String("method", "password"), zap.String("sub", username), zap.String("client_ip", ip))
	if returnTo == "" {
		s.renderError(w, http.StatusOK, "Signed in", "You are signed in. Return to the application to continue.")
		return
	}
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// maxUsernameLength bounds a typed user name.
const maxUsernameLength = 256

// typedUser is the audit field of a typed user name: the name when it is
// a user of this server, else (a typo, a password typed in the wrong
// field, junk) user_hash, the first 16 hex digits of its SHA-256.
func (s *signIn) typedUser(name string) zap.Field {
	if _, known := s.cfg.SignIn.Users[name]; known {
		return zap.String("user", name)
	}
	sum := sha256.Sum256([]byte(name))
	return zap.String("user_hash", hex.EncodeToString(sum[:8]))
}

// checkPassword compares in about the same time whether or not the user
// exists: an unknown user is checked against a real hash and always fails.
func (s *signIn) checkPassword(username, password string) bool {
	hash, known := s.cfg.SignIn.Users[username]
	if !known {
		hash = s.decoyHash
	}
	var ok bool
	var err error
	if strings.HasPrefix(hash, "$argon2id$") {
		ok, err = caddyauth.Argon2idHash{}.Compare([]byte(hash), []byte(password))
	} else {
		ok, err = caddyauth.BcryptHash{}.Compare([]byte(hash), []byte(password))
	}
	return known && ok && err == nil
}

// costliestHash picks the hash an unknown user's password is compared
// with: the costliest bcrypt hash (else any argon2id hash), so that an
// unknown name is never answered faster than a known one.
func costliestHash(users map[string]string) string {
	best, bestCost := "", -1
	for _, h := range users {
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil {
			cost = 0 // argon2id: taken only when there is no bcrypt hash
		}
		if cost > bestCost || (cost == bestCost && h < best) {
			best, bestCost = h, cost
		}
	}
	return best
}

// limitAddress is a client address as per-address limits count it: an
// IPv4 address, or the network of an IPv6 address's first
// IPv6LimitPrefix bits (a subscriber is given a /64: counting single
// addresses would give each 2^64 quotas).
func (s *core) limitAddress(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		ap, err := netip.ParseAddrPort(ip)
		if err != nil {
			return ip
		}
		addr = ap.Addr()
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	p, err := addr.Prefix(s.cfg.IPv6LimitPrefix)
	if err != nil {
		return addr.String()
	}
	return p.String()
}

// clientIP is Caddy's resolved client address (honouring trusted_proxies,
// so a spoofed X-Forwarded-For from an untrusted peer changes nothing).
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}
