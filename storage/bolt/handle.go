package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// handles holds one open store per file per process. Caddy provisions a new
// config before it cleans up the old one, and bbolt locks its file
// exclusively, so both configs must share the handle instead of opening the
// file twice.
var handles = caddy.NewUsagePool()

// handle is the pooled value: the open file and its sweeper.
type handle struct {
	store     *File
	stopSweep context.CancelFunc
	swept     chan struct{}
}

// Destruct stops the sweeper and closes the file when the last user is gone.
func (h *handle) Destruct() error {
	h.stopSweep()
	<-h.swept
	return h.store.Close()
}

// Options tune a shared handle. Only the first user of a file sets them.
type Options struct {
	// SweepInterval is how often expired records are deleted.
	SweepInterval time.Duration
	// Logger receives the sweeper's debug and error lines, and a warning
	// when opening the file upgraded its schema.
	Logger *zap.Logger
	// Audit receives the sweeper's family_revoked events.
	Audit *zap.Logger
	// Observe, when set, is told the duration of every operation.
	Observe func(op string, d time.Duration)
}

// Key is the pool key of a storage path: absolute, cleaned, with symlinks
// resolved, so that every spelling of one file shares one handle.
func Key(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolving storage path %q: %w", path, err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		return resolved, nil
	}
	// The file does not exist yet: resolve its folder instead.
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs)), nil
	}
	return abs, nil
}

// Acquire returns the store for the file at key (from Key), opening it and
// starting its sweeper on first use. Every successful Acquire must be
// matched by exactly one Release of the same key.
func Acquire(key string, opts Options) (*File, error) {
	val, _, err := handles.LoadOrNew(key, func() (caddy.Destructor, error) {
		store, err := Open(key)
		if err != nil {
			return nil, err
		}
		store.Observe(opts.Observe)
		if note := store.Upgraded(); note != "" && opts.Logger != nil {
			opts.Logger.Warn("storage upgraded", zap.String("storage", key), zap.String("change", note))
		}
		ctx, cancel := context.WithCancel(context.Background())
		h := &handle{store: store, stopSweep: cancel, swept: make(chan struct{})}
		go func() {
			defer close(h.swept)
			storage.Sweep(ctx, store, opts.SweepInterval, opts.Logger, opts.Audit)
		}()
		return h, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*handle).store, nil
}

// Release gives back one reference taken by Acquire; the last one closes the file.
func Release(key string) error {
	_, err := handles.Delete(key)
	return err
}
