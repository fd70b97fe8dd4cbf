package endpoints

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// withGrant adds a grant to the table for one test.
func withGrant(t *testing.T, g grantType) {
	t.Helper()
	saved := grantTypes
	grantTypes = append(slices.Clone(grantTypes), g)
	t.Cleanup(func() { grantTypes = saved })
}

// tokenCall posts form to the token endpoint with extra headers (name,
// value pairs).
func tokenCall(t *testing.T, s *Server, form url.Values, header ...string) (int, map[string]any, http.Header) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	s.token(w, r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%d: not JSON: %q", w.Code, w.Body.String())
	}
	return w.Code, out, w.Header()
}

// TestGrantTableRow: one row is all a grant needs to be dispatched,
// advertised and registrable, only when it is enabled; a grant with
// optional client authentication gets no client when the request names
// none, and a verified one when it does.
func TestGrantTableRow(t *testing.T) {
	const echo = "urn:test:echo"
	withGrant(t, grantType{
		name:               echo,
		clientAuthOptional: true,
		enabled:            func(c *Config) bool { return c.ResourceName == "echo" },
		handle: func(s *tokenEndpoints, w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values) {
			id := "(none)"
			if client != nil {
				id = client.ID
			}
			writeJSON(w, http.StatusOK, map[string]string{"client": id})
		},
	})
	for _, enabled := range []bool{true, false} {
		s := newTestServer(t, func(c *Config) {
			c.Clients.DynamicRegistration = true
			if enabled {
				c.ResourceName = "echo"
			}
		})
		if got := slices.Contains(s.grants.names(), echo); got != enabled {
			t.Errorf("enabled %v: offered %v", enabled, got)
		}
		doc, _ := s.authorizationServerMetadata()
		var md authorizationServer
		json.Unmarshal(doc, &md)
		if got := slices.Contains(md.GrantTypesSupported, echo); got != enabled {
			t.Errorf("enabled %v: grant_types_supported %v", enabled, md.GrantTypesSupported)
		}
		status, out := registerRaw(t, s, `{"redirect_uris":["https://c.test/cb"],"grant_types":["authorization_code","`+echo+`"],"token_endpoint_auth_method":"none"}`, "")
		if (status == http.StatusCreated) != enabled {
			t.Errorf("enabled %v: registration %d %v", enabled, status, out)
		}

		form := url.Values{"grant_type": {echo}}
		if !enabled {
			form.Set("client_id", "pub1")
			if status, out, _ = tokenCall(t, s, form); status != http.StatusBadRequest || out["error"] != "unsupported_grant_type" {
				t.Errorf("disabled: %d %v", status, out)
			}
			continue
		}
		status, out, _ = tokenCall(t, s, form)
		if status != http.StatusOK || out["client"] != "(none)" {
			t.Errorf("no client authentication: %d %v", status, out)
		}
		form.Set("client_id", "pub1")
		if status, out, _ = tokenCall(t, s, form); status != http.StatusOK || out["client"] != "pub1" {
			t.Errorf("a public client: %d %v", status, out)
		}
		form.Set("client_secret", "guess")
		if status, out, _ = tokenCall(t, s, form); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
			t.Errorf("a public client with a secret: %d %v", status, out)
		}
	}
}

// TestClientAuthenticationMethods: the method a request carries is found
// in the table and checked against the kind of credential the client
// registered; a client_id sent as a Basic user name with an empty password
// (golang.org/x/oauth2's header style) is a public client's none.
func TestClientAuthenticationMethods(t *testing.T) {
	const secret = "machine-secret-0123456789"
	s := newTestServer(t, func(c *Config) {
		c.Clients.Static = append(c.Clients.Static,
			storage.Client{ID: "m", SecretHash: storage.Hash(secret), GrantTypes: []string{grantClientCredentials}},
			storage.Client{ID: "postonly", SecretHash: storage.Hash(secret), GrantTypes: []string{grantClientCredentials}, TokenEndpointAuthMethod: "client_secret_post"})
	})
	basic := func(id, secret string) string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		return r.Header.Get("Authorization")
	}
	const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	for _, tc := range []struct {
		name   string
		form   url.Values
		auth   string
		status int
		code   string
	}{
		{"public, client_id", url.Values{"client_id": {"pub1"}}, "", http.StatusBadRequest, "unauthorized_client"},
		{"public, Basic without a password", url.Values{}, basic("pub1", ""), http.StatusBadRequest, "unauthorized_client"},
		{"public, a secret", url.Values{"client_id": {"pub1"}, "client_secret": {"x"}}, "", http.StatusUnauthorized, "invalid_client"},
		{"public, an assertion", url.Values{"client_id": {"pub1"}, "client_assertion_type": {assertionType}, "client_assertion": {"a.b.c"}}, "", http.StatusUnauthorized, "invalid_client"},
		{"secret, Basic", url.Values{}, basic("m", secret), http.StatusOK, ""},
		{"secret, post", url.Values{"client_id": {"m"}, "client_secret": {secret}}, "", http.StatusOK, ""},
		{"secret, Basic without a password", url.Values{}, basic("m", ""), http.StatusUnauthorized, "invalid_client"},
		{"secret, client_id alone", url.Values{"client_id": {"m"}}, "", http.StatusUnauthorized, "invalid_client"},
		{"secret, wrong secret", url.Values{"client_id": {"m"}, "client_secret": {"guess"}}, "", http.StatusUnauthorized, "invalid_client"},
		{"secret, an assertion", url.Values{"client_id": {"m"}, "client_assertion_type": {assertionType}, "client_assertion": {"a.b.c"}}, "", http.StatusUnauthorized, "invalid_client"},
		{"pinned post, post", url.Values{"client_id": {"postonly"}, "client_secret": {secret}}, "", http.StatusOK, ""},
		{"pinned post, Basic", url.Values{}, basic("postonly", secret), http.StatusUnauthorized, "invalid_client"},
		{"Basic and post", url.Values{"client_secret": {secret}}, basic("m", secret), http.StatusBadRequest, "invalid_request"},
		{"Basic without a password and post", url.Values{"client_id": {"m"}, "client_secret": {secret}}, basic("m", ""), http.StatusBadRequest, "invalid_request"},
		{"post and an assertion", url.Values{"client_id": {"m"}, "client_secret": {secret}, "client_assertion": {"a.b.c"}}, "", http.StatusBadRequest, "invalid_request"},
		{"Basic for another client_id", url.Values{"client_id": {"pub1"}}, basic("m", secret), http.StatusUnauthorized, "invalid_client"},
		{"malformed Basic", url.Values{}, "Basic " + "bSUzOnNlY3JldA==", http.StatusUnauthorized, "invalid_client"}, // m%3:secret
		{"nobody", url.Values{}, "", http.StatusUnauthorized, "invalid_client"},
	} {
		form := tc.form
		grant := "client_credentials"
		if form.Get("client_id") == "pub1" || strings.HasPrefix(tc.name, "public") {
			grant = "refresh_token" // a public client's request that gets past authentication: pub1 may not refresh
			form.Set("refresh_token", "unknown")
		}
		form.Set("grant_type", grant)
		var header []string
		if tc.auth != "" {
			header = []string{"Authorization", tc.auth}
		}
		status, out, h := tokenCall(t, s, form, header...)
		if status != tc.status || tc.code != "" && out["error"] != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, out, tc.status, tc.code)
		}
		if wantChallenge := tc.auth != "" && status == http.StatusUnauthorized; (h.Get("WWW-Authenticate") != "") != wantChallenge {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, h.Get("WWW-Authenticate"))
		}
	}
}

// TestMetadataListsFromTables: the discovery document's grant and
// client authentication lists are the tables'.
func TestMetadataListsFromTables(t *testing.T) {
	s := newTestServer(t)
	doc, _ := s.authorizationServerMetadata()
	var md map[string]any
	json.Unmarshal(doc, &md)
	for field, want := range map[string]string{
		"grant_types_supported":                            `["authorization_code","refresh_token","client_credentials"]`,
		"token_endpoint_auth_methods_supported":            `["none","client_secret_basic","client_secret_post","private_key_jwt"]`,
		"revocation_endpoint_auth_methods_supported":       `["none","client_secret_basic","client_secret_post","private_key_jwt"]`,
		"introspection_endpoint_auth_methods_supported":    `["client_secret_basic","client_secret_post","private_key_jwt"]`,
		"token_endpoint_auth_signing_alg_values_supported": `["RS256","PS256","ES256","EdDSA"]`,
	} {
		if got, _ := json.Marshal(md[field]); string(got) != want {
			t.Errorf("%s: %s, want %s", field, got, want)
		}
	}
}
