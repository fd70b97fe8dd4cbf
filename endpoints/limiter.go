package endpoints

import (
	"container/list"
	"context"
	"crypto/sha256"
	"strconv"
	"sync"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// maxLimiterKeys bounds a limiter's memory: beyond it the key used least
// recently is forgotten.
const maxLimiterKeys = 100_000

// busyRetry is the Retry-After of an attempt refused only because others
// for the same key are still being decided.
const busyRetry = time.Second

// keyedLimiter allows each key (a user name, a client IP) a number of
// events per window, refilled continuously (golang.org/x/time/rate).
//
// An attempt is admitted before the work it limits is done (reserve, then
// verify): an admitted attempt holds one event of every key until it is
// settled, so any number of concurrent attempts is evaluated no more often
// than the limit allows.
type keyedLimiter struct {
	events int
	window time.Duration
	mu     sync.Mutex
	keys   map[limiterKey]*list.Element // of *keyState; the list's front is the key used last
	order  *list.List
	cap    int          // maxLimiterKeys
	shared *sharedLimit // nil on a single node
}

// limiterKey is a key's SHA-256: however long the user name or address a
// caller sends, a key takes 32 bytes, and names are not kept in the clear.
type limiterKey [sha256.Size]byte

// sharedLimit extends a keyedLimiter to every node of a cluster: counted
// events are recorded in the storage, and an attempt is admitted only
// while the cluster-wide count in the window is under the limit.
type sharedLimit struct {
	counter storage.EventCounter
	name    string // the issuer and the limit, e.g. "https://a.example\x00login"
	log     *zap.Logger
}

// key names a limiter key in the storage; hashed, so addresses and user
// names are not kept in the clear.
func (s *sharedLimit) key(k string) []byte {
	return storage.Hash(s.name + "\x00" + k)
}

type keyState struct {
	key      limiterKey
	lim      *rate.Limiter
	inFlight int // admitted attempts not yet settled
}

func newKeyedLimiter(events int, window time.Duration) *keyedLimiter {
	return &keyedLimiter{events: events, window: window, keys: map[limiterKey]*list.Element{}, order: list.New(), cap: maxLimiterKeys}
}

// lookup is a key's state, nil when the key has none (a full bucket).
func (l *keyedLimiter) lookup(key string) *keyState {
	if e, ok := l.keys[sha256.Sum256([]byte(key))]; ok {
		l.order.MoveToFront(e)
		return e.Value.(*keyState)
	}
	return nil
}

// state is a key's state, made when it has none; at the cap the key used
// least recently is forgotten first.
func (l *keyedLimiter) state(key string) *keyState {
	if st := l.lookup(key); st != nil {
		return st
	}
	for len(l.keys) >= l.cap {
		oldest := l.order.Back()
		delete(l.keys, oldest.Value.(*keyState).key)
		l.order.Remove(oldest)
	}
	st := &keyState{key: sha256.Sum256([]byte(key)), lim: rate.NewLimiter(rate.Every(l.window/time.Duration(l.events)), l.events)}
	l.keys[st.key] = l.order.PushFront(st)
	return st
}

// attempt is an admitted attempt; settle it exactly once.
type attempt struct {
	l    *keyedLimiter
	keys []string
	ctx  context.Context // set when the events are shared
}

// admitShared is admit, then (on a cluster) the cluster-wide count of
// every key. A storage that cannot be asked leaves the node's own limit.
func (l *keyedLimiter) admitShared(ctx context.Context, keys ...string) (*attempt, time.Duration) {
	a, wait := l.admit(keys...)
	if a == nil || l.shared == nil {
		return a, wait
	}
	a.ctx = ctx
	for _, key := range keys {
		n, err := l.shared.counter.CountEvents(ctx, l.shared.key(key), l.window, false)
		if err != nil {
			l.shared.log.Warn("rate limit: the cluster-wide count is unavailable; this node's own limit applies", zap.Error(err))
			return a, 0
		}
		if n >= l.events {
			a.ctx = nil
			a.settle(false)
			return nil, l.window / time.Duration(l.events)
		}
	}
	return a, 0
}

// admit lets an attempt in when every key has an event left that no other
// admitted attempt holds; otherwise it returns how long to wait: until an
// event refills, or busyRetry when the keys are only held by attempts in
// progress.
//
// Keys are made only for an admitted attempt: one refused by another key
// (the address's) leaves no trace.
func (l *keyedLimiter) admit(keys ...string) (*attempt, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var wait time.Duration
	for _, key := range keys {
		st := l.lookup(key)
		if st == nil {
			continue // a full bucket
		}
		tokens := st.lim.TokensAt(now)
		switch {
		case tokens-float64(st.inFlight) >= 1:
		case tokens >= 1:
			wait = max(wait, busyRetry)
		default:
			wait = max(wait, time.Duration((1-tokens)*float64(l.window/time.Duration(l.events))))
		}
	}
	if wait > 0 {
		return nil, wait
	}
	for _, key := range keys {
		l.state(key).inFlight++
	}
	return &attempt{l: l, keys: keys}, 0
}

// settle ends an admitted attempt: a counted one (a failed sign-in, a
// registration) uses up its event of every key; an uncounted one (a
// successful sign-in) gives it back.
func (a *attempt) settle(counted bool) {
	l := a.l
	l.mu.Lock()
	now := time.Now()
	for _, key := range a.keys {
		st := l.state(key)
		st.inFlight = max(st.inFlight-1, 0)
		if counted {
			st.lim.AllowN(now, 1)
		}
	}
	l.mu.Unlock()
	if counted && a.ctx != nil {
		for _, key := range a.keys {
			if _, err := l.shared.counter.CountEvents(a.ctx, l.shared.key(key), l.window, true); err != nil {
				l.shared.log.Warn("rate limit: recording the event for the cluster", zap.Error(err))
			}
		}
	}
}

// take counts one event of key at once (a guarded request): refused when
// the node's own bucket is empty, or, on a cluster, when the cluster-wide
// count in the window (this event included) is over the limit; one
// storage round trip. A storage that cannot be asked leaves the node's
// own limit.
func (l *keyedLimiter) take(ctx context.Context, key string) (bool, time.Duration) {
	l.mu.Lock()
	now := time.Now()
	r := l.state(key).lim.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		l.mu.Unlock()
		return false, wait
	}
	l.mu.Unlock()
	if l.shared == nil {
		return true, 0
	}
	n, err := l.shared.counter.CountEvents(ctx, l.shared.key(key), l.window, true)
	if err != nil {
		l.shared.log.Warn("rate limit: the cluster-wide count is unavailable; this node's own limit applies", zap.Error(err))
		return true, 0
	}
	if n > l.events {
		return false, l.window / time.Duration(l.events)
	}
	return true, 0
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// shareAcrossNodes makes the limit hold across every node sharing the
// storage, when the storage can count events (name: "login", "user",
// "register").
func (l *keyedLimiter) shareAcrossNodes(c *core, name string) {
	if c.cfg.Storage.Events != nil {
		l.shared = &sharedLimit{counter: c.cfg.Storage.Events, name: c.cfg.Issuer + "\x00" + name, log: c.cfg.Logger}
	}
}
