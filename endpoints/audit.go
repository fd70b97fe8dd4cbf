package endpoints

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Audit events, the values of the `event` field of the audit logger
// (http.handlers.oauth2_server.audit). They name what happened with ids
// only: never a code, token, secret, password or cookie.
const (
	eventSignIn             = "sign_in"
	eventSignInFailed       = "sign_in_failed"
	eventSignInThrottled    = "sign_in_throttled"
	eventSignInRefused      = "sign_in_refused"
	eventSignOut            = "sign_out"
	eventConsentGranted     = "consent_granted"
	eventConsentDenied      = "consent_denied"
	eventConsentRevoked     = "consent_revoked"
	eventClientRegistered   = "client_registered"
	eventClientDeleted      = "client_deleted"
	eventTokenIssued        = "token_issued"
	eventRefreshRotated     = "refresh_rotated"
	eventReuseDetected      = "refresh_reuse_detected"
	eventCodeReplayed       = "code_replay_detected"
	eventFamilyRevoked      = "family_revoked"
	eventAccessTokenRevoked = "access_token_revoked"
	eventKeyRotated         = "key_rotated"
	eventKeyRetired         = "key_retired"
	eventGrantFirstUsed     = "grant_first_used"
	eventTokenNeverUsed     = "token_never_used"
	eventToolCall           = "mcp_tool_call"
	eventMCPRefused         = "mcp_request_refused"
	eventUpstreamRefreshed  = "upstream_token_refreshed"
	eventUpstreamEnded      = "upstream_token_ended"
	eventAssertionRefused   = "assertion_refused"
)

// Why a refresh-token family was revoked: the `by` of a family_revoked
// event and the reason label of caddy_oauth2_family_revocations_total.
const (
	revokedByEndpoint     = "revocation_endpoint" // RFC 7009
	revokedByReuse        = "reuse"               // a rotated refresh token presented again
	revokedByCodeReplay   = "code_replay"         // a used authorization code presented again
	revokedByAdmin        = "admin"               // the admin API or `caddy oauth2 revoke`
	revokedByUser         = "user"                // the connected-apps page
	revokedByClientDelete = "client_deleted"      // the admin API or RFC 7592 deleted the client
)

// familyReasons are every reason a family is revoked for.
var familyReasons = []string{revokedByEndpoint, revokedByReuse, revokedByCodeReplay, revokedByAdmin, revokedByUser, revokedByClientDelete}

// familyRevoked counts a revoked family and writes its family_revoked
// event.
func (s *core) familyRevoked(fam *storage.RefreshFamily, by string) {
	s.metrics.familyRevocations.WithLabelValues(by).Inc()
	s.audit.info(eventFamilyRevoked, zap.String("client_id", fam.ClientID), zap.String("family_id", fam.ID), zap.String("sub", fam.Subject), zap.String("by", by))
}

// grantsRevoked is familyRevoked for every family of revoked grants.
func (s *core) grantsRevoked(grants []storage.Grant, by string) {
	for i := range grants {
		for j := range grants[i].Families {
			s.familyRevoked(&grants[i].Families[j], by)
		}
	}
}

// auditEvents are every event the audit logger writes (docs/operating.md's table
// lists them: TestDocsListEvents); family_revoked is also written by
// the storage sweeper.
var auditEvents = []string{eventSignIn, eventSignInFailed, eventSignInThrottled, eventSignInRefused, eventSignOut, eventConsentGranted,
	eventConsentDenied, eventConsentRevoked, eventClientRegistered, eventClientDeleted, eventTokenIssued, eventRefreshRotated,
	eventReuseDetected, eventCodeReplayed, eventFamilyRevoked, eventAccessTokenRevoked, eventKeyRotated, eventKeyRetired, eventGrantFirstUsed,
	eventTokenNeverUsed, eventToolCall, eventMCPRefused, eventUpstreamRefreshed, eventUpstreamEnded, eventAssertionRefused}

// unusedAfter is how long an issued grant may go without reaching the
// guard before it is reported once: the commonest symptom of a client
// that cannot complete its connection.
const unusedAfter = 5 * time.Minute

// maxWatched bounds the grants waiting for their first use.
const maxWatched = 100_000

// auditor writes audit events and watches issued grants for their first
// use at the guard.
type auditor struct {
	log *zap.Logger

	mu      sync.Mutex
	watched map[string]watchedGrant // by family id, or jti for a grant without family
}

type watchedGrant struct {
	issued           time.Time
	clientID, sub    string
	resource, grantT string
}

func newAuditor(log *zap.Logger) *auditor {
	return &auditor{log: log, watched: map[string]watchedGrant{}}
}

// event writes one audit line at info (or warn) level, with the event
// name as message and as the `event` field.
func (a *auditor) event(level zapcore.Level, name string, fields ...zap.Field) {
	if ce := a.log.Check(level, name); ce != nil {
		ce.Write(append(fields, zap.String("event", name))...)
	}
}

func (a *auditor) info(name string, fields ...zap.Field) { a.event(zapcore.InfoLevel, name, fields...) }
func (a *auditor) warn(name string, fields ...zap.Field) { a.event(zapcore.WarnLevel, name, fields...) }

// issued starts watching a grant for its first use at the guard.
func (a *auditor) issued(key string, g grant, grantType string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.watched[key]; ok || len(a.watched) >= maxWatched {
		return
	}
	a.watched[key] = watchedGrant{issued: now, clientID: g.clientID, sub: g.subject, resource: g.resource, grantT: grantType}
}

// used reports a grant's first use at the guard.
func (a *auditor) used(key string, now time.Time) {
	a.mu.Lock()
	w, ok := a.watched[key]
	if ok {
		delete(a.watched, key)
	}
	a.mu.Unlock()
	if ok {
		a.info(eventGrantFirstUsed, zap.String("grant", key), zap.String("client_id", w.clientID), zap.String("sub", w.sub),
			zap.String("resource", w.resource), zap.Duration("after", now.Sub(w.issued)))
	}
}

// reportUnused logs, once, every watched grant issued longer than
// unusedAfter ago and never used.
func (a *auditor) reportUnused(now time.Time) {
	a.mu.Lock()
	var stale map[string]watchedGrant
	for k, w := range a.watched {
		if now.Sub(w.issued) >= unusedAfter {
			if stale == nil {
				stale = map[string]watchedGrant{}
			}
			stale[k] = w
			delete(a.watched, k)
		}
	}
	a.mu.Unlock()
	for k, w := range stale {
		a.warn(eventTokenNeverUsed, zap.String("grant", k), zap.String("client_id", w.clientID), zap.String("sub", w.sub),
			zap.String("resource", w.resource), zap.String("grant_type", w.grantT), zap.Duration("since", now.Sub(w.issued)))
	}
}

// watch reports unused grants every minute until stop is closed.
func (a *auditor) watch(stop <-chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			a.reportUnused(now)
		}
	}
}
