package endpoints

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPublicAddress(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700:4700::1111": true, "::ffff:8.8.8.8": true, "2002:808:808::1": true,
		"127.0.0.1": false, "127.1.2.3": false, "10.1.2.3": false, "172.16.0.1": false, "172.31.255.255": false,
		"192.168.1.1": false, "169.254.169.254": false, "100.64.0.1": false, "100.127.255.255": false,
		"224.0.0.1": false, "239.255.255.250": false, "255.255.255.255": false, "0.0.0.0": false, "0.1.2.3": false,
		"192.0.2.1": false, "198.18.0.1": false, "240.0.0.1": false,
		"::1": false, "::": false, "fe80::1": false, "fc00::1": false, "fd12:3456::1": false, "ff02::1": false,
		"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:169.254.169.254": false, "::127.0.0.1": false,
		"64:ff9b::7f00:1": false, "64:ff9b::a00:1": false, "64:ff9b:1::a9fe:a9fe": false, "2002:7f00:1::1": false,
		"2002:a9fe:a9fe::1": false, "2001:0:4136:e378:8000:63bf:3fff:fdd2": false, "2001:db8::1": false,
	} {
		if got := publicAddress(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddress(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestCacheLifetime(t *testing.T) {
	for header, want := range map[string]time.Duration{
		"":                        time.Hour,
		"max-age=1":               5 * time.Minute,
		"public, max-age=600":     10 * time.Minute,
		"max-age=31536000":        24 * time.Hour,
		"no-store":                5 * time.Minute,
		"no-cache, max-age=3600":  5 * time.Minute,
		"max-age=banana":          time.Hour,
		`private, MAX-AGE="7200"`: 2 * time.Hour,
	} {
		if got := cacheLifetime(header); got != want {
			t.Errorf("cacheLifetime(%q) = %s, want %s", header, got, want)
		}
	}
}

// fixture serves metadata documents over TLS on loopback; the fetcher
// reaches it only through the explicit test allowance.
type fixture struct {
	srv   *httptest.Server
	hits  atomic.Int32
	pages map[string]func(w http.ResponseWriter, url string)
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{pages: map[string]func(http.ResponseWriter, string){}}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		page, ok := f.pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		page(w, f.srv.URL+r.URL.Path)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) document(path, cacheControl string, body func(id string) string) string {
	f.pages[path] = func(w http.ResponseWriter, id string) {
		w.Header().Set("Content-Type", "application/json")
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		fmt.Fprint(w, body(id))
	}
	return f.srv.URL + path
}

func cimdServer(t *testing.T, f *fixture) *Server {
	s := newTestServer(t, func(c *Config) {
		c.Clients.ClientIDMetadataDocuments = true
		c.Tokens.RefreshFamilyLifetime, c.Tokens.RefreshTokenLifetime = 24*time.Hour, time.Hour
	})
	pool := f.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	s.fetcher = newMetadataFetcher(map[string]bool{strings.TrimPrefix(f.srv.URL, "https://"): true}, pool)
	s.keySets = clientKeySets(s.fetcher.safeFetcher)
	return s
}

func goodDocument(id string) string {
	return `{"client_id":"` + id + `","client_name":"Example Agent","redirect_uris":["https://agent.test/callback"],` +
		`"token_endpoint_auth_methods_supported":["private_key_jwt","none"],"token_endpoint_auth_method":"private_key_jwt","grant_types":["authorization_code","refresh_token"]}`
}

func TestMetadataDocumentFetchAndCache(t *testing.T) {
	f := newFixture(t)
	s := cimdServer(t, f)
	ctx := context.Background()
	id := f.document("/agent.json", "max-age=600", goodDocument)

	c, err := s.resolveClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Example Agent" || c.TokenEndpointAuthMethod != "none" || len(c.SecretHash) != 0 || c.RedirectURIs[0] != "https://agent.test/callback" {
		t.Fatalf("client %+v", c)
	}
	// Cached: no second fetch; and the token endpoint finds it in storage
	// without fetching at all.
	if _, err := s.resolveClient(ctx, id); err != nil || f.hits.Load() != 1 {
		t.Fatalf("second resolve: %v, %d fetches", err, f.hits.Load())
	}
	f.srv.Close()
	if got, err := s.lookupClient(ctx, id); err != nil || got.ID != id {
		t.Fatalf("token-endpoint lookup: %+v %v", got, err)
	}
	if !strings.HasSuffix(documentHost(c), strings.TrimPrefix(f.srv.URL, "https://127.0.0.1")) {
		t.Fatalf("document host %q", documentHost(c))
	}
	// A stale cache entry is fetched again (and fails now the server is gone).
	s.fetcher.mu.Lock()
	s.fetcher.cache[id] = cachedClient{client: c, until: time.Now().Add(-time.Second)}
	s.fetcher.mu.Unlock()
	if _, err := s.resolveClient(ctx, id); err == nil {
		t.Fatal("a stale document was not refetched")
	}
}

func TestMetadataDocumentRefusals(t *testing.T) {
	f := newFixture(t)
	s := cimdServer(t, f)
	ctx := context.Background()
	docs := map[string]string{
		"other client_id": f.document("/other.json", "", func(id string) string { return strings.Replace(goodDocument(id), id, id+"/", 1) }),
		"no client_name": f.document("/noname.json", "", func(id string) string {
			return strings.Replace(goodDocument(id), `"client_name":"Example Agent",`, "", 1)
		}),
		"client_secret": f.document("/secret.json", "", func(id string) string { return strings.Replace(goodDocument(id), `{`, `{"client_secret":"s",`, 1) }),
		"private_key_jwt": f.document("/pkjwt.json", "", func(id string) string {
			return strings.Replace(goodDocument(id), `"private_key_jwt","none"`, `"private_key_jwt"`, 1)
		}),
		"bad redirect": f.document("/badredirect.json", "", func(id string) string {
			return strings.Replace(goodDocument(id), "https://agent.test/callback", "javascript:alert(1)", 1)
		}),
		"not JSON": f.document("/broken.json", "", func(id string) string { return "{" }),
		"too big": f.document("/big.json", "", func(id string) string {
			return strings.Replace(goodDocument(id), `{`, `{"x":"`+strings.Repeat("a", 6<<10)+`",`, 1)
		}),
		"missing": f.srv.URL + "/missing.json",
	}
	f.pages["/text.json"] = func(w http.ResponseWriter, id string) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, goodDocument(id))
	}
	docs["not application/json"] = f.srv.URL + "/text.json"
	f.pages["/redirect.json"] = func(w http.ResponseWriter, id string) {
		w.Header().Set("Location", f.srv.URL+"/agent.json")
		w.WriteHeader(http.StatusFound)
	}
	docs["redirect"] = f.srv.URL + "/redirect.json"
	for name, id := range docs {
		if _, err := s.resolveClient(ctx, id); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// URL rules, checked before anything is fetched.
	for _, id := range []string{"https://agent.test", "https://agent.test/", "https://u:p@agent.test/doc.json", "https://agent.test/doc.json#x",
		"https://agent.test/doc.json?x=1", "https://agent.test:8443/doc.json"} {
		if _, err := s.resolveClient(ctx, id); err == nil {
			t.Errorf("URL %q accepted", id)
		}
	}
	if f.hits.Load() != int32(len(docs)) {
		t.Errorf("%d fetches for %d documents", f.hits.Load(), len(docs))
	}
}

// TestMetadataFetcherDefaultRefusesLocalTargets uses the production
// fetcher (no allowance): names and literals that lead to internal
// addresses are refused at dial time, the fixture included.
func TestMetadataFetcherDefaultRefusesLocalTargets(t *testing.T) {
	f := newFixture(t)
	id := f.document("/agent.json", "", goodDocument)
	s := newTestServer(t, func(c *Config) { c.Clients.ClientIDMetadataDocuments = true })
	for _, target := range []string{
		"https://localhost/agent.json", // a name that resolves to 127.0.0.1
		"https://127.0.0.1/agent.json",
		"https://[::1]/agent.json",
		"https://169.254.169.254/latest/meta-data",
		"https://[::ffff:127.0.0.1]/agent.json",
		"https://0.0.0.0/agent.json",
		id, // the fixture, without the test allowance
	} {
		start := time.Now()
		_, err := s.resolveClient(context.Background(), target)
		if err == nil {
			t.Errorf("%s: fetched", target)
			continue
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s: refusal took %s", target, time.Since(start))
		}
		t.Logf("%s: %v", target, err)
	}
	if f.hits.Load() != 0 {
		t.Fatalf("the fixture was reached %d times", f.hits.Load())
	}
}

func TestMetadataFetcherTimeout(t *testing.T) {
	t.Parallel() // it waits for the fetcher's five seconds
	f := newFixture(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.pages["/slow.json"] = func(w http.ResponseWriter, id string) { <-release }
	s := cimdServer(t, f)
	start := time.Now()
	_, err := s.resolveClient(context.Background(), f.srv.URL+"/slow.json")
	if err == nil || time.Since(start) > 7*time.Second || time.Since(start) < 4*time.Second {
		t.Fatalf("slow document: %v after %s, want a failure after about 5s", err, time.Since(start))
	}
}

// TestConsentShowsDocumentHost: the consent page names the host that
// publishes the client's metadata document next to its client_name.
func TestConsentShowsDocumentHost(t *testing.T) {
	f := newFixture(t)
	s := cimdServer(t, f)
	id := f.document("/agent.json", "", goodDocument)
	c, err := s.resolveClient(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/authorize", nil)
	s.showConsent(w, r, &authorizeRequest{client: c, redirectURI: c.RedirectURIs[0], scope: "mcp:read", resource: "https://auth.test/mcp"}, identity{subject: "alice", authTime: time.Now()})
	host := strings.TrimPrefix(f.srv.URL, "https://")
	if !strings.Contains(w.Body.String(), "Example Agent") || !strings.Contains(w.Body.String(), host) || !strings.Contains(w.Body.String(), "agent.test") {
		t.Fatalf("consent page: %s", w.Body.String())
	}
}

// TestMetadataDocumentLoopbackPort: the RFC 8252 rule holds for metadata
// document clients too: a registered loopback redirect URI matches on any
// port, everything else exactly.
func TestMetadataDocumentLoopbackPort(t *testing.T) {
	f := newFixture(t)
	s := cimdServer(t, f)
	id := f.document("/cli.json", "", func(id string) string {
		return `{"client_id":"` + id + `","client_name":"CLI","redirect_uris":["http://localhost/callback","http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`
	})
	for redirect, want := range map[string]bool{
		"http://localhost:43661/callback":  true,
		"http://localhost/callback":        true,
		"http://127.0.0.1:5000/cb":         true,
		"http://localhost:43661/other":     false,
		"http://127.0.0.1:5000/callback":   false,
		"https://localhost:43661/callback": false,
	} {
		q := url.Values{"client_id": {id}, "redirect_uri": {redirect}, "response_type": {"code"},
			"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
		req, aerr := s.parseAuthorizeRequest(context.Background(), q)
		if got := aerr == nil; got != want {
			t.Errorf("%s: accepted %v, want %v (%v)", redirect, got, want, aerr)
			continue
		}
		if want && req.redirectURI != redirect {
			t.Errorf("%s: redirect URI %q", redirect, req.redirectURI)
		}
	}
}

// TestMetadataDocumentClientIsNotRedirectedToBeforeSignIn: a client ID
// metadata document is something anyone can publish; an authorization
// error for it sends an anonymous browser to sign in, never to the
// document's redirect URI.
func TestMetadataDocumentClientIsNotRedirectedToBeforeSignIn(t *testing.T) {
	f := newFixture(t)
	s := cimdServer(t, f)
	s.cfg.SignIn.Users = map[string]string{"alice": "$2a$04$0000000000000000000000000000000000000000000000000000"}
	id := f.document("/phish.json", "", func(id string) string {
		return strings.Replace(goodDocument(id), "https://agent.test/callback", "https://phish.example/x", 1)
	})
	q := url.Values{"client_id": {id}, "redirect_uri": {"https://phish.example/x"}, "response_type": {"token"}}
	w := httptest.NewRecorder()
	s.authorize(w, httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/authorize?"+q.Encode(), nil))
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusSeeOther || loc.Host != "" || loc.Path != "/oauth/login" {
		t.Fatalf("anonymous error for a metadata-document client: %d to %q", w.Code, w.Header().Get("Location"))
	}
}
