package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout of the file this build writes. A file with a
// newer version is refused rather than rewritten. Version 2 binds every
// record to its issuer (see upgradeSchema for version 1 files); version 3
// keeps refresh families and tokens in a compact format (record.go; see
// compactRecords for version 2 files); version 4 indexes families by
// client and by user under shorter keys (see indexFamilies for version 3
// files).
const SchemaVersion = 4

// initSchema creates a new file's buckets, or brings an older file up to
// SchemaVersion.
func (s *File) initSchema() error {
	version := SchemaVersion // a new file
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchemaVersion); v != nil {
			if version, err = strconv.Atoi(string(v)); err != nil {
				return fmt.Errorf("unreadable schema version %q", v)
			}
			if version > SchemaVersion {
				return fmt.Errorf("schema version %d is newer than this build understands (%d): upgrade caddy-oauth2-server or use another storage file", version, SchemaVersion)
			}
		}
		if version == 1 {
			if err := s.upgradeSchema(tx); err != nil {
				return fmt.Errorf("upgrading schema 1 to 2: %w", err)
			}
			version = 2
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return putSchemaVersion(tx, version)
	})
	if err != nil || version == SchemaVersion {
		return err
	}
	if version == 2 {
		if err := s.compactRecords(); err != nil {
			return fmt.Errorf("upgrading schema 2 to 3: %w", err)
		}
		if err := s.db.Update(func(tx *bbolt.Tx) error { return putSchemaVersion(tx, 3) }); err != nil {
			return err
		}
	}
	if err := s.indexFamilies(); err != nil {
		return fmt.Errorf("upgrading schema 3 to 4: %w", err)
	}
	return nil
}

// putSchemaVersion records the file's schema version.
func putSchemaVersion(tx *bbolt.Tx, v int) error {
	return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(strconv.Itoa(v)))
}

// dropBucket deletes a bucket if it is there.
func dropBucket(tx *bbolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return err
	}
	return nil
}

// noteUpgrade adds a step to what Upgraded reports.
func (s *File) noteUpgrade(note string) {
	s.upgraded = strings.TrimPrefix(s.upgraded+"; "+note, "; ")
}

// upgradeSchema turns a version 1 file into version 2. Version 1 records
// did not name their issuer, and a file may be shared by several issuers,
// so no record of those buckets can be given to one safely: they are
// removed (registered clients register again, users sign in again). The
// signing keys and the revoked access tokens are kept.
func (s *File) upgradeSchema(tx *bbolt.Tx) error {
	removed := 0
	for _, name := range issuerBuckets {
		if b := tx.Bucket(name); b != nil {
			removed += b.Stats().KeyN
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	s.upgraded = fmt.Sprintf("schema 1 upgraded to 2: %d records that did not name their issuer were removed (clients register again, users sign in again)", removed)
	return nil
}

// upgradeChunk bounds the records one transaction of an upgrade
// handles, and so the memory it holds.
const upgradeChunk = 10_000

// inChunks calls fn for every record of bucket, upgradeChunk records a
// write transaction. fn gets copies, read before it runs, so it may write
// to bucket.
func (s *File) inChunks(bucket []byte, fn func(tx *bbolt.Tx, key, value []byte) error) error {
	for after, done := []byte(nil), false; !done; {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			var records [][2][]byte
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(records) < upgradeChunk; k, v = c.Next() {
				records = append(records, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
			}
			done = k == nil
			for _, r := range records {
				if err := fn(tx, r[0], r[1]); err != nil {
					return err
				}
				after = r[0]
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// compactRecords turns a version 2 file into version 3: it re-encodes the
// refresh families and then the refresh tokens (each against its family)
// from JSON to the compact format, in chunks. Both formats read alike, so
// a file left part way by a crash serves correctly and the next open goes
// on where this one stopped.
func (s *File) compactRecords() error {
	counts, unreadable := map[string]int{}, 0
	for _, bucket := range [][]byte{bucketFamilies, bucketRefresh} {
		err := s.inChunks(bucket, func(tx *bbolt.Tx, key, value []byte) error {
			if !isJSON(value) {
				return nil // compact already: an earlier open was interrupted
			}
			compact, err := compacted(tx, bucket, value)
			if err != nil {
				unreadable++ // left alone: reading it always failed
				return nil
			}
			counts[string(bucket)]++
			return tx.Bucket(bucket).Put(key, compact)
		})
		if err != nil {
			return fmt.Errorf("re-encoding %s: %w", bucket, err)
		}
	}
	note := fmt.Sprintf("schema 2 upgraded to 3: %d refresh families and %d refresh tokens re-encoded compactly",
		counts[string(bucketFamilies)], counts[string(bucketRefresh)])
	if unreadable > 0 {
		note += fmt.Sprintf(", %d unreadable records left as they were", unreadable)
	}
	s.noteUpgrade(note)
	return nil
}

// indexFamilies turns a version 3 file into version 4: it builds the
// indexes by client and by user (shorter keys than version 3's, which
// repeated the issuer and the grant) from the families, in chunks, and
// then, with the version, drops the old indexes in one transaction. An
// upgrade cut short starts again at the next open; until it is done the
// file is still version 3, whose indexes an earlier release still finds
// whole.
func (s *File) indexFamilies() error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketFamiliesByClient, bucketFamiliesBySubject} {
			if err := dropBucket(tx, name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	indexed, unreadable := 0, 0
	err = s.inChunks(bucketFamilies, func(tx *bbolt.Tx, key, value []byte) error {
		var f storage.RefreshFamily
		if err := decodeFamily(key, value, &f); err != nil {
			unreadable++
			return nil
		}
		indexed++
		return indexFamily(tx, &f)
	})
	if err != nil {
		return fmt.Errorf("indexing refresh families: %w", err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range schema3Indexes {
			if err := dropBucket(tx, name); err != nil {
				return err
			}
		}
		return putSchemaVersion(tx, SchemaVersion)
	})
	if err != nil {
		return err
	}
	note := fmt.Sprintf("schema 3 upgraded to 4: %d refresh families indexed by client and by user", indexed)
	if unreadable > 0 {
		note += fmt.Sprintf(", %d unreadable ones not indexed", unreadable)
	}
	s.noteUpgrade(note)
	return nil
}

// compacted is a JSON record of the families or refresh tokens bucket in
// the compact format; a token whose family is gone keeps its scope and
// resource itself.
func compacted(tx *bbolt.Tx, bucket, raw []byte) ([]byte, error) {
	if bytes.Equal(bucket, bucketFamilies) {
		var f storage.RefreshFamily
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, err
		}
		return appendFamily(nil, &f), nil
	}
	var t storage.RefreshToken
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	var fam storage.RefreshFamily
	if err := get(tx, bucketFamilies, []byte(t.FamilyID), &fam); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return appendRefreshToken(nil, &t, &fam), nil
}
