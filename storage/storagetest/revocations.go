package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func testRevokeRefreshFamilyAndAccessTokens(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	NewFamily(t, s, "fam4", "r0")
	if err := s.RevokeRefreshFamily(ctx, "fam4", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Rotate(s, "r0", "r1", t0.Add(time.Second)); !errors.Is(err, storage.ErrRevoked) {
		t.Fatalf("rotate after revoke: %v", err)
	}
	if err := s.RevokeRefreshFamily(ctx, "nope", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("revoke unknown family: %v", err)
	}
	if revoked, err := FamilyRevoked(s, "nope"); revoked || err != nil {
		t.Fatalf("unknown family revoked = %v, %v", revoked, err)
	}

	if err := s.RevokeAccessToken(ctx, "jti-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for jti, want := range map[string]bool{"jti-1": true, "jti-2": false} {
		if got, err := s.AccessTokenRevoked(ctx, storage.AccessTokenRef{ID: jti}); got != want || err != nil {
			t.Fatalf("AccessTokenRevoked(%s) = %v, %v", jti, got, err)
		}
	}
}

// FamilyRevoked asks the store, as the guard does, whether a token of the
// family is revoked.
func FamilyRevoked(s storage.Store, id string) (bool, error) {
	return s.AccessTokenRevoked(context.Background(), storage.AccessTokenRef{ID: "some-jti", FamilyID: id, ClientID: "c1", IssuedAt: t0})
}
