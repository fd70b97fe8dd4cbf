package upstream

import (
	"fmt"
	"slices"
	"strings"
)

// Rules say who may sign in through a provider. Several rules are OR-ed;
// no rule at all admits everyone the provider signs in. E-mail rules
// match only an address the provider marked verified.
type Rules struct {
	// Domains admit a verified e-mail address in one of these domains.
	Domains []string
	// Emails admit these verified addresses.
	Emails []string
	// Claims admit an ID token whose claim equals the value, or (an
	// array) contains it (oidc).
	Claims []ClaimRule
	// Orgs admit members of these GitHub organisations; Teams members of
	// these "org/team" teams; Users these GitHub logins.
	Orgs, Teams, Users []string
}

// ClaimRule is one allow_claim rule.
type ClaimRule struct {
	Claim, Value string
}

// Empty reports whether there are no rules.
func (r Rules) Empty() bool {
	return len(r.Domains)+len(r.Emails)+len(r.Claims)+len(r.Orgs)+len(r.Teams)+len(r.Users) == 0
}

// needsOrgs reports whether a GitHub rule asks about memberships.
func (r Rules) needsOrgs() bool { return len(r.Orgs)+len(r.Teams) > 0 }

// Admit reports whether any rule lets the identity in.
func (r Rules) Admit(id *Identity) bool {
	if r.Empty() {
		return true
	}
	if id.Email != "" {
		_, domain, _ := strings.Cut(id.Email, "@")
		if containsFold(r.Emails, id.Email) || containsFold(r.Domains, domain) {
			return true
		}
	}
	for _, c := range r.Claims {
		if claimHas(id.Claims[c.Claim], c.Value) {
			return true
		}
	}
	for _, org := range id.Orgs {
		if containsFold(r.Orgs, org) {
			return true
		}
	}
	for _, team := range id.Teams {
		if containsFold(r.Teams, team) {
			return true
		}
	}
	return id.PreferredUsername != "" && len(r.Users) > 0 && containsFold(r.Users, id.PreferredUsername)
}

// claimHas reports whether a claim's value is want, or an array holding it.
func claimHas(v any, want string) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v == want
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return claimHas(e, want) })
	case map[string]any:
		return false
	default: // numbers and booleans, as JSON writes them
		return fmt.Sprint(v) == want
	}
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(e string) bool { return strings.EqualFold(e, s) })
}
