package endpoints

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzParseAuthorizeRequest: any query either validates into a request
// that only names registered redirect URIs, configured resources and
// catalogue scopes, or is refused the right way: an error page until the
// client and redirect URI are known, a redirect after.
func FuzzParseAuthorizeRequest(f *testing.F) {
	f.Add("response_type=code&client_id=pub1&redirect_uri=https%3A%2F%2Fclient.test%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=x&scope=mcp%3Aread&resource=https%3A%2F%2Fauth.test%2Fmcp")
	s := newTestServer(f)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, aerr := s.parseAuthorizeRequest(context.Background(), q)
		if aerr != nil {
			if !aerr.page && (req == nil || !matchRedirectURI(req.client.RedirectURIs, req.redirectURI)) {
				t.Fatalf("error %v would be redirected to an unregistered URI", aerr)
			}
			if !aerr.page && len(req.state) > maxStateLength {
				t.Fatal("an oversized state would be echoed")
			}
			return
		}
		if !matchRedirectURI(req.client.RedirectURIs, req.redirectURI) {
			t.Fatalf("accepted unregistered redirect_uri %q", req.redirectURI)
		}
		if !validChallenge(req.challenge) {
			t.Fatalf("accepted challenge %q", req.challenge)
		}
		if !slices.Contains(s.cfg.Resources, req.resource) {
			t.Fatalf("accepted resource %q", req.resource)
		}
		for _, sc := range splitScope(req.scope) {
			if !slices.Contains(s.cfg.Scopes, sc) {
				t.Fatalf("accepted scope %q", sc)
			}
		}
		if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" {
			t.Fatal("accepted a request without response_type=code and S256")
		}
	})
}

// FuzzMatchRedirectURI: a match is either the exact string or an http
// loopback URI that differs from the registered one in its port only.
func FuzzMatchRedirectURI(f *testing.F) {
	f.Add("http://127.0.0.1/callback", "http://127.0.0.1:51000/callback")
	f.Add("https://client.test/cb", "https://client.test/cb")
	f.Add("cursor://anysphere.cursor-mcp/oauth/callback", "cursor://anysphere.cursor-mcp/oauth/callback")
	f.Fuzz(func(t *testing.T, registered, presented string) {
		if !matchRedirectURI([]string{registered}, presented) || registered == presented {
			return
		}
		r, err1 := url.Parse(registered)
		p, err2 := url.Parse(presented)
		if err1 != nil || err2 != nil {
			t.Fatal("matched an unparsable URI")
		}
		if p.Scheme != "http" || r.Scheme != "http" || !isLoopbackHostname(p.Hostname()) || p.Hostname() != r.Hostname() {
			t.Fatalf("%q matched %q without being the same http loopback host", presented, registered)
		}
		if p.User != nil || strings.Contains(presented, "#") || p.EscapedPath() != r.EscapedPath() || p.RawQuery != r.RawQuery {
			t.Fatalf("%q matched %q with a different path, query, fragment or userinfo", presented, registered)
		}
	})
}
