package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestRegistrationRealClients registers the shapes real MCP clients send
// and completes a flow with each registration where it matters.
func TestRegistrationRealClients(t *testing.T) {
	flowServer(t, dcr)
	for _, tc := range []struct {
		name, body   string
		wantSecret   bool
		wantRedirect []string
	}{
		{"Claude.ai", `{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_post","scope":"mcp:read mcp:write"}`,
			true, []string{"https://claude.ai/api/mcp/auth_callback"}},
		{"Claude Code", `{"client_name":"Claude Code","redirect_uris":["http://localhost:54212/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}`,
			false, []string{"http://localhost:54212/callback"}},
		{"ChatGPT", `{"client_name":"ChatGPT","redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],"token_endpoint_auth_method":"none","application_type":"web","resource":"` + base + `/mcp"}`,
			false, []string{"https://chatgpt.com/connector_platform_oauth_redirect"}},
		{"Cursor", `{"client_name":"Cursor","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","https://www.cursor.com/agents/mcp/oauth/callback","http://localhost:8787/callback"],"token_endpoint_auth_method":"none","application_type":"native"}`,
			false, []string{"cursor://anysphere.cursor-mcp/oauth/callback", "https://www.cursor.com/agents/mcp/oauth/callback", "http://localhost:8787/callback"}},
		{"VS Code", `{"client_name":"Visual Studio Code","redirect_uris":["http://127.0.0.1:33418/","https://vscode.dev/redirect"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`,
			false, []string{"http://127.0.0.1:33418/", "https://vscode.dev/redirect"}},
	} {
		p, out := registerJSON(t, tc.body)
		if p.resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s: %d %s", tc.name, p.resp.StatusCode, p.body)
		}
		if p.resp.Header.Get("Cache-Control") != "no-store" || p.resp.Header.Get("Access-Control-Allow-Origin") != "*" || p.resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", tc.name, p.resp.Header)
		}
		noNullsOrEmptyStrings(t, tc.name, []byte(p.body))
		_, hasSecret := out["client_secret"]
		if hasSecret != tc.wantSecret || tc.wantSecret && (len(out["client_secret"].(string)) < 43 || out["client_secret_expires_at"] != float64(0)) {
			t.Errorf("%s: client_secret %v / %v", tc.name, out["client_secret"], out["client_secret_expires_at"])
		}
		id, _ := out["client_id"].(string)
		if id == "" || out["client_id_issued_at"] == nil || out["registration_access_token"] == nil ||
			out["registration_client_uri"] != base+"/oauth/register/"+id {
			t.Errorf("%s: %v", tc.name, out)
		}
		got, _ := json.Marshal(out["redirect_uris"])
		want, _ := json.Marshal(tc.wantRedirect)
		if string(got) != string(want) {
			t.Errorf("%s: redirect_uris %s", tc.name, got)
		}
		if tc.name == "VS Code" {
			// A different loopback port at authorize is fine (RFC 8252).
			b := signedIn(t)
			p := newPKCE()
			first := b.get(authorizeQuery(p, map[string]string{"client_id": id, "redirect_uri": "http://127.0.0.1:51999/"}))
			if first.field("request_id") == "" {
				t.Fatalf("VS Code on another port: %d %s", first.resp.StatusCode, first.body)
			}
			code := codeFrom(t, b.approve(first, "allow"), "http://127.0.0.1:51999/", "xyz")
			resp, body := tokenRequest(t, redeemForm(code, p, "client_id", id, "redirect_uri", "http://127.0.0.1:51999/"))
			if resp.StatusCode != http.StatusOK || body["refresh_token"] == nil {
				t.Fatalf("VS Code token: %d %v", resp.StatusCode, body)
			}
		}
		if tc.name == "Claude.ai" {
			b := signedIn(t)
			p := newPKCE()
			first := b.get(authorizeQuery(p, map[string]string{"client_id": id, "redirect_uri": "https://claude.ai/api/mcp/auth_callback"}))
			code := codeFrom(t, b.approve(first, "allow"), "https://claude.ai/api/mcp/auth_callback", "xyz")
			resp, body := tokenRequest(t, redeemForm(code, p, "client_id", id, "client_secret", out["client_secret"].(string), "redirect_uri", "https://claude.ai/api/mcp/auth_callback"))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("Claude.ai token with client_secret_post: %d %v", resp.StatusCode, body)
			}
			resp, body = tokenRequest(t, redeemForm(code, p, "client_id", id, "redirect_uri", "https://claude.ai/api/mcp/auth_callback"))
			wantError(t, "Claude.ai without its secret", resp, body, 401, "invalid_client")
		}
	}
}

func TestRegistrationRefusals(t *testing.T) {
	flowServer(t, dcr)
	for _, tc := range []struct{ name, body, code string }{
		{"no redirect_uris", `{"client_name":"x"}`, "invalid_redirect_uri"},
		{"empty redirect_uris", `{"redirect_uris":[]}`, "invalid_redirect_uri"},
		{"javascript", `{"redirect_uris":["javascript:alert(1)"]}`, "invalid_redirect_uri"},
		{"JavaScript mixed case", `{"redirect_uris":["JaVaScRiPt:alert(1)"]}`, "invalid_redirect_uri"},
		{"data", `{"redirect_uris":["data:text/html,<script>alert(1)</script>"]}`, "invalid_redirect_uri"},
		{"file", `{"redirect_uris":["file:///etc/passwd"]}`, "invalid_redirect_uri"},
		{"blob", `{"redirect_uris":["blob:https://a.test/uuid"]}`, "invalid_redirect_uri"},
		{"vbscript", `{"redirect_uris":["VBScript:msgbox(1)"]}`, "invalid_redirect_uri"},
		{"encoded scheme", `{"redirect_uris":["java%73cript:alert(1)"]}`, "invalid_redirect_uri"},
		{"escaped control", `{"redirect_uris":["java\tscript:alert(1)"]}`, "invalid_redirect_uri"},
		{"wildcard", `{"redirect_uris":["https://*.client.test/cb"]}`, "invalid_redirect_uri"},
		{"relative", `{"redirect_uris":["/cb"]}`, "invalid_redirect_uri"},
		{"fragment", `{"redirect_uris":["https://client.test/cb#x"]}`, "invalid_redirect_uri"},
		{"userinfo", `{"redirect_uris":["https://user@client.test/cb"]}`, "invalid_redirect_uri"},
		{"http non-loopback", `{"redirect_uris":["http://client.test/cb"]}`, "invalid_redirect_uri"},
		{"one bad among good", `{"redirect_uris":["https://ok.test/cb","javascript:alert(1)"]}`, "invalid_redirect_uri"},
		{"auth method private_key_jwt", `{"redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata"},
		{"implicit grant", `{"redirect_uris":["https://a.test/cb"],"grant_types":["implicit"]}`, "invalid_client_metadata"},
		{"password grant", `{"redirect_uris":["https://a.test/cb"],"grant_types":["password"]}`, "invalid_client_metadata"},
		{"client_credentials for a public client", `{"redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"none","grant_types":["client_credentials"]}`, "invalid_client_metadata"},
		{"token response type", `{"redirect_uris":["https://a.test/cb"],"response_types":["token"]}`, "invalid_client_metadata"},
		{"unknown scope", `{"redirect_uris":["https://a.test/cb"],"scope":"admin"}`, "invalid_client_metadata"},
		{"bad application_type", `{"redirect_uris":["https://a.test/cb"],"application_type":"service"}`, "invalid_client_metadata"},
		{"long client_name", `{"redirect_uris":["https://a.test/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, "invalid_client_metadata"},
		{"javascript logo", `{"redirect_uris":["https://a.test/cb"],"logo_uri":"javascript:alert(1)"}`, "invalid_client_metadata"},
		{"wrong type", `{"redirect_uris":"https://a.test/cb"}`, "invalid_client_metadata"},
		{"broken JSON", `{"redirect_uris":["https://a.test/cb"]`, "invalid_client_metadata"},
		{"not an object", `["https://a.test/cb"]`, "invalid_client_metadata"},
		{"two values", `{"redirect_uris":["https://a.test/cb"]} {}`, "invalid_client_metadata"},
		{"too big", `{"redirect_uris":["https://a.test/cb"],"x":"` + strings.Repeat("a", 17<<10) + `"}`, "invalid_client_metadata"},
	} {
		p, out := registerJSON(t, tc.body)
		if p.resp.StatusCode != http.StatusBadRequest || out["error"] != tc.code {
			t.Errorf("%s: %d %s", tc.name, p.resp.StatusCode, p.body)
		}
	}
	// The refused URI is named.
	if _, out := registerJSON(t, `{"redirect_uris":["https://ok.test/cb","javascript:alert(1)"]}`); !strings.Contains(out["error_description"].(string), "javascript:alert(1)") {
		t.Errorf("error_description %q does not name the URI", out["error_description"])
	}
	// Not JSON at all.
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/register", strings.NewReader("redirect_uris=https://a.test/cb"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusBadRequest || !strings.Contains(p.body, "invalid_client_metadata") {
		t.Errorf("form body: %d %s", p.resp.StatusCode, p.body)
	}
}

func TestRegistrationSecretShimAndDefaults(t *testing.T) {
	flowServer(t, `
		dynamic_registration {
			always_return_client_secret
			rate_limit off
		}`)
	p, out := registerJSON(t, `{"redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect"],"token_endpoint_auth_method":"none"}`)
	if p.resp.StatusCode != http.StatusCreated || out["client_secret"] != "" || out["client_secret_expires_at"] != nil {
		t.Fatalf("shim: %d %s", p.resp.StatusCode, p.body)
	}
	// Omitted auth method: RFC 7591's default, client_secret_basic, with a secret.
	_, out = registerJSON(t, `{"redirect_uris":["https://a.test/cb"]}`)
	if out["token_endpoint_auth_method"] != "client_secret_basic" || out["client_secret"] == "" || out["scope"] != "mcp:read mcp:write" {
		t.Fatalf("defaults: %v", out)
	}
	grants, _ := json.Marshal(out["grant_types"])
	if string(grants) != `["authorization_code","refresh_token"]` {
		t.Fatalf("default grant types %s", grants)
	}
}

func TestRegistrationInitialAccessToken(t *testing.T) {
	flowServer(t, `
		dynamic_registration {
			initial_access_token iat-0123456789abcdef
			rate_limit off
		}`)
	body := `{"redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"none"}`
	for name, header := range map[string][]string{"none": nil, "wrong": {"Authorization", "Bearer iat-wrong"}, "basic": {"Authorization", "Basic aWF0OmlhdA=="}} {
		p, _ := registerJSON(t, body, header...)
		if p.resp.StatusCode != http.StatusUnauthorized ||
			p.resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token", error_description="an initial access token is required to register"` {
			t.Errorf("%s: %d %q", name, p.resp.StatusCode, p.resp.Header.Get("WWW-Authenticate"))
		}
	}
	if p, _ := registerJSON(t, body, "Authorization", "Bearer iat-0123456789abcdef"); p.resp.StatusCode != http.StatusCreated {
		t.Fatalf("with the token: %d %s", p.resp.StatusCode, p.body)
	}
}

func TestRegistrationManagement(t *testing.T) {
	flowServer(t, dcr)
	_, out := registerJSON(t, `{"client_name":"Managed","redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"none"}`)
	uri, rat := out["registration_client_uri"].(string), out["registration_access_token"].(string)
	call := func(method, token string) page {
		req, _ := http.NewRequest(method, uri, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return newBrowser(t).do(req)
	}
	if p := call(http.MethodGet, rat); p.resp.StatusCode != http.StatusOK || !strings.Contains(p.body, `"client_name":"Managed"`) || strings.Contains(p.body, "registration_access_token") {
		t.Fatalf("GET: %d %s", p.resp.StatusCode, p.body)
	}
	for name, token := range map[string]string{"no token": "", "wrong token": "nope"} {
		if p := call(http.MethodGet, token); p.resp.StatusCode != http.StatusUnauthorized || p.resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("GET with %s: %d", name, p.resp.StatusCode)
		}
	}
	if p := call(http.MethodPut, rat); p.resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", p.resp.StatusCode)
	}
	if p := call(http.MethodDelete, rat); p.resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", p.resp.StatusCode, p.body)
	}
	if p := call(http.MethodGet, rat); p.resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET after DELETE: %d", p.resp.StatusCode)
	}
	// The deleted client is gone at authorize (an error page) and at the
	// token endpoint (401 invalid_client: "register again").
	if p := signedIn(t).get(authorizeQuery(newPKCE(), map[string]string{"client_id": out["client_id"].(string), "redirect_uri": "https://a.test/cb"})); p.resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("authorize with a deleted client: %d", p.resp.StatusCode)
	}
	resp, body := tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {out["client_id"].(string)}})
	wantError(t, "deleted client at the token endpoint", resp, body, 401, "invalid_client")
}

func TestRegistrationRateLimit(t *testing.T) {
	flowServer(t, `
		dynamic_registration {
			rate_limit 3 1h
		}`)
	body := `{"redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"none"}`
	for i := range 3 {
		if p, _ := registerJSON(t, body); p.resp.StatusCode != http.StatusCreated {
			t.Fatalf("registration %d: %d", i+1, p.resp.StatusCode)
		}
	}
	p, out := registerJSON(t, body)
	if p.resp.StatusCode != http.StatusTooManyRequests || p.resp.Header.Get("Retry-After") == "" || out["error"] != "temporarily_unavailable" {
		t.Fatalf("fourth registration: %d %v %s", p.resp.StatusCode, p.resp.Header, p.body)
	}
	if ra := p.resp.Header.Get("Retry-After"); ra != "1200" && ra != "1199" {
		t.Errorf("Retry-After %s, want about 1200 (one registration per 20 minutes)", ra)
	}
}

func TestRegistrationOffAndUnusedClientExpiry(t *testing.T) {
	flowServer(t, "")
	if p, _ := registerJSON(t, `{"redirect_uris":["https://a.test/cb"]}`); p.resp.StatusCode != http.StatusNotFound {
		t.Fatalf("registration while off: %d", p.resp.StatusCode)
	}
	if p := newBrowser(t).post("/register", url.Values{}); p.resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/register alias while off: %d", p.resp.StatusCode)
	}

	storagePath, _ := flowServer(t, dcr+"\n unused_client_ttl 1s")
	_, unused := registerJSON(t, `{"redirect_uris":["https://a.test/cb"],"token_endpoint_auth_method":"none"}`)
	_, used := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`)
	b := signedIn(t)
	p := newPKCE()
	code := codeFor(t, b, p, map[string]string{"client_id": used["client_id"].(string)})
	if resp, body := tokenRequest(t, redeemForm(code, p, "client_id", used["client_id"].(string))); resp.StatusCode != http.StatusOK {
		t.Fatalf("token for the used client: %d %v", resp.StatusCode, body)
	}
	time.Sleep(1100 * time.Millisecond)
	store := sharedStore(t, storagePath)
	if _, err := store.GetClient(context.Background(), unused["client_id"].(string), time.Now()); err == nil {
		t.Fatal("a client never used is still there after unused_client_ttl")
	}
	if _, err := store.GetClient(context.Background(), used["client_id"].(string), time.Now()); err != nil {
		t.Fatalf("a used client expired: %v", err)
	}
	if swept, err := store.DeleteExpired(context.Background(), time.Now()); err != nil || swept.Deleted < 1 {
		t.Fatalf("the sweeper removed %d records: %v", swept.Deleted, err)
	}
}

// TestConsentIsPerRegisteredClient: a new registration that copies an
// approved client's name and redirect URI still gets the consent screen.
func TestConsentIsPerRegisteredClient(t *testing.T) {
	flowServer(t, dcr)
	body := `{"client_name":"Twin","redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`
	_, first := registerJSON(t, body)
	_, twin := registerJSON(t, body)
	b := signedIn(t)
	codeFor(t, b, newPKCE(), map[string]string{"client_id": first["client_id"].(string)})
	if p := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": first["client_id"].(string)})); p.resp.StatusCode != http.StatusFound {
		t.Fatalf("the approved client should skip consent: %d", p.resp.StatusCode)
	}
	if p := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": twin["client_id"].(string)})); p.field("request_id") == "" {
		t.Fatalf("the look-alike client skipped consent: %d", p.resp.StatusCode)
	}
}

// TestRegisteredScopeIsNotACeiling: MCP clients register with the scope of
// their first challenge and later step up within the catalogue (the MCP
// SDK does exactly this); a registered client may ask for more.
func TestRegisteredScopeIsNotACeiling(t *testing.T) {
	flowServer(t, dcr)
	_, out := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none","scope":"mcp:read"}`)
	b := signedIn(t)
	p := newPKCE()
	code := codeFor(t, b, p, map[string]string{"client_id": out["client_id"].(string), "scope": "mcp:read mcp:write"})
	resp, body := tokenRequest(t, redeemForm(code, p, "client_id", out["client_id"].(string)))
	if resp.StatusCode != http.StatusOK || body["scope"] != "mcp:read mcp:write" {
		t.Fatalf("step-up for a registered client: %d %v", resp.StatusCode, body)
	}
	// Outside the catalogue stays refused.
	got := b.get(authorizeQuery(p, map[string]string{"client_id": out["client_id"].(string), "scope": "admin"}))
	if loc := got.location(); loc == nil || loc.Query().Get("error") != "invalid_scope" {
		t.Fatalf("scope outside the catalogue: %d %v", got.resp.StatusCode, got.resp.Header)
	}
}

// TestOpenRegistrationGetsNoMachineTokens: a stranger registering with
// client_credentials and a secret method is refused, naming the grant: a
// client alone gets nothing.
func TestOpenRegistrationGetsNoMachineTokens(t *testing.T) {
	flowServer(t, dcr)
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		p, out := registerJSON(t, `{"redirect_uris":["https://c.test/cb"],"grant_types":["authorization_code","client_credentials"],"token_endpoint_auth_method":"`+method+`"}`)
		if p.resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_client_metadata" ||
			out["error_description"] != "grant_type client_credentials is not available to clients that register themselves; an operator creates machine clients" {
			t.Errorf("%s: %d %s", method, p.resp.StatusCode, p.body)
		}
	}
}
