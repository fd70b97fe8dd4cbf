package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/storagetest"

	bbolt "go.etcd.io/bbolt"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openFile(t) })
}

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const testIssuer = "https://auth.test"

func openFile(t *testing.T) *File {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTemp is the store of testIssuer on a new file.
func openTemp(t *testing.T) *issuerStore {
	t.Helper()
	return openFile(t).ForIssuer(testIssuer).(*issuerStore)
}

func TestSecretsAreStoredHashed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "oauth.db")
	file, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := file.ForIssuer(testIssuer).(*issuerStore)
	ctx := context.Background()
	code, refresh, sid := "CODE-7a1f0c2e9b8d4c6a", "REFRESH-5e3b9d1c7a2f4e8b", "SESSION-1c9e7b5a3d2f8e6c"
	if err := s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	storagetest.StartFamily(t, s, storage.RefreshFamily{ID: "f", ClientID: "c1", ExpiresAt: t0.Add(time.Hour)}, refresh, storage.RefreshToken{})
	if err := s.SaveSession(ctx, sid, &storage.Session{Subject: "alice"}); err != nil {
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
		if !bytes.Contains(raw, storage.Hash(secret)) {
			t.Errorf("the hash of %s is not the key it is stored under", secret)
		}
	}
}

func TestSchemaVersionGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A file written by a newer build is refused, and left untouched.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(fmt.Sprint(SchemaVersion+1)))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d is newer than this build understands (%d)", SchemaVersion+1, SchemaVersion)) {
		t.Fatalf("opening a newer file: %v", err)
	}
	db, _ = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchemaVersion); string(v) != fmt.Sprint(SchemaVersion+1) {
			t.Errorf("schema version rewritten to %s", v)
		}
		return nil
	})
}

// TestUpgradeFromSchema1: a version 1 file keeps its signing keys and
// denylist; records that did not name their issuer are removed, and the
// upgrade says so.
func TestUpgradeFromSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets[:10] { // the buckets of version 1
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("1"))
		tx.Bucket(bucketClients).Put([]byte("c1"), []byte(`{"client_id":"c1"}`))
		tx.Bucket(bucketConsents).Put([]byte("alice\x00c1"), []byte(`{"sub":"alice","client_id":"c1"}`))
		tx.Bucket(bucketKeys).Put([]byte("k1"), []byte(`{"kid":"k1","alg":"ES256","created_at":"2026-11-28T12:00:00Z"}`))
		return tx.Bucket(bucketRevokedAccess).Put([]byte("jti"), []byte(`{"expires_at":"2099-01-01T00:00:00Z"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	file, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if want := "schema 1 upgraded to 2: 2 records"; !strings.HasPrefix(file.Upgraded(), want) {
		t.Fatalf("Upgraded() = %q, want it to start with %q", file.Upgraded(), want)
	}
	s := file.ForIssuer(testIssuer)
	ctx := context.Background()
	if keys, err := s.SigningKeys(ctx); err != nil || len(keys) != 1 {
		t.Fatalf("signing keys after the upgrade: %v %v", keys, err)
	}
	if revoked, _ := s.AccessTokenRevoked(ctx, storage.AccessTokenRef{ID: "jti"}); !revoked {
		t.Fatal("the denylist was lost")
	}
	if _, err := s.GetClient(ctx, "c1", time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a version 1 client survived: %v", err)
	}
	file.Close()
	if again, err := Open(path); err != nil || again.Upgraded() != "" {
		t.Fatalf("reopening: %q %v", again.Upgraded(), err)
	} else {
		again.Close()
	}
}

// TestBackupIsConsistent: a backup taken while rotations run opens and is
// consistent.
func TestBackupIsConsistent(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	storagetest.NewFamily(t, s, "fb", "b0")
	done := make(chan struct{})
	go func() {
		defer close(done)
		prev := "b0"
		for i := range 200 {
			next := fmt.Sprintf("b%d", i+1)
			if _, _, err := storagetest.Rotate(s, prev, next, t0.Add(time.Duration(i)*time.Second)); err != nil {
				t.Error(err)
				return
			}
			prev = next
		}
	}()
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	<-done
	b, err := Open(path)
	if err != nil {
		t.Fatalf("opening the backup: %v", err)
	}
	defer b.Close()
	if err := b.CheckConsistency(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.ForIssuer(testIssuer).GetRefreshToken(ctx, "b0", t0); err != nil {
		t.Fatalf("a token issued before the backup: %v", err)
	}
}

// TestSweptFamiliesLeaveNoIndex: the index entries of swept families go
// with them.
func TestSweptFamiliesLeaveNoIndex(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	storagetest.GrantFamily(t, s, "f1", "alice", "c1", "https://r/mcp")
	if _, err := s.DeleteExpired(ctx, t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.view(ctx, "test", func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketFamiliesByClient, bucketFamiliesBySubject} {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				t.Errorf("%s: %d index entries left after their families were swept", b, n)
			}
		}
		return nil
	})
}

// TestFamiliesFillTheirPages: families started one after another (ids
// from storage.NewRefreshFamilyID) fill the pages of the families bucket
// and of the client index, which they join at the end, where bbolt's
// default split would leave those pages half full.
func TestFamiliesFillTheirPages(t *testing.T) {
	s := openTemp(t)
	for i := range 3000 {
		id := storage.NewRefreshFamilyID(t0.Add(time.Duration(i) * time.Millisecond))
		storagetest.StartFamily(t, s, storage.RefreshFamily{ID: id, ClientID: fmt.Sprintf("client-%d", i%2), Subject: fmt.Sprintf("user-%03d", i%100),
			Resource: "https://r/mcp", Scope: "mcp:read", CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}, id+"-rt", storage.RefreshToken{ExpiresAt: t0.Add(24 * time.Hour)})
	}
	s.view(context.Background(), "test", func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketFamilies, bucketFamiliesByClient} {
			stats := tx.Bucket(b).Stats()
			if fill := float64(stats.LeafInuse) / float64(stats.LeafAlloc); fill < 0.8 {
				t.Errorf("%s: pages %.0f%% full, want 80%% at least", b, 100*fill)
			}
		}
		return nil
	})
}

// TestKeyBindingSurvivesReopening: a family's DPoP binding is in the
// file: after the file is closed and opened again (a restart), rotating
// the family still sees it.
func TestKeyBindingSurvivesReopening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	file, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	storagetest.StartFamily(t, file.ForIssuer("https://auth.test"), storage.RefreshFamily{ID: "bound", ClientID: "c1", Subject: "alice",
		Resource: "https://r.test", CreatedAt: now, ExpiresAt: now.Add(time.Hour), JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
		"rt", storage.RefreshToken{Resource: "https://r.test", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	file.Close()
	if file, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	fam, _, err := file.ForIssuer("https://auth.test").RotateRefreshToken(context.Background(), storage.Rotation{Presented: "rt", ClientID: "c1", NextToken: "rt2",
		Next: storage.RefreshToken{IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, Now: now})
	if err != nil || fam.JKT != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
		t.Fatalf("after reopening: %+v %v", fam, err)
	}
}
