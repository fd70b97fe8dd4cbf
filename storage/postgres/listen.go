package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// keysNotice is the payload announcing a new or rotated signing key (a
// revocation's is the revocation in JSON).
const keysNotice = "keys"

// listener keeps one connection LISTENing for the revocations (and key
// rotations) other nodes commit, and keeps the node's revoked set by them.
// Every notice moves the revocation counter, so guards check their cached
// tokens again; so does every reconnect, which loads the set anew, since
// notices sent while disconnected are not replayed.
//
// A notice is a hint, never the truth: PostgreSQL checks no privilege on
// NOTIFY, so any role that can connect can send one. A notice names a
// revocation, which the listener reads from the database before applying
// it; a notice naming nothing there changes nothing. Reading is bounded
// (lookupsPerSecond); beyond it, and for a notice that asks for a reload
// or cannot be read, the whole set is loaded again, at most once a second.
type listener struct {
	d      *DB
	cfg    *pgx.ConnConfig
	cancel context.CancelFunc
	done   chan struct{}

	// connected, and since when (unix nanoseconds) it is known good or
	// lost: read on every protected request, so atomics.
	connected atomic.Bool
	since     atomic.Int64

	// Owned by the run goroutine.
	lookups       *rate.Limiter
	reloads       *rate.Limiter
	reloadPending bool
	// reloaded counts the full loads of the set (the first included).
	reloaded atomic.Int64
}

// Bounds on the database work notices cause, per node.
const (
	lookupsPerSecond = 500
	reloadInterval   = time.Second
)

func (d *DB) listen(ctx context.Context, cfg *pgx.ConnConfig) (*listener, error) {
	l := &listener{d: d, cfg: cfg.Copy(), done: make(chan struct{}),
		lookups: rate.NewLimiter(lookupsPerSecond, lookupsPerSecond), reloads: rate.NewLimiter(rate.Every(reloadInterval), 1)}
	// Named, so that an operator (and the cluster tests) can tell it in
	// pg_stat_activity.
	l.cfg.RuntimeParams["application_name"] = listenerName(d.schema)
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.run(bg, conn)
	return l, nil
}

// listenerName is the application_name of a schema's listening
// connections (PostgreSQL keeps its first 63 bytes).
func listenerName(schema string) string { return "oauth2_server listener " + schema }

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, redact(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.d.channel}.Sanitize()); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	// LISTEN first, then load: a revocation committed in between is in
	// the load or in a notice (applying one twice changes nothing).
	if err := l.reload(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("loading the revocations: %w", err)
	}
	l.setConnected(true)
	l.d.keyChanges.Add(1)
	return conn, nil
}

// reload loads the whole set and moves the revocation counter.
func (l *listener) reload(ctx context.Context, conn *pgx.Conn) error {
	if err := l.d.revoked.load(ctx, conn); err != nil {
		return err
	}
	l.reloaded.Add(1)
	l.reloadPending = false
	l.d.revocations.Add(1) // anything before it took effect is re-checked
	return nil
}

func (l *listener) setConnected(ok bool) {
	l.since.Store(time.Now().UnixNano())
	l.connected.Store(ok)
}

// run waits for notices, reconnecting with a short backoff, until ctx ends.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	backoff := 50 * time.Millisecond
	lost := func(err error) {
		l.d.log.Warn("revocation listener lost its connection", zap.Error(err))
		l.setConnected(false)
		conn.Close(context.Background())
		conn = nil
	}
	for {
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if conn, err = l.connect(ctx); err != nil {
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			l.d.log.Info("revocation listener reconnected")
			backoff = 50 * time.Millisecond
		}
		timeout := time.Second
		if l.reloadPending {
			timeout = reloadInterval / 10
		}
		wait, cancel := context.WithTimeout(ctx, timeout)
		n, err := conn.WaitForNotification(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			conn.Close(context.Background())
			return
		case err == nil:
			err = l.notice(ctx, conn, n.Payload)
		case wait.Err() != nil:
			// A quiet while: check that the connection is still there.
			ping, cancel := context.WithTimeout(ctx, time.Second)
			err = conn.Ping(ping)
			cancel()
			if err == nil {
				l.setConnected(true)
			}
		}
		if err == nil && l.reloadPending && l.reloads.Allow() {
			err = l.reload(ctx, conn)
		}
		if err != nil {
			// Not current any more: the connection is dropped, and the
			// reconnect loads the set (or the node goes stale).
			lost(err)
		}
	}
}

// notice applies one notification: a key change, or a revocation read
// back from the database; a reload, anything unreadable, and notices
// beyond the lookup bound leave a reload pending. An error means the
// database could not be read.
func (l *listener) notice(ctx context.Context, conn *pgx.Conn, payload string) error {
	if payload == keysNotice {
		l.d.keyChanges.Add(1)
		return nil
	}
	var v revocation
	if err := json.Unmarshal([]byte(payload), &v); err != nil || !v.named() || !l.lookups.Allow() {
		l.reloadPending = true
		return nil
	}
	if err := l.d.revoked.reread(ctx, conn, v); err != nil {
		return fmt.Errorf("reading a revocation back: %w", err)
	}
	l.d.revocations.Add(1)
	return nil
}

// current reports whether the listener is connected, or was within
// staleness.
func (l *listener) current(staleness time.Duration) bool {
	return l.connected.Load() || time.Since(time.Unix(0, l.since.Load())) < staleness
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
