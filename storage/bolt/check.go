package bolt

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bbolt "go.etcd.io/bbolt"
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
				return fmt.Errorf("refresh token %x: %w", k[:4], err)
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
				return fmt.Errorf("authorization code %x: %w", k[:4], err)
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
			return fmt.Errorf("refresh family %s: %w", k, err)
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
