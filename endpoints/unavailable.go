package endpoints

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// unavailableRetryAfter is the Retry-After (seconds) of an answer given while the
// storage is unavailable: long enough for a reconnect, short enough that
// a client retrying once succeeds when the database is back.
const unavailableRetryAfter = "2"

// healthTimeout bounds health_path's storage check.
const healthTimeout = 2 * time.Second

// storageDown reports whether err is the storage failing (a database
// unreachable, a disk error), which the backends mark positively
// (storage.ErrUnavailable), rather than one of its answers (unknown,
// already used, reused, conflict). Such a request gets 503 and may be
// retried: nothing was decided.
func storageDown(err error) bool {
	return errors.Is(err, storage.ErrUnavailable)
}

const unavailableDescription = "the authorization server cannot reach its storage; retry shortly"

// unavailable answers a JSON endpoint with 503 temporarily_unavailable.
func (s *core) unavailable(w http.ResponseWriter, op string, err error) {
	s.cfg.Logger.Error(op+": storage unavailable", zap.Error(err))
	w.Header().Set("Retry-After", unavailableRetryAfter)
	writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", unavailableDescription)
}

// tokenUnavailable is unavailable for the token endpoint (counted in
// token_errors_total).
func (s *core) tokenUnavailable(w http.ResponseWriter, err error) {
	s.cfg.Logger.Error("token: storage unavailable", zap.Error(err))
	w.Header().Set("Retry-After", unavailableRetryAfter)
	s.tokenFail(w, http.StatusServiceUnavailable, "temporarily_unavailable", unavailableDescription)
}

// pageUnavailable answers a browser page with 503.
func (s *pages) pageUnavailable(w http.ResponseWriter, op string, err error) {
	s.cfg.Logger.Error(op+": storage unavailable", zap.Error(err))
	w.Header().Set("Retry-After", unavailableRetryAfter)
	s.renderError(w, http.StatusServiceUnavailable, "Temporarily unavailable", "The sign-in service cannot be reached right now. Please try again in a moment.")
}

// synced reports whether this node knows every committed revocation (a
// single-process storage always does).
func (s *core) synced() bool {
	return s.cfg.Storage.Synced == nil || s.cfg.Storage.Synced()
}

// health answers health_path: 200 while the storage answers and this
// node's revocations are current, 503 otherwise.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
		return
	}
	status := "ok"
	if s.cfg.Storage.Ping != nil {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		if err := s.cfg.Storage.Ping(ctx); err != nil {
			s.cfg.Logger.Warn("health: storage unreachable", zap.Error(err))
			status = "storage_unreachable"
		}
	}
	if status == "ok" && !s.synced() {
		status = "revocations_stale"
	}
	if status != "ok" {
		w.Header().Set("Retry-After", unavailableRetryAfter)
		writeJSON(w, http.StatusServiceUnavailable, healthAnswer{status})
		return
	}
	writeJSON(w, http.StatusOK, healthAnswer{status})
}

type healthAnswer struct {
	Status string `json:"status"`
}
