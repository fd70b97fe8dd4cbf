package storage

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
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout of the file this build writes. A file with a
// newer version is refused rather than rewritten.
const SchemaVersion = 1

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

	allBuckets = [][]byte{bucketMeta, bucketClients, bucketCodes, bucketFamilies,
		bucketRefresh, bucketRevokedAccess, bucketConsents, bucketSessions, bucketPending, bucketKeys}

	keySchemaVersion = []byte("schema_version")
)

// lockTimeout bounds how long Open waits for another process's lock on the file.
const lockTimeout = 5 * time.Second

// Bolt is the Store kept in one bbolt file.
type Bolt struct {
	db          *bolt.DB
	revocations atomic.Uint64
}

// OpenBolt opens (creating if needed) the bbolt file at path and checks its
// schema version. Most callers want Acquire, which shares one handle per
// file across config reloads.
func OpenBolt(path string) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating storage folder: %v", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening storage %s: locked by another process for %s; if Caddy is already running, use 'caddy reload' instead of starting a second instance", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	// A short group-commit window: the default 10ms would add 10ms to
	// every write of a lone client.
	db.MaxBatchDelay = time.Millisecond
	if err := db.Update(initSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening storage %s: %v", path, err)
	}
	return &Bolt{db: db}, nil
}

func initSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if v := meta.Get(keySchemaVersion); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("unreadable schema version %q", v)
		}
		if n > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this build understands (%d): upgrade caddy-oauth2-server or use another storage file", n, SchemaVersion)
		}
	}
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return meta.Put(keySchemaVersion, []byte(strconv.Itoa(SchemaVersion)))
}

// Close closes the file.
func (s *Bolt) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Bolt) Path() string { return s.db.Path() }

// update runs fn in a write transaction through bbolt's group commit:
// writers arriving within MaxBatchDelay share one durable commit (two
// fsyncs), which is what lets many clients refresh at once. fn may run
// more than once (bbolt retries a failed member of a batch alone), so it
// must not keep state across runs.
func (s *Bolt) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(fn)
}

func (s *Bolt) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// get decodes a record into v, which it first resets: a batched
// transaction may run again after a rollback, and json.Unmarshal leaves
// fields that are absent from the record as they were.
func get(tx *bolt.Tx, bucket, key []byte, v any) error {
	reflect.ValueOf(v).Elem().SetZero()
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decoding %s record: %v", bucket, err)
	}
	return nil
}

func put(tx *bolt.Tx, bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s record: %v", bucket, err)
	}
	return tx.Bucket(bucket).Put(key, raw)
}

// expired reports whether a deadline has passed; a zero deadline never passes.
func expired(deadline, now time.Time) bool {
	return !deadline.IsZero() && !now.Before(deadline)
}

// PutClient implements Store.
func (s *Bolt) PutClient(ctx context.Context, c *Client) error {
	if c.ID == "" {
		return errors.New("storing client: empty client_id")
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bucketClients, []byte(c.ID), c)
	})
}

// GetClient implements Store.
func (s *Bolt) GetClient(ctx context.Context, id string) (*Client, error) {
	var c Client
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketClients, []byte(id), &c)
	})
	if err != nil {
		return nil, err
	}
	if expired(c.ExpiresAt, time.Now()) {
		return nil, ErrNotFound
	}
	return &c, nil
}

// MarkClientUsed implements Store.
func (s *Bolt) MarkClientUsed(ctx context.Context, id string, now time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		var c Client
		if err := get(tx, bucketClients, []byte(id), &c); err != nil {
			return err
		}
		c.LastUsedAt, c.ExpiresAt = now, time.Time{}
		return put(tx, bucketClients, []byte(id), &c)
	})
}

// DeleteClient implements Store.
func (s *Bolt) DeleteClient(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClients).Delete([]byte(id))
	})
}

// SaveAuthorizationCode implements Store.
func (s *Bolt) SaveAuthorizationCode(ctx context.Context, code string, c *AuthorizationCode) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bucketCodes, Hash(code), c)
	})
}

// GetAuthorizationCode implements Store.
func (s *Bolt) GetAuthorizationCode(ctx context.Context, code string, now time.Time) (*AuthorizationCode, error) {
	var c AuthorizationCode
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketCodes, Hash(code), &c)
	})
	if err != nil {
		return nil, err
	}
	if expired(c.ExpiresAt, now) {
		return nil, ErrNotFound
	}
	return &c, nil
}

// RedeemAuthorizationCode implements Store.
func (s *Bolt) RedeemAuthorizationCode(ctx context.Context, code string, now time.Time, issued Issuance, refresh *NewRefreshFamily) (*AuthorizationCode, error) {
	var c AuthorizationCode
	err := s.update(ctx, func(tx *bolt.Tx) error {
		key := Hash(code)
		if err := get(tx, bucketCodes, key, &c); err != nil {
			return err
		}
		if expired(c.ExpiresAt, now) {
			return ErrNotFound
		}
		if !c.UsedAt.IsZero() {
			return ErrAlreadyUsed
		}
		c.UsedAt = now
		c.Issued = issued
		if refresh != nil {
			if err := createFamily(tx, refresh); err != nil {
				return err
			}
			c.Issued.RefreshFamilyID = refresh.Family.ID
		}
		return put(tx, bucketCodes, key, &c)
	})
	if err != nil && !errors.Is(err, ErrAlreadyUsed) {
		return nil, err
	}
	return &c, err
}

// createFamily stores a new family and its first token.
func createFamily(tx *bolt.Tx, n *NewRefreshFamily) error {
	f := &n.Family
	if f.ID == "" {
		return errors.New("storing refresh family: empty id")
	}
	if tx.Bucket(bucketFamilies).Get([]byte(f.ID)) != nil {
		return fmt.Errorf("storing refresh family: id %s exists", f.ID)
	}
	first := n.First
	first.FamilyID = f.ID
	first.ExpiresAt = earliest(first.ExpiresAt, f.ExpiresAt)
	if err := put(tx, bucketFamilies, []byte(f.ID), f); err != nil {
		return err
	}
	return put(tx, bucketRefresh, Hash(n.Token), &first)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// RotateRefreshToken implements Store.
func (s *Bolt) RotateRefreshToken(ctx context.Context, r Rotation) (*RefreshFamily, *RefreshToken, error) {
	var fam RefreshFamily
	next := r.Next
	reused := false
	err := s.update(ctx, func(tx *bolt.Tx) error {
		reused = false
		key := Hash(r.Presented)
		var cur RefreshToken
		if err := get(tx, bucketRefresh, key, &cur); err != nil {
			return err
		}
		if err := get(tx, bucketFamilies, []byte(cur.FamilyID), &fam); err != nil {
			return err
		}
		if fam.ClientID != r.ClientID {
			return ErrWrongClient
		}
		if !fam.RevokedAt.IsZero() {
			return ErrRevoked
		}
		if expired(fam.ExpiresAt, r.Now) || expired(cur.ExpiresAt, r.Now) {
			return ErrNotFound
		}
		if !cur.RotatedAt.IsZero() {
			since := r.Now.Sub(cur.RotatedAt)
			if since > r.Grace || since > r.Burst && anySuccessorUsed(tx, cur.Successors) {
				// Commit the revocation: returning an error would roll it back.
				reused = true
				fam.RevokedAt = r.Now
				return put(tx, bucketFamilies, []byte(fam.ID), &fam)
			}
		} else {
			cur.RotatedAt = r.Now
		}
		nextKey := Hash(r.NextToken)
		cur.Successors = append(cur.Successors, nextKey)
		if err := put(tx, bucketRefresh, key, &cur); err != nil {
			return err
		}
		next.FamilyID = fam.ID
		next.ExpiresAt = earliest(next.ExpiresAt, fam.ExpiresAt)
		return put(tx, bucketRefresh, nextKey, &next)
	})
	switch {
	case err != nil:
		return nil, nil, err
	case reused:
		s.revocations.Add(1)
		return &fam, nil, ErrReused
	}
	return &fam, &next, nil
}

func anySuccessorUsed(tx *bolt.Tx, successors [][]byte) bool {
	for _, h := range successors {
		var t RefreshToken
		if get(tx, bucketRefresh, h, &t) == nil && !t.RotatedAt.IsZero() {
			return true
		}
	}
	return false
}

// GetRefreshToken implements Store.
func (s *Bolt) GetRefreshToken(ctx context.Context, token string, now time.Time) (*RefreshFamily, *RefreshToken, error) {
	var fam RefreshFamily
	var t RefreshToken
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if err := get(tx, bucketRefresh, Hash(token), &t); err != nil {
			return err
		}
		return get(tx, bucketFamilies, []byte(t.FamilyID), &fam)
	})
	if err != nil {
		return nil, nil, err
	}
	if expired(t.ExpiresAt, now) || expired(fam.ExpiresAt, now) {
		return nil, nil, ErrNotFound
	}
	return &fam, &t, nil
}

// Revocations implements Store. It counts the revocations committed
// through this handle, which every site of the process shares.
func (s *Bolt) Revocations() uint64 { return s.revocations.Load() }

// RevokeRefreshFamily implements Store.
func (s *Bolt) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	defer s.revocations.Add(1)
	return s.update(ctx, func(tx *bolt.Tx) error {
		var fam RefreshFamily
		if err := get(tx, bucketFamilies, []byte(familyID), &fam); err != nil {
			return err
		}
		if !fam.RevokedAt.IsZero() {
			return nil
		}
		fam.RevokedAt = now
		return put(tx, bucketFamilies, []byte(familyID), &fam)
	})
}

// RefreshFamilyRevoked implements Store.
func (s *Bolt) RefreshFamilyRevoked(ctx context.Context, familyID string) (bool, error) {
	var fam RefreshFamily
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketFamilies, []byte(familyID), &fam)
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil && !fam.RevokedAt.IsZero(), err
}

// revokedAccessToken is the denylist record of one access token.
type revokedAccessToken struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// RevokeAccessToken implements Store.
func (s *Bolt) RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" {
		return errors.New("revoking access token: empty jti")
	}
	defer s.revocations.Add(1)
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bucketRevokedAccess, []byte(jti), revokedAccessToken{ExpiresAt: expiresAt})
	})
}

// AccessTokenRevoked implements Store.
func (s *Bolt) AccessTokenRevoked(ctx context.Context, jti string) (bool, error) {
	var found bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketRevokedAccess).Get([]byte(jti)) != nil
		return nil
	})
	return found, err
}

func consentKey(subject, clientID string) []byte {
	// NUL cannot occur in either part: subjects and client ids are text.
	return []byte(subject + "\x00" + clientID)
}

// PutConsent implements Store.
func (s *Bolt) PutConsent(ctx context.Context, c *Consent) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bucketConsents, consentKey(c.Subject, c.ClientID), c)
	})
}

// GetConsent implements Store.
func (s *Bolt) GetConsent(ctx context.Context, subject, clientID string) (*Consent, error) {
	var c Consent
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketConsents, consentKey(subject, clientID), &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// SavePendingAuthorization implements Store.
func (s *Bolt) SavePendingAuthorization(ctx context.Context, id string, p *PendingAuthorization) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bucketPending, Hash(id), p)
	})
}

// TakePendingAuthorization implements Store.
func (s *Bolt) TakePendingAuthorization(ctx context.Context, id string, now time.Time) (*PendingAuthorization, error) {
	var p PendingAuthorization
	err := s.update(ctx, func(tx *bolt.Tx) error {
		key := Hash(id)
		if err := get(tx, bucketPending, key, &p); err != nil {
			return err
		}
		return tx.Bucket(bucketPending).Delete(key)
	})
	if err != nil {
		return nil, err
	}
	if expired(p.ExpiresAt, now) {
		return nil, ErrNotFound
	}
	return &p, nil
}

// CreateSession implements Store.
func (s *Bolt) CreateSession(ctx context.Context, id string, sess *Session) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return put(tx, bucketSessions, Hash(id), sess)
	})
}

// GetSession implements Store.
func (s *Bolt) GetSession(ctx context.Context, id string, now time.Time) (*Session, error) {
	var sess Session
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return get(tx, bucketSessions, Hash(id), &sess)
	})
	if err != nil {
		return nil, err
	}
	if expired(sess.ExpiresAt, now) {
		return nil, ErrNotFound
	}
	return &sess, nil
}

// DeleteSession implements Store.
func (s *Bolt) DeleteSession(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Delete(Hash(id))
	})
}

// SigningKeys implements Store.
func (s *Bolt) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	var keys []SigningKey
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		keys, err = signingKeys(tx)
		return err
	})
	return keys, err
}

// signingKeys returns the stored keys, newest first.
func signingKeys(tx *bolt.Tx) ([]SigningKey, error) {
	var keys []SigningKey
	err := tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
		var key SigningKey
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

func activeKey(keys []SigningKey) *SigningKey {
	for i := range keys {
		if keys[i].RetiredAt.IsZero() {
			return &keys[i]
		}
	}
	return nil
}

// EnsureSigningKey implements Store.
func (s *Bolt) EnsureSigningKey(ctx context.Context, generate func() (*SigningKey, error)) (*SigningKey, error) {
	var active *SigningKey
	err := s.update(ctx, func(tx *bolt.Tx) error {
		keys, err := signingKeys(tx)
		if err != nil {
			return err
		}
		if active = activeKey(keys); active != nil {
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
func (s *Bolt) RotateSigningKey(ctx context.Context, next *SigningKey, verifyOldUntil time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		keys, err := signingKeys(tx)
		if err != nil {
			return err
		}
		for i := range keys {
			if keys[i].RetiredAt.IsZero() {
				keys[i].RetiredAt = next.CreatedAt
				keys[i].VerifyUntil = verifyOldUntil
				if err := put(tx, bucketKeys, []byte(keys[i].ID), &keys[i]); err != nil {
					return err
				}
			}
		}
		return put(tx, bucketKeys, []byte(next.ID), next)
	})
}

// DeleteExpired implements Store. A used authorization code is kept until it
// expires, so a replay is still recognised; a rotated refresh token is kept
// as long as it could be presented (its own expiry), so reuse is still
// detected; a family is kept until its own expiry.
func (s *Bolt) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	deleted := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		deleted = 0
		sweeps := []struct {
			bucket []byte
			dead   func(raw []byte) bool
		}{
			{bucketClients, func(raw []byte) bool { var c Client; return decodes(raw, &c) && expired(c.ExpiresAt, now) }},
			{bucketCodes, func(raw []byte) bool { var c AuthorizationCode; return decodes(raw, &c) && expired(c.ExpiresAt, now) }},
			{bucketRefresh, func(raw []byte) bool { var t RefreshToken; return decodes(raw, &t) && expired(t.ExpiresAt, now) }},
			{bucketFamilies, func(raw []byte) bool { var f RefreshFamily; return decodes(raw, &f) && expired(f.ExpiresAt, now) }},
			{bucketRevokedAccess, func(raw []byte) bool { var r revokedAccessToken; return decodes(raw, &r) && expired(r.ExpiresAt, now) }},
			{bucketSessions, func(raw []byte) bool { var s Session; return decodes(raw, &s) && expired(s.ExpiresAt, now) }},
			{bucketPending, func(raw []byte) bool {
				var p PendingAuthorization
				return decodes(raw, &p) && expired(p.ExpiresAt, now)
			}},
			{bucketKeys, func(raw []byte) bool { var k SigningKey; return decodes(raw, &k) && expired(k.VerifyUntil, now) }},
		}
		for _, sw := range sweeps {
			n, err := deleteWhere(tx.Bucket(sw.bucket), sw.dead)
			if err != nil {
				return fmt.Errorf("sweeping %s: %v", sw.bucket, err)
			}
			deleted += n
		}
		return nil
	})
	return deleted, err
}

// decodes reports whether raw is a readable record; unreadable records are
// left alone rather than guessed about.
func decodes(raw []byte, v any) bool { return json.Unmarshal(raw, v) == nil }

func deleteWhere(b *bolt.Bucket, dead func(raw []byte) bool) (int, error) {
	var doomed [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if v != nil && dead(v) {
			doomed = append(doomed, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// Interface guard
var _ Store = (*Bolt)(nil)

// CheckConsistency verifies the links between records: every refresh
// token belongs to a stored family, every rotated token's successors are
// stored, and every family issued from a code exists. It is how the crash
// test proves that no transaction was half applied.
func (s *Bolt) CheckConsistency(ctx context.Context) error {
	return s.view(ctx, func(tx *bolt.Tx) error {
		families, tokens := tx.Bucket(bucketFamilies), tx.Bucket(bucketRefresh)
		err := tokens.ForEach(func(k, v []byte) error {
			var t RefreshToken
			if err := json.Unmarshal(v, &t); err != nil {
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
			var c AuthorizationCode
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
