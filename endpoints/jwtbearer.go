package endpoints

import (
	"net/http"
	"net/url"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// grantJWTBearer is the JWT bearer grant (RFC 7523 §2.1): an assertion
// issued by someone this server trusts: an enterprise identity
// provider's ID-JAG (idjag.go), or a workload's token (workload.go).
const grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// jwtBearerEnabled: the grant is offered while someone is trusted.
func jwtBearerEnabled(c *Config) bool {
	return len(c.Grants.EnterpriseIDPs)+len(c.Grants.WorkloadIssuers) > 0
}

// jwtBearer answers the jwt-bearer grant: the assertion is parsed once,
// and its typ and issuer say which kind it is (an ID-JAG is typed
// oauth-id-jag+jwt; a workload token is not).
func (s *tokenEndpoints) jwtBearer(w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values) {
	raw := form.Get("assertion")
	if raw == "" {
		s.tokenFail(w, http.StatusBadRequest, "invalid_request", "assertion is missing")
		return
	}
	p, err := parseAssertion(raw, s.trusted.typs...)
	if err != nil {
		s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: "+err.Error())
		return
	}
	if p.typ == idJAGType {
		if idp := s.trusted.enterpriseIDP(p.iss); idp != nil {
			s.redeemIDJAG(w, r, client, form, idp, p)
			return
		}
		s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: iss is not an enterprise_idp of this server")
		return
	}
	if wl := s.trusted.workloadIssuer(p.iss); wl != nil {
		s.redeemWorkload(w, r, form, wl, p)
		return
	}
	s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: iss is not a workload_issuer of this server")
}
