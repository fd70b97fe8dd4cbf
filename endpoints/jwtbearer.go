package endpoints

import (
	"net/http"
	"net/url"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// grantJWTBearer is the JWT bearer grant (RFC 7523 §2.1): an assertion
// issued by someone this server trusts. Today that is an enterprise
// identity provider's ID-JAG (idjag.go).
const grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// jwtBearer answers the jwt-bearer grant: the assertion is parsed once,
// and its typ and issuer say which kind it is.
func (s *tokenEndpoints) jwtBearer(w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values) {
	raw := form.Get("assertion")
	if raw == "" {
		s.tokenFail(w, http.StatusBadRequest, "invalid_request", "assertion is missing")
		return
	}
	p, err := parseAssertion(raw, idJAGType)
	if err != nil {
		s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: "+err.Error())
		return
	}
	idp := s.trusted.enterpriseIDP(p.iss)
	if idp == nil {
		s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: iss is not an enterprise_idp of this server")
		return
	}
	s.redeemIDJAG(w, r, client, form, idp, p)
}
