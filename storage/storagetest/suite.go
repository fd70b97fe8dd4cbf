// Package storagetest is the conformance suite every storage backend runs:
// the same answers for every Store method and every rotation rule, on
// bbolt and on PostgreSQL alike.
package storagetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Opener returns a new, empty backend, closed when the test ends.
type Opener func(t *testing.T) storage.Backend

// Run runs the suite against a backend.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"ClientRoundTrip", testClientRoundTrip},
		{"RedeemAuthorizationCodeExactlyOnce", testRedeemAuthorizationCodeExactlyOnce},
		{"RotateRefreshToken", testRotateRefreshToken},
		{"RotateOutsideGraceRevokes", testRotateOutsideGraceRevokes},
		{"ParallelRotationsWithinGrace", testParallelRotationsWithinGrace},
		{"FamilyLifetimeCapsTokens", testFamilyLifetimeCapsTokens},
		{"RevokeRefreshFamilyAndAccessTokens", testRevokeRefreshFamilyAndAccessTokens},
		{"ConsentsAndSessions", testConsentsAndSessions},
		{"SigningKeysEnsureAndRotate", testSigningKeysEnsureAndRotate},
		{"SigningKeysReplaceAndRetire", testSigningKeysReplaceAndRetire},
		{"DeleteExpired", testDeleteExpired},
		{"CancelledContext", testCancelledContext},
		{"PendingAuthorizationIsAnsweredOnce", testPendingAuthorizationIsAnsweredOnce},
		{"RotateBurstToleratesUsedSuccessor", testRotateBurstToleratesUsedSuccessor},
		{"IssuersShareAFileButNothingElse", testIssuersShareAFileButNothingElse},
		{"DeleteClientRevokesWhatItHolds", testDeleteClientRevokesWhatItHolds},
		{"SweptClientLosesItsFamilies", testSweptClientLosesItsFamilies},
		{"UpstreamSignInIsTakenOnce", testUpstreamSignInIsTakenOnce},
		{"GrantsListAndRevoke", testGrantsListAndRevoke},
		{"ExportImport", testExportImport},
		{"StrictRotation", testStrictRotation},
		{"UpstreamTokens", testUpstreamTokens},
		{"RotationNarrow", testRotationNarrow},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const testIssuer = "https://auth.test"

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

func testRedeemAuthorizationCodeExactlyOnce(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	code := "code-" + strings.Repeat("x", 40)
	if err := s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{
		ClientID: "c1", Subject: "alice", Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
	}); err != nil {
		t.Fatal(err)
	}

	var wins, used atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := s.RedeemAuthorizationCode(ctx, code, t0.Add(time.Minute), storage.Issuance{AccessTokenID: fmt.Sprint("jti-", i)}, nil)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, storage.ErrAlreadyUsed):
				used.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || used.Load() != 19 {
		t.Fatalf("wins=%d used=%d, want 1 and 19", wins.Load(), used.Load())
	}

	// A replay reports what the winning redemption issued.
	c, err := s.RedeemAuthorizationCode(ctx, code, t0.Add(2*time.Minute), storage.Issuance{AccessTokenID: "late"}, nil)
	if !errors.Is(err, storage.ErrAlreadyUsed) || c == nil || !strings.HasPrefix(c.Issued.AccessTokenID, "jti-") {
		t.Fatalf("replay = %+v, %v", c, err)
	}
	// Expired codes are gone, used or not.
	if _, err := s.GetAuthorizationCode(ctx, code, t0.Add(10*time.Minute)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired code: %v", err)
	}
	if _, err := s.RedeemAuthorizationCode(ctx, "unknown", t0, storage.Issuance{}, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown code: %v", err)
	}
}

// StartFamily starts a refresh family the way a code redemption does.
func StartFamily(t *testing.T, s storage.Store, f storage.RefreshFamily, token string, first storage.RefreshToken) {
	t.Helper()
	ctx := context.Background()
	code := "code-for-" + f.ID
	if err := s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{ClientID: f.ClientID, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c, err := s.RedeemAuthorizationCode(ctx, code, t0, storage.Issuance{AccessTokenID: "jti-" + f.ID}, &storage.NewRefreshFamily{Family: f, Token: token, First: first})
	if err != nil || c.Issued.RefreshFamilyID != f.ID {
		t.Fatalf("redeeming with a new family: %+v, %v", c, err)
	}
}

func NewFamily(t *testing.T, s storage.Store, id, token string) {
	t.Helper()
	StartFamily(t, s,
		storage.RefreshFamily{ID: id, ClientID: "c1", Subject: "alice", Scope: "mcp:read", Resource: "https://r.test", CreatedAt: t0, ExpiresAt: t0.Add(90 * 24 * time.Hour)},
		token, storage.RefreshToken{Scope: "mcp:read", Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour)})
}

func Rotate(s storage.Store, presented, next string, at time.Time) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	return s.RotateRefreshToken(context.Background(), storage.Rotation{
		Presented: presented, ClientID: "c1", NextToken: next,
		Next: storage.RefreshToken{Scope: "mcp:read", Resource: "https://r.test", IssuedAt: at, ExpiresAt: at.Add(30 * 24 * time.Hour)},
		Now:  at, Grace: 30 * time.Second,
	})
}

func testRotateRefreshToken(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	NewFamily(t, s, "fam1", "rt0")

	fam, next, err := Rotate(s, "rt0", "rt1", t0.Add(time.Hour))
	if err != nil || fam.ID != "fam1" || next.FamilyID != "fam1" {
		t.Fatalf("rotate = %+v %+v %v", fam, next, err)
	}
	// Another client cannot use it, and its attempt changes nothing.
	if _, _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: "rt1", ClientID: "evil", NextToken: "x", Now: t0.Add(time.Hour)}); !errors.Is(err, storage.ErrWrongClient) {
		t.Fatalf("wrong client: %v", err)
	}
	// Within the grace window, before rt1 is used: a retry succeeds.
	if _, _, err := Rotate(s, "rt0", "rt1b", t0.Add(time.Hour+10*time.Second)); err != nil {
		t.Fatalf("retry within grace: %v", err)
	}
	// The successor is used; now the old token is a reuse and kills the family.
	if _, _, err := Rotate(s, "rt1", "rt2", t0.Add(time.Hour+20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Rotate(s, "rt0", "rt-evil", t0.Add(time.Hour+25*time.Second)); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("reuse after successor used: %v", err)
	}
	if revoked, err := FamilyRevoked(s, "fam1"); err != nil || !revoked {
		t.Fatalf("family revoked = %v, %v", revoked, err)
	}
	if _, _, err := Rotate(s, "rt2", "rt3", t0.Add(time.Hour+30*time.Second)); !errors.Is(err, storage.ErrRevoked) {
		t.Fatalf("rotate in revoked family: %v", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, "rt-evil", t0.Add(2*time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the reuse attempt's token was stored: %v", err)
	}
}

func testRotateOutsideGraceRevokes(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	NewFamily(t, s, "fam2", "a0")
	if _, _, err := Rotate(s, "a0", "a1", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Rotate(s, "a0", "a1b", t0.Add(31*time.Second)); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("reuse after grace: %v", err)
	}
	if _, _, err := Rotate(s, "a1", "a2", t0.Add(32*time.Second)); !errors.Is(err, storage.ErrRevoked) {
		t.Fatalf("successor after revocation: %v", err)
	}
}

func testParallelRotationsWithinGrace(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	NewFamily(t, s, "fam3", "p0")
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 10 {
		wg.Go(func() {
			if _, _, err := Rotate(s, "p0", fmt.Sprint("p1-", i), t0.Add(time.Second)); err != nil {
				failures.Add(1)
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of 10 parallel rotations failed", failures.Load())
	}
	if revoked, _ := FamilyRevoked(s, "fam3"); revoked {
		t.Fatal("parallel rotations revoked the family")
	}
}

func testFamilyLifetimeCapsTokens(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	StartFamily(t, s, storage.RefreshFamily{ID: "short", ClientID: "c1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		"s0", storage.RefreshToken{IssuedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour)})
	_, next, err := Rotate(s, "s0", "s1", t0.Add(time.Minute))
	if err != nil || !next.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("successor expiry = %v, %v; want the family's", next, err)
	}
	if _, _, err := Rotate(s, "s1", "s2", t0.Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("rotation after the family expired: %v", err)
	}
}

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

func testConsentsAndSessions(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	if err := s.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Scope: "mcp:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Scope: "mcp:read mcp:write", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1", ""); err != nil || c.Scope != "mcp:read mcp:write" {
		t.Fatalf("consent = %+v, %v", c, err)
	}
	if _, err := s.GetConsent(ctx, "alice", "c2", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consent for another client: %v", err)
	}
	// Consent is per resource.
	if err := s.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Resource: "https://r.test/api", Scope: "api:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1", "https://r.test/api"); err != nil || c.Scope != "api:read" {
		t.Fatalf("consent for the other resource = %+v, %v", c, err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1", ""); err != nil || c.Scope != "mcp:read mcp:write" {
		t.Fatalf("consent for the first resource after the second = %+v, %v", c, err)
	}
	if _, err := s.GetConsent(ctx, "alice", "c1", "https://r.test/other"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consent for a third resource: %v", err)
	}

	if err := s.SaveSession(ctx, "sid", &storage.Session{Subject: "alice", AuthTime: t0, ExpiresAt: t0.Add(12 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if sess, err := s.GetSession(ctx, "sid", t0.Add(time.Hour)); err != nil || sess.Subject != "alice" {
		t.Fatalf("session = %+v, %v", sess, err)
	}
	if _, err := s.GetSession(ctx, "sid", t0.Add(12*time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if err := s.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "sid", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}

// testSigningKeysReplaceAndRetire: a rotation from the signing key while
// another is pending replaces the pending key; a rotation at once takes
// over at once; a retired key stops verifying at once, the signing key
// cannot be retired, a pending one is dropped.
func testSigningKeysReplaceAndRetire(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	key := func(id string, created, activates time.Time) *storage.SigningKey {
		return &storage.SigningKey{ID: id, Algorithm: "ES256", PKCS8: []byte(id), CreatedAt: created, ActivatesAt: activates}
	}
	ids := func() string {
		keys, err := s.SigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return strings.Join(out, " ")
	}
	if _, err := s.EnsureSigningKey(ctx, func() (*storage.SigningKey, error) { return key("k1", t0, time.Time{}), nil }); err != nil {
		t.Fatal(err)
	}
	// k2 pending until t0+1h; a rotation from k1 at t0+10m replaces it.
	if err := s.RotateSigningKey(ctx, "k1", key("k2", t0, t0.Add(time.Hour)), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateSigningKey(ctx, "k1", key("k3", t0.Add(10*time.Minute), t0.Add(70*time.Minute)), t0.Add(3*time.Hour)); err != nil {
		t.Fatalf("rotating from the signing key while a rotation is pending: %v", err)
	}
	if got := ids(); got != "k3 k1" {
		t.Fatalf("keys after replacing the pending rotation: %s, want k3 k1", got)
	}
	// At once: k4 signs from its creation, k3 (pending) is dropped.
	if err := s.RotateSigningKey(ctx, "k1", key("k4", t0.Add(20*time.Minute), time.Time{}), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	keys, _ := s.SigningKeys(ctx)
	if got := ids(); got != "k4 k1" || storage.SigningNow(keys, t0.Add(21*time.Minute)).ID != "k4" {
		t.Fatalf("keys after a rotation at once: %s", got)
	}
	now := t0.Add(30 * time.Minute)
	for kid, want := range map[string]error{"k4": storage.ErrKeySigns, "nobody": storage.ErrNotFound} {
		if err := s.RetireSigningKey(ctx, kid, now); !errors.Is(err, want) {
			t.Errorf("retiring %s: %v, want %v", kid, err, want)
		}
	}
	if err := s.RetireSigningKey(ctx, "k1", now); err != nil {
		t.Fatal(err)
	}
	keys, _ = s.SigningKeys(ctx)
	for _, k := range keys {
		if k.ID == "k1" && !k.VerifyUntil.Equal(now) {
			t.Errorf("the retired key verifies until %v, want %v", k.VerifyUntil, now)
		}
	}
	if err := s.RetireSigningKey(ctx, "k1", now.Add(time.Second)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("retiring a key that no longer verifies: %v", err)
	}
	// A pending key is dropped.
	if err := s.RotateSigningKey(ctx, "k4", key("k5", now, now.Add(time.Hour)), now.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireSigningKey(ctx, "k5", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := ids(); strings.Contains(got, "k5") {
		t.Errorf("the pending key is still there: %s", got)
	}
	// ...and k4, which was to hand over to it, signs on.
	keys, _ = s.SigningKeys(ctx)
	if k := storage.SigningNow(keys, now.Add(48*time.Hour)); k == nil || k.ID != "k4" {
		t.Errorf("after dropping the pending key, the signing key a day later: %+v", k)
	}
}

func testSigningKeysEnsureAndRotate(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	calls := 0
	gen := func(id string, at time.Time) func() (*storage.SigningKey, error) {
		return func() (*storage.SigningKey, error) {
			calls++
			return &storage.SigningKey{ID: id, Algorithm: "ES256", PKCS8: []byte(id), CreatedAt: at}, nil
		}
	}
	k1, err := s.EnsureSigningKey(ctx, gen("k1", t0))
	if err != nil || k1.ID != "k1" {
		t.Fatal(k1, err)
	}
	k, err := s.EnsureSigningKey(ctx, gen("k-other", t0))
	if err != nil || k.ID != "k1" || calls != 1 {
		t.Fatalf("second Ensure = %v, %v after %d generations; want k1 and 1", k, err, calls)
	}
	k2 := &storage.SigningKey{ID: "k2", Algorithm: "ES256", PKCS8: []byte("k2"), CreatedAt: t0.Add(time.Hour), ActivatesAt: t0.Add(90 * time.Minute)}
	if err := s.RotateSigningKey(ctx, "k-wrong", k2, t0.Add(2*time.Hour)); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("rotating from a key that is not the active one: %v", err)
	}
	if err := s.RotateSigningKey(ctx, "k1", k2, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != "k2" || keys[1].ID != "k1" || !keys[1].RetiredAt.Equal(t0.Add(90*time.Minute)) || !keys[0].RetiredAt.IsZero() {
		t.Fatalf("keys after rotation = %+v, %v", keys, err)
	}
	// While k2 is pending, another rotation (a second node, say) is a conflict.
	k3 := &storage.SigningKey{ID: "k3", Algorithm: "ES256", PKCS8: []byte("k3"), CreatedAt: t0.Add(time.Hour + time.Minute)}
	if err := s.RotateSigningKey(ctx, "k2", k3, t0.Add(2*time.Hour)); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a second rotation while one is pending: %v", err)
	}
	if k, _ := s.EnsureSigningKey(ctx, gen("k3", t0)); k.ID != "k2" {
		t.Fatalf("active after rotation = %s, want k2", k.ID)
	}
	// The retired key is swept once its last token has expired.
	if _, err := s.DeleteExpired(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.SigningKeys(ctx); len(keys) != 1 || keys[0].ID != "k2" {
		t.Fatalf("keys after sweep = %+v", keys)
	}
}

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

func testCancelledContext(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutClient(ctx, &storage.Client{ID: "c"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutClient with a cancelled context: %v", err)
	}
}

// FamilyRevoked asks the store, as the guard does, whether a token of the
// family is revoked.
func FamilyRevoked(s storage.Store, id string) (bool, error) {
	return s.AccessTokenRevoked(context.Background(), storage.AccessTokenRef{ID: "some-jti", FamilyID: id, ClientID: "c1", IssuedAt: t0})
}

func answer(csrf, subject, decision string, at time.Time) storage.ConsentAnswer {
	return storage.ConsentAnswer{CSRF: csrf, Subject: subject, Decision: decision, Now: at, ReplayWindow: 2 * time.Minute}
}

// TestPendingAuthorizationIsAnsweredOnce: of concurrent answers one is
// recorded; the others, and a repeat within the replay window, are told
// that answer; later, or from someone else, the request is unknown.
func testPendingAuthorizationIsAnsweredOnce(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	save := func(id string) {
		t.Helper()
		if err := s.SavePendingAuthorization(ctx, id, &storage.PendingAuthorization{ClientID: "c1", Subject: "alice", CSRFHash: storage.Hash("csrf-" + id), ExpiresAt: t0.Add(10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	save("pid")
	var firsts, repeats atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			decision := []string{"allow", "deny"}[i%2]
			p, repeated, err := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", decision, t0))
			switch {
			case err != nil:
				t.Error(err)
			case repeated:
				repeats.Add(1)
			default:
				firsts.Add(1)
			}
			if err == nil && (p.Subject != "alice" || p.Decision == "") {
				t.Errorf("answer %+v", p)
			}
		})
	}
	wg.Wait()
	if firsts.Load() != 1 || repeats.Load() != 9 {
		t.Fatalf("%d first answers and %d repeats, want 1 and 9", firsts.Load(), repeats.Load())
	}
	first, _, _ := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", "allow", t0.Add(time.Minute)))
	last, repeated, err := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", "deny", t0.Add(2*time.Minute-time.Second)))
	if err != nil || !repeated || last.Decision != first.Decision {
		t.Fatalf("repeat at the end of the window: %+v %v %v", last, repeated, err)
	}
	if _, _, err := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", "allow", t0.Add(2*time.Minute))); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("repeat after the window: %v", err)
	}

	// Another subject, or a wrong CSRF token, is refused and uses the request up.
	for name, a := range map[string]storage.ConsentAnswer{
		"other subject": answer("csrf-p2", "mallory", "allow", t0),
		"no subject":    answer("csrf-p2", "", "allow", t0),
		"wrong csrf":    answer("forged", "alice", "allow", t0),
	} {
		save("p2")
		if _, _, err := s.AnswerPendingAuthorization(ctx, "p2", a); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, err := s.AnswerPendingAuthorization(ctx, "p2", answer("csrf-p2", "alice", "allow", t0)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: the request was not used up: %v", name, err)
		}
	}
	if err := s.SavePendingAuthorization(ctx, "old", &storage.PendingAuthorization{Subject: "alice", CSRFHash: storage.Hash("c"), ExpiresAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AnswerPendingAuthorization(ctx, "old", answer("c", "alice", "allow", t0.Add(time.Second))); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired pending request: %v", err)
	}
}

// TestRotateBurstToleratesUsedSuccessor: within Burst of the rotation a
// rotated token is accepted even though a sibling request already used a
// successor (interleaved parallel refreshes); after Burst, that is reuse.
func testRotateBurstToleratesUsedSuccessor(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	NewFamily(t, s, "burst", "b0")
	at := func(d time.Duration, presented, next string) error {
		_, _, err := s.RotateRefreshToken(context.Background(), storage.Rotation{
			Presented: presented, ClientID: "c1", NextToken: next,
			Next: storage.RefreshToken{IssuedAt: t0.Add(d), ExpiresAt: t0.Add(d + time.Hour)},
			Now:  t0.Add(d), Grace: 30 * time.Second, Burst: 2 * time.Second,
		})
		return err
	}
	if err := at(0, "b0", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := at(100*time.Millisecond, "b1", "b2"); err != nil { // a sibling uses the successor
		t.Fatal(err)
	}
	if err := at(200*time.Millisecond, "b0", "b1x"); err != nil { // a slower sibling still holds b0
		t.Fatalf("reuse within the burst window: %v", err)
	}
	if err := at(3*time.Second, "b0", "b1y"); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("reuse after the burst window with a used successor: %v", err)
	}
}

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

// TestUpstreamSignInIsTakenOnce: a started upstream sign-in is accepted
// by one callback only, not after it expires, and not at another issuer.
func testUpstreamSignInIsTakenOnce(t *testing.T, open Opener) {
	file := open(t)
	s := file.ForIssuer(testIssuer)
	ctx := context.Background()
	save := func(state string, expires time.Time) {
		t.Helper()
		if err := s.SaveUpstreamSignIn(ctx, state, &storage.UpstreamSignIn{Provider: "google", BrowserHash: storage.Hash("b"), ReturnTo: "/oauth/authorize?x", ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	save("st", t0.Add(10*time.Minute))
	browser := storage.Hash("b")
	if _, err := file.ForIssuer("https://other.test").TakeUpstreamSignIn(ctx, "st", browser, t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("taken at another issuer: %v", err)
	}
	// Another browser (or none) is refused and takes nothing.
	for _, other := range [][]byte{storage.Hash("a"), nil} {
		if _, err := s.TakeUpstreamSignIn(ctx, "st", other, t0); !errors.Is(err, storage.ErrWrongBrowser) {
			t.Fatalf("taken by another browser: %v", err)
		}
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if u, err := s.TakeUpstreamSignIn(ctx, "st", browser, t0); err == nil && u.Provider == "google" {
				wins.Add(1)
			} else if !errors.Is(err, storage.ErrNotFound) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d callbacks took the sign-in, want 1", wins.Load())
	}
	save("old", t0)
	if _, err := s.TakeUpstreamSignIn(ctx, "old", browser, t0.Add(time.Second)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired sign-in: %v", err)
	}
}

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

// TestExportImport: an export imports into an empty file with every record
// (signing keys excepted); importing it again adds nothing; a differing
// record refuses the whole import.
func testExportImport(t *testing.T, open Opener) {
	ctx := context.Background()
	srcFile := open(t)
	src := srcFile.ForIssuer(testIssuer)
	if err := src.PutClient(ctx, &storage.Client{ID: "c1", Name: "App", SecretHash: storage.Hash("secret-of-c1")}); err != nil {
		t.Fatal(err)
	}
	GrantFamily(t, src, "fam", "alice", "c1", "https://r/mcp")
	if err := src.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Resource: "https://r/mcp", Scope: "mcp:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.EnsureSigningKey(ctx, func() (*storage.SigningKey, error) {
		return &storage.SigningKey{ID: "k1", Algorithm: "ES256", PKCS8: []byte("PRIVATE-KEY-BYTES"), CreatedAt: t0}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	n, err := srcFile.Export(ctx, &export)
	if err != nil || n == 0 {
		t.Fatalf("export: %d %v", n, err)
	}
	for _, secret := range []string{"secret-of-c1", "fam-rt", "PRIVATE-KEY-BYTES", base64.StdEncoding.EncodeToString([]byte("PRIVATE-KEY-BYTES"))} {
		if strings.Contains(export.String(), secret) {
			t.Errorf("the export holds %q", secret)
		}
	}

	dstFile := open(t)
	dst := dstFile.ForIssuer(testIssuer)
	added, err := dstFile.Import(ctx, bytes.NewReader(export.Bytes()))
	if err != nil || added != n {
		t.Fatalf("import: %d of %d, %v", added, n, err)
	}
	if c, err := dst.GetClient(ctx, "c1", time.Now()); err != nil || !bytes.Equal(c.SecretHash, storage.Hash("secret-of-c1")) {
		t.Fatalf("imported client: %+v %v", c, err)
	}
	if gs, _ := dst.Grants(ctx, storage.GrantFilter{Subject: "alice"}, t0); len(gs) != 1 || len(gs[0].Families) != 1 {
		t.Fatalf("imported grants: %+v", gs)
	}
	if keys, _ := dst.SigningKeys(ctx); len(keys) != 0 {
		t.Fatal("signing keys were imported")
	}
	if again, err := dstFile.Import(ctx, bytes.NewReader(export.Bytes())); err != nil || again != 0 {
		t.Fatalf("importing twice: %d %v", again, err)
	}
	if _, _, err := dst.RotateRefreshToken(ctx, storage.Rotation{Presented: "fam-rt", ClientID: "c1", NextToken: "fam-rt2", Now: t0.Add(time.Minute),
		Next: storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)}}); err != nil {
		t.Fatalf("the imported refresh token: %v", err)
	}
	// A record that differs: nothing is imported.
	if err := dst.PutClient(ctx, &storage.Client{ID: "c1", Name: "Changed"}); err != nil {
		t.Fatal(err)
	}
	otherFile := open(t)
	other := otherFile.ForIssuer(testIssuer)
	other.PutClient(ctx, &storage.Client{ID: "c1", Name: "Other"})
	if _, err := otherFile.Import(ctx, bytes.NewReader(export.Bytes())); !errors.Is(err, storage.ErrImportConflict) {
		t.Fatalf("import over a different record: %v", err)
	}
	if gs, _ := other.Grants(ctx, storage.GrantFilter{}, t0); len(gs) != 0 {
		t.Fatal("a refused import wrote records")
	}
	for name, bad := range map[string]string{"not JSON": "{", "unknown type": `{"type":"nope","record":{}}`, "keys": `{"type":"signing_key","record":{}}`,
		"code without hash": `{"type":"authorization_code","record":{}}`} {
		if _, err := otherFile.Import(ctx, strings.NewReader(bad)); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
}

// testStrictRotation: with no grace, every second use of a rotated token
// is a reuse, even at the same instant (or with an earlier clock).
func testStrictRotation(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	NewFamily(t, s, "strict", "s0")
	strict := func(next string, at time.Time) error {
		_, _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: "s0", ClientID: "c1", NextToken: next,
			Next: storage.RefreshToken{ExpiresAt: at.Add(time.Hour)}, Now: at})
		return err
	}
	if err := strict("s1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := strict("s1b", t0.Add(time.Minute-time.Second)); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("a second use with grace 0: %v", err)
	}
	if revoked, _ := FamilyRevoked(s, "strict"); !revoked {
		t.Fatal("the family is not revoked")
	}
}

// TestUpstreamTokens: a sign-in's upstream tokens are taken once; a
// grant's are read, replaced, kept per issuer, deleted with the grant (by
// RevokeGrants, DeleteClient or RevokeRefreshFamily), swept when expired,
// and never exported.
func testUpstreamTokens(t *testing.T, open Opener) {
	ctx := context.Background()
	file := open(t)
	s, other := file.ForIssuer(testIssuer), file.ForIssuer("https://other.test")
	put := func(sub, client, resource, sealed string, expires time.Time) {
		t.Helper()
		if err := s.PutUpstreamToken(ctx, &storage.UpstreamToken{Subject: sub, ClientID: client, Resource: resource, Provider: "corp",
			Sealed: []byte(sealed), ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(st storage.Store, sub, client, resource string) string {
		t.Helper()
		u, err := st.GetUpstreamToken(ctx, sub, client, resource, t0)
		if errors.Is(err, storage.ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(u.Sealed)
	}

	put("alice", "", "session:1", "pending-SEALED", t0.Add(time.Hour))
	u, err := s.TakeUpstreamToken(ctx, "alice", "", "session:1", t0)
	if err != nil || string(u.Sealed) != "pending-SEALED" || u.Provider != "corp" || u.Issuer != testIssuer {
		t.Fatalf("take: %+v %v", u, err)
	}
	if _, err := s.TakeUpstreamToken(ctx, "alice", "", "session:1", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("taken twice: %v", err)
	}

	put("alice", "c1", "https://r/mcp", "v1-SEALED", t0.Add(time.Hour))
	put("alice", "c1", "https://r/mcp", "v2-SEALED", t0.Add(time.Hour))
	if got := has(s, "alice", "c1", "https://r/mcp"); got != "v2-SEALED" {
		t.Fatalf("after a replacement: %q", got)
	}
	if got := has(other, "alice", "c1", "https://r/mcp"); got != "" {
		t.Fatalf("another issuer reads %q", got)
	}
	if _, err := s.GetUpstreamToken(ctx, "alice", "c1", "https://r/mcp", t0.Add(2*time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired: %v", err)
	}

	var export bytes.Buffer
	if _, err := file.Export(ctx, &export); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(export.String(), "v2-SEALED") || strings.Contains(export.String(), base64.StdEncoding.EncodeToString([]byte("v2-SEALED"))) {
		t.Error("the export holds upstream tokens")
	}

	// Deleted with the grant, whichever way it is revoked.
	GrantFamily(t, s, "fam-a", "alice", "c1", "https://r/mcp")
	if _, err := s.RevokeGrants(ctx, storage.GrantFilter{Subject: "alice", ClientID: "c1", Resource: "https://r/mcp"}, t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := has(s, "alice", "c1", "https://r/mcp"); got != "" {
		t.Errorf("RevokeGrants left %q", got)
	}
	GrantFamily(t, s, "fam-b", "bob", "c1", "https://r/mcp")
	put("bob", "c1", "https://r/mcp", "bob-SEALED", t0.Add(time.Hour))
	if err := s.RevokeRefreshFamily(ctx, "fam-b", t0); err != nil {
		t.Fatal(err)
	}
	if got := has(s, "bob", "c1", "https://r/mcp"); got != "" {
		t.Errorf("RevokeRefreshFamily left %q", got)
	}
	if err := s.PutClient(ctx, &storage.Client{ID: "c2"}); err != nil {
		t.Fatal(err)
	}
	GrantFamily(t, s, "fam-c", "carol", "c2", "https://r/mcp")
	put("carol", "c2", "https://r/mcp", "carol-SEALED", t0.Add(time.Hour))
	put("carol", "c3", "https://r/mcp", "kept-SEALED", t0.Add(time.Hour))
	if _, err := s.DeleteClient(ctx, "c2", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := has(s, "carol", "c2", "https://r/mcp"); got != "" {
		t.Errorf("DeleteClient left %q", got)
	}
	if got := has(s, "carol", "c3", "https://r/mcp"); got != "kept-SEALED" {
		t.Errorf("another client's tokens: %q", got)
	}
	if err := s.DeleteUpstreamToken(ctx, "carol", "c3", "https://r/mcp"); err != nil || has(s, "carol", "c3", "https://r/mcp") != "" {
		t.Errorf("DeleteUpstreamToken: %v", err)
	}
	if err := s.DeleteUpstreamToken(ctx, "nobody", "c3", "https://r/mcp"); err != nil {
		t.Errorf("deleting nothing: %v", err)
	}

	put("dave", "c1", "https://r/mcp", "dave-SEALED", t0.Add(time.Minute))
	if _, err := s.DeleteExpired(ctx, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUpstreamToken(ctx, "dave", "c1", "https://r/mcp", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("not swept: %v", err)
	}
}

// TestRotationNarrow: a rotation's Narrow sees the family; its error ends
// the rotation with nothing written (even with grace 0 the token rotates
// afterwards), and its scope, with the family's resource, is the next
// token's.
func testRotationNarrow(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	StartFamily(t, s, storage.RefreshFamily{ID: "narrow", ClientID: "c1", Subject: "alice", Scope: "mcp:read mcp:write", Resource: "https://r/mcp",
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, "n0", storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)})
	refused := errors.New("scope exceeds the grant")
	rotate := func(next string, narrow func(*storage.RefreshFamily) (string, error)) (*storage.RefreshToken, error) {
		_, tok, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: "n0", ClientID: "c1", NextToken: next,
			Next: storage.RefreshToken{ExpiresAt: t0.Add(time.Hour)}, Now: t0.Add(time.Minute), Narrow: narrow})
		return tok, err
	}
	var seen string
	if _, err := rotate("n1", func(f *storage.RefreshFamily) (string, error) { seen = f.Scope; return "", refused }); !errors.Is(err, refused) {
		t.Fatalf("a refusing Narrow: %v", err)
	}
	if seen != "mcp:read mcp:write" {
		t.Fatalf("Narrow saw scope %q", seen)
	}
	tok, err := rotate("n2", func(f *storage.RefreshFamily) (string, error) { return "mcp:read", nil })
	if err != nil || tok.Scope != "mcp:read" || tok.Resource != "https://r/mcp" {
		t.Fatalf("after the refusal (grace 0): %+v %v", tok, err)
	}
	if _, got, err := s.GetRefreshToken(ctx, "n2", t0); err != nil || got.Scope != "mcp:read" || got.Resource != "https://r/mcp" {
		t.Fatalf("the stored successor: %+v %v", got, err)
	}
	if _, _, err := s.GetRefreshToken(ctx, "n1", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the refused rotation's successor exists: %v", err)
	}
}
