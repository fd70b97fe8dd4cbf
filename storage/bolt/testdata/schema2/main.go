// Command schema2 wrote schema2.db and schema2.jsonl, the storage file of
// the last release with schema 2 (commit 4a14ddb) and its export, which
// TestUpgradeFromSchema2 opens with this build. It was run in a checkout
// of that commit:
//
//	go run ./storage/bolt/testdata/schema2 storage/bolt/testdata
//
// It does not build against later schemas, and need not: the files it
// wrote are what is tested.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

func main() {
	dir := os.Args[1]
	path := filepath.Join(dir, "schema2.db")
	os.Remove(path)
	f, err := bolt.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	s := f.ForIssuer("https://auth.example.com")
	now := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	never := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	alice := storage.Profile{Provider: "corp", Email: "alice@example.com", Name: "Alice", PreferredUsername: "alice"}
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	check(s.PutClient(ctx, &storage.Client{ID: "client-1", Name: "Claude", RedirectURIs: []string{"http://127.0.0.1/callback"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, Scope: "mcp:read mcp:write", CreatedAt: now}))
	check(s.PutConsent(ctx, &storage.Consent{Subject: "corp:alice", ClientID: "client-1", Resource: "https://mcp.example.com/mcp",
		Scope: "mcp:read mcp:write", GrantedAt: now}))
	check(s.SaveSession(ctx, "session-1", &storage.Session{Subject: "corp:alice", Profile: alice, AuthTime: now, ExpiresAt: never}))
	// Three families: one rotated once (its first token has a
	// successor), one whose token is narrowed to a smaller scope, one
	// revoked.
	for i, scope := range []string{"mcp:read mcp:write", "mcp:read", "mcp:read mcp:write"} {
		code := fmt.Sprintf("code-%d", i)
		check(s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{ClientID: "client-1", RedirectURI: "http://127.0.0.1/callback",
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Scope: "mcp:read mcp:write", Resource: "https://mcp.example.com/mcp",
			Subject: "corp:alice", Profile: alice, AuthTime: now, IssuedAt: now, ExpiresAt: never}))
		fam := &storage.NewRefreshFamily{
			Family: storage.RefreshFamily{ID: fmt.Sprintf("family-%d", i), ClientID: "client-1", Subject: "corp:alice", Profile: alice,
				Scope: "mcp:read mcp:write", Resource: "https://mcp.example.com/mcp", AuthTime: now, CreatedAt: now, ExpiresAt: never},
			Token: fmt.Sprintf("refresh-%d", i),
			First: storage.RefreshToken{Scope: scope, Resource: "https://mcp.example.com/mcp", IssuedAt: now, ExpiresAt: never},
		}
		_, err := s.RedeemAuthorizationCode(ctx, code, now, storage.Issuance{AccessTokenID: fmt.Sprintf("jti-%d", i),
			AccessTokenExpiresAt: now.Add(time.Hour), RefreshFamilyID: fam.Family.ID}, fam)
		check(err)
	}
	later := now.Add(time.Minute)
	_, _, err = s.RotateRefreshToken(ctx, storage.Rotation{Presented: "refresh-0", ClientID: "client-1", NextToken: "refresh-0-next",
		Next: storage.RefreshToken{Scope: "mcp:read mcp:write", Resource: "https://mcp.example.com/mcp", IssuedAt: later, ExpiresAt: never}, Now: later})
	check(err)
	check(s.RevokeRefreshFamily(ctx, "family-2", later))
	out, err := os.Create(filepath.Join(dir, "schema2.jsonl"))
	check(err)
	_, err = f.Export(ctx, out)
	check(err)
	check(out.Close())
	check(f.Close())
}
