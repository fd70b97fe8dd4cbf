// Package storage keeps the authorization server's state: clients,
// authorization codes, refresh-token families, consents, revoked access
// tokens, signing keys and login sessions.
//
// Store is written in OAuth terms. Every operation that must be atomic
// (redeem a code, rotate a refresh token, revoke a family, answer a
// consent form) is one method, so a networked backend can map it onto its
// own atomic primitive. Secret values (codes, refresh tokens, session ids,
// client secrets, registration tokens, CSRF tokens) cross this API in the
// clear only as method arguments: they are stored as SHA-256 hashes and
// never returned.
//
// A Store serves one issuer. Several authorization servers may share one
// storage file; every record names its issuer, and a Store never returns,
// changes or deletes a record of another issuer: to it, another issuer's
// client, code, refresh token, consent, pending request or session does
// not exist.
package storage

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"
)

// Errors returned by Store methods. Callers compare with errors.Is.
var (
	// ErrNotFound: no such record, or it has expired.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyUsed: an authorization code was redeemed before.
	ErrAlreadyUsed = errors.New("already used")
	// ErrRevoked: the refresh-token family has been revoked.
	ErrRevoked = errors.New("revoked")
	// ErrReused: a rotated refresh token was presented outside the grace
	// window; the family has been revoked as a result.
	ErrReused = errors.New("refresh token reused")
	// ErrWrongClient: the token belongs to another client; nothing changed.
	ErrWrongClient = errors.New("issued to another client")
	// ErrWrongBrowser: an upstream sign-in presented by another browser
	// than the one that started it; the sign-in is kept.
	ErrWrongBrowser = errors.New("started in another browser")
	// ErrConflict: the state changed under the caller (a key rotation
	// raced another); nothing changed.
	ErrConflict = errors.New("changed concurrently")
	// ErrReplayed: an assertion's jti was used before (see AssertionStore).
	ErrReplayed = errors.New("assertion already used")
)

// Backend keeps the state of one or more authorization servers (a bbolt
// file, a PostgreSQL schema): each issuer's Store, and what an operator
// does with all of it at once.
type Backend interface {
	// ForIssuer is the Store of the authorization server with this issuer.
	ForIssuer(issuer string) Store
	// Export writes every record as JSON lines (secrets stay hashed; no
	// private keys) and reports how many.
	Export(ctx context.Context, w io.Writer) (int, error)
	// Import adds the records of an export in one step, refusing the whole
	// import if any differs from a stored one (ErrImportConflict).
	Import(ctx context.Context, r io.Reader) (int, error)
}

// Backuper is a Backend that can write a consistent copy of itself.
type Backuper interface {
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// ErrImportConflict: an imported record differs from the one stored under
// its key; nothing was imported.
var ErrImportConflict = errors.New("a record to import differs from the stored one")

// Store is the persistence contract of one authorization server
// (issuer), composed of roles: a part of the server names the roles it
// uses, and a new grant adds a role without touching the others. Every
// method that must be atomic is one method, one transaction of the
// backend, with the race semantics its comment states.
type Store interface {
	ClientStore
	CodeStore
	RefreshStore
	RevocationStore
	GrantAdmin
	ConsentStore
	PendingAuthorizationStore
	SessionStore
	UpstreamStore
	AssertionStore
	KeyStore
	Expirer
}

// ClientStore keeps the registered clients (those of client ID metadata
// documents included).
type ClientStore interface {
	// PutClient creates or replaces a registered client.
	PutClient(ctx context.Context, c *Client) error
	// GetClient returns a client; ErrNotFound when unknown or expired at
	// now.
	GetClient(ctx context.Context, id string, now time.Time) (*Client, error)
	// MarkClientUsed records a successful token request: the client is no
	// longer removed as unused.
	MarkClientUsed(ctx context.Context, id string, now time.Time) error
	// DeleteClient removes a client and revokes what it holds, in one
	// step: every refresh-token family of the client, and every access
	// token issued to it until now (AccessTokenRevoked reports them until
	// tokensExpireBy, when the last of them has expired). Deleting an
	// unknown client is not an error. It returns the client's grants it
	// revoked, with their families.
	DeleteClient(ctx context.Context, id string, now, tokensExpireBy time.Time) ([]Grant, error)
	// Clients lists the registered clients (those of client ID metadata
	// documents included), not the configured ones.
	Clients(ctx context.Context) ([]Client, error)
}

// CodeStore keeps authorization codes.
type CodeStore interface {
	// SaveAuthorizationCode stores a new code under the hash of code.
	SaveAuthorizationCode(ctx context.Context, code string, c *AuthorizationCode) error
	// GetAuthorizationCode returns the code's record, used or not;
	// ErrNotFound when unknown or expired.
	GetAuthorizationCode(ctx context.Context, code string, now time.Time) (*AuthorizationCode, error)
	// RedeemAuthorizationCode marks the code used, records what was issued
	// from it and, when refresh is not nil, starts the refresh-token family
	// with its first token, all in one step: of any number of concurrent
	// calls, exactly one succeeds. A code that was used before gives
	// ErrAlreadyUsed together with its record, so the caller can revoke
	// what was issued from it.
	RedeemAuthorizationCode(ctx context.Context, code string, now time.Time, issued Issuance, refresh *NewRefreshFamily) (*AuthorizationCode, error)
}

// RefreshStore keeps refresh-token families and rotates their tokens.
type RefreshStore interface {
	// RotateRefreshToken exchanges a presented refresh token for a new one
	// in the same family, in one step (see Rotation for the rules).
	RotateRefreshToken(ctx context.Context, r Rotation) (*RefreshFamily, *RefreshToken, error)
	// GetRefreshToken returns a token and its family; ErrNotFound when
	// unknown or expired.
	GetRefreshToken(ctx context.Context, token string, now time.Time) (*RefreshFamily, *RefreshToken, error)
	// RevokeRefreshFamily revokes every token of a family at once.
	RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error
}

// RevocationStore denies access tokens before they expire. Revocations
// counts the revocations of the whole backend (every issuer it holds).
type RevocationStore interface {
	// Revocations is a counter that changes whenever a revocation is
	// committed (an access token, a family, a reuse). A caller that has
	// checked a token may skip the lookups while it stays the same. A
	// backend that cannot tell must return a different value every time.
	Revocations() uint64
	// RevokeAccessToken denies an access token by its jti until it expires.
	RevokeAccessToken(ctx context.Context, jti string, expiresAt time.Time) error
	// AccessTokenRevoked reports whether an access token is denied: by its
	// jti, through its refresh family, or because its client, its user or
	// its grant was revoked (or the client deleted) after the token was
	// issued. Unknown ids are not revoked.
	AccessTokenRevoked(ctx context.Context, t AccessTokenRef) (bool, error)
}

// GrantAdmin is what an operator (and a user, for their own) sees and
// revokes: the grants, and how many there are.
type GrantAdmin interface {
	// Grants lists what users granted clients, through indexes: each
	// grant is a remembered consent and the live refresh families of the
	// same user, client and resource. Empty filter fields match anything.
	Grants(ctx context.Context, f GrantFilter, now time.Time) ([]Grant, error)
	// RevokeGrants revokes the grants the filter matches, in one step:
	// their consents are forgotten, their refresh families revoked, and
	// every access token issued under them until now is denied (until
	// tokensExpireBy). It returns the grants it revoked, with the families
	// it revoked.
	RevokeGrants(ctx context.Context, f GrantFilter, now, tokensExpireBy time.Time) ([]Grant, error)
	// Counts counts the issuer's registered clients, live grants (refresh
	// families neither revoked nor expired) and live sessions.
	Counts(ctx context.Context, now time.Time) (Counts, error)
}

// ConsentStore remembers what users granted.
type ConsentStore interface {
	// PutConsent records (replacing) what a user granted a client for a
	// resource.
	PutConsent(ctx context.Context, c *Consent) error
	// GetConsent returns a user's consent for a client and a resource;
	// ErrNotFound if none.
	GetConsent(ctx context.Context, subject, clientID, resource string) (*Consent, error)
}

// PendingAuthorizationStore keeps authorization requests waiting for the
// user's answer.
type PendingAuthorizationStore interface {
	// SavePendingAuthorization stores an authorization request waiting for
	// the user's consent, under the hash of id.
	SavePendingAuthorization(ctx context.Context, id string, p *PendingAuthorization) error
	// AnswerPendingAuthorization records the answer to a pending request
	// in one step, so that it is answered once (see ConsentAnswer). It
	// returns the request with the answer that stands, and whether this
	// call was a repeat of that answer; ErrNotFound when the request is
	// unknown, expired, or was answered longer ago than the replay window.
	// A wrong CSRF token or another subject also gives ErrNotFound, and
	// deletes the request.
	AnswerPendingAuthorization(ctx context.Context, id string, a ConsentAnswer) (p *PendingAuthorization, repeated bool, err error)
}

// SessionStore keeps sign-in sessions.
type SessionStore interface {
	// SaveSession stores a login session under the hash of id.
	SaveSession(ctx context.Context, id string, s *Session) error
	// GetSession returns a live session; ErrNotFound when unknown or expired.
	GetSession(ctx context.Context, id string, now time.Time) (*Session, error)
	// DeleteSession ends a session; an unknown id is not an error.
	DeleteSession(ctx context.Context, id string) error
}

// UpstreamStore keeps sign-ins started at an identity provider and the
// sealed tokens it issued.
type UpstreamStore interface {
	// SaveUpstreamSignIn stores a sign-in started at an upstream identity
	// provider, under the hash of its state parameter.
	SaveUpstreamSignIn(ctx context.Context, state string, s *UpstreamSignIn) error
	// TakeUpstreamSignIn returns and deletes a started sign-in in one step,
	// so that a callback is accepted once, and only from the browser whose
	// cookie hashes to browserHash (see UpstreamSignIn.StartedBy); another
	// browser gets ErrWrongBrowser and the sign-in stays, so that whoever
	// learns a state cannot cancel its user's sign-in. ErrNotFound when
	// unknown, taken or expired.
	TakeUpstreamSignIn(ctx context.Context, state string, browserHash []byte, now time.Time) (*UpstreamSignIn, error)
	// PutUpstreamToken stores what an upstream identity provider issued
	// for a grant (sub, client, resource), replacing what was there; with
	// ClientID "" it is a sign-in's, waiting for the grant it will go to.
	// The caller seals the tokens.
	PutUpstreamToken(ctx context.Context, t *UpstreamToken) error
	// GetUpstreamToken returns a grant's upstream tokens; ErrNotFound when
	// none or expired.
	GetUpstreamToken(ctx context.Context, subject, clientID, resource string, now time.Time) (*UpstreamToken, error)
	// TakeUpstreamToken returns and deletes them in one step, so that one
	// grant gets a sign-in's tokens; ErrNotFound when none or expired.
	TakeUpstreamToken(ctx context.Context, subject, clientID, resource string, now time.Time) (*UpstreamToken, error)
	// DeleteUpstreamToken deletes them; none is not an error. RevokeGrants,
	// DeleteClient and RevokeRefreshFamily delete those of the grants
	// they revoke, in the same step.
	DeleteUpstreamToken(ctx context.Context, subject, clientID, resource string) error
}

// AssertionStore remembers the signed assertions that were used (a
// client's private_key_jwt assertion, an identity provider's grant), so
// that each is accepted once, on every node.
type AssertionStore interface {
	// UseAssertion records that the assertion signer (a client id, an
	// identity provider's issuer) identified by jti was used, until
	// expiresAt (the assertion's own expiry). ErrReplayed when it was used
	// before and had not expired at now; nothing changes then. One step:
	// of two requests presenting the same assertion at once, on any
	// nodes, one gets nil.
	UseAssertion(ctx context.Context, signer, jti string, expiresAt, now time.Time) error
}

// AssertionKey is the key under which an issuer records a signer's jti:
// a hash, so that what an unauthenticated caller sends is stored in a
// bounded size.
func AssertionKey(issuer, signer, jti string) []byte {
	return Hash(issuer + "\x00" + signer + "\x00" + jti)
}

// KeyStore keeps the signing keys. The keys are the backend's, shared by
// every issuer it holds (a site's several issuers sign with one key set).
type KeyStore interface {
	// SigningKeys returns every stored signing key, newest first.
	SigningKeys(ctx context.Context) ([]SigningKey, error)
	// EnsureSigningKey returns the active signing key, calling generate and
	// storing its result in the same step when there is none.
	EnsureSigningKey(ctx context.Context, generate func() (*SigningKey, error)) (*SigningKey, error)
	// RotateSigningKey schedules next to take over signing from the key
	// named current at next.ActivatesAt (at once when zero); current keeps
	// verifying until verifyOldUntil and is then swept. See PlanRotation:
	// a pending rotation is replaced; ErrConflict when current no longer
	// signs (someone else's rotation took effect first).
	RotateSigningKey(ctx context.Context, current string, next *SigningKey, verifyOldUntil time.Time) error
	// RetireSigningKey stops a key verifying at now (see PlanRetirement):
	// the tokens it signed are refused. ErrKeySigns for the key that signs
	// now, ErrNotFound for an unknown one.
	RetireSigningKey(ctx context.Context, kid string, now time.Time) error
}

// Client is a registered OAuth client (RFC 7591 metadata plus bookkeeping).
type Client struct {
	Issuer                  string   `json:"iss"`
	ID                      string   `json:"client_id"`
	SecretHash              []byte   `json:"secret_hash,omitempty"`
	Name                    string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	// JWKS (a JWK Set of public keys) or JWKSURI (where the client
	// publishes one) are the keys of a client that authenticates with
	// private_key_jwt; never both.
	JWKS    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI string          `json:"jwks_uri,omitempty"`
	// DPoPBoundAccessTokens: the client always sends DPoP proofs, and a
	// token request without one is refused (RFC 9449 §5.2).
	DPoPBoundAccessTokens bool   `json:"dpop_bound_access_tokens,omitempty"`
	ApplicationType       string `json:"application_type,omitempty"`
	ClientURI             string `json:"client_uri,omitempty"`
	LogoURI               string `json:"logo_uri,omitempty"`
	RegistrationTokenHash []byte `json:"registration_token_hash,omitempty"`
	// Trusted (first-party) clients skip the consent screen.
	Trusted bool `json:"trusted,omitempty"`
	// IntrospectAll lets a confidential client (a resource server)
	// introspect every token, not only its own.
	IntrospectAll bool      `json:"introspect_all,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	LastUsedAt    time.Time `json:"last_used_at,omitzero"`
	// ExpiresAt, when set, is when an unused client is removed.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Origin is how the client came to be (OriginRegistered, OriginDocument,
	// OriginAdmin, OriginImported); empty in records written before it was
	// kept, see ClientOrigin.
	Origin string `json:"origin,omitempty"`
	// RegisteredWithToken records a registration that presented the
	// initial access token.
	RegisteredWithToken bool `json:"registered_with_token,omitempty"`
}

// Origins of a stored client.
const (
	OriginRegistered = "registered"
	OriginDocument   = "metadata document"
	OriginAdmin      = "admin"
	OriginImported   = "imported"
)

// ClientOrigin is how a stored client came to be; a record written before
// the origin was kept is judged by its shape: an https client_id is a
// metadata document, a registration access token means it registered
// itself, anything else an operator created.
func ClientOrigin(c *Client) string {
	switch {
	case c.Origin != "":
		return c.Origin
	case strings.HasPrefix(c.ID, "https://"):
		return OriginDocument
	case len(c.RegistrationTokenHash) > 0:
		return OriginRegistered
	}
	return OriginAdmin
}

// AuthorizationCode is what a code stands for.
type AuthorizationCode struct {
	Issuer      string `json:"iss"`
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	// RedirectURIGiven records whether the authorization request named the
	// redirect URI; the token request must then repeat it.
	RedirectURIGiven bool   `json:"redirect_uri_given,omitempty"`
	CodeChallenge    string `json:"code_challenge"`
	// DPoPJKT binds the code to a DPoP key (RFC 9449 §10): redeeming it
	// needs a proof by that key.
	DPoPJKT   string    `json:"dpop_jkt,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	Resource  string    `json:"resource"`
	Subject   string    `json:"sub"`
	Profile   Profile   `json:"profile,omitzero"`
	AuthTime  time.Time `json:"auth_time"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	// Issued records what the redemption produced, for revocation on replay.
	Issued Issuance `json:"issued,omitzero"`
}

// Issuance is what one redemption of a code produced.
type Issuance struct {
	AccessTokenID        string    `json:"access_token_id,omitempty"`
	AccessTokenExpiresAt time.Time `json:"access_token_expires_at,omitzero"`
	RefreshFamilyID      string    `json:"refresh_family_id,omitempty"`
}

// RefreshFamily is every refresh token descending from one authorization.
type RefreshFamily struct {
	Issuer   string    `json:"iss"`
	ID       string    `json:"id"`
	ClientID string    `json:"client_id"`
	Subject  string    `json:"sub"`
	Profile  Profile   `json:"profile,omitzero"`
	Scope    string    `json:"scope,omitempty"`
	Resource string    `json:"resource"`
	AuthTime time.Time `json:"auth_time"`
	// CreatedAt and ExpiresAt bound the family: no token of it outlives ExpiresAt.
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// LastUsedAt is the family's last rotation (or its creation).
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// JKT binds the family's refresh tokens to a DPoP key (RFC 9449 §5,
	// a public client's): its RFC 7638 thumbprint; "" for none.
	JKT string `json:"jkt,omitempty"`
}

// NewRefreshFamily is a family to start, with its first token.
type NewRefreshFamily struct {
	Family RefreshFamily
	Token  string
	First  RefreshToken
}

// RefreshToken is one token of a family.
type RefreshToken struct {
	FamilyID  string    `json:"family_id"`
	Scope     string    `json:"scope,omitempty"`
	Resource  string    `json:"resource"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// RotatedAt is set when the token was exchanged for a successor.
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// Successors are the hashes of the tokens issued in exchange for this one.
	Successors [][]byte `json:"successors,omitempty"`
}

// Rotation describes one use of a refresh token.
//
// A token that was never rotated is rotated. A token that was rotated is
// accepted again while now is within Burst of its rotation (requests of
// one concurrent burst, some of which may already have used a successor),
// or within Grace of it as long as none of its successors has been used (a
// retry after a lost response): Next then becomes one more successor.
// Otherwise the family is revoked and ErrReused returned. A token of
// another client gives ErrWrongClient and changes nothing. Burst should
// not exceed Grace; with Grace 0 every second use is a reuse. With
// StoreClock, a backend shared by several nodes takes Now from its own
// clock once it holds the family, so that the rotations of one family are
// judged by one clock, whatever the nodes' clocks say.
type Rotation struct {
	Presented  string
	ClientID   string
	NextToken  string
	Next       RefreshToken
	Now        time.Time
	Grace      time.Duration
	Burst      time.Duration
	StoreClock bool
	// Narrow, when set, is called in the rotation's step with the family
	// once it is known valid for the client (not revoked, not expired),
	// before anything is judged or written: it returns the next token's
	// scope (a request may narrow the family's), and Next then gets the
	// family's resource; an error from it ends the rotation with nothing
	// changed, and is returned as it is. It may be called more than once.
	Narrow func(fam *RefreshFamily) (scope string, err error)
	// Bind, when set, binds a family that is not yet bound to this DPoP
	// key (JKT) with the rotation, for the family's life (a public
	// client's first DPoP refresh). A bound family keeps its key.
	Bind string
}

// PendingAuthorization is a validated authorization request shown on the
// consent screen, bound to the user and to the form's CSRF token.
type PendingAuthorization struct {
	Issuer string `json:"iss"`
	// Kind says how the authorization ends once answered: "code" (the
	// authorization code flow; "" in records written before kinds).
	Kind        string `json:"kind,omitempty"`
	ClientID    string `json:"client_id"`
	RedirectURI string `json:"redirect_uri"`
	// RedirectURIGiven records whether the request named the redirect URI
	// (the token request must then repeat it).
	RedirectURIGiven bool   `json:"redirect_uri_given,omitempty"`
	State            string `json:"state,omitempty"`
	CodeChallenge    string `json:"code_challenge"`
	// DPoPJKT binds the code to a DPoP key (RFC 9449 §10): redeeming it
	// needs a proof by that key.
	DPoPJKT   string    `json:"dpop_jkt,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	Resource  string    `json:"resource"`
	Subject   string    `json:"sub"`
	Profile   Profile   `json:"profile,omitzero"`
	AuthTime  time.Time `json:"auth_time"`
	CSRFHash  []byte    `json:"csrf_hash"`
	ExpiresAt time.Time `json:"expires_at"`
	// Decision ("allow" or "deny") and AnsweredAt are set by the first
	// answer.
	Decision   string    `json:"decision,omitempty"`
	AnsweredAt time.Time `json:"answered_at,omitzero"`
}

// ConsentAnswer is a user's answer to a pending authorization request.
//
// The first answer whose CSRF token and subject match is recorded and
// stands. The same form submitted again by the same user within
// ReplayWindow of that answer (a double click, a client's "Reconnect"
// button) is told that answer again; later it is unknown.
type ConsentAnswer struct {
	CSRF         string
	Subject      string
	Decision     string
	Now          time.Time
	ReplayWindow time.Duration
}

// Consent is what a user granted a client for a resource.
type Consent struct {
	Issuer    string    `json:"iss"`
	Subject   string    `json:"sub"`
	ClientID  string    `json:"client_id"`
	Resource  string    `json:"resource"`
	Scope     string    `json:"scope,omitempty"`
	GrantedAt time.Time `json:"granted_at"`
	// Via names the enterprise identity provider that granted it (an
	// ID-JAG): the user never saw a consent screen, so it answers no
	// authorization request's consent. "" for the user's own.
	Via string `json:"via,omitempty"`
}

// AccessTokenRef is what the guard knows of an access token when it asks
// whether it was revoked: its jti, refresh family (sid; "" for none),
// client and issue time.
type AccessTokenRef struct {
	ID       string
	FamilyID string
	ClientID string
	Subject  string
	Resource string
	IssuedAt time.Time
}

// GrantFilter selects grants; an empty field matches any value. With all
// three set it names one grant.
type GrantFilter struct {
	Subject  string
	ClientID string
	Resource string
}

// Grant is what a user granted a client for a resource: the remembered
// consent (GrantedAt, Scope) and the live refresh families.
type Grant struct {
	Subject  string
	ClientID string
	Resource string
	Scope    string
	// GrantedAt is when consent was first remembered, or the oldest
	// family's creation.
	GrantedAt time.Time
	// LastUsedAt is the newest family use; ExpiresAt the last family's
	// end (both zero without families).
	LastUsedAt time.Time
	ExpiresAt  time.Time
	Families   []RefreshFamily
}

// Counts are the sizes the admin API reports.
type Counts struct {
	Clients, Grants, Sessions int
}

// Session is a sign-in session: with a built-in account, or through an
// upstream identity provider (Profile.Provider names it).
type Session struct {
	Issuer    string    `json:"iss"`
	Subject   string    `json:"sub"`
	Profile   Profile   `json:"profile,omitzero"`
	AuthTime  time.Time `json:"auth_time"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Profile is what an upstream identity provider said of the user. It
// travels from the session into codes, refresh families and access
// tokens; empty for built-in accounts.
type Profile struct {
	// Provider is the name of the `login` that signed the user in.
	Provider string `json:"idp,omitempty"`
	// Email is set only when the provider marked it verified.
	Email             string `json:"email,omitempty"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

// UpstreamSignIn is a sign-in sent to an upstream identity provider and
// waiting for its callback. It is bound to the browser that started it
// (the hash of a secret kept in that browser's cookie, from which the
// PKCE verifier and the nonce are also derived, so that neither is
// stored) and to the provider.
type UpstreamSignIn struct {
	Issuer      string    `json:"iss"`
	Provider    string    `json:"provider"`
	BrowserHash []byte    `json:"browser_hash"`
	ReturnTo    string    `json:"return_to,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// StartedBy reports whether the browser whose cookie hashes to
// browserHash started the sign-in (compared in constant time).
func (u *UpstreamSignIn) StartedBy(browserHash []byte) bool {
	return len(browserHash) > 0 && subtle.ConstantTimeCompare(browserHash, u.BrowserHash) == 1
}

// UpstreamToken is the access and refresh token an upstream identity
// provider issued at a sign-in (pass_upstream_token), kept for the grant
// it went to so that the guard can hand the access token to the MCP
// server. Sealed holds them encrypted with storage_key by the caller;
// nothing here is in the clear.
type UpstreamToken struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	ClientID string `json:"client_id,omitempty"`
	Resource string `json:"resource,omitempty"`
	// Provider is the name of the login that issued them.
	Provider string `json:"provider"`
	Sealed   []byte `json:"sealed"`
	// ExpiresAt is when the record is swept: the grant's refresh family
	// lifetime (a sign-in's: its session's).
	ExpiresAt time.Time `json:"expires_at"`
}

// SigningKey is a private key that signs (while active) and verifies tokens.
type SigningKey struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	PKCS8     []byte    `json:"pkcs8"`
	CreatedAt time.Time `json:"created_at"`
	// ActivatesAt, when set, is when the key starts signing: it is
	// published (in the JWKS) before, so that resource servers caching
	// the key set know it first.
	ActivatesAt time.Time `json:"activates_at,omitzero"`
	// RetiredAt is when another key took (or takes) over signing.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// VerifyUntil is when a retired key's last token has expired.
	VerifyUntil time.Time `json:"verify_until,omitzero"`
}

// Hash is the SHA-256 of a high-entropy secret, the only form in which
// codes, tokens, session ids and client secrets are kept.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}
