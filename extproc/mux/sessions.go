package mux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// The mux's state of sessions: the SSE bridge's sessions of SSE targets (bridge.go) and the
// sessions of HTTP+SSE clients (legacy.go). Both are tables in this process keyed by
// newSessionKey, bounded by a count (a place is reserved while a session is being opened) and a
// count per caller (the front hop's contract.HeaderMuxCaller, callerOf), and closed after an idle
// time (idleTimer).

// unknownCaller is the caller of a request without one contract.HeaderMuxCaller (callerOf): all
// such requests are one caller, bounded as one. The front hop's ext_proc sets the header on every
// request it passes to the mux; a request without it is not one ext_proc made (a test, a
// front hop of another version), and shares one bound rather than escape it.
const unknownCaller = "unknown"

// callerKey is the context key of a request's caller (withCaller).
type callerKey struct{}

// headerCaller returns the caller the values of a request's contract.HeaderMuxCaller name: its
// one value, or unknownCaller.
func headerCaller(values []string) string {
	if len(values) == 1 && values[0] != "" {
		return values[0]
	}
	return unknownCaller
}

// withCaller returns ctx with the caller whose sessions what ctx serves opens (callerOf).
func withCaller(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// callerOf returns the caller of the request ctx serves (withCaller), which the sessions it opens
// count for; unknownCaller when there is none.
func callerOf(ctx context.Context) string {
	if c, ok := ctx.Value(callerKey{}).(string); ok {
		return c
	}
	return unknownCaller
}

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
// at most maxPerCaller of them one caller's, none after close.
type sessionTable[S comparable] struct {
	ctx          context.Context
	cancel       context.CancelFunc
	max          int
	maxPerCaller int
	// name starts the errors ("mcpgate mux: " + name), what names the sessions and limit and
	// callerLimit the options and flags that set max and maxPerCaller, in reserve's errors.
	name, what, limit, callerLimit string

	mu       sync.Mutex
	sessions map[string]tableEntry[S]
	// opening counts the sessions being opened, which count against max.
	opening int
	// callers counts each caller's sessions open or being opened (none: not in the map).
	callers map[string]int
}

// tableEntry is an open session and the caller it counts for.
type tableEntry[S comparable] struct {
	s      S
	caller string
}

func newSessionTable[S comparable](max, maxPerCaller int, name, what, limit, callerLimit string) *sessionTable[S] {
	ctx, cancel := context.WithCancel(context.Background())
	return &sessionTable[S]{ctx: ctx, cancel: cancel, max: max, maxPerCaller: maxPerCaller, name: name, what: what,
		limit: limit, callerLimit: callerLimit, sessions: map[string]tableEntry[S]{}, callers: map[string]int{}}
}

// callerLimitError is reserve's refusal of a caller that holds its limit of sessions
// (Options.MaxSSESessionsPerCaller): the mux answers it 429 (writeCallerLimit).
type callerLimitError struct {
	msg string
}

func (e *callerLimitError) Error() string { return e.msg }

// CallerLimitRetryAfter is the Retry-After of the mux's answer to a caller beyond
// Options.MaxSSESessionsPerCaller: a place frees when one of its sessions ends (closed by the
// client, or idle).
const CallerLimitRetryAfter = time.Minute

// writeCallerLimit answers a request refused for its caller's limit of sessions (err): 429 with
// Retry-After and a JSON-RPC error of the request id (nil for a GET) naming the limit.
func writeCallerLimit(w http.ResponseWriter, id json.RawMessage, err *callerLimitError) {
	w.Header().Set("Retry-After", strconv.Itoa(int(CallerLimitRetryAfter/time.Second)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(mcp.ErrorResponse(id, mcp.CodeInternalError, err.Error()))
}

// callerLimit returns the first of errs that is a caller's limit of sessions, nil when none is.
func callerLimit(errs []error) *callerLimitError {
	for _, err := range errs {
		var limit *callerLimitError
		if errors.As(err, &limit) {
			return limit
		}
	}
	return nil
}

// reserve takes a place for a new session of caller; the error says why there is none: the
// table is closed, the caller has maxPerCaller sessions open or being opened (a
// *callerLimitError), or max sessions are. A place taken is given back with unreserve, or
// becomes the session's with add.
func (t *sessionTable[S]) reserve(caller string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.ctx.Err() != nil:
		return fmt.Errorf("mcpgate mux: %s: %w", t.name, errClosed)
	case t.callers[caller] >= t.maxPerCaller:
		return &callerLimitError{fmt.Sprintf("mcpgate mux: %s: the caller has reached the per-caller limit of %s, %d (%s); try again later",
			t.name, t.what, t.maxPerCaller, t.callerLimit)}
	case len(t.sessions)+t.opening >= t.max:
		return fmt.Errorf("mcpgate mux: %s: %d %s are open, the limit (%s); try again later", t.name, t.max, t.what, t.limit)
	}
	t.opening++
	t.callers[caller]++
	return nil
}

// unreserve gives back a place of caller that reserve took and add did not fill (the session was
// not opened).
func (t *sessionTable[S]) unreserve(caller string) {
	t.mu.Lock()
	t.opening--
	t.release(caller)
	t.mu.Unlock()
}

// release takes one session off caller's count; t.mu is held.
func (t *sessionTable[S]) release(caller string) {
	if t.callers[caller]--; t.callers[caller] <= 0 {
		delete(t.callers, caller)
	}
}

// add puts s in the table under key, in the place reserve took for caller, which is s's until
// remove; false when the table is closed (the place is still taken: unreserve gives it back).
func (t *sessionTable[S]) add(key string, s S, caller string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return false
	}
	t.opening--
	t.sessions[key] = tableEntry[S]{s: s, caller: caller}
	return true
}

// get returns the session key, or the zero S.
func (t *sessionTable[S]) get(key string) S {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[key].s
}

// remove removes key from the table when it holds s, and gives its place back.
func (t *sessionTable[S]) remove(key string, s S) {
	t.mu.Lock()
	if e, ok := t.sessions[key]; ok && e.s == s {
		delete(t.sessions, key)
		t.release(e.caller)
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
	for _, e := range t.sessions {
		all = append(all, e.s)
	}
	return all
}

// heldStream is a merged server-to-client stream the mux serves (holdStream): cancel ends it.
type heldStream struct{ cancel context.CancelFunc }

// holdStream counts the merged server-to-client stream the call serves (a GET, a
// subscriptions/listen: each holds a stream of every target) against the mux's and its caller's
// limits (Options.MaxSSESessions, MaxSSESessionsPerCaller) until stop, which ends c.ctx (the
// stream's, which Close ends too) and gives the place back; stop may be called more than once.
// ok is false, the answer written, when there is no place: 429 beyond the caller's limit
// (writeCallerLimit), 503 beyond the mux's. id is the request's (nil for a GET).
func (c *call) holdStream(id json.RawMessage) (stop func(), ok bool) {
	t, caller := c.h.streams, callerOf(c.ctx)
	if err := t.reserve(caller); err != nil {
		var limit *callerLimitError
		if errors.As(err, &limit) {
			c.log.Info("mux: stream refused: the caller's limit of streams", "caller", caller, "error", err)
			writeCallerLimit(c.w, id, limit)
		} else {
			c.log.Warn("mux: stream refused", "error", err)
			c.writeError(http.StatusServiceUnavailable, id, mcp.CodeInternalError, err.Error())
		}
		return nil, false
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s, key := &heldStream{cancel: cancel}, newSessionKey()
	if !t.add(key, s, caller) {
		t.unreserve(caller)
		cancel()
		c.writeError(http.StatusServiceUnavailable, id, mcp.CodeInternalError, "mcpgate mux: "+errClosed.Error())
		return nil, false
	}
	c.ctx = ctx
	return func() {
		t.remove(key, s)
		cancel()
	}, true
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
