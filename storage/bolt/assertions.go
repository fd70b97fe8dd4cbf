package bolt

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
)

// usedAssertion is the record of a used assertion, under
// storage.AssertionKey: kept until the assertion expires.
type usedAssertion struct {
	Issuer    string    `json:"iss"`
	ExpiresAt time.Time `json:"expires_at"`
}

// UseAssertion implements storage.AssertionStore.
func (s *issuerStore) UseAssertion(ctx context.Context, signer, jti string, expiresAt, now time.Time) error {
	key := storage.AssertionKey(s.issuer, signer, jti)
	return s.update(ctx, "use_assertion", func(tx *bbolt.Tx) error {
		var used usedAssertion
		err := get(tx, bucketAssertions, key, &used)
		switch {
		case err == nil && !storage.Expired(used.ExpiresAt, now):
			return storage.ErrReplayed
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return err
		}
		return put(tx, bucketAssertions, key, &usedAssertion{Issuer: s.issuer, ExpiresAt: expiresAt})
	})
}
