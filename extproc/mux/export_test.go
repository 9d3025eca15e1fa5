package mux

import "time"

// SetResolveClock makes h's resolve cache read the time from now (entries expire by it).
func SetResolveClock(h *Server, now func() time.Time) { h.cache.now = now }

// SetResolveCacheBounds bounds h's resolve cache to entries entries and bytes bytes of names.
func SetResolveCacheBounds(h *Server, entries, bytes int) {
	h.cache.maxEntries, h.cache.maxBytes = entries, bytes
}

// ResolveCacheLen returns the number of entries of h's resolve cache.
func ResolveCacheLen(h *Server) int { return h.cache.len() }

// ResolveWaiters returns how many Resolve calls of h wait for another's resolution.
func ResolveWaiters(h *Server) int { return h.cache.waiters() }

// SessionCallers returns how many callers h's session tables count sessions for: the SSE bridge's
// and the HTTP+SSE clients'.
func SessionCallers(h *Server) (bridge, legacy int) {
	h.bridge.table.mu.Lock()
	bridge = len(h.bridge.table.callers)
	h.bridge.table.mu.Unlock()
	h.legacy.table.mu.Lock()
	legacy = len(h.legacy.table.callers)
	h.legacy.table.mu.Unlock()
	return bridge, legacy
}
