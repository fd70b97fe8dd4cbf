package endpoints

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRegistration posts arbitrary JSON to the registration endpoint: the
// answer is 201 with metadata this server accepts, or a 400 with an RFC
// 7591 error; never a 500 or a panic.
func FuzzRegistration(f *testing.F) {
	f.Add(`{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"client_secret_post"}`)
	f.Add(`{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","http://localhost:8787/callback"],"token_endpoint_auth_method":"none","application_type":"native"}`)
	f.Add(`{"redirect_uris":["javascript:alert(1)"]}`)
	f.Add(`{"redirect_uris":"x","grant_types":[1]}`)
	s := newTestServer(f, func(c *Config) { c.Clients.DynamicRegistration = true; c.Clients.UnusedClientTTL = 3600e9 })
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/register", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.register(w, r)
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%d: not JSON: %q", w.Code, w.Body.String())
		}
		switch w.Code {
		case http.StatusCreated:
			uris, _ := out["redirect_uris"].([]any)
			if len(uris) == 0 {
				t.Fatalf("registered without redirect URIs: %v", out)
			}
			for _, u := range uris {
				if err := ValidateRedirectURI(u.(string)); err != nil {
					t.Fatalf("registered a bad redirect URI %q: %v", u, err)
				}
			}
		case http.StatusBadRequest:
			if code := out["error"]; code != "invalid_client_metadata" && code != "invalid_redirect_uri" {
				t.Fatalf("error code %v", code)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
	})
}

// FuzzValidateRedirectURI: an accepted redirect URI is https with a host,
// http on a loopback host, or a private-use scheme; never a script-bearing
// scheme, a fragment, userinfo or a wildcard.
func FuzzValidateRedirectURI(f *testing.F) {
	for _, s := range []string{"https://claude.ai/api/mcp/auth_callback", "http://127.0.0.1:33418/", "cursor://anysphere.cursor-mcp/oauth/callback",
		"JavaScript:alert(1)", "data:text/html,x", "http://evil.test/cb", "https://a.test/cb#f", "https://u@a.test/", "java%73cript:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if ValidateRedirectURI(raw) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted unparsable %q", raw)
		}
		scheme := strings.ToLower(u.Scheme)
		switch {
		case strings.ContainsAny(raw, "#*") || u.User != nil:
			t.Fatalf("accepted %q with a fragment, wildcard or userinfo", raw)
		case scheme == "http" && !IsLoopbackHost(u.Hostname()):
			t.Fatalf("accepted plain http to %q", u.Hostname())
		case scheme == "https" && u.Host == "":
			t.Fatalf("accepted https without a host: %q", raw)
		}
		for _, bad := range []string{"javascript", "data", "file", "blob", "vbscript"} {
			if scheme == bad {
				t.Fatalf("accepted scheme %s", scheme)
			}
		}
	})
}
