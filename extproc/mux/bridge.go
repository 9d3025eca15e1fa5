package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// DefaultSSEIdleTimeout is the default of Options.SSEIdleTimeout: as agentgateway's session idle
// TTL.
const DefaultSSEIdleTimeout = 30 * time.Minute

// DefaultMaxSSESessions is the default of Options.MaxSSESessions.
const DefaultMaxSSESessions = 10000

// DefaultMaxSSESessionsPerCaller is the default of Options.MaxSSESessionsPerCaller.
const DefaultMaxSSESessionsPerCaller = 100

// sseBridge makes the targets that speak HTTP+SSE (MCP 2024-11-05, contract.TransportSSE) look
// like Streamable HTTP targets to the rest of the mux: the requests the mux makes for such a
// target (POST, GET and DELETE on its path, with the target's session id, call.do) are served
// here, and answered as a Streamable HTTP server would answer them.
//
//   - POST initialize without a session opens the target's GET stream (GET on its path through
//     the mux upstream listener, with the initialize's headers: contract.HeaderMuxCluster, the
//     client's forwarded headers), waits for its endpoint event (Options.StreamOpenTimeout), posts
//     the initialize there and answers with the target's answer from the stream and a new session
//     id: 128 random bits, hex, the key of the bridge's session table.
//   - POST of a request in a session posts it to the endpoint (the target answers 202) and answers
//     with an event stream: the server's messages that go with it (the rule below), then its
//     answer from the GET stream. Every request gets an id of the session's own (a counter), its
//     id restored in the answer: the mux's own requests (list pages, Resolve's lists) share the
//     session with the client's, and their ids may be equal. A notification or a response (the
//     client's answer to a server's request) is posted and answered 202; a notifications/cancelled
//     names the request by the id the target saw.
//   - GET in a session answers with an event stream of the server's messages that go with no
//     request (below) until the request ends or the session does; a new GET takes the stream over.
//   - DELETE closes the GET stream and forgets the session (200: the legacy server has none).
//   - An unknown session is answered 404, as a Streamable HTTP server answers it.
//
// The server's messages on the GET stream that are not answers go, in this order: a
// notifications/progress whose progressToken is that of a request in flight
// (params._meta.progressToken), to that request's answer stream; any other, to the answer stream
// of the request in flight that started last among those whose stream the mux relays to the
// client (call.forward: calls, and under Bridge every request; not the mux's own list pages,
// initialize or logging/setLevel, whose answers the mux reads whole); else to the session's GET;
// else they are dropped (logged at Debug). A legacy server does not say which request a message
// belongs to: the request in flight is the one a server's elicitation or sampling, progress or log
// during a call most likely belongs to.
//
// The state is the session table, in this process only: a session of an SSE target lives in the
// process that opened it, and a request of it that reaches another replica is answered 404 (the
// client starts a new session, as MCP says). It is bounded: Options.MaxSSESessions sessions (an
// initialize beyond is answered 503 naming the limit), Options.MaxSSESessionsPerCaller of them
// one caller's (callerOf; beyond, the initialize fails with a *callerLimitError, which the
// client's initialize is answered 429 for), each closed after Options.SSEIdleTimeout
// without a request in flight or a GET open, on DELETE, when its GET stream ends, and on
// Server.Close.
type sseBridge struct {
	h     *Server
	idle  time.Duration
	table *sessionTable[*sseSession]
}

func newSSEBridge(h *Server) *sseBridge {
	return &sseBridge{h: h, idle: h.opts.SSEIdleTimeout, table: newSessionTable[*sseSession](h.opts.MaxSSESessions, h.opts.MaxSSESessionsPerCaller,
		"SSE bridge", "sessions of SSE targets", "mux Options.MaxSSESessions, --mux-max-sse-sessions",
		"mux Options.MaxSSESessionsPerCaller, --mux-max-sse-sessions-per-caller")}
}

// close closes every session and refuses new ones.
func (b *sseBridge) close() {
	for _, s := range b.table.close() {
		s.close(errClosed)
	}
}

// roundTrip serves the mux's request req to the SSE target t through up. relay says whether
// the answer's stream is relayed to the client (call.forward), so that the server's messages may
// go in it.
func (b *sseBridge) roundTrip(ctx context.Context, up *upstream, t contract.MuxTarget, req *http.Request, relay bool) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	key := req.Header.Get("Mcp-Session-Id")
	var msg message
	if req.Method == http.MethodPost && json.Unmarshal(body, &msg) != nil {
		return bridgeResponse(req, http.StatusBadRequest, "text/plain", []byte("mcpgate mux: SSE bridge: the body is not a JSON-RPC message")), nil
	}
	if key == "" {
		if req.Method == http.MethodPost && msg.isRequest() && msg.Method == "initialize" {
			return b.open(ctx, up, t, req, &msg)
		}
		return bridgeResponse(req, http.StatusBadRequest, "text/plain", []byte("mcpgate mux: SSE bridge: Mcp-Session-Id is required after initialize")), nil
	}
	s := b.table.get(key)
	// A session is its target's, on its Envoy: the same key named for another cluster or
	// Gateway (another description of the backend) is not found.
	if s == nil || s.cluster != t.Cluster || s.up != up || !s.idle.acquire() {
		return bridgeResponse(req, http.StatusNotFound, "text/plain", []byte("mcpgate mux: SSE bridge: session not found")), nil
	}
	defer s.idle.release()
	switch req.Method {
	case http.MethodDelete:
		s.close(errDeleted)
		return bridgeResponse(req, http.StatusOK, "", nil), nil
	case http.MethodGet:
		return s.listen(ctx, req), nil
	case http.MethodPost:
		if msg.isRequest() {
			return s.request(ctx, req, &msg, relay)
		}
		return s.send(ctx, req, &msg)
	}
	return bridgeResponse(req, http.StatusMethodNotAllowed, "text/plain", []byte("mcpgate mux: SSE bridge: method not allowed")), nil
}

// errDeleted ends a session the client deleted.
var errDeleted = errors.New("the session was deleted")

// bridgeResponse makes a response of the bridge's own.
func bridgeResponse(req *http.Request, status int, contentType string, body []byte) *http.Response {
	resp := &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Request: req,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	if contentType != "" {
		resp.Header.Set("Content-Type", contentType)
	}
	return resp
}

// open opens a session at t for the initialize msg (req: the mux's request for it).
func (b *sseBridge) open(ctx context.Context, up *upstream, t contract.MuxTarget, req *http.Request, msg *message) (*http.Response, error) {
	caller := callerOf(ctx)
	if err := b.table.reserve(caller); err != nil {
		var limit *callerLimitError
		if errors.As(err, &limit) {
			// The caller's own limit: the client's initialize is answered 429 (writeCallerLimit).
			b.h.log.Info("mux: SSE bridge: initialize refused: the caller's limit of sessions", "target", t.Name, "caller", caller, "error", err)
			return nil, err
		}
		b.h.log.Warn("mux: SSE bridge: initialize refused", "target", t.Name, "error", err)
		return bridgeResponse(req, http.StatusServiceUnavailable, "text/plain", []byte(err.Error())), nil
	}
	registered := false
	defer func() {
		if !registered {
			b.table.unreserve(caller)
			b.h.log.Debug("mux: SSE bridge: session not opened", "target", t.Name)
		}
	}()
	sctx, cancel := context.WithCancel(b.table.ctx)
	s := &sseSession{b: b, key: newSessionKey(), target: t.Name, cluster: t.Cluster, ctx: sctx, cancel: cancel, done: make(chan struct{}),
		pending: map[string]*sseRequest{}}
	s.idle = idleTimer{idle: b.idle, busy: 1, onIdle: func() {
		b.h.log.Debug("mux: SSE bridge: idle session closed", "target", s.target, "idle", b.idle)
		s.close(errIdle)
	}}
	// Until the session is open, the initialize's end ends it, and its stream's opening has
	// Options.StreamOpenTimeout.
	stop := context.AfterFunc(ctx, cancel)
	wait := b.h.opts.StreamOpenTimeout
	timer := time.AfterFunc(wait, cancel)
	fail := func(err error) (*http.Response, error) {
		stop()
		timer.Stop()
		s.close(err)
		return nil, err
	}

	get, err := http.NewRequestWithContext(sctx, http.MethodGet, up.base+t.Path, nil)
	if err != nil {
		return fail(err)
	}
	get.Header = req.Header.Clone()
	for _, k := range []string{"Content-Type", "Content-Length", "Mcp-Session-Id"} {
		get.Header.Del(k)
	}
	get.Header.Set("Accept", "text/event-stream")
	get.Host = req.Host
	resp, err := up.client.Do(get)
	if err != nil {
		if sctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer to its SSE GET within %s", wait)
		}
		return fail(err)
	}
	if resp.StatusCode/100 != 2 || !isEventStream(resp) {
		defer drain(resp)
		if resp.StatusCode/100 == 2 {
			return fail(errors.New("its SSE GET answer is " + resp.Header.Get("Content-Type") + ", not text/event-stream"))
		}
		return fail(fmt.Errorf("its SSE GET: %w", httpError(resp)))
	}
	endpoint := make(chan string, 1)
	go s.read(resp.Body, endpoint)
	var ep string
	select {
	case ep = <-endpoint:
	case <-s.done:
	}
	switch {
	case ctx.Err() != nil:
		return fail(ctx.Err())
	case !timer.Stop():
		return fail(fmt.Errorf("no endpoint event on its SSE stream within %s", wait))
	case ep == "":
		return fail(s.err)
	}
	if s.endpoint, err = resolveEndpoint(up.base, t.Path, req.Host, ep); err != nil {
		return fail(err)
	}
	s.up = up

	ans, err := s.request(ctx, req, msg, false)
	if err != nil {
		return fail(err)
	}
	if ans.StatusCode/100 != 2 {
		defer drain(ans)
		return fail(fmt.Errorf("initialize: %w", httpError(ans)))
	}
	var reply message
	err = b.h.readMessages(ans, func(m *message) bool {
		reply = *m
		return false
	})
	drain(ans)
	if err == nil && reply.ID == nil {
		err = errors.New("its SSE stream ended without the initialize answer")
	}
	if err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(ctx.Err())
	}
	if !b.table.add(s.key, s, caller) {
		return fail(errClosed)
	}
	registered = true
	s.idle.start()
	s.idle.release()
	b.h.log.Debug("mux: SSE bridge: session opened", "target", t.Name, "endpoint", s.endpoint)
	out := bridgeResponse(req, http.StatusOK, "application/json", reply.encode())
	out.Header.Set("Mcp-Session-Id", s.key)
	return out, nil
}

// resolveEndpoint returns the URL the mux posts a session's messages to: the endpoint event's
// data ep resolved against the target's path, on the same upstream. An absolute endpoint must be
// http or https with the host the target was sent (host, the client's) or the upstream's own; its
// path and query are posted to the upstream. Another host or scheme, or user info, is refused:
// the session's messages would leave the target's cluster.
func resolveEndpoint(base, path, host, ep string) (string, error) {
	b, err := url.Parse(base + path)
	if err != nil {
		return "", err
	}
	u, err := b.Parse(strings.TrimSpace(ep))
	if err != nil {
		return "", fmt.Errorf("its endpoint %q: %w", ep, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https", u.User != nil,
		!strings.EqualFold(u.Host, b.Host) && !strings.EqualFold(u.Host, host):
		return "", fmt.Errorf("its endpoint %q is not on the target's upstream (another scheme or host); refused", ep)
	}
	return base + u.RequestURI(), nil
}

// sseSession is the bridge's session of an SSE target: its GET stream, its endpoint and its
// requests in flight.
type sseSession struct {
	b      *sseBridge
	key    string
	target string
	// cluster and up are the target's cluster and the upstream it is reached through: the
	// session serves only requests for them.
	cluster string
	up      *upstream
	// endpoint is the URL messages are posted to.
	endpoint string
	// ctx lives as long as the session; cancel ends its GET stream.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed when the session has ended, err (set before) says why.
	done      chan struct{}
	err       error
	closeOnce sync.Once

	mu sync.Mutex
	// next is the id of the session's last request.
	next int64
	// pending are the requests in flight by the id the target saw (mcp.IDKey).
	pending map[string]*sseRequest
	// listener is the session's GET, nil when none is open.
	listener *sseRequest
	// idle counts the mux's requests of the session being served (and the answer streams being
	// read), and closes the session once none has been for the bridge's idle timeout.
	idle idleTimer
}

// close ends the session (once): its GET stream is closed, its requests in flight fail, its
// GET ends, and the table forgets it.
func (s *sseSession) close(err error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		s.idle.stop()
		s.cancel()
		s.b.table.remove(s.key, s)
		close(s.done)
	})
}

// failure returns why the session ended (nil while it has not).
func (s *sseSession) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// read reads the session's GET stream: the first endpoint event goes to endpoint, each message
// to dispatch. The stream's end ends the session.
func (s *sseSession) read(body io.ReadCloser, endpoint chan<- string) {
	defer body.Close()
	sent := false
	// A session's stream is read for as long as it lives: a small buffer of its own rather than
	// one of the pool's (10,000 sessions would hold 320 MB of them).
	buf := make([]byte, 4<<10)
	err := s.b.h.readStream(body, buf, false, func(ev *mcp.Event) bool {
		switch {
		case ev.Type == "endpoint" && !sent:
			endpoint <- string(ev.Data)
			sent = true
		case ev.IsMessage() && sent:
			s.dispatch(ev.Data)
		default:
			s.b.h.log.Debug("mux: SSE bridge: event dropped", "target", s.target, "type", ev.Type)
		}
		return true
	})
	if err == nil {
		err = io.EOF
	}
	if s.ctx.Err() == nil {
		s.b.h.log.Info("mux: SSE bridge: target's SSE stream ended; session closed", "target", s.target, "error", err)
	}
	s.close(fmt.Errorf("its SSE stream ended (%v); the session is closed", err))
}

// sseRequest is a request in flight (or the session's GET, listen) whose stream the server's
// messages go to.
type sseRequest struct {
	// id is the id the target saw (key: as mcp.IDKey), orig the mux's.
	id, key string
	orig    json.RawMessage
	// token is the progressToken of the request (mcp.IDKey), "" for none.
	token string
	// relay: the stream is relayed to the client.
	relay bool
	// seq orders the requests by their start.
	seq int64
	// ch carries the messages for the stream, the answer last (final).
	ch chan item
	// gone is closed when the stream is no longer read.
	gone     chan struct{}
	goneOnce sync.Once
}

// item is a message for a stream.
type item struct {
	data  []byte
	final bool
}

// dispatch sends a message of the server to the stream it goes to (sseBridge's rule).
func (s *sseSession) dispatch(data []byte) {
	var m message
	if json.Unmarshal(data, &m) != nil {
		s.b.h.log.Debug("mux: SSE bridge: event that is not a JSON-RPC message dropped", "target", s.target)
		return
	}
	s.mu.Lock()
	var to *sseRequest
	final := false
	switch {
	case m.isResponse():
		if to = s.pending[mcp.IDKey(m.ID)]; to != nil {
			delete(s.pending, to.key)
			m.ID, final = to.orig, true
			data = m.encode()
		}
	case m.isNotification() && m.Method == "notifications/progress":
		if token := progressToken(m.Params, false); token != "" {
			to = s.latest(func(r *sseRequest) bool { return r.token == token })
		}
	}
	if to == nil && !m.isResponse() {
		if to = s.latest(func(r *sseRequest) bool { return r.relay }); to == nil {
			to = s.listener
		}
	}
	s.mu.Unlock()
	if to == nil {
		s.b.h.log.Debug("mux: SSE bridge: server message with nowhere to go dropped", "target", s.target, "method", m.Method)
		return
	}
	select {
	case to.ch <- item{data: data, final: final}:
	case <-to.gone:
	case <-s.ctx.Done():
	}
}

// latest returns the request in flight that started last among those ok takes, or nil. s.mu is
// held.
func (s *sseSession) latest(ok func(*sseRequest) bool) *sseRequest {
	var last *sseRequest
	for _, r := range s.pending {
		if ok(r) && (last == nil || r.seq > last.seq) {
			last = r
		}
	}
	return last
}

// progressToken returns the progressToken of a request's params (params._meta.progressToken;
// params.progressToken of a notifications/progress when notification) as mcp.IDKey, "" for none.
func progressToken(params json.RawMessage, request bool) string {
	var p struct {
		Token json.RawMessage `json:"progressToken"`
		Meta  struct {
			Token json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	if request {
		return mcp.IDKey(p.Meta.Token)
	}
	return mcp.IDKey(p.Token)
}

// request posts a request to the endpoint with an id of the session's and answers with the
// event stream of its answer.
func (s *sseSession) request(ctx context.Context, req *http.Request, msg *message, relay bool) (*http.Response, error) {
	r := &sseRequest{orig: msg.ID, token: progressToken(msg.Params, true), relay: relay, ch: make(chan item, 16), gone: make(chan struct{})}
	s.mu.Lock()
	s.next++
	r.seq = s.next
	r.id = strconv.FormatInt(s.next, 10)
	r.key = mcp.IDKey(json.RawMessage(r.id))
	s.pending[r.key] = r
	s.mu.Unlock()
	out := *msg
	out.ID = json.RawMessage(r.id)
	resp, err := s.post(ctx, req, out.encode())
	if err == nil && resp.StatusCode/100 != 2 {
		s.forget(r)
		return resp, nil
	}
	if err != nil {
		s.forget(r)
		return nil, err
	}
	drain(resp)
	if !s.idle.acquire() { // the stream holds the session until it is closed
		s.forget(r)
		return nil, s.failure()
	}
	body := &sseStream{s: s, r: r, ctx: ctx}
	out2 := bridgeResponse(req, http.StatusOK, "text/event-stream", nil)
	out2.Body, out2.ContentLength = body, -1
	return out2, nil
}

// forget removes r from the requests in flight and ends its stream.
func (s *sseSession) forget(r *sseRequest) {
	s.mu.Lock()
	if s.pending[r.key] == r {
		delete(s.pending, r.key)
	}
	if s.listener == r {
		s.listener = nil
	}
	s.mu.Unlock()
	r.goneOnce.Do(func() { close(r.gone) })
}

// send posts a notification or a response to the endpoint and answers 202. A
// notifications/cancelled names the request by the id the target saw (the latest request in
// flight with the id the client cancels).
func (s *sseSession) send(ctx context.Context, req *http.Request, msg *message) (*http.Response, error) {
	if msg.isNotification() && msg.Method == "notifications/cancelled" {
		if params, ok := rewriteParams(msg.Params, "requestId", func(id json.RawMessage) (json.RawMessage, bool) {
			key := mcp.IDKey(id)
			s.mu.Lock()
			r := s.latest(func(r *sseRequest) bool { return mcp.IDKey(r.orig) == key })
			s.mu.Unlock()
			if r == nil {
				return nil, false
			}
			return json.RawMessage(r.id), true
		}); ok {
			msg.Params = params
		}
	}
	resp, err := s.post(ctx, req, msg.encode())
	if err != nil || resp.StatusCode/100 != 2 {
		return resp, err
	}
	drain(resp)
	return bridgeResponse(req, http.StatusAccepted, "", nil), nil
}

// post posts body to the session's endpoint with req's headers. A 404 (the target no longer
// knows the session) ends the session.
func (s *sseSession) post(ctx context.Context, req *http.Request, body []byte) (*http.Response, error) {
	p, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	p.Header = req.Header.Clone()
	p.Header.Del("Mcp-Session-Id")
	p.Header.Set("Content-Type", "application/json")
	p.Host = req.Host
	resp, err := s.up.client.Do(p)
	if err == nil && resp.StatusCode == http.StatusNotFound {
		s.close(errors.New("the target no longer knows the session (404)"))
	}
	return resp, err
}

// listen answers a GET: the session's stream of the server's messages that go to no request,
// until the request ends, the session does, or a new GET takes the stream over.
func (s *sseSession) listen(ctx context.Context, req *http.Request) *http.Response {
	if !s.idle.acquire() { // the stream holds the session until it is closed
		return bridgeResponse(req, http.StatusNotFound, "text/plain", []byte("mcpgate mux: SSE bridge: session not found"))
	}
	r := &sseRequest{ch: make(chan item, 16), gone: make(chan struct{})}
	s.mu.Lock()
	old := s.listener
	s.listener = r
	s.mu.Unlock()
	if old != nil {
		old.goneOnce.Do(func() { close(old.gone) })
	}
	resp := bridgeResponse(req, http.StatusOK, "text/event-stream", nil)
	resp.Body, resp.ContentLength = &sseStream{s: s, r: r, ctx: ctx, listen: true}, -1
	resp.Header.Set("Cache-Control", "no-cache")
	return resp
}

// sseStream is the body of an answer stream (or of the GET, listen): r's messages as message
// events, until the final one (the answer), the request's end (ctx), or the session's. The
// session's end fails an answer stream and ends a GET's.
type sseStream struct {
	s      *sseSession
	r      *sseRequest
	ctx    context.Context
	listen bool
	buf    []byte
	off    int
	ended  bool
	once   sync.Once
}

func (b *sseStream) Read(p []byte) (int, error) {
	for b.off == len(b.buf) {
		if b.ended {
			return 0, io.EOF
		}
		var it item
		select {
		case it = <-b.r.ch:
		case <-b.r.gone:
			return 0, io.EOF // a new GET took the stream over
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		case <-b.s.done:
			select {
			case it = <-b.r.ch:
			default:
				if b.listen {
					return 0, io.EOF
				}
				return 0, fmt.Errorf("the SSE bridge's session ended: %v", b.s.err)
			}
		}
		b.buf = mcp.AppendEvent(b.buf[:0], &mcp.Event{Type: "message", Data: it.data})
		b.off, b.ended = 0, it.final
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

// Close ends the stream: the request is no longer in flight (or the GET no longer open).
func (b *sseStream) Close() error {
	b.once.Do(func() {
		b.s.forget(b.r)
		b.s.idle.release()
	})
	return nil
}
