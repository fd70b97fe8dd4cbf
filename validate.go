package oauth2server

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
)

// resolvePlaceholders expands {env.*}, {file.*} and similar placeholders in
// the fields that accept them. A placeholder that is unknown or resolves to
// nothing is a load error: a secret must never silently become empty.
// Error messages name the field and the placeholder, never a secret value.
func (h *Handler) resolvePlaceholders() error {
	repl := caddy.NewReplacer()
	resolve := func(field string, v *string) error {
		if *v == "" {
			return nil
		}
		out, err := repl.ReplaceOrErr(*v, true, true)
		if err != nil {
			return fmt.Errorf("%s: %v", field, err)
		}
		*v = out
		return nil
	}
	if err := resolve("issuer", &h.Issuer); err != nil {
		return err
	}
	for i := range h.Resources {
		if err := resolve("resource", &h.Resources[i]); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"signing_secret", &h.SigningSecret}, {"signing_key", &h.SigningKey}, {"storage_key", &h.StorageKey}, {"templates", &h.Templates}} {
		if err := resolve(f.name, f.v); err != nil {
			return err
		}
	}
	for i := range h.Clients {
		c := &h.Clients[i]
		for _, f := range []struct {
			name  string
			value *string
		}{{"secret", &c.Secret}, {"jwks_file", &c.JWKSFile}, {"jwks_uri", &c.JWKSURI}} {
			if err := resolve(fmt.Sprintf("client %q: %s", c.ID, f.name), f.value); err != nil {
				return err
			}
		}
	}
	for i := range h.WorkloadIssuers {
		if err := resolve("workload_issuer "+h.WorkloadIssuers[i].Name+": jwks_file", &h.WorkloadIssuers[i].JWKSFile); err != nil {
			return err
		}
	}
	if dr := h.DynamicRegistration; dr != nil {
		if err := resolve("dynamic_registration: initial_access_token", &dr.InitialAccessToken); err != nil {
			return err
		}
	}
	for i := range h.Logins {
		l := &h.Logins[i]
		for _, f := range []struct {
			name string
			v    *string
		}{{"issuer", &l.Issuer}, {"client_id", &l.ClientID}, {"client_secret", &l.ClientSecret}} {
			if err := resolve("login "+cmpOr(l.Name, l.Provider)+": "+f.name, f.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// validate checks the resolved configuration. Messages name the option and
// the offending value, except for secrets.
func (h *Handler) validate() error {
	if h.Issuer == "" {
		return errors.New("issuer is required")
	}
	if err := checkServerURL("issuer", h.Issuer); err != nil {
		return err
	}
	if strings.HasSuffix(h.Issuer, "/") {
		return fmt.Errorf("issuer %q: must not end with '/': clients compare the issuer byte for byte", h.Issuer)
	}
	if len(h.Resources) == 0 {
		return errors.New("resource is required: name at least one protected resource URL")
	}
	seen := map[string]bool{}
	for _, r := range h.Resources {
		if err := checkServerURL("resource", r); err != nil {
			return err
		}
		c, _ := endpoints.CanonicalResource(r)
		if seen[c] {
			return fmt.Errorf("resource %q is listed twice", r)
		}
		seen[c] = true
	}
	if h.SigningSecret != "" && h.SigningKey != "" {
		return errors.New("signing_secret and signing_key are mutually exclusive")
	}
	if h.SigningSecret != "" && len(h.SigningSecret) < 32 {
		return fmt.Errorf("signing_secret is shorter than 32 bytes (%d bytes): HS256 needs at least 256 bits", len(h.SigningSecret))
	}
	if h.SigningKey != "" {
		if _, err := readSigningKey(h.SigningKey, time.Now()); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{
		{"access_token_lifetime", h.AccessTokenLifetime},
		{"refresh_token_lifetime", h.RefreshTokenLifetime},
		{"authorization_code_lifetime", h.AuthorizationCodeLifetime},
		{"clock_skew", h.ClockSkew},
		{"session_lifetime", h.SessionLifetime},
		{"refresh_family_lifetime", h.RefreshFamilyLifetime},
		{"unused_client_ttl", h.UnusedClientTTL},
		{"sweep_interval", h.SweepInterval},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive (got %s)", d.name, time.Duration(d.v))
		}
	}
	if h.SigningKeyRotation < 0 || *h.SigningKeyPrepublish < 0 {
		return errors.New("signing_key_rotation and signing_key_prepublish must not be negative")
	}
	if h.SigningKeyRotation > 0 && (h.SigningSecret != "" || h.SigningKey != "") {
		return errors.New("signing_key_rotation rotates generated keys only; it cannot be used with signing_key or signing_secret")
	}
	if *h.RefreshReuseGrace < 0 {
		return fmt.Errorf("refresh_reuse_grace must not be negative (got %s)", time.Duration(*h.RefreshReuseGrace))
	}
	if err := checkScopes("scopes", h.Scopes); err != nil {
		return err
	}
	if err := h.validateUsers(); err != nil {
		return err
	}
	if err := h.validateClients(); err != nil {
		return err
	}
	if err := h.validateLogins(); err != nil {
		return err
	}
	if err := h.validateEnterpriseIDPs(); err != nil {
		return err
	}
	if err := h.validateWorkloadIssuers(); err != nil {
		return err
	}
	if h.UserFrom != "" && !(strings.HasPrefix(h.UserFrom, "{") && strings.HasSuffix(h.UserFrom, "}")) {
		return fmt.Errorf("user_from %q: must be a placeholder such as {http.auth.user.id}", h.UserFrom)
	}
	if h.SignInPath != "" && !strings.HasPrefix(h.SignInPath, "/") {
		return fmt.Errorf("sign_in_path %q: must be a path starting with '/'", h.SignInPath)
	}
	if h.HealthPath != "" && (!strings.HasPrefix(h.HealthPath, "/") || strings.HasPrefix(h.HealthPath, "/oauth/") || strings.HasPrefix(h.HealthPath, "/.well-known/")) {
		return fmt.Errorf("health_path %q: must be a path starting with '/', outside /oauth/ and /.well-known/", h.HealthPath)
	}
	for _, p := range h.Public {
		if err := checkPathPattern("public", p); err != nil {
			return err
		}
	}
	if err := h.validateMCPRules(); err != nil {
		return err
	}
	if dr := h.DynamicRegistration; dr != nil {
		if dr.InitialAccessToken != "" && len(dr.InitialAccessToken) < 16 {
			return errors.New("dynamic_registration: initial_access_token is shorter than 16 bytes")
		}
		if dr.AllowClientCredentials && dr.InitialAccessToken == "" {
			return errors.New("dynamic_registration: allow_client_credentials needs initial_access_token (a client that registers itself openly never gets client_credentials)")
		}
		if rl := dr.RateLimit; rl.Events < 0 || rl.Window <= 0 {
			return fmt.Errorf("dynamic_registration: rate_limit must be a non-negative number of events per positive window (got %d per %s)", rl.Events, time.Duration(rl.Window))
		}
	}
	return nil
}

// validateMCPRules checks require_scope (by path, tool or method),
// allow_tools, the scope definitions and rate_limit_per_user.
func (h *Handler) validateMCPRules() error {
	for _, rs := range h.RequireScope {
		what, pattern := "", ""
		for _, f := range [][2]string{{"", rs.Path}, {"tool ", rs.Tool}, {"method ", rs.Method}} {
			if f[1] != "" {
				if pattern != "" {
					return fmt.Errorf("require_scope: give one of path, tool and method (got %q and %q)", pattern, f[1])
				}
				what, pattern = f[0], f[1]
			}
		}
		option := "require_scope " + what + pattern
		switch {
		case pattern == "":
			return errors.New("require_scope: needs a path, a tool or a method")
		case what == "":
			if err := checkPathPattern("require_scope", rs.Path); err != nil {
				return err
			}
		case !endpoints.ValidGlob(pattern):
			return fmt.Errorf("%s: not a valid pattern (path.Match syntax: *, ?, [a-z])", option)
		}
		if len(rs.Scopes) == 0 {
			return fmt.Errorf("%s: needs at least one scope", option)
		}
		if err := checkScopes(option, rs.Scopes); err != nil {
			return err
		}
	}
	for _, p := range h.AllowTools {
		if !endpoints.ValidGlob(p) {
			return fmt.Errorf("allow_tools %q: not a valid pattern (path.Match syntax: *, ?, [a-z])", p)
		}
	}
	for _, def := range h.ScopeDefinitions {
		if err := checkScopes("scope", append([]string{def.Name}, def.Implies...)); err != nil {
			return err
		}
	}
	if _, err := endpoints.NewScopeCatalogue(h.Scopes, h.scopeDefinitions()); err != nil {
		return err
	}
	if h.IPv6LimitPrefix < 1 || h.IPv6LimitPrefix > 128 {
		return fmt.Errorf("ipv6_limit_prefix must be between 1 and 128 (got %d)", h.IPv6LimitPrefix)
	}
	if rl := h.RateLimitPerUser; rl != nil && (rl.Events < 0 || rl.Window <= 0) {
		return fmt.Errorf("rate_limit_per_user must be a non-negative number of events per positive window (got %d per %s)", rl.Events, time.Duration(rl.Window))
	}
	return nil
}

func (h *Handler) validateUsers() error {
	seen := map[string]bool{}
	for _, u := range h.Users {
		if u.Username == "" {
			return errors.New("user: empty user name")
		}
		if seen[u.Username] {
			return fmt.Errorf("user %q is defined twice", u.Username)
		}
		seen[u.Username] = true
		if err := checkPasswordHash(u.Password); err != nil {
			return fmt.Errorf("user %q: %v", u.Username, err)
		}
	}
	return nil
}

// checkPasswordHash accepts what `caddy hash-password` prints: bcrypt or argon2id.
func checkPasswordHash(hash string) error {
	const hint = "password hash is not a bcrypt or argon2id hash as printed by 'caddy hash-password'"
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil || len(hash) != 60 {
			return errors.New(hint)
		}
	case strings.HasPrefix(hash, "$argon2id$"):
		if _, _, err := caddyauth.DecodeHash([]byte(hash)); err != nil {
			return fmt.Errorf("%s (%v)", hint, err)
		}
	default:
		return errors.New(hint)
	}
	return nil
}

func (h *Handler) validateClients() error {
	seen := map[string]bool{}
	for i := range h.Clients {
		c := &h.Clients[i]
		if c.ID == "" {
			return errors.New("client: empty client_id")
		}
		if seen[c.ID] {
			return fmt.Errorf("client %q is defined twice", c.ID)
		}
		seen[c.ID] = true
		keys := c.JWKSFile != "" || c.JWKSURI != ""
		switch {
		case c.Public && c.Secret != "":
			return fmt.Errorf("client %q: a public client has no secret", c.ID)
		case keys && (c.Public || c.Secret != ""):
			return fmt.Errorf("client %q: a client with keys (jwks_file, jwks_uri) authenticates with them: it has no secret and is not public", c.ID)
		case !c.Public && c.Secret == "" && !keys:
			return fmt.Errorf("client %q: needs a secret, keys (jwks_file or jwks_uri, for private_key_jwt), or 'public' for a client without either", c.ID)
		}
		if err := c.readKeys(); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
		for _, u := range c.RedirectURIs {
			if err := endpoints.ValidateRedirectURI(u); err != nil {
				return fmt.Errorf("client %q: redirect_uri %q: %v", c.ID, u, err)
			}
		}
		if err := checkScopes(fmt.Sprintf("client %q: scopes", c.ID), c.Scopes); err != nil {
			return err
		}
		if err := endpoints.CheckConfiguredClient(endpoints.ConfiguredClient{Public: c.Public, JWKS: c.jwks, JWKSURI: c.JWKSURI,
			Method: c.TokenEndpointAuthMethod, GrantTypes: c.GrantTypes, Redirects: len(c.RedirectURIs)}); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
		if c.Introspect && c.Public {
			return fmt.Errorf("client %q: introspect needs a confidential client (with a secret or keys)", c.ID)
		}
		if slices.ContainsFunc(h.Users, func(u User) bool { return u.Username == c.ID }) {
			return fmt.Errorf("client %q: the client_id is also the name of a user: tokens of the one would be taken for the other's", c.ID)
		}
	}
	return nil
}

// checkServerURL checks an issuer or resource: absolute https (http only
// on loopback), with a host and no userinfo, query or fragment.
func checkServerURL(option, raw string) error {
	u, err := parseAbsoluteURL(raw)
	if err != nil {
		return fmt.Errorf("%s %q: %v", option, raw, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%s %q: must be an https URL", option, raw)
	case u.Scheme == "http" && !endpoints.IsLoopbackHost(u.Hostname()):
		return fmt.Errorf("%s %q: must use https (plain http only for localhost, *.localhost, 127.0.0.0/8 or [::1])", option, raw)
	case u.User != nil:
		return fmt.Errorf("%s %q: must not carry user information", option, raw)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%s %q: must not have a query", option, raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%s %q: must not have a fragment", option, raw)
	}
	return nil
}

func parseAbsoluteURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if !u.IsAbs() || u.Host == "" {
		return nil, errors.New("must be an absolute URL with a host")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u, nil
}

// checkScopes enforces RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func checkScopes(option string, scopes []string) error {
	for _, s := range scopes {
		if !endpoints.ValidScopeToken(s) {
			return fmt.Errorf("%s: %q is not a valid scope token (RFC 6749 §3.3 allows printable ASCII except space, '\"' and '\\')", option, s)
		}
	}
	return nil
}

func checkPathPattern(option, p string) error {
	if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "*") {
		return fmt.Errorf("%s %q: must be a path starting with '/'", option, p)
	}
	return nil
}

// readKeys reads a client's jwks_file.
func (c *Client) readKeys() error {
	if c.JWKSFile == "" {
		return nil
	}
	if c.JWKSURI != "" {
		return errors.New("use jwks_file or jwks_uri, not both")
	}
	raw, err := readSmallFile(c.JWKSFile)
	if err != nil {
		return fmt.Errorf("jwks_file: %w", err)
	}
	c.jwks = raw
	return nil
}
