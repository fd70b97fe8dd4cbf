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

// CheckConfiguredClient applies the policy to a Caddyfile client: public
// or with a secret, its token_endpoint_auth_method ("" for any of its
// kind), its grant types (none: the defaults) and how many redirect URIs
// it has.
func CheckConfiguredClient(public bool, method string, grants []string, redirects int) error {
	kind := secretClient
	if public {
		kind = publicClient
	}
	if method != "" {
		switch k, err := checkAuthMethod(method); {
		case err == nil && k != kind:
			return fmt.Errorf("token_endpoint_auth_method %q: a %s uses %s", method, kind, strings.Join(methodsOfKind(kind), " or "))
		case err != nil:
			return fmt.Errorf("token_endpoint_auth_method %q is not supported (%s)", method, strings.Join(methodsOfKind(kind), ", "))
		}
	}
	if len(grants) == 0 {
		grants = DefaultGrantTypes()
	}
	return grantTable(grantTypes).checkGrantTypes(grants, kind, redirects)
}
