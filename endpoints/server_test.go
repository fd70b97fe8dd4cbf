package endpoints

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

// newTestServer is a Server on a real bbolt file with a few static clients.
func newTestServer(t testing.TB, mutate ...func(*Config)) *Server {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := NewHMACKeySet([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Issuer:        "https://auth.test",
		Resources:     []string{"https://auth.test/mcp", "https://auth.test"},
		Scopes:        []string{"mcp:read", "mcp:write"},
		EnforceScopes: true,
		Tokens:        TokenConfig{AccessTokenLifetime: time.Hour, AuthorizationCodeLifetime: 10 * time.Minute},
		Clients: ClientConfig{Static: []storage.Client{
			{ID: "pub1", RedirectURIs: []string{"https://client.test/cb"}},
			{ID: "nat", RedirectURIs: []string{"http://127.0.0.1/callback", "http://[::1]/cb", "http://localhost/cb", "cursor://anysphere.cursor-mcp/oauth/callback"}},
			{ID: "multi", RedirectURIs: []string{"https://m.test/a", "https://m.test/b?x=1"}, Scope: "mcp:read"},
		}},
		SignIn:      SignInConfig{Users: map[string]string{}, SessionLifetime: 12 * time.Hour},
		RootAliases: true,
		Storage:     StorageConfig{Store: store.ForIssuer("https://auth.test")},
		Signing:     SigningConfig{Keys: keys},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestMatchRedirectURI(t *testing.T) {
	reg := []string{"https://client.test/cb", "http://127.0.0.1/callback", "http://[::1]:8080/cb?a=1", "http://localhost/cb", "cursor://anysphere.cursor-mcp/oauth/callback"}
	for presented, want := range map[string]bool{
		"https://client.test/cb":                        true,
		"https://client.test/cb/":                       false,
		"https://client.test:443/cb":                    false,
		"https://client.test/cb?x=1":                    false,
		"https://client.test/cb#f":                      false,
		"http://client.test/cb":                         false,
		"http://127.0.0.1/callback":                     true,
		"http://127.0.0.1:51000/callback":               true,
		"http://127.0.0.1:51000/callback?x":             false,
		"http://127.0.0.1:51000/other":                  false,
		"http://127.0.0.1:51000/callback#frag":          false,
		"http://user@127.0.0.1:51000/callback":          false,
		"https://127.0.0.1:51000/callback":              false,
		"http://127.0.0.2:51000/callback":               false,
		"http://[::1]:9999/cb?a=1":                      true,
		"http://[::1]:9999/cb":                          false,
		"http://localhost:3000/cb":                      true,
		"http://LOCALHOST:3000/cb":                      false,
		"http://127.0.0.1:abc/callback":                 false,
		"cursor://anysphere.cursor-mcp/oauth/callback":  true,
		"cursor://anysphere.cursor-mcp/oauth/callback2": false,
		"CURSOR://anysphere.cursor-mcp/oauth/callback":  false,
	} {
		if got := matchRedirectURI(reg, presented); got != want {
			t.Errorf("matchRedirectURI(%q) = %v, want %v", presented, got, want)
		}
	}
}

func TestWithParams(t *testing.T) {
	for redirect, want := range map[string]string{
		"https://c.test/cb":         "https://c.test/cb?code=x&state=y",
		"https://c.test/cb?t=1":     "https://c.test/cb?t=1&code=x&state=y",
		"https://c.test/cb?":        "https://c.test/cb?code=x&state=y",
		"cursor://a.b/oauth/cb?t=1": "cursor://a.b/oauth/cb?t=1&code=x&state=y",
	} {
		if got := withParams(redirect, map[string][]string{"code": {"x"}, "state": {"y"}}); got != want {
			t.Errorf("withParams(%q) = %q, want %q", redirect, got, want)
		}
	}
}

func TestPKCE(t *testing.T) {
	// RFC 7636 appendix B.
	verifier, challenge := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if !validChallenge(challenge) || !verifyPKCE(verifier, challenge) {
		t.Fatal("RFC 7636 example refused")
	}
	for _, v := range []string{"", verifier[:42], verifier + "!", strings.Repeat("a", 129), "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"} {
		if verifyPKCE(v, challenge) {
			t.Errorf("verifier %q accepted", v)
		}
	}
	for _, c := range []string{"", challenge[:42], challenge + "A", strings.Repeat("*", 43)} {
		if validChallenge(c) {
			t.Errorf("challenge %q accepted", c)
		}
	}
}

// TestSessionCookieOnHTTPS: on https the session and CSRF cookies carry
// the __Host- prefix and Secure.
func TestSessionCookieOnHTTPS(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.SignIn.Users = map[string]string{"alice": "$2a$04$abcdefghijklmnopqrstuu5YMbOVF2AMMB7NYVkQVbRQ8jIe3R1ZW"}
	})
	r := httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/login", nil)
	w := httptest.NewRecorder()
	s.login(w, r)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "__Host-oauth2_login_csrf" || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].Path != "/" || cookies[0].Domain != "" {
		t.Fatalf("cookies on https: %+v", cookies)
	}
	r = httptest.NewRequest(http.MethodGet, "http://localhost/oauth/login", nil)
	w = httptest.NewRecorder()
	s.login(w, r)
	if c := w.Result().Cookies(); len(c) != 1 || c[0].Name != "oauth2_login_csrf" || c[0].Secure {
		t.Fatalf("cookies on http: %+v", c)
	}
}

// TestCustomTemplates: an operator's login.html replaces the built-in one;
// the others stay.
func TestCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "login.html"), []byte(`{{template "head" .}}<p>ACME sign-in</p><input name="csrf_token" value="{{.CSRF}}">{{template "foot" .}}`), 0o644)
	s := newTestServer(t, func(c *Config) { c.SignIn.TemplatesDir = dir; c.SignIn.Users = map[string]string{"a": "x"} })
	w := httptest.NewRecorder()
	s.login(w, httptest.NewRequest(http.MethodGet, "http://localhost/oauth/login", nil))
	if !strings.Contains(w.Body.String(), "ACME sign-in") || !strings.Contains(w.Body.String(), "<title>Sign in</title>") {
		t.Fatalf("custom login page: %s", w.Body.String())
	}
	w = httptest.NewRecorder()
	s.renderError(w, 400, "Oops", "it broke")
	if !strings.Contains(w.Body.String(), "it broke") {
		t.Fatal("the built-in error page is gone")
	}

	os.WriteFile(filepath.Join(dir, "consent.html"), []byte(`{{.Nope`), 0o644)
	_, err := loadPages(&core{}, dir)
	if err == nil || !strings.Contains(err.Error(), "parsing template consent.html") {
		t.Fatalf("a broken template: %v", err)
	}
}

func TestRedirectHost(t *testing.T) {
	for uri, want := range map[string]string{
		"https://claude.ai/api/mcp/auth_callback":      "claude.ai",
		"http://127.0.0.1:33418/":                      "127.0.0.1:33418",
		"cursor://anysphere.cursor-mcp/oauth/callback": "cursor://anysphere.cursor-mcp",
		"com.example.app:/oauth":                       "com.example.app:",
	} {
		if got := redirectHost(uri); got != want {
			t.Errorf("redirectHost(%q) = %q, want %q", uri, got, want)
		}
	}
}

// TestParseFormContentTypes: a form is read under its media type however
// it is spelled or parameterised, and nothing else is read as one.
func TestParseFormContentTypes(t *testing.T) {
	s := newTestServer(t)
	for ct, want := range map[string]bool{
		"application/x-www-form-urlencoded":                                  true,
		"application/x-www-form-urlencoded; charset=UTF-8":                   true,
		"Application/X-WWW-Form-Urlencoded":                                  true,
		"application/x-www-form-urlencoded; charset":                         false, // malformed
		"application/json":                                                   false,
		"multipart/form-data; boundary=x":                                    false,
		"application/json, application/x-www-form-urlencoded":                true, // the MCP SDK in a browser
		"application/x-www-form-urlencoded, multipart/form-data; boundary=x": false,
		"application/json, text/plain":                                       false,
		"":                                                                   false,
	} {
		r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/token", strings.NewReader("grant_type=client_credentials"))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		form, ok := s.parseForm(httptest.NewRecorder(), r)
		if ok != want || ok && form.Get("grant_type") != "client_credentials" {
			t.Errorf("%q: read %v (%v), want %v", ct, ok, form, want)
		}
	}
}
