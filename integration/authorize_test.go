package integration

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestAuthorizeValidation checks every validation branch of the
// authorization endpoint: page or redirect, status, error code, state, iss.
func TestAuthorizeValidation(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	if p := b.signIn("alice", alicePassword); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", p.resp.StatusCode)
	}
	p := newPKCE()
	long := strings.Repeat("s", 2049)

	for _, tc := range []struct {
		name      string
		overrides map[string]string
		rawQuery  string // used instead of overrides when set
		// page: an error page (400, HTML, no Location); otherwise the error
		// redirected to redirect (or, when errCode is empty, success: the
		// consent page).
		page     bool
		errCode  string
		redirect string
		state    string
	}{
		{name: "valid request reaches consent", overrides: nil},
		{name: "unknown client", overrides: map[string]string{"client_id": "nobody"}, page: true},
		{name: "missing client_id", overrides: map[string]string{"client_id": ""}, page: true},
		{name: "unregistered redirect_uri", overrides: map[string]string{"redirect_uri": "https://evil.test/cb"}, page: true},
		{name: "redirect_uri with other path", overrides: map[string]string{"redirect_uri": "https://client.test/cb/x"}, page: true},
		{name: "redirect_uri differing in case", overrides: map[string]string{"redirect_uri": "https://CLIENT.test/cb"}, page: true},
		{name: "redirect_uri with trailing slash", overrides: map[string]string{"redirect_uri": "https://client.test/cb/"}, page: true},
		{name: "omitted redirect_uri, one registered", overrides: map[string]string{"redirect_uri": ""}},
		{name: "omitted redirect_uri, several registered", overrides: map[string]string{"client_id": "multi", "redirect_uri": ""}, page: true},
		{name: "second of several", overrides: map[string]string{"client_id": "multi", "redirect_uri": "https://m.test/b"}},
		{name: "loopback with another port", overrides: map[string]string{"client_id": "nat", "redirect_uri": "http://127.0.0.1:51234/callback"}},
		{name: "loopback with another path", overrides: map[string]string{"client_id": "nat", "redirect_uri": "http://127.0.0.1:51234/other"}, page: true},
		{name: "loopback as localhost", overrides: map[string]string{"client_id": "nat", "redirect_uri": "http://localhost:51234/callback"}, page: true},
		{name: "private-use scheme exact", overrides: map[string]string{"client_id": "nat", "redirect_uri": "cursor://anysphere.cursor-mcp/oauth/callback"}},
		{name: "private-use scheme other path", overrides: map[string]string{"client_id": "nat", "redirect_uri": "cursor://anysphere.cursor-mcp/oauth/other"}, page: true},
		{name: "repeated client_id", rawQuery: "client_id=pub1&client_id=pub2&redirect_uri=https%3A%2F%2Fclient.test%2Fcb", page: true},
		{name: "response_type token", overrides: map[string]string{"response_type": "token"}, errCode: "unsupported_response_type", redirect: "https://client.test/cb", state: "xyz"},
		{name: "response_type missing", overrides: map[string]string{"response_type": ""}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "no code_challenge", overrides: map[string]string{"code_challenge": ""}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "method plain", overrides: map[string]string{"code_challenge_method": "plain"}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "method missing means plain", overrides: map[string]string{"code_challenge_method": ""}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "method S512", overrides: map[string]string{"code_challenge_method": "S512"}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "challenge too short", overrides: map[string]string{"code_challenge": p.challenge[:42]}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "challenge not base64url", overrides: map[string]string{"code_challenge": strings.Repeat("+", 43)}, errCode: "invalid_request", redirect: "https://client.test/cb", state: "xyz"},
		{name: "unknown scope", overrides: map[string]string{"scope": "mcp:read admin"}, errCode: "invalid_scope", redirect: "https://client.test/cb", state: "xyz"},
		{name: "relative resource", overrides: map[string]string{"resource": "/mcp"}, errCode: "invalid_target", redirect: "https://client.test/cb", state: "xyz"},
		{name: "resource with fragment", overrides: map[string]string{"resource": base + "/mcp#x"}, errCode: "invalid_target", redirect: "https://client.test/cb", state: "xyz"},
		{name: "foreign resource", overrides: map[string]string{"resource": "https://other.test/mcp"}, errCode: "invalid_target", redirect: "https://client.test/cb", state: "xyz"},
		{name: "resource path prefix", overrides: map[string]string{"resource": base + "/mcp-other"}, errCode: "invalid_target", redirect: "https://client.test/cb", state: "xyz"},
		{name: "resource in other case", overrides: map[string]string{"resource": "HTTP://LOCALHOST:9080/mcp"}},
		{name: "second resource", overrides: map[string]string{"resource": base + "/api"}},
		{name: "resource omitted", overrides: map[string]string{"resource": ""}},
		{name: "scope omitted", overrides: map[string]string{"scope": ""}},
		{name: "state omitted", overrides: map[string]string{"state": "", "response_type": "token"}, errCode: "unsupported_response_type", redirect: "https://client.test/cb"},
		{name: "state echoed byte for byte", overrides: map[string]string{"state": "a b&c=d/é%20+", "response_type": "token"}, errCode: "unsupported_response_type", redirect: "https://client.test/cb", state: "a b&c=d/é%20+"},
		{name: "state too long", overrides: map[string]string{"state": long}, errCode: "invalid_request", redirect: "https://client.test/cb"},
		{name: "redirect_uri with a query keeps it", overrides: map[string]string{"client_id": "withquery", "redirect_uri": "https://q.test/cb?tenant=1", "response_type": "token"}, errCode: "unsupported_response_type", redirect: "https://q.test/cb?tenant=1", state: "xyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := authorizeQuery(p, tc.overrides)
			if tc.rawQuery != "" {
				target = "/oauth/authorize?" + tc.rawQuery
			}
			got := b.get(target)
			switch {
			case tc.page:
				if got.resp.StatusCode != http.StatusBadRequest || got.resp.Header.Get("Location") != "" ||
					!strings.HasPrefix(got.resp.Header.Get("Content-Type"), "text/html") || strings.Contains(got.body, "http-equiv") {
					t.Fatalf("want an error page, got %d %v", got.resp.StatusCode, got.resp.Header)
				}
			case tc.errCode != "":
				loc := got.location()
				if got.resp.StatusCode != http.StatusFound || loc == nil {
					t.Fatalf("want a redirect, got %d %s", got.resp.StatusCode, got.body)
				}
				q := loc.Query()
				wantPrefix := tc.redirect + "?"
				if strings.Contains(tc.redirect, "?") {
					wantPrefix = tc.redirect + "&"
				}
				if !strings.HasPrefix(loc.String(), wantPrefix) {
					t.Errorf("redirect %s does not extend %s", loc, tc.redirect)
				}
				if q.Get("error") != tc.errCode || q.Get("error_description") == "" || q.Get("iss") != base {
					t.Errorf("redirect %s: want error=%s with a description and iss", loc, tc.errCode)
				}
				if st, has := q["state"]; tc.state == "" && has || tc.state != "" && (len(st) != 1 || st[0] != tc.state) {
					t.Errorf("redirect %s: state %q, want %q", loc, q["state"], tc.state)
				}
			default:
				if got.resp.StatusCode != http.StatusOK || got.field("request_id") == "" {
					t.Fatalf("want the consent page, got %d %v %s", got.resp.StatusCode, got.resp.Header, got.body)
				}
			}
		})
	}
}

// TestAuthorizeMalformedQuery: a query that does not parse is shown to the user.
func TestAuthorizeMalformedQuery(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	got := b.get("/oauth/authorize?client_id=pub1&redirect_uri=%zz")
	if got.resp.StatusCode != http.StatusBadRequest || got.resp.Header.Get("Location") != "" {
		t.Fatalf("malformed query: %d %v", got.resp.StatusCode, got.resp.Header)
	}
}

// TestPagesAreHardened checks the headers of every HTML page.
func TestPagesAreHardened(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	login := b.get("/oauth/login")
	b.signIn("alice", alicePassword)
	consent := b.get(authorizeQuery(newPKCE(), nil))
	errPage := b.get("/oauth/authorize?client_id=nobody")
	for name, p := range map[string]page{"login": login, "consent": consent, "error": errPage} {
		h := p.resp.Header
		for k, v := range map[string]string{
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
			"Content-Type":            "text/html; charset=utf-8",
		} {
			if h.Get(k) != v {
				t.Errorf("%s page: %s = %q, want %q", name, k, h.Get(k), v)
			}
		}
		if strings.Contains(p.body, "<script") {
			t.Errorf("%s page has a script", name)
		}
		if !strings.Contains(p.body, "<title>") || !strings.Contains(p.body, `name="viewport"`) {
			t.Errorf("%s page lacks a title or viewport", name)
		}
		// No favicon request: at a guarded site it would be a 401 in the
		// browser console (found by the e2e browser checks).
		if !strings.Contains(p.body, `<link rel="icon" href="data:,">`) {
			t.Errorf("%s page lets the browser fetch /favicon.ico", name)
		}
	}
	if !strings.Contains(login.body, `<label for="username">`) || !strings.Contains(login.body, `<label for="password">`) {
		t.Error("login inputs are not labelled")
	}
}

// TestReflectedValuesAreEscaped registers nothing new: it signs in as a
// user whose name is markup and checks the consent page escapes it.
func TestReflectedValuesAreEscaped(t *testing.T) {
	flowServer(t, `user "<b>mallory</b>" `+aliceHash)
	b := newBrowser(t)
	b.signIn("<b>mallory</b>", alicePassword)
	consent := b.get(authorizeQuery(newPKCE(), nil))
	if strings.Contains(consent.body, "<b>mallory</b>") || !strings.Contains(consent.body, "&lt;b&gt;mallory&lt;/b&gt;") {
		t.Fatalf("the user name is not escaped on the consent page")
	}
	// The login page escapes what it reflects back too.
	form := b.get("/oauth/login?return_to=" + url.QueryEscape(`"><script>alert(1)</script>`))
	if strings.Contains(form.body, "<script>") {
		t.Fatal("return_to is reflected unescaped")
	}
}

// TestNoRedirectToRegisteredClientBeforeSignIn: a client anyone could have registered is never redirected to
// before the user has signed in.
func TestNoRedirectToRegisteredClientBeforeSignIn(t *testing.T) {
	flowServer(t, dcr)
	_, reg := registerJSON(t, `{"client_name":"Totally Legit","redirect_uris":["https://phish.example/x"],"token_endpoint_auth_method":"none"}`)
	id := reg["client_id"].(string)
	long := strings.Repeat("s", 2049)
	for name, o := range map[string]map[string]string{
		"no response_type":    {"response_type": ""},
		"token response_type": {"response_type": "token"},
		"no challenge":        {"code_challenge": ""},
		"plain challenge":     {"code_challenge_method": "plain"},
		"no method":           {"code_challenge_method": ""},
		"short challenge":     {"code_challenge": "abc"},
		"unknown scope":       {"scope": "admin"},
		"foreign resource":    {"resource": "https://elsewhere.test/"},
		"long state":          {"state": long},
		"no redirect_uri":     {"redirect_uri": "", "response_type": "token"},
	} {
		o["client_id"] = id
		if _, set := o["redirect_uri"]; !set {
			o["redirect_uri"] = "https://phish.example/x"
		}
		p := newBrowser(t).get(authorizeQuery(newPKCE(), o))
		loc := p.location()
		if loc != nil && (loc.Host != "" || loc.Path != "/oauth/login") {
			t.Errorf("%s: %d to %s before sign-in", name, p.resp.StatusCode, loc)
		}
	}
	repeated := authorizeQuery(newPKCE(), map[string]string{"client_id": id, "redirect_uri": "https://phish.example/x"}) + "&scope=mcp:read"
	if loc := newBrowser(t).get(repeated).location(); loc != nil && loc.Host != "" {
		t.Errorf("repeated parameter: redirected to %s before sign-in", loc)
	}

	// Signed in, the client gets its error, as the protocol says.
	p := signedIn(t).get(authorizeQuery(newPKCE(), map[string]string{"client_id": id, "redirect_uri": "https://phish.example/x", "response_type": "token"}))
	if loc := p.location(); p.resp.StatusCode != http.StatusFound || loc == nil || loc.Host != "phish.example" || loc.Query().Get("error") != "unsupported_response_type" {
		t.Fatalf("signed in: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	// A Caddyfile client (vetted by the operator) is redirected at once.
	p = newBrowser(t).get(authorizeQuery(newPKCE(), map[string]string{"response_type": "token"}))
	if loc := p.location(); p.resp.StatusCode != http.StatusFound || loc == nil || loc.Host != "client.test" {
		t.Fatalf("Caddyfile client: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}

// TestOfflineAccess: offline_access is accepted without being in the catalogue, and
// never advertised to clients of the resource.
func TestOfflineAccess(t *testing.T) {
	flowServer(t, dcr)
	b := signedIn(t)
	p := newPKCE()
	code := codeFor(t, b, p, map[string]string{"scope": "mcp:read offline_access"})
	resp, body := tokenRequest(t, redeemForm(code, p))
	if resp.StatusCode != http.StatusOK || body["scope"] != "mcp:read" || body["refresh_token"] == nil {
		t.Fatalf("offline_access outside the catalogue: %d %v", resp.StatusCode, body)
	}
	if p, out := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none","scope":"mcp:read offline_access"}`); p.resp.StatusCode != http.StatusCreated {
		t.Fatalf("registration with offline_access: %d %v", p.resp.StatusCode, out)
	}

	// Listed in the catalogue, it is a scope like any other for the
	// authorization server, but not one the resource advertises or asks for.
	_, logPath := flowServer(t, "scopes offline_access\n require_scope /mcp/admin/* mcp:write offline_access")
	prm := newBrowser(t).get("/.well-known/oauth-protected-resource/mcp")
	if !strings.Contains(prm.body, `"scopes_supported":["mcp:read","mcp:write"]`) {
		t.Errorf("protected-resource metadata: %s", prm.body)
	}
	as := newBrowser(t).get("/.well-known/oauth-authorization-server")
	if !strings.Contains(as.body, `"scopes_supported":["mcp:read","mcp:write","offline_access"]`) {
		t.Errorf("authorization-server metadata: %s", as.body)
	}
	if c := callAPI(t, "", "/mcp/admin/x").resp.Header.Get("WWW-Authenticate"); c != `Bearer resource_metadata="`+prmMCP+`", scope="mcp:write"` {
		t.Errorf("challenge %q", c)
	}
	logs, _ := os.ReadFile(logPath)
	warned := false
	for _, line := range strings.Split(string(logs), "\n") {
		warned = warned || strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "offline_access")
	}
	if !warned {
		t.Errorf("no load warning about offline_access in the log")
	}
}
