package endpoints

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
	"github.com/go-jose/go-jose/v4"
)

// TestStorageDownAnswers503 closes the server's bbolt file under it (the
// storage failing, as a lost database does) and checks that every
// endpoint that needs it answers 503 with Retry-After and a JSON OAuth
// error or a page, never a 500 or a success, and that a token the guard
// has checked since the last revocation still passes (a memory read).
func TestStorageDownAnswers503(t *testing.T) {
	file, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, func(c *Config) {
		c.Storage.Store = file.ForIssuer(c.Issuer)
		c.Clients.DynamicRegistration = true
		c.Clients.Static = append(c.Clients.Static, storage.Client{ID: "rt", RedirectURIs: []string{"https://client.test/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}},
			storage.Client{ID: "kc", JWKS: publicSet(t, "ec"), GrantTypes: []string{grantClientCredentials}, TokenEndpointAuthMethod: "private_key_jwt"})
		c.Grants.WorkloadIssuers = []WorkloadIssuer{{Name: "cluster", Issuer: "https://kubernetes.default.svc", JWKS: publicSet(t, "rsa"),
			AllowClaims: []WorkloadClaimRule{{Claim: "sub", Values: []string{"system:serviceaccount:agents:*"}}}}}
	})
	ctx := context.Background()
	if err := s.cfg.Storage.Store.PutClient(ctx, &storage.Client{ID: "dyn", RedirectURIs: []string{"https://client.test/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}}); err != nil {
		t.Fatal(err)
	}
	cached, err := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", resource: "https://auth.test/mcp"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if w, r := guardRequest(cached.token); s.Guard(w, r, okNext) != nil || w.Code != http.StatusNoContent {
		t.Fatalf("guard before: %d", w.Code)
	}
	uncached, _ := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", resource: "https://auth.test/mcp"}, time.Now())
	file.Close()
	// Nothing was revoked since the guard checked it: a memory read.
	if w, r := guardRequest(cached.token); s.Guard(w, r, okNext) != nil || w.Code != http.StatusNoContent {
		t.Fatalf("guard, checked token: %d %s", w.Code, w.Body)
	}

	const body = `{"error":"temporarily_unavailable","error_description":"the authorization server cannot reach its storage; retry shortly"}`
	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "https://auth.test"+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		s.Route(path)(w, r)
		return w
	}
	check := func(name string, w *httptest.ResponseRecorder, want string) {
		t.Helper()
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "2" || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d Retry-After %q %s; want 503, 2, %s", name, w.Code, w.Header().Get("Retry-After"), w.Body, want)
		}
	}
	check("authorization_code", post("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"pub1"}, "code": {"c"}, "code_verifier": {"v"}}), body)
	check("refresh_token", post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"rt"}, "refresh_token": {"r"}}), body)
	check("client lookup", post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"dyn"}, "refresh_token": {"r"}}), body)
	check("revoke", post("/oauth/revoke", url.Values{"client_id": {"pub1"}, "token": {"r"}}), body)
	check("private_key_jwt", post("/oauth/token", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc")))), body)
	check("a workload token", post("/oauth/token", workloadForm(k8sToken(t))), body)
	check("revoke access token", post("/oauth/revoke", url.Values{"client_id": {"pub1"}, "token": {uncached.token}, "token_type_hint": {"access_token"}}), body)

	reg := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/register", strings.NewReader(`{"redirect_uris":["https://c.test/cb"],"token_endpoint_auth_method":"none"}`))
	reg.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.Route("/oauth/register")(w, reg)
	check("register", w, body)

	w = httptest.NewRecorder()
	s.Route("/oauth/authorize")(w, httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/authorize?response_type=code&client_id=dyn&code_challenge=abc&code_challenge_method=S256", nil))
	check("authorize", w, "Temporarily unavailable")

	w, r := guardRequest(uncached.token)
	s.Guard(w, r, okNext)
	check("guard, unchecked token", w, `{"error":"temporarily_unavailable","error_description":"the authorization server cannot tell whether the access token was revoked; retry shortly"}`)
	if w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("guard 503 carries a challenge: %q", w.Header().Get("WWW-Authenticate"))
	}
}

// TestGuardRefusesWhileNotSynced: a node that cannot confirm it knows
// every revocation refuses even a cached token with 503, and serves it
// again once synchronised.
func TestGuardRefusesWhileNotSynced(t *testing.T) {
	var synced atomic.Bool
	synced.Store(true)
	s := newTestServer(t, func(c *Config) { c.Storage.Synced = synced.Load })
	at, _ := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", resource: "https://auth.test/mcp"}, time.Now())
	for _, step := range []struct {
		synced bool
		want   int
	}{{true, http.StatusNoContent}, {false, http.StatusServiceUnavailable}, {true, http.StatusNoContent}} {
		synced.Store(step.synced)
		w, r := guardRequest(at.token)
		s.Guard(w, r, okNext)
		if w.Code != step.want {
			t.Fatalf("synced=%v: %d %s, want %d", step.synced, w.Code, w.Body, step.want)
		}
	}
}

// TestHealthPath answers 200 {"status":"ok"}, or 503 naming the reason.
func TestHealthPath(t *testing.T) {
	var pingErr atomic.Pointer[error]
	var synced atomic.Bool
	s := newTestServer(t, func(c *Config) {
		c.HealthPath = "/healthz"
		c.Storage.Synced = synced.Load
		c.Storage.Ping = func(context.Context) error {
			if p := pingErr.Load(); p != nil {
				return *p
			}
			return nil
		}
	})
	down := errors.New("connection refused")
	for _, tc := range []struct {
		ping   *error
		synced bool
		code   int
		body   string
	}{
		{nil, true, 200, `{"status":"ok"}`},
		{&down, true, 503, `{"status":"storage_unreachable"}`},
		{nil, false, 503, `{"status":"revocations_stale"}`},
	} {
		pingErr.Store(tc.ping)
		synced.Store(tc.synced)
		w := httptest.NewRecorder()
		s.Route("/healthz")(w, httptest.NewRequest(http.MethodGet, "https://auth.test/healthz", nil))
		if w.Code != tc.code || w.Body.String() != tc.body || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("ping %v synced %v: %d %s, want %d %s", tc.ping != nil, tc.synced, w.Code, w.Body, tc.code, tc.body)
		}
		if (tc.code == 503) != (w.Header().Get("Retry-After") == "2") {
			t.Errorf("Retry-After %q on %d", w.Header().Get("Retry-After"), w.Code)
		}
	}
	w := httptest.NewRecorder()
	s.Route("/healthz")(w, httptest.NewRequest(http.MethodPost, "https://auth.test/healthz", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

// answeringStore is a Store whose code lookups answer with err: a backend
// other than ours.
type answeringStore struct {
	storage.Store
	err error
}

func (a answeringStore) GetAuthorizationCode(context.Context, string, time.Time) (*storage.AuthorizationCode, error) {
	return nil, a.err
}

// TestOnlyMarkedFailuresAre503: a backend's answer (a code not found,
// wrapped, or in its own words) is 400 invalid_grant; only an error the
// backend marks as the storage failing is 503.
func TestOnlyMarkedFailuresAre503(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"a wrapped not found", fmt.Errorf("reading the code: %w", storage.ErrNotFound), http.StatusBadRequest, "invalid_grant"},
		{"an error the backend does not mark", errors.New("no such code in this backend's words"), http.StatusBadRequest, "invalid_grant"},
		{"a marked failure", storage.Unavailable(errors.New("connection refused")), http.StatusServiceUnavailable, "temporarily_unavailable"},
	} {
		s := newTestServer(t)
		s.cfg.Storage.Store = answeringStore{s.cfg.Storage.Store, tc.err}
		status, out, _ := tokenCall(t, s, url.Values{"grant_type": {"authorization_code"}, "client_id": {"pub1"}, "code": {"c"}, "code_verifier": {strings.Repeat("v", 43)}})
		if status != tc.status || out["error"] != tc.code {
			t.Errorf("%s: %d %v", tc.name, status, out)
		}
	}
}
