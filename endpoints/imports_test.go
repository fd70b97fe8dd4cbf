package endpoints

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestVetImport: imported clients meet registration's rules, privileges
// need the flag, clients are labelled imported, and short-lived sign-in
// state is left out.
func TestVetImport(t *testing.T) {
	rec := func(c storage.Client) storage.ExportRecord {
		raw, _ := json.Marshal(c)
		return storage.ExportRecord{Type: storage.ExportClient, Record: raw}
	}
	web := storage.Client{ID: "web", RedirectURIs: []string{"https://app.test/cb"}, GrantTypes: []string{"authorization_code"}, TokenEndpointAuthMethod: "none", Origin: storage.OriginRegistered, RegisteredWithToken: true}
	with := func(f func(*storage.Client)) storage.Client { c := web; f(&c); return c }
	secret := storage.Hash("s")
	for _, tc := range []struct {
		name   string
		client storage.Client
		keep   bool
		want   string // "" for accepted
	}{
		{"a web client", web, false, ""},
		{"javascript redirect", with(func(c *storage.Client) { c.RedirectURIs = []string{"javascript:alert(1)"} }), true, `redirect URI "javascript:alert(1)"`},
		{"no redirect", with(func(c *storage.Client) { c.RedirectURIs = nil }), false, "authorization_code needs between 1 and 20 redirect_uris"},
		{"trusted", with(func(c *storage.Client) { c.Trusted = true }), false, "it is trusted"},
		{"trusted, kept", with(func(c *storage.Client) { c.Trusted = true }), true, ""},
		{"introspect_all", with(func(c *storage.Client) { c.IntrospectAll = true }), false, "introspect every token"},
		{"machine", storage.Client{ID: "m", SecretHash: secret, GrantTypes: []string{"client_credentials"}}, false, "use client_credentials"},
		{"machine, kept", storage.Client{ID: "m", SecretHash: secret, GrantTypes: []string{"client_credentials"}}, true, ""},
		{"machine without a secret", storage.Client{ID: "m", GrantTypes: []string{"client_credentials"}}, true, "client_credentials needs a secret"},
		{"implicit", with(func(c *storage.Client) { c.GrantTypes = []string{"implicit"} }), true, `grant_type "implicit"`},
		{"none with a secret", with(func(c *storage.Client) { c.SecretHash = secret }), true, "has a secret"},
		{"unknown method", with(func(c *storage.Client) { c.TokenEndpointAuthMethod = "tls_client_auth" }), true, "not supported"},
		{"control characters in the name", with(func(c *storage.Client) { c.Name = "a\nb" }), true, "client_name"},
		{"javascript logo", with(func(c *storage.Client) { c.LogoURI = "javascript:x" }), true, "logo_uri"},
		{"bad scope", with(func(c *storage.Client) { c.Scope = `a "b"` }), true, "scope"},
	} {
		kept, _, err := VetImport([]storage.ExportRecord{rec(tc.client)}, tc.keep)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var c storage.Client
		json.Unmarshal(kept[0].Record, &c)
		if c.Origin != storage.OriginImported || c.RegisteredWithToken {
			t.Errorf("%s: origin %q, registered with token %v", tc.name, c.Origin, c.RegisteredWithToken)
		}
	}
	var skippedTypes []storage.ExportRecord
	for _, typ := range []string{storage.ExportSession, storage.ExportPending, storage.ExportUpstreamSignIn, storage.ExportCode, storage.ExportConsent} {
		skippedTypes = append(skippedTypes, storage.ExportRecord{Type: typ, Record: json.RawMessage(`{}`)})
	}
	kept, skipped, err := VetImport(skippedTypes, false)
	if err != nil || len(kept) != 1 || kept[0].Type != storage.ExportConsent || len(skipped) != 4 {
		t.Fatalf("kept %v, skipped %v, %v", kept, skipped, err)
	}
}

// FuzzVetImport: whatever a client record holds, vetting never panics,
// and a client it accepts is labelled imported, with redirect URIs
// registration would accept and no privilege.
func FuzzVetImport(f *testing.F) {
	f.Add(`{"client_id":"web","redirect_uris":["https://app.test/cb"],"grant_types":["authorization_code"],"token_endpoint_auth_method":"none"}`)
	f.Add(`{"client_id":"evil","redirect_uris":["javascript:alert(1)"],"trusted":true,"introspect_all":true}`)
	f.Add(`{"client_id":"m","secret_hash":"AAAA","grant_types":["client_credentials"]}`)
	f.Add(`{"client_id":1}`)
	f.Fuzz(func(t *testing.T, record string) {
		kept, _, err := VetImport([]storage.ExportRecord{{Type: storage.ExportClient, Record: json.RawMessage(record)}}, false)
		if err != nil {
			return
		}
		var c storage.Client
		if err := json.Unmarshal(kept[0].Record, &c); err != nil {
			t.Fatal(err)
		}
		if c.Origin != storage.OriginImported || c.Trusted || c.IntrospectAll || slices.Contains(c.GrantTypes, "client_credentials") {
			t.Fatalf("accepted %+v", c)
		}
		for _, u := range c.RedirectURIs {
			if ValidateRedirectURI(u) != nil {
				t.Fatalf("accepted redirect URI %q", u)
			}
		}
	})
}
