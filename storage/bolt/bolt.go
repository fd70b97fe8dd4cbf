package bolt

import (
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
	// bucketAssertions holds the used assertions (usedAssertion) under
	// storage.AssertionKey.
	bucketAssertions = []byte("used_assertions")

	allBuckets = [][]byte{bucketMeta, bucketClients, bucketCodes, bucketFamilies,
		bucketRefresh, bucketRevokedAccess, bucketConsents, bucketSessions, bucketPending, bucketKeys,
		bucketFamiliesByClient, bucketTokenRevocations, bucketFamiliesBySubject, bucketClientConsents, bucketUpstream, bucketUpstreamTokens, bucketAssertions}

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
		return nil, fmt.Errorf("creating storage folder: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening storage %s: locked by another process for %s; if Caddy is already running, use 'caddy reload' instead of starting a second instance", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("opening storage %s: %w", path, err)
	}
	s := &File{db: db, writes: groupCommit{db: db}}
	if err := s.initSchema(); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening storage %s: %w", path, err)
	}
	return s, nil
}

// OpenReadOnly opens an existing file for reading only (the CLI's
// listings without a running Caddy); it waits for the lock as Open
// does.
func OpenReadOnly(path string) (*File, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("opening storage %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening storage %s: locked by another process for %s; while Caddy runs, leave out --storage to ask it through its admin API", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("opening storage %s: %w", path, err)
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
		return nil, fmt.Errorf("opening storage %s: %w", path, err)
	}
	return &File{db: db, writes: groupCommit{db: db}}, nil
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
		return storage.Unavailable(err)
	}
	defer s.observe(op, time.Now())
	return storage.Answer(s.writes.do(fn))
}

func (s *File) view(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return storage.Unavailable(err)
	}
	defer s.observe(op, time.Now())
	return storage.Answer(s.db.View(fn))
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
		return fmt.Errorf("decoding %s record: %w", bucket, err)
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
			return fmt.Errorf("encoding %s record: %w", bucket, err)
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
		return 0, fmt.Errorf("decoding %s record: %w", bucketRefresh, err)
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

// Interface guards
var (
	_ storage.Store    = (*issuerStore)(nil)
	_ storage.Backend  = (*File)(nil)
	_ storage.Backuper = (*File)(nil)
)
