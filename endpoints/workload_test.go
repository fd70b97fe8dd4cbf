package endpoints

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// workloadServer trusts two workload platforms: "cluster", whose keys
// (the test key "rsa") are configured as a Kubernetes cluster's would be
// (jwks_file), and "github", discovered from the stand-in's metadata
// (the test key "ec"), limited to two repositories and to mcp:read; and
// the stand-in as an enterprise_idp too, so both kinds share the grant.
func workloadServer(t *testing.T, idp *standInIdP) *Server {
	s := keyServer(t, func(c *Config) {
		c.Grants.WorkloadIssuers = []WorkloadIssuer{
			{Name: "cluster", Issuer: "https://kubernetes.default.svc", JWKS: publicSet(t, "rsa"),
				AllowClaims: []WorkloadClaimRule{{Claim: "sub", Values: []string{"system:serviceaccount:agents:*"}}}},
			{Name: "github", Issuer: idp.srv.URL, Audience: "mcp-prod", Scopes: []string{"mcp:read"},
				AllowClaims: []WorkloadClaimRule{{Claim: "repository", Values: []string{"acme/agents", "acme/tools"}}, {Claim: "ref", Values: []string{"refs/heads/main"}}}},
		}
		c.Grants.EnterpriseIDPs = []EnterpriseIDP{{Name: "corp", Issuer: idp.srv.URL, Subject: "sub"}}
	})
	s.trusted.client = idp.srv.Client()
	return s
}

// k8sToken is a projected service-account token: no typ, RS256.
func k8sToken(t *testing.T, change ...any) string {
	now := time.Now()
	c := map[string]any{"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:agents:runner", "aud": []string{"https://auth.test"},
		"jti": randomToken(), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": "agents", "serviceaccount": map[string]any{"name": "runner"}}}
	for i := 0; i+1 < len(change); i += 2 {
		if change[i+1] == nil {
			delete(c, change[i].(string))
		} else {
			c[change[i].(string)] = change[i+1]
		}
	}
	return assertion(t, "rsa", jose.RS256, c)
}

// githubToken is a GitHub Actions OIDC token: typ JWT, ES256 here.
func githubToken(t *testing.T, idp *standInIdP, change ...any) string {
	now := time.Now()
	c := map[string]any{"iss": idp.srv.URL, "sub": "repo:acme/agents:ref:refs/heads/main", "aud": "mcp-prod", "jti": randomToken(),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "repository": "acme/agents", "ref": "refs/heads/main"}
	for i := 0; i+1 < len(change); i += 2 {
		if change[i+1] == nil {
			delete(c, change[i].(string))
		} else {
			c[change[i].(string)] = change[i+1]
		}
	}
	return assertion(t, "ec", jose.ES256, c, "typ", "JWT")
}

func workloadForm(token string, extra ...string) url.Values {
	return withFields(url.Values{"grant_type": {grantJWTBearer}, "assertion": {token}}, extra...)
}

func TestWorkloadIdentity(t *testing.T) {
	idp := newStandInIdP(t)
	s := workloadServer(t, idp)
	ctx := context.Background()

	status, out, _ := tokenCall(t, s, workloadForm(k8sToken(t)))
	if status != http.StatusOK || out["refresh_token"] != nil || out["scope"] != "mcp:read mcp:write" {
		t.Fatalf("a service-account token: %d %v", status, out)
	}
	claims, _, err := s.verifyCached(ctx, out["access_token"].(string), true)
	if err != nil || claims.Subject != "cluster:system:serviceaccount:agents:runner" || claims.ClientID != claims.Subject || claims.GrantType != gtyWorkload || claims.IDP != "cluster" {
		t.Fatalf("its token: %+v %v", claims, err)
	}
	if v := claims.placeholders; v[0] != "" || v[1] != claims.Subject || v[2] != "workload" {
		t.Errorf("placeholders: user %q, sub %q, subject_type %q", v[0], v[1], v[2])
	}

	status, out, _ = tokenCall(t, s, workloadForm(githubToken(t, idp)))
	if status != http.StatusOK || out["scope"] != "mcp:read" {
		t.Fatalf("a GitHub Actions token: %d %v", status, out)
	}
	// An ID-JAG of the same issuer goes the ID-JAG's way.
	if status, out, _ = tokenCall(t, s, jagForm(idp.idJAG(t, "m"))); status != http.StatusOK || out["scope"] != "mcp:read" {
		t.Fatalf("an ID-JAG beside workloads: %d %v", status, out)
	}

	replayed := k8sToken(t)
	tokenCall(t, s, workloadForm(replayed))
	now := time.Now()
	for _, tc := range []struct {
		name string
		form url.Values
		want string
	}{
		{"replayed", workloadForm(replayed), "assertion: this assertion (its jti) was used before"},
		{"aud the token endpoint", workloadForm(k8sToken(t, "aud", "https://auth.test/oauth/token")), ""},
		{"aud another", workloadForm(k8sToken(t, "aud", "https://other.test")), "assertion: aud must be this server alone"},
		{"the issuer URL where an audience is configured", workloadForm(githubToken(t, idp, "aud", "https://auth.test")), "assertion: aud must be this server alone (mcp-prod or https://auth.test/oauth/token)"},
		{"valid for a day", workloadForm(k8sToken(t, "exp", now.Add(24*time.Hour).Unix())), "assertion: the JWT is valid for longer than 1h0m0s (exp)"},
		{"expired", workloadForm(k8sToken(t, "iat", now.Add(-2*time.Hour).Unix(), "nbf", nil, "exp", now.Add(-time.Hour).Unix())), "assertion: the JWT has expired (exp)"},
		{"no jti", workloadForm(k8sToken(t, "jti", nil)), "assertion: jti is missing"},
		{"no sub", workloadForm(k8sToken(t, "sub", nil)), "assertion: sub is missing"},
		{"another namespace", workloadForm(k8sToken(t, "sub", "system:serviceaccount:default:runner")), "assertion: claim sub is not one workload_issuer cluster allows"},
		{"another repository", workloadForm(githubToken(t, idp, "repository", "evil/agents")), "assertion: claim repository is not one workload_issuer github allows"},
		{"another branch", workloadForm(githubToken(t, idp, "ref", "refs/heads/dev")), "assertion: claim ref is not one workload_issuer github allows"},
		{"a claim missing", workloadForm(githubToken(t, idp, "ref", nil)), "assertion: claim ref is not one workload_issuer github allows"},
		{"a claim of another type", workloadForm(githubToken(t, idp, "ref", 7)), "assertion: claim ref is not one workload_issuer github allows"},
		{"an array claim", workloadForm(githubToken(t, idp, "ref", []string{"refs/tags/v1", "refs/heads/main"})), ""},
		{"a scope beyond the issuer's", workloadForm(githubToken(t, idp), "scope", "mcp:write"), "assertion: scope mcp:write is not granted by the assertion"},
		{"signed by another key", workloadForm(assertion(t, "ec2", jose.ES256, map[string]any{"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:agents:x", "aud": "https://auth.test", "jti": "j", "exp": now.Add(time.Minute).Unix()}, "kid", "rsa")),
			"assertion: the signature does not verify with the signer's keys"},
		{"an unknown issuer", workloadForm(k8sToken(t, "iss", "https://evil.example")), "assertion: iss is not a workload_issuer of this server"},
		{"an ID-JAG of an unknown issuer", jagForm(idp.idJAG(t, "m", "iss", "https://evil.example")), "assertion: iss is not an enterprise_idp of this server"},
		{"typ at+jwt", workloadForm(assertion(t, "rsa", jose.RS256, map[string]any{"iss": "https://kubernetes.default.svc"}, "typ", "at+jwt")), "assertion: the JWT's typ is not oauth-id-jag+jwt or jwt or jose"},
		{"a resource not ours", workloadForm(k8sToken(t), "resource", "https://elsewhere.test"), "resource is not served by this authorization server"},
	} {
		status, out, _ := tokenCall(t, s, tc.form)
		switch {
		case tc.want == "" && status != http.StatusOK:
			t.Errorf("%s: %d %v", tc.name, status, out)
		case tc.want != "" && (status != http.StatusBadRequest || !strings.HasPrefix(fmt.Sprint(out["error_description"]), tc.want)):
			t.Errorf("%s: %d %v, want 400 %q", tc.name, status, out, tc.want)
		}
	}
}

// TestWorkloadWithoutEnterpriseIDP: with workload issuers alone the grant
// takes untyped tokens, and refuses an ID-JAG.
func TestWorkloadWithoutEnterpriseIDP(t *testing.T) {
	s := keyServer(t, func(c *Config) {
		c.Grants.WorkloadIssuers = []WorkloadIssuer{{Name: "cluster", Issuer: "https://kubernetes.default.svc", JWKS: publicSet(t, "rsa"),
			AllowClaims: []WorkloadClaimRule{{Claim: "sub", Values: []string{"system:serviceaccount:agents:runner"}}}}}
	})
	if status, out, _ := tokenCall(t, s, workloadForm(k8sToken(t))); status != http.StatusOK {
		t.Fatalf("a service-account token: %d %v", status, out)
	}
	jag := assertion(t, "rsa", jose.RS256, map[string]any{"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:agents:runner", "aud": "https://auth.test",
		"jti": "j", "exp": time.Now().Add(time.Minute).Unix(), "client_id": "m"}, "typ", idJAGType)
	if status, out, _ := tokenCall(t, s, jagForm(jag)); status != http.StatusBadRequest || out["error_description"] != "assertion: the JWT's typ is not jwt or jose" {
		t.Errorf("an ID-JAG: %d %v", status, out)
	}
}
