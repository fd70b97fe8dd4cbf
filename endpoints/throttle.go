package endpoints

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sign-in throttling: 5 failures per account or per client IP, refilled
// over 15 minutes.
const (
	loginFailures = 5
	loginWindow   = 15 * time.Minute
	// maxThrottleKeys bounds memory; idle full limiters are dropped first.
	maxThrottleKeys = 100_000
)

// loginThrottle counts failed sign-ins per account and per client IP.
type loginThrottle struct {
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	now      func() time.Time
}

func newLoginThrottle() *loginThrottle {
	return &loginThrottle{limiters: map[string]*rate.Limiter{}, now: time.Now}
}

func (t *loginThrottle) limiter(key string) *rate.Limiter {
	l, ok := t.limiters[key]
	if !ok {
		if len(t.limiters) >= maxThrottleKeys {
			t.prune()
		}
		l = rate.NewLimiter(rate.Every(loginWindow/loginFailures), loginFailures)
		t.limiters[key] = l
	}
	return l
}

// prune drops limiters that have refilled completely: they hold no state.
func (t *loginThrottle) prune() {
	now := t.now()
	for k, l := range t.limiters {
		if l.TokensAt(now) >= loginFailures {
			delete(t.limiters, k)
		}
	}
}

// wait returns how long the account or IP must wait before another
// attempt, or 0 when an attempt is allowed now.
func (t *loginThrottle) wait(account, ip string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var longest time.Duration
	for _, key := range []string{"user:" + account, "ip:" + ip} {
		l := t.limiter(key)
		if tokens := l.TokensAt(now); tokens < 1 {
			if d := time.Duration((1 - tokens) * float64(loginWindow/loginFailures)); d > longest {
				longest = d
			}
		}
	}
	return longest
}

// fail records a failed attempt for the account and the IP.
func (t *loginThrottle) fail(account, ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.limiter("user:"+account).AllowN(now, 1)
	t.limiter("ip:"+ip).AllowN(now, 1)
}
