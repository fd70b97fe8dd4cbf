package storage

import (
	"cmp"
	"slices"
	"time"
)

// Matches reports whether a grant of (subject, client, resource) is one
// the filter selects.
func (f GrantFilter) Matches(subject, clientID, resource string) bool {
	return (f.Subject == "" || subject == f.Subject) && (f.ClientID == "" || clientID == f.ClientID) && (f.Resource == "" || resource == f.Resource)
}

// JoinGrants groups consents and live families (already filtered) into
// grants by (user, client, resource), oldest first; a grant without a
// remembered consent takes its time and scope from its oldest family.
// Every backend answers Grants with it.
func JoinGrants(consents []Consent, families []RefreshFamily) []Grant {
	type key struct{ subject, client, resource string }
	byKey := map[key]*Grant{}
	grant := func(k key) *Grant {
		g, ok := byKey[k]
		if !ok {
			g = &Grant{Subject: k.subject, ClientID: k.client, Resource: k.resource}
			byKey[k] = g
		}
		return g
	}
	for _, c := range consents {
		g := grant(key{c.Subject, c.ClientID, c.Resource})
		g.Scope, g.GrantedAt = c.Scope, c.GrantedAt
	}
	for _, fam := range families {
		g := grant(key{fam.Subject, fam.ClientID, fam.Resource})
		g.Families = append(g.Families, fam)
	}
	out := make([]Grant, 0, len(byKey))
	for _, g := range byKey {
		consented := !g.GrantedAt.IsZero()
		for _, fam := range g.Families {
			if !consented && (g.GrantedAt.IsZero() || fam.CreatedAt.Before(g.GrantedAt)) {
				g.GrantedAt, g.Scope = fam.CreatedAt, fam.Scope
			}
			g.LastUsedAt = latest(g.LastUsedAt, fam.LastUsedAt)
			g.ExpiresAt = latest(g.ExpiresAt, fam.ExpiresAt)
		}
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Grant) int {
		return cmp.Or(a.GrantedAt.Compare(b.GrantedAt), cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.Resource, b.Resource))
	})
	return out
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
