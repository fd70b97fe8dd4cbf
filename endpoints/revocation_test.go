package endpoints

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
)

// TestRevocationWithinTheSecond: a user-, client- or grant-wide
// revocation refuses the tokens issued before it, and not those issued
// after it in the same second (a token's iat has whole seconds), on both
// backends.
func TestRevocationWithinTheSecond(t *testing.T) {
	t.Parallel() // it waits for seconds to begin
	backends := map[string]func(*testing.T) func(*Config){
		"bolt": func(*testing.T) func(*Config) { return func(*Config) {} },
		"postgres": func(t *testing.T) func(*Config) {
			return func(c *Config) {
				pg := pgtest.Shared(t)
				db, err := postgres.Open(context.Background(), postgres.Config{DSN: pg.DSN, Schema: pg.Schema(t)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				c.Storage.Store = db.ForIssuer("https://auth.test")
			}
		},
	}
	for name, backend := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, backend(t), func(c *Config) { c.Tokens.RefreshFamilyLifetime, c.Tokens.RefreshTokenLifetime = time.Hour, time.Hour })
			ctx := context.Background()
			g := grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}
			for _, filter := range []storage.GrantFilter{{Subject: "alice"}, {ClientID: "pub1"}, {Subject: "alice", ClientID: "pub1", Resource: "https://auth.test/mcp"}} {
				// Start just after a second begins, so that all of it
				// happens within that second.
				time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 50*time.Millisecond)))
				mint := func() (string, time.Time) {
					now := time.Now()
					at, err := s.mintAccessToken(storage.NewAccessTokenID(now), g, now)
					if err != nil {
						t.Fatal(err)
					}
					return at.token, now
				}
				// A grant for the revocation to find.
				storeFamily(t, s, "alice", "pub1")
				before, t0 := mint()
				time.Sleep(2 * time.Millisecond)
				if n, err := s.RevokeGrants(ctx, filter, "admin"); err != nil || n == 0 {
					t.Fatalf("%+v: revoked %d grants (%v)", filter, n, err)
				}
				time.Sleep(2 * time.Millisecond)
				after, t1 := mint()
				if t0.Unix() != t1.Unix() {
					t.Fatalf("the test took more than its second: %v to %v", t0, t1)
				}
				if _, err := s.verifyAccessToken(ctx, before, time.Now()); err != errTokenRevoked {
					t.Errorf("%+v: the token issued before the revocation: %v, want revoked", filter, err)
				}
				if _, err := s.verifyAccessToken(ctx, after, time.Now()); err != nil {
					t.Errorf("%+v: the token issued after the revocation, in the same second: %v", filter, err)
				}
				if in := s.Inspect(ctx, after); !in.Valid {
					t.Errorf("%+v: tokens/inspect says %q", filter, in.Reason)
				}
			}
		})
	}
}

// storeFamily stores a refresh family of sub and client, a grant for a
// revocation to find.
func storeFamily(t *testing.T, s *Server, sub, client string) {
	t.Helper()
	now := time.Now()
	f := s.newRefreshFamily(grant{clientID: client, subject: sub, scope: "mcp:read", resource: "https://auth.test/mcp"}, now)
	code := randomToken()
	if err := s.cfg.Storage.Store.SaveAuthorizationCode(context.Background(), code, &storage.AuthorizationCode{ClientID: client, Subject: sub, Resource: "https://auth.test/mcp",
		RedirectURI: "https://client.test/cb", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cfg.Storage.Store.RedeemAuthorizationCode(context.Background(), code, now, storage.Issuance{AccessTokenID: randomID(), AccessTokenExpiresAt: now.Add(time.Hour)}, f); err != nil {
		t.Fatal(err)
	}
}

// TestAccessTokenIDTime: an id carries its issue time to the microsecond;
// a random id of an earlier release carries none.
func TestAccessTokenIDTime(t *testing.T) {
	now := time.Now()
	id := storage.NewAccessTokenID(now)
	if got, ok := storage.AccessTokenIDTime(id); !ok || !got.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("%s: %v %v, want %v", id, got, ok, now)
	}
	for _, old := range []string{randomID(), "jti-1", "", "0000000000.aaaaaaaaaaaaaaaa", "zzzzzzzzzzz.aaaaaaaaaaaaaaaa"} {
		if _, ok := storage.AccessTokenIDTime(old); ok {
			t.Errorf("%q has a time", old)
		}
	}
}
