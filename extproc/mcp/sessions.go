package mcp

import (
	"container/list"
	"sync"
	"time"
)

// SessionKey names a request whose answer is awaited on a session's GET stream: the scope (the
// backend and target, so that two servers' session ids cannot collide), the session id (the one
// a legacy SSE server announced in its endpoint event, or the Mcp-Session-Id of a Streamable HTTP
// session), and the request's JSON-RPC id (IDKey form).
type SessionKey struct {
	// Scope is the backend and target, Session the server's session id, ID the request's
	// JSON-RPC id in IDKey form.
	Scope, Session, ID string
}

// SessionLimits bounds a Sessions table.
type SessionLimits struct {
	// Entries is the most requests the table holds, over all sessions.
	Entries int
	// PerSession is the most requests one session holds: a session that posts more without
	// their answers coming pushes out its own oldest requests, not other sessions'.
	PerSession int
	// Bytes is the most the table's entries may hold, by the sizes given to Put.
	Bytes int
	// TTL is how long a request waits for its answer.
	TTL time.Duration
}

type sessionScope struct{ scope, session string }

// sessionState is what the table holds for one session: its entries, oldest first.
type sessionState struct {
	order list.List // of *list.Element of Sessions.order
}

type sessionEntry[V any] struct {
	key     SessionKey
	value   V
	size    int
	expires time.Time
	inScope *list.Element // this entry's element in its sessionState.order
}

// Sessions is the bounded table that correlates answers that arrive on a session's GET stream
// (legacy SSE's; Streamable HTTP's, resumed after a POST's event stream ended before its answers)
// with the POSTed requests they answer. Entries expire after a fixed time; when the table
// or a session is full, the oldest entry (of the table, resp. of the session) is evicted. It is
// safe for concurrent use.
type Sessions[V any] struct {
	mu       sync.Mutex
	limits   SessionLimits
	bytes    int
	entries  map[SessionKey]*list.Element
	order    *list.List // of *sessionEntry[V], oldest first (all entries share one ttl)
	sessions map[sessionScope]*sessionState
}

// NewSessions returns a table bounded by limits; every limit must be positive.
func NewSessions[V any](limits SessionLimits) *Sessions[V] {
	return &Sessions[V]{
		limits:   limits,
		entries:  make(map[SessionKey]*list.Element),
		order:    list.New(),
		sessions: make(map[sessionScope]*sessionState),
	}
}

// Put records a request; size is what its value holds in memory (the key's strings are added to
// it). It returns the values that left the table to make room or because they expired, or that
// had the same key (pushed out by v: the gateway refuses a legacy SSE request whose key is in the
// table, see Has, though two with one key can race; parked Streamable HTTP requests are not
// checked), so that the caller can account for them; v itself when it is larger than the table
// may hold.
func (s *Sessions[V]) Put(now time.Time, k SessionKey, v V, size int) (evicted []V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evicted = s.expireLocked(now, evicted)
	if el, ok := s.entries[k]; ok {
		evicted = append(evicted, s.removeLocked(el).value)
	}
	size += len(k.Scope) + len(k.Session) + len(k.ID)
	if size > s.limits.Bytes {
		return append(evicted, v)
	}
	sc := sessionScope{k.Scope, k.Session}
	if ss := s.sessions[sc]; ss != nil && ss.order.Len() >= s.limits.PerSession {
		evicted = append(evicted, s.removeLocked(ss.order.Front().Value.(*list.Element)).value)
	}
	for s.order.Len() > 0 && (s.order.Len() >= s.limits.Entries || s.bytes+size > s.limits.Bytes) {
		evicted = append(evicted, s.removeLocked(s.order.Front()).value)
	}
	ss := s.sessions[sc]
	if ss == nil {
		ss = &sessionState{}
		s.sessions[sc] = ss
	}
	e := &sessionEntry[V]{key: k, value: v, size: size, expires: now.Add(s.limits.TTL)}
	el := s.order.PushBack(e)
	e.inScope = ss.order.PushBack(el)
	s.entries[k] = el
	s.bytes += size
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

// Has reports whether a request with key k awaits its answer at now (one that expired by now
// does not): a request id in flight in its session.
func (s *Sessions[V]) Has(now time.Time, k SessionKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[k]
	return ok && el.Value.(*sessionEntry[V]).expires.After(now)
}

// Expire removes and returns the entries that expired by now.
func (s *Sessions[V]) Expire(now time.Time) []V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(now, nil)
}

// Len returns the number of entries and the sum of their sizes.
func (s *Sessions[V]) Len() (entries, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len(), s.bytes
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
	s.bytes -= e.size
	sc := sessionScope{e.key.Scope, e.key.Session}
	ss := s.sessions[sc]
	ss.order.Remove(e.inScope)
	if ss.order.Len() == 0 {
		delete(s.sessions, sc)
	}
	return e
}
