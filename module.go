// Package oauth2server is an OAuth 2.1 authorization server that runs inside
// Caddy as one HTTP handler, oauth2_server. It serves discovery, sign-in,
// consent, token, revocation, registration and introspection endpoints, and
// protects everything else in its site with audience-bound bearer tokens.
package oauth2server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/admin"
	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
	_ "github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres" // registers the postgres storage module
	"github.com/caddy-oauth2/caddy-oauth2-server/upstream"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the lifetimes.
const (
	DefaultAccessTokenLifetime       = time.Hour
	DefaultRefreshTokenLifetime      = 30 * 24 * time.Hour
	DefaultAuthorizationCodeLifetime = 10 * time.Minute
	DefaultClockSkew                 = 30 * time.Second
	DefaultSessionLifetime           = 12 * time.Hour
	DefaultRefreshReuseGrace         = 30 * time.Second
	DefaultRefreshFamilyLifetime     = 90 * 24 * time.Hour
	DefaultUnusedClientTTL           = 24 * time.Hour
	DefaultRegistrationRateLimit     = 20
	DefaultRegistrationRateWindow    = time.Hour
	DefaultSigningKeyPrepublish      = time.Hour
	DefaultIPv6LimitPrefix           = 64
)

// Handler is an OAuth 2.1 authorization server and the bearer-token guard
// of its site.
//
// Requests for its protocol routes (discovery documents under
// `/.well-known/`, and `/oauth/*` under the issuer's path) are answered by
// the handler itself and never reach the next handler. Requests for a
// `public` path pass through unchanged. Every other request needs a valid
// access token for this site's resource; the guard then removes the
// Authorization header (unless pass_token) and sets these placeholders,
// which are empty on public paths:
//
// Placeholder | Description
// ------------|-------------
// `{http.auth.user.id}` | The signed-in user (`sub`); empty for a client-credentials token
// `{http.oauth2.sub}` | The token's subject: the user, or the client id of a client-credentials token
// `{http.oauth2.subject_type}` | `user`, or `client` for a client-credentials token
// `{http.oauth2.client_id}` | The client the token was issued to
// `{http.oauth2.scope}` | The granted scopes, space-separated
// `{http.oauth2.aud}` | The token's audience (the resource)
// `{http.oauth2.jti}` | The token's id
// `{http.oauth2.exp}` | The token's expiry, in Unix seconds
// `{http.oauth2.email}` | The user's verified e-mail address, from an identity provider
// `{http.oauth2.name}` | The user's name, from an identity provider
// `{http.oauth2.preferred_username}` | The user's login (GitHub), from an identity provider
// `{http.oauth2.idp}` | The name of the `login` the user signed in with
// `{http.oauth2.upstream_access_token}` | With `pass_upstream_token`: that login's access token for the grant
type Handler struct {
	// The issuer identifier: an absolute https URL without query, fragment
	// or trailing slash (plain http only for localhost, *.localhost, 127.0.0.0/8 and
	// [::1]). Published byte for byte in the metadata and in every token.
	// Required. Placeholders such as {env.ISSUER} are resolved at load.
	Issuer string `json:"issuer,omitempty"`

	// The protected resources (RFC 8707), the audience of access tokens.
	// The first is the default when a client names none. `https://host`
	// and `https://host/` are the same resource. At least one is required.
	// Placeholders are resolved at load.
	Resources []string `json:"resources,omitempty"`

	// A human-readable name of the resource, published as `resource_name`
	// in the protected-resource metadata.
	ResourceName string `json:"resource_name,omitempty"`

	// An HS256 secret of at least 32 bytes. When absent, tokens are signed
	// with an asymmetric key (see signing_key) published at the JWKS URI.
	// Accepts placeholders such as {env.SECRET} or {file./run/secret},
	// resolved at load; one that does not resolve is a load error.
	SigningSecret string `json:"signing_secret,omitempty"`

	// A PEM file holding an EC P-256 (ES256) or Ed25519 (EdDSA) private
	// key. Default: an ES256 key generated on first start and kept in the
	// storage file, so tokens stay valid across restarts.
	SigningKey string `json:"signing_key,omitempty"`

	// Rotate a generated signing key once it has signed this long (e.g.
	// 90d); `caddy oauth2 keys rotate` rotates at once. Default: off.
	// Not with signing_key or signing_secret.
	SigningKeyRotation caddy.Duration `json:"signing_key_rotation,omitempty"`

	// How long a new key is published in the JWKS before it signs, so that
	// resource servers caching the key set learn it first. Default: 1h.
	SigningKeyPrepublish *caddy.Duration `json:"signing_key_prepublish,omitempty"`

	// Where clients, codes, refresh tokens, consents, sessions and
	// generated keys are kept: a guest module, `bolt` (the default: one
	// file, `oauth2_server/<issuer>.db` in Caddy's data directory, which
	// several sites of one process may share) or `postgres` (several Caddy
	// instances share one database schema).
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=http.handlers.oauth2_server.storage inline_key=backend"`

	// 32 bytes, base64: generated signing keys are sealed with it
	// (AES-256-GCM) before they are stored. Required with a shared
	// storage (postgres) unless signing_key or signing_secret is set;
	// optional with bolt. Placeholders such as {env.OAUTH2_STORAGE_KEY}
	// are resolved at load.
	StorageKey string `json:"storage_key,omitempty"`

	// A path answering 200 while the storage is reachable and this node
	// knows every revocation, 503 otherwise: for load balancers.
	HealthPath string `json:"health_path,omitempty"`

	// How often expired records are deleted from the storage file. The
	// first site to open a file sets it. Default: 10m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// The scope catalogue, advertised in the metadata.
	Scopes []string `json:"scopes,omitempty"`

	// Scopes described for people and arranged in a hierarchy: each
	// named scope joins the catalogue; its description is shown on the
	// consent and connected-apps pages instead of the name, and a token
	// holding it satisfies every requirement of the scopes it implies
	// (transitively; a cycle is a load error).
	ScopeDefinitions []ScopeDefinition `json:"scope_definitions,omitempty"`

	// Whether requested scopes must be in the catalogue. Default: true.
	EnforceScopes *bool `json:"enforce_scopes,omitempty"`

	// Lifetime of access tokens. Default: 1h.
	AccessTokenLifetime caddy.Duration `json:"access_token_lifetime,omitempty"`

	// Lifetime of each refresh token. Default: 30d.
	RefreshTokenLifetime caddy.Duration `json:"refresh_token_lifetime,omitempty"`

	// Lifetime of a built-in login session. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// How long a refresh token that was just rotated may be presented
	// again and still succeed, as long as its successor was never used: a
	// retry after a lost response, or parallel refreshes by one client. 0
	// makes rotation strict (any second use revokes the family).
	// Default: 30s.
	RefreshReuseGrace *caddy.Duration `json:"refresh_reuse_grace,omitempty"`

	// The longest a refresh-token family lives, however often it rotates;
	// then the user signs in again. Default: 90d.
	RefreshFamilyLifetime caddy.Duration `json:"refresh_family_lifetime,omitempty"`

	// Lifetime of authorization codes. Default: 10m.
	AuthorizationCodeLifetime caddy.Duration `json:"authorization_code_lifetime,omitempty"`

	// Leeway allowed on `exp` and `nbf` when verifying tokens. Default: 30s.
	ClockSkew caddy.Duration `json:"clock_skew,omitempty"`

	// Built-in accounts for the login page, which is served only when
	// users exist. Passwords are hashes as printed by `caddy hash-password`
	// (bcrypt or argon2id).
	Users []User `json:"users,omitempty"`

	// Upstream identity providers people sign in with (OpenID Connect
	// issuers, GitHub), offered as buttons on the sign-in page.
	Logins []Login `json:"logins,omitempty"`

	// Company identity providers whose ID-JAGs (enterprise-managed
	// authorization) clients redeem for access tokens with the jwt-bearer
	// grant, without a consent screen and without refresh tokens.
	EnterpriseIDPs []EnterpriseIDP `json:"enterprise_idps,omitempty"`

	// Platforms whose workload tokens (Kubernetes, GitHub Actions, SPIFFE)
	// workloads exchange for access tokens with the jwt-bearer grant, with
	// no secret of this server and no refresh token.
	WorkloadIssuers []WorkloadIssuer `json:"workload_issuers,omitempty"`

	// A placeholder holding the identity an earlier handler established,
	// e.g. `{http.auth.user.id}` from basic_auth or a header copied by
	// forward_auth. When non-empty at /oauth/authorize it names the user.
	UserFrom string `json:"user_from,omitempty"`

	// Where to send a visitor who has no identity, with a return URL.
	// Without it (and without users) such a visitor gets 401.
	SignInPath string `json:"sign_in_path,omitempty"`

	// Statically configured clients.
	Clients []Client `json:"clients,omitempty"`

	// How long a dynamically registered client that never obtained a
	// token is kept. Default: 24h.
	UnusedClientTTL caddy.Duration `json:"unused_client_ttl,omitempty"`

	// Enables RFC 7591 dynamic client registration at /oauth/register.
	// Default: off.
	DynamicRegistration *DynamicRegistration `json:"dynamic_registration,omitempty"`

	// Accept https URLs as client_id (client ID metadata documents).
	// Default: off.
	ClientIDMetadataDocuments bool `json:"client_id_metadata_documents,omitempty"`

	// Also answer /authorize, /token and /register at the site root, as
	// the /oauth/… routes do (Claude.ai's web client builds these paths
	// itself). Default: true.
	RootAliases *bool `json:"root_aliases,omitempty"`

	// A folder with replacements for the built-in pages: any of
	// login.html, consent.html and error.html (Go html/template; the
	// built-in "head" and "foot" blocks may be used). Read at load.
	Templates string `json:"templates,omitempty"`

	// Paths that pass through without a token (Caddy path matcher syntax:
	// exact, `/prefix/*`, `*.suffix`).
	Public []string `json:"public,omitempty"`

	// Scope requirements by path, by MCP method or by MCP tool: a token
	// without every scope the matching requirements list is refused with
	// 403 insufficient_scope, naming them all.
	RequireScope []ScopeRequirement `json:"require_scope,omitempty"`

	// The MCP tools that may be called (path.Match globs: `fetch_*`); a
	// tools/call of any other tool is refused with 403 and a JSON-RPC
	// error naming it. Default: every tool.
	AllowTools []string `json:"allow_tools,omitempty"`

	// Guarded requests allowed per user (`sub`), whatever the client, or
	// per machine client of a client_credentials token; answered 429 with
	// Retry-After beyond it. Counted cluster-wide when
	// the storage is shared (PostgreSQL: one database round trip per
	// request), per process with bbolt. Default: no limit.
	RateLimitPerUser *RateLimit `json:"rate_limit_per_user,omitempty"`

	// Per-address limits (failed sign-ins, registrations) count an IPv6
	// client by the first this many bits of its address: one subscriber's
	// network (often a /64) is one address. IPv4 addresses count one by
	// one. Default: 64.
	IPv6LimitPrefix int `json:"ipv6_limit_prefix,omitempty"`

	// Keep the Authorization header when passing a request upstream. By
	// default the guard removes it: the token is bound to this gateway and
	// the upstream learns the identity from placeholders.
	PassToken bool `json:"pass_token,omitempty"`

	// Refuse bearer tokens on protected paths: every token must be bound
	// to a DPoP key (RFC 9449) and come with a proof. Tokens are DPoP-bound
	// when the client sends a proof to the token endpoint; DPoP is accepted
	// beside Bearer without this option.
	RequireDPoP bool `json:"require_dpop,omitempty"`

	// Require DPoP proofs to carry a recent server nonce (RFC 9449 §8), at
	// the token endpoint and on protected paths: a client without one is
	// answered use_dpop_nonce with a DPoP-Nonce header and retries. It
	// bounds a captured proof's replay on every node of a cluster, at the
	// cost of that first round trip. Nonces are stateless (made from the
	// signing key every node shares).
	DPoPNonce bool `json:"dpop_nonce,omitempty"`

	// Answer CORS preflight on protected paths without a token and let any
	// origin read the guard's answers (browser-hosted MCP clients need
	// this). Default: true.
	CORS *bool `json:"cors,omitempty"`

	server     *endpoints.Server
	unregister func() // removes the server from the admin API's registry
	storage    storage.BackendModule
	release    func() error    // set only once this instance holds the backend
	sealer     *storage.Sealer // storage_key, for upstream tokens
	logger     *zap.Logger
}

// User is a built-in account.
type User struct {
	// The user name, also the `sub` of its tokens.
	Username string `json:"username"`
	// The password hash, as printed by `caddy hash-password` (bcrypt
	// `$2a$…` or argon2id `$argon2id$…`).
	Password string `json:"password"`
}

// Client is a statically configured OAuth client.
type Client struct {
	// The client_id.
	ID string `json:"client_id"`
	// The client secret of a confidential client. Placeholders such as
	// {env.X} are resolved at load. Omit for a public client.
	Secret string `json:"secret,omitempty"`
	// The exact redirect URIs the client may use.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// The scopes the client may request. Default: the catalogue.
	Scopes []string `json:"scopes,omitempty"`
	// A name shown on the consent screen. Default: the client_id.
	Name string `json:"name,omitempty"`
	// A public client (no secret; PKCE only).
	Public bool `json:"public,omitempty"`
	// A first-party client: the consent screen is skipped.
	Trusted bool `json:"trusted,omitempty"`
	// The grant types the client may use: authorization_code,
	// refresh_token, and (confidential clients only) client_credentials.
	// Default: authorization_code refresh_token.
	GrantTypes []string `json:"grant_types,omitempty"`
	// A confidential client (a resource server) that may introspect every
	// token, not only its own.
	Introspect bool `json:"introspect,omitempty"`
	// How a confidential client authenticates at the token, revocation and
	// introspection endpoints: client_secret_basic or client_secret_post
	// for a client with a secret (default: either, one per request);
	// private_key_jwt for a client with keys (jwks_file or jwks_uri). A
	// public client uses none.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// A file holding the client's public keys as a JWK Set (RFC 7517),
	// read at load (placeholders such as {env.X} are resolved): the client authenticates with private_key_jwt,
	// assertions signed by one of these keys (RS256, PS256, ES256, EdDSA).
	JWKSFile string `json:"jwks_file,omitempty"`
	// The https URL where the client publishes its JWK Set, for
	// private_key_jwt: fetched when needed (cached for five minutes; an
	// unknown kid fetches it again, at most once a minute).
	JWKSURI string `json:"jwks_uri,omitempty"`

	jwks []byte // what JWKSFile holds, read by validate
}

// DynamicRegistration configures RFC 7591 registration.
type DynamicRegistration struct {
	// When set, registration requires `Authorization: Bearer <token>`.
	// Placeholders are resolved at load.
	InitialAccessToken string `json:"initial_access_token,omitempty"`
	// Let clients that register with the initial access token ask for
	// client_credentials (machine clients that get tokens for themselves,
	// with no user). Needs initial_access_token: a client that registers
	// itself openly never gets client_credentials. Default: off.
	AllowClientCredentials bool `json:"allow_client_credentials,omitempty"`
	// Return `"client_secret": ""` to public clients, for clients that
	// expect the field.
	AlwaysReturnClientSecret bool `json:"always_return_client_secret,omitempty"`
	// Registrations allowed per client IP (Caddy's resolved client IP).
	// Default: 20 per hour.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
}

// ScopeDefinition describes one scope of the catalogue.
type ScopeDefinition struct {
	// The scope.
	Name string `json:"name"`
	// What the scope allows, in words for the person consenting.
	Description string `json:"description,omitempty"`
	// Scopes this one includes: a token holding it passes their
	// requirements too.
	Implies []string `json:"implies,omitempty"`
}

// RateLimit is a number of events per window.
type RateLimit struct {
	// Events per window; 0 switches the limit off.
	Events int `json:"events"`
	// The window. Default: 1h.
	Window caddy.Duration `json:"window,omitempty"`
}

// ScopeRequirement gates a path, an MCP method or an MCP tool on scopes;
// exactly one of path, tool and method is set.
type ScopeRequirement struct {
	// The path (Caddy path matcher syntax).
	Path string `json:"path,omitempty"`
	// A tool name pattern (path.Match glob: `delete_*`), matched against
	// the Mcp-Name of a tools/call POST (or the body's params.name).
	Tool string `json:"tool,omitempty"`
	// A JSON-RPC method pattern (`resources/*`), matched against the
	// Mcp-Method of a POST (or the body's method).
	Method string `json:"method,omitempty"`
	// Every scope a token needs for this path.
	Scopes []string `json:"scopes"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth2_server",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves placeholders, validates the configuration, opens the
// storage file and prepares the signing keys.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := endpoints.RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	rawIssuer, rawResources := h.Issuer, slices.Clone(h.Resources)
	if err := h.resolvePlaceholders(); err != nil {
		return err
	}
	h.setDefaults()
	if err := h.validate(); err != nil {
		return err
	}
	for i := range h.Resources {
		h.Resources[i], _ = endpoints.CanonicalResource(h.Resources[i]) // validated above
	}
	if err := h.checkPlacement(ctx, rawIssuer, rawResources); err != nil {
		return err
	}

	public := caddyhttp.MatchPath(h.Public)
	if err := public.Provision(ctx); err != nil {
		return fmt.Errorf("public: %v", err)
	}

	backend, store, err := h.openStorage(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(h.Scopes, "offline_access") {
		h.logger.Warn("scopes: offline_access is not a permission of the resource; it is accepted at /oauth/authorize without being listed, " +
			"never advertised in protected-resource metadata or challenges, and refresh tokens follow each client's grant_types")
	}

	keys, err := h.loadKeys(ctx, store)
	if err != nil {
		return err
	}
	providers, err := h.providers(h.logger)
	if err != nil {
		return err
	}
	var rules []endpoints.ScopeRule
	var mcpRules []endpoints.MCPScopeRule
	for _, rs := range h.RequireScope {
		if rs.Path == "" {
			mcpRules = append(mcpRules, endpoints.MCPScopeRule{Tool: rs.Tool, Method: rs.Method, Scopes: rs.Scopes})
			continue
		}
		m := caddyhttp.MatchPath{rs.Path}
		if err := m.Provision(ctx); err != nil {
			return fmt.Errorf("require_scope %s: %v", rs.Path, err)
		}
		rules = append(rules, endpoints.ScopeRule{Paths: m, Scopes: rs.Scopes})
	}
	cfg := endpoints.Config{
		Issuer:           h.Issuer,
		Resources:        h.Resources,
		ResourceName:     h.ResourceName,
		Scopes:           h.Scopes,
		EnforceScopes:    *h.EnforceScopes,
		ScopeDefinitions: h.scopeDefinitions(),
		IPv6LimitPrefix:  h.IPv6LimitPrefix,
		RootAliases:      *h.RootAliases,
		HealthPath:       h.HealthPath,
		Tokens:           h.tokenConfig(),
		Grants:           endpoints.GrantConfig{EnterpriseIDPs: h.enterpriseIDPs(), WorkloadIssuers: h.workloadIssuers()},
		Signing:          h.signingConfig(keys, backend),
		Clients:          h.clientConfig(),
		SignIn:           h.signInConfig(providers),
		Guard:            h.guardConfig(public, rules, mcpRules),
		Storage:          storageConfig(store, backend),
		Logger:           h.logger,
	}
	if h.server, err = endpoints.New(cfg); err != nil {
		return err
	}
	if _, err := h.server.DropUntrustedMachineGrants(ctx); err != nil {
		h.server.Close()
		return fmt.Errorf("checking stored clients: %w", err)
	}
	h.unregister = admin.Register(admin.Site{Server: h.server, File: backend, StoragePath: h.storage.Describe()})
	h.logger.Info("authorization server ready",
		zap.String("issuer", h.Issuer),
		zap.Strings("resources", h.Resources),
		zap.String("storage", h.storage.Describe()),
		zap.String("signing_alg", keys.Algorithm()),
		zap.String("kid", keys.KeyID()))
	return nil
}

func (h *Handler) setDefaults() {
	if h.EnforceScopes == nil {
		h.EnforceScopes = new(true)
	}
	for _, def := range h.ScopeDefinitions {
		if !slices.Contains(h.Scopes, def.Name) {
			h.Scopes = append(h.Scopes, def.Name)
		}
	}
	if rl := h.RateLimitPerUser; rl != nil && rl.Window == 0 {
		rl.Window = caddy.Duration(time.Hour)
	}
	if h.IPv6LimitPrefix == 0 {
		h.IPv6LimitPrefix = DefaultIPv6LimitPrefix
	}
	if h.RootAliases == nil {
		h.RootAliases = new(true)
	}
	if h.CORS == nil {
		h.CORS = new(true)
	}
	setDuration(&h.AccessTokenLifetime, DefaultAccessTokenLifetime)
	setDuration(&h.RefreshTokenLifetime, DefaultRefreshTokenLifetime)
	setDuration(&h.AuthorizationCodeLifetime, DefaultAuthorizationCodeLifetime)
	setDuration(&h.ClockSkew, DefaultClockSkew)
	setDuration(&h.SessionLifetime, DefaultSessionLifetime)
	setDuration(&h.RefreshFamilyLifetime, DefaultRefreshFamilyLifetime)
	setDuration(&h.UnusedClientTTL, DefaultUnusedClientTTL)
	if dr := h.DynamicRegistration; dr != nil {
		if dr.RateLimit == nil {
			dr.RateLimit = &RateLimit{Events: DefaultRegistrationRateLimit}
		}
		setDuration(&dr.RateLimit.Window, DefaultRegistrationRateWindow)
	}
	if h.SigningKeyPrepublish == nil {
		p := caddy.Duration(DefaultSigningKeyPrepublish)
		h.SigningKeyPrepublish = &p
	}
	if h.RefreshReuseGrace == nil {
		grace := caddy.Duration(DefaultRefreshReuseGrace)
		h.RefreshReuseGrace = &grace
	}
	setDuration(&h.SweepInterval, storage.DefaultSweepInterval)
}

func setDuration(d *caddy.Duration, def time.Duration) {
	if *d == 0 {
		*d = caddy.Duration(def)
	}
}

// passUpstreamToken names the logins with pass_upstream_token.
func (h *Handler) tokenConfig() endpoints.TokenConfig {
	return endpoints.TokenConfig{
		AccessTokenLifetime:       time.Duration(h.AccessTokenLifetime),
		RefreshTokenLifetime:      time.Duration(h.RefreshTokenLifetime),
		RefreshFamilyLifetime:     time.Duration(h.RefreshFamilyLifetime),
		RefreshReuseGrace:         time.Duration(*h.RefreshReuseGrace),
		AuthorizationCodeLifetime: time.Duration(h.AuthorizationCodeLifetime),
		ClockSkew:                 time.Duration(h.ClockSkew),
		DPoPNonce:                 h.DPoPNonce,
	}
}

func (h *Handler) signingConfig(keys *endpoints.KeySet, backend storage.Backend) endpoints.SigningConfig {
	c := endpoints.SigningConfig{
		Keys:          keys,
		StoredKeys:    h.SigningSecret == "" && h.SigningKey == "",
		KeyRotation:   time.Duration(h.SigningKeyRotation),
		KeyPrepublish: time.Duration(*h.SigningKeyPrepublish),
	}
	if k, ok := backend.(storage.KeyWatcher); ok {
		c.KeyChanges = k.KeyChanges
	}
	return c
}

func (h *Handler) clientConfig() endpoints.ClientConfig {
	c := endpoints.ClientConfig{
		Static:                    h.staticClients(),
		DynamicRegistration:       h.DynamicRegistration != nil,
		UnusedClientTTL:           time.Duration(h.UnusedClientTTL),
		ClientIDMetadataDocuments: h.ClientIDMetadataDocuments,
	}
	if dr := h.DynamicRegistration; dr != nil {
		c.InitialAccessToken = dr.InitialAccessToken
		c.RegisteredClientCredentials = dr.AllowClientCredentials
		c.AlwaysReturnClientSecret = dr.AlwaysReturnClientSecret
		c.RegistrationRateLimit = dr.RateLimit.Events
		c.RegistrationRateWindow = time.Duration(dr.RateLimit.Window)
	}
	return c
}

func (h *Handler) signInConfig(providers []upstream.Provider) endpoints.SignInConfig {
	return endpoints.SignInConfig{
		Users:             h.userHashes(),
		Providers:         providers,
		UserFrom:          h.UserFrom,
		SignInPath:        h.SignInPath,
		SessionLifetime:   time.Duration(h.SessionLifetime),
		TemplatesDir:      h.Templates,
		PassUpstreamToken: h.passUpstreamToken(),
		Sealer:            h.sealer,
	}
}

func (h *Handler) guardConfig(public caddyhttp.MatchPath, rules []endpoints.ScopeRule, mcpRules []endpoints.MCPScopeRule) endpoints.GuardConfig {
	c := endpoints.GuardConfig{
		Public:       public,
		RequireScope: rules,
		MCPRules:     mcpRules,
		AllowTools:   h.AllowTools,
		PassToken:    h.PassToken,
		RequireDPoP:  h.RequireDPoP,
		CORS:         *h.CORS,
	}
	if rl := h.RateLimitPerUser; rl != nil {
		c.RateLimitPerUser, c.RateLimitPerUserWindow = rl.Events, time.Duration(rl.Window)
	}
	return c
}

// storageConfig is the store with what its backend can do beyond it.
func storageConfig(store storage.Store, backend storage.Backend) endpoints.StorageConfig {
	c := endpoints.StorageConfig{Store: store}
	if p, ok := backend.(storage.Pinger); ok {
		c.Ping = p.Ping
	}
	if s, ok := backend.(storage.Syncer); ok {
		c.Synced = s.Synced
	}
	if e, ok := backend.(storage.EventCounter); ok {
		c.Events = e
	}
	return c
}

func (h *Handler) passUpstreamToken() map[string]bool {
	out := map[string]bool{}
	for _, l := range h.Logins {
		if l.PassUpstreamToken {
			out[l.Name] = true
		}
	}
	return out
}

// scopeDefinitions are the configured scope definitions, as the endpoints
// take them.
func (h *Handler) scopeDefinitions() []endpoints.ScopeDefinition {
	out := make([]endpoints.ScopeDefinition, len(h.ScopeDefinitions))
	for i, d := range h.ScopeDefinitions {
		out[i] = endpoints.ScopeDefinition{Name: d.Name, Description: d.Description, Implies: d.Implies}
	}
	return out
}

// staticClients turns the configured clients into the stored form, with
// the secret hashed.
func (h *Handler) staticClients() []storage.Client {
	var out []storage.Client
	for _, c := range h.Clients {
		sc := storage.Client{
			ID:            c.ID,
			Name:          c.Name,
			RedirectURIs:  c.RedirectURIs,
			Scope:         strings.Join(c.Scopes, " "),
			Trusted:       c.Trusted,
			GrantTypes:    c.GrantTypes,
			IntrospectAll: c.Introspect,
		}
		if len(sc.GrantTypes) == 0 {
			sc.GrantTypes = endpoints.DefaultGrantTypes()
		}
		switch {
		case c.Secret != "":
			sc.SecretHash = storage.Hash(c.Secret)
			sc.TokenEndpointAuthMethod = c.TokenEndpointAuthMethod // "" accepts basic and post
		case c.jwks != nil || c.JWKSURI != "":
			sc.JWKS, sc.JWKSURI = c.jwks, c.JWKSURI
			sc.TokenEndpointAuthMethod = "private_key_jwt"
		default:
			sc.TokenEndpointAuthMethod = "none"
		}
		out = append(out, sc)
	}
	return out
}

func (h *Handler) userHashes() map[string]string {
	users := map[string]string{}
	for _, u := range h.Users {
		users[u.Username] = u.Password
	}
	return users
}

// loadKeys prepares the signing keys: the HS256 secret, the configured key
// file, or the ES256 key generated once and kept in storage.
func (h *Handler) loadKeys(ctx context.Context, store storage.Store) (*endpoints.KeySet, error) {
	now := time.Now()
	switch {
	case h.SigningSecret != "":
		return endpoints.NewHMACKeySet([]byte(h.SigningSecret))
	case h.SigningKey != "":
		key, err := readSigningKey(h.SigningKey, now)
		if err != nil {
			return nil, err
		}
		return endpoints.NewKeySet([]storage.SigningKey{*key}, now)
	}
	_, err := store.EnsureSigningKey(ctx, func() (*storage.SigningKey, error) {
		return endpoints.GenerateSigningKey(now)
	})
	if err != nil {
		return nil, fmt.Errorf("loading signing key: %v", err)
	}
	all, err := store.SigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %v", err)
	}
	return endpoints.NewKeySet(all, now)
}

func readSigningKey(path string, now time.Time) (*storage.SigningKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing_key: reading %s: %v", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64<<10)) // a PEM key is a few hundred bytes
	if err != nil {
		return nil, fmt.Errorf("signing_key: reading %s: %v", path, err)
	}
	key, err := endpoints.ParseSigningKeyPEM(data, now)
	if err != nil {
		return nil, fmt.Errorf("signing_key %s: %v", path, err)
	}
	return key, nil
}

// openStorage loads the storage module (bolt when none is configured),
// opens its backend and returns this issuer's store, with generated keys
// sealed under storage_key.
func (h *Handler) openStorage(ctx caddy.Context) (storage.Backend, storage.Store, error) {
	if h.StorageRaw == nil {
		h.StorageRaw = caddyconfig.JSONModuleObject(bolt.Module{}, "backend", "bolt", nil)
	}
	mod, err := ctx.LoadModule(h, "StorageRaw")
	if err != nil {
		return nil, nil, fmt.Errorf("loading storage module: %v", err)
	}
	h.storage = mod.(storage.BackendModule)
	sealKey, err := h.sealKey()
	if err != nil {
		return nil, nil, err
	}
	backend, release, err := h.storage.OpenBackend(storage.OpenOptions{
		Issuer: h.Issuer, SweepInterval: time.Duration(h.SweepInterval), Logger: h.logger.Named("storage"), Audit: h.logger.Named("audit"), Observe: endpoints.ObserveStorage,
	})
	if err != nil {
		return nil, nil, err
	}
	h.release = release
	store, err := storage.SealKeys(backend.ForIssuer(h.Issuer), sealKey)
	if err == nil && sealKey != nil {
		h.sealer, err = storage.NewSealer(sealKey)
	}
	return backend, store, err
}

// sealKey decodes storage_key; with a shared storage and generated keys it
// is required.
func (h *Handler) sealKey() ([]byte, error) {
	generated := h.SigningSecret == "" && h.SigningKey == ""
	if h.StorageKey == "" {
		if generated && h.storage.Shared() {
			return nil, errors.New("storage_key is required: a shared storage keeps the generated signing key, which must be sealed " +
				"(32 random bytes, base64, e.g. from 'openssl rand -base64 32'); or configure signing_key")
		}
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(h.StorageKey)
	if err != nil || len(key) != 32 {
		return nil, errors.New("storage_key must be 32 bytes, base64-encoded (e.g. from 'openssl rand -base64 32')")
	}
	return key, nil
}

// Cleanup releases the storage backend if this instance opened it.
func (h *Handler) Cleanup() error {
	if h.unregister != nil {
		h.unregister()
		h.unregister = nil
	}
	if h.server != nil {
		h.server.Close()
	}
	if h.release == nil {
		return nil
	}
	err := h.release()
	h.release = nil
	return err
}

// ServeHTTP answers protocol routes, passes public paths on, and guards
// everything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if route := h.server.Route(r.URL.Path); route != nil {
		h.server.CheckOrigin(r)
		route(w, r)
		return nil
	}
	if h.server.IsPublic(r) {
		endpoints.ClearIdentity(r)
		return next.ServeHTTP(w, r)
	}
	if endpoints.WellKnown(r.URL.Path) {
		endpoints.NoDocument(w, r)
		return nil
	}
	return h.server.Guard(w, r, next)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
