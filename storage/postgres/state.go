package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// SigningKeys implements storage.Store.
func (d *DB) SigningKeys(ctx context.Context) ([]storage.SigningKey, error) {
	defer d.timed("signing_keys", time.Now())
	keys, err := signingKeys(ctx, d.pool)
	return keys, storage.Answer(err)
}

// signingKeys returns the stored keys, newest first.
func signingKeys(ctx context.Context, q querier) ([]storage.SigningKey, error) {
	rows, err := q.Query(ctx, "SELECT doc FROM signing_keys ORDER BY created_at DESC")
	if err != nil {
		return nil, err
	}
	return collect[storage.SigningKey](rows)
}

// collect decodes every row's doc.
func collect[T any](rows pgx.Rows) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var v T
		if err := json.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func putKey(ctx context.Context, tx pgx.Tx, k *storage.SigningKey) error {
	_, err := tx.Exec(ctx, `INSERT INTO signing_keys (kid, doc, created_at, verify_until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kid) DO UPDATE SET doc = excluded.doc, verify_until = excluded.verify_until`, k.ID, k, k.CreatedAt, expiry(k.VerifyUntil))
	return err
}

// EnsureSigningKey implements storage.Store, under an advisory lock so
// that nodes starting at once converge on one key.
func (d *DB) EnsureSigningKey(ctx context.Context, generate func() (*storage.SigningKey, error)) (*storage.SigningKey, error) {
	var active *storage.SigningKey
	err := d.tx(ctx, "ensure_signing_key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", d.lock("signing keys")); err != nil {
			return err
		}
		keys, err := signingKeys(ctx, tx)
		if err != nil {
			return err
		}
		if active = storage.ActiveKey(keys); active != nil {
			return nil
		}
		if active, err = generate(); err != nil {
			return fmt.Errorf("generating signing key: %w", err)
		}
		if err := putKey(ctx, tx, active); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", d.channel, keysNotice)
		return err
	})
	if err != nil {
		return nil, err
	}
	return active, nil
}

// RotateSigningKey implements storage.Store.
func (d *DB) RotateSigningKey(ctx context.Context, current string, next *storage.SigningKey, verifyOldUntil time.Time) error {
	return d.tx(ctx, "rotate_signing_key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", d.lock("signing keys")); err != nil {
			return err
		}
		keys, err := signingKeys(ctx, tx)
		if err != nil {
			return err
		}
		changed, dropped, err := storage.PlanRotation(keys, current, next, verifyOldUntil)
		if err != nil {
			return err
		}
		return d.putKeys(ctx, tx, changed, dropped)
	})
}

// RetireSigningKey implements storage.Store.
func (d *DB) RetireSigningKey(ctx context.Context, kid string, now time.Time) error {
	return d.tx(ctx, "retire_signing_key", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", d.lock("signing keys")); err != nil {
			return err
		}
		keys, err := signingKeys(ctx, tx)
		if err != nil {
			return err
		}
		changed, dropped, err := storage.PlanRetirement(keys, kid, now)
		if err != nil {
			return err
		}
		return d.putKeys(ctx, tx, changed, dropped)
	})
}

// putKeys writes changed keys and deletes dropped ones; every node
// re-reads the keys when tx commits.
func (d *DB) putKeys(ctx context.Context, tx pgx.Tx, changed []storage.SigningKey, dropped []string) error {
	for i := range changed {
		if err := putKey(ctx, tx, &changed[i]); err != nil {
			return err
		}
	}
	if len(dropped) > 0 {
		if _, err := tx.Exec(ctx, "DELETE FROM signing_keys WHERE kid = ANY($1)", dropped); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", d.channel, keysNotice)
	return err
}

// Clients implements storage.Store.
func (s *issuerStore) Clients(ctx context.Context) ([]storage.Client, error) {
	defer s.timed("clients", time.Now())
	rows, err := s.pool.Query(ctx, "SELECT doc FROM clients WHERE issuer = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id", s.issuer, time.Now())
	if err != nil {
		return nil, storage.Unavailable(err)
	}
	clients, err := collect[storage.Client](rows)
	return clients, storage.Answer(err)
}

// Grants implements storage.Store.
func (s *issuerStore) Grants(ctx context.Context, f storage.GrantFilter, now time.Time) ([]storage.Grant, error) {
	defer s.timed("grants", time.Now())
	grants, err := s.matchingGrants(ctx, s.pool, f, now, false)
	return grants, storage.Answer(err)
}

// filter is the WHERE clause of a grant filter, from argument $3 on.
func filter(f storage.GrantFilter) (string, []any) {
	where, args := "", []any{}
	for _, c := range []struct{ column, value string }{{"subject", f.Subject}, {"client_id", f.ClientID}, {"resource", f.Resource}} {
		if c.value != "" {
			args = append(args, c.value)
			where += fmt.Sprintf(" AND %s = $%d", c.column, len(args)+2)
		}
	}
	return where, args
}

// matchingGrants reads the consents and the live families the filter
// matches (through their indexes), locking the families when lock.
func (s *issuerStore) matchingGrants(ctx context.Context, q querier, f storage.GrantFilter, now time.Time, lock bool) ([]storage.Grant, error) {
	where, args := filter(f)
	rows, err := q.Query(ctx, "SELECT doc FROM consents WHERE issuer = $1 AND $2::timestamptz IS NOT NULL"+where, append([]any{s.issuer, now}, args...)...)
	if err != nil {
		return nil, err
	}
	consents, err := collect[storage.Consent](rows)
	if err != nil {
		return nil, err
	}
	forUpdate := ""
	if lock {
		forUpdate = " FOR UPDATE"
	}
	rows, err = q.Query(ctx, "SELECT doc FROM refresh_families WHERE issuer = $1 AND NOT revoked AND expires_at > $2"+where+" ORDER BY id"+forUpdate,
		append([]any{s.issuer, now}, args...)...)
	if err != nil {
		return nil, err
	}
	families, err := collect[storage.RefreshFamily](rows)
	if err != nil {
		return nil, err
	}
	return storage.JoinGrants(consents, families), nil
}

// RevokeGrants implements storage.Store.
func (s *issuerStore) RevokeGrants(ctx context.Context, f storage.GrantFilter, now, tokensExpireBy time.Time) ([]storage.Grant, error) {
	var revoked []storage.Grant
	defer s.revocations.Add(1)
	err := s.revoke(ctx, "revoke_grants", func(tx pgx.Tx) ([]revocation, error) {
		var revs []revocation
		var err error
		revoked, revs, err = s.revokeGrants(ctx, tx, f, now, tokensExpireBy)
		return revs, err
	})
	return revoked, err
}

// revokeGrants is RevokeGrants inside tx (see the bbolt backend: the same
// records, the same rules); it returns the revocations to announce.
func (s *issuerStore) revokeGrants(ctx context.Context, tx pgx.Tx, f storage.GrantFilter, now, tokensExpireBy time.Time) ([]storage.Grant, []revocation, error) {
	grants, err := s.matchingGrants(ctx, tx, f, now, true)
	if err != nil {
		return nil, nil, err
	}
	var revs []revocation
	record := func(kind, subject, clientID, resource string) error {
		if !tokensExpireBy.After(now) {
			return nil
		}
		revs = append(revs, revocation{Kind: kind, Issuer: s.issuer, Subject: subject, ClientID: clientID, Resource: resource, At: now, Expires: tokensExpireBy})
		_, err := tx.Exec(ctx, `INSERT INTO token_revocations (issuer, kind, subject, client_id, resource, revoked_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issuer, kind, subject, client_id, resource)
			DO UPDATE SET revoked_at = excluded.revoked_at, expires_at = excluded.expires_at`, s.issuer, kind, subject, clientID, resource, now, tokensExpireBy)
		return err
	}
	switch {
	case f.Subject == "" && f.ClientID != "" && f.Resource == "":
		err = record(storage.RevokedClient, "", f.ClientID, "")
	case f.Subject != "" && f.ClientID == "" && f.Resource == "":
		err = record(storage.RevokedSubject, f.Subject, "", "")
	}
	if err != nil {
		return nil, nil, err
	}
	for _, g := range grants {
		if f.ClientID == "" || f.Subject != "" {
			if err := record(storage.RevokedGrant, g.Subject, g.ClientID, g.Resource); err != nil {
				return nil, nil, err
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM consents WHERE issuer = $1 AND subject = $2 AND client_id = $3 AND resource = $4",
			s.issuer, g.Subject, g.ClientID, g.Resource); err != nil {
			return nil, nil, err
		}
		if _, err := tx.Exec(ctx, deleteUpstreamTokens, s.issuer, g.Subject, g.ClientID, g.Resource); err != nil {
			return nil, nil, err
		}
		for i := range g.Families {
			fam := &g.Families[i] // reported revoked
			fam.RevokedAt = now
			if _, err := tx.Exec(ctx, "UPDATE refresh_families SET doc = $2, revoked = true WHERE id = $1", fam.ID, fam); err != nil {
				return nil, nil, err
			}
			revs = append(revs, revocation{Kind: revokedFamily, Issuer: s.issuer, ID: fam.ID, Expires: fam.ExpiresAt})
		}
	}
	return grants, revs, nil
}

// Counts implements storage.Store.
func (s *issuerStore) Counts(ctx context.Context, now time.Time) (storage.Counts, error) {
	var c storage.Counts
	grants, err := s.Grants(ctx, storage.GrantFilter{}, now)
	if err != nil {
		return c, err
	}
	c.Grants = len(grants)
	err = s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM clients WHERE issuer = $1 AND (expires_at IS NULL OR expires_at > $2)),
		(SELECT count(*) FROM sessions WHERE issuer = $1 AND expires_at > $2)`, s.issuer, now).Scan(&c.Clients, &c.Sessions)
	return c, storage.Answer(err)
}

// DeleteExpired implements storage.Store, on one node at a time (an
// advisory lock; the others skip), in one transaction of bounded
// statements. An unused client that expires has its families revoked.
func (d *DB) DeleteExpired(ctx context.Context, now time.Time) (storage.Swept, error) {
	deleted := 0
	var revs []revocation
	var revoked []storage.RefreshFamily
	err := d.tx(ctx, "delete_expired", func(tx pgx.Tx) error {
		deleted, revs, revoked = 0, nil, nil
		var mine bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", d.lock("sweeper")).Scan(&mine); err != nil || !mine {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE refresh_families f SET revoked = true,
			doc = jsonb_set(f.doc, '{revoked_at}', to_jsonb($1::timestamptz))
			FROM clients c WHERE c.expires_at <= $1 AND f.issuer = c.issuer AND f.client_id = c.id AND NOT f.revoked
			RETURNING f.issuer, f.id, f.expires_at, f.client_id, f.subject`, now)
		if err != nil {
			return err
		}
		for rows.Next() {
			v := revocation{Kind: revokedFamily}
			var fam storage.RefreshFamily
			if err := rows.Scan(&v.Issuer, &v.ID, &v.Expires, &fam.ClientID, &fam.Subject); err != nil {
				rows.Close()
				return err
			}
			revs = append(revs, v)
			fam.Issuer, fam.ID, fam.ExpiresAt, fam.RevokedAt = v.Issuer, v.ID, v.Expires, now
			revoked = append(revoked, fam)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := d.announce(ctx, tx, revs...); err != nil {
			return err
		}
		for _, stmt := range []string{
			"DELETE FROM clients WHERE expires_at <= $1",
			"DELETE FROM authorization_codes WHERE expires_at <= $1",
			"DELETE FROM refresh_tokens WHERE expires_at <= $1",
			"DELETE FROM refresh_families WHERE expires_at <= $1",
			"DELETE FROM revoked_access_tokens WHERE expires_at <= $1",
			"DELETE FROM token_revocations WHERE expires_at <= $1",
			"DELETE FROM sessions WHERE expires_at <= $1",
			"DELETE FROM upstream_sign_ins WHERE expires_at <= $1",
			"DELETE FROM upstream_tokens WHERE expires_at <= $1",
			"DELETE FROM pending_authorizations WHERE expires_at <= $1",
			"DELETE FROM used_assertions WHERE expires_at <= $1",
			"DELETE FROM signing_keys WHERE verify_until <= $1",
			"DELETE FROM rate_events WHERE expires_at <= $1",
		} {
			tag, err := tx.Exec(ctx, stmt, now)
			if err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
			if !strings.Contains(stmt, "rate_events") {
				deleted += int(tag.RowsAffected())
			}
		}
		return nil
	})
	if err == nil && len(revs) > 0 {
		d.committed(ctx, revs...)
		d.revocations.Add(1)
	}
	d.revoked.prune(now)
	return storage.Swept{Deleted: deleted, Revoked: revoked}, err
}

// exportQueries select each export type's records (with their hash).
var exportQueries = map[string]string{
	storage.ExportClient:             "SELECT NULL::bytea, doc FROM clients ORDER BY issuer, id",
	storage.ExportFamily:             "SELECT NULL::bytea, doc FROM refresh_families ORDER BY id",
	storage.ExportRefreshToken:       "SELECT hash, doc FROM refresh_tokens ORDER BY hash",
	storage.ExportCode:               "SELECT hash, doc FROM authorization_codes ORDER BY hash",
	storage.ExportConsent:            "SELECT NULL::bytea, doc FROM consents ORDER BY issuer, subject, client_id, resource",
	storage.ExportSession:            "SELECT hash, doc FROM sessions ORDER BY hash",
	storage.ExportPending:            "SELECT hash, doc FROM pending_authorizations ORDER BY hash",
	storage.ExportUpstreamSignIn:     "SELECT hash, doc FROM upstream_sign_ins ORDER BY hash",
	storage.ExportRevokedAccessToken: "SELECT NULL::bytea, jsonb_build_object('jti', jti, 'expires_at', expires_at) FROM revoked_access_tokens ORDER BY jti",
	storage.ExportTokenRevocation: `SELECT NULL::bytea, jsonb_strip_nulls(jsonb_build_object('iss', issuer, 'kind', kind, 'sub', NULLIF(subject, ''),
		'client_id', NULLIF(client_id, ''), 'resource', NULLIF(resource, ''), 'revoked_at', revoked_at, 'expires_at', expires_at))
		FROM token_revocations ORDER BY issuer, kind, subject, client_id, resource`,
}

// Export implements storage.Backend, from one snapshot (REPEATABLE READ).
func (d *DB) Export(ctx context.Context, w io.Writer) (int, error) {
	out := storage.NewExportWriter(w)
	defer d.timed("export", time.Now())
	err := pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, typ := range storage.ExportTypes {
			rows, err := tx.Query(ctx, exportQueries[typ])
			if err != nil {
				return err
			}
			for rows.Next() {
				var hash, doc []byte
				if err := rows.Scan(&hash, &doc); err != nil {
					rows.Close()
					return err
				}
				if err := out.Write(typ, hash, doc); err != nil {
					rows.Close()
					return err
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
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

// Import implements storage.Backend, in one transaction.
func (d *DB) Import(ctx context.Context, r io.Reader) (int, error) {
	records, err := storage.ReadExport(r)
	if err != nil {
		return 0, err
	}
	added := 0
	err = d.tx(ctx, "import", func(tx pgx.Tx) error {
		added = 0
		for i, rec := range records {
			ok, err := importRecord(ctx, tx, rec)
			if errors.Is(err, storage.ErrImportConflict) {
				return fmt.Errorf("record %d (%s): %w", i+1, rec.Type, err)
			}
			if err != nil {
				return fmt.Errorf("record %d (%s): %w", i+1, rec.Type, err)
			}
			if ok {
				added++
			}
		}
		return d.announce(ctx, tx, revocation{Kind: revokeReload}) // imported revocations take effect at once
	})
	if err != nil {
		return 0, err
	}
	d.committed(ctx, revocation{Kind: revokeReload})
	d.revocations.Add(1)
	return added, nil
}

// importRecord inserts one record unless an identical one is stored; a
// different one is ErrImportConflict.
func importRecord(ctx context.Context, tx pgx.Tx, rec storage.ExportRecord) (bool, error) {
	var insert, existing string
	var args []any
	var hashed bool
	switch rec.Type {
	case storage.ExportClient:
		var c storage.Client
		if err := json.Unmarshal(rec.Record, &c); err != nil || c.ID == "" {
			return false, fmt.Errorf("not a client")
		}
		insert, args = "INSERT INTO clients (issuer, id, doc, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", []any{c.Issuer, c.ID, rec.Record, expiry(c.ExpiresAt)}
		existing = "SELECT doc FROM clients WHERE issuer = $1 AND id = $2"
	case storage.ExportFamily:
		var f storage.RefreshFamily
		if err := json.Unmarshal(rec.Record, &f); err != nil || f.ID == "" {
			return false, fmt.Errorf("not a refresh family")
		}
		insert = `INSERT INTO refresh_families (id, issuer, subject, client_id, resource, doc, revoked, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`
		args = []any{f.ID, f.Issuer, f.Subject, f.ClientID, f.Resource, rec.Record, !f.RevokedAt.IsZero(), f.ExpiresAt}
		existing = "SELECT doc FROM refresh_families WHERE id = $1"
	case storage.ExportRefreshToken:
		var t storage.RefreshToken
		if err := json.Unmarshal(rec.Record, &t); err != nil || t.FamilyID == "" {
			return false, fmt.Errorf("not a refresh token")
		}
		hashed = true
		insert = "INSERT INTO refresh_tokens (hash, family_id, doc, rotated, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
		args = []any{rec.Hash, t.FamilyID, rec.Record, !t.RotatedAt.IsZero(), t.ExpiresAt}
		existing = "SELECT doc FROM refresh_tokens WHERE hash = $1"
	case storage.ExportCode:
		var c storage.AuthorizationCode
		if err := json.Unmarshal(rec.Record, &c); err != nil {
			return false, fmt.Errorf("not an authorization code")
		}
		hashed = true
		insert = "INSERT INTO authorization_codes (hash, issuer, doc, used, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
		args = []any{rec.Hash, c.Issuer, rec.Record, !c.UsedAt.IsZero(), c.ExpiresAt}
		existing = "SELECT doc FROM authorization_codes WHERE hash = $1"
	case storage.ExportConsent:
		var c storage.Consent
		if err := json.Unmarshal(rec.Record, &c); err != nil || c.Subject == "" {
			return false, fmt.Errorf("not a consent")
		}
		insert = "INSERT INTO consents (issuer, subject, client_id, resource, doc) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
		args = []any{c.Issuer, c.Subject, c.ClientID, c.Resource, rec.Record}
		existing = "SELECT doc FROM consents WHERE issuer = $1 AND subject = $2 AND client_id = $3 AND resource = $4"
	case storage.ExportSession, storage.ExportPending, storage.ExportUpstreamSignIn:
		var v struct {
			Issuer    string    `json:"iss"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal(rec.Record, &v); err != nil {
			return false, fmt.Errorf("not a %s", rec.Type)
		}
		table := map[string]string{storage.ExportSession: "sessions", storage.ExportPending: "pending_authorizations", storage.ExportUpstreamSignIn: "upstream_sign_ins"}[rec.Type]
		hashed = true
		insert = "INSERT INTO " + table + " (hash, issuer, doc, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
		args = []any{rec.Hash, v.Issuer, rec.Record, v.ExpiresAt}
		existing = "SELECT doc FROM " + table + " WHERE hash = $1"
	case storage.ExportRevokedAccessToken:
		var v storage.RevokedAccessToken
		if err := json.Unmarshal(rec.Record, &v); err != nil || v.JTI == "" {
			return false, fmt.Errorf("not a revoked access token")
		}
		insert, args = "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", []any{v.JTI, v.ExpiresAt}
		existing = "SELECT jsonb_build_object('jti', jti, 'expires_at', expires_at) FROM revoked_access_tokens WHERE jti = $1"
	case storage.ExportTokenRevocation:
		var v storage.TokenRevocation
		if err := json.Unmarshal(rec.Record, &v); err != nil || v.Issuer == "" || v.Kind == "" {
			return false, fmt.Errorf("not a token revocation")
		}
		insert = `INSERT INTO token_revocations (issuer, kind, subject, client_id, resource, revoked_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`
		args = []any{v.Issuer, v.Kind, v.Subject, v.ClientID, v.Resource, v.RevokedAt, v.ExpiresAt}
		existing = `SELECT jsonb_strip_nulls(jsonb_build_object('iss', issuer, 'kind', kind, 'sub', NULLIF(subject, ''), 'client_id', NULLIF(client_id, ''),
			'resource', NULLIF(resource, ''), 'revoked_at', revoked_at, 'expires_at', expires_at)) FROM token_revocations
			WHERE issuer = $1 AND kind = $2 AND subject = $3 AND client_id = $4 AND resource = $5`
	default:
		return false, fmt.Errorf("unknown type")
	}
	if hashed && len(rec.Hash) != 32 {
		return false, fmt.Errorf("the hash is missing")
	}
	tag, err := tx.Exec(ctx, insert, args...)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var doc []byte
	keyArgs := args[:keyCount(rec.Type)]
	if err := tx.QueryRow(ctx, existing, keyArgs...).Scan(&doc); err != nil {
		return false, err
	}
	same := sameTimes(doc, rec.Record)
	if rec.Type == storage.ExportClient {
		same = storage.SameClient(normalizeTimes(doc), normalizeTimes(rec.Record))
	}
	if !same {
		return false, storage.ErrImportConflict
	}
	return false, nil
}

// keyCount is how many of an insert's first arguments name its row.
func keyCount(typ string) int {
	switch typ {
	case storage.ExportClient:
		return 2
	case storage.ExportConsent:
		return 4
	case storage.ExportTokenRevocation:
		return 5
	}
	return 1
}

// sameTimes is storage.SameRecord, reading times as instants (PostgreSQL
// writes them in its own form).
func sameTimes(a, b []byte) bool {
	return storage.SameRecord(normalizeTimes(a), normalizeTimes(b))
}

func normalizeTimes(raw []byte) []byte {
	var v map[string]any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	for k, x := range v {
		if s, ok := x.(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				v[k] = t.UTC().Format(time.RFC3339Nano)
			}
		}
	}
	out, _ := json.Marshal(v)
	return out
}
