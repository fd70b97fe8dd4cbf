package endpoints

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/upstream"
)

// The custody of upstream tokens (pass_upstream_token): the tokens an
// identity provider issues at a sign-in are kept sealed for the sign-in
// session, move to the grant the session authorizes next, and the guard
// hands the access token to the MCP server in
// {http.oauth2.upstream_access_token}, refreshing it shortly before it
// expires.

// custody keeps the upstream tokens: sealed, moved from the sign-in
// session to the grant, and handed to the guard fresh.
type custody struct {
	*core
	// providerByName finds a provider by the name in its URLs.
	providerByName map[string]upstream.Provider
	upstream       upstreamTokens
}

func newCustody(c *core, providers []upstream.Provider) *custody {
	k := &custody{core: c, providerByName: map[string]upstream.Provider{}}
	for _, p := range providers {
		k.providerByName[p.Name()] = p
	}
	return k
}

// upstreamRefreshMargin is how long before its expiry an upstream access
// token is refreshed at most; a token that lives less than four of them
// is refreshed a quarter of its lifetime before (see refreshMargin).
const upstreamRefreshMargin = time.Minute

// maxUpstreamEntries bounds the guard's memory of upstream tokens.
const maxUpstreamEntries = 100_000

// upstreamSecret is what is sealed: never logged, never in a metric, the
// admin API or an export.
type upstreamSecret struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// Obtained is when the provider issued it (zero in records written
	// before it was kept).
	Obtained time.Time `json:"obtained,omitzero"`
}

// Refusals of the guard's upstream step.
var (
	errNoUpstreamToken     = errors.New("the identity provider's token for this grant is gone (refused or revoked there); authorize again")
	errUpstreamUnavailable = errors.New("the identity provider cannot refresh the upstream token right now")
	errUpstreamUnsealable  = errors.New("the upstream token cannot be opened with storage_key")
)

// upstreamPendingResource prefixes the resource under which a sign-in
// session's tokens wait for their grant.
const upstreamPendingResource = "session:"

// passesUpstream reports whether a login keeps its tokens for the grants.
func (s *custody) passesUpstream(provider string) bool {
	return provider != "" && s.cfg.SignIn.PassUpstreamToken[provider]
}

// sessionRef names a sign-in session's pending upstream tokens: the hash
// of its cookie, never the cookie itself.
func sessionRef(r *http.Request) string {
	c, err := r.Cookie(cookieName(r, sessionCookie))
	if err != nil || c.Value == "" {
		return ""
	}
	return pendingRef(c.Value)
}

// pendingRef is the resource under which session sid's tokens wait.
func pendingRef(sid string) string {
	return upstreamPendingResource + base64.RawURLEncoding.EncodeToString(storage.Hash(sid))
}

// sealData binds a sealed token to its issuer, user and provider (it
// moves from the session to the grant, so not to either).
func (s *custody) sealData(subject, provider string) []byte {
	return []byte(s.cfg.Issuer + "\x00" + subject + "\x00" + provider)
}

func newSecret(tok *oauth2.Token, now time.Time) *upstreamSecret {
	return &upstreamSecret{tok.AccessToken, tok.RefreshToken, tok.TokenType, tok.Expiry, now}
}

// refreshMargin is how long before its expiry a token is refreshed: a
// minute, or a quarter of its lifetime when that is shorter, so that a
// provider whose tokens live 20 s is not asked on every request.
func refreshMargin(sec *upstreamSecret) time.Duration {
	if sec.Obtained.IsZero() || sec.Expiry.IsZero() {
		return upstreamRefreshMargin
	}
	return min(upstreamRefreshMargin, sec.Expiry.Sub(sec.Obtained)/4)
}

func (s *custody) sealUpstream(subject, provider string, sec *upstreamSecret) ([]byte, error) {
	plain, err := json.Marshal(sec)
	if err != nil {
		return nil, err
	}
	return s.cfg.SignIn.Sealer.Seal(plain, s.sealData(subject, provider)), nil
}

func (s *custody) openUpstream(t *storage.UpstreamToken) (*upstreamSecret, error) {
	plain, err := s.cfg.SignIn.Sealer.Open(t.Sealed, s.sealData(t.Subject, t.Provider))
	if err != nil {
		return nil, errUpstreamUnsealable
	}
	var sec upstreamSecret
	if err := json.Unmarshal(plain, &sec); err != nil {
		return nil, errUpstreamUnsealable
	}
	return &sec, nil
}

// keepSignInTokens stores what the provider issued at a sign-in, for the
// session sid, until a grant takes it.
func (s *custody) keepSignInTokens(ctx context.Context, sid, subject, provider string, tok *oauth2.Token, expires time.Time) error {
	sealed, err := s.sealUpstream(subject, provider, newSecret(tok, time.Now()))
	if err != nil {
		return err
	}
	return s.cfg.Storage.Store.PutUpstreamToken(ctx, &storage.UpstreamToken{Subject: subject, Resource: pendingRef(sid), Provider: provider,
		Sealed: sealed, ExpiresAt: expires})
}

// needsUpstreamSignIn reports whether an authorization must first go
// through the provider again: the user signed in with a login that passes
// its tokens on, the session's tokens went to another grant, and this
// grant has none.
func (s *custody) needsUpstreamSignIn(r *http.Request, user identity, clientID, resource string) bool {
	if !s.passesUpstream(user.profile.Provider) {
		return false
	}
	now := time.Now()
	if ref := sessionRef(r); ref != "" {
		if _, err := s.cfg.Storage.Store.GetUpstreamToken(r.Context(), user.subject, "", ref, now); err == nil {
			return false
		}
	}
	_, err := s.cfg.Storage.Store.GetUpstreamToken(r.Context(), user.subject, clientID, resource, now)
	return err != nil
}

// attachUpstream gives the grant being authorized the session's pending
// upstream tokens (taken once; a grant that has tokens keeps them when
// the session has none left).
func (s *custody) attachUpstream(r *http.Request, user identity, clientID, resource string) error {
	ref := sessionRef(r)
	if !s.passesUpstream(user.profile.Provider) || ref == "" {
		return nil
	}
	t, err := s.cfg.Storage.Store.TakeUpstreamToken(r.Context(), user.subject, "", ref, time.Now())
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	t.ClientID, t.Resource = clientID, resource
	t.ExpiresAt = time.Now().Add(s.cfg.Tokens.RefreshFamilyLifetime)
	return s.cfg.Storage.Store.PutUpstreamToken(r.Context(), t)
}

// upstreamTokens is the guard's memory of upstream access tokens, by
// grant and refresh family (a new authorization is a new family, and
// brings new tokens).
type upstreamTokens struct {
	mu      sync.Mutex
	entries map[string]*upstreamEntry
}

type upstreamEntry struct {
	mu     sync.Mutex // one refresh at a time per grant
	secret *upstreamSecret
}

func (u *upstreamTokens) entry(key string) *upstreamEntry {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.entries == nil || len(u.entries) >= maxUpstreamEntries {
		u.entries = map[string]*upstreamEntry{}
	}
	e, ok := u.entries[key]
	if !ok {
		e = &upstreamEntry{}
		u.entries[key] = e
	}
	return e
}

func (u *upstreamTokens) drop(key string) {
	u.mu.Lock()
	delete(u.entries, key)
	u.mu.Unlock()
}

// fresh reports whether an upstream access token may be handed on now.
func fresh(sec *upstreamSecret, now time.Time) bool {
	return sec != nil && sec.AccessToken != "" && (sec.Expiry.IsZero() || sec.Expiry.Sub(now) > refreshMargin(sec))
}

// upstreamAccessToken is the provider's access token for the grant of a
// verified access token, refreshed when it is about to expire. Parallel
// requests of a grant wait for one refresh. A provider that refuses the
// refresh (the user revoked us there) ends the grant's upstream tokens:
// errNoUpstreamToken.
func (s *custody) upstreamAccessToken(ctx context.Context, c *accessTokenClaims) (string, error) {
	aud := ""
	if len(c.Audience) > 0 {
		aud = c.Audience[0]
	}
	key := c.Subject + "\x00" + c.ClientID + "\x00" + aud + "\x00" + cmp.Or(c.FamilyID, c.ID)
	e := s.upstream.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if fresh(e.secret, now) {
		return e.secret.AccessToken, nil
	}
	stored, err := s.cfg.Storage.Store.GetUpstreamToken(ctx, c.Subject, c.ClientID, aud, now)
	if errors.Is(err, storage.ErrNotFound) {
		s.upstream.drop(key)
		return "", errNoUpstreamToken
	}
	if err != nil {
		return "", errRevocationUnknown
	}
	sec, err := s.openUpstream(stored)
	if err != nil {
		return "", err
	}
	if fresh(sec, now) {
		e.secret = sec
		return sec.AccessToken, nil
	}
	if sec.RefreshToken == "" {
		return "", s.endUpstream(ctx, key, stored, "the upstream access token expired and the provider gave no refresh token")
	}
	p := s.providerByName[stored.Provider]
	if p == nil {
		return "", errNoUpstreamToken
	}
	tok, err := p.Refresh(ctx, sec.RefreshToken)
	switch {
	case errors.Is(err, upstream.ErrRefreshRefused):
		// Another node may have refreshed first with a rotating refresh
		// token: then the stored one is newer, and good.
		if again, err := s.cfg.Storage.Store.GetUpstreamToken(ctx, c.Subject, c.ClientID, aud, time.Now()); err == nil {
			if newer, err := s.openUpstream(again); err == nil && newer.RefreshToken != sec.RefreshToken && fresh(newer, time.Now()) {
				e.secret = newer
				return newer.AccessToken, nil
			}
		}
		return "", s.endUpstream(ctx, key, stored, "the identity provider refused the refresh token")
	case err != nil:
		s.cfg.Logger.Warn("guard: refreshing the upstream token", zap.String("provider", stored.Provider), zap.Error(err))
		return "", errUpstreamUnavailable
	}
	refreshed := newSecret(tok, time.Now())
	refreshed.RefreshToken = cmp.Or(refreshed.RefreshToken, sec.RefreshToken)
	if stored.Sealed, err = s.sealUpstream(c.Subject, stored.Provider, refreshed); err == nil {
		err = s.cfg.Storage.Store.PutUpstreamToken(ctx, stored)
	}
	if err != nil {
		s.cfg.Logger.Warn("guard: storing the refreshed upstream token", zap.String("provider", stored.Provider), zap.Error(err))
	}
	e.secret = refreshed
	s.audit.info(eventUpstreamRefreshed, zap.String("provider", stored.Provider), zap.String("sub", c.Subject), zap.String("client_id", c.ClientID))
	return refreshed.AccessToken, nil
}

// endUpstream deletes a grant's upstream tokens the provider no longer
// honours.
func (s *custody) endUpstream(ctx context.Context, key string, t *storage.UpstreamToken, reason string) error {
	s.upstream.drop(key)
	if err := s.cfg.Storage.Store.DeleteUpstreamToken(ctx, t.Subject, t.ClientID, t.Resource); err != nil {
		s.cfg.Logger.Warn("guard: deleting upstream tokens", zap.Error(err))
	}
	s.audit.info(eventUpstreamEnded, zap.String("provider", t.Provider), zap.String("sub", t.Subject), zap.String("client_id", t.ClientID), zap.String("reason", reason))
	return errNoUpstreamToken
}
