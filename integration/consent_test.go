package integration

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

func TestConsentRememberedAndSkipped(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	p := newPKCE()
	codeFrom(t, b.approve(b.get(authorizeQuery(p, nil)), "allow"), "https://client.test/cb", "xyz")

	// Within the granted scopes: straight back to the client with a code.
	codeFrom(t, b.get(authorizeQuery(p, map[string]string{"state": "again"})), "https://client.test/cb", "again")

	// A wider request asks again; approving it remembers both scopes.
	wider := b.get(authorizeQuery(p, map[string]string{"scope": "mcp:read mcp:write"}))
	if wider.field("request_id") == "" || !strings.Contains(wider.body, "mcp:write") {
		t.Fatalf("a wider scope did not show the consent page: %d", wider.resp.StatusCode)
	}
	codeFrom(t, b.approve(wider, "allow"), "https://client.test/cb", "xyz")
	codeFrom(t, b.get(authorizeQuery(p, map[string]string{"scope": "mcp:write"})), "https://client.test/cb", "xyz")

	// Consent is per client: another client with the same redirect URI asks.
	other := b.get(authorizeQuery(p, map[string]string{"client_id": "pub2"}))
	if other.field("request_id") == "" {
		t.Fatalf("another client skipped the consent page: %d %v", other.resp.StatusCode, other.resp.Header)
	}
	// A trusted (first-party) client never asks.
	codeFrom(t, b.get(authorizeQuery(p, map[string]string{"client_id": "first", "redirect_uri": "https://first.test/cb"})), "https://first.test/cb", "xyz")
}

func TestConsentDenied(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	denied := b.approve(b.get(authorizeQuery(newPKCE(), map[string]string{"state": "s-1"})), "deny")
	loc := denied.location()
	if denied.resp.StatusCode != http.StatusFound || loc == nil {
		t.Fatalf("deny: %d", denied.resp.StatusCode)
	}
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), "https://client.test/cb?") || q.Get("error") != "access_denied" || q.Get("state") != "s-1" || q.Get("iss") != base || q.Get("code") != "" {
		t.Fatalf("deny redirect %s", loc)
	}
	// Nothing was remembered: the next request asks again.
	if again := b.get(authorizeQuery(newPKCE(), nil)); again.field("request_id") == "" {
		t.Fatalf("a denied request was remembered: %d", again.resp.StatusCode)
	}
}

func TestConsentFormTamperingAndReplay(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)

	refused := func(name string, p page) {
		t.Helper()
		if p.resp.StatusCode != http.StatusBadRequest || p.resp.Header.Get("Location") != "" {
			t.Fatalf("%s: %d %v, want a 400 page and no code", name, p.resp.StatusCode, p.resp.Header)
		}
	}
	// A wrong CSRF token burns the request.
	consent := b.get(authorizeQuery(newPKCE(), nil))
	refused("wrong csrf", b.post("/oauth/consent", url.Values{"request_id": {consent.field("request_id")}, "csrf_token": {"forged"}, "decision": {"allow"}}))
	refused("then the right one", b.approve(consent, "allow"))

	// A made-up request id.
	refused("unknown request", b.post("/oauth/consent", url.Values{"request_id": {"nope"}, "csrf_token": {"x"}, "decision": {"allow"}}))

	// Another user (or nobody) cannot answer alice's request.
	consent = b.get(authorizeQuery(newPKCE(), nil))
	stranger := newBrowser(t)
	refused("not signed in", stranger.post("/oauth/consent", url.Values{"request_id": {consent.field("request_id")}, "csrf_token": {consent.field("csrf_token")}, "decision": {"allow"}}))

	// A form posted again after a successful answer is told the same
	// answer (TestConsentDoubleSubmit; after two minutes it is unknown).
	consent = b.get(authorizeQuery(newPKCE(), nil))
	first := b.approve(consent, "allow")
	codeFrom(t, first, "https://client.test/cb", "xyz")
	if again := b.approve(consent, "allow"); again.resp.Header.Get("Location") != first.resp.Header.Get("Location") {
		t.Fatalf("a repeated submit: %d %v", again.resp.StatusCode, again.resp.Header)
	}

	// Not a form.
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/consent", strings.NewReader(`{"decision":"allow"}`))
	req.Header.Set("Content-Type", "application/json")
	refused("json body", b.do(req))
}

// TestUserFromBasicAuth: basic_auth, scoped to the browser paths, names the
// user through user_from.
func TestUserFromBasicAuth(t *testing.T) {
	start(t, site(`
	@signin path /oauth/authorize /oauth/consent
	basic_auth @signin {
		bob `+aliceHash+`
	}
	oauth2_server {
		issuer `+base+`
		resource `+base+`/mcp
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
		user_from {http.auth.user.id}
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
	}`))
	b := newBrowser(t)
	if p := b.get(authorizeQuery(newPKCE(), map[string]string{"scope": ""})); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials basic_auth should answer 401, got %d", p.resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, base+authorizeQuery(newPKCE(), map[string]string{"scope": ""}), nil)
	req.SetBasicAuth("bob", alicePassword)
	consent := b.do(req)
	if consent.field("request_id") == "" || !strings.Contains(consent.body, "<strong>bob</strong>") {
		t.Fatalf("consent page for bob: %d %s", consent.resp.StatusCode, consent.body)
	}
	form := url.Values{"request_id": {consent.field("request_id")}, "csrf_token": {consent.field("csrf_token")}, "decision": {"allow"}}
	post, _ := http.NewRequest(http.MethodPost, base+"/oauth/consent", strings.NewReader(form.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	post.SetBasicAuth("bob", alicePassword)
	codeFrom(t, b.do(post), "https://client.test/cb", "xyz")
}

// TestSignInPathRedirect: without a session, the user is sent to the
// operator's sign-in page with a same-origin return URL; without any
// sign-in, 401.
func TestSignInPathRedirect(t *testing.T) {
	start(t, site(`
	oauth2_server {
		issuer `+base+`
		resource `+base+`/mcp
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
		sign_in_path /sign-in
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
	}`))
	b := newBrowser(t)
	target := authorizeQuery(newPKCE(), map[string]string{"resource": "", "scope": ""})
	p := b.get(target)
	loc := p.location()
	if p.resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != "/sign-in" || loc.Host != "" || loc.Query().Get("return_to") != target {
		t.Fatalf("sign_in_path redirect: %d %v", p.resp.StatusCode, p.resp.Header)
	}

	start(t, site(`
	oauth2_server {
		issuer `+base+`
		resource `+base+`/mcp
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
	}`))
	if p := b.get(target); p.resp.StatusCode != http.StatusUnauthorized || p.resp.Header.Get("Location") != "" {
		t.Fatalf("no way to sign in: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}

// TestConsentIsBoundToTheResource: consent is remembered per (user, client, resource).
func TestConsentIsBoundToTheResource(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	codeFor(t, b, newPKCE(), nil) // consents to mcp:read for /mcp
	other := b.get(authorizeQuery(newPKCE(), map[string]string{"resource": base + "/api"}))
	if other.field("request_id") == "" || !strings.Contains(other.body, base+"/api") {
		t.Fatalf("consent for /mcp was used for /api: %d %v", other.resp.StatusCode, other.resp.Header)
	}
	codeFrom(t, b.get(authorizeQuery(newPKCE(), nil)), "https://client.test/cb", "xyz")
}

// TestLoopbackClientsAskAgain: a remembered consent does not silently approve a public client
// that redirects to a loopback port or a private-use scheme.
func TestLoopbackClientsAskAgain(t *testing.T) {
	flowServer(t, dcr)
	b := signedIn(t)
	for _, redirect := range []string{"http://127.0.0.1:43111/callback", "com.example.app:/oauth"} {
		_, out := registerJSON(t, `{"redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`)
		o := map[string]string{"client_id": out["client_id"].(string), "redirect_uri": redirect}
		first := b.get(authorizeQuery(newPKCE(), o))
		codeFrom(t, b.approve(first, "allow"), redirect, "xyz")
		if again := b.get(authorizeQuery(newPKCE(), o)); again.field("request_id") == "" {
			t.Errorf("%s: the second authorization skipped consent: %d %v", redirect, again.resp.StatusCode, again.resp.Header)
		}
	}
	// A Caddyfile client is the operator's: its consent is remembered.
	o := map[string]string{"client_id": "nat", "redirect_uri": "http://127.0.0.1:50123/callback"}
	codeFrom(t, b.approve(b.get(authorizeQuery(newPKCE(), o)), "allow"), "http://127.0.0.1:50123/callback", "xyz")
	codeFrom(t, b.get(authorizeQuery(newPKCE(), o)), "http://127.0.0.1:50123/callback", "xyz")
}

// TestConsentDoubleSubmit: a consent form submitted twice by its user within two minutes
// gets the same answer twice.
func TestConsentDoubleSubmit(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	for decision, client := range map[string]string{"allow": "pub1", "deny": "pub2"} {
		consent := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": client}))
		first := b.approve(consent, decision)
		second := b.approve(consent, decision)
		if first.resp.StatusCode != http.StatusFound || second.resp.StatusCode != http.StatusFound ||
			first.resp.Header.Get("Location") != second.resp.Header.Get("Location") {
			t.Fatalf("%s twice: %d %q, then %d %q", decision, first.resp.StatusCode, first.resp.Header.Get("Location"),
				second.resp.StatusCode, second.resp.Header.Get("Location"))
		}
		// The answer that stands is the first one.
		if third := b.approve(consent, map[string]string{"allow": "deny", "deny": "allow"}[decision]); third.resp.Header.Get("Location") != first.resp.Header.Get("Location") {
			t.Fatalf("%s, then the other button: %q", decision, third.resp.Header.Get("Location"))
		}
	}
	// The code of a double submit is redeemed once.
	p := newPKCE()
	consent := b.get(authorizeQuery(p, map[string]string{"scope": "mcp:read mcp:write", "resource": base + "/api"}))
	b.approve(consent, "allow")
	code := codeFrom(t, b.approve(consent, "allow"), "https://client.test/cb", "xyz")
	if resp, body := tokenRequest(t, redeemForm(code, p)); resp.StatusCode != http.StatusOK {
		t.Fatalf("redeeming the double-submit code: %d %v", resp.StatusCode, body)
	}
	// Someone else, even with the form's values, is refused.
	consent = b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": "pub2"}))
	b.approve(consent, "allow")
	stranger := newBrowser(t)
	stranger.signIn("alice", alicePassword) // the same user, another browser: no
	other := stranger.post("/oauth/consent", url.Values{"request_id": {consent.field("request_id")}, "csrf_token": {"forged"}, "decision": {"allow"}})
	if other.resp.StatusCode != http.StatusBadRequest || other.resp.Header.Get("Location") != "" {
		t.Fatalf("a forged second submit: %d %v", other.resp.StatusCode, other.resp.Header)
	}
	nobody := newBrowser(t).post("/oauth/consent", url.Values{"request_id": {consent.field("request_id")}, "csrf_token": {consent.field("csrf_token")}, "decision": {"allow"}})
	if nobody.resp.StatusCode != http.StatusBadRequest || nobody.resp.Header.Get("Location") != "" {
		t.Fatalf("a second submit without the session: %d %v", nobody.resp.StatusCode, nobody.resp.Header)
	}
}

// TestConsentWarnsAboutLoopbackClients: the consent page says when the application runs on the user's
// own computer.
func TestConsentWarnsAboutLoopbackClients(t *testing.T) {
	flowServer(t, dcr)
	b := signedIn(t)
	_, out := registerJSON(t, `{"client_name":"Local Tool","redirect_uris":["http://localhost:43111/callback"],"token_endpoint_auth_method":"none"}`)
	consent := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": out["client_id"].(string), "redirect_uri": "http://localhost:43111/callback"}))
	if !strings.Contains(consent.body, "This application runs on your own computer at <strong>localhost:43111</strong>") {
		t.Fatalf("no loopback warning: %s", consent.body)
	}
	if web := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": "pub2"})); strings.Contains(web.body, "your own computer") {
		t.Fatalf("loopback warning for a web client")
	}
}
