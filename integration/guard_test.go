package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const guardExtra = `
		public /docs/* /healthz
		require_scope /mcp/admin/* mcp:write mcp:read`

const prmMCP = base + "/.well-known/oauth-protected-resource/mcp"

// TestGuardChallenges checks every challenge byte for byte.
func TestGuardChallenges(t *testing.T) {
	flowServer(t, guardExtra)
	read := tokensFor(t, signedIn(t), nil)["access_token"].(string)
	for _, tc := range []struct {
		name, token, path string
		status            int
		challenge, body   string
	}{
		{"no token", "", "/mcp", 401, `Bearer resource_metadata="` + prmMCP + `"`,
			`{"error_description":"an access token is required"}`},
		{"no token, scoped path", "", "/mcp/admin/x", 401, `Bearer resource_metadata="` + prmMCP + `", scope="mcp:write mcp:read"`,
			`{"error_description":"an access token is required"}`},
		{"bad token", "not-a-jwt", "/mcp", 401, `Bearer resource_metadata="` + prmMCP + `", error="invalid_token", error_description="the access token is malformed or its signature is invalid"`,
			`{"error":"invalid_token","error_description":"the access token is malformed or its signature is invalid"}`},
		{"other resource", read, "/api/x", 401, `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/api", error="invalid_token", error_description="the access token is not valid for this resource"`,
			`{"error":"invalid_token","error_description":"the access token is not valid for this resource"}`},
		{"insufficient scope", read, "/mcp/admin/x", 403, `Bearer resource_metadata="` + prmMCP + `", scope="mcp:write mcp:read", error="insufficient_scope", error_description="the access token lacks a required scope"`,
			`{"error":"insufficient_scope","error_description":"the access token lacks a required scope","scope":"mcp:write mcp:read"}`},
	} {
		p := callAPI(t, tc.token, tc.path)
		h := p.resp.Header
		if p.resp.StatusCode != tc.status || h.Get("WWW-Authenticate") != tc.challenge || p.body != tc.body {
			t.Errorf("%s:\n got %d %q %s\nwant %d %q %s", tc.name, p.resp.StatusCode, h.Get("WWW-Authenticate"), p.body, tc.status, tc.challenge, tc.body)
		}
		if h.Get("Cache-Control") != "no-store" || h.Get("Access-Control-Allow-Origin") != "*" ||
			h.Get("Access-Control-Expose-Headers") != "WWW-Authenticate, Mcp-Session-Id, DPoP-Nonce" || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", tc.name, h)
		}
	}
	if p := callAPI(t, read, "/mcp/tools"); p.resp.StatusCode != http.StatusOK || p.body != "upstream" {
		t.Fatalf("valid token under /mcp/: %d %s", p.resp.StatusCode, p.body)
	}
	if p := callAPI(t, read, "/mcp-other"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a /mcp token at /mcp-other: %d", p.resp.StatusCode)
	}
	// The token in the query string or a form body is never looked at.
	if p := newBrowser(t).get("/mcp?access_token=" + read); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token in the query: %d", p.resp.StatusCode)
	}
	if p := newBrowser(t).post("/mcp", url.Values{"access_token": {read}}); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token in a form body: %d", p.resp.StatusCode)
	}
	// Two Authorization headers are a malformed request.
	req, _ := http.NewRequest(http.MethodGet, base+"/mcp", nil)
	req.Header.Add("Authorization", "Bearer "+read)
	req.Header.Add("Authorization", "Bearer "+read)
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusBadRequest || !strings.Contains(p.resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) {
		t.Fatalf("two Authorization headers: %d %q", p.resp.StatusCode, p.resp.Header.Get("WWW-Authenticate"))
	}
}

func TestGuardPreflight(t *testing.T) {
	flowServer(t, guardExtra)
	req, _ := http.NewRequest(http.MethodOptions, base+"/mcp", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-protocol-version, mcp-session-id")
	p := newBrowser(t).do(req)
	want := map[string]string{
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Allow-Methods":  "GET, POST, PUT, PATCH, DELETE, OPTIONS",
		"Access-Control-Allow-Headers":  "Authorization, DPoP, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID",
		"Access-Control-Expose-Headers": "WWW-Authenticate, Mcp-Session-Id, DPoP-Nonce",
	}
	if p.resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: %d", p.resp.StatusCode)
	}
	for k, v := range want {
		if p.resp.Header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, p.resp.Header.Get(k), v)
		}
	}

	flowServer(t, guardExtra+"\n cors off")
	p = newBrowser(t).do(req)
	if p.resp.StatusCode != http.StatusUnauthorized || p.resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight with cors off: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}

// TestGuardRefusesForgedTokens forges every kind of bad token; each must
// get 401 invalid_token.
func TestGuardRefusesForgedTokens(t *testing.T) {
	storagePath, _ := flowServer(t, guardExtra)
	keys := serverKeys(t, storagePath)
	kid := keys.KeyID()
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": base, "sub": "mallory", "aud": base + "/mcp", "client_id": "pub1", "scope": "mcp:read mcp:write",
			"jti": "forged-" + randomJTI(), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(typ string, c map[string]any) string {
		tok, err := keys.Sign(typ, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	payload, _ := json.Marshal(claims(nil))
	b64 := base64.RawURLEncoding.EncodeToString
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(keys.PublicKey())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	withAttackerKey := func(opts *jose.SignerOptions, key any, alg jose.SignatureAlgorithm) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts.WithType("at+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims(nil)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hsWithPublicKey := withAttackerKey((&jose.SignerOptions{}).WithHeader("kid", kid), pubPEM, jose.HS256)
	embeddedJWK := withAttackerKey(&jose.SignerOptions{EmbedJWK: true}, attacker, jose.ES256)
	unknownKid := withAttackerKey((&jose.SignerOptions{}).WithHeader("kid", "not-ours"), attacker, jose.ES256)
	attackerWithOurKid := withAttackerKey((&jose.SignerOptions{}).WithHeader("kid", kid), attacker, jose.ES256)
	jkuHeader := withAttackerKey((&jose.SignerOptions{}).WithHeader("kid", kid).WithHeader("jku", "https://evil.test/jwks"), attacker, jose.ES256)

	for name, token := range map[string]string{
		"alg none":                     b64([]byte(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`)) + "." + b64(payload) + ".",
		"HS256 signed with our public": hsWithPublicKey,
		"embedded jwk":                 embeddedJWK,
		"jku header":                   jkuHeader,
		"unknown kid":                  unknownKid,
		"attacker key with our kid":    attackerWithOurKid,
		"wrong typ":                    sign("JWT", claims(nil)),
		"no typ":                       sign("", claims(nil)),
		"expired beyond skew":          sign("at+jwt", claims(func(c map[string]any) { c["exp"] = now.Add(-31 * time.Second).Unix() })),
		"nbf in the future":            sign("at+jwt", claims(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })),
		"wrong iss":                    sign("at+jwt", claims(func(c map[string]any) { c["iss"] = "https://evil.test" })),
		"iss with trailing slash":      sign("at+jwt", claims(func(c map[string]any) { c["iss"] = base + "/" })),
		"other audience":               sign("at+jwt", claims(func(c map[string]any) { c["aud"] = "https://other.test/mcp" })),
		"no exp":                       sign("at+jwt", claims(func(c map[string]any) { delete(c, "exp") })),
		"no jti":                       sign("at+jwt", claims(func(c map[string]any) { delete(c, "jti") })),
		"tampered payload":             strings.Replace(sign("at+jwt", claims(nil)), ".", "."+b64([]byte(`{"sub":"root"}`))+"x", 1),
	} {
		p := callAPI(t, token, "/mcp")
		if p.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(p.resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %q", name, p.resp.StatusCode, p.resp.Header.Get("WWW-Authenticate"))
		}
	}

	// Within the skew, and well-formed: accepted (the harness is right).
	within := sign("at+jwt", claims(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }))
	if p := callAPI(t, within, "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("a token expired 10s ago (skew 30s): %d %s", p.resp.StatusCode, p.body)
	}
	good := sign("at+jwt", claims(nil))
	if p := callAPI(t, good, "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("a well-formed token: %d", p.resp.StatusCode)
	}
	// Revoked jti: refused on the very next request, cached or not.
	revoke(t, url.Values{"token": {good}, "client_id": {"pub1"}})
	if p := callAPI(t, good, "/mcp"); p.resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(p.resp.Header.Get("WWW-Authenticate"), `error_description="the access token has been revoked"`) {
		t.Fatalf("revoked jti: %d %q", p.resp.StatusCode, p.resp.Header.Get("WWW-Authenticate"))
	}
}

func randomJTI() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestGuardPathNormalisation: tricks with dot segments, encoded slashes,
// doubled slashes, semicolons and case must not reach a protected path
// through a public one, nor dodge a require_scope rule.
func TestGuardPathNormalisation(t *testing.T) {
	flowServer(t, guardExtra)
	read := tokensFor(t, signedIn(t), nil)["access_token"].(string)
	for _, path := range []string{
		"/docs/../mcp", "/docs/..%2Fmcp", "/docs%2F..%2Fmcp", "/docs/%2e%2e/mcp", "/docs/%2E%2E/mcp",
		"/docs/./../mcp", "/docs;/../mcp", "/docs/..;/mcp", "//docs/../mcp", "/healthz/../mcp", "/docs/../../mcp",
	} {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusUnauthorized && p.resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s without a token: %d %s", path, p.resp.StatusCode, p.body)
		}
	}
	for _, path := range []string{"/mcp/admin/x", "/mcp//admin/x", "/mcp/./admin/x", "/mcp/tools/../admin/x", "/mcp/admin%2Fx", "/MCP/admin/x", "/mcp/ADMIN/x"} {
		if p := callAPI(t, read, path); p.resp.StatusCode != http.StatusForbidden && p.resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with a read-only token: %d %s", path, p.resp.StatusCode, p.body)
		}
	}
	// Public paths stay public.
	for _, path := range []string{"/docs/intro", "/healthz", "/DOCS/intro"} {
		if p := callAPI(t, "", path); p.resp.StatusCode != http.StatusOK {
			t.Errorf("public %s: %d", path, p.resp.StatusCode)
		}
	}
}

// TestGuardIdentityReachesUpstream proxies to a real upstream and checks
// what it received.
func TestGuardIdentityReachesUpstream(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.Write([]byte("ok"))
	}))
	defer upstream.Close()
	proxy := `reverse_proxy ` + strings.TrimPrefix(upstream.URL, "http://") + ` {
		header_up X-User {http.auth.user.id}
		header_up X-Sub {http.oauth2.sub}
		header_up X-Client {http.oauth2.client_id}
		header_up X-Scope {http.oauth2.scope}
		header_up X-Aud {http.oauth2.aud}
		header_up X-Jti {http.oauth2.jti}
		header_up X-Exp {http.oauth2.exp}
	}`
	flowSite{extra: guardExtra, upstream: proxy}.start(t)
	tok := tokensFor(t, signedIn(t), nil)["access_token"].(string)
	claims := verifyAccessToken(t, tok)

	req, _ := http.NewRequest(http.MethodGet, base+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-User", "forged-admin") // header_up overwrites it
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("proxied request: %d %s", p.resp.StatusCode, p.body)
	}
	mu.Lock()
	h := got
	mu.Unlock()
	want := map[string]string{
		"X-User": "alice", "X-Sub": "alice", "X-Client": "pub1", "X-Scope": "mcp:read", "X-Aud": base + "/mcp",
		"X-Jti": claims["jti"].(string), "X-Exp": jsonNumber(claims["exp"]), "Authorization": "",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("upstream got %s = %q, want %q", k, h.Get(k), v)
		}
	}
	if len(h.Values("X-User")) != 1 {
		t.Errorf("upstream got X-User %q", h.Values("X-User"))
	}

	// On a public path every placeholder is empty, never literal text.
	req, _ = http.NewRequest(http.MethodGet, base+"/docs/x", nil)
	req.Header.Set("X-User", "forged-admin")
	newBrowser(t).do(req)
	mu.Lock()
	h = got
	mu.Unlock()
	for k := range want {
		if v := h.Get(k); v != "" {
			t.Errorf("public path: upstream got %s = %q", k, v)
		}
	}

	// pass_token keeps the Authorization header.
	flowSite{extra: guardExtra + "\n pass_token", upstream: proxy}.start(t)
	tok = tokensFor(t, signedIn(t), nil)["access_token"].(string)
	req, _ = http.NewRequest(http.MethodGet, base+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	newBrowser(t).do(req)
	mu.Lock()
	h = got
	mu.Unlock()
	if h.Get("Authorization") != "Bearer "+tok {
		t.Fatalf("pass_token: upstream got Authorization %q", h.Get("Authorization"))
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestTwoResourcesOneIssuer: two sites with their own resource share one
// issuer and one storage file; a token for one is refused at the other.
func TestTwoResourcesOneIssuer(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "shared.db")
	block := func(resource string) string {
		return `
	oauth2_server {
		issuer http://a.localhost:9080
		resource ` + resource + `
		storage ` + store + `
		user alice ` + aliceHash + `
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
	}
	respond "upstream" 200`
	}
	start(t, globalOptions+"http://a.localhost:9080 {"+block("http://a.localhost:9080/mcp")+"\n}\nhttp://b.localhost:9080 {"+block("http://b.localhost:9080/mcp")+"\n}\n")

	b := newBrowser(t)
	b.origin = "http://a.localhost:9080"
	b.signIn("alice", alicePassword)
	p := newPKCE()
	first := b.get(authorizeQuery(p, map[string]string{"resource": "http://a.localhost:9080/mcp", "scope": ""}))
	code := codeIn(t, b.approve(first, "allow"))
	pg := b.post("/oauth/token", redeemForm(code, p))
	tok := jsonField(t, pg.body, "access_token")

	call := func(origin string) int {
		req, _ := http.NewRequest(http.MethodGet, origin+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return newBrowser(t).do(req).resp.StatusCode
	}
	if got := call("http://a.localhost:9080"); got != http.StatusOK {
		t.Fatalf("token at its own resource: %d", got)
	}
	if got := call("http://b.localhost:9080"); got != http.StatusUnauthorized {
		t.Fatalf("token for a at b: %d", got)
	}
}

// codeIn returns the code a redirect carries, whatever its issuer and state
// (codeFrom checks them).
func codeIn(t *testing.T, p page) string {
	t.Helper()
	loc := p.location()
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %d %s", p.resp.StatusCode, p.body)
	}
	return loc.Query().Get("code")
}

// TestGuardBackslashIsASeparator: a backslash is a path separator when the guard judges a path.
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

// TestGuardPreflightMcpParamHeaders: preflight allows the Mcp-Param-* headers a client asks for.
func TestGuardPreflightMcpParamHeaders(t *testing.T) {
	flowServer(t, guardExtra)
	req, _ := http.NewRequest(http.MethodOptions, base+"/mcp", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,mcp-param-city,MCP-PARAM-Units,x-evil")
	p := newBrowser(t).do(req)
	want := "Authorization, DPoP, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID, mcp-param-city, MCP-PARAM-Units"
	if p.resp.StatusCode != http.StatusNoContent || p.resp.Header.Get("Access-Control-Allow-Headers") != want {
		t.Fatalf("preflight: %d Allow-Headers %q\nwant %q", p.resp.StatusCode, p.resp.Header.Get("Access-Control-Allow-Headers"), want)
	}
	if v := p.resp.Header.Values("Vary"); !strings.Contains(strings.Join(v, ","), "Access-Control-Request-Headers") {
		t.Errorf("Vary %q", v)
	}
}

// TestGuardCORSWithCORSUpstreams: one Access-Control-Allow-Origin on proxied answers, whatever
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
		{"upstream sends *", http.Header{"Access-Control-Allow-Origin": {"*"}, "Access-Control-Expose-Headers": {"Mcp-Session-Id"}}, "*", "Mcp-Session-Id, WWW-Authenticate, DPoP-Nonce", ""},
		{"upstream sends an origin", http.Header{"Access-Control-Allow-Origin": {"https://app.example"}, "Access-Control-Allow-Credentials": {"true"}, "Vary": {"Origin"}},
			"https://app.example", "WWW-Authenticate, Mcp-Session-Id, DPoP-Nonce", "true"},
		{"upstream sends none", nil, "*", "WWW-Authenticate, Mcp-Session-Id, DPoP-Nonce", ""},
	} {
		up := newUpstream(t, tc.upstream)
		flowSite{upstream: "reverse_proxy " + up.address()}.start(t)
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
