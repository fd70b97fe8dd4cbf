package endpoints

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc.def-_~+/=": "abc.def-_~+/=",
		"bearer abc":           "abc",
		"BEARER   abc":         "abc",
		"Basic YWxpY2U6eA==":   "",
		"Bearer":               "error",
		"Bearer ":              "error",
		"Bearer a b":           "error",
		"Bearer a\tb":          "error",
		"Bearer ==":            "error",
		"Bearer abc==":         "abc==",
		"Bearer a=b":           "error",
		"Bearerabc":            "",
		"Bearer \u00e9":        "error",
		"Bearer <script>":      "error",
		"Bearer abc\r\nX-Y: z": "error",
	} {
		h := http.Header{}
		h.Set("Authorization", header)
		got, err := bearerToken(h)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("bearerToken(%q) = %q, want %q", header, got, want)
		}
	}
}

// FuzzBearerToken: whatever the Authorization header, the parser returns
// a syntactically valid b64token, nothing, or an error.
func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer abc")
	f.Add("bearer   a.b.c")
	f.Add("Basic x")
	f.Fuzz(func(t *testing.T, header string) {
		h := http.Header{"Authorization": {header}}
		token, err := bearerToken(h)
		if err != nil || token == "" {
			return
		}
		if !validTokenSyntax(token) || strings.ContainsAny(token, " \t\r\n") {
			t.Fatalf("returned %q for %q", token, header)
		}
		if scheme, _, _ := strings.Cut(strings.TrimSpace(header), " "); !strings.EqualFold(scheme, "Bearer") {
			t.Fatalf("returned a token for scheme %q", scheme)
		}
	})
}

// guardRequest is a request as Caddy hands it to the handler.
func guardRequest(token string) (*httptest.ResponseRecorder, *http.Request) {
	r := httptest.NewRequest(http.MethodGet, "https://auth.test/mcp/tools", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	return w, caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
}

var okNext = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
})

func benchToken(b *testing.B, s *Server, i int) string {
	at, err := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return at.token
}

// statusWriter is a ResponseWriter that keeps only the status.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header         { return w.h }
func (w *statusWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *statusWriter) WriteHeader(code int)        { w.code = code }

// benchGuard times Guard alone: one prepared request, its Authorization
// header put back before each call (the guard removes it).
func benchGuard(b *testing.B, s *Server, tokens []string) {
	_, r := guardRequest(tokens[0])
	w := &statusWriter{h: http.Header{}}
	auth := make([][]string, len(tokens))
	for i, t := range tokens {
		auth[i] = []string{"Bearer " + t}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Header["Authorization"] = auth[i%len(auth)]
		w.code = 0
		s.Guard(w, r, okNext)
		if w.code != http.StatusNoContent {
			b.Fatalf("guard: %d", w.code)
		}
	}
}

// Guard benchmarks (ES256, real bbolt file):
//
//	go test ./endpoints -run '^$' -bench Guard -benchmem
func BenchmarkGuardCachedToken(b *testing.B) {
	s := benchServer(b)
	benchGuard(b, s, []string{benchToken(b, s, 0)})
}

func BenchmarkGuardUncachedToken(b *testing.B) {
	s := benchServer(b)
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = benchToken(b, s, i)
	}
	benchGuard(b, s, tokens)
}

// TestGuardCacheDropsRevoked: a cached token that is revoked is refused
// and leaves the cache.
func TestGuardCacheDropsRevoked(t *testing.T) {
	s := newTestServer(t)
	at, err := s.mintAccessToken("jti-1", grant{clientID: "pub1", subject: "alice", resource: "https://auth.test/mcp"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w, r := guardRequest(at.token)
	s.Guard(w, r, okNext)
	if w.Code != http.StatusNoContent || s.tokens.len() != 1 {
		t.Fatalf("first use: %d, %d cached: %s", w.Code, s.tokens.len(), w.Body)
	}
	if err := s.cfg.Storage.Store.RevokeAccessToken(r.Context(), "jti-1", at.expiresAt); err != nil {
		t.Fatal(err)
	}
	w, r = guardRequest(at.token)
	s.Guard(w, r, okNext)
	if w.Code != http.StatusUnauthorized || s.tokens.len() != 0 {
		t.Fatalf("after revocation: %d, %d cached", w.Code, s.tokens.len())
	}
}

// headerCredential is a guard credential for TestGuardCredentialSeam: an
// X-Test-User header names the user of a prepared token.
type headerCredential struct{ s *Server }

func (headerCredential) read(r *http.Request) (string, error) {
	return r.Header.Get("X-Test-User"), nil
}

func (h headerCredential) authenticate(_ context.Context, _ *http.Request, user string) (principal, error) {
	if user == "mallory" {
		return principal{}, errTokenRevoked
	}
	c := &accessTokenClaims{Claims: jwt.Claims{Subject: user, Audience: jwt.Audience{"https://auth.test/mcp"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		ClientID: "pub1", Scope: "mcp:read"}
	c.prepare(h.s.scopes)
	return principal{scheme: "Test", token: c}, nil
}

func (headerCredential) challenge(params string) string { return "Test " + params }

// TestGuardCredentialSeam: a credential added beside Bearer authenticates
// requests through the same steps (audience, scopes, placeholders) and its
// challenge is offered with Bearer's, its refusals answered as Bearer's are.
func TestGuardCredentialSeam(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.Guard.RequireScope = []ScopeRule{{Paths: caddyhttp.MatchPath{"/mcp/admin"}, Scopes: []string{"mcp:write"}}}
	})
	s.credentials = append(s.credentials, headerCredential{s})
	serve := func(path, user string) (*httptest.ResponseRecorder, string) {
		w, r := guardRequest("")
		r.Header.Del("Authorization")
		r.URL.Path = path
		if user != "" {
			r.Header.Set("X-Test-User", user)
		}
		seen := ""
		s.Guard(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll("{http.auth.user.id}", "")
			w.WriteHeader(http.StatusNoContent)
			return nil
		}))
		return w, seen
	}
	const params = `resource_metadata="https://auth.test/.well-known/oauth-protected-resource/mcp"`
	w, _ := serve("/mcp/tools", "")
	if got := w.Header().Values("WWW-Authenticate"); w.Code != http.StatusUnauthorized || len(got) != 3 || got[0] != "Bearer "+params ||
		got[1] != "DPoP "+params+`, algs="ES256 EdDSA RS256 PS256"` || got[2] != "Test "+params {
		t.Fatalf("no credential: %d %q", w.Code, got)
	}
	if w, seen := serve("/mcp/tools", "alice"); w.Code != http.StatusNoContent || seen != "alice" {
		t.Fatalf("the test credential: %d, user %q", w.Code, seen)
	}
	w, _ = serve("/mcp/tools", "mallory")
	// The error is the challenge of the credential the request used.
	if got := w.Header().Values("WWW-Authenticate"); w.Code != http.StatusUnauthorized || len(got) != 3 || got[0] != "Bearer "+params ||
		got[2] != "Test "+params+`, error="invalid_token", error_description="the access token has been revoked"` {
		t.Fatalf("a refused credential: %d %q", w.Code, got)
	}
	if w, _ := serve("/mcp/admin", "alice"); w.Code != http.StatusForbidden {
		t.Fatalf("a scope the principal lacks: %d", w.Code)
	}
}
