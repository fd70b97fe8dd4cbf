package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
)

// TestConnectedAppsPage: a user sees the apps they authorized and revokes
// one; a stranger's revocation and a forged form are refused.
func TestConnectedAppsPage(t *testing.T) {
	flowServer(t, "")
	// Not signed in: the sign-in page, then back here.
	b := newBrowser(t)
	p := b.get("/oauth/account")
	if loc := p.location(); p.resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != "/oauth/login" || loc.Query().Get("return_to") != "/oauth/account" {
		t.Fatalf("anonymous: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	form := b.get(p.location().String())
	if back := b.post("/oauth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf_token": {form.field("csrf_token")}, "return_to": {form.field("return_to")}}); back.resp.Header.Get("Location") != "/oauth/account" {
		t.Fatalf("after sign-in: %d %v", back.resp.StatusCode, back.resp.Header)
	}
	tokens := tokensFor(t, b, nil)
	tokensFor(t, b, map[string]string{"client_id": "conf", "redirect_uri": "https://conf.test/cb"}, "client_id", "conf", "client_secret", confSecret, "redirect_uri", "https://conf.test/cb")

	page := b.get("/oauth/account")
	h := page.resp.Header
	if page.resp.StatusCode != 200 || h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("page: %d %v", page.resp.StatusCode, h)
	}
	for _, want := range []string{"<strong>alice</strong>", "Public One", "client.test", "mcp:read", base + "/mcp", `aria-label="Revoke Public One"`, "conf.test", ">Sign out</button>"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	grant := endpoints.GrantID("alice", "pub1", base+"/mcp")
	csrf := page.field("csrf_token")
	// The page opened again in a second tab keeps the first tab's form good.
	if second := b.get("/oauth/account"); second.field("csrf_token") != csrf {
		t.Errorf("a second tab changed the form's token")
	}

	// A forged form and another user's grant are refused.
	if p := b.post("/oauth/account", url.Values{"csrf_token": {"forged"}, "grant": {grant}, "action": {"revoke"}}); p.resp.StatusCode != http.StatusBadRequest {
		t.Errorf("forged CSRF: %d", p.resp.StatusCode)
	}
	if p := b.post("/oauth/account", url.Values{"csrf_token": {csrf}, "grant": {endpoints.GrantID("bob", "pub1", base+"/mcp")}, "action": {"revoke"}}); p.resp.StatusCode != http.StatusBadRequest {
		t.Errorf("another user's grant: %d", p.resp.StatusCode)
	}
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != 200 {
		t.Fatalf("refused forms revoked something: %d", p.resp.StatusCode)
	}

	done := b.post("/oauth/account", url.Values{"csrf_token": {csrf}, "grant": {grant}, "action": {"revoke"}})
	if done.resp.StatusCode != http.StatusSeeOther || done.resp.Header.Get("Location") != "/oauth/account?revoked=1" {
		t.Fatalf("revoke: %d %v %s", done.resp.StatusCode, done.resp.Header, done.body)
	}
	after := b.get(done.resp.Header.Get("Location"))
	if !strings.Contains(after.body, "The app was revoked") || strings.Contains(after.body, "Public One") || !strings.Contains(after.body, "conf.test") {
		t.Fatalf("after revoking: %s", after.body)
	}
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked app's access token: %d", p.resp.StatusCode)
	}
	if resp, _ := tokenRequest(t, refreshForm(tokens["refresh_token"].(string))); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the revoked app's refresh token: %d", resp.StatusCode)
	}
	if p := b.get(authorizeQuery(newPKCE(), nil)); p.field("request_id") == "" {
		t.Errorf("the revoked app's consent is still remembered: %d", p.resp.StatusCode)
	}
}
