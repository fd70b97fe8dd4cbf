package endpoints

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// An import is read as untrusted input: it may come from anywhere, and a
// crafted one must not add a client that redirects to a script, skips
// consent or introspects every token, nor a signed-in browser.

// skippedOnImport are the record types an import leaves out: short-lived
// sign-in state (a session, a pending consent, an upstream sign-in, an
// authorization code) that would let whoever wrote the file act as a user.
// Nothing is lost: users sign in again.
var skippedOnImport = map[string]bool{
	storage.ExportSession:        true,
	storage.ExportPending:        true,
	storage.ExportUpstreamSignIn: true,
	storage.ExportCode:           true,
}

// VetImport checks the records of an export before they are imported:
// clients are held to the rules registration applies, labelled
// OriginImported, and may be trusted, introspect every token or use
// client_credentials only with keepPrivileges; short-lived sign-in state
// is left out and counted in skipped, by type.
func VetImport(records []storage.ExportRecord, keepPrivileges bool) (kept []storage.ExportRecord, skipped map[string]int, err error) {
	skipped = map[string]int{}
	for i, rec := range records {
		if skippedOnImport[rec.Type] {
			skipped[rec.Type]++
			continue
		}
		if rec.Type == storage.ExportClient {
			var c storage.Client
			if err := json.Unmarshal(rec.Record, &c); err != nil {
				return nil, nil, invalid("record %d: not a client", i+1)
			}
			if err := vetImportedClient(&c, keepPrivileges); err != nil {
				return nil, nil, invalid("record %d: client %q: %v", i+1, truncate(c.ID, maxLoggedName), err)
			}
			c.Origin, c.RegisteredWithToken = storage.OriginImported, false
			if rec.Record, err = json.Marshal(&c); err != nil {
				return nil, nil, err
			}
		}
		kept = append(kept, rec)
	}
	return kept, skipped, nil
}

// vetImportedClient applies registration's rules to an imported client.
func vetImportedClient(c *storage.Client, keepPrivileges bool) error {
	switch {
	case c.ID == "" || len(c.ID) > maxURILength || !utf8.ValidString(c.ID) || strings.ContainsAny(c.ID, "\x00\r\n"):
		return fmt.Errorf("the client_id is empty, too long or not text")
	case utf8.RuneCountInString(c.Name) > maxClientNameLength || !utf8.ValidString(c.Name) || strings.ContainsAny(c.Name, "\x00\r\n"):
		return fmt.Errorf("client_name must be at most %d characters of text", maxClientNameLength)
	case !keepPrivileges && c.Trusted:
		return fmt.Errorf("it is trusted (skips consent): import with --keep-privileges if you mean it")
	case !keepPrivileges && c.IntrospectAll:
		return fmt.Errorf("it may introspect every token: import with --keep-privileges if you mean it")
	}
	kind := kindOf(c)
	if m := c.TokenEndpointAuthMethod; m != "" {
		switch registered, err := checkAuthMethod(m); {
		case err != nil:
			return err
		case registered != kind:
			return fmt.Errorf("token_endpoint_auth_method %s is for a %s, and this is a %s", m, registered, kind)
		}
	}
	if err := checkClientKeys(kind, c.JWKS, c.JWKSURI, testAllowedHosts); err != nil {
		return err
	}
	all := grantTable(grantTypes)
	if all.needsRedirect(c.GrantTypes) && len(c.RedirectURIs) == 0 || len(c.RedirectURIs) > maxRedirectURIs {
		return fmt.Errorf("authorization_code needs between 1 and %d redirect_uris", maxRedirectURIs)
	}
	if err := all.checkGrantTypes(c.GrantTypes, kind, len(c.RedirectURIs)); err != nil {
		return err
	}
	if !keepPrivileges && allowsGrant(c, grantClientCredentials) {
		return fmt.Errorf("it may use client_credentials: import with --keep-privileges if you mean it")
	}
	for _, rt := range c.ResponseTypes {
		if rt != "code" {
			return fmt.Errorf("response_type %q is not supported", rt)
		}
	}
	for _, u := range c.RedirectURIs {
		if len(u) > maxURILength || !utf8.ValidString(u) {
			return fmt.Errorf("a redirect URI is too long or not UTF-8")
		}
		if err := ValidateRedirectURI(u); err != nil {
			return fmt.Errorf("redirect URI %q: %w", u, err)
		}
	}
	for _, sc := range splitScope(c.Scope) {
		if !ValidScopeToken(sc) {
			return fmt.Errorf("scope %q is not a valid scope token", sc)
		}
	}
	for name, v := range map[string]string{"client_uri": c.ClientURI, "logo_uri": c.LogoURI} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); len(v) > maxURILength || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return fmt.Errorf("%s must be an https URL of at most %d characters", name, maxURILength)
		}
	}
	return nil
}
