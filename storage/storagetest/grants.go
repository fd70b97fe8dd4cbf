package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// GrantFamily starts a family for (sub, client, resource).
func GrantFamily(t *testing.T, s storage.Store, id, sub, client, resource string) {
	t.Helper()
	StartFamily(t, s, storage.RefreshFamily{ID: id, ClientID: client, Subject: sub, Resource: resource, Scope: "mcp:read", CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)},
		id+"-rt", storage.RefreshToken{ExpiresAt: t0.Add(24 * time.Hour)})
}

// TestGrantsListAndRevoke: grants join consents and families by (user,
// client, resource); they list by user, by client or all, and revoke one,
// a user's or a client's: consents forgotten, families revoked, access
// tokens denied, nothing else touched.
func testGrantsListAndRevoke(t *testing.T, open Opener) {
	ctx := context.Background()
	setup := func(t *testing.T) (storage.Backend, storage.Store) {
		file := open(t)
		s := file.ForIssuer(testIssuer)
		other := file.ForIssuer("https://other.test")
		for _, c := range []storage.Consent{
			{Subject: "alice", ClientID: "app1", Resource: "https://r/mcp", Scope: "mcp:read", GrantedAt: t0},
			{Subject: "alice", ClientID: "app2", Resource: "https://r/mcp", Scope: "mcp:write", GrantedAt: t0.Add(time.Minute)},
			{Subject: "alice2", ClientID: "app1", Resource: "https://r/mcp", Scope: "mcp:read", GrantedAt: t0.Add(2 * time.Minute)},
			{Subject: "bob", ClientID: "app1", Resource: "https://r/api", Scope: "api", GrantedAt: t0.Add(3 * time.Minute)},
		} {
			if err := s.PutConsent(ctx, &c); err != nil {
				t.Fatal(err)
			}
		}
		GrantFamily(t, s, "f-alice-app1", "alice", "app1", "https://r/mcp")
		GrantFamily(t, s, "f-bob-app1", "bob", "app1", "https://r/api")
		GrantFamily(t, s, "f-carol-trusted", "carol", "app3", "https://r/mcp") // no consent remembered
		GrantFamily(t, other, "f-other", "alice", "app1", "https://r/mcp")
		if err := other.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "app1", Resource: "https://r/mcp"}); err != nil {
			t.Fatal(err)
		}
		return file, s
	}
	names := func(gs []storage.Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, fmt.Sprintf("%s/%s/%s:%d", g.Subject, g.ClientID, g.Resource, len(g.Families)))
		}
		return out
	}
	_, s := setup(t)
	for _, tc := range []struct {
		f    storage.GrantFilter
		want string
	}{
		{storage.GrantFilter{}, "[alice/app1/https://r/mcp:1 carol/app3/https://r/mcp:1 alice/app2/https://r/mcp:0 alice2/app1/https://r/mcp:0 bob/app1/https://r/api:1]"},
		{storage.GrantFilter{Subject: "alice"}, "[alice/app1/https://r/mcp:1 alice/app2/https://r/mcp:0]"},
		{storage.GrantFilter{ClientID: "app1"}, "[alice/app1/https://r/mcp:1 alice2/app1/https://r/mcp:0 bob/app1/https://r/api:1]"},
		{storage.GrantFilter{Subject: "alice", ClientID: "app1", Resource: "https://r/mcp"}, "[alice/app1/https://r/mcp:1]"},
		{storage.GrantFilter{Subject: "nobody"}, "[]"},
	} {
		gs, err := s.Grants(ctx, tc.f, t0)
		if err != nil || fmt.Sprint(names(gs)) != tc.want {
			t.Errorf("Grants(%+v) = %v %v, want %s", tc.f, names(gs), err, tc.want)
		}
	}
	gs, _ := s.Grants(ctx, storage.GrantFilter{Subject: "carol"}, t0)
	if len(gs) != 1 || gs[0].Scope != "mcp:read" || !gs[0].GrantedAt.Equal(t0) || !gs[0].ExpiresAt.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("a grant without consent: %+v", gs)
	}
	if c, err := s.Counts(ctx, t0); err != nil || c.Grants != 5 {
		t.Errorf("storage.Counts = %+v %v", c, err)
	}

	token := func(sub, client, resource, family string) storage.AccessTokenRef {
		return storage.AccessTokenRef{ID: "j-" + sub + client, FamilyID: family, ClientID: client, Subject: sub, Resource: resource, IssuedAt: t0.Add(time.Minute)}
	}
	revokedAt := t0.Add(10 * time.Minute)
	for _, tc := range []struct {
		name    string
		f       storage.GrantFilter
		n       int
		denied  []storage.AccessTokenRef
		allowed []storage.AccessTokenRef
		left    string
	}{
		{"one grant", storage.GrantFilter{Subject: "alice", ClientID: "app1", Resource: "https://r/mcp"}, 1,
			[]storage.AccessTokenRef{token("alice", "app1", "https://r/mcp", "")},
			[]storage.AccessTokenRef{token("alice", "app2", "https://r/mcp", ""), token("alice", "app1", "https://r/api", ""), token("bob", "app1", "https://r/api", "f-bob-app1")},
			"[carol/app3/https://r/mcp:1 alice/app2/https://r/mcp:0 alice2/app1/https://r/mcp:0 bob/app1/https://r/api:1]"},
		{"a user", storage.GrantFilter{Subject: "alice"}, 2,
			[]storage.AccessTokenRef{token("alice", "app2", "https://r/mcp", ""), token("alice", "app9", "https://r/x", "")},
			[]storage.AccessTokenRef{token("alice2", "app1", "https://r/mcp", ""), token("bob", "app1", "https://r/api", "")},
			"[carol/app3/https://r/mcp:1 alice2/app1/https://r/mcp:0 bob/app1/https://r/api:1]"},
		{"a client", storage.GrantFilter{ClientID: "app1"}, 3,
			[]storage.AccessTokenRef{token("bob", "app1", "https://r/api", ""), token("machine", "app1", "https://r/mcp", "")},
			[]storage.AccessTokenRef{token("alice", "app2", "https://r/mcp", ""), token("carol", "app3", "https://r/mcp", "f-carol-trusted")},
			"[carol/app3/https://r/mcp:1 alice/app2/https://r/mcp:0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, s := setup(t)
			revoked, err := s.RevokeGrants(ctx, tc.f, revokedAt, revokedAt.Add(time.Hour))
			if err != nil || len(revoked) != tc.n {
				t.Fatalf("RevokeGrants = %d grants %v, want %d", len(revoked), err, tc.n)
			}
			for _, g := range revoked {
				for _, f := range g.Families {
					if f.Subject != g.Subject || f.ClientID != g.ClientID || f.Resource != g.Resource || !f.RevokedAt.Equal(revokedAt) {
						t.Errorf("reported family %+v of grant %s/%s/%s", f, g.Subject, g.ClientID, g.Resource)
					}
				}
			}
			for _, ref := range tc.denied {
				if revoked, _ := s.AccessTokenRevoked(ctx, ref); !revoked {
					t.Errorf("%+v not denied", ref)
				}
			}
			for _, ref := range tc.allowed {
				if revoked, _ := s.AccessTokenRevoked(ctx, ref); revoked {
					t.Errorf("%+v denied", ref)
				}
			}
			later := tc.denied[0]
			later.IssuedAt = revokedAt.Add(time.Second)
			if revoked, _ := s.AccessTokenRevoked(ctx, later); revoked {
				t.Error("a token issued after the revocation is denied")
			}
			if gs, _ := s.Grants(ctx, storage.GrantFilter{}, t0); fmt.Sprint(names(gs)) != tc.left {
				t.Errorf("left %v, want %s", names(gs), tc.left)
			}
			if _, err := s.GetConsent(ctx, tc.denied[0].Subject, tc.denied[0].ClientID, tc.denied[0].Resource); tc.name != "a client" && !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("the consent is still remembered: %v", err)
			}
			otherGrants, _ := file.ForIssuer("https://other.test").Grants(ctx, storage.GrantFilter{}, t0)
			if len(otherGrants) != 1 || len(otherGrants[0].Families) != 1 {
				t.Errorf("another issuer's grant was touched: %v", names(otherGrants))
			}
		})
	}
}
