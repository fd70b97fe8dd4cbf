package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestIssuersShareAFileButNothingElse: two issuers on one file see none of
// each other's records, and an attempt through one changes nothing of the
// other's.
func testIssuersShareAFileButNothingElse(t *testing.T, open Opener) {
	file := open(t)
	a := file.ForIssuer("https://a.test")
	b := file.ForIssuer("https://b.test")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.PutClient(ctx, &storage.Client{ID: "c1", Name: "B's"}))
	must(b.SaveAuthorizationCode(ctx, "code", &storage.AuthorizationCode{ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}))
	StartFamily(t, b, storage.RefreshFamily{ID: "fb", ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}, "rt", storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)})
	must(b.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Resource: "https://r.test", Scope: "x"}))
	must(b.SaveSession(ctx, "sid", &storage.Session{Subject: "alice", ExpiresAt: t0.Add(time.Hour)}))
	must(b.SavePendingAuthorization(ctx, "pid", &storage.PendingAuthorization{Subject: "alice", CSRFHash: storage.Hash("csrf"), ExpiresAt: t0.Add(time.Hour)}))
	must(b.SaveAuthorizationCode(ctx, "code2", &storage.AuthorizationCode{ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}))

	notFound := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s at A: %v, want storage.ErrNotFound", name, err)
		}
	}
	_, err := a.GetClient(ctx, "c1", time.Now())
	notFound("client", err)
	notFound("mark client used", a.MarkClientUsed(ctx, "c1", t0))
	_, err = a.GetAuthorizationCode(ctx, "code", t0)
	notFound("code", err)
	_, err = a.RedeemAuthorizationCode(ctx, "code2", t0, storage.Issuance{AccessTokenID: "j"}, nil)
	notFound("redeem", err)
	_, _, err = a.GetRefreshToken(ctx, "rt", t0)
	notFound("refresh token", err)
	_, _, err = a.RotateRefreshToken(ctx, storage.Rotation{Presented: "rt", ClientID: "c1", NextToken: "rt2", Now: t0})
	notFound("rotation", err)
	notFound("revoke family", a.RevokeRefreshFamily(ctx, "fb", t0))
	_, err = a.GetConsent(ctx, "alice", "c1", "https://r.test")
	notFound("consent", err)
	_, err = a.GetSession(ctx, "sid", t0)
	notFound("session", err)
	must(a.DeleteSession(ctx, "sid"))
	_, _, err = a.AnswerPendingAuthorization(ctx, "pid", answer("csrf", "alice", "allow", t0))
	notFound("pending", err)
	_, err = a.DeleteClient(ctx, "c1", t0, t0.Add(time.Hour))
	must(err)

	// B's records are all still there, unchanged.
	if c, err := b.GetClient(ctx, "c1", time.Now()); err != nil || c.Name != "B's" || !c.LastUsedAt.IsZero() {
		t.Errorf("B's client: %+v %v", c, err)
	}
	if _, err := b.RedeemAuthorizationCode(ctx, "code2", t0, storage.Issuance{AccessTokenID: "j"}, nil); err != nil {
		t.Errorf("B's code: %v", err)
	}
	if _, _, err := b.RotateRefreshToken(ctx, storage.Rotation{Presented: "rt", ClientID: "c1", NextToken: "rt2", Now: t0, Next: storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)}}); err != nil {
		t.Errorf("B's refresh token: %v", err)
	}
	if revoked, _ := FamilyRevoked(b, "fb"); revoked {
		t.Error("B's family was revoked through A")
	}
	if _, err := b.GetConsent(ctx, "alice", "c1", "https://r.test"); err != nil {
		t.Errorf("B's consent: %v", err)
	}
	if _, err := b.GetSession(ctx, "sid", t0); err != nil {
		t.Errorf("B's session: %v", err)
	}
	if _, repeated, err := b.AnswerPendingAuthorization(ctx, "pid", answer("csrf", "alice", "allow", t0)); err != nil || repeated {
		t.Errorf("B's pending request: %v %v", repeated, err)
	}
}

func testCancelledContext(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutClient(ctx, &storage.Client{ID: "c"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutClient with a cancelled context: %v", err)
	}
}
