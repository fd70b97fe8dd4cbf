package endpoints

import (
	"fmt"
	"slices"
	"strings"
)

// The one policy on what a client may be, whoever makes it: Caddyfile
// validation (CheckConfiguredClient), registration (validateMetadata),
// client ID metadata documents (clientFromDocument), the operator's
// clients (CreateClient) and imports (vetImportedClient). Each of them adds
// only what is its own (registration's redirect URI limits, an import's
// --keep-privileges).

// checkAuthMethod checks a token_endpoint_auth_method and returns the
// kind of client it makes.
func checkAuthMethod(name string) (clientKind, error) {
	m := authMethodNamed(name)
	if m == nil {
		return 0, fmt.Errorf("token_endpoint_auth_method %q is not supported (%s)", name,
			strings.Join(authMethodNames(nil), ", "))
	}
	return m.kind, nil
}

// checkGrantTypes checks the grant types of a client of kind k with
// redirects redirect URIs against the grants of t.
func (t grantTable) checkGrantTypes(grants []string, k clientKind, redirects int) error {
	for _, name := range grants {
		switch g := t.named(name); {
		case g == nil:
			return fmt.Errorf("grant_type %q is not supported (%s)", name, strings.Join(t.names(), ", "))
		case g.confidentialOnly && !k.confidential():
			return fmt.Errorf("%s needs a secret: a public client cannot use it", name)
		case g.redirect && redirects == 0:
			return fmt.Errorf("needs at least one redirect_uri for %s", name)
		}
	}
	return nil
}

// needsRedirect reports whether any of grantTypes is a grant whose
// clients register redirect URIs (and answer response_type code).
func (t grantTable) needsRedirect(grants []string) bool {
	return slices.ContainsFunc(grants, func(name string) bool {
		g := t.named(name)
		return g != nil && g.redirect
	})
}

// ConfiguredClient is what CheckConfiguredClient judges of a Caddyfile
// client.
type ConfiguredClient struct {
	// Public: no secret, no keys.
	Public bool
	// JWKS (a JWK Set) or JWKSURI: the keys of a private_key_jwt client.
	JWKS    []byte
	JWKSURI string
	// Method is the token_endpoint_auth_method ("" for any of its kind).
	Method string
	// GrantTypes (none: the defaults) and how many redirect URIs it has.
	GrantTypes []string
	Redirects  int
}

// CheckConfiguredClient applies the policy to a Caddyfile client: public,
// with keys, or else with a secret.
func CheckConfiguredClient(c ConfiguredClient) error {
	kind := secretClient
	switch {
	case len(c.JWKS) > 0 || c.JWKSURI != "":
		kind = keyClient
	case c.Public:
		kind = publicClient
	}
	if c.Method != "" {
		switch k, err := checkAuthMethod(c.Method); {
		case err == nil && k != kind:
			return fmt.Errorf("token_endpoint_auth_method %q: a %s uses %s", c.Method, kind, strings.Join(methodsOfKind(kind), " or "))
		case err != nil:
			return fmt.Errorf("token_endpoint_auth_method %q is not supported (%s)", c.Method, strings.Join(methodsOfKind(kind), ", "))
		}
	}
	if err := checkClientKeys(kind, c.JWKS, c.JWKSURI, testAllowedHosts); err != nil {
		return err
	}
	grants := c.GrantTypes
	if len(grants) == 0 {
		grants = DefaultGrantTypes()
	}
	return grantTable(grantTypes).checkGrantTypes(grants, kind, c.Redirects)
}
