package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPromptAndMaxAge: prompt=none never shows a page to a signed-in user
// (login_required, consent_required, with state and iss), prompt=login and
// max_age ask for a new sign-in, prompt=consent shows the consent page even
// when remembered, and unknown prompt values are ignored.
func TestPromptAndMaxAge(t *testing.T) {
	flowServer(t, dcr)
	query := func(extra map[string]string) string { return authorizeQuery(newPKCE(), extra) }
	redirected := func(name string, p page, wantError string) {
		t.Helper()
		loc := p.location()
		if p.resp.StatusCode != http.StatusFound || loc == nil || loc.Host != "client.test" || loc.Query().Get("error") != wantError ||
			loc.Query().Get("state") != "xyz" || loc.Query().Get("iss") != base {
			t.Errorf("%s: %d %v, want a redirect with error=%s", name, p.resp.StatusCode, p.resp.Header.Get("Location"), wantError)
		}
	}
	toSignIn := func(name string, p page) url.Values {
		t.Helper()
		loc := p.location()
		if p.resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != "/oauth/login" {
			t.Fatalf("%s: %d %v, want the sign-in page", name, p.resp.StatusCode, p.resp.Header)
		}
		back, _ := url.Parse(loc.Query().Get("return_to"))
		return back.Query()
	}

	// Not signed in: a Caddyfile client hears login_required; a client
	// anyone could have registered gets a page, never a redirect.
	anon := newBrowser(t)
	redirected("prompt=none, no session", anon.get(query(map[string]string{"prompt": "none"})), "login_required")
	_, reg := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`)
	if p := anon.get(query(map[string]string{"prompt": "none", "client_id": reg["client_id"].(string)})); p.resp.StatusCode != http.StatusBadRequest || p.resp.Header.Get("Location") != "" {
		t.Errorf("prompt=none, no session, registered client: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	redirected("prompt=none login", anon.get(query(map[string]string{"prompt": "none login"})), "invalid_request")
	redirected("max_age not a number", anon.get(query(map[string]string{"max_age": "soon"})), "invalid_request")

	b := signedIn(t)
	redirected("prompt=none, consent not given", b.get(query(map[string]string{"prompt": "none"})), "consent_required")
	codeFor(t, b, newPKCE(), nil) // consent given and remembered
	if p := b.get(query(map[string]string{"prompt": "none"})); p.location() == nil || p.location().Query().Get("code") == "" {
		t.Errorf("prompt=none, consent remembered: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	if p := b.get(query(map[string]string{"prompt": "select_account"})); p.location() == nil || p.location().Query().Get("code") == "" {
		t.Errorf("an unknown prompt value: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	if p := b.get(query(map[string]string{"prompt": "consent"})); p.resp.StatusCode != http.StatusOK || p.field("request_id") == "" {
		t.Errorf("prompt=consent, consent remembered: %d, want the consent page", p.resp.StatusCode)
	}

	// prompt=login: sign in again, then back to the request without it.
	back := toSignIn("prompt=login", b.get(query(map[string]string{"prompt": "login"})))
	if back.Has("prompt") || back.Get("client_id") != "pub1" {
		t.Errorf("return_to after prompt=login: %v", back)
	}
	redirected("prompt=none login: refused even when signed in", b.get(query(map[string]string{"prompt": "none login"})), "invalid_request")

	// max_age: a sign-in older than it asks for a new one; a younger one
	// does not; prompt=none with an old sign-in is login_required.
	if p := b.get(query(map[string]string{"max_age": "3600"})); p.location() == nil || p.location().Query().Get("code") == "" {
		t.Errorf("max_age=3600: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	time.Sleep(1100 * time.Millisecond)
	back = toSignIn("max_age=1", b.get(query(map[string]string{"max_age": "1"})))
	if back.Has("max_age") {
		t.Errorf("return_to after max_age: %v", back)
	}
	redirected("prompt=none, max_age passed", b.get(query(map[string]string{"prompt": "none", "max_age": "1"})), "login_required")
	b.signIn("alice", alicePassword)
	if p := b.get(query(map[string]string{"max_age": "1"})); p.location() == nil || !strings.Contains(p.location().RawQuery, "code=") {
		t.Errorf("max_age=1 right after signing in: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}
