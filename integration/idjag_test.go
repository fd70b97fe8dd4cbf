package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// enterpriseIdP is a stand-in company identity provider that speaks what
// the ID-JAG draft and the MCP extension describe: RFC 8414 metadata with
// its jwks_uri, its public keys, and ID-JAGs signed with its key. (A real
// one is Okta or Entra ID; the token exchange that gives the client its
// ID-JAG happens there, not here.)
type enterpriseIdP struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey
}

func newEnterpriseIdP(t *testing.T) *enterpriseIdP {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp := &enterpriseIdP{key: key}
	idp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, idp.srv.URL, idp.srv.URL+"/keys")
		case "/keys":
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "idp-1", Algorithm: "ES256", Use: "sig"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(idp.srv.Close)
	return idp
}

// idJAG is what the provider issues client for user sub.
func (idp *enterpriseIdP) idJAG(t *testing.T, client, sub string) string {
	now := time.Now()
	return idp.sign(t, "oauth-id-jag+jwt", map[string]any{"iss": idp.srv.URL, "sub": sub, "aud": base, "client_id": client,
		"jti": fmt.Sprint(now.UnixNano()), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": base + "/mcp",
		"scope": "mcp:read", "email": sub + "@corp.example"})
}

// sign signs claims with the provider's key, with the header's typ.
func (idp *enterpriseIdP) sign(t *testing.T, typ string, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: idp.key, KeyID: "idp-1"}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestWorkloadIdentityFederation: through Caddy, a workload presents its
// platform's token (a stand-in for GitHub Actions' OIDC issuer, its keys
// found through its metadata) with no client authentication, and gets an
// access token naming the workload; the MCP server is told it is a
// workload, not a user.
func TestWorkloadIdentityFederation(t *testing.T) {
	ci := newEnterpriseIdP(t)
	up := newUpstream(t, nil)
	upstreamSite(t, `workload_issuer ci {
			issuer `+ci.srv.URL+`
			allow_claim repository acme/agents
			scopes mcp:read
		}`, `reverse_proxy `+up.address()+` {
		header_up X-User {http.auth.user.id}
		header_up X-Sub {http.oauth2.sub}
		header_up X-Subject-Type {http.oauth2.subject_type}
	}`)
	now := time.Now()
	token := func(repo string) string {
		return ci.sign(t, "JWT", map[string]any{"iss": ci.srv.URL, "sub": "repo:" + repo + ":ref:refs/heads/main", "aud": base, "repository": repo,
			"jti": fmt.Sprint(time.Now().UnixNano()), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	}
	resp, tokens := tokenRequest(t, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {token("acme/agents")}})
	if resp.StatusCode != http.StatusOK || tokens["refresh_token"] != nil || tokens["scope"] != "mcp:read" {
		t.Fatalf("the workload's token: %d %v", resp.StatusCode, tokens)
	}
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK || up.header().Get("X-User") != "" ||
		up.header().Get("X-Sub") != "ci:repo:acme/agents:ref:refs/heads/main" || up.header().Get("X-Subject-Type") != "workload" {
		t.Fatalf("the MCP server: %d, %v", p.resp.StatusCode, up.header())
	}
	resp, body := tokenRequest(t, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {token("evil/agents")}})
	if resp.StatusCode != http.StatusBadRequest || body["error_description"] != "assertion: claim repository is not one workload_issuer ci allows" {
		t.Errorf("another repository: %d %v", resp.StatusCode, body)
	}
}

// TestEnterpriseManagedAuthorization: through Caddy, a confidential client
// redeems the provider's ID-JAG with the jwt-bearer grant, gets an access
// token (no refresh token) for the user the provider names, and the MCP
// server behind the guard is told who it is and through which provider;
// the grant is listed, and revoking it stops the token. The ID-JAG is in
// no log line.
func TestEnterpriseManagedAuthorization(t *testing.T) {
	idp := newEnterpriseIdP(t)
	up := newUpstream(t, nil)
	logPath := upstreamSite(t, `enterprise_idp corp {
			issuer `+idp.srv.URL+`
		}
		client agent {
			secret `+svcSecret+`
			grant_types client_credentials
		}`, `reverse_proxy `+up.address()+` {
		header_up X-User {http.auth.user.id}
		header_up X-IdP {http.oauth2.idp}
	}`)

	metadata := newBrowser(t).get("/.well-known/oauth-authorization-server")
	if !strings.Contains(metadata.body, `"urn:ietf:params:oauth:grant-type:jwt-bearer"`) ||
		!strings.Contains(metadata.body, `"authorization_grant_profiles_supported":["urn:ietf:params:oauth:grant-profile:id-jag"]`) {
		t.Errorf("metadata: %s", metadata.body)
	}

	jag := idp.idJAG(t, "agent", "u-42")
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {jag}}
	resp, tokens := tokenRequest(t, form, "Authorization", basicAuth("agent", svcSecret))
	if resp.StatusCode != http.StatusOK || tokens["refresh_token"] != nil || tokens["scope"] != "mcp:read" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("redeeming the ID-JAG: %d %v", resp.StatusCode, tokens)
	}
	at := tokens["access_token"].(string)
	if p := callAPI(t, at, "/mcp"); p.resp.StatusCode != http.StatusOK || up.header().Get("X-User") != "u-42" || up.header().Get("X-IdP") != "corp" {
		t.Fatalf("the MCP server: %d, X-User %q, X-IdP %q", p.resp.StatusCode, up.header().Get("X-User"), up.header().Get("X-IdP"))
	}
	resp, body := tokenRequest(t, form, "Authorization", basicAuth("agent", svcSecret))
	wantError(t, "the ID-JAG again", resp, body, http.StatusBadRequest, "invalid_grant")

	status, raw := adminCall(t, http.MethodGet, "grants?user=u-42", nil)
	var grants []map[string]any
	json.Unmarshal(raw, &grants)
	if status != http.StatusOK || len(grants) != 1 || grants[0]["client_id"] != "agent" || grants[0]["scope"] != "mcp:read" {
		t.Fatalf("the grant in the admin API: %d %s", status, raw)
	}
	if status, body := adminCall(t, http.MethodDelete, "grants/"+grants[0]["id"].(string), nil); status != http.StatusOK || !strings.Contains(string(body), `"revoked": 1`) {
		t.Fatalf("revoking it: %d %s", status, body)
	}
	if p := callAPI(t, at, "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token after revoking the grant: %d", p.resp.StatusCode)
	}
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logged), strings.Split(jag, ".")[1]) {
		t.Error("the log holds the ID-JAG")
	}
}
