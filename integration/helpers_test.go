package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Helpers the integration tests share: token and registration requests,
// signed-in browsers, the admin API and the caddy command, checks of
// answers. The browser itself is in browser_test.go, the flow site in
// flow_test.go, the harness in main_test.go.

// tokenRequest posts a form to the token endpoint.
func tokenRequest(t *testing.T, form url.Values, header ...string) (*http.Response, map[string]any) {
	t.Helper()
	p := newBrowser(t).post("/oauth/token", form, header...)
	var body map[string]any
	if err := json.Unmarshal([]byte(p.body), &body); err != nil {
		t.Fatalf("token response is not JSON: %d %q", p.resp.StatusCode, p.body)
	}
	return p.resp, body
}

func redeemForm(code string, p pkce, extra ...string) url.Values {
	f := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"code_verifier": {p.verifier},
		"client_id":     {"pub1"},
		"redirect_uri":  {"https://client.test/cb"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			f.Del(extra[i])
		} else {
			f.Set(extra[i], extra[i+1])
		}
	}
	return f
}

func wantError(t *testing.T, name string, resp *http.Response, body map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || body["error"] != code {
		t.Errorf("%s: %d %v, want %d %s", name, resp.StatusCode, body, status, code)
	}
	if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: headers %v", name, resp.Header)
	}
}

func basicAuth(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return req.Header.Get("Authorization")
}

// codeFor runs the browser part of the flow for a client and returns the
// authorization code.
func codeFor(t *testing.T, b *browser, p pkce, overrides map[string]string) string {
	t.Helper()
	first := b.get(authorizeQuery(p, overrides))
	if first.resp.StatusCode == http.StatusOK {
		first = b.approve(first, "allow")
	}
	redirect := overrides["redirect_uri"]
	if redirect == "" {
		redirect = "https://client.test/cb"
	}
	return codeFrom(t, first, redirect, "xyz")
}

// tokensFor runs the code flow for pub1 (or the client in overrides) and
// returns the token response.
func tokensFor(t *testing.T, b *browser, overrides map[string]string, extra ...string) map[string]any {
	t.Helper()
	p := newPKCE()
	code := codeFor(t, b, p, overrides)
	resp, body := tokenRequest(t, redeemForm(code, p, extra...))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %v", resp.StatusCode, body)
	}
	return body
}

func refreshForm(refreshToken string, extra ...string) url.Values {
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}, "client_id": {"pub1"}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

func signedIn(t *testing.T) *browser {
	t.Helper()
	b := newBrowser(t)
	if p := b.signIn("alice", alicePassword); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", p.resp.StatusCode)
	}
	return b
}

// registerJSON posts a registration body.
func registerJSON(t *testing.T, body string, header ...string) (page, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/register", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	p := newBrowser(t).do(req)
	var out map[string]any
	json.Unmarshal([]byte(p.body), &out)
	return p, out
}

const dcr = `
		dynamic_registration {
			rate_limit off
		}`

func (c *cluster) callAPI(node int, token string) answer {
	req, _ := http.NewRequest(http.MethodGet, c.nodes[node].origin+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return c.do(req)
}

// jsonField returns a string member of a JSON object.
func jsonField(t *testing.T, body, name string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Errorf("not JSON: %q", body)
		return ""
	}
	v, _ := m[name].(string)
	return v
}

// verifyAccessToken checks an access token's header and signature against
// the published JWKS and returns its claims.
func verifyAccessToken(t *testing.T, token string) map[string]any {
	t.Helper()
	b := newBrowser(t)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(b.get("/.well-known/jwks.json").body), &set); err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := parsed.Headers[0]
	if h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID == "" || h.Algorithm != "ES256" {
		t.Fatalf("token header %+v", h)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %s not in the JWKS", h.KeyID)
	}
	var claims map[string]any
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return claims
}

// caddyCLI runs `caddy <args>` (this test binary, re-executed) and
// returns its output and exit error.
func caddyCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv, _ := json.Marshal(args)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "OAUTH2_CHILD_ARGS="+string(argv))
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// adminCall calls the admin API; body, when not nil, is sent as JSON.
func adminCall(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var in *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		in = bytes.NewReader(raw)
	} else {
		in = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, adminBase+path, in)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func wantStatus(t *testing.T, name string, got int, body []byte, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %d %s, want %d", name, got, body, want)
	}
}

const adminBase = "http://localhost:2999/oauth2/"

// clientKey is a private_key_jwt client's key pair, as a client holds it.
type clientKey struct {
	private *ecdsa.PrivateKey
	kid     string
}

func newClientKey(t *testing.T) clientKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{k, fmt.Sprintf("k-%d", time.Now().UnixNano())}
}

// jwks is the public half as a JWK Set.
func (k clientKey) jwks(t *testing.T) []byte {
	t.Helper()
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.private.Public(), KeyID: k.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// assertionForm is a client_credentials request authenticated with a
// fresh private_key_jwt assertion of client id (aud the issuer, as
// rfc7523bis says).
func (k clientKey) assertionForm(t *testing.T, id string) url.Values {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.private, KeyID: k.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(signer).Claims(map[string]any{"iss": id, "sub": id, "aud": base, "jti": fmt.Sprint(now.UnixNano()),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {raw}}
}
