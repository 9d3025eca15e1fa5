package mux

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// DefaultResolveCacheTTL is the lifetime of a cached resolution in cmd/mcpgate
// (--mux-resolve-cache-ttl; Options.ResolveCacheTTL, where 0 disables the cache): how stale the
// target a prefixMode Never call is sent to may be.
const DefaultResolveCacheTTL = 2 * time.Second

// The bounds of the resolve cache: at most resolveCacheEntries entries and resolveCacheBytes of
// names (resolution.size) in all; the oldest entries are evicted first.
const (
	resolveCacheEntries = 4096
	resolveCacheBytes   = 32 << 20
)

// resolveKey identifies what a resolution depends on: the route's backend description as the
// front hop passed it (contract.Mux: backend, targets, failure mode, the route's request header
// changes and URLRewrite host, which the lists carry), the client's composite session id (its
// targets' session ids; the front hop seals it to the caller that opened it), the request's
// host, the caller and the kind of item, hashed (SHA-256 of the length-prefixed fields: a description may
// be 16 KiB, and 4096 of them would be memory spent on keys).
type resolveKey [sha256.Size]byte

func newResolveKey(q *Query) resolveKey {
	h := sha256.New()
	var n [9]byte
	n[0] = byte(q.Item)
	for _, s := range []string{q.Mux, q.Session, q.Host, q.Caller} {
		binary.BigEndian.PutUint64(n[1:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var k resolveKey
	h.Sum(k[:0])
	return k
}

// resolution is the outcome of one full resolution of a session's items of one kind: the name
// each target lists, the target of each name one target lists, and the targets (in the
// session's order) of each name several list.
type resolution struct {
	targets   map[string]string
	ambiguous map[string][]string
	// size approximates the bytes the resolution holds (its names and targets, and a map
	// entry's overhead each).
	size int
}

// resolutionEntryOverhead approximates a map entry's own bytes (string headers, bucket slot).
const resolutionEntryOverhead = 48

// newResolution builds the resolution of the lists of targets (names[i] listed by targets[i];
// a nil list: the target was left out).
func newResolution(targets []string, names [][]listed) *resolution {
	r := &resolution{targets: map[string]string{}}
	for i, l := range names {
		t := targets[i]
		for _, item := range l {
			name := item.name
			if ts, ok := r.ambiguous[name]; ok {
				if ts[len(ts)-1] != t {
					r.ambiguous[name] = append(ts, t)
				}
				continue
			}
			first, ok := r.targets[name]
			switch {
			case !ok:
				r.targets[name] = t
				r.size += len(name) + resolutionEntryOverhead
			case first != t:
				delete(r.targets, name)
				if r.ambiguous == nil {
					r.ambiguous = map[string][]string{}
				}
				r.ambiguous[name] = []string{first, t}
			}
		}
	}
	for _, ts := range r.ambiguous {
		r.size += resolutionEntryOverhead + 16*len(ts)
	}
	return r
}

// lookup returns the target of name; ok false when no target lists it (ResolveUnknown).
func (r *resolution) lookup(name string) (target string, ambiguous []string, ok bool) {
	if t, ok := r.targets[name]; ok {
		return t, nil, true
	}
	if ts, ok := r.ambiguous[name]; ok {
		return "", ts, true
	}
	return "", nil, false
}

// resolveCache holds the resolutions of Resolve for a short while (Options.ResolveCacheTTL), so
// that the calls of a session that follow one another do not each list every target.
//
// Why staleness is safe: the cache only decides which target a call is sent to. The front hop
// judges the call as a call of that very target (mcp.tool.target) and pins it in
// contract.HeaderMuxTarget, by which alone the mux routes it; so a stale entry (a tool moved or
// removed since) can make the call fail (the pinned target answers unknown tool) or report it
// ambiguous a TTL too long, but never bring it to a target other than the one judged. A name
// absent from an entry is resolved afresh before it is called unknown, so a tool added since is
// found at once. Only complete resolutions are kept: one where a target failed (FailOpen skips
// it) or did not answer in time is not, and the next call lists again.
//
// Entries expire ttl after their resolution began and are evicted oldest first past
// resolveCacheEntries entries or resolveCacheBytes of names. Nothing invalidates them before
// (notifications/tools/list_changed, a session's DELETE): ttl is the staleness bound.
type resolveCache struct {
	ttl        time.Duration
	now        func() time.Time
	maxEntries int
	maxBytes   int

	mu      sync.Mutex
	entries map[resolveKey]*list.Element // of *cacheEntry
	// flights are the resolutions being made, by key: the calls of a key that come meanwhile
	// wait for its resolution rather than list the targets again (join, land); waiting counts
	// them.
	flights map[resolveKey]*flight
	waiting int
	order   list.List // oldest first (by insertion: nearly expiry order)
	bytes   int
}

type cacheEntry struct {
	key     resolveKey
	r       *resolution
	expires time.Time
}

func newResolveCache(ttl time.Duration) *resolveCache {
	return &resolveCache{ttl: ttl, now: time.Now, maxEntries: resolveCacheEntries, maxBytes: resolveCacheBytes,
		entries: map[resolveKey]*list.Element{}, flights: map[resolveKey]*flight{}}
}

// flight is a resolution being made for a key: done is closed when it has landed, with r the
// complete resolution (nil when a target failed or the resolution did).
type flight struct {
	done chan struct{}
	r    *resolution
}

// join returns the flight of k, and whether the caller leads it: the leader resolves and lands
// it (land), the others wait for it (await).
func (c *resolveCache) join(k resolveKey) (*flight, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[k]; f != nil {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	c.flights[k] = f
	return f, true
}

// await waits for f to land, or for ctx's end; it returns f's complete resolution, nil without
// one.
func (c *resolveCache) await(ctx context.Context, f *flight) *resolution {
	c.mu.Lock()
	c.waiting++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.waiting--
		c.mu.Unlock()
	}()
	select {
	case <-f.done:
		return f.r
	case <-ctx.Done():
		return nil
	}
}

// land ends the flight f of k with r, the complete resolution or nil.
func (c *resolveCache) land(k resolveKey, f *flight, r *resolution) {
	c.mu.Lock()
	if c.flights[k] == f {
		delete(c.flights, k)
	}
	c.mu.Unlock()
	f.r = r
	close(f.done)
}

// waiters returns how many calls wait for a flight.
func (c *resolveCache) waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// get returns the live resolution of k.
func (c *resolveCache) get(k resolveKey) *resolution {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil
	}
	ce := e.Value.(*cacheEntry)
	if !c.now().Before(ce.expires) {
		c.remove(e)
		return nil
	}
	return ce.r
}

// put keeps r as the resolution of k, begun at start, replacing any, and evicts what has expired
// and the oldest past the bounds.
func (c *resolveCache) put(k resolveKey, r *resolution, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
	now := c.now()
	for e := c.order.Front(); e != nil && !now.Before(e.Value.(*cacheEntry).expires); e = c.order.Front() {
		c.remove(e)
	}
	if r.size > c.maxBytes {
		return
	}
	for c.order.Len() > 0 && (c.order.Len() >= c.maxEntries || c.bytes+r.size > c.maxBytes) {
		c.remove(c.order.Front())
	}
	c.entries[k] = c.order.PushBack(&cacheEntry{key: k, r: r, expires: start.Add(c.ttl)})
	c.bytes += r.size
}

func (c *resolveCache) remove(e *list.Element) {
	ce := c.order.Remove(e).(*cacheEntry)
	delete(c.entries, ce.key)
	c.bytes -= ce.r.size
}

// len returns the number of entries, expired or not.
func (c *resolveCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
