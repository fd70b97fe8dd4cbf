package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

// TestSealKeys stores a generated key through SealKeys and reads the raw
// record: the private key is not there in the clear, the same key opens
// it, no key or another key is refused, and a key stored before sealing
// was configured still reads.
func TestSealKeys(t *testing.T) {
	ctx := context.Background()
	file, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	raw := file.ForIssuer("https://auth.test")
	key, other := make([]byte, 32), make([]byte, 32)
	rand.Read(key)
	rand.Read(other)
	secret := bytes.Repeat([]byte("private-key-bytes"), 8)
	generate := func(id string) func() (*storage.SigningKey, error) {
		return func() (*storage.SigningKey, error) {
			return &storage.SigningKey{ID: id, Algorithm: "ES256", PKCS8: bytes.Clone(secret), CreatedAt: time.Now()}, nil
		}
	}

	sealed, err := storage.SealKeys(raw, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sealed.EnsureSigningKey(ctx, generate("k1"))
	if err != nil || !bytes.Equal(got.PKCS8, secret) {
		t.Fatalf("EnsureSigningKey = %v, %v; want the key open", got, err)
	}
	stored, err := raw.SigningKeys(ctx)
	if err != nil || len(stored) != 1 {
		t.Fatalf("raw keys %v, %v", stored, err)
	}
	if bytes.Contains(stored[0].PKCS8, secret[:16]) || !strings.HasPrefix(string(stored[0].PKCS8), "oauth2-sealed-v1:") {
		t.Fatalf("stored key is not sealed: %q", stored[0].PKCS8)
	}
	if keys, err := sealed.SigningKeys(ctx); err != nil || !bytes.Equal(keys[0].PKCS8, secret) {
		t.Fatalf("SigningKeys through the seal = %v, %v", keys, err)
	}

	unsealed, _ := storage.SealKeys(raw, nil)
	if _, err := unsealed.SigningKeys(ctx); !errors.Is(err, storage.ErrSealed) {
		t.Fatalf("without storage_key: %v, want ErrSealed", err)
	}
	wrong, _ := storage.SealKeys(raw, other)
	if _, err := wrong.SigningKeys(ctx); err == nil || !strings.Contains(err.Error(), "storage_key does not open it") {
		t.Fatalf("with another storage_key: %v", err)
	}

	// A key stored before storage_key was configured is read as it is;
	// the next rotation is sealed.
	plainFile, err := bolt.Open(filepath.Join(t.TempDir(), "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer plainFile.Close()
	plainIssuer := plainFile.ForIssuer("https://auth.test")
	if _, err := plainIssuer.EnsureSigningKey(ctx, generate("p1")); err != nil {
		t.Fatal(err)
	}
	upgraded, _ := storage.SealKeys(plainIssuer, key)
	if keys, err := upgraded.SigningKeys(ctx); err != nil || !bytes.Equal(keys[0].PKCS8, secret) {
		t.Fatalf("unsealed key through the seal = %v, %v", keys, err)
	}
	next, _ := generate("p2")()
	if err := upgraded.RotateSigningKey(ctx, "p1", next, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rawKeys, _ := plainIssuer.SigningKeys(ctx)
	for _, k := range rawKeys {
		if sealedNow := strings.HasPrefix(string(k.PKCS8), "oauth2-sealed-v1:"); sealedNow != (k.ID == "p2") {
			t.Errorf("key %s sealed=%v", k.ID, sealedNow)
		}
	}
}
