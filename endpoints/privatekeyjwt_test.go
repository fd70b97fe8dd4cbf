package endpoints

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
)

// testKeys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{"ec": ec, "ec2": ec2, "ec384": ec384, "rsa": rs, "rsa1024": rs1024, "ed": ed}
})

// publicSet is the JWK Set of the public halves of keys, under their kids.
func publicSet(t testing.TB, kids ...string) json.RawMessage {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, kid := range kids {
		name, _, _ := strings.Cut(kid, "#")
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: testKeys()[name].Public(), KeyID: kid})
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// assertion signs claims with the named key (kid "name" unless the
// header says otherwise).
func assertion(t testing.TB, key string, alg jose.SignatureAlgorithm, claims map[string]any, headers ...string) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	kid := key
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "kid" {
			kid = headers[i+1]
			continue
		}
		opts.WithHeader(jose.HeaderKey(headers[i]), headers[i+1])
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: testKeys()[key], KeyID: kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// clientClaims are a good assertion's claims for client id.
func clientClaims(id string, change ...any) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": id, "sub": id, "aud": "https://auth.test", "jti": randomToken(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	for i := 0; i+1 < len(change); i += 2 {
		if change[i+1] == nil {
			delete(c, change[i].(string))
		} else {
			c[change[i].(string)] = change[i+1]
		}
	}
	return c
}

func assertionForm(raw string, extra ...string) url.Values {
	return withFields(url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {jwtBearerAssertionType}, "client_assertion": {raw}}, extra...)
}

// keyServer has machine clients with keys: kc (an inline set of an EC and
// an RSA key), ked (Ed25519), and m (a secret).
func keyServer(t testing.TB, mutate ...func(*Config)) *Server {
	t.Helper()
	return newTestServer(t, append([]func(*Config){func(c *Config) {
		c.Clients.Static = append(c.Clients.Static,
			storage.Client{ID: "kc", JWKS: publicSet(t, "ec", "rsa"), GrantTypes: []string{grantClientCredentials}, TokenEndpointAuthMethod: "private_key_jwt", Scope: "mcp:read"},
			storage.Client{ID: "ked", JWKS: publicSet(t, "ed"), GrantTypes: []string{grantClientCredentials}, TokenEndpointAuthMethod: "private_key_jwt", Scope: "mcp:read"},
			storage.Client{ID: "m", SecretHash: storage.Hash("m-secret-0123456789"), GrantTypes: []string{grantClientCredentials}, Scope: "mcp:read"})
	}}, mutate...)...)
}

// TestPrivateKeyJWT: every check of a client assertion, each refusal a
// 401 invalid_client whose description names the check.
func TestPrivateKeyJWT(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := keyServer(t, func(c *Config) { c.Logger, c.Audit = zap.New(core), zap.New(core) })
	now := time.Now()
	replayed := assertion(t, "ec", jose.ES256, clientClaims("kc"))
	if status, out, _ := tokenCall(t, s, assertionForm(replayed)); status != http.StatusOK {
		t.Fatalf("the first use: %d %v", status, out)
	}
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	hmac, _ := jwt.Signed(hs).Claims(clientClaims("kc")).Serialize()
	enc := base64.RawURLEncoding.EncodeToString
	claimsJSON, _ := json.Marshal(clientClaims("kc"))
	none := enc([]byte(`{"alg":"none"}`)) + "." + enc(claimsJSON) + "."
	embedded := func() string {
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: testKeys()["ec"]}, (&jose.SignerOptions{EmbedJWK: true}))
		raw, _ := jwt.Signed(signer).Claims(clientClaims("kc")).Serialize()
		return raw
	}()

	for _, tc := range []struct {
		name string
		form url.Values
		want string // "" for 200, else the description's start
	}{
		{"ES256", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc"))), ""},
		{"RS256", assertionForm(assertion(t, "rsa", jose.RS256, clientClaims("kc"))), ""},
		{"PS256", assertionForm(assertion(t, "rsa", jose.PS256, clientClaims("kc"))), ""},
		{"EdDSA", assertionForm(assertion(t, "ed", jose.EdDSA, clientClaims("ked"))), ""},
		{"no kid: every key is tried", assertionForm(assertion(t, "rsa", jose.RS256, clientClaims("kc"), "kid", "")), ""},
		{"aud the token endpoint", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "aud", "https://auth.test/oauth/token"))), ""},
		{"aud an array of one", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "aud", []string{"https://auth.test"}))), ""},
		{"typ JWT", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc"), "typ", "JWT")), ""},
		{"typ client-authentication+jwt", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc"), "typ", "client-authentication+jwt")), ""},
		{"the client_id of the form too", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc")), "client_id", "kc"), ""},

		{"replayed", assertionForm(replayed), "client_assertion: this assertion (its jti) was used before"},
		{"another client_id in the form", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc")), "client_id", "ked"), "client_id does not match"},
		{"wrong client_assertion_type", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc")), "client_assertion_type", "urn:x"), "client_assertion_type must be"},
		{"no assertion", assertionForm("", "client_assertion", ""), "client_assertion is missing"},
		{"not a JWT", assertionForm("a.b.c"), "client_assertion: not a JWT signed with RS256, PS256, ES256, EdDSA"},
		{"alg none", assertionForm(none), "client_assertion: not a JWT signed with"},
		{"HS256", assertionForm(hmac), "client_assertion: not a JWT signed with"},
		{"typ at+jwt", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc"), "typ", "at+jwt")), "client_assertion: the JWT's typ is not"},
		{"typ dpop+jwt", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc"), "typ", "dpop+jwt")), "client_assertion: the JWT's typ is not"},
		{"a key in the header", assertionForm(embedded), "client_assertion: the JWT must not name its own key"},
		{"iss is not sub", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "iss", "ked"))), "client_assertion: iss and sub must both be the client_id"},
		{"no iss", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "iss", nil, "sub", nil))), "client_assertion: iss and sub must both be the client_id"},
		{"an unknown client", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("nobody"))), "unknown client"},
		{"a client with a secret", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("m"))), "this client authenticates with its client secret"},
		{"a public client", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("pub1"))), "this client is public"},
		{"a foreign key under a known kid", assertionForm(assertion(t, "ec2", jose.ES256, clientClaims("kc"), "kid", "ec")), "client_assertion: the signature does not verify"},
		{"an unknown kid", assertionForm(assertion(t, "ec2", jose.ES256, clientClaims("kc"))), "client_assertion: the signer has no key with the JWT's kid"},
		{"another client's key", assertionForm(assertion(t, "ed", jose.EdDSA, clientClaims("kc"))), "client_assertion: the signer has no key with the JWT's kid"},
		{"alg that does not fit the key", assertionForm(assertion(t, "ed", jose.EdDSA, clientClaims("kc"), "kid", "")), "client_assertion: the signature does not verify"},
		{"aud another server", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "aud", "https://other.test"))), "client_assertion: aud must be this server alone"},
		{"aud the revocation endpoint", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "aud", "https://auth.test/oauth/revoke"))), "client_assertion: aud must be this server alone"},
		{"aud two values", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "aud", []string{"https://auth.test", "https://other.test"}))), "client_assertion: aud must be this server alone"},
		{"no aud", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "aud", nil))), "client_assertion: aud must be this server alone"},
		{"no exp", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "exp", nil))), "client_assertion: exp is missing"},
		{"no jti", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "jti", nil))), "client_assertion: jti is missing"},
		{"a jti too long", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "jti", strings.Repeat("j", 257)))), "client_assertion: jti is too long"},
		{"expired", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "iat", now.Add(-3*time.Minute).Unix(), "exp", now.Add(-2*time.Minute).Unix()))), "client_assertion: the JWT has expired"},
		{"valid for an hour", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "exp", now.Add(time.Hour).Unix()))), "client_assertion: the JWT is valid for longer than 5m0s"},
		{"valid for an hour, no iat", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "iat", nil, "exp", now.Add(time.Hour).Unix()))), "client_assertion: the JWT is valid for longer than 5m0s"},
		{"iat in the future", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "iat", now.Add(time.Hour).Unix(), "exp", now.Add(time.Hour+time.Minute).Unix()))), "client_assertion: the JWT was issued in the future"},
		{"nbf in the future", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "nbf", now.Add(2*time.Minute).Unix()))), "client_assertion: the JWT is not valid yet"},
		{"a claim of the wrong type", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc", "exp", "tomorrow"))), "client_assertion: the JWT's claims are not"},
		{"the secret instead", url.Values{"grant_type": {"client_credentials"}, "client_id": {"kc"}, "client_secret": {"guess"}}, "this client authenticates with an assertion signed by its key (private_key_jwt), not with client_secret_post"},
		{"the client_id alone", url.Values{"grant_type": {"client_credentials"}, "client_id": {"kc"}}, "this client authenticates with an assertion signed by its key (private_key_jwt), not with none"},
		{"an assertion and a secret", assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc")), "client_secret", "x"), "use one client authentication method"},
	} {
		status, out, h := tokenCall(t, s, tc.form)
		switch {
		case tc.want == "" && status != http.StatusOK:
			t.Errorf("%s: %d %v", tc.name, status, out)
		case tc.want == "":
		case strings.HasPrefix(tc.want, "use one"):
			if status != http.StatusBadRequest || out["error"] != "invalid_request" || !strings.HasPrefix(out["error_description"].(string), tc.want) {
				t.Errorf("%s: %d %v", tc.name, status, out)
			}
		case status != http.StatusUnauthorized || out["error"] != "invalid_client" || !strings.HasPrefix(fmt.Sprint(out["error_description"]), tc.want):
			t.Errorf("%s: %d %v, want 401 invalid_client %q…", tc.name, status, out, tc.want)
		case h.Get("WWW-Authenticate") != "":
			t.Errorf("%s: a Basic challenge for an assertion: %q", tc.name, h.Get("WWW-Authenticate"))
		}
		if raw := tc.form.Get("client_assertion"); raw != "" {
			if strings.Contains(fmt.Sprint(out), raw) {
				t.Errorf("%s: the answer echoes the assertion", tc.name)
			}
			parts := strings.Split(raw, ".")
			payload := parts[min(1, len(parts)-1)]
			for _, e := range logs.All() {
				if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, raw) || len(payload) > 16 && strings.Contains(line, payload) {
					t.Errorf("%s: the log holds the assertion: %s", tc.name, line)
				}
			}
		}
	}
	if logs.FilterMessage("client authentication failed").Len() == 0 {
		t.Error("no refusal was logged")
	}
}

// TestPrivateKeyJWTReplayAtAnotherNode: two servers sharing a PostgreSQL
// schema, as two nodes of a cluster: an assertion used at one is refused
// at the other.
func TestPrivateKeyJWTReplayAtAnotherNode(t *testing.T) {
	pg := pgtest.Shared(t)
	schema := pg.Schema(t)
	node := func() *Server {
		db, err := postgres.Open(context.Background(), postgres.Config{DSN: pg.DSN, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return keyServer(t, func(c *Config) { c.Storage.Store = db.ForIssuer("https://auth.test") })
	}
	a, b := node(), node()
	raw := assertion(t, "ec", jose.ES256, clientClaims("kc"))
	if status, out, _ := tokenCall(t, a, assertionForm(raw)); status != http.StatusOK {
		t.Fatalf("node a: %d %v", status, out)
	}
	status, out, _ := tokenCall(t, b, assertionForm(raw))
	if status != http.StatusUnauthorized || out["error_description"] != "client_assertion: this assertion (its jti) was used before" {
		t.Fatalf("the replay at node b: %d %v", status, out)
	}
}

// TestPrivateKeyJWTAtEveryEndpoint: revocation and introspection take the
// same assertions (aud the issuer).
func TestPrivateKeyJWTAtEveryEndpoint(t *testing.T) {
	s := keyServer(t, func(c *Config) {
		c.Clients.Static[len(c.Clients.Static)-3].IntrospectAll = true // kc
	})
	_, tok, _ := tokenCall(t, s, assertionForm(assertion(t, "ec", jose.ES256, clientClaims("kc"))))
	at := tok["access_token"].(string)
	call := func(h func(http.ResponseWriter, *http.Request), path string, form url.Values) (int, string) {
		r := httptest.NewRequest(http.MethodPost, "https://auth.test"+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h(w, r)
		return w.Code, w.Body.String()
	}
	form := func(extra ...string) url.Values {
		return withFields(url.Values{"token": {at}, "client_assertion_type": {jwtBearerAssertionType},
			"client_assertion": {assertion(t, "ec", jose.ES256, clientClaims("kc"))}}, extra...)
	}
	if status, body := call(s.introspect, "/oauth/introspect", form()); status != http.StatusOK || !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"client_id":"kc"`) {
		t.Errorf("introspection: %d %s", status, body)
	}
	if status, body := call(s.introspect, "/oauth/introspect", form("client_assertion", assertion(t, "ec2", jose.ES256, clientClaims("kc")))); status != http.StatusUnauthorized || !strings.Contains(body, "invalid_client") {
		t.Errorf("introspection with a foreign key: %d %s", status, body)
	}
	if status, body := call(s.revoke, "/oauth/revoke", form()); status != http.StatusOK {
		t.Errorf("revocation: %d %s", status, body)
	}
	if status, body := call(s.introspect, "/oauth/introspect", form()); status != http.StatusOK || !strings.Contains(body, `"active":false`) {
		t.Errorf("introspection after the revocation: %d %s", status, body)
	}
}

// TestPrivateKeyJWTFromAKeySetURL: a jwks_uri set is fetched over the
// guarded fetcher and cached; an assertion with a kid it lacks fetches it
// again at most once a minute, so a key the client just added works and a
// stream of unknown kids costs one fetch.
func TestPrivateKeyJWTFromAKeySetURL(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	published := publicSet(t, "ec")
	f.pages["/jwks.json"] = func(w http.ResponseWriter, _ string) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(published)
	}
	s := keyServer(t, func(c *Config) {
		c.Clients.Static = append(c.Clients.Static, storage.Client{ID: "ku", JWKSURI: f.srv.URL + "/jwks.json", GrantTypes: []string{grantClientCredentials}, TokenEndpointAuthMethod: "private_key_jwt"})
	})
	pool := f.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	s.keySets = clientKeySets(newSafeFetcher(map[string]bool{strings.TrimPrefix(f.srv.URL, "https://"): true}, pool))
	use := func(key string, alg jose.SignatureAlgorithm) (int, map[string]any) {
		status, out, _ := tokenCall(t, s, assertionForm(assertion(t, key, alg, clientClaims("ku"))))
		return status, out
	}
	if status, out := use("ec", jose.ES256); status != http.StatusOK {
		t.Fatalf("first: %d %v", status, out)
	}
	if status, _ := use("ec", jose.ES256); status != http.StatusOK || f.hits.Load() != 1 {
		t.Fatalf("second: %d after %d fetches, want the cached set", status, f.hits.Load())
	}
	// A key the client has not published: the set was fetched less than a
	// minute ago, so no fetch whatever the kids.
	for range 5 {
		if status, out := use("ec2", jose.ES256); status != http.StatusUnauthorized || !strings.Contains(out["error_description"].(string), "no key with the JWT's kid") {
			t.Fatalf("an unpublished key: %d %v", status, out)
		}
	}
	if f.hits.Load() != 1 {
		t.Fatalf("%d fetches after unknown kids, want 1", f.hits.Load())
	}
	// The client adds a key; once the minute is over it is fetched.
	mu.Lock()
	published = publicSet(t, "ec", "rsa")
	mu.Unlock()
	set := s.keySets.remote[f.srv.URL+"/jwks.json"]
	set.mu.Lock()
	set.tried = set.tried.Add(-keySetRefetchFloor)
	set.mu.Unlock()
	if status, out := use("rsa", jose.RS256); status != http.StatusOK || f.hits.Load() != 2 {
		t.Fatalf("a key just added: %d %v after %d fetches", status, out, f.hits.Load())
	}
	// A set that cannot be fetched any more is no keys.
	delete(f.pages, "/jwks.json")
	set.mu.Lock()
	set.fetched, set.tried = set.fetched.Add(-keySetMaxAge), set.tried.Add(-keySetRefetchFloor)
	set.mu.Unlock()
	if status, out := use("ec", jose.ES256); status != http.StatusUnauthorized || out["error_description"] != "the client's jwks_uri answered 404, not 200" {
		t.Fatalf("a key set gone: %d %v", status, out)
	}
}

// TestClientKeySets: what a client may register as its keys.
func TestClientKeySets(t *testing.T) {
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKeys()["ec"], KeyID: "p"}}})
	oct, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "o"}}})
	withAlg := func(alg, use string) []byte {
		raw, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKeys()["ec"].Public(), Algorithm: alg, Use: use}}})
		return raw
	}
	many := jose.JSONWebKeySet{}
	for range maxKeysPerSet + 1 {
		many.Keys = append(many.Keys, jose.JSONWebKey{Key: testKeys()["ed"].Public()})
	}
	tooMany, _ := json.Marshal(many)
	for name, tc := range map[string]struct {
		raw  []byte
		want string
	}{
		"EC, RSA and Ed25519": {publicSet(t, "ec", "rsa", "ed"), ""},
		"alg ES256, use sig":  {withAlg("ES256", "sig"), ""},
		"a private key":       {priv, "key 1 of the set: a private or symmetric key must not be registered"},
		"a symmetric key":     {oct, "key 1 of the set: a private or symmetric key must not be registered"},
		"RSA 1024":            {publicSet(t, "rsa1024"), "key 1 of the set: an RSA key of 1024 bits is too short"},
		"P-384":               {publicSet(t, "ec384"), "key 1 of the set: curve P-384 is not supported"},
		"alg RS256 on an EC":  {withAlg("RS256", ""), `key 1 of the set: alg "RS256" does not fit the key`},
		"use enc":             {withAlg("", "enc"), `key 1 of the set: use "enc"`},
		"no keys":             {[]byte(`{"keys":[]}`), "the key set has no keys"},
		"too many keys":       {tooMany, "the key set has more than 20 keys"},
		"not a set":           {[]byte(`[1]`), "the key set is not a JWK Set"},
		"too large":           {[]byte(`{"keys":[],"x":"` + strings.Repeat("x", maxKeySetBytes) + `"}`), "the key set is larger than 16 KiB"},
	} {
		_, err := parseKeySet(tc.raw)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	for name, tc := range map[string]struct {
		kind clientKind
		jwks []byte
		uri  string
		want string
	}{
		"keys":                {keyClient, publicSet(t, "ec"), "", ""},
		"a URL":               {keyClient, nil, "https://client.example/jwks.json", ""},
		"both":                {keyClient, publicSet(t, "ec"), "https://client.example/jwks.json", "use jwks or jwks_uri, not both"},
		"neither":             {keyClient, nil, "", "private_key_jwt needs the client's public keys"},
		"http":                {keyClient, nil, "http://client.example/jwks.json", "jwks_uri must be an https URL"},
		"another port":        {keyClient, nil, "https://client.example:8443/jwks.json", "jwks_uri must use port 443"},
		"user information":    {keyClient, nil, "https://u:p@client.example/jwks.json", "jwks_uri must not carry user information"},
		"a fragment":          {keyClient, nil, "https://client.example/jwks.json#k", "jwks_uri must not have a fragment"},
		"keys with a secret":  {secretClient, publicSet(t, "ec"), "", "jwks and jwks_uri are for clients that use private_key_jwt"},
		"a URL for a public":  {publicClient, nil, "https://client.example/jwks.json", "jwks and jwks_uri are for clients that use private_key_jwt"},
		"a secret, no keys":   {secretClient, nil, "", ""},
		"a private key there": {keyClient, priv, "", "key 1 of the set: a private or symmetric key"},
	} {
		err := checkClientKeys(tc.kind, tc.jwks, tc.uri, nil)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// FuzzClientAssertion: whatever a request carries as client_assertion,
// reading it returns a parsed JWT naming one client, or an error; never a
// panic.
func FuzzClientAssertion(f *testing.F) {
	f.Add(assertion(f, "ec", jose.ES256, clientClaims("kc")))
	f.Add(assertion(f, "rsa", jose.PS256, clientClaims("kc"), "typ", "JWT"))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		cred, ok, err := readAssertion(authRequest{form: assertionForm(raw)})
		if !ok {
			t.Fatal("an assertion was not seen")
		}
		if err == nil && (cred.assertion == nil || cred.clientID == "" || cred.clientID != cred.assertion.iss) {
			t.Fatalf("read %+v from %q", cred, raw)
		}
	})
}

// TestRegisterWithKeys: dynamic registration takes jwks or jwks_uri with
// private_key_jwt, answers them back with no secret, and the client then
// redeems its code with an assertion and nothing else.
func TestRegisterWithKeys(t *testing.T) {
	s := keyServer(t, func(c *Config) { c.Clients.DynamicRegistration, c.Clients.UnusedClientTTL = true, time.Hour })
	body := func(method string, keys string) string {
		return `{"redirect_uris":["https://agent.test/cb"],"client_name":"Agent","token_endpoint_auth_method":"` + method + `"` + keys + `}`
	}
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKeys()["ec"], KeyID: "p"}}})
	for name, tc := range map[string]struct{ body, want string }{
		"jwks and jwks_uri":         {body("private_key_jwt", `,"jwks":`+string(publicSet(t, "ec"))+`,"jwks_uri":"https://agent.test/jwks.json"`), "use jwks or jwks_uri, not both"},
		"no keys":                   {body("private_key_jwt", ""), "private_key_jwt needs the client's public keys: jwks or jwks_uri"},
		"a private key":             {body("private_key_jwt", `,"jwks":`+string(priv)), "key 1 of the set: a private or symmetric key must not be registered"},
		"keys with a secret method": {body("client_secret_basic", `,"jwks":`+string(publicSet(t, "ec"))), "jwks and jwks_uri are for clients that use private_key_jwt"},
		"jwks_uri over http":        {body("private_key_jwt", `,"jwks_uri":"http://agent.test/jwks.json"`), "jwks_uri must be an https URL"},
		"jwks not an object":        {body("private_key_jwt", `,"jwks":"keys"`), "the key set is not a JWK Set"},
	} {
		status, out := registerRaw(t, s, tc.body, "")
		if status != http.StatusBadRequest || out["error"] != "invalid_client_metadata" || !strings.HasPrefix(fmt.Sprint(out["error_description"]), tc.want) {
			t.Errorf("%s: %d %v, want 400 invalid_client_metadata %q", name, status, out, tc.want)
		}
	}
	status, out := registerRaw(t, s, body("private_key_jwt", `,"jwks":`+string(publicSet(t, "ed"))), "")
	if status != http.StatusCreated || out["client_secret"] != nil || out["token_endpoint_auth_method"] != "private_key_jwt" || out["jwks"] == nil {
		t.Fatalf("registering with keys: %d %v", status, out)
	}
	id := out["client_id"].(string)
	code := storeCode(t, s, func(ac *storage.AuthorizationCode) { ac.ClientID, ac.RedirectURI = id, "https://agent.test/cb" })
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {testVerifier}}
	if status, out, _ := tokenCall(t, s, withFields(form, "client_id", id)); status != http.StatusUnauthorized {
		t.Fatalf("the code with the client_id alone: %d %v", status, out)
	}
	form = withFields(form, "client_assertion_type", jwtBearerAssertionType, "client_assertion", assertion(t, "ed", jose.EdDSA, clientClaims(id)))
	if status, out, _ := tokenCall(t, s, form); status != http.StatusOK || out["refresh_token"] == nil {
		t.Fatalf("the code with an assertion: %d %v", status, out)
	}
}

// TestMetadataDocumentWithKeys: a document that offers private_key_jwt
// with its keys gets it (the strongest both sides support); one that
// offers it without keys falls back to none when it also supports none;
// one that names only a secret method is refused.
func TestMetadataDocumentWithKeys(t *testing.T) {
	f := newFixture(t)
	s := cimdServer(t, f)
	// The shape of ChatGPT's document: private_key_jwt with a jwks_uri,
	// loopback and https redirect URIs.
	f.pages["/chatgpt-jwks.json"] = func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(publicSet(t, "ed"))
	}
	chatgpt := f.document("/chatgpt.json", "", func(id string) string {
		return `{"client_id":"` + id + `","client_name":"ChatGPT","redirect_uris":["https://chatgpt.com/connector_platform_oauth_redirect","http://127.0.0.1/cb"],` +
			`"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"` + f.srv.URL + `/chatgpt-jwks.json","grant_types":["authorization_code","refresh_token"],"response_types":["code"]}`
	})
	inline := f.document("/inline.json", "", func(id string) string {
		return `{"client_id":"` + id + `","client_name":"Inline","redirect_uris":["https://agent.test/cb"],` +
			`"token_endpoint_auth_methods_supported":["none","private_key_jwt"],"jwks":` + string(publicSet(t, "ec")) + `}`
	})
	keyless := f.document("/keyless.json", "", goodDocument)
	secretOnly := f.document("/secret-only.json", "", func(id string) string {
		return `{"client_id":"` + id + `","client_name":"S","redirect_uris":["https://agent.test/cb"],"token_endpoint_auth_method":"client_secret_basic"}`
	})
	keysAlone := f.document("/keys-alone.json", "", func(id string) string {
		return `{"client_id":"` + id + `","client_name":"K","redirect_uris":["https://agent.test/cb"],"token_endpoint_auth_method":"private_key_jwt"}`
	})
	for id, want := range map[string]string{chatgpt: "private_key_jwt", inline: "private_key_jwt", keyless: "none"} {
		c, err := s.resolveClient(context.Background(), id)
		if err != nil || c.TokenEndpointAuthMethod != want || kindOf(c).String() != map[string]string{"private_key_jwt": "client that has keys", "none": "public client"}[want] {
			t.Errorf("%s: %+v %v, want %s", id, c, err, want)
		}
	}
	for id, want := range map[string]string{
		secretOnly: "the metadata document supports no client authentication this server accepts",
		keysAlone:  "the metadata document supports no client authentication this server accepts",
	} {
		if _, err := s.resolveClient(context.Background(), id); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q", id, err, want)
		}
	}
	// ChatGPT's client redeems its code (a loopback redirect, any port)
	// and refreshes with assertions its jwks_uri verifies.
	code := storeCode(t, s, func(ac *storage.AuthorizationCode) {
		ac.ClientID, ac.RedirectURI = chatgpt, "http://127.0.0.1:43117/cb"
	})
	status, out, _ := tokenCall(t, s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {testVerifier},
		"client_assertion_type": {jwtBearerAssertionType}, "client_assertion": {assertion(t, "ed", jose.EdDSA, clientClaims(chatgpt))}})
	if status != http.StatusOK {
		t.Fatalf("ChatGPT's code: %d %v", status, out)
	}
	status, out, _ = tokenCall(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)},
		"client_assertion_type": {jwtBearerAssertionType}, "client_assertion": {assertion(t, "ed", jose.EdDSA, clientClaims(chatgpt, "aud", "https://auth.test/oauth/token"))}})
	if status != http.StatusOK {
		t.Fatalf("ChatGPT's refresh: %d %v", status, out)
	}
	// The inline document's client authenticates with its key, not alone.
	code = storeCode(t, s, func(ac *storage.AuthorizationCode) { ac.ClientID, ac.RedirectURI = inline, "https://agent.test/cb" })
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {testVerifier}, "client_id": {inline}}
	if status, out, _ := tokenCall(t, s, form); status != http.StatusUnauthorized || !strings.Contains(fmt.Sprint(out["error_description"]), "private_key_jwt") {
		t.Fatalf("a key client alone: %d %v", status, out)
	}
	form = withFields(form, "client_assertion_type", jwtBearerAssertionType, "client_assertion", assertion(t, "ec", jose.ES256, clientClaims(inline)))
	if status, out, _ := tokenCall(t, s, form); status != http.StatusOK {
		t.Fatalf("with its assertion: %d %v", status, out)
	}
}
