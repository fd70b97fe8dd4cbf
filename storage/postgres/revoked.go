package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// revocation is one committed revocation as a notice carries it to every
// node (see announce): an access token's jti, a refresh family, or a
// token_revocations row (kind client, sub or grant). Kind reload asks
// every node to load the whole set again (an import, a sweep).
type revocation struct {
	Kind     string    `json:"k"`
	Issuer   string    `json:"iss,omitempty"`
	ID       string    `json:"id,omitempty"` // the jti or the family id
	Subject  string    `json:"sub,omitempty"`
	ClientID string    `json:"cid,omitempty"`
	Resource string    `json:"res,omitempty"`
	At       time.Time `json:"at,omitzero"` // revoked_at of a client, sub or grant row
	Expires  time.Time `json:"exp,omitzero"`
}

const (
	revokedJTI    = "jti"
	revokedFamily = "family"
	revokeReload  = "reload"
)

// revokedSet is this node's copy of every revocation not yet swept, so that
// AccessTokenRevoked is a memory read: loaded whole when the listener
// connects (after LISTEN, so nothing committed in between is missed),
// then kept by the notices, and by this node's own commits at once.
type revokedSet struct {
	mu     sync.RWMutex
	ready  bool
	ids    map[string]time.Time   // jti or issuer+family id -> expiry
	scoped map[string]scopedEntry // kind+issuer+sub+client+resource -> row
}

type scopedEntry struct {
	at, expires time.Time
}

func idKey(kind, issuer, id string) string { return kind + "\x00" + issuer + "\x00" + id }

func scopedKey(kind, issuer, subject, clientID, resource string) string {
	return kind + "\x00" + issuer + "\x00" + subject + "\x00" + clientID + "\x00" + resource
}

// add applies revocations (a reload is the caller's to do).
func (r *revokedSet) add(revs ...revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids, r.scoped = map[string]time.Time{}, map[string]scopedEntry{}
	}
	for _, v := range revs {
		r.put(v)
	}
}

// put applies one revocation; a known expiry is never lowered, and a
// scoped revocation keeps its latest time.
func (r *revokedSet) put(v revocation) {
	switch v.Kind {
	case revokedJTI, revokedFamily:
		issuer := v.Issuer
		if v.Kind == revokedJTI {
			issuer = ""
		}
		k := idKey(v.Kind, issuer, v.ID)
		if old, ok := r.ids[k]; !ok || v.Expires.After(old) {
			r.ids[k] = v.Expires
		}
	case storage.RevokedClient, storage.RevokedSubject, storage.RevokedGrant:
		k := scopedKey(v.Kind, v.Issuer, v.Subject, v.ClientID, v.Resource)
		old, ok := r.scoped[k]
		if !ok {
			r.scoped[k] = scopedEntry{v.At, v.Expires}
			return
		}
		r.scoped[k] = scopedEntry{latest(old.at, v.At), latest(old.expires, v.Expires)}
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// named reports whether a notice names one revocation to read back.
func (v revocation) named() bool {
	switch v.Kind {
	case revokedJTI, revokedFamily:
		return v.ID != ""
	case storage.RevokedClient, storage.RevokedSubject, storage.RevokedGrant:
		return v.Issuer != ""
	}
	return false
}

// reread applies the revocation a notice names as the database holds it:
// its times are the row's, never the notice's, and a notice naming no row
// changes nothing.
func (r *revokedSet) reread(ctx context.Context, q querier, v revocation) error {
	var row pgx.Row
	switch v.Kind {
	case revokedJTI:
		row = q.QueryRow(ctx, "SELECT NULL::timestamptz, expires_at FROM revoked_access_tokens WHERE jti = $1", v.ID)
	case revokedFamily:
		row = q.QueryRow(ctx, "SELECT NULL::timestamptz, expires_at FROM refresh_families WHERE id = $1 AND issuer = $2 AND revoked", v.ID, v.Issuer)
	default:
		row = q.QueryRow(ctx, `SELECT revoked_at, expires_at FROM token_revocations
			WHERE issuer = $1 AND kind = $2 AND subject = $3 AND client_id = $4 AND resource = $5`, v.Issuer, v.Kind, v.Subject, v.ClientID, v.Resource)
	}
	var at *time.Time
	held := revocation{Kind: v.Kind, Issuer: v.Issuer, ID: v.ID, Subject: v.Subject, ClientID: v.ClientID, Resource: v.Resource}
	switch err := row.Scan(&at, &held.Expires); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	if at != nil {
		held.At = *at
	}
	r.add(held)
	return nil
}

// revoked answers storage.Store.AccessTokenRevoked from memory, by the
// same rules as the query it replaces; ok is false until the set is
// loaded.
func (r *revokedSet) revoked(issuer string, t storage.AccessTokenRef) (revoked, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.ready {
		return false, false
	}
	if _, hit := r.ids[idKey(revokedJTI, "", t.ID)]; hit && t.ID != "" {
		return true, true
	}
	if _, hit := r.ids[idKey(revokedFamily, issuer, t.FamilyID)]; hit && t.FamilyID != "" {
		return true, true
	}
	for _, k := range []string{
		scopedKey(storage.RevokedClient, issuer, "", t.ClientID, ""),
		scopedKey(storage.RevokedSubject, issuer, t.Subject, "", ""),
		scopedKey(storage.RevokedGrant, issuer, t.Subject, t.ClientID, t.Resource),
	} {
		if e, hit := r.scoped[k]; hit && !e.at.Before(t.IssuedAt) {
			return true, true
		}
	}
	return false, true
}

// load replaces the set with every revocation in the schema.
func (r *revokedSet) load(ctx context.Context, q querier) error {
	fresh := &revokedSet{ids: map[string]time.Time{}, scoped: map[string]scopedEntry{}}
	// Everything not yet swept, as the query this replaces sees it.
	rows, err := q.Query(ctx, `SELECT 'jti', '', jti, '', '', '', NULL::timestamptz, expires_at FROM revoked_access_tokens
		UNION ALL SELECT 'family', issuer, id, '', '', '', NULL, expires_at FROM refresh_families WHERE revoked
		UNION ALL SELECT kind, issuer, '', subject, client_id, resource, revoked_at, expires_at FROM token_revocations`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v revocation
		var at *time.Time
		if err := rows.Scan(&v.Kind, &v.Issuer, &v.ID, &v.Subject, &v.ClientID, &v.Resource, &at, &v.Expires); err != nil {
			return err
		}
		if at != nil {
			v.At = *at
		}
		fresh.put(v)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	r.ids, r.scoped, r.ready = fresh.ids, fresh.scoped, true
	r.mu.Unlock()
	return nil
}

// prune forgets what expired by now, as the sweep deletes it from the
// database (the tokens it names have expired too). Every node's sweeper
// prunes its own set, whichever node swept the tables; the expiries are
// the database's (see reread), so nothing the database still holds as
// live is forgotten.
func (r *revokedSet) prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, exp := range r.ids {
		if !exp.After(now) {
			delete(r.ids, k)
		}
	}
	for k, e := range r.scoped {
		if !e.expires.After(now) {
			delete(r.scoped, k)
		}
	}
}

// notice is the payload of a revocation's notification.
func (v revocation) notice() string {
	b, _ := json.Marshal(v)
	return string(b)
}
