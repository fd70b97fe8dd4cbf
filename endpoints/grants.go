package endpoints

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// grantType is one grant of the token endpoint, a row of grantTypes: the
// table gives the token endpoint's dispatch, grant_types_supported, and
// the policy every way of making a client applies (see clientpolicy.go).
type grantType struct {
	// name is its grant_type value.
	name string
	// clientAuthOptional: a request may carry no client authentication
	// (RFC 7523 §3.1: the grant itself may identify the client); the
	// handler then gets a nil client. When it does carry one, it is
	// verified all the same.
	clientAuthOptional bool
	// confidentialOnly: public clients may not use it.
	confidentialOnly bool
	// redirect: a client using it registers redirect URIs.
	redirect bool
	// byDefault: a client that names no grant types gets it.
	byDefault bool
	// enabled reports whether a server so configured offers it; nil:
	// always.
	enabled func(*Config) bool
	// handle answers a token request of the grant.
	handle func(s *tokenEndpoints, w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values)
}

// grantTypes are every grant this server implements, in the order of
// grant_types_supported. A new grant is its own file and a row here.
var grantTypes = []grantType{
	{name: "authorization_code", redirect: true, byDefault: true, handle: (*tokenEndpoints).exchangeCode},
	{name: "refresh_token", byDefault: true, handle: (*tokenEndpoints).refreshGrant},
	{name: grantClientCredentials, confidentialOnly: true, handle: (*tokenEndpoints).clientCredentials},
	{name: grantJWTBearer, clientAuthOptional: true, enabled: jwtBearerEnabled, handle: (*tokenEndpoints).jwtBearer},
}

// grantTable is a set of grants: every one implemented (grantTypes), or
// those a server offers.
type grantTable []grantType

// offered are the grants a server so configured offers.
func offeredGrants(cfg *Config) grantTable {
	return slices.DeleteFunc(slices.Clone(grantTypes), func(g grantType) bool { return g.enabled != nil && !g.enabled(cfg) })
}

// named is the grant called name, or nil.
func (t grantTable) named(name string) *grantType {
	for i := range t {
		if t[i].name == name {
			return &t[i]
		}
	}
	return nil
}

// names are the grant_type values, for grant_types_supported.
func (t grantTable) names() []string {
	out := make([]string, len(t))
	for i := range t {
		out[i] = t[i].name
	}
	return out
}

// DefaultGrantTypes are a client's grant types when it names none (a
// Caddyfile client, a registration, a client the operator adds): a fresh
// slice each time.
func DefaultGrantTypes() []string {
	var out []string
	for _, g := range grantTypes {
		if g.byDefault {
			out = append(out, g.name)
		}
	}
	return out
}

// allowsGrant reports whether a client may use a grant type.
func allowsGrant(c *storage.Client, grantType string) bool {
	return slices.Contains(c.GrantTypes, grantType)
}

// token serves POST /oauth/token: the client authenticates (unless the
// grant makes that optional and the request carries none), then the
// grant's handler answers.
func (s *tokenEndpoints) token(w http.ResponseWriter, r *http.Request) {
	if !acceptPOST(w, r) {
		return
	}
	form, ok := s.parseForm(w, r)
	if !ok {
		s.tokenFail(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded, at most 64 KiB")
		return
	}
	for name, vals := range form {
		if len(vals) > 1 && name != "resource" {
			s.tokenFail(w, http.StatusBadRequest, "invalid_request", name+" is repeated")
			return
		}
	}
	if r, ok = s.tokenProof(w, r); !ok {
		return
	}
	name := form.Get("grant_type")
	grant := s.grants.named(name)
	var client *storage.Client
	if grant == nil || !grant.clientAuthOptional || carriesClientAuth(r, form) {
		var failure string
		if client, failure = s.authenticateClient(w, r, form); failure != "" {
			s.metrics.tokenErrors.WithLabelValues(failure).Inc()
			return
		}
	}
	switch {
	case client != nil && client.DPoPBoundAccessTokens && proofJKT(r) == "":
		s.tokenFail(w, http.StatusBadRequest, "invalid_dpop_proof", "this client registered dpop_bound_access_tokens: send a DPoP proof")
	case name == "":
		s.tokenFail(w, http.StatusBadRequest, "invalid_request", "grant_type is missing")
	case grant == nil:
		s.tokenFail(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type "+name+" is not supported")
	default:
		grant.handle(s, w, r, client, form)
	}
}

// carriesClientAuth reports whether a request names a client in any
// way: a client_id, or the credential of any method.
func carriesClientAuth(r *http.Request, form url.Values) bool {
	method, cred, err := presentedMethod(newAuthRequest(r, form))
	return err != nil || cred.clientID != "" || method != &authMethods[0]
}
