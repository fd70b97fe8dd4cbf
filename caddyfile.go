package oauth2server

import (
	"slices"
	"strconv"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oauth2_server", parseCaddyfile)
	// After basic_auth and forward_auth (so user_from can read what they
	// set), before reverse_proxy: no `order` line is ever needed.
	httpcaddyfile.RegisterDirectiveOrder("oauth2_server", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	oauth2_server [<matcher>] {
//	    issuer      <url>
//	    resource    <url>...
//	    resource_name <name>
//	    signing_secret <secret>
//	    signing_key <pem-file>
//	    signing_key_rotation <duration>
//	    signing_key_prepublish <duration>
//	    storage     <path>
//	    sweep_interval <duration>
//	    scopes      <scope>...
//	    scope <scope> {
//	        description <text>
//	        implies     <scope>...
//	    }
//	    enforce_scopes <bool>
//	    access_token_lifetime       <duration>
//	    refresh_token_lifetime      <duration>
//	    authorization_code_lifetime <duration>
//	    clock_skew  <duration>
//	    session_lifetime <duration>
//	    refresh_reuse_grace <duration>
//	    refresh_family_lifetime <duration>
//	    user        <name> <hash>
//	    login oidc <name> | github [<name>] {
//	        issuer        <url>            # oidc
//	        client_id     <id>
//	        client_secret <secret>
//	        scopes        <scope>...
//	        label         <text>
//	        allow_domains <domain>...
//	        allow_emails  <address>...
//	        allow_claim   <claim> <value>  # oidc
//	        allow_orgs    <org>...         # github
//	        allow_teams   <org/team>...    # github
//	        allow_users   <id>...          # github
//	        api_url       <url>            # github
//	        web_url       <url>            # github
//	        pass_upstream_token
//	    }
//	    user_from   <placeholder>
//	    sign_in_path <path>
//	    client <id> {
//	        secret       <secret>
//	        redirect_uri <uri>...
//	        scopes       <scope>...
//	        name         <name>
//	        grant_types  <type>...
//	        public
//	        trusted
//	        introspect
//	        token_endpoint_auth_method client_secret_basic|client_secret_post|private_key_jwt
//	        jwks_file    <path>
//	        jwks_uri     <url>
//	    }
//	    enterprise_idp <name> {
//	        issuer   <url>
//	        jwks_uri <url>
//	        clients  <client_id>...
//	        subject  sub|email
//	    }
//	    workload_issuer <name> {
//	        issuer      <url>
//	        jwks_uri    <url> | jwks_file <path>
//	        audience    <value>
//	        allow_claim <claim> <value>...
//	        scopes      <scope>...
//	    }
//	    dynamic_registration [{
//	        initial_access_token <secret>
//	        allow_client_credentials
//	        always_return_client_secret
//	        rate_limit <events> <window> | off
//	    }]
//	    unused_client_ttl <duration>
//	    client_id_metadata_documents
//	    public      <path>...
//	    require_scope <path> <scope>...
//	    require_scope tool <glob> <scope>...
//	    require_scope method <glob> <scope>...
//	    allow_tools <glob>...
//	    rate_limit_per_user <events> <window>
//	    ipv6_limit_prefix <bits>
//	    root_aliases <bool>
//	    pass_token
//	    require_dpop
//	    dpop_nonce
//	    cors        <bool>
//	    templates   <folder>
//	}
//
// `resource`, `scopes`, `scope`, `user`, `client`, `login`, `public`,
// `require_scope` and `allow_tools` may be repeated; every other option may appear once. Durations use Caddy's
// syntax (90s, 10m, 1h, 30d).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "resource", "scopes", "scope", "user", "client", "public", "require_scope", "allow_tools", "login", "enterprise_idp", "workload_issuer":
		default:
			if seen[opt] {
				return d.Errf("%s already specified", opt)
			}
			seen[opt] = true
		}
		var err error
		switch opt {
		case "issuer":
			err = oneArg(d, &h.Issuer)
		case "resource_name":
			err = oneArg(d, &h.ResourceName)
		case "signing_secret":
			err = oneArg(d, &h.SigningSecret)
		case "signing_key":
			err = oneArg(d, &h.SigningKey)
		case "storage":
			err = h.unmarshalStorage(d)
		case "storage_key":
			err = oneArg(d, &h.StorageKey)
		case "health_path":
			err = oneArg(d, &h.HealthPath)
		case "user_from":
			err = oneArg(d, &h.UserFrom)
		case "sign_in_path":
			err = oneArg(d, &h.SignInPath)
		case "resource":
			err = someArgs(d, &h.Resources)
		case "scopes":
			err = someArgs(d, &h.Scopes)
		case "public":
			err = someArgs(d, &h.Public)
		case "sweep_interval":
			err = durationArg(d, &h.SweepInterval)
		case "access_token_lifetime":
			err = durationArg(d, &h.AccessTokenLifetime)
		case "refresh_token_lifetime":
			err = durationArg(d, &h.RefreshTokenLifetime)
		case "authorization_code_lifetime":
			err = durationArg(d, &h.AuthorizationCodeLifetime)
		case "clock_skew":
			err = durationArg(d, &h.ClockSkew)
		case "session_lifetime":
			err = durationArg(d, &h.SessionLifetime)
		case "refresh_family_lifetime":
			err = durationArg(d, &h.RefreshFamilyLifetime)
		case "unused_client_ttl":
			err = durationArg(d, &h.UnusedClientTTL)
		case "signing_key_rotation":
			err = durationArg(d, &h.SigningKeyRotation)
		case "signing_key_prepublish":
			var p caddy.Duration
			p, err = parseDuration(d, true)
			h.SigningKeyPrepublish = &p
		case "refresh_reuse_grace":
			var grace caddy.Duration
			grace, err = parseDuration(d, true)
			h.RefreshReuseGrace = &grace
		case "templates":
			err = oneArg(d, &h.Templates)
		case "root_aliases":
			h.RootAliases, err = boolArg(d)
		case "cors":
			h.CORS, err = boolArg(d)
		case "require_dpop":
			err = noArgs(d, &h.RequireDPoP)
		case "dpop_nonce":
			err = noArgs(d, &h.DPoPNonce)
		case "pass_token":
			err = noArgs(d, &h.PassToken)
		case "enforce_scopes":
			h.EnforceScopes, err = boolArg(d)
		case "user":
			var u User
			if !d.Args(&u.Username, &u.Password) || d.NextArg() {
				return d.Err("user: expected a user name and a password hash")
			}
			h.Users = append(h.Users, u)
		case "client":
			err = h.unmarshalClient(d)
		case "login":
			err = h.unmarshalLogin(d)
		case "enterprise_idp":
			err = h.unmarshalEnterpriseIDP(d)
		case "workload_issuer":
			err = h.unmarshalWorkloadIssuer(d)
		case "dynamic_registration":
			err = h.unmarshalDynamicRegistration(d)
		case "client_id_metadata_documents":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ClientIDMetadataDocuments = true
		case "require_scope":
			err = h.unmarshalRequireScope(d)
		case "scope":
			err = h.unmarshalScope(d)
		case "allow_tools":
			err = someArgs(d, &h.AllowTools)
		case "ipv6_limit_prefix":
			err = intArg(d, &h.IPv6LimitPrefix)
		case "rate_limit_per_user":
			h.RateLimitPerUser, err = rateLimitArgs(d)
		default:
			return d.Err(unknownOption(opt, handlerOptions))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) unmarshalClient(d *caddyfile.Dispenser) error {
	var c Client
	if !d.Args(&c.ID) || d.NextArg() {
		return d.Err("client: expected a client_id followed by a block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt != "redirect_uri" && opt != "scopes" && opt != "grant_types" {
			if seen[opt] {
				return d.Errf("client %q: %s already specified", c.ID, opt)
			}
			seen[opt] = true
		}
		var err error
		switch opt {
		case "secret":
			err = oneArg(d, &c.Secret)
		case "name":
			err = oneArg(d, &c.Name)
		case "redirect_uri":
			err = someArgs(d, &c.RedirectURIs)
		case "scopes":
			err = someArgs(d, &c.Scopes)
		case "grant_types":
			err = someArgs(d, &c.GrantTypes)
		case "introspect":
			err = noArgs(d, &c.Introspect)
		case "public":
			err = noArgs(d, &c.Public)
		case "trusted":
			err = noArgs(d, &c.Trusted)
		case "token_endpoint_auth_method":
			err = oneArg(d, &c.TokenEndpointAuthMethod)
		case "jwks_file":
			err = oneArg(d, &c.JWKSFile)
		case "jwks_uri":
			err = oneArg(d, &c.JWKSURI)
		default:
			return d.Errf("client %q: %s", c.ID, unknownOption(opt, clientOptions))
		}
		if err != nil {
			return err
		}
	}
	h.Clients = append(h.Clients, c)
	return nil
}

func (h *Handler) unmarshalDynamicRegistration(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	dr := &DynamicRegistration{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("dynamic_registration: %s already specified", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "initial_access_token":
			err = oneArg(d, &dr.InitialAccessToken)
		case "allow_client_credentials":
			err = noArgs(d, &dr.AllowClientCredentials)
		case "always_return_client_secret":
			err = noArgs(d, &dr.AlwaysReturnClientSecret)
		case "rate_limit":
			dr.RateLimit, err = rateLimitArgs(d)
		default:
			return d.Err("dynamic_registration: " + unknownOption(opt, registrationOptions))
		}
		if err != nil {
			return err
		}
	}
	h.DynamicRegistration = dr
	return nil
}

// unmarshalRequireScope reads `require_scope <path> <scope>...`,
// `require_scope tool <glob> <scope>...` or `require_scope method <glob>
// <scope>...` (a path starts with '/' or '*', so the forms are distinct).
func (h *Handler) unmarshalRequireScope(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	var rs ScopeRequirement
	switch {
	case len(args) > 0 && (args[0] == "tool" || args[0] == "method"):
		if len(args) < 3 {
			return d.Errf("require_scope %s: expected a pattern and at least one scope", args[0])
		}
		if args[0] == "tool" {
			rs.Tool = args[1]
		} else {
			rs.Method = args[1]
		}
		rs.Scopes = args[2:]
	case len(args) >= 2:
		rs.Path, rs.Scopes = args[0], args[1:]
	default:
		return d.Err("require_scope: expected a path (or tool or method and a pattern) and at least one scope")
	}
	h.RequireScope = append(h.RequireScope, rs)
	return nil
}

// unmarshalScope reads a `scope <name> { description …; implies … }`
// block; the scope joins the catalogue.
func (h *Handler) unmarshalScope(d *caddyfile.Dispenser) error {
	var def ScopeDefinition
	if err := oneArg(d, &def.Name); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "description":
			if def.Description != "" {
				return d.Errf("scope %s: description already specified", def.Name)
			}
			if err := oneArg(d, &def.Description); err != nil {
				return err
			}
		case "implies":
			if err := someArgs(d, &def.Implies); err != nil {
				return err
			}
		default:
			return d.Errf("scope %s: unrecognized subdirective %q", def.Name, opt)
		}
	}
	if !slices.Contains(h.Scopes, def.Name) {
		h.Scopes = append(h.Scopes, def.Name)
	}
	h.ScopeDefinitions = append(h.ScopeDefinitions, def)
	return nil
}

func oneArg(d *caddyfile.Dispenser, v *string) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: expected one value", opt)
	}
	*v = d.Val()
	if d.NextArg() {
		return d.Errf("%s: expected one value, got more", opt)
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, v *int) error {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("%s: %q is not a whole number", opt, s)
	}
	*v = n
	return nil
}

func someArgs(d *caddyfile.Dispenser, v *[]string) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s: expected at least one value", opt)
	}
	*v = append(*v, args...)
	return nil
}

func noArgs(d *caddyfile.Dispenser, v *bool) error {
	opt := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no value", opt)
	}
	*v = true
	return nil
}

// rateLimitArgs reads `rate_limit <events> <window>` or `rate_limit off`.
// (also rate_limit_per_user).
func rateLimitArgs(d *caddyfile.Dispenser) (*RateLimit, error) {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		return &RateLimit{Events: 0}, nil
	}
	if len(args) != 2 {
		return nil, d.Errf("%s: expected <events> <window> (e.g. 20 1h) or off", opt)
	}
	events, err := strconv.Atoi(args[0])
	if err != nil || events < 1 {
		return nil, d.Errf("%s: %q is not a positive number of events", opt, args[0])
	}
	window, err := caddy.ParseDuration(args[1])
	if err != nil || window <= 0 {
		return nil, d.Errf("%s: %q is not a positive duration", opt, args[1])
	}
	return &RateLimit{Events: events, Window: caddy.Duration(window)}, nil
}

func boolArg(d *caddyfile.Dispenser) (*bool, error) {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return nil, err
	}
	switch s {
	case "true", "on":
		return new(true), nil
	case "false", "off":
		return new(false), nil
	}
	return nil, d.Errf("%s: %q is not a boolean (true or false)", opt, s)
}

func durationArg(d *caddyfile.Dispenser, v *caddy.Duration) error {
	dur, err := parseDuration(d, false)
	*v = dur
	return err
}

// parseDuration reads one Caddy duration; zero is accepted only when
// zeroOK (refresh_reuse_grace 0 means strict rotation).
func parseDuration(d *caddyfile.Dispenser, zeroOK bool) (caddy.Duration, error) {
	opt := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("%s: %q is not a duration (use e.g. 90s, 10m, 1h, 30d)", opt, s)
	}
	if dur < 0 || dur == 0 && !zeroOK {
		return 0, d.Errf("%s must be positive (got %s)", opt, s)
	}
	return caddy.Duration(dur), nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// unmarshalStorage reads `storage <file>` (bolt), `storage bolt { … }` or
// `storage postgres { … }`.
func (h *Handler) unmarshalStorage(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if name != "bolt" && name != "postgres" {
		if d.NextArg() {
			return d.Errf("storage: expected a file, 'bolt { … }' or 'postgres { … }'")
		}
		h.StorageRaw = caddyconfig.JSONModuleObject(bolt.Module{Path: name}, "backend", "bolt", nil)
		return nil
	}
	unm, err := caddyfile.UnmarshalModule(d, "http.handlers.oauth2_server.storage."+name)
	if err != nil {
		return err
	}
	h.StorageRaw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
	return nil
}
