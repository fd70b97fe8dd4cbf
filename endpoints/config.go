package endpoints

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/upstream"
)

// Config is everything the endpoints need, resolved and validated,
// grouped by the part of the server that uses it.
type Config struct {
	Issuer       string
	Resources    []string // canonical; the first is the default
	ResourceName string
	Scopes       []string
	// EnforceScopes refuses scopes outside Scopes.
	EnforceScopes bool
	// ScopeDefinitions describe catalogue scopes and their hierarchy.
	ScopeDefinitions []ScopeDefinition
	// IPv6LimitPrefix is how many leading bits of an IPv6 client address
	// per-address limits count as one address.
	IPv6LimitPrefix int
	// RootAliases also serves /authorize, /token and /register at the root.
	RootAliases bool
	// HealthPath, when set, answers 200 or 503 for load balancers.
	HealthPath string

	Tokens  TokenConfig
	Grants  GrantConfig
	Signing SigningConfig
	Clients ClientConfig
	SignIn  SignInConfig
	Guard   GuardConfig
	Storage StorageConfig

	Logger *zap.Logger
	// Audit receives the audit events (see audit.go); default: Logger's
	// "audit" child.
	Audit *zap.Logger
}

// TokenConfig is how long what the server issues lives.
type TokenConfig struct {
	AccessTokenLifetime   time.Duration
	RefreshTokenLifetime  time.Duration
	RefreshFamilyLifetime time.Duration
	// RefreshReuseGrace is how long a rotated refresh token may be
	// presented again (retries, parallel refreshes); 0 is strict.
	RefreshReuseGrace         time.Duration
	AuthorizationCodeLifetime time.Duration
	// DPoPNonce: DPoP proofs must carry a recent server nonce (RFC 9449
	// §8), at the token endpoint and at the guard.
	DPoPNonce bool
	ClockSkew time.Duration
}

// GrantConfig is whom the token endpoint's assertion grants trust.
type GrantConfig struct {
	// EnterpriseIDPs issue the ID-JAGs of the jwt-bearer grant.
	EnterpriseIDPs []EnterpriseIDP
	// WorkloadIssuers issue the workload tokens of the jwt-bearer grant.
	WorkloadIssuers []WorkloadIssuer
}

// SigningConfig is the issuer's signing keys.
type SigningConfig struct {
	Keys *KeySet
	// StoredKeys says the keys are the storage's generated ones: they are
	// re-read from it (other sites and nodes may rotate them), and may be
	// rotated.
	StoredKeys bool
	// KeyRotation, when positive, rotates a stored key that has signed
	// this long; KeyPrepublish is how long a new key is published before
	// it signs.
	KeyRotation   time.Duration
	KeyPrepublish time.Duration
	// KeyChanges, when set, moves when another node stores a signing key:
	// the keys are re-read at once.
	KeyChanges func() uint64
}

// ClientConfig is the clients part's: the configured clients and how
// others come to be.
type ClientConfig struct {
	// Static are the statically configured clients (secrets hashed).
	Static              []storage.Client
	DynamicRegistration bool
	// InitialAccessToken, when set, is required to register.
	InitialAccessToken string
	// RegisteredClientCredentials lets clients that registered with the
	// initial access token ask for client_credentials.
	RegisteredClientCredentials bool
	// AlwaysReturnClientSecret adds "client_secret": "" for public clients.
	AlwaysReturnClientSecret bool
	// RegistrationRateLimit is registrations per client IP per
	// RegistrationRateWindow; 0 switches the limit off.
	RegistrationRateLimit  int
	RegistrationRateWindow time.Duration
	// UnusedClientTTL removes registered clients never used for a token.
	UnusedClientTTL           time.Duration
	ClientIDMetadataDocuments bool
}

// SignInConfig is the browser's side: who may sign in and how, and the
// pages.
type SignInConfig struct {
	// Users maps built-in user names to password hashes.
	Users map[string]string
	// Providers are the upstream identity providers users may sign in
	// with, in the order of their buttons.
	Providers       []upstream.Provider
	UserFrom        string
	SignInPath      string
	SessionLifetime time.Duration
	// TemplatesDir may hold login.html, consent.html and error.html.
	TemplatesDir string
	// PassUpstreamToken names the logins whose tokens are kept for the
	// grants and handed to the upstream; Sealer (storage_key) seals them.
	PassUpstreamToken map[string]bool
	Sealer            *storage.Sealer
}

// GuardConfig is the guard's: what protected paths need.
type GuardConfig struct {
	// Public paths pass without a token.
	Public caddyhttp.MatchPath
	// RequireScope gates paths on scopes.
	RequireScope []ScopeRule
	// MCPRules gate MCP methods and tools on scopes; AllowTools, when
	// set, is every tool that may be called.
	MCPRules   []MCPScopeRule
	AllowTools []string
	// RateLimitPerUser is guarded requests per (sub, client) per
	// RateLimitPerUserWindow; 0 is no limit.
	RateLimitPerUser       int
	RateLimitPerUserWindow time.Duration
	// PassToken keeps the Authorization header for the upstream.
	PassToken bool
	// RequireDPoP refuses bearer tokens: every token must be DPoP-bound.
	RequireDPoP bool
	// CORS answers preflight on protected paths and lets any origin read
	// the guard's answers.
	CORS bool
}

// StorageConfig is the storage and what its backend can do beyond the
// Store.
type StorageConfig struct {
	Store storage.Store
	// Synced, when set, reports whether this node knows every committed
	// revocation; while it does not, protected requests get 503.
	Synced func() bool
	// Ping, when set, checks that the storage answers (HealthPath).
	Ping func(ctx context.Context) error
	// Events, when set, makes the sign-in throttle and the registration
	// limit hold across every node sharing the storage.
	Events storage.EventCounter
}
