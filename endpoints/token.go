package endpoints

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// tokenEndpoints is the part that serves the token endpoint (its grants
// are the rows of grants.go, each in its own file), revocation and
// introspection.
type tokenEndpoints struct {
	*core
	*issuer                  // signs and verifies the tokens
	*clients                 // authenticates the callers
	trusted  *trustedIssuers // the issuers of assertion grants
	replays  *dpopReplays    // the DPoP proofs seen in their window
}

// mount serves the token, revocation and introspection endpoints.
func (s *tokenEndpoints) mount(m routeTable) {
	s.at(m, "/oauth/token", s.token, true)
	s.at(m, "/oauth/revoke", s.revoke, false)
	s.at(m, "/oauth/introspect", s.introspect, false)
}

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"` // always: RFC 6749 §5.1 wants it whenever it differs from the request
	RefreshToken string `json:"refresh_token,omitempty"`
}

// exchangeCode is the authorization_code grant.
func (s *tokenEndpoints) exchangeCode(w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values) {
	ctx := r.Context()
	now := time.Now()
	invalidGrant := func(description string) { s.tokenFail(w, http.StatusBadRequest, "invalid_grant", description) }
	code := form.Get("code")
	if code == "" {
		s.tokenFail(w, http.StatusBadRequest, "invalid_request", "code is missing")
		return
	}
	ac, err := s.cfg.Storage.Store.GetAuthorizationCode(ctx, code, now)
	if storageDown(err) {
		s.tokenUnavailable(w, err)
		return
	}
	if err != nil {
		invalidGrant("the authorization code is unknown or expired")
		return
	}
	// Everything that proves the caller is the client the code was issued
	// to is checked before "already used": only a replay that would have
	// succeeded revokes what the code produced (one that would fail, a
	// wrong verifier say, must not let anyone holding a used code sign
	// its user out).
	if ac.ClientID != client.ID {
		invalidGrant("the authorization code was issued to another client")
		return
	}
	redirectURI, given := form["redirect_uri"]
	if (ac.RedirectURIGiven || given) && (len(redirectURI) != 1 || redirectURI[0] != ac.RedirectURI) {
		invalidGrant("redirect_uri does not match the authorization request")
		return
	}
	if !verifyPKCE(form.Get("code_verifier"), ac.CodeChallenge) {
		invalidGrant("code_verifier is missing or does not match the code_challenge")
		return
	}
	if ac.DPoPJKT != "" && proofJKT(r) != ac.DPoPJKT {
		s.tokenFail(w, http.StatusBadRequest, "invalid_dpop_proof", "the authorization code is bound to a DPoP key (dpop_jkt): send a proof signed by that key")
		return
	}
	if res := form["resource"]; len(res) > 0 {
		if canonical, ok := s.matchResource(res[0]); len(res) != 1 || !ok || canonical != ac.Resource {
			s.tokenFail(w, http.StatusBadRequest, "invalid_target", "resource does not match the authorization request")
			return
		}
	}
	if !ac.UsedAt.IsZero() {
		s.revokeIssuance(r, client, ac)
		invalidGrant("the authorization code was already used")
		return
	}

	g := grant{clientID: client.ID, subject: ac.Subject, profile: ac.Profile, scope: ac.Scope, resource: ac.Resource, authTime: ac.AuthTime,
		jkt: proofJKT(r)}
	var refresh *storage.NewRefreshFamily
	if allowsGrant(client, "refresh_token") {
		refresh = s.newRefreshFamily(g, now)
		g.familyID = refresh.Family.ID
		// A public client's refresh tokens are bound to its DPoP key for
		// the family's life (RFC 9449 §5).
		refresh.Family.JKT = publicBinding(client, g.jkt)
	}
	jti := storage.NewAccessTokenID(now)
	issued := storage.Issuance{AccessTokenID: jti, AccessTokenExpiresAt: now.Add(s.cfg.Tokens.AccessTokenLifetime)}
	redeemed, err := s.cfg.Storage.Store.RedeemAuthorizationCode(ctx, code, now, issued, refresh)
	switch {
	case errors.Is(err, storage.ErrAlreadyUsed):
		s.revokeIssuance(r, client, redeemed)
		invalidGrant("the authorization code was already used")
		return
	case storageDown(err):
		s.tokenUnavailable(w, err)
		return
	case err != nil:
		invalidGrant("the authorization code is unknown or expired")
		return
	}
	refreshToken := ""
	if refresh != nil {
		refreshToken = refresh.Token
	}
	s.markUsed(r, client, now)
	s.respondWithTokens(w, "authorization_code", jti, g, refreshToken, now)
}

// markUsed keeps a registered client that got a token from being removed
// as unused.
func (s *tokenEndpoints) markUsed(r *http.Request, client *storage.Client, now time.Time) {
	if client.ExpiresAt.IsZero() {
		return
	}
	if err := s.cfg.Storage.Store.MarkClientUsed(r.Context(), client.ID, now); err != nil {
		s.cfg.Logger.Error("token: marking the client used", zap.String("client_id", client.ID), zap.Error(err))
	}
}

// respondWithTokens signs the access token for g and answers with it
// (and with refreshToken, when there is one).
func (s *tokenEndpoints) respondWithTokens(w http.ResponseWriter, grantType, jti string, g grant, refreshToken string, now time.Time) {
	at, err := s.mintAccessToken(jti, g, now)
	if err != nil {
		s.cfg.Logger.Error("token: signing", zap.Error(err))
		s.tokenFail(w, http.StatusInternalServerError, "server_error", "the access token could not be signed")
		return
	}
	s.metrics.tokensIssued.WithLabelValues(grantType).Inc()
	fields := []zap.Field{zap.String("grant_type", grantType), zap.String("client_id", g.clientID), zap.String("sub", g.subject),
		zap.String("resource", g.resource), zap.String("scope", g.scope), zap.String("jti", jti), zap.String("family_id", g.familyID)}
	if grantType == grantJWTBearer {
		fields = append(fields, zap.String("idp", g.profile.Provider))
	}
	if g.jkt != "" {
		fields = append(fields, zap.String("dpop_jkt", g.jkt))
	}
	s.audit.info(eventTokenIssued, fields...)
	if grantType != "refresh_token" {
		s.audit.issued(cmp.Or(g.familyID, jti), g, grantType, now)
	}
	tokenType := "Bearer"
	if g.jkt != "" {
		tokenType = "DPoP"
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  at.token,
		TokenType:    tokenType,
		ExpiresIn:    int64(s.cfg.Tokens.AccessTokenLifetime / time.Second),
		Scope:        g.scope,
		RefreshToken: refreshToken,
	})
}

// newRefreshFamily prepares the family started by a code redemption.
func (s *tokenEndpoints) newRefreshFamily(g grant, now time.Time) *storage.NewRefreshFamily {
	return &storage.NewRefreshFamily{
		Family: storage.RefreshFamily{
			ID: storage.NewRefreshFamilyID(now), ClientID: g.clientID, Subject: g.subject, Profile: g.profile, Scope: g.scope, Resource: g.resource,
			AuthTime: g.authTime, CreatedAt: now, ExpiresAt: now.Add(s.cfg.Tokens.RefreshFamilyLifetime),
		},
		Token: randomToken(),
		First: storage.RefreshToken{Scope: g.scope, Resource: g.resource, IssuedAt: now, ExpiresAt: now.Add(s.cfg.Tokens.RefreshTokenLifetime)},
	}
}

// tokenFail answers a token request with an OAuth error (invalid_grant
// is what clients take as "authorize again"), counts it and logs why at
// debug level.
func (s *core) tokenFail(w http.ResponseWriter, status int, code, description string) {
	s.metrics.tokenErrors.WithLabelValues(code).Inc()
	s.cfg.Logger.Debug("token: refused", zap.String("error", code), zap.String("description", description))
	writeError(w, status, code, description)
}

// revokeIssuance revokes every token issued from a replayed code.
func (s *tokenEndpoints) revokeIssuance(r *http.Request, client *storage.Client, ac *storage.AuthorizationCode) {
	if ac == nil {
		return
	}
	now := time.Now()
	if id := ac.Issued.AccessTokenID; id != "" {
		if err := s.cfg.Storage.Store.RevokeAccessToken(r.Context(), id, ac.Issued.AccessTokenExpiresAt); err != nil {
			s.cfg.Logger.Error("revoking access token of a replayed code", zap.Error(err))
		}
	}
	if fam := ac.Issued.RefreshFamilyID; fam != "" {
		if err := s.cfg.Storage.Store.RevokeRefreshFamily(r.Context(), fam, now); err != nil {
			s.cfg.Logger.Error("revoking refresh family of a replayed code", zap.Error(err))
		}
		s.familyRevoked(&storage.RefreshFamily{ID: fam, ClientID: client.ID, Subject: ac.Subject}, revokedByCodeReplay)
	}
	s.audit.warn(eventCodeReplayed, zap.String("client_id", client.ID), zap.String("sub", ac.Subject),
		zap.String("jti", ac.Issued.AccessTokenID), zap.String("family_id", ac.Issued.RefreshFamilyID))
}
