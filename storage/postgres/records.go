package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// issuerStore is one issuer's view of the schema: every row it writes
// names the issuer, and rows of other issuers are invisible to it.
type issuerStore struct {
	*DB
	issuer string
}

// expiry is a record's deadline as a column: NULL for none.
func expiry(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// one reads one jsonb doc into v; ErrNotFound when there is no row.
func one(row pgx.Row, v any) error {
	var doc []byte
	if err := row.Scan(&doc); errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	} else if err != nil {
		return err
	}
	return json.Unmarshal(doc, v)
}

func (s *issuerStore) view(ctx context.Context, op string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return storage.Unavailable(err)
	}
	defer s.timed(op, time.Now())
	return storage.Answer(fn())
}

// PutClient implements storage.Store.
func (s *issuerStore) PutClient(ctx context.Context, c *storage.Client) error {
	if c.ID == "" {
		return errors.New("storing client: empty client_id")
	}
	c.Issuer = s.issuer
	return s.view(ctx, "put_client", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO clients (issuer, id, doc, expires_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (issuer, id) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at`, s.issuer, c.ID, c, expiry(c.ExpiresAt))
		return err
	})
}

// GetClient implements storage.Store.
func (s *issuerStore) GetClient(ctx context.Context, id string, now time.Time) (*storage.Client, error) {
	var c storage.Client
	err := s.view(ctx, "get_client", func() error {
		return one(s.pool.QueryRow(ctx, "SELECT doc FROM clients WHERE issuer = $1 AND id = $2", s.issuer, id), &c)
	})
	if err != nil {
		return nil, err
	}
	if storage.Expired(c.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &c, nil
}

// MarkClientUsed implements storage.Store.
func (s *issuerStore) MarkClientUsed(ctx context.Context, id string, now time.Time) error {
	return s.tx(ctx, "mark_client_used", func(tx pgx.Tx) error {
		var c storage.Client
		if err := one(tx.QueryRow(ctx, "SELECT doc FROM clients WHERE issuer = $1 AND id = $2 FOR UPDATE", s.issuer, id), &c); err != nil {
			return err
		}
		c.LastUsedAt, c.ExpiresAt = now, time.Time{}
		_, err := tx.Exec(ctx, "UPDATE clients SET doc = $3, expires_at = NULL WHERE issuer = $1 AND id = $2", s.issuer, id, &c)
		return err
	})
}

// DeleteClient implements storage.Store.
func (s *issuerStore) DeleteClient(ctx context.Context, id string, now, tokensExpireBy time.Time) ([]storage.Grant, error) {
	var revoked []storage.Grant
	defer s.revocations.Add(1)
	err := s.revoke(ctx, "delete_client", func(tx pgx.Tx) ([]revocation, error) {
		if _, err := tx.Exec(ctx, "DELETE FROM clients WHERE issuer = $1 AND id = $2", s.issuer, id); err != nil {
			return nil, err
		}
		var revs []revocation
		var err error
		revoked, revs, err = s.revokeGrants(ctx, tx, storage.GrantFilter{ClientID: id}, now, tokensExpireBy)
		return revs, err
	})
	return revoked, err
}

// SaveAuthorizationCode implements storage.Store.
func (s *issuerStore) SaveAuthorizationCode(ctx context.Context, code string, c *storage.AuthorizationCode) error {
	c.Issuer = s.issuer
	return s.view(ctx, "save_authorization_code", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO authorization_codes (hash, issuer, doc, used, expires_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (hash) DO UPDATE SET issuer = excluded.issuer, doc = excluded.doc, used = excluded.used, expires_at = excluded.expires_at`,
			storage.Hash(code), s.issuer, c, !c.UsedAt.IsZero(), c.ExpiresAt)
		return err
	})
}

// GetAuthorizationCode implements storage.Store.
func (s *issuerStore) GetAuthorizationCode(ctx context.Context, code string, now time.Time) (*storage.AuthorizationCode, error) {
	var c storage.AuthorizationCode
	err := s.view(ctx, "get_authorization_code", func() error {
		return one(s.pool.QueryRow(ctx, "SELECT doc FROM authorization_codes WHERE hash = $1 AND issuer = $2 AND expires_at > $3", storage.Hash(code), s.issuer, now), &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// RedeemAuthorizationCode implements storage.Store: the conditional
// update's row count decides the one winner.
func (s *issuerStore) RedeemAuthorizationCode(ctx context.Context, code string, now time.Time, issued storage.Issuance, refresh *storage.NewRefreshFamily) (*storage.AuthorizationCode, error) {
	var c storage.AuthorizationCode
	used := false
	err := s.tx(ctx, "redeem_authorization_code", func(tx pgx.Tx) error {
		used = false
		hash := storage.Hash(code)
		err := one(tx.QueryRow(ctx, `UPDATE authorization_codes SET used = true
			WHERE hash = $1 AND issuer = $2 AND NOT used AND expires_at > $3 RETURNING doc`, hash, s.issuer, now), &c)
		if errors.Is(err, storage.ErrNotFound) {
			if err := one(tx.QueryRow(ctx, "SELECT doc FROM authorization_codes WHERE hash = $1 AND issuer = $2 AND expires_at > $3 AND used",
				hash, s.issuer, now), &c); err != nil {
				return err
			}
			used = true
			return nil
		}
		if err != nil {
			return err
		}
		c.UsedAt, c.Issued = now, issued
		if refresh != nil {
			if err := s.createFamily(ctx, tx, refresh); err != nil {
				return err
			}
			c.Issued.RefreshFamilyID = refresh.Family.ID
		}
		_, err = tx.Exec(ctx, "UPDATE authorization_codes SET doc = $2 WHERE hash = $1", hash, &c)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case used:
		return &c, storage.ErrAlreadyUsed
	}
	return &c, nil
}

// createFamily stores a new family and its first token.
func (s *issuerStore) createFamily(ctx context.Context, tx pgx.Tx, n *storage.NewRefreshFamily) error {
	f := n.Family
	if f.ID == "" {
		return errors.New("storing refresh family: empty id")
	}
	f.Issuer, f.LastUsedAt = s.issuer, f.CreatedAt
	tag, err := tx.Exec(ctx, `INSERT INTO refresh_families (id, issuer, subject, client_id, resource, doc, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`, f.ID, s.issuer, f.Subject, f.ClientID, f.Resource, &f, f.ExpiresAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("storing refresh family: id %s exists", f.ID)
	}
	first := n.First
	first.FamilyID = f.ID
	first.ExpiresAt = storage.Earliest(first.ExpiresAt, f.ExpiresAt)
	_, err = tx.Exec(ctx, "INSERT INTO refresh_tokens (hash, family_id, doc, expires_at) VALUES ($1, $2, $3, $4)",
		storage.Hash(n.Token), f.ID, &first, first.ExpiresAt)
	return err
}

// RotateRefreshToken implements storage.Store; the rules are those of
// storage.Rotation. The token and its family are locked first, so every
// rotation of one family runs one after the other. A fresh rotation takes
// two round trips: BEGIN, the locking read and the database clock in one
// pipeline, then the writes and COMMIT in another.
func (s *issuerStore) RotateRefreshToken(ctx context.Context, r storage.Rotation) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, storage.Unavailable(err)
	}
	defer s.timed("rotate_refresh_token", time.Now())
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, storage.Unavailable(redact(err))
	}
	defer conn.Release()
	fam, next, err := s.rotate(ctx, conn.Conn(), r)
	if conn.Conn().PgConn().TxStatus() != 'I' {
		// Unfinished (an error, or a refusal): leave nothing open. A
		// connection that cannot roll back is closed by the pool.
		conn.Exec(context.Background(), "ROLLBACK")
	}
	if errors.Is(err, storage.ErrReused) {
		s.revocations.Add(1)
	}
	return fam, next, storage.Answer(err)
}

func (s *issuerStore) rotate(ctx context.Context, c *pgx.Conn, r storage.Rotation) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	key := storage.Hash(r.Presented)
	var b pgx.Batch
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue(`SELECT f.doc, t.doc FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
		WHERE t.hash = $1 AND f.issuer = $2 FOR UPDATE OF f, t`, key, s.issuer)
	// After the lock, in the same pipeline: the database's clock orders
	// the rotations of every node (no node's clock skew, no reordering
	// between reading the time and taking the lock).
	b.Queue("SELECT clock_timestamp()")
	br := c.SendBatch(ctx, &b)
	var fdoc, tdoc []byte
	var dbNow time.Time
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&fdoc, &tdoc)
	}
	if err == nil {
		err = br.QueryRow().Scan(&dbNow)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil, storage.ErrNotFound
	case err != nil:
		return nil, nil, err
	}
	var fam storage.RefreshFamily
	var cur storage.RefreshToken
	if err := json.Unmarshal(fdoc, &fam); err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(tdoc, &cur); err != nil {
		return nil, nil, err
	}
	if r.StoreClock {
		r.Now = dbNow
	}
	next, reused, err := r.Judge(&fam, &cur, func() (used bool, err error) {
		err = c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE hash = ANY($1) AND rotated)", cur.Successors).Scan(&used)
		return used, err
	})
	switch {
	case err != nil:
		return nil, nil, err
	case reused:
		if _, err := c.Exec(ctx, "UPDATE refresh_families SET doc = $2, revoked = true WHERE id = $1", fam.ID, &fam); err != nil {
			return nil, nil, err
		}
		rev := revocation{Kind: revokedFamily, Issuer: s.issuer, ID: fam.ID, Expires: fam.ExpiresAt}
		if err := s.announce(ctx, c, rev); err != nil {
			return nil, nil, err
		}
		if _, err := c.Exec(ctx, "COMMIT"); err != nil {
			return nil, nil, err
		}
		s.committed(ctx, rev)
		return &fam, nil, storage.ErrReused
	}
	nextKey := cur.Successors[len(cur.Successors)-1] // Judge's hash of the next token
	b = pgx.Batch{}
	b.Queue(`WITH family AS (UPDATE refresh_families SET doc = $2 WHERE id = $1),
			presented AS (UPDATE refresh_tokens SET doc = $4, rotated = true WHERE hash = $3)
		INSERT INTO refresh_tokens (hash, family_id, doc, expires_at) VALUES ($5, $1, $6, $7)`,
		fam.ID, &fam, key, &cur, nextKey, &next, next.ExpiresAt)
	b.Queue("COMMIT")
	br = c.SendBatch(ctx, &b)
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, err
	}
	return &fam, &next, nil
}

// GetRefreshToken implements storage.Store.
func (s *issuerStore) GetRefreshToken(ctx context.Context, token string, now time.Time) (*storage.RefreshFamily, *storage.RefreshToken, error) {
	var fam storage.RefreshFamily
	var t storage.RefreshToken
	err := s.view(ctx, "get_refresh_token", func() error {
		var fdoc, tdoc []byte
		err := s.pool.QueryRow(ctx, `SELECT f.doc, t.doc FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
			WHERE t.hash = $1 AND f.issuer = $2`, storage.Hash(token), s.issuer).Scan(&fdoc, &tdoc)
		if errors.Is(err, pgx.ErrNoRows) {
			return storage.ErrNotFound
		}
		if err == nil {
			err = errors.Join(json.Unmarshal(fdoc, &fam), json.Unmarshal(tdoc, &t))
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if storage.Expired(t.ExpiresAt, now) || storage.Expired(fam.ExpiresAt, now) {
		return nil, nil, storage.ErrNotFound
	}
	return &fam, &t, nil
}

// RevokeRefreshFamily implements storage.Store.
func (s *issuerStore) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	defer s.revocations.Add(1)
	return s.revoke(ctx, "revoke_refresh_family", func(tx pgx.Tx) ([]revocation, error) {
		var fam storage.RefreshFamily
		if err := one(tx.QueryRow(ctx, "SELECT doc FROM refresh_families WHERE id = $1 AND issuer = $2 FOR UPDATE", familyID, s.issuer), &fam); err != nil {
			return nil, err
		}
		if !fam.RevokedAt.IsZero() {
			return nil, nil
		}
		fam.RevokedAt = now
		if _, err := tx.Exec(ctx, "UPDATE refresh_families SET doc = $2, revoked = true WHERE id = $1", familyID, &fam); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, deleteUpstreamTokens, s.issuer, fam.Subject, fam.ClientID, fam.Resource); err != nil {
			return nil, err
		}
		return []revocation{{Kind: revokedFamily, Issuer: s.issuer, ID: familyID, Expires: fam.ExpiresAt}}, nil
	})
}

// RevokeAccessToken implements storage.Store.
func (s *issuerStore) RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" {
		return errors.New("revoking access token: empty jti")
	}
	defer s.revocations.Add(1)
	return s.revoke(ctx, "revoke_access_token", func(tx pgx.Tx) ([]revocation, error) {
		_, err := tx.Exec(ctx, `INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2)
			ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at`, jti, expiresAt)
		return []revocation{{Kind: revokedJTI, ID: jti, Expires: expiresAt}}, err
	})
}

// AccessTokenRevoked implements storage.Store: from this node's copy of
// the revocations while its listener is connected (a memory read), else in
// one query (a copy that may have missed a notice is not trusted).
func (s *issuerStore) AccessTokenRevoked(ctx context.Context, t storage.AccessTokenRef) (bool, error) {
	if s.listener.connected.Load() {
		if revoked, ok := s.revoked.revoked(s.issuer, t); ok {
			return revoked, nil
		}
	}
	return s.revokedInDatabase(ctx, t)
}

// revokedInDatabase is AccessTokenRevoked in one query.
func (s *issuerStore) revokedInDatabase(ctx context.Context, t storage.AccessTokenRef) (bool, error) {
	var revoked bool
	err := s.view(ctx, "access_token_revoked", func() error {
		return s.pool.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1)
			OR EXISTS (SELECT 1 FROM refresh_families WHERE id = $2 AND issuer = $3 AND revoked)
			OR EXISTS (SELECT 1 FROM token_revocations WHERE issuer = $3 AND revoked_at >= $7 AND (
				(kind = 'client' AND client_id = $4) OR (kind = 'sub' AND subject = $5) OR
				(kind = 'grant' AND subject = $5 AND client_id = $4 AND resource = $6)))`,
			t.ID, t.FamilyID, s.issuer, t.ClientID, t.Subject, t.Resource, t.IssuedAt).Scan(&revoked)
	})
	return revoked, err
}

// PutConsent implements storage.Store.
func (s *issuerStore) PutConsent(ctx context.Context, c *storage.Consent) error {
	c.Issuer = s.issuer
	return s.view(ctx, "put_consent", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO consents (issuer, subject, client_id, resource, doc) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (issuer, subject, client_id, resource) DO UPDATE SET doc = excluded.doc`, s.issuer, c.Subject, c.ClientID, c.Resource, c)
		return err
	})
}

// GetConsent implements storage.Store.
func (s *issuerStore) GetConsent(ctx context.Context, subject, clientID, resource string) (*storage.Consent, error) {
	var c storage.Consent
	err := s.view(ctx, "get_consent", func() error {
		return one(s.pool.QueryRow(ctx, "SELECT doc FROM consents WHERE issuer = $1 AND subject = $2 AND client_id = $3 AND resource = $4",
			s.issuer, subject, clientID, resource), &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// SavePendingAuthorization implements storage.Store.
func (s *issuerStore) SavePendingAuthorization(ctx context.Context, id string, p *storage.PendingAuthorization) error {
	p.Issuer = s.issuer
	return s.view(ctx, "save_pending_authorization", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO pending_authorizations (hash, issuer, doc, expires_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (hash) DO UPDATE SET issuer = excluded.issuer, doc = excluded.doc, expires_at = excluded.expires_at`,
			storage.Hash(id), s.issuer, p, p.ExpiresAt)
		return err
	})
}

// AnswerPendingAuthorization implements storage.Store: the row is locked
// while the answer is decided.
func (s *issuerStore) AnswerPendingAuthorization(ctx context.Context, id string, a storage.ConsentAnswer) (*storage.PendingAuthorization, bool, error) {
	var p storage.PendingAuthorization
	var repeated, refused bool
	err := s.tx(ctx, "answer_pending_authorization", func(tx pgx.Tx) error {
		repeated, refused = false, false
		key := storage.Hash(id)
		if err := one(tx.QueryRow(ctx, "SELECT doc FROM pending_authorizations WHERE hash = $1 AND issuer = $2 FOR UPDATE", key, s.issuer), &p); err != nil {
			return err
		}
		var err error
		switch refused, repeated, err = a.Judge(&p); {
		case err != nil:
			return err
		case refused: // commit the deletion: a guessed form is used up
			_, err := tx.Exec(ctx, "DELETE FROM pending_authorizations WHERE hash = $1", key)
			return err
		case repeated:
			return nil
		}
		_, err = tx.Exec(ctx, "UPDATE pending_authorizations SET doc = $2, expires_at = $3 WHERE hash = $1", key, &p, p.ExpiresAt)
		return err
	})
	if err == nil && refused {
		err = storage.ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	return &p, repeated, nil
}

// SaveSession implements storage.Store.
func (s *issuerStore) SaveSession(ctx context.Context, id string, sess *storage.Session) error {
	sess.Issuer = s.issuer
	// "create_session": the operation's metric label of earlier versions.
	return s.view(ctx, "create_session", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO sessions (hash, issuer, doc, expires_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (hash) DO UPDATE SET issuer = excluded.issuer, doc = excluded.doc, expires_at = excluded.expires_at`,
			storage.Hash(id), s.issuer, sess, sess.ExpiresAt)
		return err
	})
}

// GetSession implements storage.Store.
func (s *issuerStore) GetSession(ctx context.Context, id string, now time.Time) (*storage.Session, error) {
	var sess storage.Session
	err := s.view(ctx, "get_session", func() error {
		return one(s.pool.QueryRow(ctx, "SELECT doc FROM sessions WHERE hash = $1 AND issuer = $2 AND expires_at > $3", storage.Hash(id), s.issuer, now), &sess)
	})
	if err != nil {
		return nil, err
	}
	return &sess, nil
}

// DeleteSession implements storage.Store.
func (s *issuerStore) DeleteSession(ctx context.Context, id string) error {
	return s.view(ctx, "delete_session", func() error {
		_, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE hash = $1 AND issuer = $2", storage.Hash(id), s.issuer)
		return err
	})
}

// PutUpstreamToken implements storage.Store.
func (s *issuerStore) PutUpstreamToken(ctx context.Context, t *storage.UpstreamToken) error {
	t.Issuer = s.issuer
	return s.view(ctx, "put_upstream_token", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO upstream_tokens (issuer, subject, client_id, resource, doc, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (issuer, subject, client_id, resource) DO UPDATE SET doc = excluded.doc, expires_at = excluded.expires_at`,
			s.issuer, t.Subject, t.ClientID, t.Resource, t, t.ExpiresAt)
		return err
	})
}

// GetUpstreamToken implements storage.Store.
func (s *issuerStore) GetUpstreamToken(ctx context.Context, subject, clientID, resource string, now time.Time) (*storage.UpstreamToken, error) {
	return s.upstreamToken(ctx, "get_upstream_token", selectUpstreamToken, subject, clientID, resource, now)
}

// TakeUpstreamToken implements storage.Store: one DELETE … RETURNING.
func (s *issuerStore) TakeUpstreamToken(ctx context.Context, subject, clientID, resource string, now time.Time) (*storage.UpstreamToken, error) {
	return s.upstreamToken(ctx, "take_upstream_token", deleteUpstreamTokens+" RETURNING doc", subject, clientID, resource, now)
}

// upstreamToken runs query (selecting doc by issuer, subject, client and
// resource) and returns the unexpired record.
func (s *issuerStore) upstreamToken(ctx context.Context, op, query, subject, clientID, resource string, now time.Time) (*storage.UpstreamToken, error) {
	var t storage.UpstreamToken
	err := s.view(ctx, op, func() error {
		return one(s.pool.QueryRow(ctx, query, s.issuer, subject, clientID, resource), &t)
	})
	if err != nil {
		return nil, err
	}
	if storage.Expired(t.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &t, nil
}

// DeleteUpstreamToken implements storage.Store.
func (s *issuerStore) DeleteUpstreamToken(ctx context.Context, subject, clientID, resource string) error {
	return s.view(ctx, "delete_upstream_token", func() error {
		_, err := s.pool.Exec(ctx, deleteUpstreamTokens, s.issuer, subject, clientID, resource)
		return err
	})
}

const (
	selectUpstreamToken  = "SELECT doc FROM upstream_tokens WHERE issuer = $1 AND subject = $2 AND client_id = $3 AND resource = $4"
	deleteUpstreamTokens = "DELETE FROM upstream_tokens WHERE issuer = $1 AND subject = $2 AND client_id = $3 AND resource = $4"
)

// SaveUpstreamSignIn implements storage.Store.
func (s *issuerStore) SaveUpstreamSignIn(ctx context.Context, state string, u *storage.UpstreamSignIn) error {
	u.Issuer = s.issuer
	return s.view(ctx, "save_upstream_sign_in", func() error {
		_, err := s.pool.Exec(ctx, "INSERT INTO upstream_sign_ins (hash, issuer, doc, expires_at) VALUES ($1, $2, $3, $4)",
			storage.Hash(state), s.issuer, u, u.ExpiresAt)
		return err
	})
}

// TakeUpstreamSignIn implements storage.Store: one DELETE … RETURNING,
// so one callback takes it.
func (s *issuerStore) TakeUpstreamSignIn(ctx context.Context, state string, browserHash []byte, now time.Time) (*storage.UpstreamSignIn, error) {
	var u storage.UpstreamSignIn
	err := s.tx(ctx, "take_upstream_sign_in", func(tx pgx.Tx) error {
		key := storage.Hash(state)
		if err := one(tx.QueryRow(ctx, "SELECT doc FROM upstream_sign_ins WHERE hash = $1 AND issuer = $2 FOR UPDATE", key, s.issuer), &u); err != nil {
			return err
		}
		if !u.StartedBy(browserHash) {
			return storage.ErrWrongBrowser
		}
		tag, err := tx.Exec(ctx, "DELETE FROM upstream_sign_ins WHERE hash = $1", key)
		if err == nil && tag.RowsAffected() != 1 {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if storage.Expired(u.ExpiresAt, now) {
		return nil, storage.ErrNotFound
	}
	return &u, nil
}

// UseAssertion implements storage.AssertionStore: the insert either
// creates the record, replaces one that has expired, or does nothing (a
// replay), in one statement.
func (s *issuerStore) UseAssertion(ctx context.Context, signer, jti string, expiresAt, now time.Time) error {
	return s.view(ctx, "use_assertion", func() error {
		tag, err := s.pool.Exec(ctx, `INSERT INTO used_assertions (hash, issuer, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at WHERE used_assertions.expires_at <= $4`,
			storage.AssertionKey(s.issuer, signer, jti), s.issuer, expiresAt, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrReplayed
		}
		return nil
	})
}
