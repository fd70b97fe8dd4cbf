package endpoints

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// introspectionServer has a resource server allowed to introspect every
// token.
func introspectionServer(t testing.TB, mutate ...func(*Config)) *Server {
	return newTestServer(t, append([]func(*Config){func(c *Config) {
		c.Clients.Static = append(c.Clients.Static, storage.Client{ID: "rs", SecretHash: storage.Hash("rs-secret-0123456789"), IntrospectAll: true,
			TokenEndpointAuthMethod: "client_secret_basic"})
	}}, mutate...)...)
}

func postIntrospect(s *Server, token string) (*httptest.ResponseRecorder, map[string]any) {
	r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("rs", "rs-secret-0123456789")
	w := httptest.NewRecorder()
	s.introspect(w, r)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w, out
}

// TestIntrospectionSharesTheGuardCache: introspection answers from the
// verified-token cache, sees a revocation at once, and does not take the
// guard's first use of a grant (grant_first_used) from it.
func TestIntrospectionSharesTheGuardCache(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := introspectionServer(t, func(c *Config) { c.Audit = zap.New(core) })
	g := grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}
	at, err := s.mintAccessToken("jti-i", g, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.audit.issued("jti-i", g, "authorization_code", time.Now())
	for range 2 {
		if w, out := postIntrospect(s, at.token); w.Code != http.StatusOK || out["active"] != true || out["sub"] != "alice" {
			t.Fatalf("introspection: %d %v", w.Code, out)
		}
	}
	if s.tokens.len() != 1 {
		t.Fatalf("%d cached tokens after introspection, want 1", s.tokens.len())
	}
	w, r := guardRequest(at.token)
	s.Guard(w, r, okNext)
	if w.Code != http.StatusNoContent || logs.FilterMessage(eventGrantFirstUsed).Len() != 1 {
		t.Fatalf("guard after introspection: %d, %d grant_first_used events", w.Code, logs.FilterMessage(eventGrantFirstUsed).Len())
	}
	if err := s.cfg.Storage.Store.RevokeAccessToken(r.Context(), "jti-i", at.expiresAt); err != nil {
		t.Fatal(err)
	}
	if _, out := postIntrospect(s, at.token); out["active"] != false || len(out) != 1 {
		t.Fatalf("after revocation: %v", out)
	}
}

// BenchmarkIntrospection: a resource server introspecting one access
// token again and again (ES256), through the handler:
//
//	go test ./endpoints -run '^$' -bench Introspection -benchmem
func BenchmarkIntrospection(b *testing.B) {
	s := introspectionServer(b)
	key, err := GenerateSigningKey(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	keys, err := NewKeySet([]storage.SigningKey{*key}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	s.keys.Store(keys)
	at, err := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if w, _ := postIntrospect(s, at.token); w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
