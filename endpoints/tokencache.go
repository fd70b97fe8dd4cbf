package endpoints

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// maxCachedTokens bounds the verified-token cache.
const maxCachedTokens = 10_000

// tokenCache remembers verified access tokens, keyed by a hash of the
// token, until they expire, so each token's signature is checked once.
type tokenCache struct {
	mu      sync.RWMutex
	entries map[[32]byte]*cachedToken
}

// cachedToken is a verified token. checked is the storage's revocation
// counter when the token was last found unrevoked; guarded is set once
// the guard has let it through (introspection caches tokens too).
type cachedToken struct {
	claims  *accessTokenClaims
	until   time.Time
	checked atomic.Uint64
	guarded atomic.Bool
}

func newTokenCache() *tokenCache {
	return &tokenCache{entries: map[[32]byte]*cachedToken{}}
}

func (c *tokenCache) get(raw string, now time.Time) (*cachedToken, bool) {
	key := sha256.Sum256([]byte(raw))
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e, true
}

func (c *tokenCache) put(raw string, claims *accessTokenClaims, until time.Time, checked uint64, guarded bool) {
	key := sha256.Sum256([]byte(raw))
	e := &cachedToken{claims: claims, until: until}
	e.checked.Store(checked)
	e.guarded.Store(guarded)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedTokens {
		c.evict(time.Now())
	}
	c.entries[key] = e
}

func (c *tokenCache) drop(raw string) {
	key := sha256.Sum256([]byte(raw))
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// evict removes expired entries, then (if still full) about a tenth of
// the rest, in map order, which is random enough.
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.until) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < maxCachedTokens*9/10 {
			break
		}
		delete(c.entries, k)
	}
}

// clear forgets every token (a key stopped verifying: what it signed must
// be refused at once).
func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// len is the number of cached tokens (for tests).
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
