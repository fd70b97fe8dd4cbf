package integration

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

// alicePassword is alice's password; aliceHash its bcrypt hash at the
// cheapest cost, to keep the tests fast.
const alicePassword = "correct horse battery staple"

var aliceHash = mustHash(alicePassword, bcrypt.MinCost)

func mustHash(pw string, cost int) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		panic(err)
	}
	return string(h)
}

// browser is a cookie-keeping HTTP client that does not follow redirects,
// so each step of a flow can be checked.
type browser struct {
	t      *testing.T
	client *http.Client
	origin string // where relative paths go; base unless a test says otherwise
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, origin: base, client: &http.Client{
		Transport:     caddytest.CreateTestingTransport(),
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	resp *http.Response
	body string
}

func (p page) location() *url.URL {
	loc, err := url.Parse(p.resp.Header.Get("Location"))
	if err != nil || p.resp.Header.Get("Location") == "" {
		return nil
	}
	return loc
}

// field returns the value of the named hidden input of a form.
func (p page) field(name string) string {
	m := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]*)"`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{resp: resp, body: string(body)}
}

func (b *browser) get(rawURL string) page {
	b.t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.origin + rawURL
	}
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values, header ...string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.origin+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

// signIn signs in through the built-in login page.
func (b *browser) signIn(user, password string) page {
	b.t.Helper()
	form := b.get("/oauth/login")
	if form.resp.StatusCode != http.StatusOK {
		b.t.Fatalf("login page: %d", form.resp.StatusCode)
	}
	return b.post("/oauth/login", url.Values{"username": {user}, "password": {password}, "csrf_token": {form.field("csrf_token")}})
}

// pkce is a verifier and its S256 challenge.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := oauth2.GenerateVerifier()
	return pkce{verifier: v, challenge: oauth2.S256ChallengeFromVerifier(v)}
}

// authorizeQuery is a valid authorization request for client pub1, with
// overrides applied (an empty value removes the parameter).
func authorizeQuery(p pkce, overrides map[string]string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"pub1"},
		"redirect_uri":          {"https://client.test/cb"},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
		"state":                 {"xyz"},
		"scope":                 {"mcp:read"},
		"resource":              {base + "/mcp"},
	}
	for k, v := range overrides {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return "/oauth/authorize?" + q.Encode()
}

// approve submits the consent page's Allow button.
func (b *browser) approve(consent page, decision string) page {
	b.t.Helper()
	if consent.resp.StatusCode != http.StatusOK || consent.field("request_id") == "" {
		b.t.Fatalf("expected a consent page, got %d %v %s", consent.resp.StatusCode, consent.resp.Header, consent.body)
	}
	return b.post("/oauth/consent", url.Values{
		"request_id": {consent.field("request_id")},
		"csrf_token": {consent.field("csrf_token")},
		"decision":   {decision},
	})
}

// codeFrom returns the code of a successful authorization redirect after
// checking its state and iss.
func codeFrom(t *testing.T, p page, wantRedirect, wantState string) string {
	t.Helper()
	loc := p.location()
	if p.resp.StatusCode != http.StatusFound || loc == nil {
		t.Fatalf("expected a redirect to the client, got %d %s", p.resp.StatusCode, p.body)
	}
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), wantRedirect+"?") || q.Get("state") != wantState || q.Get("iss") != base || q.Get("code") == "" {
		t.Fatalf("redirect %s: want %s with state %q, iss and a code", loc, wantRedirect, wantState)
	}
	return q.Get("code")
}

// sharedStore opens, in this process, the storage the running Caddy
// holds, as the site at base sees it.
func sharedStore(t *testing.T, path string) storage.Store {
	t.Helper()
	key, err := bolt.Key(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Acquire(key, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Release(key) })
	return s.ForIssuer(base)
}

// browserAt is a browser whose relative paths go to origin.
func browserAt(t *testing.T, origin string) *browser {
	b := newBrowser(t)
	b.origin = origin
	return b
}

func mustURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

// rawRequest sends a request line byte for byte (Go's client would
// escape a backslash) and returns the status.
func rawRequest(t *testing.T, target, token string) int {
	t.Helper()
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost:9080\r\n%sConnection: close\r\n\r\n", target, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
