package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

const fullASMetadata = `{"issuer":"https://mcp.example.com",` +
	`"authorization_endpoint":"https://mcp.example.com/oauth/authorize",` +
	`"token_endpoint":"https://mcp.example.com/oauth/token",` +
	`"revocation_endpoint":"https://mcp.example.com/oauth/revoke",` +
	`"introspection_endpoint":"https://mcp.example.com/oauth/introspect",` +
	`"registration_endpoint":"https://mcp.example.com/oauth/register",` +
	`"jwks_uri":"https://mcp.example.com/.well-known/jwks.json",` +
	`"response_types_supported":["code"],` +
	`"response_modes_supported":["query"],` +
	`"grant_types_supported":["authorization_code","refresh_token","client_credentials"],` +
	`"code_challenge_methods_supported":["S256"],` +
	`"token_endpoint_auth_methods_supported":["none","client_secret_basic","client_secret_post","private_key_jwt"],` +
	`"revocation_endpoint_auth_methods_supported":["none","client_secret_basic","client_secret_post","private_key_jwt"],` +
	`"introspection_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","private_key_jwt"],` +
	`"token_endpoint_auth_signing_alg_values_supported":["RS256","PS256","ES256","EdDSA"],` +
	`"revocation_endpoint_auth_signing_alg_values_supported":["RS256","PS256","ES256","EdDSA"],` +
	`"introspection_endpoint_auth_signing_alg_values_supported":["RS256","PS256","ES256","EdDSA"],` +
	`"scopes_supported":["mcp:read","mcp:write"],` +
	`"dpop_signing_alg_values_supported":["ES256","EdDSA","RS256","PS256"],` +
	`"authorization_response_iss_parameter_supported":true,` +
	`"client_id_metadata_document_supported":true}`

func TestDiscoveryDocuments(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "oauth.db")
	tester := start(t, site(`
	oauth2_server {
		issuer https://mcp.example.com
		resource https://mcp.example.com/mcp https://MCP.example.com/
		resource_name "Example MCP"
		scopes mcp:read mcp:write
		storage `+storage+`
		dynamic_registration
		client_id_metadata_documents
	}`))

	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, body := get(t, tester, path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if string(body) != fullASMetadata {
			t.Errorf("GET %s:\n got %s\nwant %s", path, body, fullASMetadata)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q", path, got)
		}
		noNullsOrEmptyStrings(t, path, body)
	}

	// One document per resource; the path-inserted form for a path.
	mcpDoc := `{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://mcp.example.com"],` +
		`"scopes_supported":["mcp:read","mcp:write"],"bearer_methods_supported":["header"],"resource_name":"Example MCP",` +
		`"dpop_signing_alg_values_supported":["ES256","EdDSA","RS256","PS256"]}`
	rootDoc := `{"resource":"https://mcp.example.com","authorization_servers":["https://mcp.example.com"],` +
		`"scopes_supported":["mcp:read","mcp:write"],"bearer_methods_supported":["header"],"resource_name":"Example MCP",` +
		`"dpop_signing_alg_values_supported":["ES256","EdDSA","RS256","PS256"]}`
	for path, want := range map[string]string{
		"/.well-known/oauth-protected-resource/mcp": mcpDoc,
		"/.well-known/oauth-protected-resource":     rootDoc, // https://MCP.example.com/ is the origin resource
	} {
		resp, body := get(t, tester, path)
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("GET %s: %d\n got %s\nwant %s", path, resp.StatusCode, body, want)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
		noNullsOrEmptyStrings(t, path, body)
	}

	// The issuer never comes from request headers.
	_, spoofed := get(t, tester, "/.well-known/oauth-authorization-server",
		"X-Forwarded-Host", "evil.test", "X-Forwarded-Proto", "http", "Forwarded", "host=evil.test;proto=http")
	if string(spoofed) != fullASMetadata {
		t.Errorf("forwarding headers changed the metadata: %s", spoofed)
	}

	// ES256 key, public parts only.
	resp, body := get(t, tester, "/.well-known/jwks.json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d", resp.StatusCode)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", body, err)
	}
	k := set.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] == "" || k["d"] != nil {
		t.Fatalf("jwks key %v", k)
	}
}

func TestDiscoveryPreflight(t *testing.T) {
	tester := start(t, site(`
	oauth2_server {
		issuer https://mcp.example.com
		resource https://mcp.example.com/mcp
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
	}`))
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource/mcp", "/.well-known/jwks.json"} {
		req, _ := http.NewRequest(http.MethodOptions, base+path, nil)
		req.Header.Set("Origin", "http://localhost:6274")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "mcp-protocol-version")
		resp, body := do(t, tester, req)
		want := map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "Authorization, DPoP, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID",
			"Access-Control-Max-Age":       "86400",
		}
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Errorf("OPTIONS %s: %d %q", path, resp.StatusCode, body)
		}
		for h, v := range want {
			if got := resp.Header.Get(h); got != v {
				t.Errorf("OPTIONS %s: %s = %q, want %q", path, h, got, v)
			}
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("OPTIONS %s allows credentials", path)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/.well-known/oauth-authorization-server", strings.NewReader("x"))
	resp, body := do(t, tester, req)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" ||
		string(body) != `{"error":"invalid_request","error_description":"use GET"}` {
		t.Errorf("POST metadata: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestDiscoveryWithIssuerPath(t *testing.T) {
	tester := start(t, site(`
	oauth2_server {
		issuer https://auth.example.com/tenant1
		resource https://auth.example.com/tenant1/mcp
		signing_secret 0123456789abcdef0123456789abcdef
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
	}`))
	want := `{"issuer":"https://auth.example.com/tenant1",` +
		`"authorization_endpoint":"https://auth.example.com/tenant1/oauth/authorize",` +
		`"token_endpoint":"https://auth.example.com/tenant1/oauth/token",` +
		`"revocation_endpoint":"https://auth.example.com/tenant1/oauth/revoke",` +
		`"introspection_endpoint":"https://auth.example.com/tenant1/oauth/introspect",` +
		`"jwks_uri":"https://auth.example.com/tenant1/.well-known/jwks.json",` +
		`"response_types_supported":["code"],"response_modes_supported":["query"],` +
		`"grant_types_supported":["authorization_code","refresh_token","client_credentials"],` +
		`"code_challenge_methods_supported":["S256"],` +
		`"token_endpoint_auth_methods_supported":["none","client_secret_basic","client_secret_post","private_key_jwt"],` +
		`"revocation_endpoint_auth_methods_supported":["none","client_secret_basic","client_secret_post","private_key_jwt"],` +
		`"introspection_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","private_key_jwt"],` +
		`"token_endpoint_auth_signing_alg_values_supported":["RS256","PS256","ES256","EdDSA"],` +
		`"revocation_endpoint_auth_signing_alg_values_supported":["RS256","PS256","ES256","EdDSA"],` +
		`"introspection_endpoint_auth_signing_alg_values_supported":["RS256","PS256","ES256","EdDSA"],` +
		`"dpop_signing_alg_values_supported":["ES256","EdDSA","RS256","PS256"],` +
		`"authorization_response_iss_parameter_supported":true}`
	for _, path := range []string{
		"/.well-known/oauth-authorization-server/tenant1", // RFC 8414 §3.1
		"/.well-known/openid-configuration/tenant1",
		"/tenant1/.well-known/openid-configuration", // OpenID Connect Discovery
		"/.well-known/oauth-authorization-server",
	} {
		resp, body := get(t, tester, path)
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("GET %s: %d\n got %s\nwant %s", path, resp.StatusCode, body, want)
		}
	}
	resp, body := get(t, tester, "/.well-known/oauth-protected-resource/tenant1/mcp")
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"resource":"https://auth.example.com/tenant1/mcp"`)) {
		t.Errorf("path-inserted PRM: %d %s", resp.StatusCode, body)
	}
	// HS256: the shared secret is never published.
	resp, body = get(t, tester, "/tenant1/.well-known/jwks.json")
	if resp.StatusCode != http.StatusOK || string(body) != `{"keys":[]}` {
		t.Errorf("jwks in HS256 mode: %d %s", resp.StatusCode, body)
	}
	// Registration is off: not advertised, and not served.
	resp, body = get(t, tester, "/tenant1/oauth/register")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("registration endpoint while off: %d %s", resp.StatusCode, body)
	}
}

// TestUnknownDiscoveryPaths: a /.well-known/ path that is not this
// server's answers 404 with a JSON body and no challenge, so that clients
// fall back (ChatGPT asks for /.well-known/oauth-authorization-server/mcp
// when the issuer has no path); a public one passes to the upstream.
func TestUnknownDiscoveryPaths(t *testing.T) {
	flowServer(t, "public /.well-known/security.txt")
	for _, path := range []string{
		"/.well-known/oauth-authorization-server/mcp",
		"/.well-known/openid-configuration/mcp",
		"/.well-known/oauth-protected-resource/other",
		"/.well-known/oauth-client-metadata",
		"/.well-known/anything",
	} {
		p := newBrowser(t).get(path)
		if p.resp.StatusCode != http.StatusNotFound || p.resp.Header.Get("WWW-Authenticate") != "" ||
			p.body != `{"error":"not_found","error_description":"no document at this path"}` || p.resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: %d %v %s", path, p.resp.StatusCode, p.resp.Header, p.body)
		}
	}
	if p := newBrowser(t).get("/.well-known/security.txt"); p.resp.StatusCode != http.StatusOK || p.body != "upstream" {
		t.Errorf("a public /.well-known/ path: %d %s", p.resp.StatusCode, p.body)
	}
}
