package endpoints

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// The grants of the token endpoint, case by case, without Caddy: each
// case is a token request and the status, error and fields a client
// reads from the answer.

const testVerifier = "verifier-0123456789-0123456789-0123456789-0123456789"

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// grantServer is a test server with two public clients that may refresh
// ("app", "app2") and a machine client ("m", secret
// "m-secret-0123456789").
func grantServer(t *testing.T, mutate ...func(*Config)) *Server {
	t.Helper()
	return newTestServer(t, append([]func(*Config){func(c *Config) {
		c.Tokens.RefreshTokenLifetime, c.Tokens.RefreshFamilyLifetime = time.Hour, 24*time.Hour
		c.Tokens.RefreshReuseGrace = 10 * time.Second
		c.Clients.Static = append(c.Clients.Static,
			storage.Client{ID: "app", RedirectURIs: []string{"https://app.test/cb"}, GrantTypes: DefaultGrantTypes(), TokenEndpointAuthMethod: "none"},
			storage.Client{ID: "app2", RedirectURIs: []string{"https://app2.test/cb"}, GrantTypes: DefaultGrantTypes(), TokenEndpointAuthMethod: "none"},
			storage.Client{ID: "m", SecretHash: storage.Hash("m-secret-0123456789"), GrantTypes: []string{grantClientCredentials}, Scope: "mcp:read mcp:write"})
	}}, mutate...)...)
}

// storeCode stores an authorization code for app and returns it.
func storeCode(t *testing.T, s *Server, mutate func(*storage.AuthorizationCode)) string {
	t.Helper()
	now := time.Now()
	ac := &storage.AuthorizationCode{ClientID: "app", RedirectURI: "https://app.test/cb", CodeChallenge: challengeOf(testVerifier),
		Scope: "mcp:read", Resource: "https://auth.test/mcp", Subject: "alice", AuthTime: now, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	if mutate != nil {
		mutate(ac)
	}
	code := randomToken()
	if err := s.cfg.Storage.Store.SaveAuthorizationCode(context.Background(), code, ac); err != nil {
		t.Fatal(err)
	}
	return code
}

// withFields sets the fields of f named in extra (name, value pairs); an
// empty value removes the field.
func withFields(f url.Values, extra ...string) url.Values {
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			f.Del(extra[i])
		} else {
			f.Set(extra[i], extra[i+1])
		}
	}
	return f
}

// wantAnswer checks status, error and (for a success) the fields.
func wantAnswer(t *testing.T, name string, status int, out map[string]any, header http.Header, wantStatus int, wantError string) {
	t.Helper()
	if status != wantStatus || wantError != "" && out["error"] != wantError {
		t.Errorf("%s: %d %v, want %d %s", name, status, out, wantStatus, wantError)
	}
	if header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control %q", name, header.Get("Cache-Control"))
	}
}

func TestAuthorizationCodeGrant(t *testing.T) {
	s := grantServer(t)
	redeem := func(code string, extra ...string) url.Values {
		return withFields(url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {code}, "code_verifier": {testVerifier}}, extra...)
	}
	for _, tc := range []struct {
		name       string
		code       func(*storage.AuthorizationCode)
		extra      []string
		wantStatus int
		wantError  string
	}{
		{name: "no code", extra: []string{"code", ""}, wantStatus: 400, wantError: "invalid_request"},
		{name: "unknown code", extra: []string{"code", "nope"}, wantStatus: 400, wantError: "invalid_grant"},
		{name: "expired code", code: func(ac *storage.AuthorizationCode) { ac.ExpiresAt = time.Now().Add(-time.Second) }, wantStatus: 400, wantError: "invalid_grant"},
		{name: "another client's code", code: func(ac *storage.AuthorizationCode) { ac.ClientID = "pub1" }, wantStatus: 400, wantError: "invalid_grant"},
		{name: "no verifier", extra: []string{"code_verifier", ""}, wantStatus: 400, wantError: "invalid_grant"},
		{name: "wrong verifier", extra: []string{"code_verifier", strings.Repeat("x", 43)}, wantStatus: 400, wantError: "invalid_grant"},
		{name: "redirect_uri the request named, missing", code: func(ac *storage.AuthorizationCode) { ac.RedirectURIGiven = true }, wantStatus: 400, wantError: "invalid_grant"},
		{name: "redirect_uri the request named, repeated", code: func(ac *storage.AuthorizationCode) { ac.RedirectURIGiven = true },
			extra: []string{"redirect_uri", "https://app.test/cb"}, wantStatus: 200},
		{name: "another redirect_uri", extra: []string{"redirect_uri", "https://app.test/other"}, wantStatus: 400, wantError: "invalid_grant"},
		{name: "the resource of the request", extra: []string{"resource", "https://auth.test/mcp"}, wantStatus: 200},
		{name: "another resource", extra: []string{"resource", "https://auth.test"}, wantStatus: 400, wantError: "invalid_target"},
		{name: "an unknown resource", extra: []string{"resource", "https://elsewhere.test/"}, wantStatus: 400, wantError: "invalid_target"},
		{name: "redeemed", wantStatus: 200},
	} {
		status, out, h := tokenCall(t, s, redeem(storeCode(t, s, tc.code), tc.extra...))
		wantAnswer(t, tc.name, status, out, h, tc.wantStatus, tc.wantError)
		if status == 200 && (out["token_type"] != "Bearer" || out["scope"] != "mcp:read" || out["access_token"] == nil || out["refresh_token"] == nil || out["expires_in"] != float64(3600)) {
			t.Errorf("%s: %v", tc.name, out)
		}
	}

	// A replay is refused and revokes what the code produced.
	code := storeCode(t, s, nil)
	_, first, _ := tokenCall(t, s, redeem(code))
	status, out, h := tokenCall(t, s, redeem(code))
	wantAnswer(t, "replay", status, out, h, 400, "invalid_grant")
	if _, _, err := s.verifyCached(context.Background(), first["access_token"].(string), false); err != errTokenRevoked {
		t.Errorf("the access token of a replayed code: %v", err)
	}
	status, out, _ = tokenCall(t, s, url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {first["refresh_token"].(string)}})
	if status != 400 || out["error"] != "invalid_grant" {
		t.Errorf("the refresh token of a replayed code: %d %v", status, out)
	}
}

func TestRefreshTokenGrant(t *testing.T) {
	s := grantServer(t)
	start := func() string {
		_, out, _ := tokenCall(t, s, url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {storeCode(t, s, func(ac *storage.AuthorizationCode) {
			ac.Scope = "mcp:read mcp:write"
		})}, "code_verifier": {testVerifier}})
		return out["refresh_token"].(string)
	}
	refresh := func(token string, extra ...string) url.Values {
		return withFields(url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {token}}, extra...)
	}
	for _, tc := range []struct {
		name       string
		token      string
		extra      []string
		wantStatus int
		wantError  string
		wantScope  string
	}{
		{name: "no token", token: "", wantStatus: 400, wantError: "invalid_request"},
		{name: "unknown token", token: "nope", wantStatus: 400, wantError: "invalid_grant"},
		{name: "rotated", wantStatus: 200, wantScope: "mcp:read mcp:write"},
		{name: "narrowed", extra: []string{"scope", "mcp:read"}, wantStatus: 200, wantScope: "mcp:read"},
		{name: "widened", extra: []string{"scope", "mcp:read admin"}, wantStatus: 400, wantError: "invalid_scope"},
		{name: "another resource", extra: []string{"resource", "https://auth.test"}, wantStatus: 400, wantError: "invalid_target"},
		{name: "another client", extra: []string{"client_id", "app2"}, wantStatus: 400, wantError: "invalid_grant"},
		{name: "a client that may not refresh", extra: []string{"client_id", "pub1"}, wantStatus: 400, wantError: "unauthorized_client"},
	} {
		token := tc.token
		if tc.name != "no token" && tc.name != "unknown token" {
			token = start()
		}
		status, out, h := tokenCall(t, s, refresh(token, tc.extra...))
		wantAnswer(t, tc.name, status, out, h, tc.wantStatus, tc.wantError)
		if status == 200 && (out["scope"] != tc.wantScope || out["refresh_token"] == nil || out["refresh_token"] == token) {
			t.Errorf("%s: %v", tc.name, out)
		}
	}

	// A refused request does not use the token up.
	token := start()
	tokenCall(t, s, refresh(token, "scope", "admin"))
	if status, out, _ := tokenCall(t, s, refresh(token)); status != 200 {
		t.Errorf("after a refused request: %d %v", status, out)
	}
}

func TestClientCredentialsGrant(t *testing.T) {
	s := grantServer(t)
	const secret = "m-secret-0123456789"
	for _, tc := range []struct {
		name       string
		form       url.Values
		wantStatus int
		wantError  string
		wantScope  string
	}{
		{name: "the client's scopes", form: url.Values{}, wantStatus: 200, wantScope: "mcp:read mcp:write"},
		{name: "some of them", form: url.Values{"scope": {"mcp:read"}}, wantStatus: 200, wantScope: "mcp:read"},
		{name: "a scope it lacks", form: url.Values{"scope": {"admin"}}, wantStatus: 400, wantError: "invalid_scope"},
		{name: "a resource", form: url.Values{"resource": {"https://auth.test"}}, wantStatus: 200, wantScope: "mcp:read mcp:write"},
		{name: "an unknown resource", form: url.Values{"resource": {"https://elsewhere.test/"}}, wantStatus: 400, wantError: "invalid_target"},
	} {
		tc.form.Set("grant_type", grantClientCredentials)
		status, out, h := tokenCall(t, s, tc.form, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("m:"+secret)))
		wantAnswer(t, tc.name, status, out, h, tc.wantStatus, tc.wantError)
		if status == 200 && (out["scope"] != tc.wantScope || out["refresh_token"] != nil) {
			t.Errorf("%s: %v", tc.name, out)
		}
	}
	// A public client never acts alone.
	status, out, h := tokenCall(t, s, url.Values{"grant_type": {grantClientCredentials}, "client_id": {"app"}})
	wantAnswer(t, "a public client", status, out, h, 400, "unauthorized_client")
}
