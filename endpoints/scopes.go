package endpoints

import (
	"fmt"
	"slices"
	"strings"
)

// ScopeDefinition describes one scope of the catalogue: what the consent
// and connected-apps pages call it, and the scopes it implies.
type ScopeDefinition struct {
	Name        string
	Description string
	Implies     []string
}

// scopeCatalogue knows the scope hierarchy: a token holding a scope
// satisfies every requirement of the scopes it implies, transitively.
type scopeCatalogue struct {
	descriptions map[string]string
	implied      map[string][]string // scope -> every scope it implies
}

// NewScopeCatalogue checks the definitions against the catalogue (every
// implied scope must be in it, and no scope may imply itself through a
// cycle) and resolves the hierarchy.
func NewScopeCatalogue(catalogue []string, defs []ScopeDefinition) (scopeCatalogue, error) {
	c := scopeCatalogue{descriptions: map[string]string{}, implied: map[string][]string{}}
	direct := map[string][]string{}
	for _, d := range defs {
		if _, dup := direct[d.Name]; dup {
			return c, fmt.Errorf("scope %s: defined twice", d.Name)
		}
		for _, im := range d.Implies {
			if !slices.Contains(catalogue, im) {
				return c, fmt.Errorf("scope %s: implies %s, which is not in the scope catalogue", d.Name, im)
			}
		}
		direct[d.Name] = d.Implies
		if d.Description != "" {
			c.descriptions[d.Name] = d.Description
		}
	}
	for name := range direct {
		seen, err := closure(name, direct, nil)
		if err != nil {
			return c, err
		}
		if len(seen) > 0 {
			c.implied[name] = seen
		}
	}
	return c, nil
}

// closure is every scope name implies, or an error naming a cycle.
func closure(name string, direct map[string][]string, path []string) ([]string, error) {
	if slices.Contains(path, name) {
		return nil, fmt.Errorf("scope %s: implies itself (%s)", path[0], strings.Join(append(path, name), " -> "))
	}
	path = append(path, name)
	var out []string
	for _, im := range direct[name] {
		sub, err := closure(im, direct, path)
		if err != nil {
			return nil, err
		}
		out = append(append(out, im), sub...)
	}
	return dedupe(out), nil
}

// effective is the granted scopes and everything they imply (made once
// per verified token: accessTokenClaims.prepare).
func (c scopeCatalogue) effective(granted []string) []string {
	out := slices.Clone(granted)
	for _, g := range granted {
		out = append(out, c.implied[g]...)
	}
	return dedupe(out)
}

// missing is the required scopes that have (effective scopes) lacks.
func (c scopeCatalogue) missing(have, required []string) []string {
	var out []string
	for _, r := range required {
		if !slices.Contains(have, r) {
			out = append(out, r)
		}
	}
	return out
}

// scopeItem is a scope as the pages show it; it prints as its name, so a
// custom template's {{.}} keeps working.
type scopeItem struct {
	Name, Description string
}

func (s scopeItem) String() string { return s.Name }

// items describes scopes for a page.
func (c scopeCatalogue) items(scopes []string) []scopeItem {
	out := make([]scopeItem, len(scopes))
	for i, s := range scopes {
		out[i] = scopeItem{s, c.descriptions[s]}
	}
	return out
}

// offlineAccess is the OpenID Connect scope that asks for a refresh token.
// MCP clients add it to their requests; it is no permission of the
// resource.
const offlineAccess = "offline_access"

// acceptedScopes are OpenID Connect scopes that OIDC-minded clients ask
// for by default. While this server issues no ID tokens they are accepted
// in requests and left out of the grant (refresh tokens follow the
// client's grant_types), unless the catalogue lists them, which makes them
// ordinary scopes.
var acceptedScopes = []string{offlineAccess, "openid", "email", "profile"}

// acceptedOnly reports whether sc is accepted without being granted.
func (s *core) acceptedOnly(sc string) bool {
	return slices.Contains(acceptedScopes, sc) && !slices.Contains(s.cfg.Scopes, sc)
}

// grantable is a scope parameter's scopes without those accepted only.
func (s *core) grantable(scope string) []string {
	return slices.DeleteFunc(splitScope(scope), s.acceptedOnly)
}

// resourceScopes drops offline_access from scopes the resource publishes
// or asks for (protected-resource metadata, challenges).
func resourceScopes(scopes []string) []string {
	return slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return sc == offlineAccess })
}

// joinScope is the scope parameter for a list of scopes, without repeats.
func joinScope(scopes []string) string {
	return strings.Join(dedupe(scopes), " ")
}

// splitScope splits a scope parameter on spaces (RFC 6749 §3.3).
func splitScope(scope string) []string {
	var out []string
	for _, s := range strings.Split(scope, " ") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ValidScopeToken enforces RFC 6749 §3.3:
// scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func ValidScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func dedupe(list []string) []string {
	var out []string
	for _, e := range list {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}
