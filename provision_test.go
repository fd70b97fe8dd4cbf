package oauth2server

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

func TestMain(m *testing.M) {
	// Keep Caddy's data and config (default storage files, autosave) out
	// of the developer's home.
	dir, err := os.MkdirTemp("", "oauth2-server-test")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newConfigContext is one loaded config: cancelling it cleans up every
// module it loaded, as Caddy does when a config is replaced or stopped.
func newConfigContext(t *testing.T) (caddy.Context, context.CancelFunc) {
	t.Helper()
	cfgCtx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(cfgCtx)
	t.Cleanup(cancel)
	return ctx, cancel
}

// load parses a Caddyfile block, turns it into JSON as `caddy adapt` does,
// and loads it through a config context (Provision and all).
func load(t *testing.T, ctx caddy.Context, src string) (*Handler, error) {
	t.Helper()
	h, err := parse(src)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := ctx.LoadModuleByID("http.handlers.oauth2_server", raw)
	if err != nil {
		return nil, err
	}
	return mod.(*Handler), nil
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pemFile(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
}

func TestLoadTimeValidation(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-secret"
	t.Setenv("OAUTH2_TEST_SHORT_SECRET", "short-secret-value")
	os.Unsetenv("OAUTH2_TEST_UNSET")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwksFile, privateJWKS := writeJWKS(t, "agent.jwks.json", ec.Public()), writeJWKS(t, "private.jwks.json", ec)

	base := func(extra string) string {
		return "oauth2_server {\n issuer https://mcp.example.com\n resource https://mcp.example.com/mcp\n storage " +
			filepath.Join(dir, "v.db") + "\n" + extra + "\n}"
	}
	// pg is a config on an unreachable PostgreSQL whose password is the
	// secret the errors must not show.
	pg := func(extra string) string {
		return "oauth2_server {\n issuer https://a.test\n resource https://a.test\n storage postgres {\n  dsn postgres://oauth:" + secret +
			"@127.0.0.1:1/oauth?connect_timeout=2\n }\n " + extra + "\n}"
	}
	storageKey := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name, src, want string
	}{
		{"postgres without storage_key", pg(""), "storage_key is required: a shared storage keeps the generated signing key"},
		{"short storage_key", pg("storage_key c2hvcnQ="), "storage_key must be 32 bytes, base64-encoded"},
		{"postgres dsn unset", "oauth2_server {\n issuer https://a.test\n resource https://a.test\n signing_secret " + secret +
			"\n storage postgres {\n dsn {env.OAUTH2_TEST_UNSET}\n }\n}", "storage postgres: dsn: evaluated placeholder {env.OAUTH2_TEST_UNSET} is empty"},
		{"postgres bad dsn", "oauth2_server {\n issuer https://a.test\n resource https://a.test\n signing_secret " + secret +
			"\n storage postgres {\n dsn :::" + secret + "\n }\n}", "storage postgres: dsn is not a PostgreSQL connection string"},
		{"postgres unreachable", pg("storage_key " + storageKey), "storage postgres (postgres://127.0.0.1:1/oauth schema oauth2):"},
		{"pass_upstream_token without storage_key", base("login oidc corp {\n issuer https://idp.example.com\n client_id c\n client_secret s\n pass_upstream_token\n }"),
			"login oidc corp: pass_upstream_token keeps the provider's tokens sealed with storage_key; set storage_key"},
		{"scope cycle", base("scopes a b\n scope a {\n implies b\n }\n scope b {\n implies a\n }"), "implies itself ("},
		{"scope implies an unknown scope", base("scope a {\n implies nowhere\n }"), "scope a: implies nowhere, which is not in the scope catalogue"},
		{"bad tool pattern", base("require_scope tool [delete mcp:write"), `require_scope tool [delete: not a valid pattern (path.Match syntax: *, ?, [a-z])`},
		{"bad allow_tools pattern", base("allow_tools ok [x"), `allow_tools "[x": not a valid pattern (path.Match syntax: *, ?, [a-z])`},
		{"bad tool scope", base("require_scope method tools/* écrire"), `require_scope method tools/*: "écrire" is not a valid scope token`},
		{"bad health_path", base("health_path /oauth/health"), `health_path "/oauth/health": must be a path starting with '/', outside /oauth/ and /.well-known/`},
		{"missing issuer", "oauth2_server {\n resource https://a.test\n}", "issuer is required"},
		{"missing resource", "oauth2_server {\n issuer https://a.test\n}", "resource is required"},
		{"http issuer", "oauth2_server {\n issuer http://mcp.example.com\n resource https://mcp.example.com\n}",
			`issuer "http://mcp.example.com": must use https (plain http only for localhost, *.localhost, 127.0.0.0/8 or [::1])`},
		{"relative issuer", "oauth2_server {\n issuer /oauth\n resource https://a.test\n}", `issuer "/oauth": must be an absolute URL with a host`},
		{"issuer query", "oauth2_server {\n issuer https://a.test?x=1\n resource https://a.test\n}", `issuer "https://a.test?x=1": must not have a query`},
		{"issuer fragment", "oauth2_server {\n issuer https://a.test/#frag\n resource https://a.test\n}", `issuer "https://a.test/#frag": must not have a fragment`},
		{"issuer trailing slash", "oauth2_server {\n issuer https://a.test/\n resource https://a.test\n}", `issuer "https://a.test/": must not end with '/'`},
		{"ftp resource", "oauth2_server {\n issuer https://a.test\n resource ftp://a.test/mcp\n}", `resource "ftp://a.test/mcp": must be an https URL`},
		{"http resource", "oauth2_server {\n issuer https://a.test\n resource http://10.0.0.1/mcp\n}", `resource "http://10.0.0.1/mcp": must use https`},
		{"resource query", "oauth2_server {\n issuer https://a.test\n resource https://a.test/mcp?v=2\n}", `resource "https://a.test/mcp?v=2": must not have a query`},
		{"resource fragment", "oauth2_server {\n issuer https://a.test\n resource https://a.test/mcp#x\n}", `resource "https://a.test/mcp#x": must not have a fragment`},
		{"duplicate resource", "oauth2_server {\n issuer https://a.test\n resource https://a.test https://A.test/\n}", `resource "https://A.test/" is listed twice`},
		{"unset env", base("signing_secret {env.OAUTH2_TEST_UNSET}"), "signing_secret: evaluated placeholder {env.OAUTH2_TEST_UNSET} is empty"},
		{"missing file", base("signing_secret {file./nonexistent/oauth2-secret}"), "signing_secret: evaluated placeholder {file./nonexistent/oauth2-secret} is empty"},
		{"typo placeholder", base("signing_secret {evn.SECRET}"), "signing_secret: unrecognized placeholder {evn.SECRET}"},
		{"unset issuer env", "oauth2_server {\n issuer {env.OAUTH2_TEST_UNSET}\n resource https://a.test\n}", "issuer: evaluated placeholder {env.OAUTH2_TEST_UNSET} is empty"},
		{"short secret", base("signing_secret {env.OAUTH2_TEST_SHORT_SECRET}"), "signing_secret is shorter than 32 bytes (18 bytes)"},
		{"secret and key", base("signing_secret " + secret + "\n signing_key " + pemFile(t, p384)), "signing_secret and signing_key are mutually exclusive"},
		{"rsa key", base("signing_key " + pemFile(t, rsaKey)), "unsupported key type *rsa.PrivateKey: want an EC P-256 or Ed25519 private key"},
		{"p384 key", base("signing_key " + pemFile(t, p384)), "EC key is not on curve P-256: want an EC P-256 or Ed25519 private key"},
		{"not pem", base("signing_key " + writeFile(t, "key.txt", "hello")), "no PEM block found"},
		{"missing key file", base("signing_key /nonexistent/key.pem"), "signing_key: reading /nonexistent/key.pem"},
		{"bad bcrypt", base("user alice $2a$12$tooshort"), `user "alice": password hash is not a bcrypt or argon2id hash as printed by 'caddy hash-password'`},
		{"plain password", base("user alice hunter2"), `user "alice": password hash is not a bcrypt or argon2id hash`},
		{"bad argon2id", base("user alice $argon2id$v=19$m=abc$salt$key"), `user "alice": password hash is not a bcrypt or argon2id hash`},
		{"duplicate user", base("user alice " + bcryptHash + "\n user alice " + bcryptHash), `user "alice" is defined twice`},
		{"duplicate client", base("client c1 {\n public\n redirect_uri https://c.test/cb\n }\n client c1 {\n public\n redirect_uri https://c.test/cb\n }"), `client "c1" is defined twice`},
		{"client secret unset", base("client c1 {\n secret {env.OAUTH2_TEST_UNSET}\n redirect_uri https://c.test/cb\n }"), `client "c1": secret: evaluated placeholder {env.OAUTH2_TEST_UNSET} is empty`},
		{"client no secret", base("client c1 {\n redirect_uri https://c.test/cb\n }"), `client "c1": needs a secret, keys (jwks_file or jwks_uri, for private_key_jwt), or 'public'`},
		{"client keys and secret", base("client c1 {\n secret " + secret + "\n jwks_file " + jwksFile + "\n grant_types client_credentials\n }"), `client "c1": a client with keys (jwks_file, jwks_uri) authenticates with them`},
		{"client keys and public", base("client c1 {\n public\n jwks_uri https://c.test/jwks.json\n redirect_uri https://c.test/cb\n }"), `client "c1": a client with keys (jwks_file, jwks_uri) authenticates with them`},
		{"client jwks_file and jwks_uri", base("client c1 {\n jwks_file " + jwksFile + "\n jwks_uri https://c.test/jwks.json\n grant_types client_credentials\n }"), `client "c1": use jwks_file or jwks_uri, not both`},
		{"client jwks_file missing", base("client c1 {\n jwks_file /nonexistent/jwks.json\n grant_types client_credentials\n }"), `client "c1": jwks_file: open /nonexistent/jwks.json`},
		{"client private key", base("client c1 {\n jwks_file " + privateJWKS + "\n grant_types client_credentials\n }"), `client "c1": key 1 of the set: a private or symmetric key must not be registered`},
		{"client jwks_uri http", base("client c1 {\n jwks_uri http://c.test/jwks.json\n grant_types client_credentials\n }"), `client "c1": jwks_uri must be an https URL`},
		{"client keys, secret method", base("client c1 {\n jwks_file " + jwksFile + "\n grant_types client_credentials\n token_endpoint_auth_method client_secret_basic\n }"),
			`client "c1": token_endpoint_auth_method "client_secret_basic": a client that has keys uses private_key_jwt`},
		{"secret client, key method", base("client c1 {\n secret " + secret + "\n redirect_uri https://c.test/cb\n token_endpoint_auth_method private_key_jwt\n }"),
			`client "c1": token_endpoint_auth_method "private_key_jwt": a client that has a secret uses client_secret_basic or client_secret_post`},
		{"client no redirect", base("client c1 {\n public\n }"), `client "c1": needs at least one redirect_uri`},
		{"client js redirect", base("client c1 {\n public\n redirect_uri javascript:alert(1)\n }"), `client "c1": redirect_uri "javascript:alert(1)": scheme "javascript" is not allowed`},
		{"client http redirect", base("client c1 {\n public\n redirect_uri http://c.test/cb\n }"), `plain http is allowed only for localhost`},
		{"bad scope", base(`scopes "mcp read"`), `scopes: "mcp read" is not a valid scope token`},
		{"bad scope quote", base(`scopes mcp:"read"`), `scopes: "mcp:\"read\"" is not a valid scope token`},
		{"bad client scope", base("client c1 {\n public\n redirect_uri https://c.test/cb\n scopes \"x y\"\n }"), `client "c1": scopes: "x y" is not a valid scope token`},
		{"bad user_from", base("user_from http.auth.user.id"), `user_from "http.auth.user.id": must be a placeholder`},
		{"bad sign_in_path", base("sign_in_path sign-in"), `sign_in_path "sign-in": must be a path starting with '/'`},
		{"bad public", base("public healthz"), `public "healthz": must be a path starting with '/'`},
		{"short initial access token", base("dynamic_registration {\n initial_access_token abc\n }"), "dynamic_registration: initial_access_token is shorter than 16 bytes"},
		{"ipv6_limit_prefix 0", base("ipv6_limit_prefix 129"), "ipv6_limit_prefix must be between 1 and 128 (got 129)"},
		{"client_credentials for open registration", base("dynamic_registration {\n allow_client_credentials\n }"), "dynamic_registration: allow_client_credentials needs initial_access_token (a client that registers itself openly never gets client_credentials)"},
		{"login without issuer", base("login oidc google {\n client_id a\n client_secret " + secret + "\n }"), "login oidc google: issuer is required"},
		{"login http issuer", base("login oidc corp {\n issuer http://idp.example.com\n client_id a\n client_secret " + secret + "\n }"), `login oidc corp: issuer "http://idp.example.com": must use https`},
		{"login without client_id", base("login github {\n client_secret " + secret + "\n }"), "login github github: client_id is required"},
		{"login without secret", base("login oidc g {\n issuer https://accounts.google.com\n client_id a\n }"), "login oidc g: client_secret is required"},
		{"login secret unset", base("login oidc g {\n issuer https://accounts.google.com\n client_id a\n client_secret {env.OAUTH2_TEST_UNSET}\n }"), "login g: client_secret: evaluated placeholder {env.OAUTH2_TEST_UNSET} is empty"},
		{"login bad name", base("login oidc Google {\n issuer https://accounts.google.com\n client_id a\n client_secret " + secret + "\n }"), "login oidc Google: the name must be lowercase letters, digits and '-'"},
		{"login twice", base("login github {\n client_id a\n client_secret " + secret + "\n }\n login github {\n client_id b\n client_secret " + secret + "\n }"), `login "github" is defined twice`},
		{"login github issuer", base("login github {\n issuer https://github.com\n client_id a\n client_secret " + secret + "\n }"), "login github github: issuer and allow_claim are oidc options"},
		{"login oidc orgs", base("login oidc g {\n issuer https://accounts.google.com\n client_id a\n client_secret " + secret + "\n allow_orgs x\n }"), "login oidc g: allow_orgs is a github option"},
		{"login bad team", base("login github {\n client_id a\n client_secret " + secret + "\n allow_teams justateam\n }"), `login github github: allow_teams "justateam": expected org/team-slug`},
		{"login bad domain", base("login github {\n client_id a\n client_secret " + secret + "\n allow_domains @example.com\n }"), `login github github: allow_domains "@example.com": not a domain name`},
		{"login Kelvin domain", base("login github {\n client_id a\n client_secret " + secret + "\n allow_domains \u212aaiser.test\n }"), "allow_domains \"\u212aaiser.test\": not a valid domain name (IDNA)"},
		{"login non-ASCII local part", base("login github {\n client_id a\n client_secret " + secret + "\n allow_emails bj\u00f6rn@example.com\n }"), "allow_emails \"bj\u00f6rn@example.com\": the part before @ is not ASCII"},
		{"login unknown option", base("login github {\n client_id a\n client_secret " + secret + "\n allow_everyone\n }"), `login github: unrecognized subdirective "allow_everyone"`},
		{"login unknown kind", base("login saml corp {\n }"), "login: expected `login oidc <name> { … }` or `login github [<name>] { … }`"},
		{"enterprise_idp bad name", base("enterprise_idp Okta {\n issuer https://corp.okta.com\n }"), "enterprise_idp Okta: the name must be lowercase letters, digits and '-'"},
		{"enterprise_idp no issuer", base("enterprise_idp okta {\n subject sub\n }"), "enterprise_idp okta: issuer is required"},
		{"enterprise_idp http issuer", base("enterprise_idp okta {\n issuer http://corp.okta.com\n }"), `enterprise_idp okta: issuer "http://corp.okta.com": must use https`},
		{"enterprise_idp subject", base("enterprise_idp okta {\n issuer https://corp.okta.com\n subject upn\n }"), `enterprise_idp okta: subject "upn": sub or email`},
		{"enterprise_idp twice", base("enterprise_idp okta {\n issuer https://corp.okta.com\n }\n enterprise_idp okta {\n issuer https://other.okta.com\n }"), `enterprise_idp "okta" is defined twice`},
		{"enterprise_idp same issuer", base("enterprise_idp okta {\n issuer https://corp.okta.com\n }\n enterprise_idp okta2 {\n issuer https://corp.okta.com\n }"), `enterprise_idp okta2: issuer "https://corp.okta.com" is another enterprise_idp's too`},
		{"enterprise_idp public client", base("client c1 {\n public\n redirect_uri https://c.test/cb\n }\n enterprise_idp okta {\n issuer https://corp.okta.com\n clients c1\n }"), `enterprise_idp okta: client "c1" is public`},
		{"enterprise_idp unknown option", base("enterprise_idp okta {\n issuer https://corp.okta.com\n audience x\n }"), `enterprise_idp okta: unrecognized subdirective "audience"`},
		{"workload_issuer without allow_claim", base("workload_issuer gh {\n issuer https://token.actions.githubusercontent.com\n }"), "workload_issuer gh: needs at least one allow_claim"},
		{"workload_issuer no issuer", base("workload_issuer gh {\n allow_claim repository acme/x\n }"), "workload_issuer gh: issuer is required"},
		{"workload_issuer both keys", base("workload_issuer k8s {\n issuer https://k8s.example\n jwks_uri https://k8s.example/keys\n jwks_file " + jwksFile + "\n allow_claim sub x\n }"), "workload_issuer k8s: use jwks_uri or jwks_file, not both"},
		{"workload_issuer private key", base("workload_issuer k8s {\n issuer https://k8s.example\n jwks_file " + privateJWKS + "\n allow_claim sub x\n }"), "workload_issuer k8s: jwks_file: key 1 of the set: a private or symmetric key"},
		{"workload_issuer allow_claim without value", base("workload_issuer k8s {\n issuer https://k8s.example\n allow_claim sub\n }"), "workload_issuer k8s: allow_claim: expected a claim name and one or more values"},
		{"workload_issuer bad scope", base("workload_issuer k8s {\n issuer https://k8s.example\n allow_claim sub x\n scopes \"a b\"\n }"), `workload_issuer k8s: scopes: "a b" is not a valid scope token`},
		{"workload_issuer twice", base("workload_issuer k8s {\n issuer https://k8s.example\n allow_claim sub x\n }\n workload_issuer k8s {\n issuer https://k9s.example\n allow_claim sub x\n }"), `workload_issuer "k8s" is defined twice`},
		{"client named like a user", base("user alice " + bcryptHash + "\n client alice {\n secret " + secret + "\n grant_types client_credentials\n }"),
			`client "alice": the client_id is also the name of a user`},
		{"public client with secret method", base("client c1 {\n public\n redirect_uri https://c.test/cb\n token_endpoint_auth_method client_secret_post\n }"),
			`client "c1": token_endpoint_auth_method "client_secret_post": a public client uses none`},
		{"unknown auth method", base("client c1 {\n secret " + secret + "\n redirect_uri https://c.test/cb\n token_endpoint_auth_method client_secret_jwt\n }"),
			`client "c1": token_endpoint_auth_method "client_secret_jwt" is not supported (client_secret_basic, client_secret_post)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, _ := newConfigContext(t)
			_, err := load(t, ctx, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
			for _, s := range []string{secret, "short-secret-value"} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("the error reveals a secret: %v", err)
				}
			}
		})
	}
}

func TestLoadAcceptsGoodConfigs(t *testing.T) {
	dir := t.TempDir()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	sec1 := writeFile(t, "ec.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})))
	t.Setenv("OAUTH2_TEST_SECRET", "0123456789abcdef0123456789abcdef")
	secretFile := writeFile(t, "secret", "0123456789abcdef0123456789abcdef\n")
	argon := "$argon2id$v=19$m=47104,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$8e1LPgTN3Q3IifAkWAVUWVyAW+cNDHkJUuc6l0IJSRE"

	for _, tc := range []struct{ name, extra, alg string }{
		{"generated ES256", "", "ES256"},
		{"HS256 from env", "signing_secret {env.OAUTH2_TEST_SECRET}", "HS256"},
		{"HS256 from file", "signing_secret {file." + secretFile + "}", "HS256"},
		{"Ed25519 key", "signing_key " + pemFile(t, ed), "EdDSA"},
		{"SEC1 EC key", "signing_key " + sec1, "ES256"},
		{"argon2id user", "user carol " + argon, "ES256"},
		{"loopback http", "", "ES256"},
		{"a client with keys", "client agent {\n jwks_file " + writeJWKS(t, "agent.jwks.json", ec.Public()) + "\n grant_types client_credentials\n }", "ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, _ := newConfigContext(t)
			issuer := "https://mcp.example.com"
			if tc.name == "loopback http" {
				issuer = "http://127.0.0.2:8080"
			}
			h, err := load(t, ctx, fmt.Sprintf("oauth2_server {\n issuer %s\n resource %s/mcp http://[::1]:9000\n storage %s\n user alice %s\n %s\n}",
				issuer, issuer, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".db"), bcryptHash, tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			if alg := h.server.Keys().Algorithm(); alg != tc.alg {
				t.Fatalf("signing algorithm %s, want %s", alg, tc.alg)
			}
		})
	}
}

// TestDefaultStorageFile checks the default path: Caddy's data directory,
// one file per issuer.
func TestDefaultStorageFile(t *testing.T) {
	ctx, _ := newConfigContext(t)
	h, err := load(t, ctx, "oauth2_server {\n issuer https://mcp.example.com/t1\n resource https://mcp.example.com/mcp\n}")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(caddy.AppDataDir(), "oauth2_server", "mcp.example.com_t1.db")
	if got := h.storage.Describe(); got != want {
		t.Fatalf("storage = %s, want %s", got, want)
	}
	if _, err := os.Stat(want); err != nil {
		t.Fatal(err)
	}
}

// TestReloadSharesStorage provisions a changed config while the old one
// still holds the file, as a Caddy reload does, then stops the old one.
func TestReloadSharesStorage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	cfg := func(scopes string) string {
		return "oauth2_server {\n issuer https://mcp.example.com\n resource https://mcp.example.com/mcp\n storage " + path + "\n scopes " + scopes + "\n}"
	}
	ctxA, cancelA := newConfigContext(t)
	a, err := load(t, ctxA, cfg("mcp:read"))
	if err != nil {
		t.Fatal(err)
	}
	store := a.server.Store()
	if err := store.PutClient(context.Background(), &storage.Client{ID: "registered", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	ctxB, cancelB := newConfigContext(t)
	b, err := load(t, ctxB, cfg("mcp:read mcp:write"))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("provisioning the new config took %s", took)
	}
	cancelA() // the old config is cleaned up after the new one started

	if _, err := b.server.Store().GetClient(context.Background(), "registered", time.Now()); err != nil {
		t.Fatalf("client lost across the reload: %v", err)
	}
	if a.server.Keys().KeyID() != b.server.Keys().KeyID() {
		t.Fatal("the signing key changed across the reload")
	}

	// A config that fails before it acquires the storage must not release
	// the running config's reference (Caddy calls Cleanup after a failed
	// Provision); one that succeeds releases only its own.
	ctxC, cancelC := newConfigContext(t)
	if _, err := load(t, ctxC, cfg("mcp:read")+"\n"); err != nil {
		t.Fatal(err)
	}
	ctxD, cancelD := newConfigContext(t)
	if _, err := load(t, ctxD, cfg(`"bad scope"`)); err == nil {
		t.Fatal("a bad config loaded")
	}
	cancelD()
	cancelC()
	if _, err := b.server.Store().GetClient(context.Background(), "registered", time.Now()); err != nil {
		t.Fatalf("a failed config closed the running config's storage: %v", err)
	}

	cancelB()
	// Everything released: the file can be opened directly.
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("the file is still held after the last config stopped: %v", err)
	}
	s.Close()
}

// TestStopStartKeepsKeysAndClients stops the server completely and starts
// it again on the same file.
func TestStopStartKeepsKeysAndClients(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	src := "oauth2_server {\n issuer https://mcp.example.com\n resource https://mcp.example.com/mcp\n storage " + path + "\n}"

	ctx, cancel := newConfigContext(t)
	h, err := load(t, ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	token, err := h.server.Keys().Sign("at+jwt", jwt.Claims{Subject: "alice", Issuer: "https://mcp.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.server.Store().PutClient(context.Background(), &storage.Client{ID: "survivor", Name: "Survivor", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	kid := h.server.Keys().KeyID()
	cancel()

	ctx, cancel = newConfigContext(t)
	defer cancel()
	h, err = load(t, ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if h.server.Keys().KeyID() != kid {
		t.Fatalf("kid %s after restart, want %s", h.server.Keys().KeyID(), kid)
	}
	if c, err := h.server.Store().GetClient(context.Background(), "survivor", time.Now()); err != nil || c.Name != "Survivor" {
		t.Fatalf("client after restart: %+v, %v", c, err)
	}

	// A token signed before the restart verifies against the JWKS served after it.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "https://mcp.example.com/.well-known/jwks.json", nil)
	if err := h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Headers[0].KeyID != kid || parsed.Headers[0].ExtraHeaders["typ"] != "at+jwt" {
		t.Fatalf("token header %+v", parsed.Headers[0])
	}
	keys := set.Key(kid)
	if len(keys) != 1 || !keys[0].IsPublic() {
		t.Fatalf("JWKS has %d public keys named %s", len(keys), kid)
	}
	var claims jwt.Claims
	if err := parsed.Claims(keys[0].Key, &claims); err != nil || claims.Subject != "alice" {
		t.Fatalf("verifying with the published key: %v", err)
	}
}

// TestUpgradeTakesClientCredentialsFromSelfRegisteredClients: a client
// that got client_credentials through open registration under an earlier
// release loses it when the server loads; one an operator created keeps
// it.
func TestUpgradeTakesClientCredentialsFromSelfRegisteredClients(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oauth.db")
	store, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	issuer := store.ForIssuer("https://mcp.example.com")
	for _, c := range []*storage.Client{
		{ID: "self", SecretHash: storage.Hash("s"), RegistrationTokenHash: storage.Hash("r"), GrantTypes: []string{"authorization_code", "client_credentials"}},
		{ID: "operator", SecretHash: storage.Hash("s"), GrantTypes: []string{"client_credentials"}},
	} {
		if err := issuer.PutClient(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()

	ctx, cancel := newConfigContext(t)
	defer cancel()
	h, err := load(t, ctx, "oauth2_server {\n issuer https://mcp.example.com\n resource https://mcp.example.com/mcp\n storage "+path+"\n}")
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"self": "authorization_code", "operator": "client_credentials"} {
		c, err := h.server.Store().GetClient(context.Background(), id, time.Now())
		if err != nil || strings.Join(c.GrantTypes, " ") != want {
			t.Errorf("%s after the upgrade: %+v, %v", id, c, err)
		}
	}
}

// writeJWKS writes a JWK Set of one key (kid k1) to a file.
func writeJWKS(t *testing.T, name string, key any) string {
	t.Helper()
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: "k1"}}})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, name, string(raw))
}
