package endpoints

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

// introspection is the RFC 7662 response.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	Expiry    int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	// Cnf is a DPoP-bound token's key (RFC 9449 §6.2).
	Cnf *confirmation `json:"cnf,omitempty"`
}

var inactive = introspection{Active: false}

// introspect serves POST /oauth/introspect (RFC 7662) for confidential
// clients: their own tokens, or every token for a client allowed to
// introspect all (a resource server). Anything expired, revoked, unknown,
// malformed or not the caller's is {"active":false}.
func (s *tokenEndpoints) introspect(w http.ResponseWriter, r *http.Request) {
	client, form, ok := s.tokenForm(w, r)
	if !ok {
		return
	}
	if !kindOf(client).confidential() {
		writeError(w, http.StatusUnauthorized, "invalid_client", "only confidential clients may introspect tokens")
		return
	}
	token := form.Get("token")
	result, err := s.introspectAccessToken(r, token)
	if err == nil && !result.Active {
		result, err = s.introspectRefreshToken(r, token)
	}
	if err != nil {
		s.unavailable(w, "introspect", err)
		return
	}
	if result.Active && result.ClientID != client.ID && !client.IntrospectAll {
		result = inactive
	}
	s.cfg.Logger.Debug("introspect", zap.String("client_id", client.ID), zap.Bool("active", result.Active), zap.String("token_type", result.TokenType))
	writeJSON(w, http.StatusOK, result)
}

// introspectAccessToken fails only when revocation cannot be checked
// (as the guard, a node whose revocations are stale fails closed). A
// token is verified once and then answered from the guard's cache.
func (s *tokenEndpoints) introspectAccessToken(r *http.Request, token string) (introspection, error) {
	if !s.synced() {
		return inactive, errRevocationUnknown
	}
	c, _, err := s.verifyCached(r.Context(), token, false)
	if err == errRevocationUnknown {
		return inactive, err
	}
	if err != nil || len(c.Audience) == 0 {
		return inactive, nil
	}
	tokenType := "Bearer"
	if c.Cnf != nil {
		tokenType = "DPoP"
	}
	return introspection{
		Active: true, Scope: c.Scope, ClientID: c.ClientID, Subject: c.Subject, Audience: c.Audience[0],
		Issuer: c.Issuer, Expiry: c.Expiry.Time().Unix(), IssuedAt: c.IssuedAt.Time().Unix(), TokenType: tokenType, Cnf: c.Cnf,
	}, nil
}

// introspectRefreshToken fails only when the storage does.
func (s *tokenEndpoints) introspectRefreshToken(r *http.Request, token string) (introspection, error) {
	fam, t, err := s.cfg.Storage.Store.GetRefreshToken(r.Context(), token, time.Now())
	if storageDown(err) {
		return inactive, err
	}
	if err != nil || !fam.RevokedAt.IsZero() || !t.RotatedAt.IsZero() {
		return inactive, nil
	}
	return introspection{
		Active: true, Scope: t.Scope, ClientID: fam.ClientID, Subject: fam.Subject, Audience: fam.Resource,
		Issuer: s.cfg.Issuer, Expiry: t.ExpiresAt.Unix(), IssuedAt: t.IssuedAt.Unix(), TokenType: "refresh_token",
	}, nil
}
