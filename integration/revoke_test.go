package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
)

const (
	svcSecret = "svc-secret-0123456789abcdef"
	rsSecret  = "rs-secret-0123456789abcdef"
)

// serviceClients are confidential clients for client credentials and
// introspection.
const serviceClients = `
		client svc {
			secret ` + svcSecret + `
			grant_types client_credentials
			scopes mcp:read
		}
		client rs {
			secret ` + rsSecret + `
			grant_types client_credentials
			introspect
		}`

func revoke(t *testing.T, form url.Values, header ...string) page {
	t.Helper()
	return newBrowser(t).post("/oauth/revoke", form, header...)
}

func TestRevocation(t *testing.T) {
	flowServer(t, serviceClients)
	b := signedIn(t)
	ok := func(name string, p page) {
		t.Helper()
		if p.resp.StatusCode != http.StatusOK || p.body != "" || p.resp.Header.Get("Cache-Control") != "no-store" || p.resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d %v %q", name, p.resp.StatusCode, p.resp.Header, p.body)
		}
	}

	// A refresh token revokes its family, whatever the hint says.
	tok := tokensFor(t, b, nil)
	ok("refresh token", revoke(t, url.Values{"token": {tok["refresh_token"].(string)}, "token_type_hint": {"access_token"}, "client_id": {"pub1"}}))
	resp, body := tokenRequest(t, refreshForm(tok["refresh_token"].(string)))
	wantError(t, "refresh after revocation", resp, body, 400, "invalid_grant")
	if p := callAPI(t, tok["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("access token of a revoked family: %d", p.resp.StatusCode)
	}

	// An access token is denied at once; its family lives on.
	tok = tokensFor(t, b, nil)
	at := tok["access_token"].(string)
	if p := callAPI(t, at, "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("before revocation: %d", p.resp.StatusCode) // also puts it in the verified-token cache
	}
	ok("access token", revoke(t, url.Values{"token": {at}, "client_id": {"pub1"}}))
	if p := callAPI(t, at, "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a revoked access token still passes the guard: %d", p.resp.StatusCode)
	}
	resp, body = tokenRequest(t, refreshForm(tok["refresh_token"].(string)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoking an access token killed the family: %d %v", resp.StatusCode, body)
	}

	// Another client's token: 200, and nothing happens.
	tok = tokensFor(t, b, nil)
	ok("another client's refresh token", revoke(t, url.Values{"token": {tok["refresh_token"].(string)}, "client_id": {"pub2"}}))
	ok("another client's access token", revoke(t, url.Values{"token": {tok["access_token"].(string)}, "client_id": {"pub2"}}))
	if p := callAPI(t, tok["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("another client revoked the access token: %d", p.resp.StatusCode)
	}
	if resp, _ := tokenRequest(t, refreshForm(tok["refresh_token"].(string))); resp.StatusCode != http.StatusOK {
		t.Fatal("another client revoked the refresh token")
	}

	// Unknown and malformed tokens: 200.
	ok("unknown", revoke(t, url.Values{"token": {"no-such-token"}, "client_id": {"pub1"}}))
	ok("malformed JWT", revoke(t, url.Values{"token": {"eyJhbGciOiJub25lIn0.e30."}, "client_id": {"pub1"}}))

	// Client authentication as at the token endpoint.
	if p := revoke(t, url.Values{"token": {"x"}, "client_id": {"svc"}}); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("confidential client without its secret: %d", p.resp.StatusCode)
	}
	if p := revoke(t, url.Values{"token": {"x"}}, "Authorization", basicAuth("svc", "wrong")); p.resp.StatusCode != http.StatusUnauthorized || p.resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong secret: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	if p := revoke(t, url.Values{"client_id": {"pub1"}}); p.resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no token: %d", p.resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodOptions, base+"/oauth/revoke", nil)
	req.Header.Set("Access-Control-Request-Method", "POST")
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusNoContent || p.resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}

func TestClientCredentials(t *testing.T) {
	flowServer(t, serviceClients)
	form := url.Values{"grant_type": {"client_credentials"}}
	resp, body := tokenRequest(t, form, "Authorization", basicAuth("svc", svcSecret))
	if resp.StatusCode != http.StatusOK || body["refresh_token"] != nil || body["scope"] != "mcp:read" {
		t.Fatalf("client credentials: %d %v", resp.StatusCode, body)
	}
	c := verifyAccessToken(t, body["access_token"].(string))
	if c["sub"] != "svc" || c["client_id"] != "svc" || c["aud"] != base+"/mcp" || c["auth_time"] != nil || c["sid"] != nil {
		t.Fatalf("claims %v", c)
	}
	resp, body = tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "resource": {base + "/api"}, "scope": {"mcp:read"}}, "Authorization", basicAuth("svc", svcSecret))
	if resp.StatusCode != http.StatusOK || verifyAccessToken(t, body["access_token"].(string))["aud"] != base+"/api" {
		t.Fatalf("client credentials for /api: %d %v", resp.StatusCode, body)
	}
	resp, body = tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"mcp:write"}}, "Authorization", basicAuth("svc", svcSecret))
	wantError(t, "scope beyond the client's", resp, body, 400, "invalid_scope")
	resp, body = tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://evil.test"}}, "Authorization", basicAuth("svc", svcSecret))
	wantError(t, "foreign resource", resp, body, 400, "invalid_target")
	resp, body = tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"pub1"}})
	wantError(t, "public client", resp, body, 400, "unauthorized_client")
	resp, body = tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth("conf", confSecret))
	wantError(t, "client not allowed the grant", resp, body, 400, "unauthorized_client")
}

func TestIntrospection(t *testing.T) {
	storagePath, _ := flowServer(t, serviceClients)
	b := signedIn(t)
	tok := tokensFor(t, b, nil)
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	post := func(token, id, secret string) map[string]any {
		t.Helper()
		p := newBrowser(t).post("/oauth/introspect", url.Values{"token": {token}}, "Authorization", basicAuth(id, secret))
		if p.resp.StatusCode != http.StatusOK || p.resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("introspect: %d %v %s", p.resp.StatusCode, p.resp.Header, p.body)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(p.body), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	inactive := func(name string, got map[string]any) {
		t.Helper()
		if len(got) != 1 || got["active"] != false {
			t.Errorf("%s: %v, want exactly {\"active\":false}", name, got)
		}
	}

	got := post(at, "rs", rsSecret)
	claims := verifyAccessToken(t, at)
	if got["active"] != true || got["scope"] != "mcp:read" || got["client_id"] != "pub1" || got["sub"] != "alice" ||
		got["aud"] != base+"/mcp" || got["iss"] != base || got["exp"] != claims["exp"] || got["iat"] != claims["iat"] || got["token_type"] != "Bearer" {
		t.Fatalf("active access token: %v", got)
	}
	got = post(rt, "rs", rsSecret)
	if got["active"] != true || got["token_type"] != "refresh_token" || got["client_id"] != "pub1" || got["sub"] != "alice" {
		t.Fatalf("active refresh token: %v", got)
	}

	// A confidential client sees its own tokens only.
	inactive("another client's token", post(at, "svc", svcSecret))
	_, cc := tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth("svc", svcSecret))
	if got := post(cc["access_token"].(string), "svc", svcSecret); got["active"] != true || got["sub"] != "svc" {
		t.Fatalf("own client-credentials token: %v", got)
	}

	// Unknown, malformed, forged, expired, rotated, revoked.
	inactive("unknown", post("no-such-token", "rs", rsSecret))
	inactive("malformed", post("a.b.c", "rs", rsSecret))
	keys := serverKeys(t, storagePath)
	now := time.Now()
	expired, _ := keys.Sign("at+jwt", map[string]any{"iss": base, "sub": "alice", "aud": base + "/mcp", "jti": "expired-1", "client_id": "pub1",
		"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()})
	inactive("expired", post(expired, "rs", rsSecret))
	_, refreshed := tokenRequest(t, refreshForm(rt))
	inactive("rotated refresh token", post(rt, "rs", rsSecret))
	revoke(t, url.Values{"token": {refreshed["refresh_token"].(string)}, "client_id": {"pub1"}})
	inactive("revoked family's refresh token", post(refreshed["refresh_token"].(string), "rs", rsSecret))
	inactive("revoked family's access token", post(refreshed["access_token"].(string), "rs", rsSecret))

	// Public clients may not introspect.
	p := newBrowser(t).post("/oauth/introspect", url.Values{"token": {at}, "client_id": {"pub1"}})
	if p.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(p.body, `"invalid_client"`) {
		t.Fatalf("public client introspecting: %d %s", p.resp.StatusCode, p.body)
	}
}

// serverKeys rebuilds the running server's key set from its storage, so a
// test can forge tokens with a valid signature.
func serverKeys(t *testing.T, storagePath string) *endpoints.KeySet {
	t.Helper()
	keys, err := sharedStore(t, storagePath).SigningKeys(context.Background())
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing keys: %v", err)
	}
	ks, err := endpoints.NewKeySet(keys, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}
