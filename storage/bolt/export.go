package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Backup writes a consistent snapshot of the whole file (a read
// transaction's copy) while the file keeps serving. The snapshot holds
// the generated signing keys: keep it as safe as the file.
func (s *File) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.view(ctx, "backup", func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// exportBuckets are the record buckets of each export type; the index
// buckets are rebuilt on import.
var exportBuckets = map[string][]byte{
	storage.ExportClient: bucketClients, storage.ExportFamily: bucketFamilies, storage.ExportRefreshToken: bucketRefresh,
	storage.ExportCode: bucketCodes, storage.ExportConsent: bucketConsents, storage.ExportSession: bucketSessions,
	storage.ExportPending: bucketPending, storage.ExportUpstreamSignIn: bucketUpstream,
	storage.ExportRevokedAccessToken: bucketRevokedAccess, storage.ExportTokenRevocation: bucketTokenRevocations,
}

// hashed are the types kept under a hash.
var hashed = map[string]bool{storage.ExportRefreshToken: true, storage.ExportCode: true, storage.ExportSession: true,
	storage.ExportPending: true, storage.ExportUpstreamSignIn: true}

// Export implements storage.Backend.
func (s *File) Export(ctx context.Context, w io.Writer) (int, error) {
	out := storage.NewExportWriter(w)
	err := s.view(ctx, "export", func(tx *bbolt.Tx) error {
		for _, typ := range storage.ExportTypes {
			err := tx.Bucket(exportBuckets[typ]).ForEach(func(k, v []byte) error {
				switch typ {
				case storage.ExportRevokedAccessToken:
					var r revokedAccessToken
					json.Unmarshal(v, &r)
					return out.Write(typ, nil, storage.RevokedAccessToken{JTI: string(k), ExpiresAt: r.ExpiresAt})
				case storage.ExportTokenRevocation:
					return out.Write(typ, nil, tokenRevocationOf(k, v))
				case storage.ExportFamily:
					var f storage.RefreshFamily
					if err := decodeFamily(k, v, &f); err != nil {
						return fmt.Errorf("refresh family %s: %w", k, err)
					}
					return out.Write(typ, nil, &f)
				case storage.ExportRefreshToken:
					t, err := exportedRefreshToken(tx, v)
					if err != nil {
						return fmt.Errorf("refresh token %x: %w", k[:4], err)
					}
					return out.Write(typ, k, t)
				case storage.ExportCode, storage.ExportSession, storage.ExportPending, storage.ExportUpstreamSignIn:
					return out.Write(typ, k, v)
				}
				return out.Write(typ, nil, v)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = out.Flush()
	}
	return out.N, err
}

// exportedRefreshToken decodes a refresh token record whole: with the
// fields it leaves to its family filled in (a token whose family is gone
// is exported as it is stored).
func exportedRefreshToken(tx *bbolt.Tx, raw []byte) (*storage.RefreshToken, error) {
	var t storage.RefreshToken
	in, err := decodeRefreshToken(raw, &t)
	if err != nil {
		return nil, err
	}
	var fam storage.RefreshFamily
	if err := get(tx, bucketFamilies, []byte(t.FamilyID), &fam); err == nil {
		in.from(&t, &fam)
	}
	return &t, nil
}

// tokenRevocationOf reads a token revocation record and its key (issuer
// NUL kind NUL the kind's parts).
func tokenRevocationOf(k, v []byte) storage.TokenRevocation {
	var r tokenRevocation
	json.Unmarshal(v, &r)
	parts := strings.Split(string(k), "\x00")
	out := storage.TokenRevocation{Issuer: parts[0], Kind: parts[1], RevokedAt: r.RevokedAt, ExpiresAt: r.ExpiresAt}
	switch {
	case out.Kind == storage.RevokedClient && len(parts) == 3:
		out.ClientID = parts[2]
	case out.Kind == storage.RevokedSubject && len(parts) == 3:
		out.Subject = parts[2]
	case out.Kind == storage.RevokedGrant && len(parts) == 5:
		out.Subject, out.ClientID, out.Resource = parts[2], parts[3], parts[4]
	}
	return out
}

// imported is one record to store: its bucket, key and value, and the
// index entries that go with it.
type imported struct {
	bucket, key, value []byte
	index              [][2][]byte // bucket, key
	// token is a refresh token, encoded (against its family) in the
	// import's transaction.
	token *storage.RefreshToken
}

// importable turns an export record into what this file stores.
func importable(rec storage.ExportRecord) (imported, error) {
	im := imported{bucket: exportBuckets[rec.Type], value: rec.Record}
	bad := func(err error) (imported, error) { return im, fmt.Errorf("%s: %w", rec.Type, err) }
	if hashed[rec.Type] {
		if len(rec.Hash) != 32 {
			return bad(fmt.Errorf("the hash is missing"))
		}
		im.key = rec.Hash
		if rec.Type == storage.ExportRefreshToken {
			im.token = new(storage.RefreshToken)
			if err := json.Unmarshal(rec.Record, im.token); err != nil || im.token.FamilyID == "" {
				return bad(fmt.Errorf("not a refresh token: %w", err))
			}
		}
		return im, nil
	}
	switch rec.Type {
	case storage.ExportClient:
		var c storage.Client
		if err := json.Unmarshal(rec.Record, &c); err != nil || c.ID == "" {
			return bad(fmt.Errorf("not a client: %w", err))
		}
		im.key = scopedKey(c.Issuer, c.ID)
	case storage.ExportFamily:
		var f storage.RefreshFamily
		if err := json.Unmarshal(rec.Record, &f); err != nil || f.ID == "" {
			return bad(fmt.Errorf("not a refresh family: %w", err))
		}
		im.key, im.value = []byte(f.ID), appendFamily(nil, &f)
		im.index = familyIndexEntries(&f)
	case storage.ExportConsent:
		var c storage.Consent
		if err := json.Unmarshal(rec.Record, &c); err != nil || c.Subject == "" {
			return bad(fmt.Errorf("not a consent: %w", err))
		}
		im.key = scopedKey(c.Issuer, c.Subject, c.ClientID, c.Resource)
		im.index = [][2][]byte{{bucketClientConsents, scopedKey(c.Issuer, c.ClientID, c.Subject, c.Resource)}}
	case storage.ExportRevokedAccessToken:
		var r storage.RevokedAccessToken
		if err := json.Unmarshal(rec.Record, &r); err != nil || r.JTI == "" {
			return bad(fmt.Errorf("not a revoked access token: %w", err))
		}
		im.key, im.value = []byte(r.JTI), mustJSON(revokedAccessToken{ExpiresAt: r.ExpiresAt})
	case storage.ExportTokenRevocation:
		var r storage.TokenRevocation
		if err := json.Unmarshal(rec.Record, &r); err != nil || r.Issuer == "" {
			return bad(fmt.Errorf("not a token revocation: %w", err))
		}
		switch r.Kind {
		case storage.RevokedClient:
			im.key = scopedKey(r.Issuer, r.Kind, r.ClientID)
		case storage.RevokedSubject:
			im.key = scopedKey(r.Issuer, r.Kind, r.Subject)
		case storage.RevokedGrant:
			im.key = scopedKey(r.Issuer, r.Kind, r.Subject, r.ClientID, r.Resource)
		default:
			return bad(fmt.Errorf("kind %q", r.Kind))
		}
		im.value = mustJSON(tokenRevocation{RevokedAt: r.RevokedAt, ExpiresAt: r.ExpiresAt})
	}
	return im, nil
}

// sameRecord reports whether a stored record and an imported one say the
// same thing: compact records are compared byte for byte, JSON ones as
// JSON.
func sameRecord(bucket, stored, imported []byte) bool {
	if bytes.Equal(bucket, bucketFamilies) || bytes.Equal(bucket, bucketRefresh) {
		return bytes.Equal(stored, imported)
	}
	if bytes.Equal(bucket, bucketClients) {
		return storage.SameClient(stored, imported)
	}
	return storage.SameRecord(stored, imported)
}

func mustJSON(v any) []byte {
	raw, _ := json.Marshal(v)
	return raw
}

// Import implements storage.Backend: in one transaction, a record
// already stored identically is skipped, one that differs refuses the
// whole import.
func (s *File) Import(ctx context.Context, r io.Reader) (int, error) {
	records, err := storage.ReadExport(r)
	if err != nil {
		return 0, err
	}
	var items []imported
	for i, rec := range records {
		im, err := importable(rec)
		if err != nil {
			return 0, fmt.Errorf("record %d: %w", i+1, err)
		}
		items = append(items, im)
	}
	added := 0
	err = s.update(ctx, "import", func(tx *bbolt.Tx) error {
		added = 0
		for i, im := range items {
			b := tx.Bucket(im.bucket)
			if im.token != nil {
				var fam storage.RefreshFamily
				if err := get(tx, bucketFamilies, []byte(im.token.FamilyID), &fam); err != nil {
					return fmt.Errorf("record %d (%s): family %s: %w", i+1, im.bucket, im.token.FamilyID, err)
				}
				im.value = appendRefreshToken(nil, im.token, &fam)
			}
			if old := b.Get(im.key); old != nil {
				if !sameRecord(im.bucket, old, im.value) {
					return fmt.Errorf("record %d (%s): %w", i+1, im.bucket, storage.ErrImportConflict)
				}
				continue
			}
			if err := b.Put(im.key, im.value); err != nil {
				return err
			}
			for _, ix := range im.index {
				if err := tx.Bucket(ix[0]).Put(ix[1], nil); err != nil {
					return err
				}
			}
			added++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.revocations.Add(1) // imported revocations take effect at once
	return added, nil
}
