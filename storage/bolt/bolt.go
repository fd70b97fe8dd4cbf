package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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

var (
	bucketMeta          = []byte("meta")
	bucketClients       = []byte("clients")
	bucketCodes         = []byte("authorization_codes")
	bucketFamilies      = []byte("refresh_families")
	bucketRefresh       = []byte("refresh_tokens")
	bucketRevokedAccess = []byte("revoked_access_tokens")
	bucketConsents      = []byte("consents")
	bucketSessions      = []byte("sessions")
	bucketPending       = []byte("pending_authorizations")
	bucketKeys          = []byte("signing_keys")
	// bucketFamiliesByClient indexes refresh families by client: keys are
	// client NUL family id (indexKey), values empty. A client id may be
	// used by several issuers; the family found names its issuer, which
	// every reader checks.
	bucketFamiliesByClient = []byte("families_by_client")
	// bucketTokenRevocations holds the records that deny every access
	// token of a client, a user or a grant issued until a time (see
	// tokenRevocation), each kept until those tokens have expired.
	bucketTokenRevocations = []byte("token_revocations")
	// bucketFamiliesBySubject indexes refresh families by user: keys are
	// subject NUL family id, values empty; as by client, the family says
	// its issuer, client and resource.
	bucketFamiliesBySubject = []byte("families_by_subject")
	// bucketClientConsents indexes consents by client: issuer NUL client
	// NUL subject NUL resource, values empty.
	bucketClientConsents = []byte("client_consents")
	bucketUpstream       = []byte("upstream_sign_ins")
	// bucketUpstreamTokens holds the sealed upstream tokens of grants:
	// issuer NUL sub NUL client NUL resource.
	bucketUpstreamTokens = []byte("upstream_tokens")

	allBuckets = [][]byte{bucketMeta, bucketClients, bucketCodes, bucketFamilies,
		bucketRefresh, bucketRevokedAccess, bucketConsents, bucketSessions, bucketPending, bucketKeys,
		bucketFamiliesByClient, bucketTokenRevocations, bucketFamiliesBySubject, bucketClientConsents, bucketUpstream, bucketUpstreamTokens}

	// schema3Indexes are the family indexes of version 3 files, keyed by
	// issuer NUL client NUL family id and by issuer NUL subject NUL client
	// NUL resource NUL family id; indexFamilies replaces them.
	schema3Indexes = [][]byte{[]byte("client_families"), []byte("grant_families")}

	// issuerBuckets hold records that name their issuer; a version 1
	// file's records in them could not, and are removed on upgrade.
	issuerBuckets = [][]byte{bucketClients, bucketCodes, bucketFamilies, bucketRefresh, bucketConsents, bucketSessions, bucketPending}

	keySchemaVersion = []byte("schema_version")
)

// appendedFill is how full a commit leaves the pages of the buckets whose
// new keys go at the end (appendedBuckets). Family ids begin with their
// creation time (storage.NewRefreshFamilyID), so a new family is added
// after the last one, and in the client index after the client's last
// one; bbolt splits a full page at its default half, which would leave
// each page behind half empty for good. A tenth is left for the
// last-used time a family's first rotation adds.
const appendedFill = 0.9

var appendedBuckets = [][]byte{bucketFamilies, bucketFamiliesByClient}

// fillAppended sets the fill of appendedBuckets for a write transaction
// (bbolt keeps it per transaction).
func fillAppended(tx *bbolt.Tx) {
	for _, name := range appendedBuckets {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = appendedFill
		}
	}
}

// lockTimeout bounds how long Open waits for another process's lock on the file.
const lockTimeout = 5 * time.Second

// File is one bbolt file holding the state of one or more authorization
// servers; ForIssuer gives the Store of each.
type File struct {
	db          *bbolt.DB
	writes      groupCommit
	revocations atomic.Uint64
	observer    atomic.Pointer[func(op string, d time.Duration)]
	// upgraded describes what opening the file changed, for the log.
	upgraded string
}

// Open opens (creating if needed) the bbolt file at path and checks its
// schema version. Most callers want Acquire, which shares one handle per
// file across config reloads.
func Open(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating storage folder: %v", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening storage %s: locked by another process for %s; if Caddy is already running, use 'caddy reload' instead of starting a second instance", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	s := &File{db: db, writes: groupCommit{db: db}}
	if err := s.initSchema(); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	return s, nil
}

// OpenReadOnly opens an existing file for reading only (the CLI's
// listings without a running Caddy); it waits for the lock as Open
// does.
func OpenReadOnly(path string) (*File, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening storage %s: locked by another process for %s; while Caddy runs, leave out --storage to ask it through its admin API", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || string(meta.Get(keySchemaVersion)) != strconv.Itoa(SchemaVersion) {
			return fmt.Errorf("not a storage file of schema version %d (open it once with this build to upgrade it)", SchemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	return &File{db: db, writes: groupCommit{db: db}}, nil
}

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
				return fmt.Errorf("upgrading schema 1 to 2: %v", err)
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
			return fmt.Errorf("upgrading schema 2 to 3: %v", err)
		}
		if err := s.db.Update(func(tx *bbolt.Tx) error { return putSchemaVersion(tx, 3) }); err != nil {
			return err
		}
	}
	if err := s.indexFamilies(); err != nil {
		return fmt.Errorf("upgrading schema 3 to 4: %v", err)
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
			return fmt.Errorf("re-encoding %s: %v", bucket, err)
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
		return fmt.Errorf("indexing refresh families: %v", err)
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

// Upgraded says what opening the file changed, or "" when nothing did.
func (s *File) Upgraded() string { return s.upgraded }

// Close closes the file.
func (s *File) Close() error {
	s.writes.close()
	return s.db.Close()
}

// Path is the file's path.
func (s *File) Path() string { return s.db.Path() }

// update runs fn in a write transaction through the group commit (see
// commit.go): a lone write commits at once, and writes arriving during a
// commit share the next durable commit (two fsyncs), which is what lets
// many clients refresh at once. fn may run more than once (a failed
// member of a group runs again alone), so it must not keep state across
// runs.
func (s *File) update(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.observe(op, time.Now())
	return s.writes.do(fn)
}

func (s *File) view(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.observe(op, time.Now())
	return s.db.View(fn)
}

// observe reports how long an operation took to the file's observer.
func (s *File) observe(op string, start time.Time) {
	if f := s.observer.Load(); f != nil {
		(*f)(op, time.Since(start))
	}
}

// Observe sets a function told the duration of every operation (for
// metrics); nil stops it.
func (s *File) Observe(f func(op string, d time.Duration)) {
	if f == nil {
		s.observer.Store(nil)
		return
	}
	s.observer.Store(&f)
}

// get decodes a record into v, which it first resets: a batched
// transaction may run again after a rollback, and json.Unmarshal leaves
// fields that are absent from the record as they were. Refresh families
// are compact records (record.go), the rest JSON; refresh tokens have
// getRefreshTokenRecord.
func get(tx *bbolt.Tx, bucket, key []byte, v any) error {
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		reflect.ValueOf(v).Elem().SetZero()
		return storage.ErrNotFound
	}
	var err error
	if f, ok := v.(*storage.RefreshFamily); ok {
		err = decodeFamily(key, raw, f)
	} else {
		reflect.ValueOf(v).Elem().SetZero()
		err = json.Unmarshal(raw, v)
	}
	if err != nil {
		return fmt.Errorf("decoding %s record: %v", bucket, err)
	}
	return nil
}

func put(tx *bbolt.Tx, bucket, key []byte, v any) error {
	var raw []byte
	if f, ok := v.(*storage.RefreshFamily); ok {
		raw = appendFamily(nil, f)
	} else {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return fmt.Errorf("encoding %s record: %v", bucket, err)
		}
	}
	return tx.Bucket(bucket).Put(key, raw)
}

// getRefreshTokenRecord decodes a refresh token record; the scope and
// resource it leaves to its family are filled in by the answer's from.
func getRefreshTokenRecord(tx *bbolt.Tx, key []byte, t *storage.RefreshToken) (inherited, error) {
	raw := tx.Bucket(bucketRefresh).Get(key)
	if raw == nil {
		*t = storage.RefreshToken{}
		return 0, storage.ErrNotFound
	}
	in, err := decodeRefreshToken(raw, t)
	if err != nil {
		return 0, fmt.Errorf("decoding %s record: %v", bucketRefresh, err)
	}
	return in, nil
}

// putRefreshToken stores a refresh token of the family fam.
func putRefreshToken(tx *bbolt.Tx, key []byte, t *storage.RefreshToken, fam *storage.RefreshFamily) error {
	return tx.Bucket(bucketRefresh).Put(key, appendRefreshToken(nil, t, fam))
}

// ForIssuer is the Store of the authorization server with this issuer.
// Every record it writes names the issuer, and records of other issuers
// are invisible to it.
func (s *File) ForIssuer(issuer string) storage.Store {
	return &issuerStore{File: s, issuer: issuer}
}

// issuerStore is one issuer's view of a file. The signing keys, the
// revocation counter and the sweeper are the file's, shared by its
// issuers.
type issuerStore struct {
	*File
	issuer string
}

// scopedKey is the key of an issuer's record named by parts; none of
// them can contain NUL (issuers, client ids, subjects and resources are
// text).
func scopedKey(issuer string, parts ...string) []byte {
	return []byte(issuer + "\x00" + strings.Join(parts, "\x00"))
}

func (s *issuerStore) scopedKey(parts ...string) []byte { return scopedKey(s.issuer, parts...) }

// PutClient implements Store.
func (s *issuerStore) PutClient(ctx context.Context, c *storage.Client) error {
	if c.ID == "" {
		return errors.New("storing client: empty client_id")
	}
	c.Issuer = s.issuer
	return s.update(ctx, "put_client", func(tx *bbolt.Tx) error {
		return put(tx, bucketClients, s.scopedKey(c.ID), c)
	})
}

// GetClient implements Store.
func (s *issuerStore) GetClient(ctx context.Context, id string) (*storage.Client, error) {
	var c storage.Client
	err := s.view(ctx, "get_client", func(tx *bbolt.Tx) error {
		return get(tx, bucketClients, s.scopedKey(id), &c)
	})
	if err != nil {
		return nil, err
	}
	if c.Issuer != s.issuer || storage.Expired(c.ExpiresAt, time.Now()) {
		return nil, storage.ErrNotFound
	}
	return &c, nil
}

// MarkClientUsed implements Store.
func (s *issuerStore) MarkClientUsed(ctx context.Context, id string, now time.Time) error {
	return s.update(ctx, "mark_client_used", func(tx *bbolt.Tx) error {
		var c storage.Client
		if err := get(tx, bucketClients, s.scopedKey(id), &c); err != nil {
			return err
		}
		c.LastUsedAt, c.ExpiresAt = now, time.Time{}
		return put(tx, bucketClients, s.scopedKey(id), &c)
	})
}

// DeleteClient implements Store.
func (s *issuerStore) DeleteClient(ctx context.Context, id string, now, tokensExpireBy time.Time) ([]storage.Grant, error) {
	var revoked []storage.Grant
	defer s.revocations.Add(1)
	err := s.update(ctx, "delete_client", func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketClients).Delete(s.scopedKey(id)); err != nil {
			return err
		}
		var err error
		revoked, err = s.revokeGrants(tx, storage.GrantFilter{ClientID: id}, now, tokensExpireBy)
		return err
	})
	return revoked, err
}

// revokeClientFamilies revokes every family of a client of issuer, found
// through the client index, and returns them.
func revokeClientFamilies(tx *bbolt.Tx, issuer, clientID string, now time.Time) ([]storage.RefreshFamily, error) {
	var revoked []storage.RefreshFamily
	prefix := indexPrefix(clientID)
	c := tx.Bucket(bucketFamiliesByClient).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		id := k[len(prefix):]
		var fam storage.RefreshFamily
		if err := get(tx, bucketFamilies, id, &fam); errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		if fam.Issuer == issuer && fam.RevokedAt.IsZero() {
			fam.RevokedAt = now
			if err := put(tx, bucketFamilies, id, &fam); err != nil {
				return nil, err
			}
			revoked = append(revoked, fam)
		}
	}
	return revoked, nil
}

// SaveAuthorizationCode implements Store.
func (s *issuerStore) SaveAuthorizationCode(ctx context.Context, code string, c *storage.AuthorizationCode) error {
	c.Issuer = s.issuer
	return s.update(ctx, "save_authorization_code", func(tx *bbolt.Tx) error {
		return put(tx, bucketCodes, storage.Hash(code), c)
	})
}

// getCode reads a live code of this issuer.
func (s *issuerStore) getCode(tx *bbolt.Tx, code string, now time.Time, c *storage.AuthorizationCode) error {
	if err := get(tx, bucketCodes, storage.Hash(code), c); err != nil {
		return err
	}
	if c.Issuer != s.issuer || storage.Expired(c.ExpiresAt, now) {
		return storage.ErrNotFound
	}
	return nil
}

// GetAuthorizationCode implements Store.
func (s *issuerStore) GetAuthorizationCode(ctx context.Context, code string, now time.Time) (*storage.AuthorizationCode, error) {
	var c storage.AuthorizationCode
	err := s.view(ctx, "get_authorization_code", func(tx *bbolt.Tx) error {
		return s.getCode(tx, code, now, &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// RedeemAuthorizationCode implements Store.
func (s *issuerStore) RedeemAuthorizationCode(ctx context.Context, code string, now time.Time, issued storage.Issuance, refresh *storage.NewRefreshFamily) (*storage.AuthorizationCode, error) {
	var c storage.AuthorizationCode
	err := s.update(ctx, "redeem_authorization_code", func(tx *bbolt.Tx) error {
		if err := s.getCode(tx, code, now, &c); err != nil {
			return err
		}
		if !c.UsedAt.IsZero() {
			return storage.ErrAlreadyUsed
		}
		c.UsedAt = now
		c.Issued = issued
		if refresh != nil {
			if err := s.createFamily(tx, refresh); err != nil {
				return err
			}
			c.Issued.RefreshFamilyID = refresh.Family.ID
		}
		return put(tx, bucketCodes, storage.Hash(code), &c)
	})
	if err != nil && !errors.Is(err, storage.ErrAlreadyUsed) {
		return nil, err
	}
	return &c, err
}

// createFamily stores a new family, its index entry and its first token.
func (s *issuerStore) createFamily(tx *bbolt.Tx, n *storage.NewRefreshFamily) error {
	f := n.Family
	if f.ID == "" {
		return errors.New("storing refresh family: empty id")
	}
	if tx.Bucket(bucketFamilies).Get([]byte(f.ID)) != nil {
		return fmt.Errorf("storing refresh family: id %s exists", f.ID)
	}
	f.Issuer = s.issuer
	f.LastUsedAt = f.CreatedAt
	first := n.First
	first.FamilyID = f.ID
	first.ExpiresAt = storage.Earliest(first.ExpiresAt, f.ExpiresAt)
	if err := put(tx, bucketFamilies, []byte(f.ID), &f); err != nil {
		return err
	}
	if err := indexFamily(tx, &f); err != nil {
		return err
	}
	return putRefreshToken(tx, storage.Hash(n.Token), &first, &f)
}

// indexKey is the key of a family's entry in an index by client or by
// user; indexPrefix starts the entries of one client or user (any, for
// "").
func indexKey(by, familyID string) []byte { return []byte(by + "\x00" + familyID) }

func indexPrefix(by string) []byte {
	if by == "" {
		return nil
	}
	return []byte(by + "\x00")
}

// familyIndexEntries are a family's entries in the indexes by client and
// by user: the index bucket and the key, each.
func familyIndexEntries(f *storage.RefreshFamily) [][2][]byte {
	return [][2][]byte{{bucketFamiliesByClient, indexKey(f.ClientID, f.ID)}, {bucketFamiliesBySubject, indexKey(f.Subject, f.ID)}}
}

// indexFamily adds a family to the indexes by client and by user.
func indexFamily(tx *bbolt.Tx, f *storage.RefreshFamily) error {
	for _, e := range familyIndexEntries(f) {
		if err := tx.Bucket(e[0]).Put(e[1], nil); err != nil {
			return err
		}
	}
	return nil
}

// unindexFamily removes a family from the indexes by client and by user.
func unindexFamily(tx *bbolt.Tx, f *storage.RefreshFamily) error {
	for _, e := range familyIndexEntries(f) {
		if err := tx.Bucket(e[0]).Delete(e[1]); err != nil {
			return err
		}
	}
	return nil
}

// getRefreshToken reads a refresh token and its family, of this issuer.
func (s *issuerStore) getRefreshToken(tx *bbolt.Tx, key []byte, t *storage.RefreshToken, fam *storage.RefreshFamily) error {
	in, err := getRefreshTokenRecord(tx, key, t)
	if err != nil {
		return err
	}
	if err := get(tx, bucketFamilies, []byte(t.FamilyID), fam); err != nil {
		return err
	}
	if fam.Issuer != s.issuer {
		return storage.ErrNotFound
	}
	in.from(t, fam)
	return nil
}

// RotateRefreshToken implements Store.
func (s *issuerStore) RotateRefreshToken(ctx context.Context, r storage.Rotation) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	var fam storage.RefreshFamily
	next := r.Next
	reused := false
	err := s.update(ctx, "rotate_refresh_token", func(tx *bbolt.Tx) error {
		reused, next = false, r.Next
		key := storage.Hash(r.Presented)
		var cur storage.RefreshToken
		if err := s.getRefreshToken(tx, key, &cur, &fam); err != nil {
			return err
		}
		var err error
		next, reused, err = r.Judge(&fam, &cur, func() (bool, error) { return anySuccessorUsed(tx, cur.Successors), nil })
		switch {
		case err != nil:
			return err
		case reused:
			// Commit the revocation: returning an error would roll it back.
			return put(tx, bucketFamilies, []byte(fam.ID), &fam)
		}
		if err := put(tx, bucketFamilies, []byte(fam.ID), &fam); err != nil {
			return err
		}
		if err := putRefreshToken(tx, key, &cur, &fam); err != nil {
			return err
		}
		return putRefreshToken(tx, storage.Hash(r.NextToken), &next, &fam)
	})
	switch {
	case err != nil:
		return nil, nil, err
	case reused:
		s.revocations.Add(1)
		return &fam, nil, storage.ErrReused
	}
	return &fam, &next, nil
}

func anySuccessorUsed(tx *bbolt.Tx, successors [][]byte) bool {
	for _, h := range successors {
		var t storage.RefreshToken
		if _, err := getRefreshTokenRecord(tx, h, &t); err == nil && !t.RotatedAt.IsZero() {
			return true
		}
	}
	return false
}

// GetRefreshToken implements Store.
func (s *issuerStore) GetRefreshToken(ctx context.Context, token string, now time.Time) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	var fam storage.RefreshFamily
	var t storage.RefreshToken
	err := s.view(ctx, "get_refresh_token", func(tx *bbolt.Tx) error {
		return s.getRefreshToken(tx, storage.Hash(token), &t, &fam)
	})
	if err != nil {
		return nil, nil, err
	}
	if storage.Expired(t.ExpiresAt, now) || storage.Expired(fam.ExpiresAt, now) {
		return nil, nil, storage.ErrNotFound
	}
	return &fam, &t, nil
}

// Revocations implements Store. It counts the revocations committed
// through this file, which every site of the process shares.
func (s *File) Revocations() uint64 { return s.revocations.Load() }

// RevokeRefreshFamily implements Store.
func (s *issuerStore) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	defer s.revocations.Add(1)
	return s.update(ctx, "revoke_refresh_family", func(tx *bbolt.Tx) error {
		var fam storage.RefreshFamily
		if err := get(tx, bucketFamilies, []byte(familyID), &fam); err != nil {
			return err
		}
		if fam.Issuer != s.issuer {
			return storage.ErrNotFound
		}
		if !fam.RevokedAt.IsZero() {
			return nil
		}
		fam.RevokedAt = now
		if err := tx.Bucket(bucketUpstreamTokens).Delete(s.scopedKey(fam.Subject, fam.ClientID, fam.Resource)); err != nil {
			return err
		}
		return put(tx, bucketFamilies, []byte(familyID), &fam)
	})
}

// revokedAccessToken is the denylist record of one access token.
type revokedAccessToken struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// RevokeAccessToken implements Store.
func (s *issuerStore) RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" {
		return errors.New("revoking access token: empty jti")
	}
	defer s.revocations.Add(1)
	return s.update(ctx, "revoke_access_token", func(tx *bbolt.Tx) error {
		return put(tx, bucketRevokedAccess, []byte(jti), revokedAccessToken{ExpiresAt: expiresAt})
	})
}

// AccessTokenRevoked implements Store, in one read transaction.
func (s *issuerStore) AccessTokenRevoked(ctx context.Context, t storage.AccessTokenRef) (bool, error) {
	var revoked bool
	err := s.view(ctx, "access_token_revoked", func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRevokedAccess).Get([]byte(t.ID)) != nil {
			revoked = true
			return nil
		}
		if t.FamilyID != "" {
			var fam storage.RefreshFamily
			switch err := get(tx, bucketFamilies, []byte(t.FamilyID), &fam); {
			case err == nil:
				if fam.Issuer == s.issuer && !fam.RevokedAt.IsZero() {
					revoked = true
					return nil
				}
			case !errors.Is(err, storage.ErrNotFound):
				return err
			}
		}
		var err error
		revoked, err = s.deniedByRecord(tx, t)
		return err
	})
	return revoked, err
}

// PutConsent implements Store.
func (s *issuerStore) PutConsent(ctx context.Context, c *storage.Consent) error {
	c.Issuer = s.issuer
	return s.update(ctx, "put_consent", func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketClientConsents).Put(s.scopedKey(c.ClientID, c.Subject, c.Resource), nil); err != nil {
			return err
		}
		return put(tx, bucketConsents, s.scopedKey(c.Subject, c.ClientID, c.Resource), c)
	})
}

// GetConsent implements Store.
func (s *issuerStore) GetConsent(ctx context.Context, subject, clientID, resource string) (*storage.Consent, error) {
	var c storage.Consent
	err := s.view(ctx, "get_consent", func(tx *bbolt.Tx) error {
		return get(tx, bucketConsents, s.scopedKey(subject, clientID, resource), &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// SavePendingAuthorization implements Store.
func (s *issuerStore) SavePendingAuthorization(ctx context.Context, id string, p *storage.PendingAuthorization) error {
	p.Issuer = s.issuer
	return s.update(ctx, "save_pending_authorization", func(tx *bbolt.Tx) error {
		return put(tx, bucketPending, storage.Hash(id), p)
	})
}

// AnswerPendingAuthorization implements Store.
func (s *issuerStore) AnswerPendingAuthorization(ctx context.Context, id string, a storage.ConsentAnswer) (*storage.PendingAuthorization, bool, error) {
	var p storage.PendingAuthorization
	var repeated, refused bool
	err := s.update(ctx, "answer_pending_authorization", func(tx *bbolt.Tx) error {
		repeated, refused = false, false
		key := storage.Hash(id)
		if err := get(tx, bucketPending, key, &p); err != nil {
			return err
		}
		if p.Issuer != s.issuer {
			return storage.ErrNotFound
		}
		var err error
		switch refused, repeated, err = a.Judge(&p); {
		case err != nil:
			return err
		case refused:
			// Commit the deletion: a guessed form is used up.
			return tx.Bucket(bucketPending).Delete(key)
		case repeated:
			return nil
		}
		return put(tx, bucketPending, key, &p)
	})
	if err == nil && refused {
		err = storage.ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	return &p, repeated, nil
}

// CreateSession implements Store.
func (s *issuerStore) CreateSession(ctx context.Context, id string, sess *storage.Session) error {
	sess.Issuer = s.issuer
	return s.update(ctx, "create_session", func(tx *bbolt.Tx) error {
		return put(tx, bucketSessions, storage.Hash(id), sess)
	})
}

// GetSession implements Store.
func (s *issuerStore) GetSession(ctx context.Context, id string, now time.Time) (*storage.Session, error) {
	var sess storage.Session
	err := s.view(ctx, "get_session", func(tx *bbolt.Tx) error {
		return get(tx, bucketSessions, storage.Hash(id), &sess)
	})
	if err != nil {
		return nil, err
	}
	if sess.Issuer != s.issuer || storage.Expired(sess.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &sess, nil
}

// DeleteSession implements Store.
func (s *issuerStore) DeleteSession(ctx context.Context, id string) error {
	return s.update(ctx, "delete_session", func(tx *bbolt.Tx) error {
		var sess storage.Session
		if err := get(tx, bucketSessions, storage.Hash(id), &sess); err != nil || sess.Issuer != s.issuer {
			return nil
		}
		return tx.Bucket(bucketSessions).Delete(storage.Hash(id))
	})
}

// SaveUpstreamSignIn implements Store.
func (s *issuerStore) SaveUpstreamSignIn(ctx context.Context, state string, u *storage.UpstreamSignIn) error {
	u.Issuer = s.issuer
	return s.update(ctx, "save_upstream_sign_in", func(tx *bbolt.Tx) error {
		return put(tx, bucketUpstream, storage.Hash(state), u)
	})
}

// TakeUpstreamSignIn implements Store.
func (s *issuerStore) TakeUpstreamSignIn(ctx context.Context, state string, browserHash []byte, now time.Time) (*storage.UpstreamSignIn, error) {
	var u storage.UpstreamSignIn
	err := s.update(ctx, "take_upstream_sign_in", func(tx *bbolt.Tx) error {
		key := storage.Hash(state)
		if err := get(tx, bucketUpstream, key, &u); err != nil {
			return err
		}
		switch {
		case u.Issuer != s.issuer:
			return storage.ErrNotFound
		case !u.StartedBy(browserHash):
			return storage.ErrWrongBrowser
		}
		return tx.Bucket(bucketUpstream).Delete(key)
	})
	if err != nil {
		return nil, err
	}
	if storage.Expired(u.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &u, nil
}

// PutUpstreamToken implements Store.
func (s *issuerStore) PutUpstreamToken(ctx context.Context, t *storage.UpstreamToken) error {
	t.Issuer = s.issuer
	return s.update(ctx, "put_upstream_token", func(tx *bbolt.Tx) error {
		return put(tx, bucketUpstreamTokens, s.scopedKey(t.Subject, t.ClientID, t.Resource), t)
	})
}

// GetUpstreamToken implements Store.
func (s *issuerStore) GetUpstreamToken(ctx context.Context, subject, clientID, resource string, now time.Time) (*storage.UpstreamToken, error) {
	var t storage.UpstreamToken
	err := s.view(ctx, "get_upstream_token", func(tx *bbolt.Tx) error {
		return get(tx, bucketUpstreamTokens, s.scopedKey(subject, clientID, resource), &t)
	})
	if err != nil {
		return nil, err
	}
	if storage.Expired(t.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &t, nil
}

// TakeUpstreamToken implements Store.
func (s *issuerStore) TakeUpstreamToken(ctx context.Context, subject, clientID, resource string, now time.Time) (*storage.UpstreamToken, error) {
	var t storage.UpstreamToken
	err := s.update(ctx, "take_upstream_token", func(tx *bbolt.Tx) error {
		key := s.scopedKey(subject, clientID, resource)
		if err := get(tx, bucketUpstreamTokens, key, &t); err != nil {
			return err
		}
		return tx.Bucket(bucketUpstreamTokens).Delete(key)
	})
	if err != nil {
		return nil, err
	}
	if storage.Expired(t.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &t, nil
}

// DeleteUpstreamToken implements Store.
func (s *issuerStore) DeleteUpstreamToken(ctx context.Context, subject, clientID, resource string) error {
	return s.update(ctx, "delete_upstream_token", func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketUpstreamTokens).Delete(s.scopedKey(subject, clientID, resource))
	})
}

// SigningKeys implements Store.
func (s *File) SigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	var keys []storage.SigningKey
	err := s.view(ctx, "signing_keys", func(tx *bbolt.Tx) error {
		var err error
		keys, err = signingKeys(tx)
		return err
	})
	return keys, err
}

// signingKeys returns the stored keys, newest first.
func signingKeys(tx *bbolt.Tx) ([]storage.SigningKey, error) {
	var keys []storage.SigningKey
	err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
		var key storage.SigningKey
		if err := json.Unmarshal(v, &key); err != nil {
			return fmt.Errorf("decoding signing key %s: %v", k, err)
		}
		keys = append(keys, key)
		return nil
	})
	for i := 1; i < len(keys); i++ { // few keys: insertion sort by CreatedAt desc
		for j := i; j > 0 && keys[j].CreatedAt.After(keys[j-1].CreatedAt); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys, err
}

// EnsureSigningKey implements Store.
func (s *File) EnsureSigningKey(ctx context.Context, generate func() (*storage.SigningKey, error)) (*storage.SigningKey, error) {
	var active *storage.SigningKey
	err := s.update(ctx, "ensure_signing_key", func(tx *bbolt.Tx) error {
		keys, err := signingKeys(tx)
		if err != nil {
			return err
		}
		if active = storage.ActiveKey(keys); active != nil {
			return nil
		}
		if active, err = generate(); err != nil {
			return fmt.Errorf("generating signing key: %v", err)
		}
		return put(tx, bucketKeys, []byte(active.ID), active)
	})
	if err != nil {
		return nil, err
	}
	return active, nil
}

// RotateSigningKey implements Store.
func (s *File) RotateSigningKey(ctx context.Context, current string, next *storage.SigningKey, verifyOldUntil time.Time) error {
	return s.update(ctx, "rotate_signing_key", func(tx *bbolt.Tx) error {
		keys, err := signingKeys(tx)
		if err != nil {
			return err
		}
		changed, dropped, err := storage.PlanRotation(keys, current, next, verifyOldUntil)
		if err != nil {
			return err
		}
		return putKeys(tx, changed, dropped)
	})
}

// RetireSigningKey implements Store.
func (s *File) RetireSigningKey(ctx context.Context, kid string, now time.Time) error {
	return s.update(ctx, "retire_signing_key", func(tx *bbolt.Tx) error {
		keys, err := signingKeys(tx)
		if err != nil {
			return err
		}
		changed, dropped, err := storage.PlanRetirement(keys, kid, now)
		if err != nil {
			return err
		}
		return putKeys(tx, changed, dropped)
	})
}

// putKeys writes changed keys and deletes dropped ones.
func putKeys(tx *bbolt.Tx, changed []storage.SigningKey, dropped []string) error {
	for i := range changed {
		if err := put(tx, bucketKeys, []byte(changed[i].ID), &changed[i]); err != nil {
			return err
		}
	}
	for _, kid := range dropped {
		if err := tx.Bucket(bucketKeys).Delete([]byte(kid)); err != nil {
			return err
		}
	}
	return nil
}

// DeleteExpired implements Store. A used authorization code is kept until it
// expires, so a replay is still recognised; a rotated refresh token is kept
// as long as it could be presented (its own expiry), so reuse is still
// detected; a family is kept until its own expiry. An unused registered
// client that expires has its families (if any) revoked; it never got an
// access token, so none needs denying.
func (s *File) DeleteExpired(ctx context.Context, now time.Time) (storage.Swept, error) {
	var swept storage.Swept
	for _, sw := range sweeps(now) {
		err := s.sweepBucket(ctx, sw, &swept)
		if err != nil {
			return swept, fmt.Errorf("sweeping %s: %v", sw.bucket, err)
		}
	}
	if len(swept.Revoked) > 0 {
		s.revocations.Add(1)
	}
	return swept, nil
}

// sweep is what expires in one bucket: dead tells an expired record, then
// (when set) is done with each one in the transaction that deletes it and
// returns the families it revoked.
type sweep struct {
	bucket []byte
	dead   func(raw []byte) bool
	then   func(tx *bbolt.Tx, key, raw []byte) ([]storage.RefreshFamily, error)
}

// sweepChunk bounds each step of a sweep: one read transaction scans
// that many records in a row, and one write deletes the expired ones
// among them. Writes of requests are never held behind more than one
// step, and a step rewrites only the pages of one run of records, however
// sparse the expired ones are.
const sweepChunk = 1000

// sweeps are the expiring records of every bucket at now.
func sweeps(now time.Time) []sweep {
	return []sweep{
		{bucketClients, func(raw []byte) bool {
			var c storage.Client
			return decodes(raw, &c) && storage.Expired(c.ExpiresAt, now)
		},
			func(tx *bbolt.Tx, key, raw []byte) ([]storage.RefreshFamily, error) {
				var c storage.Client
				json.Unmarshal(raw, &c)
				return revokeClientFamilies(tx, c.Issuer, c.ID, now)
			}},
		{bucketCodes, func(raw []byte) bool {
			var c storage.AuthorizationCode
			return decodes(raw, &c) && storage.Expired(c.ExpiresAt, now)
		}, nil},
		{bucketRefresh, func(raw []byte) bool {
			var t storage.RefreshToken
			_, err := decodeRefreshToken(raw, &t)
			return err == nil && storage.Expired(t.ExpiresAt, now)
		}, nil},
		{bucketFamilies, func(raw []byte) bool {
			var f storage.RefreshFamily
			return decodeFamily(nil, raw, &f) == nil && storage.Expired(f.ExpiresAt, now)
		},
			func(tx *bbolt.Tx, key, raw []byte) ([]storage.RefreshFamily, error) {
				var f storage.RefreshFamily
				decodeFamily(key, raw, &f)
				return nil, unindexFamily(tx, &f)
			}},
		{bucketRevokedAccess, func(raw []byte) bool {
			var r revokedAccessToken
			return decodes(raw, &r) && storage.Expired(r.ExpiresAt, now)
		}, nil},
		{bucketTokenRevocations, func(raw []byte) bool {
			var d tokenRevocation
			return decodes(raw, &d) && storage.Expired(d.ExpiresAt, now)
		}, nil},
		{bucketSessions, func(raw []byte) bool {
			var s storage.Session
			return decodes(raw, &s) && storage.Expired(s.ExpiresAt, now)
		}, nil},
		{bucketUpstream, func(raw []byte) bool {
			var u storage.UpstreamSignIn
			return decodes(raw, &u) && storage.Expired(u.ExpiresAt, now)
		}, nil},
		{bucketUpstreamTokens, func(raw []byte) bool {
			var u storage.UpstreamToken
			return decodes(raw, &u) && storage.Expired(u.ExpiresAt, now)
		}, nil},
		{bucketPending, func(raw []byte) bool {
			var p storage.PendingAuthorization
			return decodes(raw, &p) && storage.Expired(p.ExpiresAt, now)
		}, nil},
		{bucketKeys, func(raw []byte) bool {
			var k storage.SigningKey
			return decodes(raw, &k) && storage.Expired(k.VerifyUntil, now)
		}, nil},
	}
}

// sweepBucket deletes a bucket's expired records in chunks: a read
// transaction finds those among the next sweepChunk records, a write
// deletes those still expired, and the scan goes on after the last key it
// read.
func (s *File) sweepBucket(ctx context.Context, sw sweep, swept *storage.Swept) error {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var doomed [][]byte
		end := false
		err := s.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(sw.bucket).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var last []byte
			for scanned := 0; k != nil && scanned < sweepChunk; k, v = c.Next() {
				scanned++
				last = k
				if v != nil && sw.dead(v) {
					doomed = append(doomed, bytes.Clone(k))
				}
			}
			if last != nil {
				after = bytes.Clone(last) // keys live only as long as the transaction
			}
			end = k == nil
			return nil
		})
		if err != nil {
			return err
		}
		if len(doomed) > 0 {
			n := 0
			var revoked []storage.RefreshFamily
			err := s.update(ctx, "delete_expired", func(tx *bbolt.Tx) error {
				n, revoked = 0, nil // a group commit may run this again
				b := tx.Bucket(sw.bucket)
				for _, k := range doomed {
					raw := b.Get(k)
					if raw == nil || !sw.dead(raw) {
						continue // changed since the scan
					}
					if sw.then != nil {
						fams, err := sw.then(tx, k, bytes.Clone(raw))
						if err != nil {
							return err
						}
						revoked = append(revoked, fams...)
					}
					if err := b.Delete(k); err != nil {
						return err
					}
					n++
				}
				return nil
			})
			if err != nil {
				return err
			}
			swept.Deleted += n
			swept.Revoked = append(swept.Revoked, revoked...)
		}
		if end {
			return nil
		}
	}
}

// decodes reports whether raw is a readable record; unreadable records are
// left alone rather than guessed about.
func decodes(raw []byte, v any) bool { return json.Unmarshal(raw, v) == nil }

// Interface guards
var (
	_ storage.Store    = (*issuerStore)(nil)
	_ storage.Backend  = (*File)(nil)
	_ storage.Backuper = (*File)(nil)
)

// CheckConsistency verifies the links between records: every refresh
// token belongs to a stored family, every rotated token's successors are
// stored, every family issued from a code exists, and the indexes by
// client and by user hold each family once, under its client and its
// user. It is how the crash test proves that no transaction was half
// applied.
func (s *File) CheckConsistency(ctx context.Context) error {
	return s.view(ctx, "check_consistency", func(tx *bbolt.Tx) error {
		families, tokens := tx.Bucket(bucketFamilies), tx.Bucket(bucketRefresh)
		if err := checkIndexes(tx); err != nil {
			return err
		}
		err := tokens.ForEach(func(k, v []byte) error {
			var t storage.RefreshToken
			if _, err := decodeRefreshToken(v, &t); err != nil {
				return fmt.Errorf("refresh token %x: %v", k[:4], err)
			}
			if families.Get([]byte(t.FamilyID)) == nil {
				return fmt.Errorf("refresh token %x: family %s is missing", k[:4], t.FamilyID)
			}
			for _, next := range t.Successors {
				if tokens.Get(next) == nil {
					return fmt.Errorf("refresh token %x: successor %x is missing", k[:4], next[:4])
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCodes).ForEach(func(k, v []byte) error {
			var c storage.AuthorizationCode
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("authorization code %x: %v", k[:4], err)
			}
			if id := c.Issued.RefreshFamilyID; id != "" && families.Get([]byte(id)) == nil {
				return fmt.Errorf("authorization code %x: family %s is missing", k[:4], id)
			}
			return nil
		})
	})
}

// checkIndexes verifies that the entries of the family indexes and the
// families match one for one.
func checkIndexes(tx *bbolt.Tx) error {
	families := tx.Bucket(bucketFamilies)
	err := families.ForEach(func(k, v []byte) error {
		var f storage.RefreshFamily
		if err := decodeFamily(k, v, &f); err != nil {
			return fmt.Errorf("refresh family %s: %v", k, err)
		}
		for _, e := range familyIndexEntries(&f) {
			if tx.Bucket(e[0]).Get(e[1]) == nil {
				return fmt.Errorf("refresh family %s: not in the index %s", k, e[0])
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, index := range [][]byte{bucketFamiliesByClient, bucketFamiliesBySubject} {
		if n, want := tx.Bucket(index).Stats().KeyN, families.Stats().KeyN; n != want {
			return fmt.Errorf("%d index entries for %d refresh families", n, want)
		}
	}
	return nil
}
