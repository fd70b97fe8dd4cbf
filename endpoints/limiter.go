package endpoints

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiterKeys bounds memory; limiters that have refilled are dropped first.
const maxLimiterKeys = 100_000

// keyedLimiter allows each key (a user name, a client IP) a number of
// events per window, refilled continuously (golang.org/x/time/rate).
type keyedLimiter struct {
	events   int
	window   time.Duration
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func newKeyedLimiter(events int, window time.Duration) *keyedLimiter {
	return &keyedLimiter{events: events, window: window, limiters: map[string]*rate.Limiter{}}
}

func (l *keyedLimiter) limiter(key string, now time.Time) *rate.Limiter {
	lim, ok := l.limiters[key]
	if !ok {
		if len(l.limiters) >= maxLimiterKeys {
			for k, old := range l.limiters {
				if old.TokensAt(now) >= float64(l.events) {
					delete(l.limiters, k)
				}
			}
		}
		lim = rate.NewLimiter(rate.Every(l.window/time.Duration(l.events)), l.events)
		l.limiters[key] = lim
	}
	return lim
}

// wait returns how long until every key may have another event, or 0
// when they all may now.
func (l *keyedLimiter) wait(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var longest time.Duration
	for _, key := range keys {
		if tokens := l.limiter(key, now).TokensAt(now); tokens < 1 {
			if d := time.Duration((1 - tokens) * float64(l.window/time.Duration(l.events))); d > longest {
				longest = d
			}
		}
	}
	return longest
}

// take records one event for every key.
func (l *keyedLimiter) take(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, key := range keys {
		l.limiter(key, now).AllowN(now, 1)
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
