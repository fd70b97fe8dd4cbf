package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func testDeleteExpired(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutClient(ctx, &storage.Client{ID: "unused", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(s.PutClient(ctx, &storage.Client{ID: "kept", CreatedAt: t0}))
	must(s.SaveAuthorizationCode(ctx, "old-code", &storage.AuthorizationCode{ExpiresAt: t0.Add(time.Minute)}))
	must(s.SaveAuthorizationCode(ctx, "new-code", &storage.AuthorizationCode{ExpiresAt: t0.Add(3 * time.Hour)}))
	must(s.SaveSession(ctx, "old-sid", &storage.Session{ExpiresAt: t0.Add(time.Minute)}))
	must(s.RevokeAccessToken(ctx, "old-jti", t0.Add(time.Minute)))
	must(s.RevokeAccessToken(ctx, "new-jti", t0.Add(3*time.Hour)))
	StartFamily(t, s, storage.RefreshFamily{ID: "f", ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}, "rt", storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)})

	swept, err := s.DeleteExpired(ctx, t0.Add(2*time.Hour))
	must(err)
	// unused client, old code, the family's code, old session, old jti,
	// refresh token, family
	if swept.Deleted != 7 {
		t.Fatalf("deleted %d records, want 7", swept.Deleted)
	}
	if _, err := s.GetClient(ctx, "kept", time.Now()); err != nil {
		t.Fatal("a client without expiry was swept")
	}
	if _, err := s.GetAuthorizationCode(ctx, "new-code", t0.Add(2*time.Hour)); err != nil {
		t.Fatal("a live code was swept")
	}
	if revoked, _ := s.AccessTokenRevoked(ctx, storage.AccessTokenRef{ID: "new-jti"}); !revoked {
		t.Fatal("a live denylist entry was swept")
	}
	if swept, _ := s.DeleteExpired(ctx, t0.Add(2*time.Hour)); swept.Deleted != 0 {
		t.Fatalf("second sweep deleted %d", swept.Deleted)
	}
}

// TestSweptClientLosesItsFamilies: an unused registered client that
// expires has its families revoked (not those of another issuer's client
// of the same id), and swept families leave no index entries behind.
func testSweptClientLosesItsFamilies(t *testing.T, open Opener) {
	file := open(t)
	s, other := file.ForIssuer(testIssuer), file.ForIssuer("https://other.test")
	ctx := context.Background()
	if err := s.PutClient(ctx, &storage.Client{ID: "unused", ExpiresAt: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := other.PutClient(ctx, &storage.Client{ID: "unused"}); err != nil {
		t.Fatal(err)
	}
	StartFamily(t, s, storage.RefreshFamily{ID: "fu", ClientID: "unused", ExpiresAt: t0.Add(24 * time.Hour)}, "rt-u", storage.RefreshToken{ExpiresAt: t0.Add(24 * time.Hour)})
	StartFamily(t, other, storage.RefreshFamily{ID: "fo", ClientID: "unused", ExpiresAt: t0.Add(24 * time.Hour)}, "rt-o", storage.RefreshToken{ExpiresAt: t0.Add(24 * time.Hour)})
	swept, err := s.DeleteExpired(ctx, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(swept.Revoked) != 1 || swept.Revoked[0].ID != "fu" || swept.Revoked[0].ClientID != "unused" || swept.Revoked[0].Issuer != testIssuer {
		t.Errorf("the sweep reports the revoked families %+v, want fu", swept.Revoked)
	}
	if revoked, _ := FamilyRevoked(s, "fu"); !revoked {
		t.Fatal("the expired client's family is not revoked")
	}
	if revoked, _ := FamilyRevoked(other, "fo"); revoked {
		t.Fatal("another issuer's family of a client with the same id was revoked")
	}
	if _, err := s.DeleteExpired(ctx, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if gs, err := s.Grants(ctx, storage.GrantFilter{ClientID: "unused"}, t0.Add(48*time.Hour)); err != nil || len(gs) != 0 {
		t.Errorf("grants of the swept client: %v %v", gs, err)
	}
}
