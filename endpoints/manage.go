package endpoints

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// What the operator sees and does through the admin API: clients, grants,
// keys and tokens in OAuth terms. Nothing returned carries a secret or a
// secret's hash (the export, which admin/ writes from the storage, is the
// one answer with hashes: an import must restore them).

// operator is the part admin/ calls (and the account page, for a user's
// own grants).
type operator struct {
	*core
	*issuer  // the keys, and verifies the tokens it inspects
	*clients // the clients it lists, creates and removes
}

// Origins of a client.
const (
	OriginCaddyfile  = "caddyfile"
	OriginRegistered = storage.OriginRegistered
	OriginAdmin      = storage.OriginAdmin
	OriginDocument   = storage.OriginDocument
	OriginImported   = storage.OriginImported
)

// ClientInfo is a client as an operator sees it.
type ClientInfo struct {
	ID           string   `json:"client_id"`
	Name         string   `json:"client_name,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	GrantTypes   []string `json:"grant_types,omitempty"`
	Scope        string   `json:"scope,omitempty"`
	AuthMethod   string   `json:"token_endpoint_auth_method,omitempty"`
	// AuthMethods are the client authentication methods it may use now.
	AuthMethods []string `json:"token_endpoint_auth_methods"`
	// The public keys of a private_key_jwt client, or where it publishes
	// them.
	JWKS       json.RawMessage `json:"jwks,omitempty"`
	JWKSURI    string          `json:"jwks_uri,omitempty"`
	Origin     string          `json:"origin"`
	Trusted    bool            `json:"trusted,omitempty"`
	CreatedAt  time.Time       `json:"created_at,omitzero"`
	LastUsedAt time.Time       `json:"last_used_at,omitzero"`
}

func (s *operator) clientInfo(c *storage.Client, origin string) ClientInfo {
	return ClientInfo{ID: c.ID, Name: c.Name, RedirectURIs: c.RedirectURIs, GrantTypes: c.GrantTypes, Scope: c.Scope,
		AuthMethod: c.TokenEndpointAuthMethod, AuthMethods: s.clientAuthMethods(c), JWKS: c.JWKS, JWKSURI: c.JWKSURI, Origin: origin, Trusted: c.Trusted, CreatedAt: c.CreatedAt, LastUsedAt: c.LastUsedAt}
}

// Issuer is the server's issuer identifier.
func (s *operator) Issuer() string { return s.cfg.Issuer }

// Resources are the server's protected resources.
func (s *operator) Resources() []string { return slices.Clone(s.cfg.Resources) }

// Counts are the server's registered clients, live grants and sessions;
// Clients adds the Caddyfile's.
func (s *operator) Counts(ctx context.Context) (storage.Counts, error) {
	c, err := s.cfg.Storage.Store.Counts(ctx, time.Now())
	c.Clients += len(s.cfg.Clients.Static)
	return c, err
}

// ListClients lists the Caddyfile's clients, then the stored ones.
func (s *operator) ListClients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	for i := range s.cfg.Clients.Static {
		out = append(out, s.clientInfo(&s.cfg.Clients.Static[i], OriginCaddyfile))
	}
	stored, err := s.cfg.Storage.Store.Clients(ctx)
	if err != nil {
		return nil, err
	}
	for i := range stored {
		out = append(out, s.clientInfo(&stored[i], storage.ClientOrigin(&stored[i])))
	}
	return out, nil
}

// NewClient is a client an operator creates.
type NewClient struct {
	Name string `json:"client_name"`
	// GrantTypes default to authorization_code refresh_token; a machine
	// client has client_credentials alone.
	GrantTypes   []string `json:"grant_types,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	Scope        string   `json:"scope,omitempty"`
	// AuthMethod: client_secret_basic (default), client_secret_post,
	// private_key_jwt (default with keys), or none for a public client.
	AuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// JWKS (a JWK Set of public keys) or JWKSURI: the keys of a
	// private_key_jwt client.
	JWKS    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI string          `json:"jwks_uri,omitempty"`
}

// ErrInvalid is a request the operator must correct; its text says why.
type ErrInvalid struct{ Reason string }

func (e *ErrInvalid) Error() string { return e.Reason }

func invalid(format string, args ...any) error { return &ErrInvalid{fmt.Sprintf(format, args...)} }

// CreateClient stores a new client and returns it with its secret, which
// is shown this once and kept only hashed.
func (s *operator) CreateClient(ctx context.Context, n NewClient) (ClientInfo, string, error) {
	n.Name = strings.TrimSpace(n.Name)
	if n.Name == "" || len(n.Name) > maxClientNameLength {
		return ClientInfo{}, "", invalid("client_name is required (at most %d characters)", maxClientNameLength)
	}
	if len(n.GrantTypes) == 0 {
		n.GrantTypes = DefaultGrantTypes()
	}
	n.GrantTypes = dedupe(n.GrantTypes)
	if len(n.JWKS) > 0 || n.JWKSURI != "" {
		n.AuthMethod = cmp.Or(n.AuthMethod, "private_key_jwt")
	}
	n.AuthMethod = cmp.Or(n.AuthMethod, "client_secret_basic")
	kind, err := checkAuthMethod(n.AuthMethod)
	if err != nil {
		return ClientInfo{}, "", invalid("%v", err)
	}
	if err := checkClientKeys(kind, n.JWKS, n.JWKSURI, s.fetchAllowed()); err != nil {
		return ClientInfo{}, "", invalid("%v", err)
	}
	code := s.grants.needsRedirect(n.GrantTypes)
	if code == (len(n.RedirectURIs) == 0) {
		return ClientInfo{}, "", invalid("redirect_uris are required with authorization_code, and only with it")
	}
	if err := s.grants.checkGrantTypes(n.GrantTypes, kind, len(n.RedirectURIs)); err != nil {
		return ClientInfo{}, "", invalid("%v", err)
	}
	for _, u := range n.RedirectURIs {
		if err := ValidateRedirectURI(u); err != nil {
			return ClientInfo{}, "", invalid("redirect URI %q: %v", u, err)
		}
	}
	for _, sc := range splitScope(n.Scope) {
		if !ValidScopeToken(sc) || s.cfg.EnforceScopes && !slices.Contains(s.cfg.Scopes, sc) {
			return ClientInfo{}, "", invalid("scope %q is not offered by this server", sc)
		}
	}
	c := &storage.Client{
		ID: randomID(), Name: n.Name, RedirectURIs: n.RedirectURIs, GrantTypes: n.GrantTypes, Scope: joinScope(splitScope(n.Scope)),
		TokenEndpointAuthMethod: n.AuthMethod, JWKS: n.JWKS, JWKSURI: n.JWKSURI, CreatedAt: time.Now(), Origin: storage.OriginAdmin,
	}
	if code {
		c.ResponseTypes = []string{"code"}
	}
	secret := ""
	if kind == secretClient {
		secret = randomToken()
		c.SecretHash = storage.Hash(secret)
	}
	if err := s.cfg.Storage.Store.PutClient(ctx, c); err != nil {
		return ClientInfo{}, "", err
	}
	s.audit.info(eventClientRegistered, zap.String("client_id", c.ID), zap.String("client_name", c.Name), zap.Strings("redirect_uris", c.RedirectURIs),
		zap.String("by", "admin"))
	return s.clientInfo(c, OriginAdmin), secret, nil
}

// ErrConfiguredClient: a Caddyfile client is changed in the Caddyfile.
var ErrConfiguredClient = errors.New("the client is configured in the Caddyfile; remove it there")

// ErrUnknown: no such client, grant or token.
var ErrUnknown = errors.New("not found")

// RemoveClient deletes a stored client with its grants and live access
// tokens.
func (s *operator) RemoveClient(ctx context.Context, id string) error {
	if _, static := s.staticClients[id]; static {
		return ErrConfiguredClient
	}
	if _, err := s.cfg.Storage.Store.GetClient(ctx, id, time.Now()); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return ErrUnknown
		}
		return err
	}
	now := time.Now()
	revoked, err := s.cfg.Storage.Store.DeleteClient(ctx, id, now, s.tokensExpireBy(now))
	if err != nil {
		return err
	}
	s.audit.info(eventClientDeleted, zap.String("client_id", id), zap.String("by", "admin"))
	s.grantsRevoked(revoked, revokedByClientDelete)
	return nil
}

// tokensExpireBy is when every access token issued until now has expired.
func (s *core) tokensExpireBy(now time.Time) time.Time {
	return now.Add(s.cfg.Tokens.AccessTokenLifetime + s.cfg.Tokens.ClockSkew)
}

// GrantInfo is a grant as an operator or its user sees it.
type GrantInfo struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	ClientID   string    `json:"client_id"`
	ClientName string    `json:"client_name,omitempty"`
	Scope      string    `json:"scope,omitempty"`
	Resource   string    `json:"resource"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	// RefreshTokens counts the live refresh-token families.
	RefreshTokens int `json:"refresh_tokens"`
	// client is the grant's client, when it still exists.
	client *storage.Client
}

// GrantID names a grant (user, client, resource) in URLs; it is not a
// secret.
func GrantID(user, clientID, resource string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(user + "\x00" + clientID + "\x00" + resource))
}

// ParseGrantID is the filter naming the grant of a GrantID.
func ParseGrantID(id string) (storage.GrantFilter, error) {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return storage.GrantFilter{}, invalid("%q is not a grant id", id)
	}
	return storage.GrantFilter{Subject: parts[0], ClientID: parts[1], Resource: parts[2]}, nil
}

// ListGrants lists the grants the filter matches, naming their clients.
func (s *operator) ListGrants(ctx context.Context, f storage.GrantFilter) ([]GrantInfo, error) {
	grants, err := s.cfg.Storage.Store.Grants(ctx, f, time.Now())
	if err != nil {
		return nil, err
	}
	out := make([]GrantInfo, 0, len(grants))
	for _, g := range grants {
		info := GrantInfo{
			ID: GrantID(g.Subject, g.ClientID, g.Resource), User: g.Subject, ClientID: g.ClientID, Scope: g.Scope, Resource: g.Resource,
			CreatedAt: g.GrantedAt, LastUsedAt: g.LastUsedAt, ExpiresAt: g.ExpiresAt, RefreshTokens: len(g.Families),
		}
		if c, err := s.lookupClient(ctx, g.ClientID); err == nil {
			info.ClientName, info.client = c.Name, c
		}
		out = append(out, info)
	}
	return out, nil
}

// RevokeGrants revokes the grants the filter matches: refresh families,
// their access tokens at the guard's next request, remembered consent.
func (s *operator) RevokeGrants(ctx context.Context, f storage.GrantFilter, by string) (int, error) {
	if f == (storage.GrantFilter{}) {
		return 0, invalid("name a grant, a user or a client")
	}
	now := time.Now()
	revoked, err := s.cfg.Storage.Store.RevokeGrants(ctx, f, now, s.tokensExpireBy(now))
	if err != nil {
		return 0, err
	}
	if len(revoked) > 0 {
		s.audit.info(eventConsentRevoked, zap.String("sub", f.Subject), zap.String("client_id", f.ClientID), zap.String("resource", f.Resource),
			zap.Int("grants", len(revoked)), zap.String("by", by))
	}
	s.grantsRevoked(revoked, by)
	return len(revoked), nil
}

// KeyInfo is a signing key's public side.
type KeyInfo struct {
	ID          string          `json:"kid"`
	Algorithm   string          `json:"alg"`
	CreatedAt   time.Time       `json:"created_at"`
	ActivatesAt time.Time       `json:"activates_at,omitzero"`
	RetiredAt   time.Time       `json:"retired_at,omitzero"`
	VerifyUntil time.Time       `json:"verify_until,omitzero"`
	Signing     bool            `json:"signing"`
	Public      json.RawMessage `json:"public_jwk,omitempty"`
}

// ListKeys lists the signing keys (public parts only); for configured keys,
// the one in use.
func (s *operator) ListKeys(ctx context.Context) ([]KeyInfo, error) {
	ks := s.Keys()
	current := ks.KeyID()
	if !s.cfg.Signing.StoredKeys {
		return []KeyInfo{{ID: current, Algorithm: ks.Algorithm(), Signing: true, Public: ks.publicJWK(current)}}, nil
	}
	keys, err := s.cfg.Storage.Store.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []KeyInfo
	for _, k := range keys {
		out = append(out, KeyInfo{ID: k.ID, Algorithm: k.Algorithm, CreatedAt: k.CreatedAt, ActivatesAt: k.ActivatesAt,
			RetiredAt: k.RetiredAt, VerifyUntil: k.VerifyUntil, Signing: k.ID == current, Public: ks.publicJWK(k.ID)})
	}
	return out, nil
}

// Inspection is what the admin API says of a token.
type Inspection struct {
	Valid  bool   `json:"valid"`
	Reason string `json:"reason,omitempty"`
	// Kind is access_token or refresh_token.
	Kind   string         `json:"kind,omitempty"`
	Claims map[string]any `json:"claims,omitempty"`
	// Grant is the id of the grant the token belongs to.
	Grant string `json:"grant,omitempty"`
	// FamilyID names a refresh token's family, or an access token's sid.
	FamilyID string `json:"family_id,omitempty"`
}

// Inspect verifies a token (an access token of this server, or a refresh
// token in its storage) and says what it is.
func (s *operator) Inspect(ctx context.Context, token string) Inspection {
	token = strings.TrimSpace(token)
	if strings.Count(token, ".") == 2 {
		var claims map[string]any
		if err := s.Keys().Verify(token, &claims); err != nil {
			return Inspection{Kind: "access_token", Reason: "the signature is not by a key of this server, or the token is malformed: " + err.Error()}
		}
		in := Inspection{Kind: "access_token", Claims: claims}
		c, err := s.verifyAccessToken(ctx, token, time.Now())
		if c == nil {
			var ac accessTokenClaims
			s.Keys().Verify(token, &ac)
			c = &ac
		}
		if len(c.Audience) > 0 {
			in.Grant = GrantID(c.Subject, c.ClientID, c.Audience[0])
		}
		in.FamilyID = c.FamilyID
		if err != nil {
			in.Reason = err.Error()
			return in
		}
		in.Valid = true
		return in
	}
	fam, t, err := s.cfg.Storage.Store.GetRefreshToken(ctx, token, time.Now())
	if err != nil {
		return Inspection{Reason: "neither an access token of this server nor a live refresh token in its storage"}
	}
	in := Inspection{Kind: "refresh_token", FamilyID: fam.ID, Grant: GrantID(fam.Subject, fam.ClientID, fam.Resource), Claims: map[string]any{
		"sub": fam.Subject, "client_id": fam.ClientID, "scope": t.Scope, "aud": fam.Resource, "exp": t.ExpiresAt.Unix(), "iat": t.IssuedAt.Unix(),
	}}
	switch {
	case !fam.RevokedAt.IsZero():
		in.Reason = "the refresh-token family has been revoked"
	case !t.RotatedAt.IsZero():
		in.Reason = "the refresh token was rotated (a successor replaced it)"
	default:
		in.Valid = true
	}
	return in
}
