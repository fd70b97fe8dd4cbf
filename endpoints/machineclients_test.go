package endpoints

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// registerRaw posts a registration body, with an initial access token
// when iat is not empty.
func registerRaw(t *testing.T, s *Server, body, iat string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/register", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if iat != "" {
		r.Header.Set("Authorization", "Bearer "+iat)
	}
	w := httptest.NewRecorder()
	s.register(w, r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%d: not JSON: %q", w.Code, w.Body.String())
	}
	return w.Code, out
}

// machineToken asks for a client_credentials token with Basic credentials.
func machineToken(t *testing.T, s *Server, id, secret string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/token", strings.NewReader("grant_type=client_credentials"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	w := httptest.NewRecorder()
	s.token(w, r)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

const machineRegistration = `{"redirect_uris":["https://c.test/cb"],"grant_types":["authorization_code","client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}`

// TestSelfRegisteredClientNeverActsAlone: open registration asking for
// client_credentials is refused naming the grant; so is registration with
// the initial access token unless the operator allows it; with both, the
// client gets its machine tokens.
func TestSelfRegisteredClientNeverActsAlone(t *testing.T) {
	const iat = "initial-access-token-0123456789"
	for _, tc := range []struct {
		name       string
		iat, sent  string
		allow      bool
		wantStatus int
	}{
		{"open registration", "", "", false, http.StatusBadRequest},
		{"open registration, allowed with a token nobody needs", "", "", true, http.StatusBadRequest},
		{"initial access token, not allowed", iat, iat, false, http.StatusBadRequest},
		{"initial access token, allowed", iat, iat, true, http.StatusCreated},
	} {
		s := newTestServer(t, func(c *Config) {
			c.Clients.DynamicRegistration, c.Clients.UnusedClientTTL = true, time.Hour
			c.Clients.InitialAccessToken = tc.iat
			c.Clients.RegisteredClientCredentials = tc.allow && tc.iat != ""
		})
		status, out := registerRaw(t, s, machineRegistration, tc.sent)
		if status != tc.wantStatus {
			t.Fatalf("%s: %d %v", tc.name, status, out)
		}
		if status == http.StatusBadRequest {
			if out["error"] != "invalid_client_metadata" || out["error_description"] != "grant_type client_credentials is not available to clients that register themselves; an operator creates machine clients" {
				t.Errorf("%s: %v", tc.name, out)
			}
			continue
		}
		if status, tok := machineToken(t, s, out["client_id"].(string), out["client_secret"].(string)); status != http.StatusOK || tok["access_token"] == nil {
			t.Errorf("%s: client_credentials: %d %v", tc.name, status, tok)
		}
	}
}

// TestStoredSelfRegisteredMachineClient: a client that got
// client_credentials through open registration before the rule existed is
// refused at the token endpoint, and loses the grant at the upgrade;
// clients an operator created keep it.
func TestStoredSelfRegisteredMachineClient(t *testing.T) {
	ctx := context.Background()
	s := newTestServer(t, func(c *Config) { c.Clients.DynamicRegistration = true })
	secret := "a-secret-0123456789-0123456789"
	grants := []string{"authorization_code", "client_credentials"}
	for _, c := range []*storage.Client{
		// Written by an earlier release: no origin, a registration token.
		{ID: "legacy-registered", SecretHash: storage.Hash(secret), RegistrationTokenHash: storage.Hash("rat"), GrantTypes: grants, RedirectURIs: []string{"https://c.test/cb"}},
		{ID: "registered-with-token", SecretHash: storage.Hash(secret), RegistrationTokenHash: storage.Hash("rat"), GrantTypes: grants, RedirectURIs: []string{"https://c.test/cb"},
			Origin: storage.OriginRegistered, RegisteredWithToken: true},
		// Created through the admin API by an earlier release.
		{ID: "legacy-admin", SecretHash: storage.Hash(secret), GrantTypes: []string{"client_credentials"}},
		{ID: "admin", SecretHash: storage.Hash(secret), GrantTypes: []string{"client_credentials"}, Origin: storage.OriginAdmin},
	} {
		if err := s.cfg.Storage.Store.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{"legacy-registered": 400, "registered-with-token": 400, "legacy-admin": 200, "admin": 200}
	for id, status := range want {
		got, out := machineToken(t, s, id, secret)
		if got != status || status == 400 && (out["error"] != "unauthorized_client" || out["error_description"] != "this client may not use client_credentials") {
			t.Errorf("%s before the upgrade: %d %v", id, got, out)
		}
	}
	n, err := s.DropUntrustedMachineGrants(ctx)
	if err != nil || n != 2 {
		t.Fatalf("upgrade: %d, %v", n, err)
	}
	for id, status := range want {
		c, err := s.cfg.Storage.Store.GetClient(ctx, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if has := slices.Contains(c.GrantTypes, "client_credentials"); has != (status == 200) {
			t.Errorf("%s after the upgrade: grant_types %v", id, c.GrantTypes)
		}
	}
	if n, err := s.DropUntrustedMachineGrants(ctx); err != nil || n != 0 {
		t.Fatalf("second upgrade: %d, %v", n, err)
	}
}

// TestMetadataDocumentNeverActsAlone: client_credentials in a metadata
// document is dropped; a document asking for nothing else is refused.
func TestMetadataDocumentNeverActsAlone(t *testing.T) {
	s := newTestServer(t)
	const id = "https://agent.test/client.json"
	doc := func(grants string) []byte {
		return []byte(`{"client_id":"` + id + `","client_name":"Agent","redirect_uris":["https://agent.test/cb"],"grant_types":` + grants + `,"token_endpoint_auth_method":"none"}`)
	}
	c, err := s.clientFromDocument(id, doc(`["authorization_code","refresh_token","client_credentials"]`), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.GrantTypes, []string{"authorization_code", "refresh_token"}) || c.Origin != storage.OriginDocument {
		t.Fatalf("client %+v", c)
	}
	if _, err := s.clientFromDocument(id, doc(`["client_credentials"]`), time.Now()); err == nil ||
		err.Error() != "the metadata document asks only for client_credentials, which metadata-document clients never get" {
		t.Fatalf("a client_credentials-only document: %v", err)
	}
}
