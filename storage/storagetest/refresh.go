package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

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

// testFamilyKeyBinding: a family's DPoP key binding is kept with it, and
// every rotation's decision (Narrow) sees it.
func testFamilyKeyBinding(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	StartFamily(t, s, storage.RefreshFamily{ID: "bound", ClientID: "c1", Subject: "alice", Resource: "https://r.test", CreatedAt: t0,
		ExpiresAt: t0.Add(time.Hour), JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
		"rt-bound", storage.RefreshToken{Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	var seen string
	fam, _, err := s.RotateRefreshToken(context.Background(), storage.Rotation{Presented: "rt-bound", ClientID: "c1", NextToken: "rt-next",
		Next: storage.RefreshToken{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}, Now: t0.Add(time.Minute),
		Narrow: func(f *storage.RefreshFamily) (string, error) { seen = f.JKT; return f.Scope, nil }})
	if err != nil || fam.JKT != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" || seen != fam.JKT {
		t.Fatalf("rotating a bound family: %+v (Narrow saw %q) %v", fam, seen, err)
	}

	// An unbound family is bound by a rotation that says so (Bind), and
	// keeps the key: a later Bind does not change it.
	StartFamily(t, s, storage.RefreshFamily{ID: "later", ClientID: "c1", Subject: "alice", Resource: "https://r.test", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		"rt-later", storage.RefreshToken{Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	for i, bind := range []string{"", "first-key", "second-key"} {
		fam, _, err := s.RotateRefreshToken(context.Background(), storage.Rotation{Presented: []string{"rt-later", "rt-later-0", "rt-later-1"}[i],
			ClientID: "c1", NextToken: fmt.Sprint("rt-later-", i), Next: storage.RefreshToken{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)},
			Now: t0.Add(time.Duration(i+1) * time.Minute), Bind: bind})
		want := map[int]string{0: "", 1: "first-key", 2: "first-key"}[i]
		if err != nil || fam.JKT != want {
			t.Fatalf("rotation %d (Bind %q): %+v %v, want JKT %q", i, bind, fam, err, want)
		}
	}
}
