package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func TestTokenResponseHeadersAndCORS(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	p := newPKCE()
	resp, body := tokenRequest(t, redeemForm(codeFor(t, b, p, nil), p))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %v", resp.StatusCode, body)
	}
	for k, v := range map[string]string{
		"Content-Type":                  "application/json",
		"Cache-Control":                 "no-store",
		"Pragma":                        "no-cache",
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Expose-Headers": "WWW-Authenticate, Mcp-Session-Id, DPoP-Nonce",
	} {
		if resp.Header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), v)
		}
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["scope"] != "mcp:read" || body["access_token"] == "" {
		t.Errorf("body %v", body)
	}
	for k, v := range body {
		if v == nil || v == "" {
			t.Errorf("field %s is %v", k, v)
		}
	}

	req, _ := http.NewRequest(http.MethodOptions, base+"/oauth/token", nil)
	req.Header.Set("Origin", "http://localhost:6274")
	req.Header.Set("Access-Control-Request-Method", "POST")
	pre := newBrowser(t).do(req)
	if pre.resp.StatusCode != http.StatusNoContent || pre.resp.Header.Get("Access-Control-Allow-Methods") != "POST, OPTIONS" ||
		pre.resp.Header.Get("Access-Control-Allow-Origin") != "*" || pre.resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight: %d %v", pre.resp.StatusCode, pre.resp.Header)
	}
}

func TestTokenCodeChecks(t *testing.T) {
	storagePath, _ := flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	p := newPKCE()
	other := newPKCE()

	// Each refusal happens before the code is consumed, so one code serves
	// every case, and is finally redeemed.
	code := codeFor(t, b, p, nil)
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		err    string
	}{
		{"wrong client", redeemForm(code, p, "client_id", "pub2"), 400, "invalid_grant"},
		{"wrong redirect_uri", redeemForm(code, p, "redirect_uri", "https://client.test/other"), 400, "invalid_grant"},
		{"missing redirect_uri", redeemForm(code, p, "redirect_uri", ""), 400, "invalid_grant"},
		{"missing verifier", redeemForm(code, p, "code_verifier", ""), 400, "invalid_grant"},
		{"wrong verifier", redeemForm(code, other, "code_verifier", other.verifier), 400, "invalid_grant"},
		{"other resource", redeemForm(code, p, "resource", base+"/api"), 400, "invalid_target"},
		{"foreign resource", redeemForm(code, p, "resource", "https://evil.test/"), 400, "invalid_target"},
		{"unknown code", redeemForm("made-up", p), 400, "invalid_grant"},
		{"missing code", redeemForm(code, p, "code", ""), 400, "invalid_request"},
		{"unknown client", redeemForm(code, p, "client_id", "nobody"), 401, "invalid_client"},
		{"no client", redeemForm(code, p, "client_id", ""), 401, "invalid_client"},
		{"password grant", url.Values{"grant_type": {"password"}, "client_id": {"pub1"}, "username": {"alice"}, "password": {alicePassword}}, 400, "unsupported_grant_type"},
		{"no grant_type", redeemForm(code, p, "grant_type", ""), 400, "invalid_request"},
	} {
		resp, body := tokenRequest(t, tc.form)
		wantError(t, tc.name, resp, body, tc.status, tc.err)
	}
	resp, body := tokenRequest(t, redeemForm(code, p, "resource", "HTTP://localhost:9080/mcp"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the code no longer works after the refused attempts: %d %v", resp.StatusCode, body)
	}
	firstToken := body["access_token"].(string)

	// Replay: refused, and the token issued from the code is revoked.
	resp, body = tokenRequest(t, redeemForm(code, p))
	wantError(t, "replay", resp, body, 400, "invalid_grant")
	jti := verifyAccessToken(t, firstToken)["jti"].(string)
	if revoked, err := sharedStore(t, storagePath).AccessTokenRevoked(context.Background(), storage.AccessTokenRef{ID: jti}); err != nil || !revoked {
		t.Fatalf("the access token of a replayed code is not revoked: %v %v", revoked, err)
	}
}

func TestTokenConfidentialClient(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	p := newPKCE()
	conf := map[string]string{"client_id": "conf", "redirect_uri": "https://conf.test/cb"}
	form := func(code string) url.Values {
		return redeemForm(code, p, "client_id", "", "redirect_uri", "https://conf.test/cb")
	}
	code := codeFor(t, b, p, conf)

	// Skipped or failed authentication: 401 invalid_client.
	resp, body := tokenRequest(t, redeemForm(code, p, "client_id", "conf", "redirect_uri", "https://conf.test/cb"))
	wantError(t, "no secret", resp, body, 401, "invalid_client")
	if resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("no Basic attempted, yet WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
	}
	resp, body = tokenRequest(t, form(code), "Authorization", basicAuth("conf", "wrong"))
	wantError(t, "wrong secret", resp, body, 401, "invalid_client")
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="`+base+`", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	resp, body = tokenRequest(t, redeemForm(code, p, "client_id", "conf", "client_secret", "wrong", "redirect_uri", "https://conf.test/cb"))
	wantError(t, "wrong client_secret_post", resp, body, 401, "invalid_client")
	resp, body = tokenRequest(t, redeemForm(code, p, "client_secret", confSecret, "redirect_uri", "https://conf.test/cb"), "Authorization", basicAuth("conf", confSecret))
	wantError(t, "two methods", resp, body, 400, "invalid_request")

	// client_secret_basic.
	resp, body = tokenRequest(t, form(code), "Authorization", basicAuth("conf", confSecret))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client_secret_basic: %d %v", resp.StatusCode, body)
	}
	// client_secret_post.
	code = codeFor(t, b, p, conf)
	resp, body = tokenRequest(t, redeemForm(code, p, "client_id", "conf", "client_secret", confSecret, "redirect_uri", "https://conf.test/cb"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client_secret_post: %d %v", resp.StatusCode, body)
	}
}

func TestTokenConcurrentRedemption(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	p := newPKCE()
	code := codeFor(t, b, p, nil)
	var ok, grantErrors atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			pg := newBrowser(t).post("/oauth/token", redeemForm(code, p))
			switch {
			case pg.resp.StatusCode == http.StatusOK:
				ok.Add(1)
			case pg.resp.StatusCode == http.StatusBadRequest && strings.Contains(pg.body, `"invalid_grant"`):
				grantErrors.Add(1)
			default:
				t.Errorf("unexpected answer %d %s", pg.resp.StatusCode, pg.body)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || grantErrors.Load() != 19 {
		t.Fatalf("%d successes and %d invalid_grant, want 1 and 19", ok.Load(), grantErrors.Load())
	}
}

func TestTokenBadBodies(t *testing.T) {
	flowServer(t, "")
	post := func(contentType, body string) page {
		req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		return newBrowser(t).do(req)
	}
	for name, p := range map[string]page{
		"json":           post("application/json", `{"grant_type":"authorization_code"}`),
		"no type":        post("", "grant_type=authorization_code"),
		"bad encoding":   post("application/x-www-form-urlencoded", "grant_type=%zz&client_id=pub1"),
		"huge":           post("application/x-www-form-urlencoded", "client_id=pub1&x="+strings.Repeat("a", 200<<10)),
		"repeated param": post("application/x-www-form-urlencoded", "grant_type=authorization_code&client_id=pub1&code=a&code=b"),
	} {
		var body map[string]any
		if p.resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(p.body), &body) != nil || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %s", name, p.resp.StatusCode, p.body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/oauth/token", nil)
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /oauth/token: %d", p.resp.StatusCode)
	}
}

// TestRootAliases: /authorize and /token answer like the /oauth/ routes,
// unless switched off.
func TestRootAliases(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	b.signIn("alice", alicePassword)
	p := newPKCE()
	first := b.get(strings.Replace(authorizeQuery(p, nil), "/oauth/authorize", "/authorize", 1))
	code := codeFrom(t, b.approve(first, "allow"), "https://client.test/cb", "xyz")
	pg := newBrowser(t).post("/token", redeemForm(code, p))
	if pg.resp.StatusCode != http.StatusOK || !strings.Contains(pg.body, `"access_token"`) {
		t.Fatalf("/token: %d %s", pg.resp.StatusCode, pg.body)
	}

	flowServer(t, "root_aliases off")
	if pg := newBrowser(t).post("/token", redeemForm(code, p)); pg.resp.StatusCode != http.StatusUnauthorized || strings.Contains(pg.body, "invalid_grant") {
		t.Fatalf("/token with root_aliases off reached the token endpoint: %d %s", pg.resp.StatusCode, pg.body)
	}
}

// TestClientCredentialsTokenIsNoUser: a client-credentials token is a client's, not a user's.
func TestClientCredentialsTokenIsNoUser(t *testing.T) {
	up := newUpstream(t, nil)
	flowSite{extra: `
		client machine {
			secret machine-secret-0123456789
			grant_types client_credentials
		}`, upstream: `reverse_proxy ` + up.address() + ` {
		header_up X-User {http.auth.user.id}
		header_up X-Sub {http.oauth2.sub}
		header_up X-Subject-Type {http.oauth2.subject_type}
	}`}.start(t)
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

// TestFailedReplayRevokesNothing: a replay that would fail anyway (wrong verifier, client or
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

// TestRegisteredAuthMethodIsEnforced: a client authenticates with the kind of credential it
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
