package storage

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// BackendModule is a storage guest module of the oauth2_server handler
// (Caddy namespace http.handlers.oauth2_server.storage, inline key
// "backend"): bolt or postgres.
type BackendModule interface {
	// OpenBackend returns the backend, shared with the other handlers and
	// configs that open the same one, and the function that gives it back
	// at cleanup.
	OpenBackend(o OpenOptions) (Backend, func() error, error)
	// Describe names the storage for logs and the admin API; never a
	// password.
	Describe() string
	// Shared reports whether other processes read the same state (so a
	// generated private key must be sealed before it is stored).
	Shared() bool
}

// OpenOptions are the handler's settings for its backend.
type OpenOptions struct {
	// Issuer names the default location (bbolt: oauth2_server/<issuer>.db).
	Issuer string
	// SweepInterval is how often expired records are deleted.
	SweepInterval time.Duration
	Logger        *zap.Logger
	// Audit receives the sweeper's family_revoked events.
	Audit *zap.Logger
	// Observe, when set, is told the duration of every operation.
	Observe func(op string, d time.Duration)
}

// Pinger is a backend whose reachability can be checked (health_path).
type Pinger interface {
	Ping(ctx context.Context) error
}

// EventCounter is a Backend that counts rate-limited events (failed
// sign-ins, registrations) for every node sharing it, so that a limit
// holds across a cluster.
type EventCounter interface {
	// CountEvents records one event of key when record is set, and
	// returns how many key had in the window ending now (the backend's
	// clock), the recorded one included.
	CountEvents(ctx context.Context, key []byte, window time.Duration, record bool) (int, error)
}

// KeyWatcher is a Backend that learns when another process stores a
// signing key: KeyChanges moves then (and whenever a notice may have been
// missed), so the keys are re-read at once.
type KeyWatcher interface {
	KeyChanges() uint64
}

// Syncer is a Backend whose node learns revocations from other nodes: while
// it cannot confirm it is current, protected requests are refused (fail
// closed).
type Syncer interface {
	Synced() bool
}
