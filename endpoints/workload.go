package endpoints

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Workload identity federation (MCP SEP-1933): an agent running in
// Kubernetes, CI or under SPIFFE presents the JWT its platform gives it
// (a service-account token, a GitHub Actions OIDC token, a JWT-SVID) as
// the jwt-bearer grant's assertion, with no client authentication (RFC
// 7523 §3.1), instead of holding a secret of ours.

// WorkloadIssuer is a platform whose workload tokens this server takes.
type WorkloadIssuer struct {
	// Name is the issuer's name here: the token's subject is
	// <Name>:<the workload token's sub>.
	Name string
	// Issuer is the iss of its tokens.
	Issuer string
	// JWKS (a JWK Set) or JWKSURI are its keys; neither: discovered from
	// its metadata.
	JWKS    []byte
	JWKSURI string
	// Audience is the aud its tokens must carry ("": this server's
	// issuer); the token endpoint URL is accepted too.
	Audience string
	// AllowClaims must all hold.
	AllowClaims []WorkloadClaimRule
	// Scopes are the most a workload of this issuer may get (none: the
	// catalogue).
	Scopes []string
}

// WorkloadClaimRule requires a claim to equal (or, an array, contain) one
// of Values; a value ending in '*' matches any string it begins.
type WorkloadClaimRule struct {
	Claim  string
	Values []string
}

// workloadMaxLifetime bounds a workload token's exp after its iat: a
// Kubernetes projected service-account token lives at least ten minutes
// (an hour by default).
const workloadMaxLifetime = time.Hour

// workloadTypes are the typ values of workload tokens: none (Kubernetes),
// JWT (GitHub Actions, SPIFFE), JOSE (SPIFFE).
var workloadTypes = []string{"", "jwt", "jose"}

// workloadIssuer is the issuer whose iss is iss, or nil.
func (t *trustedIssuers) workloadIssuer(iss string) *WorkloadIssuer {
	for i := range t.workloads {
		if t.workloads[i].Issuer == iss {
			return &t.workloads[i]
		}
	}
	return nil
}

// redeemWorkload checks a workload token of w and answers with an access
// token whose subject is the workload. Every refusal is 400 invalid_grant
// naming the check, never the token.
func (s *tokenEndpoints) redeemWorkload(w http.ResponseWriter, r *http.Request, form url.Values, wl *WorkloadIssuer, p *parsedAssertion) {
	now := time.Now()
	refuse := func(why string) {
		s.audit.warn(eventAssertionRefused, zap.String("grant_type", grantJWTBearer), zap.String("workload_issuer", wl.Name), zap.String("reason", why))
		s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: "+why)
	}
	keys, err := s.trusted.workloadKeys(r, wl, p.keyID(), now)
	if err != nil {
		s.cfg.Logger.Warn("workload_issuer: keys", zap.String("workload_issuer", wl.Name), zap.Error(err))
		refuse("the keys of workload_issuer " + wl.Name + " could not be fetched")
		return
	}
	var all map[string]any
	claims, err := p.verify(keys, assertionRules{issuer: wl.Issuer, audiences: []string{cmp.Or(wl.Audience, s.cfg.Issuer), s.endpoint("/oauth/token")},
		skew: s.cfg.Tokens.ClockSkew, maxLifetime: workloadMaxLifetime}, now, &all)
	switch {
	case err != nil:
		refuse(err.Error())
		return
	case claims.Subject == "":
		refuse("sub is missing")
		return
	}
	if why := wl.admits(all); why != "" {
		refuse(why)
		return
	}
	resource, aerr := s.requestedResource(form["resource"])
	if aerr != nil {
		s.tokenFail(w, http.StatusBadRequest, aerr.code, aerr.description)
		return
	}
	scope, ok := s.scopeAndUseUp(w, r, form, refuse, wl.Scopes, wl.Issuer, claims, now)
	if !ok {
		return
	}
	subject := wl.Name + ":" + claims.Subject
	g := grant{clientID: subject, subject: subject, scope: scope, resource: resource, gty: gtyWorkload, profile: storage.Profile{Provider: wl.Name}, jkt: proofJKT(r)}
	s.respondWithTokens(w, grantJWTBearer, storage.NewAccessTokenID(now), g, "", now)
}

// workloadKeys are an issuer's keys: configured, or fetched.
func (t *trustedIssuers) workloadKeys(r *http.Request, wl *WorkloadIssuer, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	if len(wl.JWKS) > 0 {
		return t.keys.parsed(wl.JWKS)
	}
	return t.providerKeys(r.Context(), wl.Issuer, wl.JWKSURI, kid, now)
}

// admits checks the claim rules: ""  when every one holds, else which
// does not.
func (wl *WorkloadIssuer) admits(claims map[string]any) string {
	for _, rule := range wl.AllowClaims {
		if !slices.ContainsFunc(rule.Values, func(v string) bool { return claimMatches(claims[rule.Claim], v) }) {
			return fmt.Sprintf("claim %s is not one workload_issuer %s allows", rule.Claim, wl.Name)
		}
	}
	return ""
}

// claimMatches reports whether a claim (a string, or an array of them)
// is value, or begins with it when value ends in '*'.
func claimMatches(claim any, value string) bool {
	match := func(s string) bool {
		if prefix, ok := strings.CutSuffix(value, "*"); ok {
			return strings.HasPrefix(s, prefix)
		}
		return s == value
	}
	switch c := claim.(type) {
	case string:
		return match(c)
	case []any:
		return slices.ContainsFunc(c, func(e any) bool { s, ok := e.(string); return ok && match(s) })
	}
	return false
}
