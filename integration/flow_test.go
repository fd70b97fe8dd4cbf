package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/oauth2"
)

const confSecret = "conf-secret-0123456789abcdef"

// flowSite is the site of the flow tests: base, with an oauth2_server
// block every test shares (issuer, resources, alice, the clients pub1,
// pub2, nat, conf, multi, withquery and first) and what a test adds.
type flowSite struct {
	global   string // global options
	extra    string // more lines of the oauth2_server block
	upstream string // what answers after the guard; default: respond "upstream" 200
}

// flowServer starts the flow site with extra lines in its oauth2_server
// block; it returns the storage file's path ("" with storage postgres) and
// the Caddy log's.
func flowServer(t *testing.T, extra string) (storagePath, logPath string) {
	t.Helper()
	return flowSite{extra: extra}.start(t)
}

// start loads the site into the test's Caddy.
func (site flowSite) start(t *testing.T) (storagePath, logPath string) {
	t.Helper()
	dir := t.TempDir()
	storagePath, logPath = filepath.Join(dir, "oauth.db"), filepath.Join(dir, "caddy.log")
	storageLine := "storage " + storagePath
	if strings.Contains(site.extra, "storage postgres") { // the test brings its own storage
		storageLine, storagePath = "", ""
	}
	upstream := cmp.Or(site.upstream, `respond "upstream" 200`)
	config := withLog(logPath, site.global) +
		base + ` {
	log {
		output file ` + filepath.Join(dir, "access.log") + `
		format filter {
			resp_headers>Location query {
				delete code
			}
		}
	}
	oauth2_server {
		issuer ` + base + `
		resource ` + base + `/mcp ` + base + `/api
		scopes mcp:read mcp:write
		` + storageLine + `
		user alice ` + aliceHash + `
		client pub1 {
			public
			name "Public One"
			redirect_uri https://client.test/cb
		}
		client pub2 {
			public
			redirect_uri https://client.test/cb
		}
		client nat {
			public
			redirect_uri http://127.0.0.1/callback cursor://anysphere.cursor-mcp/oauth/callback
		}
		client conf {
			secret ` + confSecret + `
			redirect_uri https://conf.test/cb
		}
		client multi {
			public
			redirect_uri https://m.test/a https://m.test/b
		}
		client withquery {
			public
			redirect_uri "https://q.test/cb?tenant=1"
		}
		client first {
			public
			trusted
			redirect_uri https://first.test/cb
		}
		` + site.extra + `
	}
	` + upstream + `
}
`
	start(t, config)
	return storagePath, logPath
}

// TestAuthorizationCodeFlowWithOAuth2Client drives the whole flow with
// golang.org/x/oauth2 on the client side and a cookie-keeping browser for
// sign-in and consent, then checks every claim of the access token.
func TestAuthorizationCodeFlowWithOAuth2Client(t *testing.T) {
	_, logPath := flowServer(t, "")
	conf := &oauth2.Config{
		ClientID:    "pub1",
		Endpoint:    oauth2.Endpoint{AuthURL: base + "/oauth/authorize", TokenURL: base + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "https://client.test/cb",
		Scopes:      []string{"mcp:read"},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", base+"/mcp"))

	b := newBrowser(t)
	toLogin := b.get(authURL)
	if toLogin.resp.StatusCode != http.StatusSeeOther || toLogin.location() == nil || toLogin.location().Path != "/oauth/login" {
		t.Fatalf("no session: want 303 to the login page, got %d %v", toLogin.resp.StatusCode, toLogin.resp.Header)
	}
	loginForm := b.get(toLogin.location().String())
	signedIn := b.post("/oauth/login", map[string][]string{
		"username": {"alice"}, "password": {alicePassword},
		"csrf_token": {loginForm.field("csrf_token")}, "return_to": {loginForm.field("return_to")},
	})
	if signedIn.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(signedIn.resp.Header.Get("Location"), "/oauth/authorize?") {
		t.Fatalf("after sign-in: want 303 back to the request, got %d %v %s", signedIn.resp.StatusCode, signedIn.resp.Header, signedIn.body)
	}
	var sessionCookie *http.Cookie
	for _, c := range signedIn.resp.Cookies() {
		if c.Name == "oauth2_session" {
			sessionCookie = c
		}
	}
	if sessionCookie == nil || !sessionCookie.HttpOnly || sessionCookie.SameSite != http.SameSiteLaxMode || sessionCookie.Path != "/" || sessionCookie.MaxAge != 12*3600 {
		t.Fatalf("session cookie %+v", sessionCookie)
	}

	consent := b.get(signedIn.resp.Header.Get("Location"))
	for _, want := range []string{"Public One", "client.test", "mcp:read", "alice"} {
		if !strings.Contains(consent.body, want) {
			t.Errorf("consent page does not show %q", want)
		}
	}
	code := codeFrom(t, b.approve(consent, "allow"), "https://client.test/cb", "state-123")

	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: caddytest.CreateTestingTransport()})
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", base+"/mcp"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.Extra("scope") != "mcp:read" || tok.Expiry.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("token response %+v scope=%v", tok, tok.Extra("scope"))
	}

	claims := verifyAccessToken(t, tok.AccessToken)
	now := time.Now().Unix()
	checks := map[string]bool{
		"iss":       claims["iss"] == base,
		"sub":       claims["sub"] == "alice",
		"aud":       claims["aud"] == base+"/mcp",
		"client_id": claims["client_id"] == "pub1",
		"scope":     claims["scope"] == "mcp:read",
		"jti":       len(claims["jti"].(string)) >= 16,
		"exp":       int64(claims["exp"].(float64))-int64(claims["iat"].(float64)) == 3600,
		"iat":       abs(int64(claims["iat"].(float64))-now) < 60,
		"nbf":       claims["nbf"] == claims["iat"],
		"auth_time": abs(int64(claims["auth_time"].(float64))-now) < 60,
	}
	for claim, ok := range checks {
		if !ok {
			t.Errorf("claim %s wrong in %v", claim, claims)
		}
	}

	// Nothing secret reaches the log, nor the access log with the documented
	// filter (docs/operating.md: it removes the code from Location headers).
	logs, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	accessLog, err := os.ReadFile(filepath.Join(filepath.Dir(logPath), "access.log"))
	if err != nil || !strings.Contains(string(accessLog), "/oauth/consent") {
		t.Fatalf("no access log: %v", err)
	}
	logs = append(logs, accessLog...)
	for name, secret := range map[string]string{"code": code, "access token": tok.AccessToken, "password": alicePassword,
		"session": sessionCookie.Value, "verifier": verifier, "csrf": loginForm.field("csrf_token")} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("the %s appears in the log", name)
		}
	}
	// The main logger stays quiet: start-up only, at info level.
	for _, line := range strings.Split(string(logs), "\n") {
		var entry struct{ Level, Logger, Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Logger == "http.handlers.oauth2_server" && entry.Level != "debug" && entry.Msg != "authorization server ready" {
			t.Errorf("the main logger wrote %s %q during a flow", entry.Level, entry.Msg)
		}
	}
	// Each step is an event on the audit logger.
	for _, event := range []string{"sign_in", "consent_granted", "token_issued"} {
		if !strings.Contains(string(logs), `"logger":"http.handlers.oauth2_server.audit","msg":"`+event+`"`) || !strings.Contains(string(logs), `"event":"`+event+`"`) {
			t.Errorf("the audit log has no %q event", event)
		}
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

const (
	siteA = "http://a.localhost:9080"
	siteB = "http://b.localhost:9080"
)

// TestRecordsAreBoundToTheirIssuer: two issuers share one storage file; nothing of one is usable at
// the other.
func TestRecordsAreBoundToTheirIssuer(t *testing.T) {
	store := filepath.Join(t.TempDir(), "shared.db")
	block := func(origin string) string {
		return origin + ` {
	oauth2_server {
		issuer ` + origin + `
		resource ` + origin + `/mcp
		storage ` + store + `
		scopes mcp:read mcp:write
		user alice ` + aliceHash + `
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
		dynamic_registration {
			rate_limit off
		}
	}
	respond "upstream" 200
}
`
	}
	start(t, globalOptions+block(siteA)+block(siteB))
	a, b := browserAt(t, siteA), browserAt(t, siteB)
	a.signIn("alice", alicePassword)
	b.signIn("alice", alicePassword)
	query := func(origin string, p pkce) string {
		return authorizeQuery(p, map[string]string{"resource": origin + "/mcp"})
	}

	// A code of B is unknown at A, and stays good at B.
	pb := newPKCE()
	codeB := codeIn(t, b.approve(b.get(query(siteB, pb)), "allow"))
	if p := browserAt(t, siteA).post("/oauth/token", redeemForm(codeB, pb)); p.resp.StatusCode != http.StatusBadRequest || !strings.Contains(p.body, `"invalid_grant"`) {
		t.Fatalf("B's code at A: %d %s", p.resp.StatusCode, p.body)
	}
	redeemed := browserAt(t, siteB).post("/oauth/token", redeemForm(codeB, pb))
	if redeemed.resp.StatusCode != http.StatusOK {
		t.Fatalf("B's code at B after the attempt at A: %d %s", redeemed.resp.StatusCode, redeemed.body)
	}
	// So is its refresh token.
	rt := jsonField(t, redeemed.body, "refresh_token")
	if p := browserAt(t, siteA).post("/oauth/token", refreshForm(rt)); p.resp.StatusCode != http.StatusBadRequest || !strings.Contains(p.body, `"invalid_grant"`) {
		t.Fatalf("B's refresh token at A: %d %s", p.resp.StatusCode, p.body)
	}
	if p := browserAt(t, siteB).post("/oauth/token", refreshForm(rt)); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("B's refresh token at B: %d %s", p.resp.StatusCode, p.body)
	}

	// B's remembered consent does not skip A's consent screen.
	codeIn(t, b.get(query(siteB, newPKCE())))
	consentA := a.get(query(siteA, newPKCE()))
	if consentA.field("request_id") == "" {
		t.Fatalf("B's consent was used at A: %d %v", consentA.resp.StatusCode, consentA.resp.Header)
	}
	// A's pending consent cannot be answered at B (and is not used up).
	answer := url.Values{"request_id": {consentA.field("request_id")}, "csrf_token": {consentA.field("csrf_token")}, "decision": {"allow"}}
	if p := b.post("/oauth/consent", answer); p.resp.StatusCode != http.StatusBadRequest || p.resp.Header.Get("Location") != "" {
		t.Fatalf("A's pending consent answered at B: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	codeIn(t, a.approve(consentA, "allow"))

	// A's session cookie means nothing at B.
	var session string
	for _, c := range a.client.Jar.Cookies(mustURL(siteA)) {
		if c.Name == "oauth2_session" {
			session = c.Value
		}
	}
	req, _ := http.NewRequest(http.MethodGet, siteB+query(siteB, newPKCE()), nil)
	req.Header.Set("Cookie", "oauth2_session="+session)
	if p := newBrowser(t).do(req); session == "" || p.resp.StatusCode != http.StatusSeeOther || p.location().Path != "/oauth/login" {
		t.Fatalf("A's session at B: %d %v", p.resp.StatusCode, p.resp.Header)
	}

	// A client registered at B is unknown at A.
	reqReg, _ := http.NewRequest(http.MethodPost, siteB+"/oauth/register", strings.NewReader(`{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`))
	reqReg.Header.Set("Content-Type", "application/json")
	clientB := jsonField(t, newBrowser(t).do(reqReg).body, "client_id")
	if p := a.get(authorizeQuery(newPKCE(), map[string]string{"client_id": clientB, "resource": siteA + "/mcp"})); p.resp.StatusCode != http.StatusBadRequest || p.location() != nil {
		t.Fatalf("B's registered client at A: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}
