package endpoints

import (
	"net/url"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestAcceptedScopes: openid, email, profile and offline_access are
// accepted and dropped unless the catalogue lists them; a request left
// with nothing to grant gets the default.
func TestAcceptedScopes(t *testing.T) {
	client := &storage.Client{ID: "c"}
	for _, tc := range []struct {
		catalogue []string
		scope     string
		want      string
	}{
		{[]string{"mcp:read"}, "openid email profile offline_access mcp:read", "mcp:read"},
		{[]string{"mcp:read", "mcp:write"}, "openid", "mcp:read mcp:write"},
		{[]string{"mcp:read", "openid"}, "openid mcp:read", "openid mcp:read"},
		{[]string{"mcp:read", "email"}, "email", "email"},
		{[]string{"mcp:read"}, "", "mcp:read"},
	} {
		s := newTestServer(t, func(c *Config) { c.Scopes = tc.catalogue })
		got, err := s.requestedScope(client, url.Values{"scope": {tc.scope}})
		if err != nil || got != tc.want {
			t.Errorf("catalogue %v, scope %q: %q %v, want %q", tc.catalogue, tc.scope, got, err, tc.want)
		}
	}
}
