package endpoints

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiterKeys bounds memory; idle limiters that have refilled are
// dropped first.
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
	keys   map[string]*keyState
}

type keyState struct {
	lim      *rate.Limiter
	inFlight int // admitted attempts not yet settled
}

func newKeyedLimiter(events int, window time.Duration) *keyedLimiter {
	return &keyedLimiter{events: events, window: window, keys: map[string]*keyState{}}
}

func (l *keyedLimiter) state(key string, now time.Time) *keyState {
	st, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= maxLimiterKeys {
			for k, old := range l.keys {
				if old.inFlight == 0 && old.lim.TokensAt(now) >= float64(l.events) {
					delete(l.keys, k)
				}
			}
		}
		st = &keyState{lim: rate.NewLimiter(rate.Every(l.window/time.Duration(l.events)), l.events)}
		l.keys[key] = st
	}
	return st
}

// attempt is an admitted attempt; settle it exactly once.
type attempt struct {
	l    *keyedLimiter
	keys []string
}

// admit lets an attempt in when every key has an event left that no other
// admitted attempt holds; otherwise it returns how long to wait: until an
// event refills, or busyRetry when the keys are only held by attempts in
// progress.
func (l *keyedLimiter) admit(keys ...string) (*attempt, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var wait time.Duration
	for _, key := range keys {
		st := l.state(key, now)
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
		l.keys[key].inFlight++
	}
	return &attempt{l: l, keys: keys}, 0
}

// settle ends an admitted attempt: a counted one (a failed sign-in, a
// registration) uses up its event of every key; an uncounted one (a
// successful sign-in) gives it back.
func (a *attempt) settle(counted bool) {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, key := range a.keys {
		st := l.state(key, now)
		st.inFlight = max(st.inFlight-1, 0)
		if counted {
			st.lim.AllowN(now, 1)
		}
	}
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
