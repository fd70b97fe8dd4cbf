package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func testClientRoundTrip(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	c := &storage.Client{ID: "c1", Name: "Demo", RedirectURIs: []string{"https://a.test/cb"}, SecretHash: storage.Hash("s3cret"), CreatedAt: t0}
	if err := s.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClient(ctx, "c1", time.Now())
	if err != nil || got.Name != "Demo" || got.RedirectURIs[0] != "https://a.test/cb" || !bytes.Equal(got.SecretHash, storage.Hash("s3cret")) {
		t.Fatalf("GetClient = %+v, %v", got, err)
	}
	// An unused client expires; one marked used stays.
	if err := s.PutClient(ctx, &storage.Client{ID: "fresh", CreatedAt: t0, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkClientUsed(ctx, "fresh", t0); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetClient(ctx, "fresh", time.Now()); err != nil || !c.ExpiresAt.IsZero() || !c.LastUsedAt.Equal(t0) {
		t.Fatalf("after MarkClientUsed: %+v, %v", c, err)
	}
	if err := s.PutClient(ctx, &storage.Client{ID: "stale", CreatedAt: t0, ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx, "stale", time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired client: %v", err)
	}
	if err := s.MarkClientUsed(ctx, "nobody", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("MarkClientUsed of an unknown client: %v", err)
	}
	if _, err := s.DeleteClient(ctx, "c1", t0, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx, "c1", time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: %v, want storage.ErrNotFound", err)
	}
	if err := s.PutClient(ctx, &storage.Client{}); err == nil {
		t.Fatal("a client without id was stored")
	}
}

// TestDeleteClientRevokesWhatItHolds: deleting a client revokes its
// families and denies the access tokens issued to it before, until they
// expire; other clients keep theirs.
func testDeleteClientRevokesWhatItHolds(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	for _, c := range []string{"doomed", "other"} {
		if err := s.PutClient(ctx, &storage.Client{ID: c}); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			id := fmt.Sprintf("%s-f%d", c, i)
			StartFamily(t, s, storage.RefreshFamily{ID: id, ClientID: c, ExpiresAt: t0.Add(time.Hour)}, id+"-rt", storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)})
		}
	}
	before := s.Revocations()
	deleted := t0.Add(time.Minute)
	revoked, err := s.DeleteClient(ctx, "doomed", deleted, deleted.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var revokedIDs []string
	for _, g := range revoked {
		for _, f := range g.Families {
			revokedIDs = append(revokedIDs, f.ID)
		}
	}
	if slices.Sort(revokedIDs); !slices.Equal(revokedIDs, []string{"doomed-f0", "doomed-f1"}) {
		t.Errorf("DeleteClient reports the families %v, want doomed-f0 doomed-f1", revokedIDs)
	}
	if s.Revocations() == before {
		t.Error("the revocation counter did not move")
	}
	for id, want := range map[string]bool{"doomed-f0": true, "doomed-f1": true, "other-f0": false, "other-f1": false} {
		if fam, _, err := s.GetRefreshToken(ctx, id+"-rt", t0); err != nil || fam.RevokedAt.IsZero() != !want {
			t.Errorf("family %s: %+v %v, want revoked %v", id, fam, err, want)
		}
	}
	for _, tc := range []struct {
		name   string
		ref    storage.AccessTokenRef
		denied bool
	}{
		{"issued before the deletion", storage.AccessTokenRef{ID: "j1", ClientID: "doomed", IssuedAt: t0}, true},
		{"issued in the same second", storage.AccessTokenRef{ID: "j2", ClientID: "doomed", IssuedAt: deleted}, true},
		{"another client's", storage.AccessTokenRef{ID: "j3", ClientID: "other", IssuedAt: t0}, false},
		{"a family token", storage.AccessTokenRef{ID: "j4", ClientID: "doomed", FamilyID: "doomed-f0", IssuedAt: deleted.Add(time.Second)}, true},
	} {
		if got, err := s.AccessTokenRevoked(ctx, tc.ref); err != nil || got != tc.denied {
			t.Errorf("%s: revoked %v %v, want %v", tc.name, got, err, tc.denied)
		}
	}
	// The record of the deletion lives as long as the tokens could.
	if _, err := s.DeleteExpired(ctx, deleted.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AccessTokenRevoked(ctx, storage.AccessTokenRef{ID: "j1", ClientID: "doomed", IssuedAt: t0}); got {
		t.Error("the deletion record outlived its tokens")
	}
}
