package integration

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStorageKey is a storage_key for tests (32 bytes, base64).
const testStorageKey = "dGVzdC1vbmx5LXN0b3JhZ2Uta2V5LTAxMjM0NTY3ODk="

// TestUpstreamTokenForTheMCPServer: with pass_upstream_token the MCP
// server receives the user's access token at the identity provider; the
// guard refreshes it shortly before it expires (a quarter of its lifetime
// before, for tokens as short-lived as these; once for a burst), ends
// the grant's upstream tokens when the provider refuses the refresh (401,
// the client authorizes again and the user signs in at the provider
// again), and revoking the grant deletes them. No token reaches the log.
func TestUpstreamTokenForTheMCPServer(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	corp.expiresIn = 4 // short-lived: refreshed a second before expiry, not a minute
	up := newUpstream(t, nil)
	logPath := upstreamSite(t, corpLogin(corp, "corp", "allow_domains example.com\n pass_upstream_token")+"\n storage_key "+testStorageKey,
		`reverse_proxy `+up.address()+` {
		header_up Authorization "Bearer {http.oauth2.upstream_access_token}"
	}`)
	upstreamToken := func() string { return strings.TrimPrefix(up.header().Get("Authorization"), "Bearer ") }
	b := newBrowser(t)
	authorize := func() map[string]any {
		t.Helper()
		p := newPKCE()
		callback := b.toCallback(authorizeQuery(p, nil))
		next := b.get(b.get(callback).location().String())
		if next.resp.StatusCode == http.StatusOK { // the consent page, the first time
			next = b.approve(next, "allow")
		}
		code := codeFrom(t, next, "https://client.test/cb", "xyz")
		resp, tokens := tokenRequest(t, redeemForm(code, p))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("redeem: %d %v", resp.StatusCode, tokens)
		}
		return tokens
	}
	tokens := authorize()
	first, _, q := corp.state()
	if q.Get("access_type") != "offline" {
		t.Errorf("the provider was not asked for a refresh token: %v", q)
	}
	access := tokens["access_token"].(string)
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusOK || upstreamToken() != first {
		t.Fatalf("first call: %d, upstream got %q, want %q", p.resp.StatusCode, upstreamToken(), first)
	}

	// Fresh for three seconds: no refresh.
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusOK || upstreamToken() != first {
		t.Fatalf("a second call: %d", p.resp.StatusCode)
	}
	if _, refreshes, _ := corp.state(); refreshes != 0 {
		t.Fatalf("%d refreshes of a fresh token", refreshes)
	}
	// Within a second of its expiry: a burst of ten calls, one refresh.
	time.Sleep(3300 * time.Millisecond)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusOK {
				t.Errorf("call in the burst: %d %s", p.resp.StatusCode, p.body)
			}
		})
	}
	wg.Wait()
	second, refreshes, _ := corp.state()
	if refreshes != 1 || second == first || upstreamToken() != second {
		t.Fatalf("after the burst: %d refreshes, upstream got %q (first %q, refreshed %q)", refreshes, upstreamToken(), first, second)
	}

	// The user revokes us at the provider: the refresh is refused, the
	// MCP client gets 401 invalid_token and authorizes again.
	corp.mu.Lock()
	corp.refuseRefresh = true
	corp.mu.Unlock()
	time.Sleep(3300 * time.Millisecond)
	p := callAPI(t, access, "/mcp")
	const challenge = `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="the identity provider's token for this grant is gone (refused or revoked there); authorize again"`
	if p.resp.StatusCode != http.StatusUnauthorized || p.resp.Header.Get("WWW-Authenticate") != challenge {
		t.Fatalf("after the provider refused: %d %q", p.resp.StatusCode, p.resp.Header.Get("WWW-Authenticate"))
	}
	_, before, _ := corp.state()
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the next call: %d", p.resp.StatusCode)
	}
	if _, after, _ := corp.state(); after != before {
		t.Errorf("the refused tokens were tried again (%d refresh requests, then %d)", before, after)
	}
	corp.mu.Lock()
	corp.refuseRefresh = false
	corp.mu.Unlock()

	// Authorizing again goes through the provider again (the session's
	// tokens went to the first grant), and brings new tokens.
	start := b.get(authorizeQuery(newPKCE(), nil))
	if loc := start.location(); loc == nil || loc.Path != "/oauth/login/corp" {
		t.Fatalf("authorizing again: %d %v, want a new sign-in at the provider", start.resp.StatusCode, start.resp.Header)
	}
	tokens = authorize()
	third, _, _ := corp.state()
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK || upstreamToken() != third {
		t.Fatalf("after authorizing again: %d, upstream got %q, want %q", p.resp.StatusCode, upstreamToken(), third)
	}

	// Revoking the grant (RFC 7009, the refresh token) deletes its
	// upstream tokens: authorizing the same grant needs the provider again.
	if p := revoke(t, url.Values{"token": {tokens["refresh_token"].(string)}, "client_id": {"pub1"}}); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", p.resp.StatusCode)
	}
	start = b.get(authorizeQuery(newPKCE(), nil))
	if loc := start.location(); loc == nil || loc.Path != "/oauth/login/corp" {
		t.Fatalf("after revoking the grant: %d %v, want a new sign-in at the provider", start.resp.StatusCode, start.resp.Header)
	}

	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{first, second, third, "upstream-refresh-"} {
		if strings.Contains(string(logged), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// TestUpstreamTokenWithoutPass: a login without pass_upstream_token gives
// the MCP server no upstream token, and asks the provider for none.
func TestUpstreamTokenWithoutPass(t *testing.T) {
	corp := newOIDCStub(t, corpClientID, corpSecret)
	up := newUpstream(t, nil)
	upstreamSite(t, corpLogin(corp, "corp", ""), `reverse_proxy `+up.address()+` {
		header_up X-Upstream-Token {http.oauth2.upstream_access_token}
	}`)
	b := newBrowser(t)
	p := newPKCE()
	consent := b.get(b.get(b.toCallback(authorizeQuery(p, nil))).location().String())
	code := codeFrom(t, b.approve(consent, "allow"), "https://client.test/cb", "xyz")
	_, tokens := tokenRequest(t, redeemForm(code, p))
	if a := callAPI(t, tokens["access_token"].(string), "/mcp"); a.resp.StatusCode != http.StatusOK || up.header().Get("X-Upstream-Token") != "" {
		t.Fatalf("%d, upstream got %q", a.resp.StatusCode, up.header().Get("X-Upstream-Token"))
	}
	if _, _, q := corp.state(); q.Has("access_type") || q.Has("prompt") {
		t.Errorf("asked for offline access: %v", q)
	}
}
