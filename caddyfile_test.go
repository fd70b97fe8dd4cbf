package oauth2server

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const bcryptHash = "$2a$12$r9YEtrzq11OBGq4dIKqE8ecVZGRwPoNsgqwl4JY2DkWivATF1in7q"

// parse runs the Caddyfile unmarshaller over src without the lexer's
// log.Fatalf on bad input.
func parse(src string) (*Handler, error) {
	tokens, err := caddyfile.Tokenize([]byte(src), "Caddyfile")
	if err != nil {
		return nil, err
	}
	var h Handler
	err = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	return &h, err
}

// everyOption is a Caddyfile using every option of the handler (but the
// exclusive ones: signing_key, the storage forms).
func everyOption() string {
	return `oauth2_server {
		issuer https://mcp.example.com
		resource https://mcp.example.com/mcp https://mcp.example.com/api
		resource https://other.example.com
		resource_name "Example MCP"
		signing_secret {env.OAUTH2_SECRET}
		storage /var/lib/oauth.db
		sweep_interval 5m
		scopes mcp:read mcp:write
		scopes mcp:admin
		enforce_scopes false
		access_token_lifetime 90s
		refresh_token_lifetime 30d
		authorization_code_lifetime 10m
		clock_skew 1m
		session_lifetime 8h
		root_aliases off
		templates /etc/caddy/oauth-pages
		user alice ` + bcryptHash + `
		user bob ` + bcryptHash + `
		user_from {http.auth.user.id}
		login oidc google {
			issuer        https://accounts.google.com
			client_id     {env.GOOGLE_CLIENT_ID}
			client_secret {env.GOOGLE_CLIENT_SECRET}
			scopes        openid email
			scopes        profile
			label         "Google"
			allow_domains example.com example.org
			allow_emails  contractor@example.net
			allow_claim   groups mcp-users
			allow_claim   hd example.com
			pass_upstream_token
		}
		login github {
			client_id     {env.GH_CLIENT_ID}
			client_secret {env.GH_CLIENT_SECRET}
			allow_orgs    example-org
			allow_teams   example-org/mcp-users
			allow_users   octocat
			api_url       https://ghe.example.com/api/v3
			web_url       https://ghe.example.com
		}
		sign_in_path /sign-in
		client web {
			secret {env.WEB_SECRET}
			redirect_uri https://app.example.com/cb https://app.example.com/cb2
			redirect_uri http://127.0.0.1/cb
			scopes mcp:read
			name "Web App"
			trusted
			token_endpoint_auth_method client_secret_post
		}
		client cli {
			public
			redirect_uri http://localhost/callback
		}
		dynamic_registration {
			initial_access_token {file./run/secrets/iat}
			allow_client_credentials
			always_return_client_secret
			rate_limit 5 10m
		}
		unused_client_ttl 48h
		client_id_metadata_documents
		public /healthz /docs/*
		require_scope /admin/* mcp:admin mcp:write
		scope mcp:write {
			description "Create and delete notes"
			implies     mcp:read
		}
		scope notes:export
		require_scope tool delete_* mcp:write
		require_scope method resources/* mcp:read
		allow_tools search fetch_*
		allow_tools delete_note
		rate_limit_per_user 120 1m
		ipv6_limit_prefix 56
	}`
}

func TestUnmarshalCaddyfileEveryOption(t *testing.T) {
	h, err := parse(everyOption())
	if err != nil {
		t.Fatal(err)
	}
	enforce := false
	want := &Handler{
		Issuer:                    "https://mcp.example.com",
		Resources:                 []string{"https://mcp.example.com/mcp", "https://mcp.example.com/api", "https://other.example.com"},
		ResourceName:              "Example MCP",
		SigningSecret:             "{env.OAUTH2_SECRET}",
		StorageRaw:                json.RawMessage(`{"backend":"bolt","path":"/var/lib/oauth.db"}`),
		SweepInterval:             caddy.Duration(5 * time.Minute),
		Scopes:                    []string{"mcp:read", "mcp:write", "mcp:admin", "notes:export"},
		ScopeDefinitions:          []ScopeDefinition{{Name: "mcp:write", Description: "Create and delete notes", Implies: []string{"mcp:read"}}, {Name: "notes:export"}},
		EnforceScopes:             &enforce,
		AccessTokenLifetime:       caddy.Duration(90 * time.Second),
		RefreshTokenLifetime:      caddy.Duration(30 * 24 * time.Hour),
		AuthorizationCodeLifetime: caddy.Duration(10 * time.Minute),
		ClockSkew:                 caddy.Duration(time.Minute),
		SessionLifetime:           caddy.Duration(8 * time.Hour),
		RootAliases:               new(false),
		Templates:                 "/etc/caddy/oauth-pages",
		Users:                     []User{{"alice", bcryptHash}, {"bob", bcryptHash}},
		UserFrom:                  "{http.auth.user.id}",
		Logins: []Login{
			{Provider: "oidc", Name: "google", Issuer: "https://accounts.google.com", ClientID: "{env.GOOGLE_CLIENT_ID}", ClientSecret: "{env.GOOGLE_CLIENT_SECRET}",
				Scopes: []string{"openid", "email", "profile"}, Label: "Google", AllowDomains: []string{"example.com", "example.org"}, AllowEmails: []string{"contractor@example.net"},
				AllowClaims: []ClaimRule{{"groups", "mcp-users"}, {"hd", "example.com"}}, PassUpstreamToken: true},
			{Provider: "github", ClientID: "{env.GH_CLIENT_ID}", ClientSecret: "{env.GH_CLIENT_SECRET}", AllowOrgs: []string{"example-org"},
				AllowTeams: []string{"example-org/mcp-users"}, AllowUsers: []string{"octocat"}, APIURL: "https://ghe.example.com/api/v3", WebURL: "https://ghe.example.com"},
		},
		SignInPath: "/sign-in",
		Clients: []Client{
			{ID: "web", Secret: "{env.WEB_SECRET}", RedirectURIs: []string{"https://app.example.com/cb", "https://app.example.com/cb2", "http://127.0.0.1/cb"}, Scopes: []string{"mcp:read"}, Name: "Web App", Trusted: true, TokenEndpointAuthMethod: "client_secret_post"},
			{ID: "cli", Public: true, RedirectURIs: []string{"http://localhost/callback"}},
		},
		DynamicRegistration:       &DynamicRegistration{InitialAccessToken: "{file./run/secrets/iat}", AllowClientCredentials: true, AlwaysReturnClientSecret: true, RateLimit: &RateLimit{Events: 5, Window: caddy.Duration(10 * time.Minute)}},
		UnusedClientTTL:           caddy.Duration(48 * time.Hour),
		ClientIDMetadataDocuments: true,
		Public:                    []string{"/healthz", "/docs/*"},
		RequireScope: []ScopeRequirement{{Path: "/admin/*", Scopes: []string{"mcp:admin", "mcp:write"}},
			{Tool: "delete_*", Scopes: []string{"mcp:write"}}, {Method: "resources/*", Scopes: []string{"mcp:read"}}},
		AllowTools:       []string{"search", "fetch_*", "delete_note"},
		RateLimitPerUser: &RateLimit{Events: 120, Window: caddy.Duration(time.Minute)},
		IPv6LimitPrefix:  56,
	}
	if !reflect.DeepEqual(h, want) {
		got, _ := json.MarshalIndent(h, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("parsed:\n%s\nwant:\n%s", got, exp)
	}

	// signing_key, and dynamic_registration without a block.
	h, err = parse("oauth2_server {\n signing_key /etc/caddy/oauth.pem\n dynamic_registration\n}")
	if err != nil || h.SigningKey != "/etc/caddy/oauth.pem" || h.DynamicRegistration == nil || *h.DynamicRegistration != (DynamicRegistration{}) {
		t.Fatalf("parsed %+v, %v", h, err)
	}
}

// TestUnmarshalCaddyfileStorage reads the three forms of storage into the
// guest-module JSON Caddy loads.
func TestUnmarshalCaddyfileStorage(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"storage /var/lib/oauth.db", `{"backend":"bolt","path":"/var/lib/oauth.db"}`},
		{"storage bolt {\n  path {env.DATA}/oauth.db\n }", `{"backend":"bolt","path":"{env.DATA}/oauth.db"}`},
		{"storage bolt", `{"backend":"bolt"}`},
		{"storage postgres {\n  dsn {env.DATABASE_URL}\n  schema tenant_1\n  max_connections 8\n  revocation_max_staleness 2s\n }",
			`{"backend":"postgres","dsn":"{env.DATABASE_URL}","max_connections":8,"revocation_max_staleness":2000000000,"schema":"tenant_1"}`},
	} {
		h, err := parse("oauth2_server {\n " + tc.src + "\n storage_key {env.KEY}\n health_path /healthz\n}")
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if string(h.StorageRaw) != tc.want || h.StorageKey != "{env.KEY}" || h.HealthPath != "/healthz" {
			t.Errorf("%q: storage %s, storage_key %q, health_path %q; want %s", tc.src, h.StorageRaw, h.StorageKey, h.HealthPath, tc.want)
		}
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"oauth2_server inline {\n}", "wrong argument count"},
		{"oauth2_server {\n isuer https://a.test\n}", `unrecognized subdirective "isuer" (did you mean "issuer"?)`},
		{"oauth2_server {\n frobnicate\n}", `unrecognized subdirective "frobnicate"`},
		{"oauth2_server {\n issuer https://a.test\n issuer https://b.test\n}", "issuer already specified"},
		{"oauth2_server {\n issuer\n}", "issuer: expected one value"},
		{"oauth2_server {\n issuer https://a.test https://b.test\n}", "issuer: expected one value, got more"},
		{"oauth2_server {\n resource\n}", "resource: expected at least one value"},
		{"oauth2_server {\n access_token_lifetime soon\n}", `access_token_lifetime: "soon" is not a duration`},
		{"oauth2_server {\n refresh_token_lifetime -1h\n}", "refresh_token_lifetime must be positive (got -1h)"},
		{"oauth2_server {\n authorization_code_lifetime 0s\n}", "authorization_code_lifetime must be positive (got 0s)"},
		{"oauth2_server {\n clock_skew 1fortnight\n}", `clock_skew: "1fortnight" is not a duration`},
		{"oauth2_server {\n sweep_interval 0\n}", "sweep_interval must be positive"},
		{"oauth2_server {\n enforce_scopes maybe\n}", `enforce_scopes: "maybe" is not a boolean`},
		{"oauth2_server {\n root_aliases 1\n}", `root_aliases: "1" is not a boolean`},
		{"oauth2_server {\n session_lifetime forever\n}", `session_lifetime: "forever" is not a duration`},
		{"oauth2_server {\n user alice\n}", "user: expected a user name and a password hash"},
		{"oauth2_server {\n client {\n }\n}", "client: expected a client_id followed by a block"},
		{"oauth2_server {\n client c1 {\n  sekret x\n }\n}", `client "c1": unrecognized subdirective "sekret" (did you mean "secret"?)`},
		{"oauth2_server {\n client c1 {\n  public yes\n }\n}", "public takes no value"},
		{"oauth2_server {\n client c1 {\n  name a\n  name b\n }\n}", `client "c1": name already specified`},
		{"oauth2_server {\n dynamic_registration {\n  open\n }\n}", `dynamic_registration: unrecognized subdirective "open"`},
		{"oauth2_server {\n dynamic_registration {\n  rate_limit 20\n }\n}", `rate_limit: expected <events> <window>`},
		{"oauth2_server {\n dynamic_registration {\n  rate_limit many 1h\n }\n}", `rate_limit: "many" is not a positive number`},
		{"oauth2_server {\n client_id_metadata_documents on\n}", "wrong argument count"},
		{"oauth2_server {\n require_scope tool delete_*\n}", "require_scope tool: expected a pattern and at least one scope"},
		{"oauth2_server {\n scope a {\n  colour blue\n }\n}", `scope a: unrecognized subdirective "colour"`},
		{"oauth2_server {\n scope a {\n  description x\n  description y\n }\n}", "scope a: description already specified"},
		{"oauth2_server {\n rate_limit_per_user 0 1m\n}", `rate_limit_per_user: "0" is not a positive number of events`},
		{"oauth2_server {\n allow_tools\n}", "allow_tools: expected at least one value"},
		{"oauth2_server {\n require_scope /admin/*\n}", "require_scope: expected a path (or tool or method and a pattern) and at least one scope"},
		{"oauth2_server {\n storage\n}", "wrong argument count"},
		{"oauth2_server {\n storage a.db b.db\n}", "storage: expected a file, 'bolt { … }' or 'postgres { … }'"},
		{"oauth2_server {\n storage postgres {\n  dns x\n }\n}", `storage postgres: unrecognized subdirective "dns"`},
		{"oauth2_server {\n storage postgres {\n  max_connections lots\n }\n}", `max_connections "lots" is not a positive number`},
		{"oauth2_server {\n storage bolt {\n  file x\n }\n}", `storage bolt: unrecognized subdirective "file"`},
	} {
		_, err := parse(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}

// TestSuggestedOptionsExist: every subdirective "did you mean" may
// suggest is one the parser recognises, and nothing else is suggested.
func TestSuggestedOptionsExist(t *testing.T) {
	blocks := map[string]struct {
		wrap  func(string) string
		known []string
	}{
		"handler":              {func(o string) string { return "oauth2_server {\n " + o + "\n}" }, handlerOptions},
		"client":               {func(o string) string { return "oauth2_server {\n client c {\n  " + o + "\n }\n}" }, clientOptions},
		"login":                {func(o string) string { return "oauth2_server {\n login github {\n  " + o + "\n }\n}" }, loginOptions},
		"dynamic_registration": {func(o string) string { return "oauth2_server {\n dynamic_registration {\n  " + o + "\n }\n}" }, registrationOptions},
	}
	for name, b := range blocks {
		for _, opt := range b.known {
			if _, err := parse(b.wrap(opt)); err != nil && strings.Contains(err.Error(), "unrecognized subdirective") {
				t.Errorf("%s: %q is listed but not recognised: %v", name, opt, err)
			}
		}
		if _, err := parse(b.wrap("zzzzzz")); err == nil || strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%s: a far-off word: %v", name, err)
		}
	}
}

// moreOptions uses the options everyOption leaves out: key rotation, the
// refresh policy, the guard's switches, machine clients with a secret
// and with keys.
const moreOptions = `oauth2_server {
	signing_key_rotation 720h
	signing_key_prepublish 2h
	refresh_reuse_grace 0
	refresh_family_lifetime 30d
	pass_token
	require_dpop
	dpop_nonce
	cors off
	client rs {
		secret {env.RS_SECRET}
		grant_types client_credentials
		introspect
	}
	client agent {
		jwks_file /etc/caddy/agent.jwks.json
		grant_types client_credentials
	}
	client chatgpt {
		token_endpoint_auth_method private_key_jwt
		jwks_uri https://chatgpt.example/jwks.json
		redirect_uri https://chatgpt.example/cb
	}
	enterprise_idp okta {
		issuer https://example.okta.com
		jwks_uri https://example.okta.com/oauth2/v1/keys
		clients agent
		subject email
	}
	workload_issuer github {
		issuer https://token.actions.githubusercontent.com
		audience https://mcp.example.com
		allow_claim repository acme/agents acme/tools
		allow_claim ref refs/heads/main
		scopes mcp:read
	}
	workload_issuer cluster {
		issuer https://kubernetes.default.svc
		jwks_file /etc/caddy/cluster.jwks.json
		allow_claim sub system:serviceaccount:agents:*
	}
	workload_issuer spiffe {
		issuer https://spire.example
		jwks_uri https://spire.example/keys
		allow_claim sub spiffe://example.org/agent
	}
}`

func TestUnmarshalCaddyfileMoreOptions(t *testing.T) {
	h, err := parse(moreOptions)
	if err != nil {
		t.Fatal(err)
	}
	zero, prepublish := caddy.Duration(0), caddy.Duration(2*time.Hour)
	want := &Handler{
		SigningKeyRotation: caddy.Duration(720 * time.Hour), SigningKeyPrepublish: &prepublish,
		RefreshReuseGrace: &zero, RefreshFamilyLifetime: caddy.Duration(30 * 24 * time.Hour),
		PassToken: true, RequireDPoP: true, DPoPNonce: true, CORS: new(false),
		Clients: []Client{{ID: "rs", Secret: "{env.RS_SECRET}", GrantTypes: []string{"client_credentials"}, Introspect: true},
			{ID: "agent", JWKSFile: "/etc/caddy/agent.jwks.json", GrantTypes: []string{"client_credentials"}},
			{ID: "chatgpt", TokenEndpointAuthMethod: "private_key_jwt", JWKSURI: "https://chatgpt.example/jwks.json", RedirectURIs: []string{"https://chatgpt.example/cb"}}},
		EnterpriseIDPs: []EnterpriseIDP{{Name: "okta", Issuer: "https://example.okta.com", JWKSURI: "https://example.okta.com/oauth2/v1/keys", Clients: []string{"agent"}, Subject: "email"}},
		WorkloadIssuers: []WorkloadIssuer{
			{Name: "github", Issuer: "https://token.actions.githubusercontent.com", Audience: "https://mcp.example.com", Scopes: []string{"mcp:read"},
				AllowClaims: []WorkloadClaimRule{{Claim: "repository", Values: []string{"acme/agents", "acme/tools"}}, {Claim: "ref", Values: []string{"refs/heads/main"}}}},
			{Name: "cluster", Issuer: "https://kubernetes.default.svc", JWKSFile: "/etc/caddy/cluster.jwks.json",
				AllowClaims: []WorkloadClaimRule{{Claim: "sub", Values: []string{"system:serviceaccount:agents:*"}}}},
			{Name: "spiffe", Issuer: "https://spire.example", JWKSURI: "https://spire.example/keys",
				AllowClaims: []WorkloadClaimRule{{Claim: "sub", Values: []string{"spiffe://example.org/agent"}}}},
		},
	}
	if !reflect.DeepEqual(h, want) {
		got, _ := json.MarshalIndent(h, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("parsed:\n%s\nwant:\n%s", got, exp)
	}
}

// TestCaddyfileCoversEveryField: every configuration field (see
// configFields) is set by some Caddyfile the tests above parse: the
// Caddyfile can say everything the JSON can.
func TestCaddyfileCoversEveryField(t *testing.T) {
	set := map[string]bool{}
	for _, src := range []string{everyOption(), moreOptions,
		"oauth2_server {\n signing_key /etc/caddy/oauth.pem\n storage postgres {\n  dsn {env.DATABASE_URL}\n  schema tenant_1\n  max_connections 8\n  revocation_max_staleness 2s\n }\n storage_key {env.KEY}\n health_path /healthz\n}",
		"oauth2_server {\n storage bolt {\n  path /var/lib/oauth.db\n }\n}",
	} {
		h, err := parse(src)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(h)
		var v any
		json.Unmarshal(raw, &v)
		collectKeys(v, set)
		var storage any
		json.Unmarshal(h.StorageRaw, &storage)
		collectKeys(storage, set)
	}
	configFields(func(typ, field, name string) {
		if !set[name] {
			t.Errorf("no Caddyfile of the tests sets %s.%s (JSON %q)", typ, field, name)
		}
	})
}

// collectKeys adds every object key in v, at any depth, to set.
func collectKeys(v any, set map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			set[k] = true
			collectKeys(e, set)
		}
	case []any:
		for _, e := range v {
			collectKeys(e, set)
		}
	}
}
