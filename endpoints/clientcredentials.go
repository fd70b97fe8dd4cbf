package endpoints

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// clientCredentials is the client_credentials grant: a confidential client
// acting on its own behalf. No refresh token.
func (s *tokenEndpoints) clientCredentials(w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values) {
	if !s.mayActAlone(client) {
		s.tokenFail(w, http.StatusBadRequest, "unauthorized_client", "this client may not use client_credentials")
		return
	}
	allowed := splitScope(client.Scope)
	if client.Scope == "" {
		allowed = s.cfg.Scopes
	}
	scope := joinScope(allowed)
	if requested := s.requestedScopes(form); len(requested) > 0 {
		for _, sc := range requested {
			if !slices.Contains(allowed, sc) {
				s.tokenFail(w, http.StatusBadRequest, "invalid_scope", "scope not allowed for this client: "+sc)
				return
			}
		}
		scope = joinScope(requested)
	}
	resource, aerr := s.requestedResource(form["resource"])
	if aerr != nil {
		s.tokenFail(w, http.StatusBadRequest, aerr.code, aerr.description)
		return
	}
	now := time.Now()
	s.markUsed(r, client, now)
	g := grant{clientID: client.ID, subject: client.ID, scope: scope, resource: resource, gty: grantClientCredentials, jkt: proofJKT(r)}
	s.respondWithTokens(w, "client_credentials", storage.NewAccessTokenID(now), g, "", now)
}
