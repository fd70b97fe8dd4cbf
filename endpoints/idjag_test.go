package endpoints

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// standInIdP is a company identity provider as the ID-JAG draft and the
// MCP extension describe it: RFC 8414 metadata naming its jwks_uri, its
// keys (the test key "ec"), over TLS on loopback.
type standInIdP struct {
	*fixture
	jwksHits atomic.Int32
}

func newStandInIdP(t testing.TB) *standInIdP {
	idp := &standInIdP{fixture: newFixture(t)}
	idp.pages["/.well-known/oauth-authorization-server"] = func(w http.ResponseWriter, _ string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"token_endpoint":%q}`, idp.srv.URL, idp.srv.URL+"/keys", idp.srv.URL+"/token")
	}
	idp.pages["/keys"] = func(w http.ResponseWriter, _ string) {
		idp.jwksHits.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		// An encryption key beside the signing one, as providers publish.
		w.Write([]byte(strings.Replace(string(publicSet(t, "ec", "rsa#enc")), `"kid":"rsa#enc"`, `"kid":"rsa#enc","use":"enc"`, 1)))
	}
	return idp
}

// idJAG is an ID-JAG of the stand-in for client, with changes.
func (idp *standInIdP) idJAG(t testing.TB, client string, change ...any) string {
	now := time.Now()
	c := map[string]any{"iss": idp.srv.URL, "sub": "u-1234", "aud": "https://auth.test", "client_id": client, "jti": randomToken(),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "resource": "https://auth.test/mcp", "scope": "mcp:read",
		"email": "alice@corp.example"}
	for i := 0; i+1 < len(change); i += 2 {
		if change[i+1] == nil {
			delete(c, change[i].(string))
		} else {
			c[change[i].(string)] = change[i+1]
		}
	}
	return assertion(t, "ec", jose.ES256, c, "typ", idJAGType)
}

// idJAGServer trusts the stand-in; m (a secret) and kc (keys) are
// confidential clients, pub1 public.
func idJAGServer(t testing.TB, idp *standInIdP, mutate ...func(*EnterpriseIDP)) (*Server, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	e := EnterpriseIDP{Name: "corp", Issuer: idp.srv.URL, Subject: "sub"}
	for _, m := range mutate {
		m(&e)
	}
	s := keyServer(t, func(c *Config) {
		c.Grants.EnterpriseIDPs = []EnterpriseIDP{e}
		c.Audit = zap.New(core)
	})
	s.trusted.client = idp.srv.Client()
	return s, logs
}

func jagForm(assertion string, extra ...string) url.Values {
	return withFields(url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}, "client_id": {"m"}, "client_secret": {"m-secret-0123456789"}}, extra...)
}

func TestIDJAGGrant(t *testing.T) {
	idp := newStandInIdP(t)
	s, logs := idJAGServer(t, idp)
	now := time.Now()

	status, out, h := tokenCall(t, s, jagForm(idp.idJAG(t, "m")))
	if status != http.StatusOK || out["refresh_token"] != nil || out["token_type"] != "Bearer" || out["scope"] != "mcp:read" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("an ID-JAG: %d %v", status, out)
	}
	at := out["access_token"].(string)
	claims, _, err := s.verifyCached(context.Background(), at, true)
	if err != nil || claims.Subject != "u-1234" || claims.Audience[0] != "https://auth.test/mcp" || claims.ClientID != "m" || claims.IDP != "corp" || claims.Email != "alice@corp.example" {
		t.Fatalf("the token: %+v %v", claims, err)
	}
	if e := logs.FilterMessage(eventTokenIssued).All(); len(e) != 1 || e[0].ContextMap()["grant_type"] != grantJWTBearer || e[0].ContextMap()["idp"] != "corp" {
		t.Errorf("token_issued: %v", e)
	}

	replayed := idp.idJAG(t, "m")
	tokenCall(t, s, jagForm(replayed))
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithType(idJAGType))
	hmac, _ := jwt.Signed(hs).Claims(map[string]any{"iss": idp.srv.URL, "sub": "u", "aud": "https://auth.test", "client_id": "m", "jti": "j", "exp": now.Add(time.Minute).Unix()}).Serialize()
	payload, _ := json.Marshal(map[string]any{"iss": idp.srv.URL, "sub": "u", "aud": "https://auth.test", "client_id": "m", "jti": "j", "exp": now.Add(time.Minute).Unix()})
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"oauth-id-jag+jwt"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	typed := func(typ string) string {
		return assertion(t, "ec", jose.ES256, map[string]any{"iss": idp.srv.URL, "sub": "u", "aud": "https://auth.test", "client_id": "m", "jti": randomToken(), "exp": now.Add(time.Minute).Unix()}, "typ", typ)
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		want   string
	}{
		{"replayed", jagForm(replayed), 400, "invalid_grant", "assertion: this assertion (its jti) was used before"},
		{"no assertion", jagForm(""), 400, "invalid_request", "assertion is missing"},
		{"no typ", jagForm(typed("")), 400, "invalid_grant", "assertion: the JWT's typ is not oauth-id-jag+jwt"},
		{"typ JWT", jagForm(typed("JWT")), 400, "invalid_grant", "assertion: the JWT's typ is not oauth-id-jag+jwt"},
		{"alg none", jagForm(none), 400, "invalid_grant", "assertion: not a JWT signed with RS256, PS256, ES256, EdDSA"},
		{"HS256", jagForm(hmac), 400, "invalid_grant", "assertion: not a JWT signed with RS256, PS256, ES256, EdDSA"},
		{"a foreign key under the provider's kid", jagForm(assertion(t, "ec2", jose.ES256, map[string]any{"iss": idp.srv.URL, "sub": "u", "aud": "https://auth.test", "client_id": "m", "jti": "x", "exp": now.Add(time.Minute).Unix()}, "typ", idJAGType, "kid", "ec")),
			400, "invalid_grant", "assertion: the signature does not verify with the signer's keys"},
		{"an unknown kid", jagForm(assertion(t, "ec2", jose.ES256, map[string]any{"iss": idp.srv.URL, "sub": "u", "aud": "https://auth.test", "client_id": "m", "jti": "x", "exp": now.Add(time.Minute).Unix()}, "typ", idJAGType)),
			400, "invalid_grant", "assertion: the signer has no key with the JWT's kid"},
		{"the provider's encryption key", jagForm(assertion(t, "rsa", jose.RS256, map[string]any{"iss": idp.srv.URL, "sub": "u", "aud": "https://auth.test", "client_id": "m", "jti": "x", "exp": now.Add(time.Minute).Unix()}, "typ", idJAGType, "kid", "rsa#enc")),
			400, "invalid_grant", "assertion: the signer has no key with the JWT's kid"},
		{"another issuer", jagForm(idp.idJAG(t, "m", "iss", "https://evil.example")), 400, "invalid_grant", "assertion: iss is not an enterprise_idp of this server"},
		{"aud another server", jagForm(idp.idJAG(t, "m", "aud", "https://other.test")), 400, "invalid_grant", "assertion: aud must be this server alone (https://auth.test)"},
		{"aud the token endpoint", jagForm(idp.idJAG(t, "m", "aud", "https://auth.test/oauth/token")), 400, "invalid_grant", "assertion: aud must be this server alone (https://auth.test)"},
		{"another client_id", jagForm(idp.idJAG(t, "kc")), 400, "invalid_grant", "assertion: client_id is not the authenticated client"},
		{"no client_id", jagForm(idp.idJAG(t, "m", "client_id", nil)), 400, "invalid_grant", "assertion: client_id is not the authenticated client"},
		{"expired", jagForm(idp.idJAG(t, "m", "iat", now.Add(-10*time.Minute).Unix(), "exp", now.Add(-5*time.Minute).Unix())), 400, "invalid_grant", "assertion: the JWT has expired (exp)"},
		{"too long-lived", jagForm(idp.idJAG(t, "m", "exp", now.Add(time.Hour).Unix())), 400, "invalid_grant", "assertion: the JWT is valid for longer than 5m0s (exp)"},
		{"no jti", jagForm(idp.idJAG(t, "m", "jti", nil)), 400, "invalid_grant", "assertion: jti is missing"},
		{"no sub", jagForm(idp.idJAG(t, "m", "sub", nil)), 400, "invalid_grant", "assertion: sub is missing"},
		{"a resource not ours", jagForm(idp.idJAG(t, "m", "resource", "https://elsewhere.test/mcp")), 400, "invalid_grant", "assertion: resource is not a resource of this server"},
		{"another resource requested", jagForm(idp.idJAG(t, "m"), "resource", "https://auth.test"), 400, "invalid_grant", "assertion: the requested resource is not the assertion's"},
		{"a scope outside the assertion's", jagForm(idp.idJAG(t, "m"), "scope", "mcp:write"), 400, "invalid_grant", "assertion: scope mcp:write is not granted by the assertion"},
		{"a scope outside the catalogue", jagForm(idp.idJAG(t, "m", "scope", "admin"), "scope", "admin"), 400, "invalid_grant", "assertion: scope admin is not granted by the assertion"},
		{"no client authentication", withFields(jagForm(idp.idJAG(t, "m")), "client_id", "", "client_secret", ""), 401, "invalid_client", "an ID-JAG is redeemed by the client it names, authenticated"},
		{"a public client", withFields(jagForm(idp.idJAG(t, "pub1")), "client_id", "pub1", "client_secret", ""), 400, "unauthorized_client", "an ID-JAG is redeemed by a client that authenticates"},
		{"a wrong secret", jagForm(idp.idJAG(t, "m"), "client_secret", "guess"), 401, "invalid_client", "wrong client secret"},
	} {
		status, out, _ := tokenCall(t, s, tc.form)
		if status != tc.status || out["error"] != tc.code || !strings.HasPrefix(fmt.Sprint(out["error_description"]), tc.want) {
			t.Errorf("%s: %d %v, want %d %s %q", tc.name, status, out, tc.status, tc.code, tc.want)
		}
	}
	refusals := logs.FilterMessage(eventAssertionRefused).All()
	if len(refusals) < 10 || refusals[0].ContextMap()["idp"] != "corp" || refusals[0].ContextMap()["reason"] == "" {
		t.Errorf("assertion_refused events: %d %v", len(refusals), refusals)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), strings.Split(replayed, ".")[1]) {
			t.Errorf("the log holds an ID-JAG: %v", e.ContextMap())
		}
	}
	if hits := idp.jwksHits.Load(); hits > 2 {
		t.Errorf("the provider's keys were fetched %d times", hits)
	}
}

// TestIDJAGScopesAndResource: the token's scope is what the request asks
// within the assertion's and the catalogue, its resource the assertion's
// or, without one, the request's or the default.
func TestIDJAGScopesAndResource(t *testing.T) {
	idp := newStandInIdP(t)
	s, _ := idJAGServer(t, idp)
	for _, tc := range []struct {
		name                    string
		claims                  []any
		extra                   []string
		wantScope, wantResource string
	}{
		{"the assertion's scope", nil, nil, "mcp:read", "https://auth.test/mcp"},
		{"narrowed", []any{"scope", "mcp:read mcp:write"}, []string{"scope", "mcp:write"}, "mcp:write", "https://auth.test/mcp"},
		{"no scope claim: the catalogue", []any{"scope", nil}, nil, "mcp:read mcp:write", "https://auth.test/mcp"},
		{"beyond the catalogue dropped", []any{"scope", "mcp:read admin"}, nil, "mcp:read", "https://auth.test/mcp"},
		{"no resource claim: the request's", []any{"resource", nil}, []string{"resource", "https://auth.test"}, "mcp:read", "https://auth.test"},
		{"no resource at all: the default", []any{"resource", nil}, nil, "mcp:read", "https://auth.test/mcp"},
	} {
		status, out, _ := tokenCall(t, s, jagForm(idp.idJAG(t, "m", tc.claims...), tc.extra...))
		if status != http.StatusOK {
			t.Errorf("%s: %d %v", tc.name, status, out)
			continue
		}
		claims, _, err := s.verifyCached(context.Background(), out["access_token"].(string), true)
		if err != nil || claims.Scope != tc.wantScope || claims.Audience[0] != tc.wantResource {
			t.Errorf("%s: scope %q, audience %v (%v), want %q %q", tc.name, claims.Scope, claims.Audience, err, tc.wantScope, tc.wantResource)
		}
	}
}

// TestIDJAGProviderSettings: clients limits who may redeem, subject email
// maps users by their address, and a client with keys authenticates with
// an assertion of its own.
func TestIDJAGProviderSettings(t *testing.T) {
	idp := newStandInIdP(t)
	s, _ := idJAGServer(t, idp, func(e *EnterpriseIDP) { e.Clients, e.Subject = []string{"kc"}, "email" })
	status, out, _ := tokenCall(t, s, jagForm(idp.idJAG(t, "m")))
	if status != 400 || out["error_description"] != "assertion: enterprise_idp corp does not grant to this client" {
		t.Errorf("a client the provider does not name: %d %v", status, out)
	}
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {idp.idJAG(t, "kc")},
		"client_assertion_type": {jwtBearerAssertionType}, "client_assertion": {assertion(t, "rsa", jose.RS256, clientClaims("kc"))}}
	status, out, _ = tokenCall(t, s, form)
	if status != http.StatusOK {
		t.Fatalf("a client with keys: %d %v", status, out)
	}
	if claims, _, _ := s.verifyCached(context.Background(), out["access_token"].(string), true); claims.Subject != "alice@corp.example" {
		t.Errorf("subject email: %q", claims.Subject)
	}
	form.Set("assertion", idp.idJAG(t, "kc", "email", nil))
	form.Set("client_assertion", assertion(t, "rsa", jose.RS256, clientClaims("kc")))
	if status, out, _ = tokenCall(t, s, form); status != 400 || out["error_description"] != "assertion: email is missing (enterprise_idp corp maps users by email)" {
		t.Errorf("no email: %d %v", status, out)
	}
}

// TestIDJAGGrantIsListedAndRevocable: the grant shows like any other
// (the provider named as how it was given), answers no authorization
// request's consent, and revoking it refuses its access tokens.
func TestIDJAGGrantIsListedAndRevocable(t *testing.T) {
	idp := newStandInIdP(t)
	s, _ := idJAGServer(t, idp)
	ctx := context.Background()
	_, out, _ := tokenCall(t, s, jagForm(idp.idJAG(t, "m")))
	at := out["access_token"].(string)
	grants, err := s.ListGrants(ctx, storage.GrantFilter{Subject: "u-1234"})
	if err != nil || len(grants) != 1 || grants[0].ClientID != "m" || grants[0].Resource != "https://auth.test/mcp" || grants[0].Scope != "mcp:read" {
		t.Fatalf("grants: %+v %v", grants, err)
	}
	c, _ := s.lookupClient(ctx, "m")
	if !s.needsConsent(ctx, &authorizeRequest{client: c, scope: "mcp:read", resource: "https://auth.test/mcp"}, "u-1234") {
		t.Error("a grant of the identity provider answered an authorization request's consent")
	}
	if n, err := s.RevokeGrants(ctx, storage.GrantFilter{Subject: "u-1234", ClientID: "m"}, "admin"); err != nil || n != 1 {
		t.Fatalf("revoking it: %d %v", n, err)
	}
	if _, _, err := s.verifyCached(ctx, at, true); err != errTokenRevoked {
		t.Errorf("its access token after the revocation: %v", err)
	}
}

// TestIDJAGMetadata: the grant and the ID-JAG profile are advertised only
// with an enterprise_idp.
func TestIDJAGMetadata(t *testing.T) {
	idp := newStandInIdP(t)
	with, _ := idJAGServer(t, idp)
	for s, want := range map[*Server]bool{with: true, newTestServer(t): false} {
		doc, _ := s.authorizationServerMetadata()
		var md map[string]any
		json.Unmarshal(doc, &md)
		grants, _ := json.Marshal(md["grant_types_supported"])
		profiles, _ := json.Marshal(md["authorization_grant_profiles_supported"])
		if got := strings.Contains(string(grants), grantJWTBearer) && string(profiles) == `["`+idJAGProfile+`"]`; got != want {
			t.Errorf("with an enterprise_idp %v: grant_types_supported %s, authorization_grant_profiles_supported %s", want, grants, profiles)
		}
	}
}

// FuzzJWTBearerAssertion: whatever the assertion, the grant answers a
// JSON OAuth error or a token, never a panic.
func FuzzJWTBearerAssertion(f *testing.F) {
	f.Add("a.b.c")
	f.Add(assertion(f, "ec", jose.ES256, map[string]any{"iss": "https://idp.test", "sub": "u"}, "typ", idJAGType))
	f.Add("")
	s := keyServer(f, func(c *Config) {
		c.Grants.EnterpriseIDPs = []EnterpriseIDP{{Name: "corp", Issuer: "https://idp.test", JWKSURI: "https://127.0.0.1:1/keys", Subject: "sub"}}
	})
	f.Fuzz(func(t *testing.T, raw string) {
		status, out, _ := tokenCall(t, s, jagForm(raw))
		if status == http.StatusOK || out["error"] == nil {
			t.Fatalf("%q: %d %v", raw, status, out)
		}
	})
}

// TestProviderDownCostsOneFetch: while a provider's metadata cannot be
// fetched, assertions naming it (a workload's need no client
// authentication) cost it one try a minute, not one per request.
func TestProviderDownCostsOneFetch(t *testing.T) {
	idp := newStandInIdP(t)
	delete(idp.pages, "/.well-known/oauth-authorization-server")
	s, _ := idJAGServer(t, idp)
	for range 5 {
		status, out, _ := tokenCall(t, s, jagForm(idp.idJAG(t, "m")))
		if status != http.StatusBadRequest || out["error_description"] != "assertion: the keys of enterprise_idp corp could not be fetched" {
			t.Fatalf("%d %v", status, out)
		}
	}
	if hits := idp.hits.Load(); hits != 2 { // the RFC 8414 document, then OpenID Connect's
		t.Errorf("%d requests to the provider, want 2", hits)
	}
}
