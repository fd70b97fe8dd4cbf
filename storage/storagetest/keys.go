package storagetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

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
