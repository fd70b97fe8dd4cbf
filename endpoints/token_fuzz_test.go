package endpoints

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// FuzzTokenRequest throws arbitrary bodies, content types and
// Authorization headers at the token endpoint's form parsing and client
// authentication: the answer is always an OAuth JSON error (or, for the
// one confidential client, a client_credentials token), never a 500.
func FuzzTokenRequest(f *testing.F) {
	f.Add("grant_type=authorization_code&code=abc&code_verifier=x&client_id=pub1", "application/x-www-form-urlencoded", "")
	f.Add("grant_type=client_credentials", "application/x-www-form-urlencoded", "Basic c3ZjOnN2Yy1zZWNyZXQ=")
	f.Add("grant_type=refresh_token&refresh_token=zzz&client_id=pub1&scope=mcp%3Aread", "application/x-www-form-urlencoded; charset=utf-8", "")
	f.Add(`{"grant_type":"password"}`, "application/json", "Bearer x")
	s := newTestServer(f, func(c *Config) {
		c.Clients.Static = append(c.Clients.Static, storage.Client{ID: "svc", SecretHash: storage.Hash("svc-secret"), GrantTypes: []string{"client_credentials"}})
	})
	f.Fuzz(func(t *testing.T, body, contentType, authorization string) {
		r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		w := httptest.NewRecorder()
		s.token(w, r)
		if w.Code >= 500 {
			t.Fatalf("status %d for %q", w.Code, body)
		}
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("headers %v", w.Header())
		}
		var resp map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("not JSON: %q", w.Body.String())
		}
		if w.Code == http.StatusOK {
			if !strings.Contains(body, "client_credentials") {
				t.Fatalf("a token was issued for %q", body)
			}
			return
		}
		if code, _ := resp["error"].(string); code == "" {
			t.Fatalf("error response without an error code: %q", w.Body.String())
		}
	})
}
