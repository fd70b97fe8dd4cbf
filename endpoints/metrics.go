package endpoints

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are created once per process and registered into every
// config's registry (Caddy makes a new one at each reload), as Caddy's
// reverse_proxy does. Labels are bounded: issuer or resource (from the
// config), grant type, error code, outcome; never a user, client, IP or
// token.
var metrics struct {
	once sync.Once

	tokensIssued      *prometheus.CounterVec // issuer, grant_type
	tokenErrors       *prometheus.CounterVec // issuer, error
	refreshes         *prometheus.CounterVec // issuer, outcome
	familyRevocations *prometheus.CounterVec // issuer, reason
	revocations       *prometheus.CounterVec // issuer, kind
	guard             *prometheus.CounterVec // resource, decision
	mcp               *prometheus.CounterVec // resource, method, tool, outcome
	registrations     *prometheus.CounterVec // issuer, outcome
	metadataFetches   *prometheus.CounterVec // issuer, outcome
	signIns           *prometheus.CounterVec // issuer, method, outcome
	storage           *prometheus.HistogramVec
}

func initMetrics() {
	metrics.once.Do(func() {
		counter := func(name, help string, labels ...string) *prometheus.CounterVec {
			return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "oauth2", Name: name, Help: help}, labels)
		}
		metrics.tokensIssued = counter("tokens_issued_total", "Access tokens issued, by grant type.", "issuer", "grant_type")
		metrics.tokenErrors = counter("token_errors_total", "Error answers of the token endpoint, by OAuth error code.", "issuer", "error")
		metrics.refreshes = counter("refresh_total", "Refresh-token uses: rotated, or reuse_detected (the family is revoked).", "issuer", "outcome")
		metrics.familyRevocations = counter("family_revocations_total", "Refresh-token families revoked, by reason.", "issuer", "reason")
		metrics.revocations = counter("revocations_total", "Revocation requests (RFC 7009), by what the token was.", "issuer", "kind")
		metrics.guard = counter("guard_decisions_total", "Decisions of the bearer guard, by resource.", "resource", "decision")
		metrics.mcp = counter("mcp_requests_total", "MCP JSON-RPC requests the guard judged, by resource, method, tool (a name or pattern the operator listed) and outcome.",
			"resource", "method", "tool", "outcome")
		metrics.registrations = counter("registrations_total", "Dynamic client registrations, by outcome.", "issuer", "outcome")
		metrics.metadataFetches = counter("metadata_document_fetches_total", "Client ID metadata documents resolved, by outcome.", "issuer", "outcome")
		metrics.signIns = counter("sign_ins_total", "Sign-in attempts, by method and outcome.", "issuer", "method", "outcome")
		metrics.storage = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "caddy", Subsystem: "oauth2", Name: "storage_operation_seconds",
			Help:    "Latency of storage operations, by operation.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}, []string{"operation"})
	})
}

// RegisterMetrics registers the collectors into a config's registry;
// registering them again (another site, the same config) is not an error.
func RegisterMetrics(reg prometheus.Registerer) error {
	initMetrics()
	for _, c := range []prometheus.Collector{metrics.tokensIssued, metrics.tokenErrors, metrics.refreshes, metrics.familyRevocations,
		metrics.revocations, metrics.guard, metrics.mcp, metrics.registrations, metrics.metadataFetches, metrics.signIns, metrics.storage} {
		var already prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &already) {
			return err
		}
	}
	return nil
}

// ObserveStorage records the latency of a storage operation (for
// storage.Options.Observe).
func ObserveStorage(op string, d time.Duration) {
	initMetrics()
	metrics.storage.WithLabelValues(op).Observe(d.Seconds())
}

// Guard decisions, the values of the decision label.
const (
	decisionAllowed           = "allowed"
	decisionMissingToken      = "missing_token"
	decisionInvalid           = "invalid"
	decisionExpired           = "expired"
	decisionRevoked           = "revoked"
	decisionWrongAudience     = "wrong_audience"
	decisionInsufficientScope = "insufficient_scope"
	decisionUnavailable       = "unavailable"
	decisionToolNotAllowed    = "tool_not_allowed"
	decisionRateLimited       = "rate_limited"
)

var guardDecisions = []string{decisionAllowed, decisionMissingToken, decisionInvalid, decisionExpired, decisionRevoked, decisionWrongAudience,
	decisionInsufficientScope, decisionUnavailable, decisionToolNotAllowed, decisionRateLimited}

// serverMetrics are the collectors of one server, curried with its issuer;
// the guard's counters are resolved in advance, one per resource and
// decision, to keep its hot path free of label lookups.
type serverMetrics struct {
	tokensIssued, tokenErrors, refreshes, familyRevocations, revocations, registrations, metadataFetches, signIns *prometheus.CounterVec
	guard                                                                                                         map[string]map[string]prometheus.Counter
}

func newServerMetrics(issuer string, resources []string) *serverMetrics {
	initMetrics()
	by := prometheus.Labels{"issuer": issuer}
	m := &serverMetrics{
		tokensIssued:      metrics.tokensIssued.MustCurryWith(by),
		tokenErrors:       metrics.tokenErrors.MustCurryWith(by),
		refreshes:         metrics.refreshes.MustCurryWith(by),
		familyRevocations: metrics.familyRevocations.MustCurryWith(by),
		revocations:       metrics.revocations.MustCurryWith(by),
		registrations:     metrics.registrations.MustCurryWith(by),
		metadataFetches:   metrics.metadataFetches.MustCurryWith(by),
		signIns:           metrics.signIns.MustCurryWith(by),
		guard:             map[string]map[string]prometheus.Counter{},
	}
	for _, res := range resources {
		m.guard[res] = map[string]prometheus.Counter{}
		for _, d := range guardDecisions {
			m.guard[res][d] = metrics.guard.WithLabelValues(res, d)
		}
	}
	return m
}

// guardDecision counts one decision of the guard for a resource.
func (m *serverMetrics) guardDecision(resource, decision string) {
	m.guard[resource][decision].Inc()
}
