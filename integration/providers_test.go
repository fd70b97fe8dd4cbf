package integration

// Stand-ins for upstream identity providers, for the cases a real
// provider will not produce (forged and broken ID tokens) and for GitHub,
// which cannot run here. Each speaks its documented protocol: OpenID
// Connect discovery, the authorization code flow with PKCE, a JWKS; and
// GitHub's OAuth app endpoints and the REST calls the server makes.

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// pendingCode is an authorization code a stand-in issued.
type pendingCode struct {
	clientID, redirectURI, challenge, nonce string
	account                                 map[string]any
}

// oidcStub is an OpenID provider on loopback.
type oidcStub struct {
	t        *testing.T
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	clientID string
	secret   string

	mu sync.Mutex
	// account holds the claims of whoever signs in next.
	account map[string]any
	// tamper, when set, changes the claims of the next ID token.
	tamper func(claims map[string]any)
	// sign, when set, replaces the signature of the next ID token.
	sign func(s *oidcStub, claims map[string]any) string
	// deny makes the next authorization end with error=access_denied.
	deny bool
	// iss, when set, is sent as the callback's iss parameter; sendsIss
	// makes the metadata say so (RFC 9207), set before the first sign-in.
	iss      string
	sendsIss bool
	// userinfo is the userinfo endpoint's answer (default: the account).
	userinfo map[string]any
	codes    map[string]pendingCode
	tokens   map[string]bool
	// expiresIn is the access tokens' lifetime in seconds (default 300);
	// refreshTokens the live refresh tokens (each is rotated when used);
	// refuseRefresh answers every refresh with invalid_grant; refreshes
	// counts the refresh requests.
	expiresIn     int
	refreshTokens map[string]bool
	refuseRefresh bool
	refreshes     int
	lastAccess    string
	lastAuthQuery url.Values
}

const stubKID = "stub-key-1"

func newOIDCStub(t *testing.T, clientID, secret string) *oidcStub {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &oidcStub{t: t, key: key, clientID: clientID, secret: secret, codes: map[string]pendingCode{}, tokens: map[string]bool{}, refreshTokens: map[string]bool{}, expiresIn: 300}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("/jwks", s.jwks)
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/userinfo", s.userinfoAnswer)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	s.signInAs(map[string]any{"sub": "248289761001", "email": "alice@example.com", "email_verified": true, "name": "Alice Liddell", "groups": []string{"staff"}})
	return s
}

func (s *oidcStub) issuer() string { return s.srv.URL }

// signInAs sets who signs in next (and clears any tampering).
func (s *oidcStub) signInAs(claims map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account, s.tamper, s.sign, s.deny, s.userinfo = claims, nil, nil, false, nil
}

// userinfoAnswer serves the userinfo endpoint to a bearer of an access
// token the stand-in issued.
func (s *oidcStub) userinfoAnswer(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.userinfo != nil {
		writeJSONDoc(w, s.userinfo)
		return
	}
	writeJSONDoc(w, s.account)
}

func (s *oidcStub) discovery(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	sendsIss := s.sendsIss
	s.mu.Unlock()
	writeJSONDoc(w, map[string]any{
		"authorization_response_iss_parameter_supported": sendsIss,
		"issuer":                                s.issuer(),
		"authorization_endpoint":                s.issuer() + "/authorize",
		"token_endpoint":                        s.issuer() + "/token",
		"jwks_uri":                              s.issuer() + "/jwks",
		"userinfo_endpoint":                     s.issuer() + "/userinfo",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (s *oidcStub) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSONDoc(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &s.key.PublicKey, KeyID: stubKID, Algorithm: "ES256", Use: "sig"}}})
}

func writeJSONDoc(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// authorize signs the configured account in at once (no pages) and sends
// the browser back with a code.
func (s *oidcStub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.clientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || !strings.Contains(q.Get("scope"), "openid") {
		http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	s.mu.Lock()
	s.lastAuthQuery = q
	if s.deny {
		back.Set("error", "access_denied")
	} else {
		code := randomJTI()
		s.codes[code] = pendingCode{clientID: s.clientID, redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), account: s.account}
		back.Set("code", code)
	}
	if s.iss != "" {
		back.Set("iss", s.iss)
	}
	s.mu.Unlock()
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
}

// redeem checks a token request's client, code, redirect URI and PKCE
// verifier, as a provider does, and takes the code.
func redeem(w http.ResponseWriter, r *http.Request, mu *sync.Mutex, codes map[string]pendingCode, clientID, secret string) (pendingCode, bool) {
	r.ParseForm()
	id, sec, ok := r.BasicAuth()
	if !ok {
		id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	mu.Lock()
	c, found := codes[r.PostForm.Get("code")]
	delete(codes, r.PostForm.Get("code"))
	mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case id != clientID || sec != secret:
		w.WriteHeader(http.StatusUnauthorized)
		writeJSONDoc(w, map[string]string{"error": "invalid_client"})
	case !found || c.redirectURI != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
		w.WriteHeader(http.StatusBadRequest)
		writeJSONDoc(w, map[string]string{"error": "invalid_grant"})
	default:
		return c, true
	}
	return c, false
}

func (s *oidcStub) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.PostForm.Get("grant_type") == "refresh_token" {
		s.refresh(w, r)
		return
	}
	c, ok := redeem(w, r, &s.mu, s.codes, s.clientID, s.secret)
	if !ok {
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": s.issuer(), "aud": s.clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": c.nonce}
	for k, v := range c.account {
		claims[k] = v
	}
	access, refresh := "upstream-access-"+randomJTI(), "upstream-refresh-"+randomJTI()
	s.mu.Lock()
	tamper, sign, expiresIn := s.tamper, s.sign, s.expiresIn
	s.tokens[access], s.refreshTokens[refresh], s.lastAccess = true, true, access
	s.mu.Unlock()
	if tamper != nil {
		tamper(claims)
	}
	if sign == nil {
		sign = signES256
	}
	writeJSONDoc(w, map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": expiresIn, "refresh_token": refresh, "id_token": sign(s, claims)})
}

// refresh answers grant_type=refresh_token as RFC 6749 §6 says, rotating
// the refresh token (a used one is invalid_grant afterwards).
func (s *oidcStub) refresh(w http.ResponseWriter, r *http.Request) {
	id, sec, ok := r.BasicAuth()
	if !ok {
		id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshes++
	presented := r.PostForm.Get("refresh_token")
	switch {
	case id != s.clientID || sec != s.secret:
		w.WriteHeader(http.StatusUnauthorized)
		writeJSONDoc(w, map[string]string{"error": "invalid_client"})
		return
	case s.refuseRefresh || !s.refreshTokens[presented]:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "grant request is invalid"})
		return
	}
	delete(s.refreshTokens, presented)
	access, refresh := "upstream-access-"+randomJTI(), "upstream-refresh-"+randomJTI()
	s.tokens[access], s.refreshTokens[refresh], s.lastAccess = true, true, access
	writeJSONDoc(w, map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": s.expiresIn, "refresh_token": refresh})
}

// state reads the stand-in's counters under its lock.
func (s *oidcStub) state() (lastAccess string, refreshes int, authQuery url.Values) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAccess, s.refreshes, s.lastAuthQuery
}

// signES256 signs claims with the provider's key.
func signES256(s *oidcStub, claims map[string]any) string {
	return signWith(s.t, jose.ES256, s.key, claims)
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", stubKID))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// unsigned is a JWT with alg none.
func unsigned(s *oidcStub, claims map[string]any) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"` + stubKID + `","typ":"JWT"}`))
	payload, _ := json.Marshal(claims)
	return header + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
}

// hmacWithPublicKey signs HS256 with the provider's public key as the
// secret: the classic algorithm confusion.
func hmacWithPublicKey(s *oidcStub, claims map[string]any) string {
	der, _ := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	return signWith(s.t, jose.HS256, der, claims)
}

// otherKey signs with a key that is not the provider's, under its kid.
func otherKey(s *oidcStub, claims map[string]any) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return signWith(s.t, jose.ES256, key, claims)
}

// githubStub implements the GitHub endpoints the server calls: the OAuth
// app's authorize and access_token, and /user, /user/emails, /user/orgs
// and /user/teams of the REST API (under /api, as on GitHub Enterprise).
type githubStub struct {
	srv              *httptest.Server
	clientID, secret string

	mu        sync.Mutex
	user      map[string]any
	emails    []map[string]any
	orgs      []string
	teams     []string // org/slug
	suspended bool
	scopes    string // the scope of the last authorization request
	codes     map[string]pendingCode
	tokens    map[string]bool
}

func newGitHubStub(t *testing.T, clientID, secret string) *githubStub {
	g := &githubStub{clientID: clientID, secret: secret, codes: map[string]pendingCode{}, tokens: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/login/oauth/authorize", g.authorize)
	mux.HandleFunc("/login/oauth/access_token", g.accessToken)
	mux.HandleFunc("/api/user", g.api(func() any { return g.user }))
	mux.HandleFunc("/api/user/emails", g.api(func() any { return g.emails }))
	mux.HandleFunc("/api/user/orgs", g.paged(func() []any {
		var out []any
		for _, o := range g.orgs {
			out = append(out, map[string]any{"login": o, "id": 1})
		}
		return out
	}))
	mux.HandleFunc("/api/user/teams", g.paged(func() []any {
		var out []any
		for _, team := range g.teams {
			org, slug, _ := strings.Cut(team, "/")
			out = append(out, map[string]any{"slug": slug, "name": slug, "organization": map[string]any{"login": org}})
		}
		return out
	}))
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	g.set(map[string]any{"id": 583231, "login": "octocat", "name": "The Octocat"},
		[]map[string]any{{"email": "octocat@users.example", "primary": false, "verified": true}, {"email": "octo@example.com", "primary": true, "verified": true}}, nil, nil)
	return g
}

func (g *githubStub) set(user map[string]any, emails []map[string]any, orgs, teams []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.user, g.emails, g.orgs, g.teams, g.suspended = user, emails, orgs, teams, false
}

func (g *githubStub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != g.clientID || q.Get("state") == "" || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code := randomJTI()
	g.mu.Lock()
	g.scopes = q.Get("scope")
	g.codes[code] = pendingCode{redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge")}
	g.mu.Unlock()
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
}

func (g *githubStub) accessToken(w http.ResponseWriter, r *http.Request) {
	if _, ok := redeem(w, r, &g.mu, g.codes, g.clientID, g.secret); !ok {
		return
	}
	tok := "gho_" + randomJTI()
	g.mu.Lock()
	g.tokens[tok] = true
	g.mu.Unlock()
	writeJSONDoc(w, map[string]any{"access_token": tok, "token_type": "bearer", "scope": "read:user,user:email"})
}

// paged answers a listing as GitHub does: per_page items (default 30,
// at most 100) of page (default 1), and a Link header naming the next
// and last pages.
func (g *githubStub) paged(list func() []any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.api(func() any {
			items := list()
			perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
			perPage = min(cmp.Or(perPage, 30), 100)
			page := max(1, func() int { n, _ := strconv.Atoi(r.URL.Query().Get("page")); return n }())
			last := max(1, (len(items)+perPage-1)/perPage)
			link := func(n int) string {
				q := r.URL.Query()
				q.Set("page", strconv.Itoa(n))
				return "<" + g.srv.URL + r.URL.Path + "?" + q.Encode() + ">"
			}
			if page < last {
				w.Header().Set("Link", link(page+1)+`; rel="next", `+link(last)+`; rel="last"`)
			}
			from, to := min((page-1)*perPage, len(items)), min(page*perPage, len(items))
			return append([]any{}, items[from:to]...)
		})(w, r)
	}
}

// api answers an API call for a token the stub issued; a suspended
// account gets 401, as GitHub answers.
func (g *githubStub) api(body func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !g.tokens[tok] || g.suspended || r.Header.Get("Accept") != "application/vnd.github+json" {
			w.WriteHeader(http.StatusUnauthorized)
			writeJSONDoc(w, map[string]string{"message": "Bad credentials"})
			return
		}
		writeJSONDoc(w, body())
	}
}
