package bolt

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
)

// tokenRevocation denies every access token of a client, a user or a
// grant issued until RevokedAt; kept until the last of them has expired.
type tokenRevocation struct {
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// deniedByRecord reports whether a token revocation record of its client,
// user or grant denies the token.
func (s *issuerStore) deniedByRecord(tx *bbolt.Tx, t storage.AccessTokenRef) (bool, error) {
	for _, key := range [][]byte{
		s.scopedKey(storage.RevokedClient, t.ClientID),
		s.scopedKey(storage.RevokedSubject, t.Subject),
		s.scopedKey(storage.RevokedGrant, t.Subject, t.ClientID, t.Resource),
	} {
		var d tokenRevocation
		switch err := get(tx, bucketTokenRevocations, key, &d); {
		case err == nil:
			if !t.IssuedAt.After(d.RevokedAt) {
				return true, nil
			}
		case !errors.Is(err, storage.ErrNotFound):
			return false, err
		}
	}
	return false, nil
}

// Clients implements Store.
func (s *issuerStore) Clients(ctx context.Context) ([]storage.Client, error) {
	var out []storage.Client
	now := time.Now()
	err := s.view(ctx, "clients", func(tx *bbolt.Tx) error {
		return s.scan(tx, bucketClients, s.prefix(""), func(_, v []byte) error {
			var c storage.Client
			if decodes(v, &c) && c.Issuer == s.issuer && !storage.Expired(c.ExpiresAt, now) {
				out = append(out, c)
			}
			return nil
		})
	})
	return out, err
}

// prefix starts the keys of an issuer's records whose first part is first
// (any, when first is "").
func (s *issuerStore) prefix(first string) []byte {
	if first == "" {
		return s.scopedKey("")
	}
	return s.scopedKey(first, "")
}

// scan calls fn for every record of bucket whose key starts with prefix.
func (s *issuerStore) scan(tx *bbolt.Tx, bucket, prefix []byte, fn func(k, v []byte) error) error {
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Grants implements Store.
func (s *issuerStore) Grants(ctx context.Context, f storage.GrantFilter, now time.Time) ([]storage.Grant, error) {
	var out []storage.Grant
	err := s.view(ctx, "grants", func(tx *bbolt.Tx) error {
		grants, err := s.matchingGrants(tx, f, now)
		out = grants
		return err
	})
	return out, err
}

// matchingGrants collects the grants the filter matches: consents and
// live families found through the indexes, joined by (user, client,
// resource), oldest first.
func (s *issuerStore) matchingGrants(tx *bbolt.Tx, f storage.GrantFilter, now time.Time) ([]storage.Grant, error) {
	var consents []storage.Consent
	var families []storage.RefreshFamily
	addConsent := func(key []byte) error {
		var c storage.Consent
		switch err := get(tx, bucketConsents, key, &c); {
		case errors.Is(err, storage.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		if c.Issuer == s.issuer && f.Matches(c.Subject, c.ClientID, c.Resource) {
			consents = append(consents, c)
		}
		return nil
	}
	addFamily := func(id []byte) error {
		var fam storage.RefreshFamily
		switch err := get(tx, bucketFamilies, id, &fam); {
		case errors.Is(err, storage.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		if fam.Issuer == s.issuer && fam.RevokedAt.IsZero() && !storage.Expired(fam.ExpiresAt, now) && f.Matches(fam.Subject, fam.ClientID, fam.Resource) {
			families = append(families, fam)
		}
		return nil
	}

	// Consents: keyed by subject first; by client through their index.
	var err error
	switch {
	case f.ClientID != "" && f.Subject == "":
		err = s.scan(tx, bucketClientConsents, s.prefix(f.ClientID), func(k, _ []byte) error {
			parts := strings.Split(string(k), "\x00") // issuer, client, subject, resource
			return addConsent(s.scopedKey(parts[2], parts[1], parts[3]))
		})
	default:
		err = s.scan(tx, bucketConsents, s.prefix(f.Subject), func(k, _ []byte) error { return addConsent(k) })
	}
	if err != nil {
		return nil, err
	}
	// Families: through the index by user, or by client when only the
	// client is named (of every issuer: addFamily keeps this one's).
	index, by := bucketFamiliesBySubject, f.Subject
	if f.ClientID != "" && f.Subject == "" {
		index, by = bucketFamiliesByClient, f.ClientID
	}
	err = s.scan(tx, index, indexPrefix(by), func(k, _ []byte) error {
		return addFamily(k[bytes.LastIndexByte(k, 0)+1:])
	})
	if err != nil {
		return nil, err
	}
	return storage.JoinGrants(consents, families), nil
}

// RevokeGrants implements Store.
func (s *issuerStore) RevokeGrants(ctx context.Context, f storage.GrantFilter, now, tokensExpireBy time.Time) ([]storage.Grant, error) {
	var revoked []storage.Grant
	defer s.revocations.Add(1)
	err := s.update(ctx, "revoke_grants", func(tx *bbolt.Tx) error {
		var err error
		revoked, err = s.revokeGrants(tx, f, now, tokensExpireBy)
		return err
	})
	return revoked, err
}

// revokeGrants forgets the consents of the grants f matches, revokes their
// families, and records the token revocation: for the client or the user
// when f names only that, else for each grant.
func (s *issuerStore) revokeGrants(tx *bbolt.Tx, f storage.GrantFilter, now, tokensExpireBy time.Time) ([]storage.Grant, error) {
	grants, err := s.matchingGrants(tx, f, now)
	if err != nil {
		return nil, err
	}
	record := func(key []byte) error {
		if !tokensExpireBy.After(now) {
			return nil
		}
		return put(tx, bucketTokenRevocations, key, tokenRevocation{RevokedAt: now, ExpiresAt: tokensExpireBy})
	}
	switch {
	case f.Subject == "" && f.ClientID != "" && f.Resource == "":
		err = record(s.scopedKey(storage.RevokedClient, f.ClientID))
	case f.Subject != "" && f.ClientID == "" && f.Resource == "":
		err = record(s.scopedKey(storage.RevokedSubject, f.Subject))
	}
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		if f.ClientID == "" || f.Subject != "" {
			if err := record(s.scopedKey(storage.RevokedGrant, g.Subject, g.ClientID, g.Resource)); err != nil {
				return nil, err
			}
		}
		if err := tx.Bucket(bucketConsents).Delete(s.scopedKey(g.Subject, g.ClientID, g.Resource)); err != nil {
			return nil, err
		}
		if err := tx.Bucket(bucketClientConsents).Delete(s.scopedKey(g.ClientID, g.Subject, g.Resource)); err != nil {
			return nil, err
		}
		if err := tx.Bucket(bucketUpstreamTokens).Delete(s.scopedKey(g.Subject, g.ClientID, g.Resource)); err != nil {
			return nil, err
		}
		for i := range g.Families {
			fam := &g.Families[i] // reported revoked
			fam.RevokedAt = now
			if err := put(tx, bucketFamilies, []byte(fam.ID), fam); err != nil {
				return nil, err
			}
		}
	}
	return grants, nil
}

// Counts implements Store.
func (s *issuerStore) Counts(ctx context.Context, now time.Time) (storage.Counts, error) {
	var c storage.Counts
	err := s.view(ctx, "counts", func(tx *bbolt.Tx) error {
		c = storage.Counts{}
		grants, err := s.matchingGrants(tx, storage.GrantFilter{}, now)
		if err != nil {
			return err
		}
		c.Grants = len(grants)
		if err := s.scan(tx, bucketClients, s.prefix(""), func(_, v []byte) error {
			var cl storage.Client
			if decodes(v, &cl) && !storage.Expired(cl.ExpiresAt, now) {
				c.Clients++
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketSessions).ForEach(func(_, v []byte) error {
			var sess storage.Session
			if decodes(v, &sess) && sess.Issuer == s.issuer && !storage.Expired(sess.ExpiresAt, now) {
				c.Sessions++
			}
			return nil
		})
	})
	return c, err
}
