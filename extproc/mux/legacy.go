package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// legacyClients serves the clients that speak HTTP+SSE (MCP 2024-11-05) on a mux route, as a
// Streamable HTTP client is served, in the other transport:
//
//   - GET without Mcp-Session-Id opens a legacy session (a table in this process, keyed by
//     newSessionKey) and answers with its stream: first the endpoint event, PATH?sessionId=KEY
//     (PATH the request's path as the client sent it: x-envoy-original-path when the route
//     rewrote it), then every message for the client, until the client goes away or the session
//     ends. The stream's end closes the session and deletes the mux session at the targets, as a
//     Streamable HTTP DELETE does.
//   - POST with a legacy session query parameter (mcp.SessionParamNames) and no Mcp-Session-Id is
//     served as the Streamable HTTP POST would be (call.post), with the session's Mcp-Session-Id
//     once initialize set it, and answered 202: every message the Streamable HTTP answer holds
//     (JSON, or the events of its stream) goes onto the session's stream, in order. A request is
//     served after the 202 (its answer may wait for the client's answer to a server request, which
//     the client posts meanwhile); a notification or a response before it, so that the client's
//     next message finds it done (notifications/initialized before the first request).
//   - After initialize the mux's merged GET stream of the session (call.get) is relayed onto the
//     legacy stream too.
//
// A session serves only the requests of the backend description (contract.HeaderMux) and
// upstream (the Gateway's Envoy) it was opened with; any other, or an unknown key, is 404. Every
// request carries the front hop's secret (ServeHTTP), whose ext_proc seals the endpoint's
// sessionId to the caller (docs/design.md, Sessions). Bounds are the SSE bridge's options:
// Options.MaxSSESessions sessions (a GET beyond is 503), Options.MaxSSESessionsPerCaller of them
// one caller's (callerOf; a GET beyond is 429, writeCallerLimit), each closed when no POST of it has been
// served for Options.SSEIdleTimeout (the stream open does not count: a client gone without its
// connection closing would hold it forever), with at most legacyMaxInFlight requests being served.
type legacyClients struct {
	h     *Server
	table *sessionTable[*legacySession]
	// inFlightBytes counts the bytes of the messages of every legacy session being served
	// (legacyMaxInFlightBytes).
	inFlightBytes atomic.Int64
}

// legacyMaxInFlight bounds the requests of one legacy session being served at once: each is
// answered 202 before it is served, so that the client could otherwise start any number.
const legacyMaxInFlight = 256

// The bytes of the messages being served bound them too, as each is held (decoded, encoded again
// for the targets) until its answer: a session's at most legacySessionBodies bodies of the
// largest size (Options.MaxBodyBytes), every session's together at most legacyMaxInFlightBytes;
// a request beyond either is answered 503 and not served.
const (
	legacySessionBodies    = 4
	legacyMaxInFlightBytes = 256 << 20
)

// legacyQueue is the length of the queue of messages for a legacy session's stream: a client that
// does not read its stream holds back the answers that fill it.
const legacyQueue = 64

func newLegacyClients(h *Server) *legacyClients {
	return &legacyClients{h: h, table: newSessionTable[*legacySession](h.opts.MaxSSESessions, h.opts.MaxSSESessionsPerCaller,
		"HTTP+SSE clients", "sessions of HTTP+SSE clients", "mux Options.MaxSSESessions, --mux-max-sse-sessions",
		"mux Options.MaxSSESessionsPerCaller, --mux-max-sse-sessions-per-caller")}
}

// close ends every legacy session and refuses new ones.
func (l *legacyClients) close() {
	for _, s := range l.table.close() {
		s.stop()
	}
}

// session returns the session of key when it was opened with the backend description desc and
// the upstream up, nil otherwise: a session serves only its own backend and Gateway.
func (l *legacyClients) session(key, desc string, up *upstream) *legacySession {
	if s := l.table.get(key); s != nil && s.desc == desc && s.up == up {
		return s
	}
	return nil
}

// legacySession is the session of an HTTP+SSE client.
type legacySession struct {
	l   *legacyClients
	key string
	// desc is the contract.HeaderMux value and up the upstream the session was opened with.
	desc string
	up   *upstream
	// get is the client's GET: the headers of the merged GET and of the DELETE.
	get *http.Request
	m   *contract.Mux
	log *slog.Logger
	// ctx lives as long as the session: the requests being served and the merged GET end with it.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	// out carries the messages for the client's stream.
	out chan []byte
	// inFlight holds a place per request being served (legacyMaxInFlight), inFlightBytes
	// their messages' bytes (legacySessionBodies).
	inFlight      chan struct{}
	inFlightBytes atomic.Int64
	idle          idleTimer

	mu sync.Mutex
	// sid is the Mcp-Session-Id of the mux session, "" before initialize.
	sid string
}

// stop ends the session (once): the table forgets it, the requests being served and the merged
// GET end, and so does the client's stream.
func (s *legacySession) stop() {
	s.once.Do(func() {
		s.idle.stop()
		s.l.table.remove(s.key, s)
		s.cancel()
	})
}

// sessionID returns the Mcp-Session-Id of the mux session, "" before initialize.
func (s *legacySession) sessionID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sid
}

// push queues a message for the client's stream; false when the session has ended.
func (s *legacySession) push(data []byte) bool {
	select {
	case s.out <- bytes.Clone(data):
		return true
	case <-s.ctx.Done():
		return false
	}
}

// legacyKey returns the legacy session key of a POST: its legacy session query parameter, when it
// has one and no Mcp-Session-Id. n is how many such parameters it has.
func legacyKey(r *http.Request) (key string, n int) {
	if len(r.Header.Values("Mcp-Session-Id")) > 0 {
		return "", 0
	}
	return mcp.SessionParams(r.URL.RequestURI())
}

// open serves the GET of an HTTP+SSE client: a new session and its stream.
func (l *legacyClients) open(c *call) {
	if !acceptsEventStream(c.r.Header.Values("Accept")) {
		http.Error(c.w, "mcpgate mux: an HTTP+SSE stream is text/event-stream, which Accept does not admit", http.StatusNotAcceptable)
		return
	}
	caller := callerOf(c.ctx)
	if err := l.table.reserve(caller); err != nil {
		var limit *callerLimitError
		if errors.As(err, &limit) {
			c.log.Info("mux: HTTP+SSE client's session refused: the caller's limit of sessions", "caller", caller, "error", err)
			writeCallerLimit(c.w, nil, limit)
			return
		}
		c.log.Warn("mux: HTTP+SSE client's session refused", "error", err)
		http.Error(c.w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	// The session's requests (served in its context) open sessions of SSE targets for the
	// caller that opened it (callerOf).
	ctx, cancel := context.WithCancel(withCaller(l.table.ctx, caller))
	s := &legacySession{l: l, key: newSessionKey(), desc: c.r.Header.Get(contract.HeaderMux), up: c.up, get: c.r, m: c.m, log: c.log,
		ctx: ctx, cancel: cancel, out: make(chan []byte, legacyQueue), inFlight: make(chan struct{}, legacyMaxInFlight)}
	s.idle = idleTimer{idle: l.h.opts.SSEIdleTimeout, onIdle: func() {
		c.log.Debug("mux: HTTP+SSE client's session idle; closed", "idle", l.h.opts.SSEIdleTimeout)
		s.stop()
	}}
	if !l.table.add(s.key, s, caller) {
		l.table.unreserve(caller)
		cancel()
		http.Error(c.w, "mcpgate mux: "+errClosed.Error(), http.StatusServiceUnavailable)
		return
	}
	s.idle.start()
	defer s.end(c)
	path := c.r.Header.Get("X-Envoy-Original-Path")
	if path == "" {
		path = c.r.URL.EscapedPath()
	} else if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	flusher := c.startEvents()
	buf := mcp.AppendEvent(nil, &mcp.Event{Type: "endpoint", Data: []byte(path + "?sessionId=" + s.key)})
	c.log.Debug("mux: HTTP+SSE client's session opened")
	for {
		if _, err := c.w.Write(buf); err != nil {
			return
		}
		_ = flusher.Flush()
		select {
		case data := <-s.out:
			buf = mcp.AppendEvent(buf[:0], &mcp.Event{Type: "message", Data: data})
		case <-c.ctx.Done():
			return
		case <-s.ctx.Done():
			// What was queued before the end still goes out.
			buf = buf[:0]
			for len(s.out) > 0 {
				buf = mcp.AppendEvent(buf, &mcp.Event{Type: "message", Data: <-s.out})
			}
			_, _ = c.w.Write(buf)
			_ = flusher.Flush()
			return
		}
	}
}

// end ends the session after its stream (c, the client's GET): the mux session is deleted at
// the targets, as a Streamable HTTP DELETE deletes it.
func (s *legacySession) end(c *call) {
	s.stop()
	sid := s.sessionID()
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), s.l.h.opts.StreamOpenTimeout)
	defer cancel()
	req := c.r.Clone(ctx)
	req.Method = http.MethodDelete
	req.Header.Set("Mcp-Session-Id", sid)
	w := &legacyWriter{header: http.Header{}}
	d := &call{h: c.h, m: c.m, up: c.up, w: w, r: req, ctx: ctx, log: c.log}
	d.delete()
	c.log.Debug("mux: HTTP+SSE client's session closed; mux session deleted", "status", w.status)
}

// post serves a POST of a legacy session (key its query parameter).
func (l *legacyClients) post(c *call, key string) {
	s := l.session(key, c.r.Header.Get(contract.HeaderMux), c.up)
	if s == nil || !s.idle.acquire() {
		http.Error(c.w, "mcpgate mux: session not found", http.StatusNotFound)
		return
	}
	release := true
	defer func() {
		if release {
			s.idle.release()
		}
	}()
	msg, ok := c.readMessage()
	if !ok {
		return
	}
	sid := s.sessionID()
	if msg.isRequest() && msg.Method == "initialize" && sid != "" {
		c.writeError(http.StatusBadRequest, msg.ID, mcp.CodeInvalidRequest, "mcpgate mux: the session is initialized already")
		return
	}
	// The Streamable HTTP POST the message would be, served for the session: it outlives the
	// client's POST, answered 202 before it is served.
	req := c.r.Clone(s.ctx)
	req.Body, req.ContentLength = http.NoBody, 0 // read: msg is served
	req.Header.Del("Mcp-Session-Id")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	w := &legacyWriter{s: s, id: msg.ID, header: http.Header{}, limit: l.h.opts.MaxBodyBytes}
	sc := &call{h: c.h, m: c.m, up: c.up, w: w, r: req, ctx: s.ctx, log: c.log}
	if !msg.isRequest() {
		sc.serve(msg)
		w.finish()
		c.w.WriteHeader(http.StatusAccepted)
		return
	}
	select {
	case s.inFlight <- struct{}{}:
	default:
		http.Error(c.w, fmt.Sprintf("mcpgate mux: %d requests of the session are being served, the limit; try again later", legacyMaxInFlight), http.StatusServiceUnavailable)
		return
	}
	size := int64(len(msg.ID) + len(msg.Method) + len(msg.Params))
	if !s.reserveBytes(size) {
		<-s.inFlight
		http.Error(c.w, "mcpgate mux: the requests of HTTP+SSE clients being served hold as many bytes as they may; try again later", http.StatusServiceUnavailable)
		return
	}
	release = false
	c.w.WriteHeader(http.StatusAccepted)
	go func() {
		defer func() {
			s.releaseBytes(size)
			<-s.inFlight
			s.idle.release()
		}()
		sc.serve(msg)
		w.finish()
		switch {
		case msg.Method != "initialize" || s.sessionID() == "":
		case s.ctx.Err() != nil:
			// The client's stream ended while the initialize was served (end found no session to
			// delete): the mux session it opened is deleted now.
			s.end(c)
		default:
			go s.relay() // not a request being served: the session may be idle meanwhile
		}
	}()
}

// reserveBytes counts n bytes of a message being served against the session's bound and every
// session's (legacySessionBodies, legacyMaxInFlightBytes); false, counting nothing, when either
// would be passed.
func (s *legacySession) reserveBytes(n int64) bool {
	if s.inFlightBytes.Add(n) > int64(legacySessionBodies*s.l.h.opts.MaxBodyBytes) {
		s.inFlightBytes.Add(-n)
		return false
	}
	if s.l.inFlightBytes.Add(n) > legacyMaxInFlightBytes {
		s.l.inFlightBytes.Add(-n)
		s.inFlightBytes.Add(-n)
		return false
	}
	return true
}

// releaseBytes gives back what reserveBytes counted.
func (s *legacySession) releaseBytes(n int64) {
	s.l.inFlightBytes.Add(-n)
	s.inFlightBytes.Add(-n)
}

// relay relays the mux's merged GET stream of the session onto the client's stream, until it
// ends or the session does.
func (s *legacySession) relay() {
	req := s.get.Clone(s.ctx)
	req.Header.Set("Mcp-Session-Id", s.sessionID())
	req.Header.Set("Accept", "text/event-stream")
	// The client's stream has no event ids of the mux (get's, which would resume a Streamable
	// HTTP client's): its Last-Event-ID, if any, is no position in this one.
	req.Header.Del("Last-Event-ID")
	w := &legacyWriter{s: s, header: http.Header{}, limit: s.l.h.opts.MaxBodyBytes}
	gc := &call{h: s.l.h, m: s.m, up: s.up, w: w, r: req, ctx: s.ctx, log: s.log}
	gc.get()
	w.finish()
}

// legacyWriter is the http.ResponseWriter of a Streamable HTTP answer the mux makes for a legacy
// session (s): the messages it holds, JSON or the events of its stream, go onto the session's
// stream as they are written. An answer that holds no JSON-RPC message but is an error (status
// not 2xx) becomes a -32603 error of the request (id), so that the client is answered. The
// Mcp-Session-Id of a 2xx answer is the session's from then on (initialize). Without s (DELETE)
// it keeps the status only.
type legacyWriter struct {
	s      *legacySession
	id     json.RawMessage
	header http.Header
	limit  int
	status int
	// events reads an event stream answer; body holds another answer.
	events *mcp.SSEStream
	body   []byte
	err    error
}

func (w *legacyWriter) Header() http.Header { return w.header }

func (w *legacyWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	if w.s == nil {
		return
	}
	if sid := w.header.Get("Mcp-Session-Id"); sid != "" && status/100 == 2 {
		w.s.mu.Lock()
		w.s.sid = sid
		w.s.mu.Unlock()
	}
	if mt, _, _ := strings.Cut(w.header.Get("Content-Type"), ";"); strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
		w.events = mcp.NewSSEStream(w.limit)
	}
}

func (w *legacyWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	switch {
	case w.s == nil:
	case w.err != nil:
		return 0, w.err
	case w.events != nil:
		if _, _, err := w.events.Next(p, false, true, w.visit); err != nil {
			w.err = err
		}
	case len(w.body)+len(p) > w.limit:
		w.err = fmt.Errorf("an answer larger than %d bytes", w.limit)
	default:
		w.body = append(w.body, p...)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// Flush is the http.Flusher's: the events go out as they are written.
func (w *legacyWriter) Flush() {}

// visit queues an event's message.
func (w *legacyWriter) visit(ev *mcp.Event, _ bool) []byte {
	if w.err == nil && ev.IsMessage() && len(bytes.TrimSpace(ev.Data)) > 0 && !w.s.push(ev.Data) {
		w.err = errLegacyEnded
	}
	return nil
}

// errLegacyEnded fails the writes of an answer whose session ended.
var errLegacyEnded = errors.New("the HTTP+SSE client's session ended")

// finish queues what the answer held once it is whole.
func (w *legacyWriter) finish() {
	if w.s == nil {
		return
	}
	if w.events != nil {
		if w.err == nil {
			_, _, _ = w.events.Next(nil, true, true, w.visit)
		}
		return
	}
	body := bytes.TrimSpace(w.body)
	var m message
	switch {
	case len(body) > 0 && body[0] == '{' && json.Unmarshal(body, &m) == nil:
		w.s.push(body)
	case w.status/100 != 2 && w.id != nil:
		text := fmt.Sprintf("mcpgate mux: HTTP %d", w.status)
		if len(body) > 0 {
			text += ": " + string(body[:min(len(body), 512)])
		}
		w.s.push(mcp.ErrorResponse(w.id, mcp.CodeInternalError, text))
	case w.status/100 != 2:
		w.s.log.Info("mux: answer for an HTTP+SSE client without a JSON-RPC message", "status", w.status, "error", w.err)
	}
	if w.status == http.StatusNotFound {
		// The mux session is gone at a target: the client starts a new one.
		w.s.log.Info("mux: HTTP+SSE client's session not found at a target; closed")
		w.s.stop()
	}
}
