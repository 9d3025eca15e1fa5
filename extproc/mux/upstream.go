package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// upstream is the HTTP client of one mux upstream listener, reused by every request to it.
type upstream struct {
	client *http.Client
	// base is the URL the targets' paths are appended to.
	base string
}

// maxUpstreams bounds the upstream clients the mux keeps (handler.clients): one per Gateway's
// mux upstream listener, so a process serving more Gateways than that makes a client again now
// and then. Each holds a Transport and its idle connections.
const maxUpstreams = 64

// upstream returns the client of addr ("unix:///PATH" or "HOST:PORT", contract.SplitAddress),
// made on first use. At most h.maxClients are kept: a new one pushes out another, whose idle
// connections close (its requests in flight finish).
func (h *Server) upstream(addr string) (*upstream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if up := h.clients[addr]; up != nil {
		return up, nil
	}
	network, a, err := contract.SplitAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", addr, err)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		// The mux reads the answers: they must come uncompressed.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, a)
		},
	}
	up := &upstream{client: &http.Client{
		Transport: tr,
		// A redirect is the target's answer, for the client to see.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, base: "http://" + a}
	if network == "unix" {
		up.base = "http://mux-upstream"
	}
	for old, o := range h.clients {
		if len(h.clients) < h.maxClients {
			break
		}
		delete(h.clients, old)
		o.client.CloseIdleConnections()
	}
	h.clients[addr] = up
	return up, nil
}

// do sends req, the request newRequest made for the session's member mb: to the upstream, or,
// for an SSE target, to the SSE bridge, which serves it as a Streamable HTTP target would (relay:
// the answer's stream is relayed to the client, so that the target's messages may go in it).
func (c *call) do(ctx context.Context, mb member, req *http.Request, relay bool) (*http.Response, error) {
	switch {
	case req == nil: // newRequest could not make it
		return nil, errors.New("cannot make the request")
	case mb.t.Protocol == contract.TransportSSE:
		return c.h.bridge.roundTrip(ctx, c.up, mb.t, req, relay)
	case req.Context() != ctx:
		req = req.WithContext(ctx)
	}
	return c.up.client.Do(req)
}

// dropped are the client's headers a target's request does not get: hop-by-hop headers, those the
// mux sets, and Accept-Encoding (the mux reads the answers).
var dropped = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Accept-Encoding": true, "Host": true, "Last-Event-Id": true,
	"Mcp-Session-Id": true, http.CanonicalHeaderKey(contract.HeaderMux): true,
	http.CanonicalHeaderKey(contract.HeaderMuxCluster): true, http.CanonicalHeaderKey(contract.HeaderMuxAuth): true,
	http.CanonicalHeaderKey(contract.HeaderMuxTarget): true,
}

// newRequest makes the request to a target: the client's headers but those dropped (and those its
// Connection header names), the target's cluster and own session id, the target's path.
func (c *call) newRequest(ctx context.Context, method string, mb member, body []byte) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.up.base+mb.t.Path, rd)
	if err != nil {
		c.log.Error("mux: target request", "target", mb.t.Name, "path", mb.t.Path, "error", err)
		return nil
	}
	connection := c.r.Header.Values("Connection")
	for k, vs := range c.r.Header {
		if dropped[k] || listsToken(connection, k) {
			continue
		}
		req.Header[k] = vs
	}
	req.Host = c.r.Host
	req.Header.Set(contract.HeaderMuxCluster, mb.t.Cluster)
	if mb.sid != "" {
		req.Header.Set("Mcp-Session-Id", mb.sid)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
	}
	return req
}

// listsToken reports whether a header's values (comma-separated tokens) name name.
func listsToken(values []string, name string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}

// drain reads what is left of a response (so that its connection is reused) and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// statusError is a target's HTTP answer that is not a success.
type statusError struct {
	status int
	body   string
	// contentType and authenticate are the answer's Content-Type and WWW-Authenticate.
	contentType, authenticate string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg
}

// httpError returns the statusError of resp, with the start of its body.
func httpError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return &statusError{status: resp.StatusCode, body: strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD")),
		contentType: resp.Header.Get("Content-Type"), authenticate: resp.Header.Get("WWW-Authenticate")}
}

// sessionGone reports whether err is a target's 404 to a request naming its session: the target
// no longer knows the session, and the client has to open a new one.
func sessionGone(err error, mb member) bool {
	var se *statusError
	return mb.sid != "" && errors.As(err, &se) && se.status == http.StatusNotFound
}

// targetError is a target's failure, named with the target.
type targetError struct {
	target string
	err    error
}

func (e *targetError) Error() string { return "target " + e.target + ": " + e.err.Error() }
func (e *targetError) Unwrap() error { return e.err }

// answer is a target's JSON-RPC answer to one request.
type answer struct {
	msg message
	// sid is the Mcp-Session-Id of the target's response.
	sid string
}

// exchange sends the request body (id: its id) to a target and reads its answer whole, from a JSON
// body or an event stream, whatever else the stream holds.
func (c *call) exchange(ctx context.Context, mb member, body []byte, id json.RawMessage) (*answer, error) {
	// The request has a context of its own, which ends its stream answerGrace past the answer.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.do(ctx, mb, c.newRequest(ctx, http.MethodPost, mb, body), false)
	if err != nil {
		return nil, &targetError{mb.t.Name, err}
	}
	found := false
	defer func() { drainRest(resp, found, cancel) }()
	if resp.StatusCode/100 != 2 {
		return nil, &targetError{mb.t.Name, httpError(resp)}
	}
	a := &answer{sid: resp.Header.Get("Mcp-Session-Id")}
	want := mcp.IDKey(id)
	err = c.h.readMessages(resp, func(m *message) bool {
		if m.isResponse() && mcp.IDKey(m.ID) == want {
			a.msg, found = *m, true
			return false
		}
		c.log.Debug("mux: target sent a message the mux does not pass on", "target", mb.t.Name, "method", m.Method)
		return true
	})
	switch {
	case err != nil:
		return nil, &targetError{mb.t.Name, err}
	case !found:
		return nil, &targetError{mb.t.Name, errors.New("its answer has no response to the request")}
	}
	return a, nil
}

// readMessages reads the JSON-RPC messages of a target's answer (application/json or
// text/event-stream) and calls fn for each until fn returns false.
func (h *Server) readMessages(resp *http.Response, fn func(*message) bool) error {
	limit := h.opts.MaxBodyBytes
	if isEventStream(resp) {
		return h.readEvents(resp.Body, func(ev *mcp.Event) bool {
			var m message
			if json.Unmarshal(ev.Data, &m) != nil {
				return true
			}
			return fn(&m)
		})
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	switch {
	case err != nil:
		return err
	case len(b) > limit:
		return fmt.Errorf("answer larger than %d bytes", limit)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("answer is not one JSON-RPC message: %w", err)
	}
	fn(&m)
	return nil
}

// isEventStream reports whether resp's body is an event stream.
func isEventStream(resp *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt == "text/event-stream"
}

// readEvents reads an event stream and calls fn for each message event with data, and each event
// without data that gives an event id or a retry delay (a priming event, of any type: its id is
// where the client resumes from; the go-sdk's "close" event before it closes a stream: its retry
// is when), as an event with these alone, until fn returns false or the stream ends. An event larger than MaxBodyBytes is
// an error.
func (h *Server) readEvents(body io.Reader, fn func(*mcp.Event) bool) error {
	buf := h.readBuffers.Get().(*[readBufferSize]byte)
	defer h.readBuffers.Put(buf)
	return h.readStream(body, buf[:], true, fn)
}

// readStream reads an event stream with buf and calls fn for each event with data (each
// message event when messagesOnly, and then each event without data that gives an id or a
// retry delay, as an event with these only), until fn returns false or the stream ends. An event larger
// than MaxBodyBytes is an error.
func (h *Server) readStream(body io.Reader, buf []byte, messagesOnly bool, fn func(*mcp.Event) bool) error {
	s := mcp.NewSSEStream(h.opts.MaxBodyBytes)
	more := true
	for more {
		n, rerr := body.Read(buf)
		eos := rerr != nil
		var stop bool
		if _, _, err := s.Next(buf[:n], eos, true, func(ev *mcp.Event, _ bool) []byte {
			switch {
			case stop:
			case len(bytes.TrimSpace(ev.Data)) > 0:
				if !messagesOnly || ev.IsMessage() {
					stop = !fn(ev)
				}
			case messagesOnly && (ev.HasID && ev.ID != "" || ev.Retry != ""):
				stop = !fn(&mcp.Event{Type: ev.Type, HasID: ev.HasID, ID: ev.ID, Retry: ev.Retry})
			}
			return nil
		}); err != nil {
			return err
		}
		switch {
		case stop:
			return nil
		case rerr == io.EOF:
			more = false
		case rerr != nil:
			return rerr
		}
	}
	return nil
}
