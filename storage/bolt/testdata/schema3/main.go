// Command schema3 wrote schema3.db and schema3.jsonl, the storage file of
// the last release with schema 3 (commit 393de67) and its export, which
// TestUpgradeFromSchema3 opens with this build. It was run in a checkout
// of that commit:
//
//	go run ./storage/bolt/testdata/schema3 storage/bolt/testdata
//
// Two issuers share the file, and their families share a client id and a
// user, so that the indexes rebuilt by the upgrade can be seen to keep
// them apart. It need not build against later schemas: the files it
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
	path := filepath.Join(dir, "schema3.db")
	os.Remove(path)
	f, err := bolt.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 12, 0, 0, 123456789, time.UTC)
	never := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	// family starts a family of (sub, client, resource) in issuer's store,
	// whose first token is "refresh-<id>".
	family := func(issuer, id, sub, client, resource string) {
		s := f.ForIssuer(issuer)
		profile := storage.Profile{Provider: "corp", Email: sub + "@example.com"}
		code := "code-" + id
		check(s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{ClientID: client, RedirectURI: "http://127.0.0.1/callback",
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Scope: "mcp:read", Resource: resource,
			Subject: sub, Profile: profile, AuthTime: now, IssuedAt: now, ExpiresAt: never}))
		fam := &storage.NewRefreshFamily{
			Family: storage.RefreshFamily{ID: id, ClientID: client, Subject: sub, Profile: profile,
				Scope: "mcp:read", Resource: resource, AuthTime: now, CreatedAt: now, ExpiresAt: never},
			Token: "refresh-" + id,
			First: storage.RefreshToken{Scope: "mcp:read", Resource: resource, IssuedAt: now, ExpiresAt: never},
		}
		_, err := s.RedeemAuthorizationCode(ctx, code, now, storage.Issuance{AccessTokenID: "jti-" + id,
			AccessTokenExpiresAt: now.Add(time.Hour), RefreshFamilyID: id}, fam)
		check(err)
	}
	const a, b = "https://auth.example.com", "https://other.example.com"
	for i, g := range [][3]string{
		{"corp:alice", "client-1", "https://mcp.example.com/mcp"},
		{"corp:alice", "client-2", "https://mcp.example.com/mcp"},
		{"corp:bob", "client-1", "https://mcp.example.com/mcp"},
		{"corp:alice", "client-1", "https://api.example.com"},
	} {
		family(a, fmt.Sprintf("family-%d", i), g[0], g[1], g[2])
	}
	family(b, "family-other", "corp:alice", "client-1", "https://mcp.example.com/mcp")
	check(f.ForIssuer(a).RevokeRefreshFamily(ctx, "family-2", now.Add(time.Minute)))
	out, err := os.Create(filepath.Join(dir, "schema3.jsonl"))
	check(err)
	_, err = f.Export(ctx, out)
	check(err)
	check(out.Close())
	check(f.Close())
}
