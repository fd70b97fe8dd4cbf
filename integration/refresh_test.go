package integration

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"testing"
)

// callAPI calls a protected path of the site with a bearer token.
func callAPI(t *testing.T, token, path string) page {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return newBrowser(t).do(req)
}

func TestRefreshRotation(t *testing.T) {
	flowServer(t, "")
	first := tokensFor(t, signedIn(t), nil)
	rt0 := first["refresh_token"].(string)
	if rt0 == "" || len(rt0) < 43 {
		t.Fatalf("no refresh token with the code exchange: %v", first)
	}
	resp, body := tokenRequest(t, refreshForm(rt0))
	if resp.StatusCode != http.StatusOK || body["refresh_token"] == rt0 || body["refresh_token"] == "" || body["access_token"] == first["access_token"] {
		t.Fatalf("refresh: %d %v", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || body["scope"] != "mcp:read" || body["token_type"] != "Bearer" {
		t.Fatalf("refresh response %v %v", resp.Header, body)
	}
	claims := verifyAccessToken(t, body["access_token"].(string))
	if claims["sub"] != "alice" || claims["aud"] != base+"/mcp" || claims["client_id"] != "pub1" || claims["sid"] == "" {
		t.Fatalf("refreshed token claims %v", claims)
	}
	if p := callAPI(t, body["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("refreshed token at the guard: %d %s", p.resp.StatusCode, p.body)
	}
}

// TestInterleavedBurstOfRefreshes is what an MCP host does when all its
// parallel calls meet an expired token: one request rotates rt0, another
// already refreshes the result, and a third, slower one still presents
// rt0. Within the 2s burst window that is not theft.
func TestInterleavedBurstOfRefreshes(t *testing.T) {
	flowServer(t, "")
	rt0 := tokensFor(t, signedIn(t), nil)["refresh_token"].(string)
	_, a := tokenRequest(t, refreshForm(rt0))
	if resp, body := tokenRequest(t, refreshForm(a["refresh_token"].(string))); resp.StatusCode != http.StatusOK {
		t.Fatalf("refreshing the successor: %d %v", resp.StatusCode, body)
	}
	resp, body := tokenRequest(t, refreshForm(rt0))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the slow sibling was refused: %d %v", resp.StatusCode, body)
	}
	if p := callAPI(t, body["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("the family was revoked: %d", p.resp.StatusCode)
	}
}

func TestRefreshStrictWithoutGrace(t *testing.T) {
	flowServer(t, "refresh_reuse_grace 0")
	rt0 := tokensFor(t, signedIn(t), nil)["refresh_token"].(string)
	if resp, _ := tokenRequest(t, refreshForm(rt0)); resp.StatusCode != http.StatusOK {
		t.Fatal("first refresh failed")
	}
	resp, body := tokenRequest(t, refreshForm(rt0))
	wantError(t, "second use with grace 0", resp, body, 400, "invalid_grant")
}

// TestParallelRefreshes: an MCP host firing 10 refreshes at once with one
// token must not be logged out.
func TestParallelRefreshes(t *testing.T) {
	flowServer(t, "")
	rt0 := tokensFor(t, signedIn(t), nil)["refresh_token"].(string)
	var wg sync.WaitGroup
	results := make([]map[string]any, 10)
	for i := range results {
		wg.Go(func() {
			pg := newBrowser(t).post("/oauth/token", refreshForm(rt0))
			if pg.resp.StatusCode != http.StatusOK {
				t.Errorf("parallel refresh %d: %d %s", i, pg.resp.StatusCode, pg.body)
				return
			}
			if err := json.Unmarshal([]byte(pg.body), &results[i]); err != nil {
				t.Errorf("parallel refresh %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The family is alive: each returned pair works.
	for i, r := range results {
		if p := callAPI(t, r["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
			t.Fatalf("access token %d after parallel refreshes: %d", i, p.resp.StatusCode)
		}
	}
	if resp, body := tokenRequest(t, refreshForm(results[3]["refresh_token"].(string))); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh token after parallel refreshes: %d %v", resp.StatusCode, body)
	}
}

func TestRefreshScopeResourceAndClient(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	tok := tokensFor(t, b, map[string]string{"scope": "mcp:read mcp:write"})
	rt := tok["refresh_token"].(string)

	// Narrowing works, widening does not, and a refused request does not
	// use the token up.
	resp, body := tokenRequest(t, refreshForm(rt, "scope", "mcp:read mcp:admin"))
	wantError(t, "widening", resp, body, 400, "invalid_scope")
	resp, body = tokenRequest(t, refreshForm(rt, "resource", base+"/api"))
	wantError(t, "other resource", resp, body, 400, "invalid_target")
	resp, body = tokenRequest(t, refreshForm(rt, "client_id", "pub2"))
	wantError(t, "another client", resp, body, 400, "invalid_grant")
	resp, body = tokenRequest(t, refreshForm(rt, "scope", "mcp:read", "resource", base+"/mcp"))
	if resp.StatusCode != http.StatusOK || body["scope"] != "mcp:read" || verifyAccessToken(t, body["access_token"].(string))["scope"] != "mcp:read" {
		t.Fatalf("narrowing: %d %v", resp.StatusCode, body)
	}
	// The original grant bounds later refreshes, not the narrowed one.
	resp, body = tokenRequest(t, refreshForm(body["refresh_token"].(string), "scope", "mcp:write"))
	if resp.StatusCode != http.StatusOK || body["scope"] != "mcp:write" {
		t.Fatalf("back within the original grant: %d %v", resp.StatusCode, body)
	}
	resp, body = tokenRequest(t, refreshForm("nonsense"))
	wantError(t, "unknown token", resp, body, 400, "invalid_grant")
	resp, body = tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "client_id": {"pub1"}})
	wantError(t, "missing token", resp, body, 400, "invalid_request")
}

// TestCodeReplayRevokesFamily: replaying a code kills the refresh family
// issued from it, and its access tokens.
func TestCodeReplayRevokesFamily(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	p := newPKCE()
	code := codeFor(t, b, p, nil)
	_, tok := tokenRequest(t, redeemForm(code, p))
	_, refreshed := tokenRequest(t, refreshForm(tok["refresh_token"].(string)))
	resp, body := tokenRequest(t, redeemForm(code, p))
	wantError(t, "replay", resp, body, 400, "invalid_grant")
	resp, body = tokenRequest(t, refreshForm(refreshed["refresh_token"].(string)))
	wantError(t, "refresh after code replay", resp, body, 400, "invalid_grant")
	for _, at := range []any{tok["access_token"], refreshed["access_token"]} {
		if p := callAPI(t, at.(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("access token after code replay: %d", p.resp.StatusCode)
		}
	}
}
