package endpoints

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// issuer signs access tokens and verifies them: the signing keys (re-read
// and rotated in rotation.go) and the cache of verified tokens.
type issuer struct {
	*core
	keys          atomic.Pointer[KeySet]
	lastKIDReload atomic.Int64 // unix nanoseconds, see reloadForUnknownKID
	tokens        *tokenCache
}

func newIssuer(c *core, keys *KeySet) *issuer {
	is := &issuer{core: c, tokens: newTokenCache()}
	is.keys.Store(keys)
	return is
}

// mount serves the signing keys (RFC 7517).
func (s *issuer) mount(m routeTable) {
	s.at(m, "/.well-known/jwks.json", serveDocumentFunc(func() []byte { return s.Keys().JWKS() }), false)
}

// Keys is the server's signing key set.
func (s *issuer) Keys() *KeySet { return s.keys.Load() }

// accessTokenClaims are the claims of an RFC 9068 access token. `sid`
// names the refresh-token family the token was issued from, so revoking
// the family denies the token at once. `gty` is "client_credentials" on
// a token a client obtained for itself, whose `sub` is the client id
// (RFC 9068 §2.2), and "workload" on a workload's (its `sub` and
// `client_id` are `<workload_issuer>:<sub>`), so that neither is ever
// taken for a user's. A user who
// signed in through an identity provider also has `idp` (the provider's
// name) and, when known, `email` (verified only), `name` and
// `preferred_username`.
type accessTokenClaims struct {
	jwt.Claims
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope,omitempty"`
	AuthTime  int64  `json:"auth_time,omitempty"`
	FamilyID  string `json:"sid,omitempty"`
	GrantType string `json:"gty,omitempty"`
	// Cnf binds the token to a DPoP key (RFC 9449 §6).
	Cnf               *confirmation `json:"cnf,omitempty"`
	IDP               string        `json:"idp,omitempty"`
	Email             string        `json:"email,omitempty"`
	Name              string        `json:"name,omitempty"`
	PreferredUsername string        `json:"preferred_username,omitempty"`

	// Made once a token is verified (prepare), before it is shared.
	satisfies    []string // Scope and every scope it implies
	placeholders []any    // see identityValues
}

// prepare computes what every request with the token needs.
func (c *accessTokenClaims) prepare(scopes scopeCatalogue) {
	c.satisfies = scopes.effective(splitScope(c.Scope))
	c.placeholders = identityValues(c)
}

// confirmation is a token's cnf claim: the thumbprint of the DPoP key it
// is bound to.
type confirmation struct {
	JKT string `json:"jkt"`
}

// gtyWorkload is the gty of a workload's token (see accessTokenClaims).
const gtyWorkload = "workload"

// subjectType is what the token's subject is: a user, a client or a
// workload ({http.oauth2.subject_type}).
func (c *accessTokenClaims) subjectType() string {
	switch c.GrantType {
	case grantClientCredentials:
		return "client"
	case gtyWorkload:
		return gtyWorkload
	}
	return "user"
}

const grantClientCredentials = "client_credentials"

// grant is what an access token is issued for.
type grant struct {
	clientID, subject, scope, resource, familyID string
	profile                                      storage.Profile
	authTime                                     time.Time
	// gty is the token's gty: grantClientCredentials for a client acting
	// on its own behalf, gtyWorkload for a workload; "" for a user's.
	gty string
	// jkt binds the token to a DPoP key (cnf.jkt); "" for a bearer token.
	jkt string
}

// accessToken is a signed access token and what the response says of it.
type accessToken struct {
	token     string
	id        string
	expiresAt time.Time
}

// mintAccessToken signs an access token for g, audience-bound to its resource.
func (s *issuer) mintAccessToken(jti string, g grant, now time.Time) (accessToken, error) {
	exp := now.Add(s.cfg.Tokens.AccessTokenLifetime)
	claims := accessTokenClaims{
		Claims: jwt.Claims{
			Issuer:    s.cfg.Issuer,
			Subject:   g.subject,
			Audience:  jwt.Audience{g.resource},
			Expiry:    jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		ClientID:          g.clientID,
		Scope:             g.scope,
		FamilyID:          g.familyID,
		IDP:               g.profile.Provider,
		Email:             g.profile.Email,
		Name:              g.profile.Name,
		PreferredUsername: g.profile.PreferredUsername,
	}
	claims.GrantType = g.gty
	if g.jkt != "" {
		claims.Cnf = &confirmation{JKT: g.jkt}
	}
	if !g.authTime.IsZero() {
		claims.AuthTime = g.authTime.Unix()
	}
	token, err := s.Keys().Sign("at+jwt", claims)
	return accessToken{token: token, id: jti, expiresAt: exp}, err
}

// Reasons an access token is refused; their texts go into challenges.
var (
	errTokenMalformed = errors.New("the access token is malformed or its signature is invalid")
	errTokenExpired   = errors.New("the access token has expired")
	errTokenNotYet    = errors.New("the access token is not valid yet")
	errTokenIssuer    = errors.New("the access token was issued by another server")
	errTokenRevoked   = errors.New("the access token has been revoked")
	// errRevocationUnknown: whether the token was revoked cannot be told
	// now (the storage is down, or this node's revocations are stale).
	errRevocationUnknown = errors.New("the authorization server cannot tell whether the access token was revoked; retry shortly")
)

// verifyAccessToken checks an access token's signature and header (see
// KeySet.Verify), its issuer, expiry and not-before (with clock_skew), and
// that neither it nor its refresh family was revoked. The audience is the
// caller's to check.
func (s *issuer) verifyAccessToken(ctx context.Context, raw string, now time.Time) (*accessTokenClaims, error) {
	var c accessTokenClaims
	err := s.Keys().Verify(raw, &c)
	if errors.Is(err, errUnknownKID) && s.reloadForUnknownKID(ctx) {
		err = s.Keys().Verify(raw, &c)
	}
	if err != nil {
		return nil, errTokenMalformed
	}
	if c.Issuer != s.cfg.Issuer {
		return nil, errTokenIssuer
	}
	if c.ID == "" || c.Expiry == nil || c.Subject == "" {
		return nil, errTokenMalformed
	}
	err = c.Claims.ValidateWithLeeway(jwt.Expected{Time: now}, s.cfg.Tokens.ClockSkew)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, errTokenExpired
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, errTokenNotYet
	case err != nil:
		return nil, errTokenMalformed
	}
	if err := s.checkRevocation(ctx, &c); err != nil {
		return nil, err
	}
	c.prepare(s.scopes)
	return &c, nil
}

// checkRevocation refuses a token revoked by its jti, through its refresh
// family, or by the deletion of its client. A storage error refuses too:
// fail closed.
func (s *issuer) checkRevocation(ctx context.Context, c *accessTokenClaims) error {
	ref := storage.AccessTokenRef{ID: c.ID, FamilyID: c.FamilyID, ClientID: c.ClientID, Subject: c.Subject}
	if len(c.Audience) > 0 {
		ref.Resource = c.Audience[0]
	}
	ref.IssuedAt = issuedAt(c)
	revoked, err := s.cfg.Storage.Store.AccessTokenRevoked(ctx, ref)
	switch {
	case err != nil:
		s.cfg.Logger.Error("checking revocation: storage unavailable", zap.Error(err))
		return errRevocationUnknown
	case revoked:
		return errTokenRevoked
	}
	return nil
}

// issuedAt is when a token was issued, to the microsecond when its jti
// says so (and agrees with its iat), else iat's whole second: a user-,
// client- or grant-wide revocation refuses what was issued up to its
// time, and a token issued later in the same second must pass.
func issuedAt(c *accessTokenClaims) time.Time {
	if c.IssuedAt == nil {
		return time.Time{}
	}
	iat := c.IssuedAt.Time()
	if t, ok := storage.AccessTokenIDTime(c.ID); ok && t.Unix() == iat.Unix() {
		return t
	}
	return iat
}

// verifyCached verifies a token, running the signature check once per
// token: verified claims are cached until the token expires (for the
// guard and for introspection), and fresh reports a token the guard sees
// for the first time. Revocation takes effect at once: whenever the
// storage's revocation counter has moved since a cached token was last
// checked, it is looked up again.
func (s *issuer) verifyCached(ctx context.Context, raw string, byGuard bool) (claims *accessTokenClaims, fresh bool, err error) {
	now := time.Now()
	epoch := s.cfg.Storage.Store.Revocations() // read before any lookup
	if e, ok := s.tokens.get(raw, now); ok {
		if e.checked.Load() != epoch {
			if err := s.checkRevocation(ctx, e.claims); err != nil {
				if err != errRevocationUnknown {
					s.tokens.drop(raw)
				}
				return nil, false, err
			}
			e.checked.Store(epoch)
		}
		return e.claims, byGuard && !e.guarded.Load() && e.guarded.CompareAndSwap(false, true), nil
	}
	c, err := s.verifyAccessToken(ctx, raw, now)
	if err != nil {
		return nil, false, err
	}
	s.tokens.put(raw, c, c.Expiry.Time().Add(s.cfg.Tokens.ClockSkew), epoch, byGuard)
	return c, byGuard, nil
}
