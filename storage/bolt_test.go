package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func openTemp(t *testing.T) *Bolt {
	t.Helper()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestClientRoundTrip(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	c := &Client{ID: "c1", Name: "Demo", RedirectURIs: []string{"https://a.test/cb"}, SecretHash: Hash("s3cret"), CreatedAt: t0}
	if err := s.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClient(ctx, "c1")
	if err != nil || got.Name != "Demo" || got.RedirectURIs[0] != "https://a.test/cb" || !bytes.Equal(got.SecretHash, Hash("s3cret")) {
		t.Fatalf("GetClient = %+v, %v", got, err)
	}
	// An unused client expires; one marked used stays.
	if err := s.PutClient(ctx, &Client{ID: "fresh", CreatedAt: t0, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkClientUsed(ctx, "fresh", t0); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetClient(ctx, "fresh"); err != nil || !c.ExpiresAt.IsZero() || !c.LastUsedAt.Equal(t0) {
		t.Fatalf("after MarkClientUsed: %+v, %v", c, err)
	}
	if err := s.PutClient(ctx, &Client{ID: "stale", CreatedAt: t0, ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx, "stale"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired client: %v", err)
	}
	if err := s.MarkClientUsed(ctx, "nobody", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkClientUsed of an unknown client: %v", err)
	}
	if err := s.DeleteClient(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	if err := s.PutClient(ctx, &Client{}); err == nil {
		t.Fatal("a client without id was stored")
	}
}

func TestRedeemAuthorizationCodeExactlyOnce(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	code := "code-" + strings.Repeat("x", 40)
	if err := s.SaveAuthorizationCode(ctx, code, &AuthorizationCode{
		ClientID: "c1", Subject: "alice", Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
	}); err != nil {
		t.Fatal(err)
	}

	var wins, used atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := s.RedeemAuthorizationCode(ctx, code, t0.Add(time.Minute), Issuance{AccessTokenID: fmt.Sprint("jti-", i)}, nil)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrAlreadyUsed):
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
	c, err := s.RedeemAuthorizationCode(ctx, code, t0.Add(2*time.Minute), Issuance{AccessTokenID: "late"}, nil)
	if !errors.Is(err, ErrAlreadyUsed) || c == nil || !strings.HasPrefix(c.Issued.AccessTokenID, "jti-") {
		t.Fatalf("replay = %+v, %v", c, err)
	}
	// Expired codes are gone, used or not.
	if _, err := s.GetAuthorizationCode(ctx, code, t0.Add(10*time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired code: %v", err)
	}
	if _, err := s.RedeemAuthorizationCode(ctx, "unknown", t0, Issuance{}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown code: %v", err)
	}
}

// startFamily starts a refresh family the way a code redemption does.
func startFamily(t *testing.T, s *Bolt, f RefreshFamily, token string, first RefreshToken) {
	t.Helper()
	ctx := context.Background()
	code := "code-for-" + f.ID
	if err := s.SaveAuthorizationCode(ctx, code, &AuthorizationCode{ClientID: f.ClientID, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c, err := s.RedeemAuthorizationCode(ctx, code, t0, Issuance{AccessTokenID: "jti-" + f.ID}, &NewRefreshFamily{Family: f, Token: token, First: first})
	if err != nil || c.Issued.RefreshFamilyID != f.ID {
		t.Fatalf("redeeming with a new family: %+v, %v", c, err)
	}
}

func newFamily(t *testing.T, s *Bolt, id, token string) {
	t.Helper()
	startFamily(t, s,
		RefreshFamily{ID: id, ClientID: "c1", Subject: "alice", Scope: "mcp:read", Resource: "https://r.test", CreatedAt: t0, ExpiresAt: t0.Add(90 * 24 * time.Hour)},
		token, RefreshToken{Scope: "mcp:read", Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour)})
}

func rotate(s *Bolt, presented, next string, at time.Time) (*RefreshFamily, *RefreshToken, error) {
	return s.RotateRefreshToken(context.Background(), Rotation{
		Presented: presented, ClientID: "c1", NextToken: next,
		Next: RefreshToken{Scope: "mcp:read", Resource: "https://r.test", IssuedAt: at, ExpiresAt: at.Add(30 * 24 * time.Hour)},
		Now:  at, Grace: 30 * time.Second,
	})
}

func TestRotateRefreshToken(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	newFamily(t, s, "fam1", "rt0")

	fam, next, err := rotate(s, "rt0", "rt1", t0.Add(time.Hour))
	if err != nil || fam.ID != "fam1" || next.FamilyID != "fam1" {
		t.Fatalf("rotate = %+v %+v %v", fam, next, err)
	}
	// Another client cannot use it, and its attempt changes nothing.
	if _, _, err := s.RotateRefreshToken(ctx, Rotation{Presented: "rt1", ClientID: "evil", NextToken: "x", Now: t0.Add(time.Hour)}); !errors.Is(err, ErrWrongClient) {
		t.Fatalf("wrong client: %v", err)
	}
	// Within the grace window, before rt1 is used: a retry succeeds.
	if _, _, err := rotate(s, "rt0", "rt1b", t0.Add(time.Hour+10*time.Second)); err != nil {
		t.Fatalf("retry within grace: %v", err)
	}
	// The successor is used; now the old token is a reuse and kills the family.
	if _, _, err := rotate(s, "rt1", "rt2", t0.Add(time.Hour+20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rotate(s, "rt0", "rt-evil", t0.Add(time.Hour+25*time.Second)); !errors.Is(err, ErrReused) {
		t.Fatalf("reuse after successor used: %v", err)
	}
	if revoked, err := s.RefreshFamilyRevoked(ctx, "fam1"); err != nil || !revoked {
		t.Fatalf("family revoked = %v, %v", revoked, err)
	}
	if _, _, err := rotate(s, "rt2", "rt3", t0.Add(time.Hour+30*time.Second)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("rotate in revoked family: %v", err)
	}
	if _, _, err := s.GetRefreshToken(ctx, "rt-evil", t0.Add(2*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the reuse attempt's token was stored: %v", err)
	}
}

func TestRotateOutsideGraceRevokes(t *testing.T) {
	s := openTemp(t)
	newFamily(t, s, "fam2", "a0")
	if _, _, err := rotate(s, "a0", "a1", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rotate(s, "a0", "a1b", t0.Add(31*time.Second)); !errors.Is(err, ErrReused) {
		t.Fatalf("reuse after grace: %v", err)
	}
	if _, _, err := rotate(s, "a1", "a2", t0.Add(32*time.Second)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("successor after revocation: %v", err)
	}
}

func TestParallelRotationsWithinGrace(t *testing.T) {
	s := openTemp(t)
	newFamily(t, s, "fam3", "p0")
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 10 {
		wg.Go(func() {
			if _, _, err := rotate(s, "p0", fmt.Sprint("p1-", i), t0.Add(time.Second)); err != nil {
				failures.Add(1)
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of 10 parallel rotations failed", failures.Load())
	}
	if revoked, _ := s.RefreshFamilyRevoked(context.Background(), "fam3"); revoked {
		t.Fatal("parallel rotations revoked the family")
	}
}

func TestFamilyLifetimeCapsTokens(t *testing.T) {
	s := openTemp(t)
	startFamily(t, s, RefreshFamily{ID: "short", ClientID: "c1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		"s0", RefreshToken{IssuedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour)})
	_, next, err := rotate(s, "s0", "s1", t0.Add(time.Minute))
	if err != nil || !next.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("successor expiry = %v, %v; want the family's", next, err)
	}
	if _, _, err := rotate(s, "s1", "s2", t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotation after the family expired: %v", err)
	}
}

func TestRevokeRefreshFamilyAndAccessTokens(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	newFamily(t, s, "fam4", "r0")
	if err := s.RevokeRefreshFamily(ctx, "fam4", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rotate(s, "r0", "r1", t0.Add(time.Second)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("rotate after revoke: %v", err)
	}
	if err := s.RevokeRefreshFamily(ctx, "nope", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown family: %v", err)
	}
	if revoked, err := s.RefreshFamilyRevoked(ctx, "nope"); revoked || err != nil {
		t.Fatalf("unknown family revoked = %v, %v", revoked, err)
	}

	if err := s.RevokeAccessToken(ctx, "jti-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for jti, want := range map[string]bool{"jti-1": true, "jti-2": false} {
		if got, err := s.AccessTokenRevoked(ctx, jti); got != want || err != nil {
			t.Fatalf("AccessTokenRevoked(%s) = %v, %v", jti, got, err)
		}
	}
}

func TestConsentsAndSessions(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if err := s.PutConsent(ctx, &Consent{Subject: "alice", ClientID: "c1", Scope: "mcp:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutConsent(ctx, &Consent{Subject: "alice", ClientID: "c1", Scope: "mcp:read mcp:write", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1"); err != nil || c.Scope != "mcp:read mcp:write" {
		t.Fatalf("consent = %+v, %v", c, err)
	}
	if _, err := s.GetConsent(ctx, "alice", "c2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("consent for another client: %v", err)
	}

	if err := s.CreateSession(ctx, "sid", &Session{Subject: "alice", AuthTime: t0, ExpiresAt: t0.Add(12 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if sess, err := s.GetSession(ctx, "sid", t0.Add(time.Hour)); err != nil || sess.Subject != "alice" {
		t.Fatalf("session = %+v, %v", sess, err)
	}
	if _, err := s.GetSession(ctx, "sid", t0.Add(12*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if err := s.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "sid", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}

func TestSigningKeysEnsureAndRotate(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	calls := 0
	gen := func(id string, at time.Time) func() (*SigningKey, error) {
		return func() (*SigningKey, error) {
			calls++
			return &SigningKey{ID: id, Algorithm: "ES256", PKCS8: []byte(id), CreatedAt: at}, nil
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
	if err := s.RotateSigningKey(ctx, &SigningKey{ID: "k2", Algorithm: "ES256", PKCS8: []byte("k2"), CreatedAt: t0.Add(time.Hour)}, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != "k2" || keys[1].ID != "k1" || keys[1].RetiredAt.IsZero() || !keys[0].RetiredAt.IsZero() {
		t.Fatalf("keys after rotation = %+v, %v", keys, err)
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

func TestDeleteExpired(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutClient(ctx, &Client{ID: "unused", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(s.PutClient(ctx, &Client{ID: "kept", CreatedAt: t0}))
	must(s.SaveAuthorizationCode(ctx, "old-code", &AuthorizationCode{ExpiresAt: t0.Add(time.Minute)}))
	must(s.SaveAuthorizationCode(ctx, "new-code", &AuthorizationCode{ExpiresAt: t0.Add(3 * time.Hour)}))
	must(s.CreateSession(ctx, "old-sid", &Session{ExpiresAt: t0.Add(time.Minute)}))
	must(s.RevokeAccessToken(ctx, "old-jti", t0.Add(time.Minute)))
	must(s.RevokeAccessToken(ctx, "new-jti", t0.Add(3*time.Hour)))
	startFamily(t, s, RefreshFamily{ID: "f", ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}, "rt", RefreshToken{ExpiresAt: t0.Add(time.Hour)})

	n, err := s.DeleteExpired(ctx, t0.Add(2*time.Hour))
	must(err)
	// unused client, old code, the family's code, old session, old jti,
	// refresh token, family
	if n != 7 {
		t.Fatalf("deleted %d records, want 7", n)
	}
	if _, err := s.GetClient(ctx, "kept"); err != nil {
		t.Fatal("a client without expiry was swept")
	}
	if _, err := s.GetAuthorizationCode(ctx, "new-code", t0.Add(2*time.Hour)); err != nil {
		t.Fatal("a live code was swept")
	}
	if revoked, _ := s.AccessTokenRevoked(ctx, "new-jti"); !revoked {
		t.Fatal("a live denylist entry was swept")
	}
	if n, _ := s.DeleteExpired(ctx, t0.Add(2*time.Hour)); n != 0 {
		t.Fatalf("second sweep deleted %d", n)
	}
}

func TestSecretsAreStoredHashed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "oauth.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	code, refresh, sid := "CODE-7a1f0c2e9b8d4c6a", "REFRESH-5e3b9d1c7a2f4e8b", "SESSION-1c9e7b5a3d2f8e6c"
	if err := s.SaveAuthorizationCode(ctx, code, &AuthorizationCode{ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	startFamily(t, s, RefreshFamily{ID: "f", ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}, refresh, RefreshToken{})
	if err := s.CreateSession(ctx, sid, &Session{Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{code, refresh, sid} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%s is stored in the clear", secret)
		}
		if !bytes.Contains(raw, Hash(secret)) {
			t.Errorf("the hash of %s is not the key it is stored under", secret)
		}
	}
}

func TestSchemaVersionGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A file written by a newer build is refused, and left untouched.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(fmt.Sprint(SchemaVersion+1)))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = OpenBolt(path)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d is newer than this build understands (%d)", SchemaVersion+1, SchemaVersion)) {
		t.Fatalf("opening a newer file: %v", err)
	}
	db, _ = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchemaVersion); string(v) != fmt.Sprint(SchemaVersion+1) {
			t.Errorf("schema version rewritten to %s", v)
		}
		return nil
	})
}

func TestCancelledContext(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutClient(ctx, &Client{ID: "c"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutClient with a cancelled context: %v", err)
	}
}

func TestPendingAuthorizationIsSingleUse(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if err := s.SavePendingAuthorization(ctx, "pid", &PendingAuthorization{ClientID: "c1", Subject: "alice", ExpiresAt: t0.Add(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if p, err := s.TakePendingAuthorization(ctx, "pid", t0); err == nil && p.Subject == "alice" {
				wins.Add(1)
			} else if !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d takers got the pending request, want 1", wins.Load())
	}
	if err := s.SavePendingAuthorization(ctx, "old", &PendingAuthorization{ExpiresAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakePendingAuthorization(ctx, "old", t0.Add(time.Second)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired pending request: %v", err)
	}
}

// TestRotateBurstToleratesUsedSuccessor: within Burst of the rotation a
// rotated token is accepted even though a sibling request already used a
// successor (interleaved parallel refreshes); after Burst, that is reuse.
func TestRotateBurstToleratesUsedSuccessor(t *testing.T) {
	s := openTemp(t)
	newFamily(t, s, "burst", "b0")
	at := func(d time.Duration, presented, next string) error {
		_, _, err := s.RotateRefreshToken(context.Background(), Rotation{
			Presented: presented, ClientID: "c1", NextToken: next,
			Next: RefreshToken{IssuedAt: t0.Add(d), ExpiresAt: t0.Add(d + time.Hour)},
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
	if err := at(3*time.Second, "b0", "b1y"); !errors.Is(err, ErrReused) {
		t.Fatalf("reuse after the burst window with a used successor: %v", err)
	}
}
