package jwt

import (
	"reflect"
	"sync"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

// sameMap reports whether two claim maps are the same map, i.e. the second came from the cache.
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func TestVerifiedTokenCache(t *testing.T) {
	t0 := time.Unix(1_900_000_000, 0)
	clk := &clock{t: t0}
	s := newSigner(t, "ES256", "k")
	a := mustNew(t, inlineConfig(strict, "iss", jwks(t, s)), Options{Now: clk.now, CacheTTL: time.Minute})
	tok := bearer(s.sign(t, gojwt.MapClaims{"iss": "iss", "sub": "bob", "exp": t0.Add(10 * time.Minute).Unix()}))

	first := a.Authenticate(t.Context(), tok)
	wantOK(t, first)
	second := a.Authenticate(t.Context(), tok)
	wantOK(t, second)
	if !sameMap(first.Claims, second.Claims) || second.Subject != "bob" || second.Issuer != "iss" {
		t.Fatal("the repeated token was verified again instead of answered from the cache")
	}

	// Past the cache TTL the token is verified again (a new claims map), and cached again.
	clk.set(t0.Add(2 * time.Minute))
	third := a.Authenticate(t.Context(), tok)
	wantOK(t, third)
	if sameMap(first.Claims, third.Claims) {
		t.Fatal("an entry older than the cache TTL was used")
	}

	// An entry never outlives the token: at exp+30s the cache misses, the full check accepts the
	// token within the clock skew, and at exp+2min refuses it.
	clk.set(t0.Add(10*time.Minute + 30*time.Second))
	fourth := a.Authenticate(t.Context(), tok)
	wantOK(t, fourth)
	if sameMap(third.Claims, fourth.Claims) {
		t.Fatal("an entry was used past the token's exp")
	}
	clk.set(t0.Add(12 * time.Minute))
	wantInvalid(t, a.Authenticate(t.Context(), tok), ReasonExpired)

	// Refused tokens are not cached.
	clk.set(t0)
	before := a.cache.len()
	a.Authenticate(t.Context(), bearer(s.sign(t, gojwt.MapClaims{"iss": "other"})))
	if a.cache.len() != before {
		t.Fatal("a refused token was cached")
	}
}

func TestCacheBoundAndDisable(t *testing.T) {
	now := time.Now()
	s := newSigner(t, "EdDSA", "k")
	a := mustNew(t, inlineConfig(strict, "iss", jwks(t, s)), Options{CacheSize: 3})
	for i := range 10 {
		wantOK(t, a.Authenticate(t.Context(), bearer(s.sign(t, claimsAt(now, "iss", gojwt.MapClaims{"n": i})))))
		if n := a.cache.len(); n > 3 {
			t.Fatalf("cache holds %d entries, bound is 3", n)
		}
	}
	off := mustNew(t, inlineConfig(strict, "iss", jwks(t, s)), Options{CacheSize: -1})
	tok := bearer(s.sign(t, claimsAt(now, "iss", nil)))
	r1, r2 := off.Authenticate(t.Context(), tok), off.Authenticate(t.Context(), tok)
	wantOK(t, r2)
	if sameMap(r1.Claims, r2.Claims) || off.cache.len() != 0 {
		t.Fatal("a disabled cache cached")
	}
}

func TestCacheGenerationGuard(t *testing.T) {
	c := newTokenCache(10, time.Minute)
	now := time.Now()
	gen := c.generation()
	c.clear() // a key set changed while a verification was running
	c.put("tok", cacheEntry{subject: "x"}, time.Time{}, now, gen)
	if _, ok := c.get("tok", now); ok {
		t.Fatal("a verification that raced a key change was cached")
	}
	c.put("tok", cacheEntry{subject: "x"}, time.Time{}, now, c.generation())
	if e, ok := c.get("tok", now); !ok || e.subject != "x" {
		t.Fatal("entry not cached")
	}
	c.put("old", cacheEntry{}, now.Add(-time.Second), now, c.generation())
	if _, ok := c.get("old", now); ok {
		t.Fatal("an already expired token was cached")
	}
}
