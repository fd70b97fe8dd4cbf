package endpoints

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// dpopProofOf is a DPoP proof by the named test key for htm and htu, with
// changes to its claims ("header:<name>" changes the header).
func dpopProofOf(t testing.TB, key string, alg jose.SignatureAlgorithm, htm, htu string, change ...any) string {
	t.Helper()
	claims := map[string]any{"jti": randomToken(), "htm": htm, "htu": htu, "iat": time.Now().Unix()}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	signer := testKeys()[key]
	for i := 0; i+1 < len(change); i += 2 {
		name := change[i].(string)
		if h, ok := strings.CutPrefix(name, "header:"); ok {
			opts.WithHeader(jose.HeaderKey(h), change[i+1])
			continue
		}
		if change[i+1] == nil {
			delete(claims, name)
		} else {
			claims[name] = change[i+1]
		}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: signer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := jws.CompactSerialize()
	return raw
}

// thumbprintOf is the RFC 7638 thumbprint of a test key.
func thumbprintOf(key string) string {
	sum, _ := (&jose.JSONWebKey{Key: testKeys()[key].Public()}).Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(sum)
}

const tokenURL = "https://auth.test/oauth/token"

// dpopServer is grantServer with conf, a client with a secret that
// refreshes, and bound, a machine client that registered
// dpop_bound_access_tokens.
func dpopServer(t *testing.T) *Server { return dpopServerWith(t) }

func dpopServerWith(t *testing.T, mutate ...func(*Config)) *Server {
	return grantServer(t, append([]func(*Config){func(c *Config) {
		c.Clients.Static = append(c.Clients.Static,
			storage.Client{ID: "conf", SecretHash: storage.Hash("conf-secret-0123456789"), RedirectURIs: []string{"https://conf.test/cb"}, GrantTypes: DefaultGrantTypes()},
			storage.Client{ID: "bound", SecretHash: storage.Hash("bound-secret-0123456789"), GrantTypes: []string{grantClientCredentials}, DPoPBoundAccessTokens: true})
	}}, mutate...)...)
}

func TestDPoPAtTheTokenEndpoint(t *testing.T) {
	s := dpopServer(t)
	machine := url.Values{"grant_type": {"client_credentials"}, "client_id": {"m"}, "client_secret": {"m-secret-0123456789"}}
	ctx := context.Background()

	status, out, _ := tokenCall(t, s, machine, "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL))
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("with a proof: %d %v", status, out)
	}
	claims, _, err := s.verifyCached(ctx, out["access_token"].(string), true)
	if err != nil || claims.Cnf == nil || claims.Cnf.JKT != thumbprintOf("ec") {
		t.Fatalf("the token's cnf: %+v %v", claims.Cnf, err)
	}
	ir := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/introspect", strings.NewReader(url.Values{"token": {out["access_token"].(string)},
		"client_id": {"m"}, "client_secret": {"m-secret-0123456789"}}.Encode()))
	ir.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	iw := httptest.NewRecorder()
	s.introspect(iw, ir)
	if !strings.Contains(iw.Body.String(), `"token_type":"DPoP","cnf":{"jkt":"`+thumbprintOf("ec")+`"}`) {
		t.Errorf("introspection: %s", iw.Body)
	}
	status, out, _ = tokenCall(t, s, machine)
	if status != http.StatusOK || out["token_type"] != "Bearer" {
		t.Fatalf("without a proof: %d %v", status, out)
	}
	if claims, _, _ := s.verifyCached(ctx, out["access_token"].(string), true); claims.Cnf != nil {
		t.Errorf("a bearer token with cnf: %+v", claims.Cnf)
	}

	replayed := dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL)
	tokenCall(t, s, machine, "DPoP", replayed)
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithType("dpop+jwt"))
	hsig, _ := hs.Sign([]byte(`{"jti":"x","htm":"POST","htu":"` + tokenURL + `","iat":` + strings.TrimSpace(jsonNumber(time.Now().Unix())) + `}`))
	hmac, _ := hsig.CompactSerialize()
	private := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: testKeys()["ec"]}, (&jose.SignerOptions{}).WithType("dpop+jwt").
			WithHeader("jwk", jose.JSONWebKey{Key: testKeys()["ec"]}))
		sig, _ := s.Sign([]byte(`{"jti":"y","htm":"POST","htu":"` + tokenURL + `","iat":` + jsonNumber(time.Now().Unix()) + `}`))
		raw, _ := sig.CompactSerialize()
		return raw
	}()
	otherKey := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: testKeys()["ec2"]}, (&jose.SignerOptions{}).WithType("dpop+jwt").
			WithHeader("jwk", jose.JSONWebKey{Key: testKeys()["ec"].Public()}))
		sig, _ := s.Sign([]byte(`{"jti":"z","htm":"POST","htu":"` + tokenURL + `","iat":` + jsonNumber(time.Now().Unix()) + `}`))
		raw, _ := sig.CompactSerialize()
		return raw
	}()
	noJWK := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: testKeys()["ec"]}, (&jose.SignerOptions{}).WithType("dpop+jwt"))
		sig, _ := s.Sign([]byte(`{"jti":"w","htm":"POST","htu":"` + tokenURL + `","iat":` + jsonNumber(time.Now().Unix()) + `}`))
		raw, _ := sig.CompactSerialize()
		return raw
	}()
	now := time.Now()
	for _, tc := range []struct {
		name   string
		header []string
		want   string // "" for 200
	}{
		{"EdDSA", []string{"DPoP", dpopProofOf(t, "ed", jose.EdDSA, "POST", tokenURL)}, ""},
		{"RS256", []string{"DPoP", dpopProofOf(t, "rsa", jose.RS256, "POST", tokenURL)}, ""},
		{"PS256", []string{"DPoP", dpopProofOf(t, "rsa", jose.PS256, "POST", tokenURL)}, ""},
		{"htu with a query and the default port", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", "HTTPS://Auth.Test:443/oauth/token?x=1#f")}, ""},
		{"replayed", []string{"DPoP", replayed}, "the DPoP proof was used before (jti)"},
		{"htm GET", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "GET", tokenURL)}, "the DPoP proof's htm is not the request's method"},
		{"htu another path", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", "https://auth.test/oauth/revoke")}, "the DPoP proof's htu is not the URL of the request"},
		{"htu another host", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", "https://internal.test/oauth/token")}, "the DPoP proof's htu is not the URL of the request"},
		{"htu http", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", "http://auth.test/oauth/token")}, "the DPoP proof's htu is not the URL of the request"},
		{"iat an hour ago", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "iat", now.Add(-time.Hour).Unix())}, "the DPoP proof's iat is not recent"},
		{"iat in an hour", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "iat", now.Add(time.Hour).Unix())}, "the DPoP proof's iat is not recent"},
		{"no iat", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "iat", nil)}, "the DPoP proof's iat is missing"},
		{"no jti", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "jti", nil)}, "the DPoP proof's jti is missing or too long"},
		{"typ JWT", []string{"DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "header:typ", "JWT")}, "the DPoP proof's typ is not dpop+jwt"},
		{"HS256", []string{"DPoP", hmac}, "the DPoP proof is not a JWS signed with ES256, EdDSA, RS256, PS256"},
		{"alg none", []string{"DPoP", "eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.e30."}, "the DPoP proof is not a JWS signed with ES256, EdDSA, RS256, PS256"},
		{"a private key in the header", []string{"DPoP", private}, "the DPoP proof is not a JWS signed with ES256, EdDSA, RS256, PS256"},
		{"signed by another key than its jwk", []string{"DPoP", otherKey}, "the DPoP proof's signature does not verify with its jwk"},
		{"no jwk", []string{"DPoP", noJWK}, "the DPoP proof's header has no jwk"},
		{"an RSA key too short", []string{"DPoP", dpopProofOf(t, "rsa1024", jose.RS256, "POST", tokenURL)}, "the DPoP proof's jwk: an RSA key of 1024 bits is too short (2048 at least)"},
		{"not a JWS", []string{"DPoP", "garbage"}, "the DPoP proof is not a JWS signed with ES256, EdDSA, RS256, PS256"},
	} {
		status, out, _ := tokenCall(t, s, machine, tc.header...)
		switch {
		case tc.want == "" && (status != http.StatusOK || out["token_type"] != "DPoP"):
			t.Errorf("%s: %d %v", tc.name, status, out)
		case tc.want != "" && (status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" || out["error_description"] != tc.want):
			t.Errorf("%s: %d %v, want 400 invalid_dpop_proof %q", tc.name, status, out, tc.want)
		}
	}

	// Two DPoP headers.
	r := httptest.NewRequest(http.MethodPost, tokenURL, strings.NewReader(machine.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Add("DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL))
	r.Header.Add("DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL))
	w := httptest.NewRecorder()
	s.token(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "more than one DPoP header") {
		t.Errorf("two DPoP headers: %d %s", w.Code, w.Body)
	}

	// A client that registered dpop_bound_access_tokens needs a proof.
	bound := url.Values{"grant_type": {"client_credentials"}, "client_id": {"bound"}, "client_secret": {"bound-secret-0123456789"}}
	if status, out, _ := tokenCall(t, s, bound); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
		t.Errorf("dpop_bound_access_tokens without a proof: %d %v", status, out)
	}
	if status, out, _ := tokenCall(t, s, bound, "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL)); status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Errorf("dpop_bound_access_tokens with a proof: %d %v", status, out)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestDPoPBindsPublicRefreshTokens: a public client's refresh tokens are
// bound to the key of the first proof its family saw (at the code or a
// refresh), for the family's life; a confidential client's are not (it
// authenticates).
func TestDPoPBindsPublicRefreshTokens(t *testing.T) {
	s := dpopServer(t)
	redeem := func(client string, code string, header ...string) map[string]any {
		t.Helper()
		form := url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code}, "code_verifier": {testVerifier}}
		if client == "conf" {
			form.Set("client_secret", "conf-secret-0123456789")
		}
		status, out, _ := tokenCall(t, s, form, header...)
		if status != http.StatusOK {
			t.Fatalf("redeeming: %d %v", status, out)
		}
		return out
	}
	refresh := func(client, token string, header ...string) (int, map[string]any) {
		form := url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {token}}
		if client == "conf" {
			form.Set("client_secret", "conf-secret-0123456789")
		}
		status, out, _ := tokenCall(t, s, form, header...)
		return status, out
	}
	proof := func(key string) []string {
		alg := map[string]jose.SignatureAlgorithm{"ec": jose.ES256, "ec2": jose.ES256, "ed": jose.EdDSA}[key]
		return []string{"DPoP", dpopProofOf(t, key, alg, "POST", tokenURL)}
	}

	out := redeem("app", storeCode(t, s, nil), proof("ec")...)
	if out["token_type"] != "DPoP" {
		t.Fatalf("the code with a proof: %v", out)
	}
	rt := out["refresh_token"].(string)
	for name, header := range map[string][]string{"no proof": nil, "another key": proof("ec2")} {
		if status, out := refresh("app", rt, header...); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" ||
			out["error_description"] != "this refresh token is bound to a DPoP key: send a proof signed by that key" {
			t.Errorf("a public client's refresh with %s: %d %v", name, status, out)
		}
	}
	status, out := refresh("app", rt, proof("ec")...)
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("with its key (the refused attempts did not use the token up): %d %v", status, out)
	}
	if status, out := refresh("app", out["refresh_token"].(string)); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
		t.Errorf("the rotated token without a proof: %d %v", status, out)
	}

	code := storeCode(t, s, func(ac *storage.AuthorizationCode) { ac.ClientID, ac.RedirectURI = "conf", "https://conf.test/cb" })
	out = redeem("conf", code, proof("ed")...)
	if status, out := refresh("conf", out["refresh_token"].(string)); status != http.StatusOK || out["token_type"] != "Bearer" {
		t.Errorf("a confidential client's refresh without a proof: %d %v", status, out)
	}

	// A family started without a proof is bound by its first refresh with
	// one: the refresh token issued then is bound (RFC 9449 §5).
	out = redeem("app", storeCode(t, s, nil))
	status, out = refresh("app", out["refresh_token"].(string), proof("ed")...)
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("an unbound family refreshed with a proof: %d %v", status, out)
	}
	if status, out := refresh("app", out["refresh_token"].(string)); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
		t.Errorf("then without one: %d %v", status, out)
	}
	if status, out := refresh("app", out["refresh_token"].(string), proof("ed")...); status != http.StatusOK {
		t.Errorf("then with its key: %d %v", status, out)
	}
}

// TestDPoPReplaysBounded: the replay cache forgets proofs once their
// window is over, and refuses rather than forgets a live one when full.
func TestDPoPReplaysBounded(t *testing.T) {
	d := newDPoPReplays()
	d.max = 2
	now := time.Now()
	p := func(jti string, iat time.Time) *dpopProof { return &dpopProof{jkt: "k", jti: jti, iat: iat} }
	if d.use(p("a", now), 0, now) != nil || d.use(p("a", now), 0, now) != errProofReplayed || d.use(p("b", now), 0, now) != nil {
		t.Fatal("first uses")
	}
	if err := d.use(p("c", now), 0, now); err != errReplaysFull {
		t.Fatalf("full of live proofs: %v", err)
	}
	later := now.Add(dpopProofWindow + time.Second)
	if err := d.use(p("c", later), 0, later); err != nil || len(d.seen) != 1 {
		t.Fatalf("after the window: %v, %d kept", err, len(d.seen))
	}
}

// FuzzDPoPProof: whatever the DPoP header, a proof is verified or
// refused; never a panic.
func FuzzDPoPProof(f *testing.F) {
	f.Add(dpopProofOf(f, "ec", jose.ES256, "POST", tokenURL))
	f.Add(dpopProofOf(f, "ed", jose.EdDSA, "GET", "https://auth.test/mcp", "ath", "x"))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodPost, tokenURL, nil)
		r.Header.Set("DPoP", header)
		p, err := checkDPoPProof(r, tokenURL, "", 0, time.Now())
		if err == nil && (p.jkt == "" || p.jti == "") {
			t.Fatalf("accepted %q as %+v", header, p)
		}
	})
}

// athOf is a proof's ath for an access token.
func athOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// guardDPoP is a guard request with `Authorization: DPoP <token>` and a
// proof by the named key for GET https://auth.test/mcp/tools and the
// token, with changes.
func guardDPoP(t testing.TB, token, key string, change ...any) (*httptest.ResponseRecorder, *http.Request) {
	w, r := guardRequest(token)
	r.Header.Set("Authorization", "DPoP "+token)
	alg := map[string]jose.SignatureAlgorithm{"ec": jose.ES256, "ec2": jose.ES256, "ed": jose.EdDSA, "rsa": jose.RS256}[key]
	r.Header.Set("DPoP", dpopProofOf(t, key, alg, "GET", "https://auth.test/mcp/tools", append([]any{"ath", athOf(token)}, change...)...))
	return w, r
}

func TestDPoPAtTheGuard(t *testing.T) {
	s := newTestServer(t)
	bound, _ := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp", jkt: thumbprintOf("ec")}, time.Now())
	bearer, _ := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}, time.Now())
	const params = `resource_metadata="https://auth.test/.well-known/oauth-protected-resource/mcp"`
	const algs = `, algs="ES256 EdDSA RS256 PS256"`

	for range 2 { // the token verified, then cached: the proof checked each time
		if w, r := guardDPoP(t, bound.token, "ec"); s.Guard(w, r, okNext) != nil || w.Code != http.StatusNoContent {
			t.Fatalf("a DPoP request: %d %s %q", w.Code, w.Body, w.Header().Values("WWW-Authenticate"))
		}
	}
	replayed := func() (*httptest.ResponseRecorder, *http.Request) {
		w, r := guardDPoP(t, bound.token, "ec")
		proof := r.Header.Get("DPoP")
		s.Guard(w, r, okNext)
		w2, r2 := guardRequest(bound.token)
		r2.Header.Set("Authorization", "DPoP "+bound.token)
		r2.Header.Set("DPoP", proof)
		return w2, r2
	}
	proofRefused := func(desc string) []string {
		return []string{"Bearer " + params, "DPoP " + params + `, error="invalid_dpop_proof", error_description="` + desc + `"` + algs}
	}
	tokenRefused := func(desc string, scheme string) []string {
		withErr := params + `, error="invalid_token", error_description="` + desc + `"`
		if scheme == "Bearer" {
			return []string{"Bearer " + withErr, "DPoP " + params + algs}
		}
		return []string{"Bearer " + params, "DPoP " + withErr + algs}
	}
	for _, tc := range []struct {
		name string
		req  func() (*httptest.ResponseRecorder, *http.Request)
		want []string
	}{
		{"a proof by another key", func() (*httptest.ResponseRecorder, *http.Request) { return guardDPoP(t, bound.token, "ec2") },
			proofRefused("the DPoP proof is not signed by the key the access token is bound to")},
		{"htm POST", func() (*httptest.ResponseRecorder, *http.Request) {
			return guardDPoP(t, bound.token, "ec", "htm", "POST")
		},
			proofRefused("the DPoP proof's htm is not the request's method")},
		{"htu another path", func() (*httptest.ResponseRecorder, *http.Request) {
			return guardDPoP(t, bound.token, "ec", "htu", "https://auth.test/mcp/other")
		}, proofRefused("the DPoP proof's htu is not the URL of the request")},
		{"htu an internal address", func() (*httptest.ResponseRecorder, *http.Request) {
			return guardDPoP(t, bound.token, "ec", "htu", "http://127.0.0.1:9000/mcp/tools")
		}, proofRefused("the DPoP proof's htu is not the URL of the request")},
		{"ath of another token", func() (*httptest.ResponseRecorder, *http.Request) {
			return guardDPoP(t, bound.token, "ec", "ath", athOf("other"))
		},
			proofRefused("the DPoP proof's ath is not the access token's hash")},
		{"no ath", func() (*httptest.ResponseRecorder, *http.Request) { return guardDPoP(t, bound.token, "ec", "ath", nil) },
			proofRefused("the DPoP proof's ath is not the access token's hash")},
		{"iat outside the window", func() (*httptest.ResponseRecorder, *http.Request) {
			return guardDPoP(t, bound.token, "ec", "iat", time.Now().Add(-10*time.Minute).Unix())
		}, proofRefused("the DPoP proof's iat is not recent")},
		{"a replayed proof", replayed, proofRefused("the DPoP proof was used before (jti)")},
		{"no proof", func() (*httptest.ResponseRecorder, *http.Request) {
			w, r := guardDPoP(t, bound.token, "ec")
			r.Header.Del("DPoP")
			return w, r
		}, proofRefused("a DPoP proof is required")},
		{"a bound token as Bearer", func() (*httptest.ResponseRecorder, *http.Request) { return guardRequest(bound.token) },
			tokenRefused("the access token is bound to a DPoP key: send it with the DPoP scheme and a proof", "Bearer")},
		{"an unbound token as DPoP", func() (*httptest.ResponseRecorder, *http.Request) { return guardDPoP(t, bearer.token, "ec") },
			tokenRefused("the access token is not bound to a DPoP key: send it as a Bearer token", "DPoP")},
	} {
		w, r := tc.req()
		s.Guard(w, r, okNext)
		if got := w.Header().Values("WWW-Authenticate"); w.Code != http.StatusUnauthorized || strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s: %d\n got %q\nwant %q", tc.name, w.Code, got, tc.want)
		}
	}
	if w, r := guardRequest(bearer.token); s.Guard(w, r, okNext) != nil || w.Code != http.StatusNoContent {
		t.Errorf("a bearer token: %d", w.Code)
	}

	// require_dpop: bearer tokens are refused, and only DPoP is offered.
	strict := newTestServer(t, func(c *Config) { c.Guard.RequireDPoP = true })
	bearer, _ = strict.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}, time.Now())
	w, r := guardRequest(bearer.token)
	strict.Guard(w, r, okNext)
	if got := w.Header().Values("WWW-Authenticate"); w.Code != http.StatusUnauthorized ||
		len(got) != 1 || got[0] != "DPoP "+params+`, error="invalid_token", error_description="this resource requires DPoP-bound access tokens"`+algs {
		t.Errorf("require_dpop, a bearer token: %d %q", w.Code, got)
	}
	bound, _ = strict.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp", jkt: thumbprintOf("ed")}, time.Now())
	if w, r := guardDPoP(t, bound.token, "ed"); strict.Guard(w, r, okNext) != nil || w.Code != http.StatusNoContent {
		t.Errorf("require_dpop, a DPoP request: %d %s", w.Code, w.Body)
	}
}

// BenchmarkGuardDPoP: a DPoP-bound token with a fresh proof per request,
// against BenchmarkGuardCachedToken (the same token as Bearer) in one
// run: the difference is the proof's signature verification and its
// replay check. Proofs are made before the clock starts.
//
//	go test ./endpoints -run '^$' -bench 'GuardCachedToken|GuardDPoP' -benchmem
func BenchmarkGuardDPoP(b *testing.B) {
	s := benchServer(b)
	at, err := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp", jkt: thumbprintOf("ec")}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	proofs := make([][]string, b.N)
	for i := range proofs {
		proofs[i] = []string{dpopProofOf(b, "ec", jose.ES256, "GET", "https://auth.test/mcp/tools", "ath", athOf(at.token))}
	}
	_, r := guardRequest(at.token)
	w := &statusWriter{h: http.Header{}}
	auth := []string{"DPoP " + at.token}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.Header["Authorization"], r.Header["Dpop"] = auth, proofs[i]
		w.code = 0
		s.Guard(w, r, okNext)
		if w.code != http.StatusNoContent {
			b.Fatalf("guard: %d %v", w.code, w.h)
		}
	}
}

// BenchmarkCeilingES256Verify: the ECDSA P-256 verification alone, the
// floor of a DPoP proof's check.
func BenchmarkCeilingES256Verify(b *testing.B) {
	key := testKeys()["ec"].(*ecdsa.PrivateKey)
	digest := sha256.Sum256([]byte("the signing input of a DPoP proof"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			b.Fatal("does not verify")
		}
	}
}

// TestDPoPBindsTheCode: dpop_jkt at the authorization endpoint binds the
// code to a key (RFC 9449 §10); a malformed one is refused to the client.
func TestDPoPBindsTheCode(t *testing.T) {
	s := dpopServer(t)
	q := url.Values{"client_id": {"app"}, "redirect_uri": {"https://app.test/cb"}, "response_type": {"code"}, "code_challenge": {challengeOf(testVerifier)},
		"code_challenge_method": {"S256"}, "state": {"xyz"}, "dpop_jkt": {"not-a-thumbprint"}}
	w := httptest.NewRecorder()
	s.authorize(w, httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/authorize?"+q.Encode(), nil))
	if loc, _ := url.Parse(w.Header().Get("Location")); w.Code != http.StatusFound || loc.Query().Get("error") != "invalid_request" ||
		loc.Query().Get("error_description") != "dpop_jkt must be the key's SHA-256 thumbprint: 43 base64url characters" {
		t.Fatalf("a malformed dpop_jkt: %d %s", w.Code, w.Header().Get("Location"))
	}

	c, _ := s.lookupClient(context.Background(), "app")
	issue := func() string {
		code := randomToken()
		req := &authorizeRequest{client: c, redirectURI: "https://app.test/cb", challenge: challengeOf(testVerifier), dpopJKT: thumbprintOf("ec"),
			scope: "mcp:read", resource: "https://auth.test/mcp"}
		if err := s.issueCode(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/authorize", nil), req,
			identity{subject: "alice", authTime: time.Now()}, code); err != nil {
			t.Fatal(err)
		}
		return code
	}
	redeem := func(code string, header ...string) (int, map[string]any) {
		status, out, _ := tokenCall(t, s, url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {code}, "code_verifier": {testVerifier}}, header...)
		return status, out
	}
	code := issue()
	for name, header := range map[string][]string{"no proof": nil, "another key": {"DPoP", dpopProofOf(t, "ec2", jose.ES256, "POST", tokenURL)}} {
		if status, out := redeem(code, header...); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" ||
			out["error_description"] != "the authorization code is bound to a DPoP key (dpop_jkt): send a proof signed by that key" {
			t.Errorf("a bound code with %s: %d %v", name, status, out)
		}
	}
	if status, out := redeem(code, "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL)); status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Errorf("a bound code with its key (the refused attempts did not use it up): %d %v", status, out)
	}
}

// TestDPoPNonces: with dpop_nonce, a proof without a fresh nonce of ours
// is answered use_dpop_nonce with one in DPoP-Nonce, at the token
// endpoint and at the guard; the nonce is stateless, so another node
// with the same keys takes it, and it ages out.
func TestDPoPNonces(t *testing.T) {
	key, err := GenerateSigningKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	node := func() *Server {
		return dpopServerWith(t, func(c *Config) {
			c.Tokens.DPoPNonce = true
			c.Signing.Keys, _ = NewKeySet([]storage.SigningKey{*key}, time.Now())
		})
	}
	a, b := node(), node()
	now := time.Now()
	nonce := a.Keys().DPoPNonce(now)
	if !b.Keys().validDPoPNonce(nonce, 0, now) {
		t.Fatal("another node refused the nonce")
	}
	for name, n := range map[string]string{
		"stale":           a.Keys().DPoPNonce(now.Add(-dpopNonceLifetime - time.Second)),
		"from the future": a.Keys().DPoPNonce(now.Add(time.Minute)),
		"tampered":        nonce[:len(nonce)-2] + "AA",
		"another kid":     "other" + nonce[strings.Index(nonce, "~"):],
		"garbage":         "x",
	} {
		if a.Keys().validDPoPNonce(n, 0, now) {
			t.Errorf("%s nonce accepted", name)
		}
	}
	if other, _ := NewHMACKeySet([]byte("0123456789abcdef0123456789abcdef")); other.validDPoPNonce(nonce, 0, now) {
		t.Error("a nonce of other keys accepted")
	}

	machine := url.Values{"grant_type": {"client_credentials"}, "client_id": {"m"}, "client_secret": {"m-secret-0123456789"}}
	status, out, h := tokenCall(t, a, machine, "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL))
	given := h.Get("DPoP-Nonce")
	if status != http.StatusBadRequest || out["error"] != "use_dpop_nonce" || given == "" {
		t.Fatalf("no nonce: %d %v, DPoP-Nonce %q", status, out, given)
	}
	status, out, _ = tokenCall(t, b, machine, "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "nonce", a.Keys().DPoPNonce(now.Add(-10*time.Minute))))
	if status != http.StatusBadRequest || out["error"] != "use_dpop_nonce" {
		t.Fatalf("a stale nonce: %d %v", status, out)
	}
	status, out, h = tokenCall(t, b, machine, "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL, "nonce", given))
	if status != http.StatusOK || out["token_type"] != "DPoP" || h.Get("DPoP-Nonce") == "" {
		t.Fatalf("the nonce given by another node: %d %v", status, out)
	}
	at := out["access_token"].(string)

	w, r := guardDPoP(t, at, "ec")
	a.Guard(w, r, okNext)
	const params = `resource_metadata="https://auth.test/.well-known/oauth-protected-resource/mcp"`
	if got := w.Header().Values("WWW-Authenticate"); w.Code != http.StatusUnauthorized || w.Header().Get("DPoP-Nonce") == "" || len(got) != 2 ||
		got[1] != "DPoP "+params+`, error="use_dpop_nonce", error_description="use the DPoP-Nonce this server gives in the proof's nonce", algs="ES256 EdDSA RS256 PS256"` {
		t.Fatalf("the guard, no nonce: %d %q", w.Code, got)
	}
	w, r = guardDPoP(t, at, "ec", "nonce", w.Header().Get("DPoP-Nonce"))
	if a.Guard(w, r, okNext); w.Code != http.StatusNoContent || w.Header().Get("DPoP-Nonce") == "" {
		t.Fatalf("the guard, with the nonce: %d %s", w.Code, w.Body)
	}
}

// TestDPoPBoundRegistration: a client that registers
// dpop_bound_access_tokens gets it back and must send proofs.
func TestDPoPBoundRegistration(t *testing.T) {
	s := dpopServerWith(t, func(c *Config) { c.Clients.DynamicRegistration, c.Clients.UnusedClientTTL = true, time.Hour })
	status, out := registerRaw(t, s, `{"redirect_uris":["https://agent.test/cb"],"token_endpoint_auth_method":"none","dpop_bound_access_tokens":true}`, "")
	if status != http.StatusCreated || out["dpop_bound_access_tokens"] != true {
		t.Fatalf("registering: %d %v", status, out)
	}
	id := out["client_id"].(string)
	form := func() url.Values {
		code := storeCode(t, s, func(ac *storage.AuthorizationCode) { ac.ClientID, ac.RedirectURI = id, "https://agent.test/cb" })
		return url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "code": {code}, "code_verifier": {testVerifier}}
	}
	if status, out, _ := tokenCall(t, s, form()); status != http.StatusBadRequest || out["error"] != "invalid_dpop_proof" {
		t.Errorf("without a proof: %d %v", status, out)
	}
	if status, out, _ := tokenCall(t, s, form(), "DPoP", dpopProofOf(t, "ec", jose.ES256, "POST", tokenURL)); status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Errorf("with a proof: %d %v", status, out)
	}
}

// BenchmarkCeilingDPoPProofVerify: one DPoP proof verified by go-jose
// alone (parsing it with its embedded key, then the signature): what
// BenchmarkGuardDPoP should add to BenchmarkGuardCachedToken, and no more.
func BenchmarkCeilingDPoPProofVerify(b *testing.B) {
	proof := dpopProofOf(b, "ec", jose.ES256, "GET", "https://auth.test/mcp/tools")
	b.ReportAllocs()
	for b.Loop() {
		sig, err := jose.ParseSigned(proof, dpopAlgs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sig.Verify(sig.Signatures[0].Protected.JSONWebKey); err != nil {
			b.Fatal(err)
		}
	}
}
