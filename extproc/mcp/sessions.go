package mcp

import (
	"container/list"
	"sync"
	"time"
)

// SessionKey names a request whose answer is awaited on a legacy SSE stream: the scope (the
// backend and target, so that two servers' session ids cannot collide), the session id the
// server announced in its endpoint event, and the request's JSON-RPC id (IDKey form).
type SessionKey struct {
	Scope, Session, ID string
}

type sessionScope struct{ scope, session string }

type sessionEntry[V any] struct {
	key     SessionKey
	value   V
	rewrite bool
	expires time.Time
}

// Sessions is the bounded table that correlates legacy SSE answers, which arrive on the GET
// stream, with the POSTed requests they answer. Entries expire after a fixed time; when the table
// is full the oldest entry is evicted. It is safe for concurrent use.
type Sessions[V any] struct {
	mu       sync.Mutex
	max      int
	ttl      time.Duration
	entries  map[SessionKey]*list.Element
	order    *list.List // of *sessionEntry[V], oldest first (all entries share one ttl)
	rewrites map[sessionScope]int
}

// NewSessions returns a table of at most max entries that each live for ttl.
func NewSessions[V any](max int, ttl time.Duration) *Sessions[V] {
	return &Sessions[V]{
		max:      max,
		ttl:      ttl,
		entries:  make(map[SessionKey]*list.Element),
		order:    list.New(),
		rewrites: make(map[sessionScope]int),
	}
}

// Put records a request. rewrite says that its answer must be rewritten (a tools/list to filter, a
// refused call's ping to replace), so the session's stream must hold back incomplete events. It
// returns the values that left the table to make room or because they expired, or that had the
// same key, so that the caller can account for them.
func (s *Sessions[V]) Put(now time.Time, k SessionKey, v V, rewrite bool) (evicted []V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evicted = s.expireLocked(now, evicted)
	if el, ok := s.entries[k]; ok {
		evicted = append(evicted, s.removeLocked(el).value)
	}
	for s.order.Len() >= s.max && s.order.Len() > 0 {
		evicted = append(evicted, s.removeLocked(s.order.Front()).value)
	}
	e := &sessionEntry[V]{key: k, value: v, rewrite: rewrite, expires: now.Add(s.ttl)}
	s.entries[k] = s.order.PushBack(e)
	if rewrite {
		s.rewrites[sessionScope{k.Scope, k.Session}]++
	}
	return evicted
}

// Take removes and returns the request with key k.
func (s *Sessions[V]) Take(k SessionKey) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	return s.removeLocked(el).value, true
}

// NeedsRewrite reports whether a request of the session awaits an answer that must be rewritten.
func (s *Sessions[V]) NeedsRewrite(scope, session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rewrites[sessionScope{scope, session}] > 0
}

// Expire removes and returns the entries that expired by now.
func (s *Sessions[V]) Expire(now time.Time) []V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(now, nil)
}

// Len returns the number of entries.
func (s *Sessions[V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

func (s *Sessions[V]) expireLocked(now time.Time, out []V) []V {
	for el := s.order.Front(); el != nil; el = s.order.Front() {
		if el.Value.(*sessionEntry[V]).expires.After(now) {
			break
		}
		out = append(out, s.removeLocked(el).value)
	}
	return out
}

func (s *Sessions[V]) removeLocked(el *list.Element) *sessionEntry[V] {
	e := s.order.Remove(el).(*sessionEntry[V])
	delete(s.entries, e.key)
	if e.rewrite {
		sc := sessionScope{e.key.Scope, e.key.Session}
		if s.rewrites[sc]--; s.rewrites[sc] <= 0 {
			delete(s.rewrites, sc)
		}
	}
	return e
}
