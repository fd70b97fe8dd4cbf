package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSecretMethodsAreInterchangeable: a client with a secret may send it
// by either secret method at the token, revocation and introspection
// endpoints: openid-client registers client_secret_basic and redeems with
// client_secret_post; Authlib registers client_secret_post and revokes
// and introspects with client_secret_basic.
func TestSecretMethodsAreInterchangeable(t *testing.T) {
	flowServer(t, dcr)
	register := func(method string) (string, string) {
		_, out := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"`+method+`"}`)
		return out["client_id"].(string), out["client_secret"].(string)
	}
	b := signedIn(t)

	// openid-client: registered for Basic, redeems in the body.
	id, secret := register("client_secret_basic")
	p := newPKCE()
	code := codeFor(t, b, p, map[string]string{"client_id": id})
	form := redeemForm(code, p)
	form.Set("client_id", id)
	form.Set("client_secret", secret)
	resp, tokens := tokenRequest(t, form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("openid-client's redemption: %d %v", resp.StatusCode, tokens)
	}

	// Authlib: registered for the body, revokes and introspects with Basic.
	id, secret = register("client_secret_post")
	p = newPKCE()
	code = codeFor(t, b, p, map[string]string{"client_id": id})
	form = redeemForm(code, p)
	form.Set("client_id", id)
	form.Set("client_secret", secret)
	if resp, tokens = tokenRequest(t, form); resp.StatusCode != http.StatusOK {
		t.Fatalf("Authlib's redemption: %d %v", resp.StatusCode, tokens)
	}
	basic := basicAuth(id, secret)
	introspect := newBrowser(t).post("/oauth/introspect", url.Values{"token": {tokens["access_token"].(string)}}, "Authorization", basic)
	if introspect.resp.StatusCode != http.StatusOK || !strings.Contains(introspect.body, `"active":true`) {
		t.Fatalf("Authlib's introspection: %d %s", introspect.resp.StatusCode, introspect.body)
	}
	revoke := newBrowser(t).post("/oauth/revoke", url.Values{"token": {tokens["refresh_token"].(string)}, "token_type_hint": {"refresh_token"}}, "Authorization", basic)
	if revoke.resp.StatusCode != http.StatusOK {
		t.Fatalf("Authlib's revocation: %d %s", revoke.resp.StatusCode, revoke.body)
	}
}

// TestBrowserSDKRefresh: the MCP SDK running in a browser (the MCP
// Inspector's direct mode) refreshes with its transport's headers merged
// in: a Content-Type list, an Accept list and its expired access token as
// a Bearer Authorization header.
func TestBrowserSDKRefresh(t *testing.T) {
	flowServer(t, "")
	tokens := tokensFor(t, signedIn(t), nil)
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(refreshForm(tokens["refresh_token"].(string)).Encode()))
	req.Header.Set("Content-Type", "application/json, application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/event-stream, application/json, application/json")
	req.Header.Set("Authorization", "Bearer "+tokens["access_token"].(string))
	p := newBrowser(t).do(req)
	if p.resp.StatusCode != http.StatusOK || jsonField(t, p.body, "access_token") == "" {
		t.Fatalf("the browser SDK's refresh: %d %s", p.resp.StatusCode, p.body)
	}
}

// TestPublicClientPresentingCredentials: a public client that presents a
// secret or an assertion it is not registered for is refused.
func TestPublicClientPresentingCredentials(t *testing.T) {
	flowServer(t, "")
	for name, tc := range map[string]struct {
		form   url.Values
		header []string
	}{
		"client_secret":              {url.Values{"client_id": {"pub1"}, "client_secret": {"guess"}}, nil},
		"client_assertion not.a.jwt": {url.Values{"client_id": {"pub1"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {"not.a.jwt"}}, nil},
		"Basic with a secret":        {url.Values{}, []string{"Authorization", basicAuth("pub1", "guess")}},
	} {
		tc.form.Set("grant_type", "refresh_token")
		tc.form.Set("refresh_token", "whatever")
		resp, body := tokenRequest(t, tc.form, tc.header...)
		wantError(t, name, resp, body, http.StatusUnauthorized, "invalid_client")
	}
}

// TestScopesClientsAskFor: OpenID Connect scopes that OIDC-minded clients
// ask for by default (openid, email, profile, offline_access) are accepted
// and not granted; a request that asks for nothing else, or sends an empty
// scope, gets the default scope; a refresh may repeat offline_access; and
// the token response always says what was granted.
func TestScopesClientsAskFor(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	redeem := func(query string, p pkce) map[string]any {
		t.Helper()
		first := b.get(query)
		if first.resp.StatusCode == http.StatusOK {
			first = b.approve(first, "allow")
		}
		resp, body := tokenRequest(t, redeemForm(codeFrom(t, first, "https://client.test/cb", "xyz"), p))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", query, resp.StatusCode, body)
		}
		return body
	}
	for _, tc := range []struct{ name, scope, want string }{
		{"openid email profile with a resource scope", "openid email profile mcp:read", "mcp:read"},
		{"offline_access alone", "offline_access", "mcp:read mcp:write"},
		{"openid alone", "openid", "mcp:read mcp:write"},
		{"empty", "", "mcp:read mcp:write"},
	} {
		p := newPKCE()
		query := authorizeQuery(p, map[string]string{"scope": ""}) + "&scope=" + url.QueryEscape(tc.scope)
		tokens := redeem(query, p)
		if tokens["scope"] != tc.want {
			t.Errorf("%s: scope %v, want %q", tc.name, tokens["scope"], tc.want)
		}
		if tc.name != "openid email profile with a resource scope" {
			continue
		}
		for _, refresh := range []string{"mcp:read offline_access", "openid", ""} {
			resp, body := tokenRequest(t, refreshForm(tokens["refresh_token"].(string), "scope", refresh))
			if resp.StatusCode != http.StatusOK || body["scope"] != "mcp:read" {
				t.Fatalf("refresh with scope %q: %d %v", refresh, resp.StatusCode, body)
			}
			tokens["refresh_token"] = body["refresh_token"]
		}
	}
	// Neither challenges nor the protected-resource document name them.
	p := callAPI(t, "", "/mcp")
	doc := newBrowser(t).get("/.well-known/oauth-protected-resource/mcp")
	for _, s := range []string{"openid", "profile", "offline_access"} {
		if strings.Contains(p.resp.Header.Get("WWW-Authenticate"), s) || strings.Contains(doc.body, s) {
			t.Errorf("%s advertised: %s / %s", s, p.resp.Header.Get("WWW-Authenticate"), doc.body)
		}
	}
}
