package integration

// Regression tests for the defects and gaps of the adversarial review
// (issue 10); each names its item.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bobPassword is bob's password; his hash is costly (bcrypt 10), so that
// verifications are still running while other attempts arrive.
const bobPassword = "bob's long password"

var bobHash = mustHash(bobPassword, 10)

const trustLoopbackProxy = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"

// Item 1: the throttle takes its token before the password is verified,
// so a burst of parallel guesses cannot all be evaluated.
func TestLoginThrottleCannotBeRaced(t *testing.T) {
	// Each attempt comes from its own address (X-Forwarded-For from a
	// trusted proxy), so only the per-account limit stands in the way.
	flowServerWith(t, trustLoopbackProxy, "user bob "+bobHash)
	const wrong = 19
	browsers := make([]*browser, wrong+1)
	csrf := make([]string, wrong+1)
	for i := range browsers {
		browsers[i] = newBrowser(t)
		csrf[i] = browsers[i].get("/oauth/login").field("csrf_token")
	}
	attempt := func(i int, password string) page {
		return browsers[i].post("/oauth/login", url.Values{"username": {"bob"}, "password": {password}, "csrf_token": {csrf[i]}},
			"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
	}
	results := make(chan page, wrong)
	for i := range wrong {
		go func() { results <- attempt(i, "a wrong guess") }()
	}
	// The attempts that were not let in are answered at once; while the
	// admitted ones are still verifying, the right password arrives.
	var answers []page
	timeout := time.After(time.Minute)
	for len(answers) < wrong-5 {
		select {
		case p := <-results:
			answers = append(answers, p)
		case <-timeout:
			t.Fatalf("only %d of %d attempts answered", len(answers), wrong)
		}
	}
	right := attempt(wrong, bobPassword)
	for len(answers) < wrong {
		answers = append(answers, <-results)
	}
	evaluated := 0
	for _, p := range answers {
		switch p.resp.StatusCode {
		case http.StatusUnauthorized:
			evaluated++
		case http.StatusTooManyRequests:
			if ra := p.resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 with Retry-After %q", ra)
			}
		default:
			t.Errorf("unexpected answer %d", p.resp.StatusCode)
		}
	}
	if evaluated == 0 || evaluated > 5 {
		t.Fatalf("%d of %d parallel wrong guesses were evaluated, want 1 to 5", evaluated, wrong)
	}
	if right.resp.StatusCode != http.StatusTooManyRequests || hasSessionCookie(right) || right.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the right password during the burst: %d, session %v, want 429 with Retry-After", right.resp.StatusCode, hasSessionCookie(right))
	}
	// Five failures were counted: the account stays limited.
	b := newBrowser(t)
	form := b.get("/oauth/login")
	p := b.post("/oauth/login", url.Values{"username": {"bob"}, "password": {bobPassword}, "csrf_token": {form.field("csrf_token")}},
		"X-Forwarded-For", "198.51.100.200")
	if evaluated == 5 && (p.resp.StatusCode != http.StatusTooManyRequests || hasSessionCookie(p)) {
		t.Fatalf("the right password after five failures: %d, want 429", p.resp.StatusCode)
	}
}

// Item 2: a client anyone could have registered is never redirected to
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

const (
	siteA = "http://a.localhost:9080"
	siteB = "http://b.localhost:9080"
)

// browserAt is a browser whose relative paths go to origin.
func browserAt(t *testing.T, origin string) *browser {
	b := newBrowser(t)
	b.origin = origin
	return b
}

// Item 3: two issuers share one storage file; nothing of one is usable at
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

func mustURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

// Item 4: consent is remembered per (user, client, resource).
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

// Item 5: a client-credentials token is a client's, not a user's.
func TestClientCredentialsTokenIsNoUser(t *testing.T) {
	up := newUpstream(t, nil)
	flowServerUpstream(t, "", `
		client machine {
			secret machine-secret-0123456789
			grant_types client_credentials
		}`, `reverse_proxy `+up.address()+` {
		header_up X-User {http.auth.user.id}
		header_up X-Sub {http.oauth2.sub}
		header_up X-Subject-Type {http.oauth2.subject_type}
	}`)
	resp, body := tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth("machine", "machine-secret-0123456789"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		name, token, user, sub, kind string
	}{
		{"client", body["access_token"].(string), "", "machine", "client"},
		{"user", tokensFor(t, signedIn(t), nil)["access_token"].(string), "alice", "alice", "user"},
	} {
		if p := callAPI(t, tc.token, "/mcp"); p.resp.StatusCode != http.StatusOK {
			t.Fatalf("%s token: %d", tc.name, p.resp.StatusCode)
		}
		h := up.header()
		if h.Get("X-User") != tc.user || h.Get("X-Sub") != tc.sub || h.Get("X-Subject-Type") != tc.kind {
			t.Errorf("%s token: upstream got X-User %q, X-Sub %q, X-Subject-Type %q; want %q %q %q",
				tc.name, h.Get("X-User"), h.Get("X-Sub"), h.Get("X-Subject-Type"), tc.user, tc.sub, tc.kind)
		}
	}
}

// rawRequest sends a request line byte for byte (Go's client would
// escape a backslash) and returns the status.
func rawRequest(t *testing.T, target, token string) int {
	t.Helper()
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost:9080\r\n%sConnection: close\r\n\r\n", target, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Item 6: a backslash is a path separator when the guard judges a path.
func TestGuardBackslashIsASeparator(t *testing.T) {
	flowServer(t, guardExtra)
	read := tokensFor(t, signedIn(t), nil)["access_token"].(string)
	for _, target := range []string{`/docs/..%5cmcp`, `/docs/..%5Cmcp`, `/docs/..\mcp`, `/docs\..\mcp`, `/healthz\..\mcp`} {
		if got := rawRequest(t, target, ""); got != http.StatusUnauthorized && got != http.StatusBadRequest {
			t.Errorf("%s without a token: %d", target, got)
		}
	}
	for _, target := range []string{`/mcp/x%5c..%5cadmin/y`, `/mcp/x\..\admin/y`, `/mcp\admin\y`} {
		if got := rawRequest(t, target, read); got != http.StatusForbidden && got != http.StatusBadRequest {
			t.Errorf("%s with a read-only token: %d", target, got)
		}
	}
	if got := rawRequest(t, "/docs/intro", ""); got != http.StatusOK {
		t.Errorf("public path: %d", got)
	}
}

// Item 7: a replay that would fail anyway (wrong verifier, client or
// redirect URI) revokes nothing.
func TestFailedReplayRevokesNothing(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	p := newPKCE()
	code := codeFor(t, b, p, nil)
	resp, first := tokenRequest(t, redeemForm(code, p))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %v", resp.StatusCode, first)
	}
	for name, form := range map[string]url.Values{
		"wrong verifier":     redeemForm(code, newPKCE()),
		"no verifier":        redeemForm(code, p, "code_verifier", ""),
		"wrong redirect_uri": redeemForm(code, p, "redirect_uri", "https://client.test/other"),
		"other client":       redeemForm(code, p, "client_id", "pub2"),
	} {
		resp, body := tokenRequest(t, form)
		wantError(t, name, resp, body, http.StatusBadRequest, "invalid_grant")
	}
	if p := callAPI(t, first["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("the access token was revoked by a failed replay: %d", p.resp.StatusCode)
	}
	if resp, body := tokenRequest(t, refreshForm(first["refresh_token"].(string))); resp.StatusCode != http.StatusOK {
		t.Fatalf("the refresh token was revoked by a failed replay: %d %v", resp.StatusCode, body)
	}
}

// Item 8: a client authenticates with the kind of credential it
// registered (either secret method for a secret; a Caddyfile client's
// token_endpoint_auth_method, when set, strictly), one method a request.
func TestRegisteredAuthMethodIsEnforced(t *testing.T) {
	flowServer(t, `
		dynamic_registration {
			initial_access_token machines-0123456789abcdef
			allow_client_credentials
			rate_limit off
		}
		client postonly {
			secret postonly-secret-0123456789
			grant_types client_credentials
			token_endpoint_auth_method client_secret_post
		}`)
	register := func(method string) (string, string) {
		_, out := registerJSON(t, `{"redirect_uris":["https://c.test/cb"],"grant_types":["authorization_code","client_credentials"],"token_endpoint_auth_method":"`+method+`"}`,
			"Authorization", "Bearer machines-0123456789abcdef")
		return out["client_id"].(string), out["client_secret"].(string)
	}
	cc := func(id, secret, how string) (*http.Response, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}}
		switch how {
		case "basic":
			return tokenRequest(t, form, "Authorization", basicAuth(id, secret))
		case "post":
			form.Set("client_id", id)
			form.Set("client_secret", secret)
			return tokenRequest(t, form)
		default: // both
			form.Set("client_secret", secret)
			return tokenRequest(t, form, "Authorization", basicAuth(id, secret))
		}
	}
	basicID, basicSecret := register("client_secret_basic")
	postID, postSecret := register("client_secret_post")
	for _, tc := range []struct {
		name, id, secret, how string
		status                int
		code                  string
	}{
		{"basic client, basic", basicID, basicSecret, "basic", 200, ""},
		{"basic client, post", basicID, basicSecret, "post", 200, ""},
		{"post client, post", postID, postSecret, "post", 200, ""},
		{"post client, basic", postID, postSecret, "basic", 200, ""},
		{"both methods", basicID, basicSecret, "both", 400, "invalid_request"},
		{"Caddyfile post client, post", "postonly", "postonly-secret-0123456789", "post", 200, ""},
		{"Caddyfile post client, basic", "postonly", "postonly-secret-0123456789", "basic", 401, "invalid_client"},
	} {
		resp, body := cc(tc.id, tc.secret, tc.how)
		if tc.status == 200 {
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d %v", tc.name, resp.StatusCode, body)
			}
			continue
		}
		wantError(t, tc.name, resp, body, tc.status, tc.code)
	}
}

// Item 9: a remembered consent does not silently approve a public client
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

// Item 11: preflight allows the Mcp-Param-* headers a client asks for.
func TestGuardPreflightMcpParamHeaders(t *testing.T) {
	flowServer(t, guardExtra)
	req, _ := http.NewRequest(http.MethodOptions, base+"/mcp", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,mcp-param-city,MCP-PARAM-Units,x-evil")
	p := newBrowser(t).do(req)
	want := "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID, mcp-param-city, MCP-PARAM-Units"
	if p.resp.StatusCode != http.StatusNoContent || p.resp.Header.Get("Access-Control-Allow-Headers") != want {
		t.Fatalf("preflight: %d Allow-Headers %q\nwant %q", p.resp.StatusCode, p.resp.Header.Get("Access-Control-Allow-Headers"), want)
	}
	if v := p.resp.Header.Values("Vary"); !strings.Contains(strings.Join(v, ","), "Access-Control-Request-Headers") {
		t.Errorf("Vary %q", v)
	}
}

// Item 12: offline_access is accepted without being in the catalogue, and
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

// Item 13: a consent form submitted twice by its user within two minutes
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

// Item 14: the consent page says when the application runs on the user's
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

// Item 15: deleting a client revokes what it holds, at the guard's next
// request.
func TestDeletedClientLosesItsTokens(t *testing.T) {
	flowServer(t, dcr+`
		client rs {
			secret rs-secret-0123456789abcdef
			grant_types client_credentials
			introspect
		}`)
	_, out := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`)
	id := out["client_id"].(string)
	tokens := tokensFor(t, signedIn(t), map[string]string{"client_id": id}, "client_id", id)
	access, refresh := tokens["access_token"].(string), tokens["refresh_token"].(string)
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("before delete: %d", p.resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodDelete, out["registration_client_uri"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+out["registration_access_token"].(string))
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", p.resp.StatusCode, p.body)
	}
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(p.body, "revoked") {
		t.Fatalf("the deleted client's access token at the guard: %d %s", p.resp.StatusCode, p.body)
	}
	for name, tok := range map[string]string{"access": access, "refresh": refresh} {
		p := newBrowser(t).post("/oauth/introspect", url.Values{"token": {tok}}, "Authorization", basicAuth("rs", "rs-secret-0123456789abcdef"))
		if p.body != `{"active":false}` {
			t.Errorf("introspection of the deleted client's %s token: %s", name, p.body)
		}
	}
}

// Item 17: one Access-Control-Allow-Origin on proxied answers, whatever
// the upstream sends.
func TestGuardCORSWithCORSUpstreams(t *testing.T) {
	tok := ""
	for _, tc := range []struct {
		name     string
		upstream http.Header
		origin   string
		expose   string
		creds    string
	}{
		{"upstream sends *", http.Header{"Access-Control-Allow-Origin": {"*"}, "Access-Control-Expose-Headers": {"Mcp-Session-Id"}}, "*", "Mcp-Session-Id, WWW-Authenticate", ""},
		{"upstream sends an origin", http.Header{"Access-Control-Allow-Origin": {"https://app.example"}, "Access-Control-Allow-Credentials": {"true"}, "Vary": {"Origin"}},
			"https://app.example", "WWW-Authenticate, Mcp-Session-Id", "true"},
		{"upstream sends none", nil, "*", "WWW-Authenticate, Mcp-Session-Id", ""},
	} {
		up := newUpstream(t, tc.upstream)
		flowServerUpstream(t, "", "", "reverse_proxy "+up.address())
		tok = tokensFor(t, signedIn(t), nil)["access_token"].(string)
		req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Authorization", "Bearer "+tok)
		p := newBrowser(t).do(req)
		h := p.resp.Header
		if p.resp.StatusCode != http.StatusOK || p.body != "upstream body" {
			t.Fatalf("%s: %d %s", tc.name, p.resp.StatusCode, p.body)
		}
		if got := h.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != tc.origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want exactly %q", tc.name, got, tc.origin)
		}
		if got := h.Values("Access-Control-Expose-Headers"); len(got) != 1 || got[0] != tc.expose {
			t.Errorf("%s: Access-Control-Expose-Headers %q, want %q", tc.name, got, tc.expose)
		}
		if got := h.Values("Access-Control-Allow-Credentials"); tc.creds == "" && len(got) != 0 || tc.creds != "" && (len(got) != 1 || got[0] != tc.creds) {
			t.Errorf("%s: Access-Control-Allow-Credentials %q", tc.name, got)
		}
	}
	// The guard's own answers carry its CORS headers, once.
	p := callAPI(t, "", "/mcp")
	if got := p.resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
		t.Errorf("challenge: Access-Control-Allow-Origin %q", got)
	}
}
