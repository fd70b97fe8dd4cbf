package endpoints

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// refreshBurst is how long after a rotation the rotated token is still
// taken as part of the same burst of parallel refreshes even when one of
// them already used a successor: an MCP host whose calls all hit an
// expired token refreshes once per call, each with the token it read,
// and their requests interleave.
const refreshBurst = 2 * time.Second

// tokenRefusal is a token request refused for what it asks, with its
// OAuth error.
type tokenRefusal struct{ code, description string }

func (e *tokenRefusal) Error() string { return e.code + ": " + e.description }

// refreshGrant is the refresh_token grant: every use rotates the token.
func (s *tokenEndpoints) refreshGrant(w http.ResponseWriter, r *http.Request, client *storage.Client, form url.Values) {
	ctx := r.Context()
	now := time.Now()
	invalidGrant := func(description string) { s.tokenFail(w, http.StatusBadRequest, "invalid_grant", description) }
	presented := form.Get("refresh_token")
	if presented == "" {
		s.tokenFail(w, http.StatusBadRequest, "invalid_request", "refresh_token is missing")
		return
	}
	if !allowsGrant(client, "refresh_token") {
		s.tokenFail(w, http.StatusBadRequest, "unauthorized_client", "this client may not use refresh tokens")
		return
	}
	// What is asked for is checked inside the rotation, before anything
	// is written, so a bad request does not use the token up; one step
	// reads the token and rotates it.
	jkt := proofJKT(r)
	narrow := func(fam *storage.RefreshFamily) (string, error) {
		if fam.JKT != "" && fam.JKT != jkt {
			return "", &tokenRefusal{"invalid_dpop_proof", "this refresh token is bound to a DPoP key: send a proof signed by that key"}
		}
		scope := fam.Scope
		if requested := s.requestedScopes(form); len(requested) > 0 {
			for _, sc := range requested {
				if !slices.Contains(splitScope(fam.Scope), sc) {
					return "", &tokenRefusal{"invalid_scope", "scope exceeds what was granted: " + sc}
				}
			}
			scope = joinScope(requested)
		}
		if res := form["resource"]; len(res) > 0 {
			if canonical, ok := s.matchResource(res[0]); len(res) != 1 || !ok || canonical != fam.Resource {
				return "", &tokenRefusal{"invalid_target", "resource is not the one this refresh token was granted for"}
			}
		}
		return scope, nil
	}
	next := randomToken()
	fam, issued, err := s.cfg.Storage.Store.RotateRefreshToken(ctx, storage.Rotation{
		Presented: presented,
		ClientID:  client.ID,
		NextToken: next,
		Next:      storage.RefreshToken{IssuedAt: now, ExpiresAt: now.Add(s.cfg.Tokens.RefreshTokenLifetime)},
		Now:       now,
		Grace:     s.cfg.Tokens.RefreshReuseGrace,
		Burst:     min(refreshBurst, s.cfg.Tokens.RefreshReuseGrace),
		// Across nodes, one family's rotations are judged by the store's clock.
		StoreClock: true,
		Narrow:     narrow,
		Bind:       publicBinding(client, jkt),
	})
	var refused *tokenRefusal
	switch {
	case errors.As(err, &refused):
		s.tokenFail(w, http.StatusBadRequest, refused.code, refused.description)
		return
	case errors.Is(err, storage.ErrReused):
		s.metrics.refreshes.WithLabelValues("reuse_detected").Inc()
		s.audit.warn(eventReuseDetected, zap.String("client_id", client.ID), zap.String("family_id", fam.ID), zap.String("sub", fam.Subject))
		s.familyRevoked(fam, revokedByReuse)
		invalidGrant("the refresh token was already used")
		return
	case errors.Is(err, storage.ErrWrongClient):
		s.cfg.Logger.Warn("token: refresh token presented by another client", zap.String("client_id", client.ID))
		invalidGrant("the refresh token was issued to another client")
		return
	case errors.Is(err, storage.ErrRevoked):
		invalidGrant("the refresh token has been revoked")
		return
	case storageDown(err):
		s.tokenUnavailable(w, err)
		return
	case err != nil:
		invalidGrant("the refresh token is unknown or expired")
		return
	}
	scope := issued.Scope
	g := grant{clientID: client.ID, subject: fam.Subject, profile: fam.Profile, scope: scope, resource: fam.Resource, authTime: fam.AuthTime, familyID: fam.ID,
		jkt: jkt}
	s.metrics.refreshes.WithLabelValues("rotated").Inc()
	s.audit.info(eventRefreshRotated, zap.String("client_id", client.ID), zap.String("family_id", fam.ID))
	s.respondWithTokens(w, "refresh_token", storage.NewAccessTokenID(now), g, next, now)
}

// requestedScopes are the scopes a token request asks for, without those
// accepted only (offline_access, openid, …); none when it asks for
// nothing else, or leaves scope out or empty: then the grant's own.
func (s *core) requestedScopes(form url.Values) []string {
	return s.grantable(form.Get("scope"))
}

// publicBinding is the DPoP key a public client's refresh tokens are
// bound to from this request on (RFC 9449 §5): its proof's, if any; a
// confidential client's are never bound (it authenticates).
func publicBinding(client *storage.Client, jkt string) string {
	if kindOf(client).confidential() {
		return ""
	}
	return jkt
}
