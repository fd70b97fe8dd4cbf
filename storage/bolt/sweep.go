package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
)

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
			return swept, fmt.Errorf("sweeping %s: %w", sw.bucket, err)
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
		{bucketAssertions, func(raw []byte) bool {
			var u usedAssertion
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
