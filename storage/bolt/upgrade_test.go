package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/storagetest"

	bbolt "go.etcd.io/bbolt"
)

// TestUpgradeFromSchema2: a file written by the last schema 2 release
// (testdata/schema2.db, see testdata/schema2) is re-encoded at open, and
// every record then reads as it did: the export equals the one that
// release wrote, the links hold, and its tokens rotate, with reuse of
// a rotated one still detected.
func TestUpgradeFromSchema2(t *testing.T) {
	path := copyFixture(t, "testdata/schema2.db")
	file := openUpgraded(t, path, "schema 2 upgraded to 3: 3 refresh families and 4 refresh tokens re-encoded compactly; "+
		"schema 3 upgraded to 4: 3 refresh families indexed by client and by user")
	ctx := context.Background()
	file.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchemaVersion); string(v) != "4" {
			t.Errorf("schema version %s after the upgrade", v)
		}
		for b, format := range map[string]byte{string(bucketFamilies): familyFormat, string(bucketRefresh): recordFormat} {
			tx.Bucket([]byte(b)).ForEach(func(k, v []byte) error {
				if v[0] != format {
					t.Errorf("%s %x: not re-encoded: %.20q", b, k, v)
				}
				return nil
			})
		}
		return nil
	})
	if err := file.CheckConsistency(ctx); err != nil {
		t.Fatal(err)
	}
	exportEquals(t, file, "testdata/schema2.jsonl")

	s := file.ForIssuer("https://auth.example.com")
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	fam, tok, err := s.GetRefreshToken(ctx, "refresh-1", now)
	if err != nil || tok.Scope != "mcp:read" || fam.Scope != "mcp:read mcp:write" || tok.Resource != "https://mcp.example.com/mcp" {
		t.Fatalf("the narrowed token: %+v %+v %v", fam, tok, err)
	}
	if _, next, err := rotate(s, "refresh-0-next", "refresh-0-next-next", now); err != nil || next.Scope != "mcp:read mcp:write" {
		t.Fatalf("rotating the migrated successor: %+v %v", next, err)
	}
	if _, _, err := rotate(s, "refresh-0", "again", now); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("presenting the rotated first token again: %v, want ErrReused", err)
	}
	if _, _, err := rotate(s, "refresh-2", "x", now); !errors.Is(err, storage.ErrRevoked) {
		t.Fatalf("the revoked family's token: %v, want ErrRevoked", err)
	}
	file.Close()
	openUpgraded(t, path, "") // nothing more to do
}

// TestUpgradeFromSchema2Interrupted: a file whose re-encoding stopped
// part way (some records compact, the version still 2) serves correctly
// and is finished at the next open.
func TestUpgradeFromSchema2Interrupted(t *testing.T) {
	path := editedFixture(t, "testdata/schema2.db", func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketFamilies).Get([]byte("family-0"))
		v, err := compacted(tx, bucketFamilies, raw)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketFamilies).Put([]byte("family-0"), v)
	})
	file := openUpgraded(t, path, "schema 2 upgraded to 3: 2 refresh families and 4 refresh tokens re-encoded compactly; "+
		"schema 3 upgraded to 4: 3 refresh families indexed by client and by user")
	exportEquals(t, file, "testdata/schema2.jsonl")
}

// TestUnreadableRecordSurvivesUpgrade: a record that never decoded is
// left as it was (reading it fails as before), and the upgrade says so.
func TestUnreadableRecordSurvivesUpgrade(t *testing.T) {
	path := editedFixture(t, "testdata/schema2.db", func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketFamilies).Put([]byte("broken"), []byte(`{"id":`))
	})
	file := openUpgraded(t, path, "schema 2 upgraded to 3: 3 refresh families and 4 refresh tokens re-encoded compactly, 1 unreadable records left as they were; "+
		"schema 3 upgraded to 4: 3 refresh families indexed by client and by user, 1 unreadable ones not indexed")
	file.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketFamilies).Get([]byte("broken")); string(v) != `{"id":` {
			t.Errorf("the unreadable record became %q", v)
		}
		return nil
	})
}

// TestUpgradeFromSchema3: a file written by the last schema 3 release
// (testdata/schema3.db, see testdata/schema3), shared by two issuers, gets
// its families indexed anew at open: the old indexes are gone, the export
// equals that release's, and grants list and revoke by user and by client
// as before, each issuer's alone.
func TestUpgradeFromSchema3(t *testing.T) {
	path := copyFixture(t, "testdata/schema3.db")
	file := openUpgraded(t, path, "schema 3 upgraded to 4: 5 refresh families indexed by client and by user")
	checkSchema3Upgrade(t, file)
	file.Close()
	openUpgraded(t, path, "") // nothing more to do
}

// TestUpgradeFromSchema3Interrupted: an upgrade cut short (new indexes
// part built, the version still 3) starts again at the next open, and
// nothing the first attempt left stays.
func TestUpgradeFromSchema3Interrupted(t *testing.T) {
	path := editedFixture(t, "testdata/schema3.db", func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(bucketFamiliesByClient)
		if err != nil {
			return err
		}
		return b.Put(indexKey("client-1", "family-gone"), nil)
	})
	checkSchema3Upgrade(t, openUpgraded(t, path, "schema 3 upgraded to 4: 5 refresh families indexed by client and by user"))
}

func checkSchema3Upgrade(t *testing.T, file *File) {
	t.Helper()
	ctx := context.Background()
	file.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchemaVersion); string(v) != "4" {
			t.Errorf("schema version %s after the upgrade", v)
		}
		for _, name := range schema3Indexes {
			if tx.Bucket(name) != nil {
				t.Errorf("the schema 3 index %s is still there", name)
			}
		}
		return nil
	})
	if err := file.CheckConsistency(ctx); err != nil {
		t.Fatal(err)
	}
	exportEquals(t, file, "testdata/schema3.jsonl")

	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	s, other := file.ForIssuer("https://auth.example.com"), file.ForIssuer("https://other.example.com")
	grants := func(s storage.Store, f storage.GrantFilter) (got []string) {
		t.Helper()
		gs, err := s.Grants(ctx, f, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			for _, fam := range g.Families {
				got = append(got, fam.ID)
			}
		}
		slices.Sort(got)
		return got
	}
	for _, c := range []struct {
		filter storage.GrantFilter
		want   []string
	}{
		{storage.GrantFilter{}, []string{"family-0", "family-1", "family-3"}}, // family-2 is revoked
		{storage.GrantFilter{Subject: "corp:alice"}, []string{"family-0", "family-1", "family-3"}},
		{storage.GrantFilter{ClientID: "client-1"}, []string{"family-0", "family-3"}},
		{storage.GrantFilter{Subject: "corp:alice", ClientID: "client-1", Resource: "https://api.example.com"}, []string{"family-3"}},
	} {
		if got := grants(s, c.filter); !slices.Equal(got, c.want) {
			t.Errorf("grants %+v: families %v, want %v", c.filter, got, c.want)
		}
	}
	if got := grants(other, storage.GrantFilter{ClientID: "client-1"}); !slices.Equal(got, []string{"family-other"}) {
		t.Errorf("the other issuer's grants of client-1: families %v", got)
	}
	if n, err := s.RevokeGrants(ctx, storage.GrantFilter{ClientID: "client-1"}, now, now); err != nil || len(n) != 2 {
		t.Fatalf("revoking client-1's grants: %d, %v", len(n), err)
	}
	if _, _, err := rotate(s, "refresh-family-0", "next-0", now); !errors.Is(err, storage.ErrRevoked) {
		t.Errorf("a revoked grant's token: %v, want ErrRevoked", err)
	}
	if revoked, err := storagetest.FamilyRevoked(s, "family-1"); revoked || err != nil {
		t.Errorf("client-2's family after client-1's grants were revoked: revoked %v, %v", revoked, err)
	}
	if _, _, err := rotate(other, "refresh-family-other", "next-other", now); err != nil {
		t.Errorf("the other issuer's token after client-1's grants were revoked: %v", err)
	}
}

// openUpgraded opens the file at path, which must say it was upgraded
// as want says; it is closed when the test ends.
func openUpgraded(t *testing.T, path, want string) *File {
	t.Helper()
	file, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	if file.Upgraded() != want {
		t.Fatalf("Upgraded() = %q, want %q", file.Upgraded(), want)
	}
	return file
}

// editedFixture is a copy of the fixture name changed by edit, in one
// transaction of bbolt itself (no upgrade runs).
func editedFixture(t *testing.T, name string, edit func(*bbolt.Tx) error) string {
	t.Helper()
	path := copyFixture(t, name)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(edit)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("editing %s: %v", name, err)
	}
	return path
}

func copyFixture(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "oauth.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func rotate(s storage.Store, presented, next string, now time.Time) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	return s.RotateRefreshToken(context.Background(), storage.Rotation{Presented: presented, ClientID: "client-1", NextToken: next,
		Next: storage.RefreshToken{IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, Now: now,
		Narrow: func(fam *storage.RefreshFamily) (string, error) { return fam.Scope, nil }})
}

// exportEquals compares file's export with the one in fixture, record by
// record, as JSON.
func exportEquals(t *testing.T, file *File, fixture string) {
	t.Helper()
	var got bytes.Buffer
	if _, err := file.Export(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	g, w := bufio.NewScanner(&got), bufio.NewScanner(bytes.NewReader(want))
	for line := 1; ; line++ {
		gok, wok := g.Scan(), w.Scan()
		if !gok || !wok {
			if gok != wok {
				t.Fatalf("line %d: the exports differ in length", line)
			}
			return
		}
		if !storage.SameRecord(g.Bytes(), w.Bytes()) {
			t.Errorf("line %d:\n got %s\nwant %s", line, g.Bytes(), w.Bytes())
		}
	}
}
