package upstream

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// signingAlgs are the ID-token algorithms accepted: public-key ones only
// (never none, never HS* for a provider whose keys are public).
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// oidcProvider signs users in at an OpenID Connect issuer. Discovery
// (github.com/coreos/go-oidc) happens at first use and is kept; a failed
// discovery is tried again at the next sign-in.
type oidcProvider struct {
	base
	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	// sendsIss: the metadata says authorization responses carry iss.
	sendsIss bool
}

func newOIDC(cfg Config) *oidcProvider {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	return &oidcProvider{base: base{cfg: cfg}}
}

// discover returns the provider's metadata and ID-token verifier.
func (p *oidcProvider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return p.provider, p.verifier, nil
	}
	ctx, cancel := p.context(ctx)
	defer cancel()
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, p.cfg.HTTPClient), p.cfg.Issuer)
	if err != nil {
		return nil, nil, unreachable("discovering %s: %v", p.cfg.Issuer, err)
	}
	var meta struct {
		Algs     []string `json:"id_token_signing_alg_values_supported"`
		SendsIss bool     `json:"authorization_response_iss_parameter_supported"`
	}
	provider.Claims(&meta)
	p.sendsIss = meta.SendsIss
	algs := slices.DeleteFunc(slices.Clone(meta.Algs), func(a string) bool { return !slices.Contains(signingAlgs, a) })
	if len(algs) == 0 {
		algs = signingAlgs
	}
	// The key set is fetched with the provider's client, and again when
	// an unknown kid shows up (key rotation).
	p.verifier = provider.VerifierContext(oidc.ClientContext(context.Background(), p.cfg.HTTPClient), &oidc.Config{
		ClientID:             p.cfg.ClientID,
		SupportedSigningAlgs: algs,
		SkipExpiryCheck:      true, // checked in Identify, with our clock_skew
	})
	p.provider = provider
	return p.provider, p.verifier, nil
}

// AuthURL implements Provider.
func (p *oidcProvider) AuthURL(ctx context.Context, a Attempt) (string, error) {
	provider, _, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	conf := p.oauth2Config(provider.Endpoint(), a.RedirectURI, p.cfg.Scopes)
	return conf.AuthCodeURL(a.State, append(p.authParams(), oauth2.S256ChallengeOption(a.Verifier), oidc.Nonce(a.Nonce))...), nil
}

// Refresh implements Provider.
func (p *oidcProvider) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	provider, _, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	return p.refresh(ctx, provider.Endpoint(), refreshToken)
}

// CallbackIssuer implements Provider.
func (p *oidcProvider) CallbackIssuer(ctx context.Context) (string, bool, error) {
	if _, _, err := p.discover(ctx); err != nil {
		return "", false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Issuer, p.sendsIss, nil
}

// idClaims are the ID-token claims read besides the verified ones.
type idClaims struct {
	Email             string `json:"email"`
	EmailVerified     any    `json:"email_verified"` // a boolean, or "true" for some providers
	Name              string `json:"name"`
	PreferredUsername string `json:"preferred_username"`
	AuthorizedParty   string `json:"azp"`
}

// Identify implements Provider: the code is redeemed and the ID token
// verified (signature by the provider's keys with an allowed algorithm,
// iss, aud, azp, exp and iat within clock_skew, nonce).
func (p *oidcProvider) Identify(ctx context.Context, a Attempt, code string) (*Identity, error) {
	provider, verifier, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.context(ctx)
	defer cancel()
	tok, err := p.exchange(ctx, p.oauth2Config(provider.Endpoint(), a.RedirectURI, p.cfg.Scopes), a, code)
	if err != nil {
		return nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, badAnswer("the token response has no id_token")
	}
	idt, err := verifier.Verify(oidc.ClientContext(ctx, p.cfg.HTTPClient), raw)
	if err != nil {
		return nil, badAnswer("the ID token is not valid: %v", err)
	}
	now, skew := time.Now(), p.cfg.ClockSkew
	switch {
	case !now.Before(idt.Expiry.Add(skew)):
		return nil, badAnswer("the ID token has expired")
	case idt.IssuedAt.IsZero():
		return nil, badAnswer("the ID token has no iat (OpenID Connect Core §2)")
	case idt.IssuedAt.After(now.Add(skew)):
		return nil, badAnswer("the ID token was issued in the future")
	case idt.Nonce == "" || idt.Nonce != a.Nonce:
		return nil, badAnswer("the ID token's nonce is missing or not this sign-in's")
	case idt.Subject == "":
		return nil, badAnswer("the ID token has no subject")
	}
	var c idClaims
	claims := map[string]any{}
	if err := idt.Claims(&c); err != nil || idt.Claims(&claims) != nil {
		return nil, badAnswer("the ID token's claims cannot be read")
	}
	if c.AuthorizedParty != "" && c.AuthorizedParty != p.cfg.ClientID || len(idt.Audience) > 1 && c.AuthorizedParty == "" {
		return nil, badAnswer("the ID token was issued to another party (azp)")
	}
	if (c.Email == "" || c.Name == "") && provider.UserInfoEndpoint() != "" {
		// Many providers put the profile only in the userinfo answer
		// (a certified provider must, when an access token is issued).
		if err := p.addUserInfo(ctx, provider, tok, idt.Subject, &c, claims); err != nil {
			return nil, err
		}
	}
	id := &Identity{
		Subject: p.cfg.Name + ":" + idt.Subject, Name: c.Name, PreferredUsername: c.PreferredUsername, Claims: claims, Token: tok,
	}
	if verified(c.EmailVerified) {
		id.Email = c.Email
	}
	return id, nil
}

// addUserInfo completes the ID token's claims from the userinfo endpoint,
// whose answer must be about the same subject; the ID token's own claims
// win.
func (p *oidcProvider) addUserInfo(ctx context.Context, provider *oidc.Provider, tok *oauth2.Token, subject string, c *idClaims, claims map[string]any) error {
	info, err := provider.UserInfo(oidc.ClientContext(ctx, p.cfg.HTTPClient), oauth2.StaticTokenSource(tok))
	if err != nil {
		return unreachable("fetching userinfo: %v", err)
	}
	if info.Subject != subject {
		return badAnswer("the userinfo answer is about another subject")
	}
	extra := map[string]any{}
	var more idClaims
	if info.Claims(&extra) != nil || info.Claims(&more) != nil {
		return badAnswer("the userinfo answer cannot be read")
	}
	for k, v := range extra {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	if c.Email == "" {
		c.Email, c.EmailVerified = more.Email, more.EmailVerified
	}
	c.Name = cmpOr(c.Name, more.Name)
	c.PreferredUsername = cmpOr(c.PreferredUsername, more.PreferredUsername)
	return nil
}

func verified(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}
