// Package upstream is the client side of the authorization server: it
// signs users in at the team's identity provider (any OpenID Connect
// issuer, or GitHub) and says who they are. The endpoints call it for the
// sign-in step; it knows nothing of them, and MCP clients never see the
// upstream provider.
package upstream

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// Timeout bounds every request to a provider (discovery, keys, token
// exchange, API calls).
const Timeout = 10 * time.Second

// Kinds of provider.
const (
	KindOIDC   = "oidc"
	KindGitHub = "github"
)

// Config describes one provider, validated by the caller.
type Config struct {
	Kind string // KindOIDC or KindGitHub
	// Name is the provider's name in URLs and in `sub` ([a-z0-9-]+).
	Name string
	// Label is the button text ("Continue with <Label>").
	Label string
	// Issuer is the OpenID Connect issuer (oidc only).
	Issuer       string
	ClientID     string
	ClientSecret string
	// Scopes asked for; default openid email profile (oidc), and for
	// GitHub what the rules need.
	Scopes []string
	Rules  Rules
	// APIURL and WebURL are GitHub's API and web bases (GitHub Enterprise).
	APIURL, WebURL string
	// Offline asks the provider for a refresh token (pass_upstream_token):
	// access_type=offline (Google), and prompt=consent when Scopes hold
	// offline_access (OpenID Connect Core §11 requires it).
	Offline bool
	// ClockSkew is the leeway on the ID token's exp and iat.
	ClockSkew time.Duration
	// HTTPClient makes every request; default one with Timeout.
	HTTPClient *http.Client
}

// Identity is who a provider signed in.
type Identity struct {
	// Subject is stable and unique across providers: "<name>:<the
	// provider's own id>", never a mutable login or e-mail address.
	Subject string
	// Email is the user's address when the provider marked it verified,
	// else "".
	Email             string
	Name              string
	PreferredUsername string
	// UserID is the provider's numeric user id (GitHub), for allow_users.
	UserID string
	// Claims are the ID token's claims (oidc), for allow_claim.
	Claims map[string]any
	// Orgs and Teams ("org/team") are the GitHub memberships the rules
	// asked about.
	Orgs, Teams []string
	// Token is what the provider issued at the sign-in (its access token,
	// and a refresh token when it gave one).
	Token *oauth2.Token
}

// Attempt is one sign-in: the state and redirect URI of the authorization
// request, its PKCE verifier and its nonce.
type Attempt struct {
	State, RedirectURI, Verifier, Nonce string
}

// Provider is an upstream identity provider.
type Provider interface {
	// Kind is KindOIDC or KindGitHub.
	Kind() string
	// Name is the configured name; Label the button text.
	Name() string
	Label() string
	// AuthURL is where to send the browser for the attempt.
	AuthURL(ctx context.Context, a Attempt) (string, error)
	// CallbackIssuer is the `iss` (RFC 9207) a callback may carry ("" when
	// the provider has no issuer identifier), and whether the provider
	// says it always sends one (authorization_response_iss_parameter_supported):
	// then a callback without it is refused.
	CallbackIssuer(ctx context.Context) (issuer string, required bool, err error)
	// Identify redeems the callback's code and says who signed in.
	Identify(ctx context.Context, a Attempt, code string) (*Identity, error)
	// Admit reports whether the rules let the identity in.
	Admit(id *Identity) bool
	// Unrestricted reports whether there are no rules (everyone the
	// provider signs in is admitted).
	Unrestricted() bool
	// Refresh redeems a refresh token for new tokens (the new token
	// keeps the old refresh token when the provider sends none).
	// ErrRefreshRefused when the provider refuses it (invalid_grant: the
	// user revoked the access there); an *Error otherwise.
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
}

// ErrRefreshRefused: the provider will not refresh the token any more.
var ErrRefreshRefused = errors.New("the identity provider refused the refresh token")

// Error is a failed sign-in: Reason is for the log (never a secret, code
// or token); Status is what the browser is told (400 for a bad answer,
// 502 for an unreachable or failing provider).
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func badAnswer(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Reason: fmt.Sprintf(format, args...)}
}

func unreachable(format string, args ...any) error {
	return &Error{Status: http.StatusBadGateway, Reason: fmt.Sprintf(format, args...)}
}

// New builds a provider. Nothing is fetched yet: an OpenID provider is
// discovered at its first use, so an outage cannot stop Caddy starting.
func New(cfg Config) (Provider, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: Timeout}
	}
	cfg.Label = cmp.Or(cfg.Label, cfg.Name)
	switch cfg.Kind {
	case KindOIDC:
		return newOIDC(cfg), nil
	case KindGitHub:
		return newGitHub(cfg), nil
	}
	return nil, errors.New("unknown provider kind " + cfg.Kind)
}

// base holds what every provider shares.
type base struct {
	cfg Config
}

func (b *base) Kind() string            { return b.cfg.Kind }
func (b *base) Name() string            { return b.cfg.Name }
func (b *base) Label() string           { return b.cfg.Label }
func (b *base) Admit(id *Identity) bool { return b.cfg.Rules.Admit(id) }
func (b *base) Unrestricted() bool      { return b.cfg.Rules.Empty() }

// context gives requests the provider's HTTP client and the timeout.
func (b *base) context(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	return context.WithValue(ctx, oauth2.HTTPClient, b.cfg.HTTPClient), cancel
}

// oauth2Config is the x/oauth2 client of the provider for an attempt.
func (b *base) oauth2Config(endpoint oauth2.Endpoint, redirectURI string, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: b.cfg.ClientID, ClientSecret: b.cfg.ClientSecret,
		Endpoint: endpoint, RedirectURL: redirectURI, Scopes: scopes,
	}
}

// exchange redeems the code with the attempt's PKCE verifier.
func (b *base) exchange(ctx context.Context, conf *oauth2.Config, a Attempt, code string) (*oauth2.Token, error) {
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		// The provider's answer is summed up, never copied into the log.
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && re.ErrorCode != "":
			return nil, badAnswer("the token endpoint refused the code: %s", re.ErrorCode)
		case errors.As(err, &re):
			return nil, unreachable("the token endpoint answered %d", re.Response.StatusCode)
		}
		return nil, unreachable("redeeming the code: %v", err)
	}
	return tok, nil
}

// refresh redeems a refresh token at the token endpoint.
func (b *base) refresh(ctx context.Context, endpoint oauth2.Endpoint, refreshToken string) (*oauth2.Token, error) {
	ctx, cancel := b.context(ctx)
	defer cancel()
	conf := b.oauth2Config(endpoint, "", b.cfg.Scopes)
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "unauthorized_client"):
			return nil, ErrRefreshRefused
		case errors.As(err, &re) && re.ErrorCode != "":
			return nil, unreachable("the token endpoint refused the refresh: %s", re.ErrorCode)
		case errors.As(err, &re):
			return nil, unreachable("the token endpoint answered %d to a refresh", re.Response.StatusCode)
		}
		return nil, unreachable("refreshing the token: %v", err)
	}
	return tok, nil
}

// authParams are the extra authorization parameters of an Offline provider.
func (b *base) authParams() []oauth2.AuthCodeOption {
	if !b.cfg.Offline {
		return nil
	}
	opts := []oauth2.AuthCodeOption{oauth2.AccessTypeOffline}
	if slices.Contains(b.cfg.Scopes, "offline_access") {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	return opts
}

// Derive is a value bound to a browser secret and a state: the PKCE
// verifier and the nonce of an attempt are derived from the secret kept in
// the browser's cookie, so the server stores neither.
func Derive(secret, purpose, state string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(purpose + "\x00" + state))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
