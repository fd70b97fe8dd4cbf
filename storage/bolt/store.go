package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
)

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
func (s *issuerStore) GetClient(ctx context.Context, id string, now time.Time) (*storage.Client, error) {
	var c storage.Client
	err := s.view(ctx, "get_client", func(tx *bbolt.Tx) error {
		return get(tx, bucketClients, s.scopedKey(id), &c)
	})
	if err != nil {
		return nil, err
	}
	if c.Issuer != s.issuer || storage.Expired(c.ExpiresAt, now) {
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
		return putRefreshToken(tx, cur.Successors[len(cur.Successors)-1], &next, &fam)
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

// SaveSession implements Store.
func (s *issuerStore) SaveSession(ctx context.Context, id string, sess *storage.Session) error {
	sess.Issuer = s.issuer
	// "create_session": the operation's metric label of earlier versions.
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
