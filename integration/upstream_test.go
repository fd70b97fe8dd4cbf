package integration

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	corpClientID = "our-client-at-corp"
	corpSecret   = "corp-client-secret-0123456789"
)

// upstreamSite starts a site whose users sign in only through the given
// login blocks (plus extra options), with the upstream handler given.
func upstreamSite(t *testing.T, logins, upstreamHandler string) (logPath string) {
	t.Helper()
	dir := t.TempDir()
	logPath = filepath.Join(dir, "caddy.log")
	config := withLog(logPath, "") +
		base + ` {
	oauth2_server {
		issuer ` + base + `
		resource ` + base + `/mcp
		scopes mcp:read mcp:write
		storage ` + filepath.Join(dir, "oauth.db") + `
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
		dynamic_registration {
			rate_limit off
		}
		` + logins + `
	}
	` + upstreamHandler + `
}
`
	start(t, config)
	return logPath
}

func corpLogin(s *oidcStub, name, rules string) string {
	if !strings.Contains(rules, "label") {
		rules += "\n label \"Corp " + name + "\""
	}
	return `login oidc ` + name + ` {
			issuer ` + s.issuer() + `
			client_id ` + corpClientID + `
			client_secret ` + corpSecret + `
			` + rules + `
		}`
}

// toCallback follows an authorization request through the provider and
// returns the callback URL the provider sent the browser to (not yet
// visited).
func (b *browser) toCallback(start string) string {
	b.t.Helper()
	p := b.get(start)
	for range 4 {
		loc := p.location()
		if loc == nil {
			b.t.Fatalf("the flow stopped at %d %s", p.resp.StatusCode, p.body)
		}
		if !loc.IsAbs() {
			loc = mustURL(b.origin).ResolveReference(loc)
		}
		if strings.HasPrefix(loc.Path, "/oauth/callback/") {
			return loc.String()
		}
		p = b.get(loc.String())
	}
	b.t.Fatalf("no callback after four redirects")
	return ""
}

// wantRefusedPage checks a sign-in failure page: the status, HTML, no
// redirect and no session.
func wantRefusedPage(t *testing.T, name string, p page, status int) {
	t.Helper()
	if p.resp.StatusCode != status || !strings.HasPrefix(p.resp.Header.Get("Content-Type"), "text/html") || p.resp.Header.Get("Location") != "" || hasSessionCookie(p) {
		t.Errorf("%s: %d %v, want a %d page without a session", name, p.resp.StatusCode, p.resp.Header, status)
	}
}

// TestOIDCSignIn: with one provider and no password users, the browser
// goes straight to the provider, comes back signed in, sees who it is on
// the consent page, and the tokens carry the provider's identity.
func TestOIDCSignIn(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	up := newUpstream(t, nil)
	upstreamSite(t, corpLogin(corp, "corp", "allow_domains example.com"), `reverse_proxy `+up.address()+` {
		header_up X-User {http.auth.user.id}
		header_up X-Email {http.oauth2.email}
		header_up X-Name {http.oauth2.name}
		header_up X-Login {http.oauth2.preferred_username}
		header_up X-IdP {http.oauth2.idp}
	}`)
	b := newBrowser(t)
	p := newPKCE()
	start := b.get(authorizeQuery(p, nil))
	if loc := start.location(); start.resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != "/oauth/login/corp" {
		t.Fatalf("no session: %d %v, want straight to the provider", start.resp.StatusCode, start.resp.Header)
	}
	toProvider := b.get(start.location().String())
	loc := toProvider.location()
	if toProvider.resp.StatusCode != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), corp.issuer()+"/authorize?") {
		t.Fatalf("to the provider: %d %v", toProvider.resp.StatusCode, toProvider.resp.Header)
	}
	q := loc.Query()
	if q.Get("redirect_uri") != base+"/oauth/callback/corp" || q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
		len(q.Get("state")) < 43 || len(q.Get("nonce")) < 43 || q.Get("scope") != "openid email profile" || q.Get("client_id") != corpClientID {
		t.Fatalf("authorization request to the provider: %s", loc)
	}
	var cookie *http.Cookie
	for _, c := range toProvider.resp.Cookies() {
		if c.Name == "oauth2_upstream" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.MaxAge != 600 || cookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("browser-binding cookie %+v", cookie)
	}
	callback := b.get(b.get(loc.String()).location().String())
	if callback.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(callback.resp.Header.Get("Location"), "/oauth/authorize?") || !hasSessionCookie(callback) {
		t.Fatalf("callback: %d %v %s", callback.resp.StatusCode, callback.resp.Header, callback.body)
	}
	consent := b.get(callback.resp.Header.Get("Location"))
	if !strings.Contains(consent.body, "<strong>alice@example.com</strong> via Corp corp") {
		t.Fatalf("the consent page does not name the account: %s", consent.body)
	}
	code := codeFrom(t, b.approve(consent, "allow"), "https://client.test/cb", "xyz")
	resp, tokens := tokenRequest(t, redeemForm(code, p))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %v", resp.StatusCode, tokens)
	}
	claims := verifyAccessToken(t, tokens["access_token"].(string))
	for k, want := range map[string]string{"sub": "corp:248289761001", "email": "alice@example.com", "name": "Alice Liddell", "idp": "corp"} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %q", k, claims[k], want)
		}
	}
	if callAPI(t, tokens["access_token"].(string), "/mcp").resp.StatusCode != http.StatusOK {
		t.Fatal("the token does not pass the guard")
	}
	h := up.header()
	for k, want := range map[string]string{"X-User": "corp:248289761001", "X-Email": "alice@example.com", "X-Name": "Alice Liddell", "X-Login": "", "X-IdP": "corp"} {
		if h.Get(k) != want {
			t.Errorf("upstream got %s = %q, want %q", k, h.Get(k), want)
		}
	}
	// A refreshed token keeps the identity.
	resp, refreshed := tokenRequest(t, refreshForm(tokens["refresh_token"].(string)))
	if resp.StatusCode != http.StatusOK || verifyAccessToken(t, refreshed["access_token"].(string))["email"] != "alice@example.com" {
		t.Fatalf("refresh: %d %v", resp.StatusCode, refreshed)
	}
}

// TestOIDCRefusesBadIDTokens forges or breaks the ID token in every way a
// real provider would not; each sign-in ends on an error page.
func TestOIDCRefusesBadIDTokens(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	logPath := upstreamSite(t, corpLogin(corp, "corp", ""), `respond "upstream" 200`)
	alice := map[string]any{"sub": "248289761001", "email": "alice@example.com", "email_verified": true}
	for _, tc := range []struct {
		name, reason string
		tamper       func(map[string]any)
		sign         func(*oidcStub, map[string]any) string
	}{
		{"wrong aud", "expected audience", func(c map[string]any) { c["aud"] = "someone-else" }, nil},
		{"wrong iss", "issued by a different provider", func(c map[string]any) { c["iss"] = "http://evil.test" }, nil},
		{"expired", "the ID token has expired", func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }, nil},
		{"iat in the future beyond the skew", "issued in the future", func(c map[string]any) { c["iat"] = time.Now().Add(5 * time.Minute).Unix() }, nil},
		{"no iat", "the ID token has no iat", func(c map[string]any) { delete(c, "iat") }, nil},
		{"missing nonce", "nonce is missing", func(c map[string]any) { delete(c, "nonce") }, nil},
		{"wrong nonce", "nonce is missing or not this sign-in's", func(c map[string]any) { c["nonce"] = "another-sign-in" }, nil},
		{"azp of another party", "another party (azp)", func(c map[string]any) { c["azp"] = "someone-else" }, nil},
		{"no subject", "no subject", func(c map[string]any) { delete(c, "sub") }, nil},
		{"bad signature", "failed to verify signature", nil, otherKey},
		{"alg none", "malformed jwt", nil, unsigned},
		{"HS256 with the provider's public key", "malformed jwt", nil, hmacWithPublicKey},
	} {
		corp.signInAs(alice)
		corp.mu.Lock()
		corp.tamper, corp.sign = tc.tamper, tc.sign
		corp.mu.Unlock()
		b := newBrowser(t)
		wantRefusedPage(t, tc.name, b.get(b.toCallback(authorizeQuery(newPKCE(), nil))), http.StatusBadRequest)
		if got := lastRefusal(t, logPath); !strings.Contains(got, tc.reason) {
			t.Errorf("%s: refused because %q, want %q", tc.name, got, tc.reason)
		}
	}
	// The stand-in itself is fine: an untouched token signs in.
	corp.signInAs(alice)
	b := newBrowser(t)
	if p := b.get(b.toCallback(authorizeQuery(newPKCE(), nil))); p.resp.StatusCode != http.StatusSeeOther || !hasSessionCookie(p) {
		t.Fatalf("a good ID token: %d %s", p.resp.StatusCode, p.body)
	}
}

// lastRefusal is the reason of the last failed upstream sign-in on the
// audit logger.
func lastRefusal(t *testing.T, logPath string) string {
	t.Helper()
	logs, _ := os.ReadFile(logPath)
	reason := ""
	for _, line := range strings.Split(string(logs), "\n") {
		var entry struct{ Logger, Event, Reason string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Logger == "http.handlers.oauth2_server.audit" && entry.Event == "sign_in_failed" {
			reason = entry.Reason
		}
	}
	return reason
}

// TestOIDCCallbackMisuse: a callback is good once, in the browser that
// started the sign-in, at the provider that issued its state.
func TestOIDCCallbackMisuse(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	other := newOIDCStub(t, corpClientID, corpSecret)
	strict := newOIDCStub(t, corpClientID, corpSecret)
	strict.sendsIss = true // its metadata says callbacks carry iss
	logPath := upstreamSite(t, corpLogin(corp, "corp", "")+"\n"+corpLogin(other, "other", "")+"\n"+corpLogin(strict, "strict", ""), `respond "upstream" 200`)
	refused := func(name string, p page, reason string) {
		t.Helper()
		wantRefusedPage(t, name, p, http.StatusBadRequest)
		if got := lastRefusal(t, logPath); !strings.Contains(got, reason) {
			t.Errorf("%s: refused because %q, want %q", name, got, reason)
		}
	}
	start := func(b *browser, provider string) string {
		return b.toCallback("/oauth/login/" + provider + "?" + url.Values{"return_to": {authorizeQuery(newPKCE(), nil)}}.Encode())
	}

	b := newBrowser(t)
	cb := start(b, "corp")
	if p := b.get(cb); p.resp.StatusCode != http.StatusSeeOther || !hasSessionCookie(p) {
		t.Fatalf("first use of the callback: %d %s", p.resp.StatusCode, p.body)
	}
	refused("replayed callback", newBrowser(t).get(cb), "unknown, used or expired state")
	b2 := newBrowser(t)
	b2.client.Jar = b.client.Jar // even with the cookies of the browser that used it
	refused("replayed callback, same browser", b2.get(cb), "unknown, used or expired state")

	b = newBrowser(t)
	cb = start(b, "corp")
	refused("callback in another browser", newBrowser(t).get(cb), "started in another browser")
	// Whoever learned the state cannot cancel the sign-in: its browser
	// still completes it.
	if p := b.get(cb); p.resp.StatusCode != http.StatusSeeOther || !hasSessionCookie(p) {
		t.Fatalf("the callback in its own browser after another browser's try: %d %s", p.resp.StatusCode, p.body)
	}

	// Provider other's state delivered to corp's callback (mix-up).
	b = newBrowser(t)
	cb = start(b, "other")
	refused("other's state at corp's callback", b.get(strings.Replace(cb, "/oauth/callback/other", "/oauth/callback/corp", 1)), "belongs to provider other (mix-up)")

	// An iss that is not the provider's; and a provider that says it
	// sends iss (RFC 9207 §2.4) but whose callback lacks it.
	sendIss := func(s *oidcStub, iss string) {
		s.mu.Lock()
		s.iss = iss
		s.mu.Unlock()
	}
	sendIss(corp, other.issuer())
	b = newBrowser(t)
	refused("iss of another provider", b.get(start(b, "corp")), "iss is not the provider's")
	b = newBrowser(t)
	refused("no iss from a provider that sends it", b.get(start(b, "strict")), "the callback has no iss, though the provider says it sends one")
	for _, s := range []*oidcStub{corp, strict} {
		sendIss(s, s.issuer())
	}
	for _, name := range []string{"corp", "strict"} {
		b = newBrowser(t)
		if p := b.get(start(b, name)); p.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s's own iss: %d %s", name, p.resp.StatusCode, p.body)
		}
	}

	for name, tc := range map[string]struct{ query, reason string }{
		"no state":       {"code=abc", "state is missing"},
		"repeated state": {"code=abc&state=a&state=b", "state is repeated"},
		"no code":        {"state=abc", "neither code nor error"},
		"unknown state":  {"code=abc&state=unknown", "unknown, used or expired state"},
	} {
		refused(name, newBrowser(t).get("/oauth/callback/corp?"+tc.query), tc.reason)
	}
}

// TestOIDCAllowRules: only verified addresses count, rules are OR-ed, and a
// refused account sees why, with a way back to the application that
// carries access_denied.
func TestOIDCAllowRules(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	upstreamSite(t, corpLogin(corp, "corp", "allow_domains example.com\n allow_emails contractor@example.org\n allow_claim groups mcp-users"), `respond "upstream" 200`)
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		allowed bool
	}{
		{"verified in the domain", map[string]any{"sub": "1", "email": "alice@example.com", "email_verified": true}, true},
		{"unverified in the domain", map[string]any{"sub": "2", "email": "alice@example.com", "email_verified": false}, false},
		{"no email_verified claim", map[string]any{"sub": "3", "email": "alice@example.com"}, false},
		{"listed address", map[string]any{"sub": "4", "email": "contractor@example.org", "email_verified": true}, true},
		{"group member", map[string]any{"sub": "5", "email": "x@elsewhere.test", "email_verified": true, "groups": []string{"staff", "mcp-users"}}, true},
		{"nobody", map[string]any{"sub": "6", "email": "x@elsewhere.test", "email_verified": true, "groups": []string{"staff"}}, false},
	} {
		corp.signInAs(tc.claims)
		b := newBrowser(t)
		p := b.get(b.toCallback(authorizeQuery(newPKCE(), map[string]string{"state": "st-" + tc.name})))
		if tc.allowed {
			if p.resp.StatusCode != http.StatusSeeOther || !hasSessionCookie(p) {
				t.Errorf("%s: %d, want signed in", tc.name, p.resp.StatusCode)
			}
			continue
		}
		wantRefusedPage(t, tc.name, p, http.StatusForbidden)
		if !strings.Contains(p.body, "This account is not allowed to sign in here.") {
			t.Errorf("%s: the page does not say why: %s", tc.name, p.body)
		}
		back := regexpFind(p.body, `href="([^"]+)">Back to the application`)
		u, err := url.Parse(html.UnescapeString(back))
		if err != nil || !strings.HasPrefix(back, "https://client.test/cb?") || u.Query().Get("error") != "access_denied" || u.Query().Get("state") != "st-"+tc.name || u.Query().Get("iss") != base {
			t.Errorf("%s: back link %q", tc.name, back)
		}
	}
}

// TestOIDCCancel: a user who cancels at the provider is sent back to a
// Caddyfile client with access_denied; for a registered client the page
// offers the way back.
func TestOIDCCancel(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	upstreamSite(t, corpLogin(corp, "corp", ""), `respond "upstream" 200`)
	corp.mu.Lock()
	corp.deny = true
	corp.mu.Unlock()
	b := newBrowser(t)
	p := b.get(b.toCallback(authorizeQuery(newPKCE(), map[string]string{"state": "cancel-1"})))
	if loc := p.location(); p.resp.StatusCode != http.StatusFound || loc == nil || loc.Host != "client.test" || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "cancel-1" || loc.Query().Get("iss") != base {
		t.Fatalf("cancel for a Caddyfile client: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	_, reg := registerJSON(t, `{"redirect_uris":["https://registered.test/cb"],"token_endpoint_auth_method":"none"}`)
	b = newBrowser(t)
	p = b.get(b.toCallback(authorizeQuery(newPKCE(), map[string]string{"client_id": reg["client_id"].(string), "redirect_uri": "https://registered.test/cb"})))
	wantRefusedPage(t, "cancel for a registered client", p, http.StatusForbidden)
	if !strings.Contains(p.body, `href="https://registered.test/cb?error=access_denied`) {
		t.Fatalf("no way back: %s", p.body)
	}
}

// TestOIDCProviderUnreachable: discovery happens at the first sign-in (a
// provider that is down does not stop Caddy from loading), and its
// failure is a page and a log line, not a 500.
func TestOIDCProviderUnreachable(t *testing.T) {
	dead := newOIDCStub(t, corpClientID, corpSecret)
	dead.srv.Close()
	logPath := upstreamSite(t, corpLogin(dead, "corp", ""), `respond "upstream" 200`)
	p := newBrowser(t).get("/oauth/login/corp")
	wantRefusedPage(t, "provider down", p, http.StatusBadGateway)
	if !strings.Contains(p.body, "cannot be reached right now") {
		t.Errorf("page: %s", p.body)
	}
	logs, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logs), "login: identity provider unavailable") {
		t.Error("no log line")
	}
	if !strings.Contains(string(logs), "login: no allow rule, so every account the provider signs in is admitted") {
		t.Error("no load warning for a provider without allow rules")
	}
}

// TestLoginPageListsProviders: one button per provider above the password
// form; with several ways to sign in the browser goes to the page.
func TestLoginPageListsProviders(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	gh := newGitHubStub(t, "gh-client", "gh-secret-0123456789")
	upstreamSite(t, corpLogin(corp, "corp", "label Google")+`
		login github {
			client_id gh-client
			client_secret gh-secret-0123456789
			api_url `+gh.srv.URL+`/api
			web_url `+gh.srv.URL+`
		}
		user alice `+aliceHash, `respond "upstream" 200`)
	b := newBrowser(t)
	first := b.get(authorizeQuery(newPKCE(), nil))
	if loc := first.location(); loc == nil || loc.Path != "/oauth/login" {
		t.Fatalf("several ways to sign in: %d %v", first.resp.StatusCode, first.resp.Header)
	}
	page := b.get(first.location().String())
	for _, want := range []string{">Continue with Google</a>", ">Continue with github</a>", `name="password"`, `href="/oauth/login/corp?return_to=%2Foauth%2Fauthorize%3F`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the sign-in page lacks %q", want)
		}
	}
	// The password form still works next to the buttons.
	if p := b.post("/oauth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf_token": {page.field("csrf_token")}, "return_to": {page.field("return_to")}}); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password sign-in: %d", p.resp.StatusCode)
	}
}

// TestGitHubSignIn: the GitHub stand-in's users are admitted by org, team
// or login; others, and suspended accounts, are refused.
func TestGitHubSignIn(t *testing.T) {
	gh := newGitHubStub(t, "gh-client", "gh-secret-0123456789")
	up := newUpstream(t, nil)
	logPath := upstreamSite(t, `login github {
			client_id gh-client
			client_secret gh-secret-0123456789
			allow_orgs example-org
			allow_teams other-org/mcp-users
			allow_users trusted-person 583299 github:583300
			api_url `+gh.srv.URL+`/api
			web_url `+gh.srv.URL+`
		}`, `reverse_proxy `+up.address()+` {
		header_up X-Login {http.oauth2.preferred_username}
		header_up X-Email {http.oauth2.email}
	}`)
	user := func(id int, login string) map[string]any {
		return map[string]any{"id": id, "login": login, "name": "N " + login}
	}
	emails := []map[string]any{{"email": "unverified@example.com", "primary": true, "verified": false}}
	many := func(last string) []string { // last on the third page of 100
		var out []string
		for i := range 250 {
			out = append(out, "org-"+strconv.Itoa(i))
		}
		return append(out, last)
	}
	manyTeams := func(last string) []string {
		var out []string
		for i := range 250 {
			out = append(out, "other-org/team-"+strconv.Itoa(i))
		}
		return append(out, last)
	}
	for _, tc := range []struct {
		name        string
		user        map[string]any
		orgs, teams []string
		allowed     bool
	}{
		{"org member", user(1, "octocat"), []string{"example-org"}, nil, true},
		{"team member", user(2, "hubot"), []string{"other-org"}, []string{"other-org/mcp-users"}, true},
		{"listed login", user(3, "Trusted-Person"), nil, nil, true},
		{"listed id", user(583299, "renamed-login"), nil, nil, true},
		{"listed github:id", user(583300, "another-login"), nil, nil, true},
		{"a listed id's old login, now someone else's", user(6, "583299"), nil, nil, false},
		{"org on the third page", user(7, "pager"), many("example-org"), nil, true},
		{"team on the third page", user(8, "teamer"), []string{"other-org"}, manyTeams("other-org/mcp-users"), true},
		{"another team of the org", user(4, "monalisa"), []string{"other-org"}, []string{"other-org/design"}, false},
		{"nobody", user(5, "stranger"), []string{"elsewhere"}, nil, false},
	} {
		gh.set(tc.user, emails, tc.orgs, tc.teams)
		b := newBrowser(t)
		p := b.get(b.toCallback(authorizeQuery(newPKCE(), nil)))
		if !tc.allowed {
			wantRefusedPage(t, tc.name, p, http.StatusForbidden)
			continue
		}
		if p.resp.StatusCode != http.StatusSeeOther || !hasSessionCookie(p) {
			t.Errorf("%s: %d %s", tc.name, p.resp.StatusCode, p.body)
			continue
		}
		if tc.name == "org member" {
			pk := newPKCE()
			code := codeFor(t, b, pk, nil)
			_, tokens := tokenRequest(t, redeemForm(code, pk))
			claims := verifyAccessToken(t, tokens["access_token"].(string))
			if claims["sub"] != "github:1" || claims["preferred_username"] != "octocat" || claims["email"] != nil || claims["idp"] != "github" {
				t.Errorf("GitHub claims %v (an unverified primary address is no e-mail)", claims)
			}
			callAPI(t, tokens["access_token"].(string), "/mcp")
			if h := up.header(); h.Get("X-Login") != "octocat" || h.Get("X-Email") != "" {
				t.Errorf("upstream got X-Login %q X-Email %q", h.Get("X-Login"), h.Get("X-Email"))
			}
		}
	}
	gh.mu.Lock()
	scopes := gh.scopes
	gh.mu.Unlock()
	if scopes != "read:user user:email read:org" {
		t.Errorf("GitHub scopes %q, want read:user user:email read:org", scopes)
	}
	if logs, _ := os.ReadFile(logPath); !strings.Contains(string(logs), `allow_users names GitHub logins, which can be renamed`) || !strings.Contains(string(logs), `"logins":["trusted-person"]`) {
		t.Error("no load warning about allow_users naming a login")
	}
	// A suspended account: the API answers 401.
	gh.set(user(1, "octocat"), emails, []string{"example-org"}, nil)
	gh.mu.Lock()
	gh.suspended = true
	gh.mu.Unlock()
	b := newBrowser(t)
	wantRefusedPage(t, "suspended", b.get(b.toCallback(authorizeQuery(newPKCE(), nil))), http.StatusBadRequest)
}

// TestGitHubVerifiedEmailRule: for GitHub an e-mail rule matches the
// primary verified address from the API.
func TestGitHubVerifiedEmailRule(t *testing.T) {
	gh := newGitHubStub(t, "gh-client", "gh-secret-0123456789")
	upstreamSite(t, `login github {
			client_id gh-client
			client_secret gh-secret-0123456789
			allow_domains example.com
			api_url `+gh.srv.URL+`/api
			web_url `+gh.srv.URL+`
		}`, `respond "upstream" 200`)
	for name, emails := range map[string][]map[string]any{
		"primary verified":      {{"email": "octo@example.com", "primary": true, "verified": true}},
		"primary unverified":    {{"email": "octo@example.com", "primary": true, "verified": false}},
		"verified, not primary": {{"email": "octo@example.com", "primary": false, "verified": true}, {"email": "octo@else.test", "primary": true, "verified": true}},
	} {
		gh.set(map[string]any{"id": 7, "login": "octo"}, emails, nil, nil)
		b := newBrowser(t)
		p := b.get(b.toCallback(authorizeQuery(newPKCE(), nil)))
		if allowed := p.resp.StatusCode == http.StatusSeeOther; allowed != (name == "primary verified") {
			t.Errorf("%s: %d", name, p.resp.StatusCode)
		}
	}
	gh.mu.Lock()
	scopes := gh.scopes
	gh.mu.Unlock()
	if scopes != "read:user user:email" {
		t.Errorf("scopes %q: read:org asked for without org rules", scopes)
	}
}

// TestLogout: the sign-out page names the account; its form ends the
// session, after which the next authorization signs in again.
func TestLogout(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	upstreamSite(t, corpLogin(corp, "corp", ""), `respond "upstream" 200`)
	b := newBrowser(t)
	b.get(b.toCallback(authorizeQuery(newPKCE(), nil)))
	page := b.get("/oauth/logout")
	if !strings.Contains(page.body, "<strong>alice@example.com</strong> via Corp corp") || page.field("csrf_token") == "" {
		t.Fatalf("sign-out page: %s", page.body)
	}
	if p := b.post("/oauth/logout", url.Values{"csrf_token": {"forged"}}); p.resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged sign-out: %d", p.resp.StatusCode)
	}
	if p := b.get(authorizeQuery(newPKCE(), nil)); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("still signed in after a forged sign-out: %d", p.resp.StatusCode)
	}
	if p := b.post("/oauth/logout", url.Values{"csrf_token": {page.field("csrf_token")}}); p.resp.StatusCode != http.StatusOK || !strings.Contains(p.body, "You are signed out") {
		t.Fatalf("sign-out: %d %s", p.resp.StatusCode, p.body)
	}
	if p := b.get(authorizeQuery(newPKCE(), nil)); p.resp.StatusCode != http.StatusSeeOther || p.location().Path != "/oauth/login/corp" {
		t.Fatalf("after sign-out: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	corp.signInAs(map[string]any{"sub": "999", "email": "bob@example.com", "email_verified": true})
	b.get(b.toCallback(authorizeQuery(newPKCE(), nil)))
	if c := b.get(authorizeQuery(newPKCE(), nil)); !strings.Contains(c.body, "bob@example.com") {
		t.Fatalf("signed in as another account: %s", c.body)
	}
}

func regexpFind(body, pattern string) string {
	m := regexp.MustCompile(pattern).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestOIDCUserInfo: claims the ID token lacks come from the userinfo
// endpoint, whose answer must be about the same subject.
func TestOIDCUserInfo(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	logPath := upstreamSite(t, corpLogin(corp, "corp", "allow_domains example.com"), `respond "upstream" 200`)
	corp.signInAs(map[string]any{"sub": "77"})
	corp.mu.Lock()
	corp.userinfo = map[string]any{"sub": "77", "email": "carol@example.com", "email_verified": true, "name": "Carol"}
	corp.mu.Unlock()
	b := newBrowser(t)
	if p := b.get(b.toCallback(authorizeQuery(newPKCE(), nil))); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the e-mail from userinfo: %d %s", p.resp.StatusCode, p.body)
	}
	if c := b.get(authorizeQuery(newPKCE(), nil)); !strings.Contains(c.body, "<strong>carol@example.com</strong>") {
		t.Fatalf("consent page: %s", c.body)
	}
	corp.signInAs(map[string]any{"sub": "77"})
	corp.mu.Lock()
	corp.userinfo = map[string]any{"sub": "78", "email": "carol@example.com", "email_verified": true}
	corp.mu.Unlock()
	b = newBrowser(t)
	wantRefusedPage(t, "userinfo of another subject", b.get(b.toCallback(authorizeQuery(newPKCE(), nil))), http.StatusBadRequest)
	if got := lastRefusal(t, logPath); !strings.Contains(got, "another subject") {
		t.Errorf("refused because %q", got)
	}
}

// upstreamRecorder is a real upstream that keeps the headers of the last
// request it got, and answers with the given headers.
type upstreamRecorder struct {
	mu   sync.Mutex
	last http.Header
	srv  *httptest.Server
}

func newUpstream(t *testing.T, answer http.Header) *upstreamRecorder {
	u := &upstreamRecorder{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.mu.Unlock()
		for k, vs := range answer {
			w.Header()[k] = vs
		}
		w.Write([]byte("upstream body"))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstreamRecorder) header() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstreamRecorder) address() string { return strings.TrimPrefix(u.srv.URL, "http://") }
