package endpoints

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// An ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant; the MCP
// enterprise-managed authorization extension) is the company identity
// provider saying "this user may use this client at this server": the
// client got it from the provider by token exchange and redeems it here.
// The provider's policy is the consent, so no consent screen is shown;
// no refresh token is issued, so the provider stays in control (the
// client asks it for a new ID-JAG).

// idJAGClaims are the claims of an ID-JAG beyond the registered ones.
type idJAGClaims struct {
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Resource string `json:"resource"`
	Email    string `json:"email"`
	AuthTime int64  `json:"auth_time"`
}

// redeemIDJAG checks an ID-JAG of idp presented by client and answers
// with an access token for the user it names. Every refusal is 400
// invalid_grant naming the check, never the assertion.
func (s *tokenEndpoints) redeemIDJAG(w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values, idp *EnterpriseIDP, p *parsedAssertion) {
	ctx := r.Context()
	now := time.Now()
	refuse := func(why string) {
		s.audit.warn(eventAssertionRefused, zap.String("grant_type", grantJWTBearer), zap.String("idp", idp.Name), zap.String("client_id", clientIDOf(client)), zap.String("reason", why))
		s.tokenFail(w, http.StatusBadRequest, "invalid_grant", "assertion: "+why)
	}
	switch {
	case client == nil:
		s.tokenFail(w, http.StatusUnauthorized, "invalid_client", "an ID-JAG is redeemed by the client it names, authenticated")
		return
	case !kindOf(client).confidential():
		s.tokenFail(w, http.StatusBadRequest, "unauthorized_client", "an ID-JAG is redeemed by a client that authenticates (a secret or keys)")
		return
	case len(idp.Clients) > 0 && !slices.Contains(idp.Clients, client.ID):
		refuse("enterprise_idp " + idp.Name + " does not grant to this client")
		return
	}
	keys, err := s.trusted.providerKeys(ctx, idp.Issuer, idp.JWKSURI, p.keyID(), now)
	if err != nil {
		s.cfg.Logger.Warn("enterprise_idp: keys", zap.String("idp", idp.Name), zap.Error(err))
		refuse("the keys of enterprise_idp " + idp.Name + " could not be fetched")
		return
	}
	var jag idJAGClaims
	claims, err := p.verify(keys, assertionRules{issuer: idp.Issuer, audiences: []string{s.cfg.Issuer}, skew: s.cfg.Tokens.ClockSkew}, now, &jag)
	switch {
	case err != nil:
		refuse(err.Error())
		return
	case claims.Subject == "":
		refuse("sub is missing")
		return
	case jag.ClientID != client.ID:
		refuse("client_id is not the authenticated client")
		return
	}
	subject := claims.Subject
	if idp.Subject == "email" {
		if subject = jag.Email; subject == "" {
			refuse("email is missing (enterprise_idp " + idp.Name + " maps users by email)")
			return
		}
	}
	resource, why := s.idJAGResource(jag.Resource, form["resource"])
	if why != "" {
		refuse(why)
		return
	}
	var limit []string
	if jag.Scope != "" {
		limit = s.grantable(jag.Scope)
	}
	scope, ok := s.scopeAndUseUp(w, r, form, refuse, limit, idp.Issuer, claims, now)
	if !ok {
		return
	}
	g := grant{clientID: client.ID, subject: subject, scope: scope, resource: resource,
		profile: storage.Profile{Provider: idp.Name, Email: jag.Email}, jkt: proofJKT(r)}
	if jag.AuthTime > 0 {
		g.authTime = time.Unix(jag.AuthTime, 0)
	}
	if err := s.recordIDJAGGrant(r, g, idp.Name, now); err != nil {
		s.tokenUnavailable(w, err)
		return
	}
	s.markUsed(r, client, now)
	s.respondWithTokens(w, grantJWTBearer, storage.NewAccessTokenID(now), g, "", now)
}

// idJAGResource is the token's resource: the ID-JAG's (one of ours), the
// request's when it names one (the same, if the ID-JAG has one), else the
// default.
func (s *tokenEndpoints) idJAGResource(claimed string, requested []string) (string, string) {
	resource := ""
	if claimed != "" {
		canonical, ok := s.matchResource(claimed)
		if !ok {
			return "", "resource is not a resource of this server"
		}
		resource = canonical
	}
	if len(requested) > 0 {
		asked, aerr := s.requestedResource(requested)
		switch {
		case aerr != nil:
			return "", "the requested resource: " + aerr.description
		case resource != "" && asked != resource:
			return "", "the requested resource is not the assertion's"
		}
		resource = asked
	}
	if resource == "" {
		resource = s.resources[0].id
	}
	return resource, ""
}

// scopeAndUseUp ends the checks of an assertion grant: the token's scope
// (see grantedScope), then the assertion of signer, verified as claims,
// used up. ok is false when it answered (refused, or storage down).
func (s *tokenEndpoints) scopeAndUseUp(w http.ResponseWriter, r *http.Request, form url.Values, refuse func(string), limit []string, signer string, claims *jwt.Claims, now time.Time) (string, bool) {
	scope, why := s.grantedScope(limit, form)
	if why != "" {
		refuse(why)
		return "", false
	}
	switch err := s.useUp(r.Context(), signer, claims, now); {
	case err == errAssertionReplayed:
		refuse(err.Error())
		return "", false
	case err != nil:
		s.tokenUnavailable(w, err)
		return "", false
	}
	return scope, true
}

// grantedScope is the token's scope for an assertion grant: what the
// request asks (all that may be granted when it asks nothing), within
// limit (nil: no limit) and the catalogue.
func (s *tokenEndpoints) grantedScope(limit []string, form url.Values) (string, string) {
	available := s.cfg.Scopes
	if limit != nil {
		available = limit
		if s.cfg.EnforceScopes {
			available = slices.DeleteFunc(slices.Clone(available), func(sc string) bool { return !slices.Contains(s.cfg.Scopes, sc) })
		}
	}
	requested := s.requestedScopes(form)
	if len(requested) == 0 {
		requested = available
	}
	for _, sc := range requested {
		if !slices.Contains(available, sc) {
			return "", "scope " + sc + " is not granted by the assertion"
		}
	}
	if len(requested) == 0 {
		return "", "no scope of the assertion is offered by this server"
	}
	return joinScope(requested), ""
}

// recordIDJAGGrant remembers the grant (user, client, resource) as given
// by the identity provider, so that it is listed, and revocable, like any
// other; a consent the user gave is kept as it is.
func (s *tokenEndpoints) recordIDJAGGrant(r *http.Request, g grant, idp string, now time.Time) error {
	old, err := s.cfg.Storage.Store.GetConsent(r.Context(), g.subject, g.clientID, g.resource)
	switch {
	case err == nil && old.Via == "":
		return nil
	case err == nil && old.Via == idp && old.Scope == g.scope:
		return nil
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return err
	}
	return s.cfg.Storage.Store.PutConsent(r.Context(), &storage.Consent{Subject: g.subject, ClientID: g.clientID, Resource: g.resource,
		Scope: g.scope, GrantedAt: now, Via: idp})
}

// clientIDOf is a client's id, or "" for none.
func clientIDOf(c *storage.Client) string {
	if c == nil {
		return ""
	}
	return c.ID
}
