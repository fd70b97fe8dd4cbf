package endpoints

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// tokenForm starts the revocation and introspection endpoints: CORS,
// preflight, POST only, a form body, client authentication and a token.
func (s *tokenEndpoints) tokenForm(w http.ResponseWriter, r *http.Request) (*storage.Client, url.Values, bool) {
	if !acceptPOST(w, r) {
		return nil, nil, false
	}
	form, ok := s.parseForm(w, r)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded, at most 64 KiB")
		return nil, nil, false
	}
	client, failure := s.authenticateClient(w, r, form)
	if failure != "" {
		return nil, nil, false
	}
	if form.Get("token") == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "token is missing")
		return nil, nil, false
	}
	return client, form, true
}

// revoke serves POST /oauth/revoke (RFC 7009). It answers 200 whether or
// not anything was revoked, so it tells nobody whether a token exists or
// whose it is. token_type_hint only decides which kind is tried first.
func (s *tokenEndpoints) revoke(w http.ResponseWriter, r *http.Request) {
	client, form, ok := s.tokenForm(w, r)
	if !ok {
		return
	}
	token := form.Get("token")
	kinds := []struct {
		name string
		try  func() (bool, error)
	}{
		{"refresh_token", func() (bool, error) { return s.revokeRefreshToken(r, client, token) }},
		{"access_token", func() (bool, error) { return s.revokeAccessToken(r, client, token) }},
	}
	if form.Get("token_type_hint") == "access_token" {
		kinds[0], kinds[1] = kinds[1], kinds[0]
	}
	kind := "unknown"
	for _, k := range kinds {
		found, err := k.try()
		if err != nil {
			// RFC 7009 §2.2.1: 503 when the token could not be revoked now.
			s.unavailable(w, "revoke", err)
			return
		}
		if found {
			kind = k.name
			break
		}
	}
	s.metrics.revocations.WithLabelValues(kind).Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// revokeRefreshToken revokes the family of a refresh token of this
// client; it reports whether the token was a refresh token at all, and
// an error when the storage failed.
func (s *tokenEndpoints) revokeRefreshToken(r *http.Request, client *storage.Client, token string) (bool, error) {
	fam, _, err := s.cfg.Storage.Store.GetRefreshToken(r.Context(), token, time.Now())
	if storageDown(err) {
		return false, err
	}
	if err != nil {
		return false, nil
	}
	if fam.ClientID != client.ID {
		s.cfg.Logger.Debug("revoke: refresh token of another client; not revoked", zap.String("client_id", client.ID), zap.String("owner", fam.ClientID))
		return true, nil
	}
	if err := s.cfg.Storage.Store.RevokeRefreshFamily(r.Context(), fam.ID, time.Now()); err != nil {
		return true, fmt.Errorf("revoking refresh family %s: %w", fam.ID, err)
	}
	s.familyRevoked(fam, revokedByEndpoint)
	return true, nil
}

// revokeAccessToken denies an access token of this client until it
// expires; it reports whether the token was one of our access tokens,
// and an error when the storage failed.
func (s *tokenEndpoints) revokeAccessToken(r *http.Request, client *storage.Client, token string) (bool, error) {
	var c accessTokenClaims
	if err := s.Keys().Verify(token, &c); err != nil || c.ID == "" || c.Expiry == nil {
		return false, nil
	}
	switch {
	case c.ClientID != client.ID:
		s.cfg.Logger.Debug("revoke: access token of another client; not revoked", zap.String("client_id", client.ID), zap.String("owner", c.ClientID))
	case !c.Expiry.Time().After(time.Now()):
		// Expired: nothing left to deny.
	default:
		if err := s.cfg.Storage.Store.RevokeAccessToken(r.Context(), c.ID, c.Expiry.Time().Add(s.cfg.Tokens.ClockSkew)); err != nil {
			return true, fmt.Errorf("revoking access token %s: %w", c.ID, err)
		}
		s.audit.info(eventAccessTokenRevoked, zap.String("client_id", client.ID), zap.String("jti", c.ID), zap.String("sub", c.Subject))
	}
	return true, nil
}
