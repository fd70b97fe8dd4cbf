package oauth2server

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/upstream"
)

// Login is an upstream identity provider people may sign in with: any
// OpenID Connect issuer (Google, Microsoft Entra, Okta, Keycloak,
// Authentik, ...) or GitHub. The operator registers
// `<issuer>/oauth/callback/<name>` as the redirect URI at the provider.
type Login struct {
	// The kind of provider: `oidc` or `github`.
	Provider string `json:"provider"`
	// The provider's name, in its URLs (/oauth/login/<name>,
	// /oauth/callback/<name>) and in the `sub` of its users
	// (`<name>:<the provider's user id>`): lowercase letters, digits and
	// '-', unique. Default for github: `github`.
	Name string `json:"name,omitempty"`
	// The button text, "Continue with <label>". Default: the name.
	Label string `json:"label,omitempty"`
	// The OpenID Connect issuer URL (oidc only, required): https, or http
	// on loopback. Discovered at the first sign-in, not at load.
	Issuer string `json:"issuer,omitempty"`
	// The client id this server has at the provider. Required.
	// Placeholders such as {env.GOOGLE_CLIENT_ID} are resolved at load.
	ClientID string `json:"client_id,omitempty"`
	// The client secret this server has at the provider. Required.
	// Placeholders such as {env.X} or {file./run/secrets/x} are resolved
	// at load; it is never logged.
	ClientSecret string `json:"client_secret,omitempty"`
	// The scopes asked of the provider. Default: `openid email profile`
	// (oidc); for github `read:user user:email`, plus `read:org` when
	// allow_orgs or allow_teams is set.
	Scopes []string `json:"scopes,omitempty"`
	// Admit accounts whose verified e-mail address is in one of these
	// domains. Rules are OR-ed; with no rule every account the provider
	// signs in is admitted.
	AllowDomains []string `json:"allow_domains,omitempty"`
	// Admit these verified e-mail addresses.
	AllowEmails []string `json:"allow_emails,omitempty"`
	// Admit ID tokens whose claim equals the value, or (an array)
	// contains it (oidc only).
	AllowClaims []ClaimRule `json:"allow_claims,omitempty"`
	// Admit members of these GitHub organisations (github only).
	AllowOrgs []string `json:"allow_orgs,omitempty"`
	// Admit members of these GitHub teams, as `org/team-slug` (github only).
	AllowTeams []string `json:"allow_teams,omitempty"`
	// Admit these GitHub accounts by numeric id, `583231` or
	// `github:583231` (github only). A login is accepted too, with a
	// warning: logins can be renamed and registered again by someone else.
	AllowUsers []string `json:"allow_users,omitempty"`
	// GitHub's API base. Default: https://api.github.com; GitHub
	// Enterprise Server: https://HOST/api/v3 (github only).
	APIURL string `json:"api_url,omitempty"`
	// GitHub's web base. Default: https://github.com (github only).
	WebURL string `json:"web_url,omitempty"`
	// Keep the provider's access and refresh tokens for each grant,
	// sealed with storage_key (required), and give the MCP server the
	// access token in {http.oauth2.upstream_access_token}, refreshed
	// before it expires. The provider is asked for a refresh token
	// (access_type=offline; prompt=consent with offline_access in scopes).
	PassUpstreamToken bool `json:"pass_upstream_token,omitempty"`
}

// ClaimRule is an allow_claim rule.
type ClaimRule struct {
	// The ID-token claim, e.g. `groups`.
	Claim string `json:"claim"`
	// The value it must equal or (an array) contain.
	Value string `json:"value"`
}

// unmarshalLogin reads `login oidc <name> { … }` or `login github [<name>] { … }`.
func (h *Handler) unmarshalLogin(d *caddyfile.Dispenser) error {
	var l Login
	args := d.RemainingArgs()
	switch {
	case len(args) == 2 && args[0] == upstream.KindOIDC, len(args) <= 2 && len(args) > 0 && args[0] == upstream.KindGitHub:
		l.Provider = args[0]
		if len(args) == 2 {
			l.Name = args[1]
		}
	default:
		return d.Err("login: expected `login oidc <name> { … }` or `login github [<name>] { … }`")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		repeatable := strings.HasPrefix(opt, "allow_") || opt == "scopes"
		if seen[opt] && !repeatable {
			return d.Errf("login %s: %s already specified", cmpOr(l.Name, l.Provider), opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "issuer":
			err = oneArg(d, &l.Issuer)
		case "client_id":
			err = oneArg(d, &l.ClientID)
		case "client_secret":
			err = oneArg(d, &l.ClientSecret)
		case "label":
			err = oneArg(d, &l.Label)
		case "api_url":
			err = oneArg(d, &l.APIURL)
		case "web_url":
			err = oneArg(d, &l.WebURL)
		case "scopes":
			err = someArgs(d, &l.Scopes)
		case "allow_domains":
			err = someArgs(d, &l.AllowDomains)
		case "allow_emails":
			err = someArgs(d, &l.AllowEmails)
		case "allow_orgs":
			err = someArgs(d, &l.AllowOrgs)
		case "allow_teams":
			err = someArgs(d, &l.AllowTeams)
		case "allow_users":
			err = someArgs(d, &l.AllowUsers)
		case "pass_upstream_token":
			err = noArgs(d, &l.PassUpstreamToken)
		case "allow_claim":
			var c ClaimRule
			if !d.Args(&c.Claim, &c.Value) || d.NextArg() {
				return d.Err("allow_claim: expected a claim name and a value")
			}
			l.AllowClaims = append(l.AllowClaims, c)
		default:
			return d.Errf("login %s: %s", cmpOr(l.Name, l.Provider), unknownOption(opt, loginOptions))
		}
		if err != nil {
			return err
		}
	}
	h.Logins = append(h.Logins, l)
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var loginName = regexp.MustCompile(`^[a-z0-9-]+$`)

// validateLogins checks the providers; messages name the provider and the
// option, never a secret.
func (h *Handler) validateLogins() error {
	seen := map[string]bool{}
	for i := range h.Logins {
		l := &h.Logins[i]
		if l.Provider == upstream.KindGitHub && l.Name == "" {
			l.Name = "github"
		}
		where := "login " + l.Provider + " " + l.Name
		switch {
		case l.PassUpstreamToken && h.StorageKey == "":
			return fmt.Errorf("%s: pass_upstream_token keeps the provider's tokens sealed with storage_key; set storage_key (32 random bytes, base64, e.g. from 'openssl rand -base64 32')", where)
		case l.Provider != upstream.KindOIDC && l.Provider != upstream.KindGitHub:
			return fmt.Errorf("login %q: provider %q is not supported (oidc, github)", l.Name, l.Provider)
		case !loginName.MatchString(l.Name):
			return fmt.Errorf("%s: the name must be lowercase letters, digits and '-'", where)
		case seen[l.Name]:
			return fmt.Errorf("login %q is defined twice", l.Name)
		case l.ClientID == "":
			return fmt.Errorf("%s: client_id is required", where)
		case l.ClientSecret == "":
			return fmt.Errorf("%s: client_secret is required", where)
		}
		seen[l.Name] = true
		if err := l.validateKind(where); err != nil {
			return err
		}
		for _, team := range l.AllowTeams {
			if org, slug, ok := strings.Cut(team, "/"); !ok || org == "" || slug == "" || strings.Contains(slug, "/") {
				return fmt.Errorf("%s: allow_teams %q: expected org/team-slug", where, team)
			}
		}
		if _, err := l.rules().Normalized(); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
	}
	return nil
}

// validateKind checks the options that belong to one kind of provider.
func (l *Login) validateKind(where string) error {
	if l.Provider == upstream.KindOIDC {
		if l.Issuer == "" {
			return fmt.Errorf("%s: issuer is required", where)
		}
		if err := checkServerURL(where+": issuer", l.Issuer); err != nil {
			return err
		}
		for option, set := range map[string]bool{"allow_orgs": len(l.AllowOrgs) > 0, "allow_teams": len(l.AllowTeams) > 0, "allow_users": len(l.AllowUsers) > 0, "api_url": l.APIURL != "", "web_url": l.WebURL != ""} {
			if set {
				return fmt.Errorf("%s: %s is a github option", where, option)
			}
		}
		return nil
	}
	if l.Issuer != "" || len(l.AllowClaims) > 0 {
		return errors.New(where + ": issuer and allow_claim are oidc options")
	}
	for option, v := range map[string]string{"api_url": l.APIURL, "web_url": l.WebURL} {
		if v != "" {
			if err := checkServerURL(where+": "+option, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// rules are the login's allow rules as configured.
func (l *Login) rules() upstream.Rules {
	r := upstream.Rules{Domains: l.AllowDomains, Emails: l.AllowEmails, Orgs: l.AllowOrgs, Teams: l.AllowTeams, Users: l.AllowUsers}
	for _, c := range l.AllowClaims {
		r.Claims = append(r.Claims, upstream.ClaimRule{Claim: c.Claim, Value: c.Value})
	}
	return r
}

// providers builds the upstream providers, warning about those that admit
// everyone.
func (h *Handler) providers(logger *zap.Logger) ([]upstream.Provider, error) {
	var out []upstream.Provider
	for _, l := range h.Logins {
		rules, err := l.rules().Normalized()
		if err != nil {
			return nil, fmt.Errorf("login %s: %v", l.Name, err) // validated at load
		}
		if rules.Empty() {
			logger.Warn("login: no allow rule, so every account the provider signs in is admitted", zap.String("provider", l.Name))
		}
		if logins := rules.Logins(); len(logins) > 0 {
			logger.Warn("login: allow_users names GitHub logins, which can be renamed and then registered by someone else; name accounts by their numeric id (github:583231, from https://api.github.com/users/<login>)",
				zap.String("provider", l.Name), zap.Strings("logins", logins))
		}
		p, err := upstream.New(upstream.Config{
			Kind: l.Provider, Name: l.Name, Label: l.Label, Issuer: l.Issuer,
			ClientID: l.ClientID, ClientSecret: l.ClientSecret, Scopes: slices.Clone(l.Scopes), Rules: rules,
			APIURL: l.APIURL, WebURL: l.WebURL, ClockSkew: time.Duration(h.ClockSkew), Offline: l.PassUpstreamToken,
		})
		if err != nil {
			return nil, fmt.Errorf("login %s: %v", l.Name, err)
		}
		out = append(out, p)
	}
	return out, nil
}
