package jwt

import (
	"sync"
	"time"
)

// tokenCache remembers verified tokens so that a repeated token costs a map lookup instead of a
// signature check. The key is the raw token string (it is never logged or exported). Entries
// expire at the token's exp or after the cache TTL, whichever comes first; the whole cache is
// dropped when a provider's key set changes. When full, an insert evicts expired entries it meets
// and otherwise one arbitrary entry (Go map iteration starts at a random place).
type tokenCache struct {
	max int
	ttl time.Duration

	mu      sync.RWMutex
	gen     uint64 // incremented by clear, so that a verification racing a key change is not cached
	entries map[string]cacheEntry
}

// cacheEntry is the part of a Result worth keeping.
type cacheEntry struct {
	claims  map[string]any
	subject string
	issuer  string
	expires time.Time
}

// newTokenCache returns a cache of at most max entries; max <= 0 disables caching.
func newTokenCache(max int, ttl time.Duration) *tokenCache {
	c := &tokenCache{max: max, ttl: ttl}
	if max > 0 {
		c.entries = make(map[string]cacheEntry, min(max, 1024))
	}
	return c
}

// generation returns the current generation, to pass to put after a verification.
func (c *tokenCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// get returns the entry of token if it is present and not expired at now.
func (c *tokenCache) get(token string, now time.Time) (cacheEntry, bool) {
	if c.max <= 0 {
		return cacheEntry{}, false
	}
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return cacheEntry{}, false
	}
	return e, true
}

// put stores e for token unless the cache was cleared since generation gen was read. The entry
// expires at exp (the token's exp; zero when it has none) or at now+ttl, whichever is earlier.
func (c *tokenCache) put(token string, e cacheEntry, exp, now time.Time, gen uint64) {
	if c.max <= 0 {
		return
	}
	e.expires = now.Add(c.ttl)
	if !exp.IsZero() && exp.Before(e.expires) {
		e.expires = exp
	}
	if !now.Before(e.expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, present := c.entries[token]; !present && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[token] = e
}

// evictLocked removes the expired entries among the first few it visits, or else the first one.
func (c *tokenCache) evictLocked(now time.Time) {
	const visits = 8
	n, removed := 0, false
	first := ""
	for k, e := range c.entries {
		if n == 0 {
			first = k
		}
		if !now.Before(e.expires) {
			delete(c.entries, k)
			removed = true
		}
		if n++; n == visits {
			break
		}
	}
	if !removed {
		delete(c.entries, first)
	}
}

// clear drops every entry; called when a key set changes.
func (c *tokenCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}

// len returns the number of entries, expired ones included.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
