package mux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The mux's state of sessions: the SSE bridge's sessions of SSE targets (bridge.go) and the
// sessions of HTTP+SSE clients (legacy.go). Both are tables in this process keyed by
// newSessionKey, bounded by a count (a place is reserved while a session is being opened) and
// closed after an idle time (idleTimer).

// errClosed ends the sessions of a mux that closed (Server.Close).
var errClosed = errors.New("the mux is shutting down")

// errIdle ends a session unused for its idle timeout.
var errIdle = errors.New("the session was idle")

// newSessionKey returns a new session key: 128 random bits, hex.
func newSessionKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b)
}

// sessionTable is a table of open sessions by key: at most max open or being opened (reserve),
// none after close.
type sessionTable[S comparable] struct {
	ctx    context.Context
	cancel context.CancelFunc
	max    int
	// name starts the errors ("mcpgate mux: " + name), what names the sessions and limit the
	// option and flag that set max, in reserve's error.
	name, what, limit string

	mu       sync.Mutex
	sessions map[string]S
	// opening counts the sessions being opened, which count against max.
	opening int
}

func newSessionTable[S comparable](max int, name, what, limit string) *sessionTable[S] {
	ctx, cancel := context.WithCancel(context.Background())
	return &sessionTable[S]{ctx: ctx, cancel: cancel, max: max, name: name, what: what, limit: limit, sessions: map[string]S{}}
}

// reserve takes a place for a new session; the error says why there is none: max sessions are
// open or being opened, or the table is closed. A place taken is given back with unreserve.
func (t *sessionTable[S]) reserve() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.ctx.Err() != nil:
		return fmt.Errorf("mcpgate mux: %s: %w", t.name, errClosed)
	case len(t.sessions)+t.opening >= t.max:
		return fmt.Errorf("mcpgate mux: %s: %d %s are open, the limit (%s); try again later", t.name, t.max, t.what, t.limit)
	}
	t.opening++
	return nil
}

// unreserve gives back a place reserve took (the session was added, or not opened).
func (t *sessionTable[S]) unreserve() {
	t.mu.Lock()
	t.opening--
	t.mu.Unlock()
}

// add puts s in the table under key; false when the table is closed.
func (t *sessionTable[S]) add(key string, s S) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return false
	}
	t.sessions[key] = s
	return true
}

// get returns the session key, or the zero S.
func (t *sessionTable[S]) get(key string) S {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[key]
}

// remove removes key from the table when it holds s.
func (t *sessionTable[S]) remove(key string, s S) {
	t.mu.Lock()
	if t.sessions[key] == s {
		delete(t.sessions, key)
	}
	t.mu.Unlock()
}

// len returns the number of open sessions.
func (t *sessionTable[S]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// close refuses new sessions and returns those open, for the caller to close.
func (t *sessionTable[S]) close() []S {
	t.cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	all := make([]S, 0, len(t.sessions))
	for _, s := range t.sessions {
		all = append(all, s)
	}
	return all
}

// idleTimer calls onIdle once a session has been unused for idle: busy counts what uses it
// (acquire, release), and the idle time runs from the last release. It starts armed by start and
// ends with stop, after which acquire fails.
type idleTimer struct {
	idle   time.Duration
	onIdle func()

	mu      sync.Mutex
	busy    int
	last    time.Time
	timer   *time.Timer
	stopped bool
}

// start arms the timer.
func (l *idleTimer) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.last = time.Now()
		l.timer = time.AfterFunc(l.idle, l.check)
	}
}

// acquire counts a use; false when the timer stopped (the session ended).
func (l *idleTimer) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.busy++
	return true
}

// release ends what acquire counted.
func (l *idleTimer) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy--; l.busy == 0 {
		l.last = time.Now()
		if l.timer != nil && !l.stopped {
			l.timer.Reset(l.idle)
		}
	}
}

// stop stops the timer: onIdle is not called after, and acquire fails.
func (l *idleTimer) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
}

// check calls onIdle when the session has not been used for idle.
func (l *idleTimer) check() {
	l.mu.Lock()
	if l.busy > 0 || l.stopped {
		l.mu.Unlock()
		return // release arms the timer again
	}
	if left := l.idle - time.Since(l.last); left > 0 {
		l.timer.Reset(left)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.onIdle()
}
