package integration

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

// TestReloadWithChangedConfigKeepsData reloads the running Caddy with a
// different config on the same storage file: the reload must not wait on
// bbolt's file lock, and clients and the signing key must survive it.
func TestReloadWithChangedConfigKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	config := func(scopes string) string {
		return site(`
	oauth2_server {
		issuer https://mcp.example.com
		resource https://mcp.example.com/mcp
		scopes ` + scopes + `
		storage ` + path + `
	}`)
	}
	tester := start(t, config("mcp:read"))
	_, jwksBefore := get(t, tester, "/.well-known/jwks.json")

	// The running server holds the file; in this process the test shares
	// its handle, as the next config would.
	key, err := bolt.Key(path)
	if err != nil {
		t.Fatal(err)
	}
	file, err := bolt.Acquire(key, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Release(key)
	store := file.ForIssuer("https://mcp.example.com")
	if err := store.PutClient(context.Background(), &storage.Client{ID: "registered-before-reload", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	tester.InitServer(config("mcp:read mcp:write"), "caddyfile")
	if took := time.Since(began); t.Failed() || took > 5*time.Second {
		t.Fatalf("reload took %s (failed: %v)", took, t.Failed())
	}
	settle()
	_, meta := get(t, tester, "/.well-known/oauth-authorization-server")
	if !bytes.Contains(meta, []byte(`"scopes_supported":["mcp:read","mcp:write"]`)) {
		t.Fatalf("the new config is not serving: %s", meta)
	}
	if _, jwksAfter := get(t, tester, "/.well-known/jwks.json"); !bytes.Equal(jwksBefore, jwksAfter) {
		t.Fatalf("the signing key changed across the reload:\n%s\n%s", jwksBefore, jwksAfter)
	}
	if _, err := store.GetClient(context.Background(), "registered-before-reload", time.Now()); err != nil {
		t.Fatalf("client lost across the reload: %v", err)
	}
}

// TestBadConfigIsRefused loads bad configs into the running Caddy: each is
// refused with a message naming the option, and the old config keeps
// serving.
func TestBadConfigIsRefused(t *testing.T) {
	tester := start(t, site(`
	oauth2_server {
		issuer https://mcp.example.com
		resource https://mcp.example.com/mcp
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
	}`))
	for _, tc := range []struct{ block, want string }{
		{"issuer http://mcp.example.com\n resource https://mcp.example.com", `issuer \"http://mcp.example.com\": must use https`},
		{"issuer https://mcp.example.com\n resource https://mcp.example.com\n signing_secret {env.OAUTH2_INTEGRATION_UNSET}", "signing_secret: evaluated placeholder {env.OAUTH2_INTEGRATION_UNSET} is empty"},
		{"issuer https://mcp.example.com\n resource https://mcp.example.com\n user alice not-a-hash", `user \"alice\": password hash is not a bcrypt or argon2id hash`},
		{"issuer https://mcp.example.com\n resource https://mcp.example.com\n lifetime 1h", `unrecognized subdirective \"lifetime\"`},
	} {
		caddytest.AssertLoadError(t, site("oauth2_server {\n "+tc.block+"\n}"), "caddyfile", tc.want)
	}
	resp, _ := get(t, tester, "/.well-known/oauth-authorization-server")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the running config stopped serving after refused loads: %d", resp.StatusCode)
	}
}

// TestProtectedPathChallenge: anything that is not a protocol route or a
// public path needs a token.
func TestProtectedPathChallenge(t *testing.T) {
	tester := start(t, site(`
	oauth2_server {
		issuer https://mcp.example.com
		resource https://mcp.example.com/mcp
		storage `+filepath.Join(t.TempDir(), "oauth.db")+`
		public /healthz
	}`))
	resp, _ := get(t, tester, "/mcp")
	if resp.StatusCode != http.StatusUnauthorized ||
		resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"` {
		t.Fatalf("GET /mcp: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, body := get(t, tester, "/healthz"); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "upstream") {
		t.Fatalf("public path: %d %s", resp.StatusCode, body)
	}
}
