package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
)

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
			return fmt.Errorf("decoding signing key %s: %w", k, err)
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
			return fmt.Errorf("generating signing key: %w", err)
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
