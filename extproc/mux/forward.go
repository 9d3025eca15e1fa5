package mux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// forward sends a request to one target and passes its answer back as it comes: a JSON body
// whole, an event stream event by event (flushed), the ids of the target's own requests in it
// rewritten (toClientID). name, when not "", is the item's name for the target's Mcp-Name header.
func (c *call) forward(msg *message, mb member, name string) {
	// The target's request has a context of its own, which ends its stream answerGrace past the
	// answer.
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req := c.newRequest(ctx, http.MethodPost, mb, msg.encode())
	if req != nil && name != "" && req.Header.Get(mcp.NameHeader) != "" {
		req.Header.Set(mcp.NameHeader, mcp.EncodeHeaderValue(name))
	}
	resp, err := c.do(ctx, mb, req, true)
	if err == nil && resp.StatusCode/100 != 2 {
		err = httpError(resp)
		drain(resp)
	}
	if err != nil {
		c.log.Warn("mux: target failed", "target", mb.t.Name, "method", msg.Method, "error", err)
		switch {
		case sessionGone(err, mb):
			c.writeError(http.StatusNotFound, msg.ID, mcp.CodeSessionNotFound, "Session not found")
		case !c.passRefusal(err):
			c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: "+(&targetError{mb.t.Name, err}).Error())
		}
		return
	}
	answered := false
	defer func() { drainRest(resp, answered, cancel) }()
	if !isEventStream(resp) {
		var out []byte
		err := c.h.readMessages(resp, func(m *message) bool {
			out = c.toClient(m, mb, nil)
			return false
		})
		if err != nil {
			c.log.Warn("mux: target's answer unreadable", "target", mb.t.Name, "method", msg.Method, "error", err)
			out = mcp.ErrorResponse(msg.ID, mcp.CodeInternalError, "mcpgate mux: "+(&targetError{mb.t.Name, err}).Error())
		}
		c.writeJSON(http.StatusOK, out)
		return
	}
	flusher := c.startEvents()
	want := mcp.IDKey(msg.ID)
	gone := false
	var buf, scratch []byte
	names, ids := []string{mb.t.Name}, []string{""}
	retry := time.Duration(-1) // the target's latest retry field; none yet
	relay := func(ev *mcp.Event) bool {
		var m *message
		buf = appendEventType(buf[:0], ev)
		if ev.HasID && ev.ID != "" {
			ids[0] = ev.ID
			buf, scratch = appendEventID(buf, scratch, callStream, names, ids)
		}
		if ev.Retry != "" {
			retry = retryDelay(ev.Retry)
			buf = mcp.AppendRetry(buf, ev.Retry)
		}
		buf, m = c.clientData(buf, ev, mb)
		answered = answered || (m != nil && m.isResponse() && mcp.IDKey(m.ID) == want)
		if _, err := c.w.Write(buf); err != nil {
			gone = true
			return false
		}
		_ = flusher.Flush()
		return !answered
	}
	err = c.h.readEvents(resp.Body, relay)
	resumable := ids[0] != ""
	switch {
	case answered || c.ctx.Err() != nil:
		return
	case resumable && c.canResume():
		// The client holds an event id of the stream: it resumes it (a GET with Last-Event-ID),
		// as it would the target's own stream, and gets the answer then.
		c.log.Info("mux: target's answer stream ended before the answer; the client may resume it", "target", mb.t.Name, "method", msg.Method, "error", err)
		return
	case resumable && !gone:
		// The client cannot resume it (an HTTP+SSE client): the mux does.
		c.log.Info("mux: target's answer stream ended before the answer; resuming it for the client", "target", mb.t.Name, "method", msg.Method, "error", err)
		err = c.resumeCall(mb, ids, &retry, relay, func() bool { return answered || gone })
		if answered || gone || c.ctx.Err() != nil {
			return
		}
	}
	if err == nil {
		err = errors.New("its event stream ended without the answer")
	}
	if !namesTarget(err) {
		err = &targetError{mb.t.Name, err}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		c.log.Warn("mux: target's answer stream", "target", mb.t.Name, "method", msg.Method, "error", err)
	}
	buf = mcp.AppendEvent(buf[:0], &mcp.Event{Type: "message",
		Data: mcp.ErrorResponse(msg.ID, mcp.CodeInternalError, "mcpgate mux: "+err.Error())})
	_, _ = c.w.Write(buf)
	_ = flusher.Flush()
}

// answerGrace bounds how long the mux reads a target's event stream past the answer it relayed,
// for the stream's end: a target ends it at once (its connection is then reused); one that keeps
// it open (MCP says a server SHOULD close it) holds the client's stream, the request and its
// connection no longer.
const answerGrace = 100 * time.Millisecond

// drainRest drains resp as drain does; once answered (the mux read the answer it wanted), for
// answerGrace at most: then cancel, which ends the request's context, ends the read.
func drainRest(resp *http.Response, answered bool, cancel context.CancelFunc) {
	if answered {
		defer time.AfterFunc(answerGrace, cancel).Stop()
	}
	drain(resp)
}

// namesTarget reports whether err names its target already (a targetError, a resumeError).
func namesTarget(err error) bool {
	var te *targetError
	var refused *resumeError
	return errors.As(err, &te) || errors.As(err, &refused)
}

// resumeMaxWithoutProgress bounds the resumptions of a call's stream in a row (resumeCall) that
// bring no new event id: as the go-sdk client's MaxRetries default.
const resumeMaxWithoutProgress = 5

// resumeCall resumes target mb's answer stream of a call for a client that cannot resume it (an
// HTTP+SSE client), once the stream ended without the answer after the target's event id ids[0]:
// after the delay the target's latest retry field asked for (*retry, which relay keeps; as a
// client would wait) or else Options.ResumeDelay, a GET of the target's session with Last-Event-ID ids[0] (openStream,
// as a client's resumption in get), each of its events handled by relay as the first stream's,
// which keeps ids[0] the latest id; again when that stream ends as well, until done (the answer
// came, or the client is gone). It gives up when the client's context ends, when the target
// refuses the resumption (streamRefusal: a 4xx other than 429, an answer that is not
// text/event-stream), and after resumeMaxWithoutProgress resumptions in a row that gave no new
// event id (a 5xx, 429 or failed GET counts as one), returning why.
func (c *call) resumeCall(mb member, ids []string, retry *time.Duration, relay func(*mcp.Event) bool, done func() bool) error {
	timer := time.NewTimer(c.h.opts.ResumeDelay)
	defer timer.Stop()
	for without := 0; ; {
		last := ids[0]
		delay := c.h.opts.ResumeDelay
		if *retry >= 0 {
			delay = *retry
		}
		timer.Reset(delay)
		select {
		case <-timer.C:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		resp, err := c.openStream(c.ctx, mb, last)
		switch {
		case err != nil:
		case resp.StatusCode/100 == 5 || resp.StatusCode == http.StatusTooManyRequests:
			err = &targetError{mb.t.Name, httpError(resp)}
			drain(resp)
		default:
			if err := streamRefusal(resp, mb, last); err != nil {
				return err
			}
			err = c.h.readEvents(resp.Body, relay)
			resp.Body.Close() // read to its end, or past the answer: the target may go on
			if done() {
				return nil
			}
		}
		if c.ctx.Err() != nil {
			return c.ctx.Err()
		}
		if without++; ids[0] != last {
			without = 0
		}
		if without >= resumeMaxWithoutProgress {
			var te *targetError
			switch {
			case err == nil:
				err = errors.New("its event stream ended without the answer")
			case errors.As(err, &te):
				err = te.err
			}
			return fmt.Errorf("resumed from its event id %q %d times without a new event, the last time: %w", last, without, err)
		}
		c.log.Debug("mux: target's resumed answer stream ended before the answer; resuming it again", "target", mb.t.Name, "error", err)
	}
}

// canResume reports whether the client can resume the stream it is answered with: a Streamable
// HTTP client can (Last-Event-ID), an HTTP+SSE client, whose answers the mux relays onto its one
// stream (legacyWriter), cannot.
func (c *call) canResume() bool {
	_, legacy := c.w.(*legacyWriter)
	return !legacy
}

// startEvents starts the client's event stream (status 200) and flushes its headers; the
// returned controller flushes each event written after.
func (c *call) startEvents() *http.ResponseController {
	c.w.Header().Set("Content-Type", "text/event-stream")
	c.w.Header().Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	flusher := http.NewResponseController(c.w)
	_ = flusher.Flush()
	return flusher
}

// eventMessage starts every event with data the mux relays to the client (appendEventType); its
// id line (appendEventID), if
// any, and its data (clientData) follow.
const eventMessage = "event: message\n"

// appendEventType appends the event line of target event ev as the client gets it: a message
// event's (eventMessage), or, for an event without data of another type (the go-sdk's "close",
// which carries a retry field), its own, so that a client does not read it as a message.
func appendEventType(dst []byte, ev *mcp.Event) []byte {
	if ev.IsMessage() {
		return append(dst, eventMessage...)
	}
	dst = append(dst, "event: "...)
	dst = append(dst, ev.Type...)
	return append(dst, '\n')
}

// maxRetryDelay bounds the wait a target's retry field asks for before the mux resumes its
// stream for a client (resumeCall): a longer one would hold the client's request (and an HTTP+SSE
// client's session) about for ever.
const maxRetryDelay = time.Minute

// retryDelay returns the delay of a retry field (milliseconds, ASCII digits: mcp.Event.Retry), at
// most maxRetryDelay.
func retryDelay(retry string) time.Duration {
	ms, err := strconv.ParseInt(retry, 10, 64)
	if err != nil || ms > int64(maxRetryDelay/time.Millisecond) {
		return maxRetryDelay
	}
	return time.Duration(ms) * time.Millisecond
}

// clientData appends to dst the data of event ev of target mb's stream as the client gets it, and
// the blank line that ends the event: the target's message as toClient gives it, or the data as it
// is when it is not a JSON-RPC message (none: an event that only gives an id, such as a priming
// event). m is the message, nil when there is none.
func (c *call) clientData(dst []byte, ev *mcp.Event, mb member) (out []byte, m *message) {
	data := ev.Data
	m = new(message)
	if len(data) > 0 && json.Unmarshal(data, m) == nil {
		data = c.toClient(m, mb, data)
	} else {
		m = nil
	}
	return mcp.AppendEvent(dst, &mcp.Event{Data: data}), m
}

// toClient returns the message a target sent, as the client gets it: a request of the target's
// with its id rewritten (toClientID), and so the id of a notifications/cancelled (which names a
// request of the target's); a notifications/resources/updated with its params.uri prefixed
// (TARGET+uri, as the merged resources/list names it; not under Bridge, which passes URIs
// through); any other message as the target sent it
// (raw, or m encoded when raw is nil).
func (c *call) toClient(m *message, mb member, raw []byte) []byte {
	switch {
	case m.isRequest():
		m.ID = toClientID(mb.t.Name, m.ID)
		return m.encode()
	case m.isNotification() && m.Method == "notifications/cancelled":
		if params, ok := rewriteParams(m.Params, "requestId", func(id json.RawMessage) (json.RawMessage, bool) {
			return toClientID(mb.t.Name, id), mcp.IDKey(id) != ""
		}); ok {
			m.Params = params
			return m.encode()
		}
	case m.isNotification() && m.Method == "notifications/resources/updated" && !c.m.Bridge:
		if params, ok := rewriteParams(m.Params, "uri", func(raw json.RawMessage) (json.RawMessage, bool) {
			var uri string
			if json.Unmarshal(raw, &uri) != nil {
				return nil, false
			}
			b, _ := json.Marshal(mb.t.Name + string(mcp.Resource.Separator()) + uri)
			return b, true
		}); ok {
			m.Params = params
			return m.encode()
		}
	}
	if raw != nil {
		return raw
	}
	return m.encode()
}

// rewriteParams returns params (a JSON object) with its member name replaced by what fn makes of
// it. ok is false, and params are to be left as they are, when params is not an object, has no
// such member, or fn declines it.
func rewriteParams(params json.RawMessage, name string, fn func(json.RawMessage) (json.RawMessage, bool)) (json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(params, &obj) != nil || obj[name] == nil {
		return nil, false
	}
	v, ok := fn(obj[name])
	if !ok {
		return nil, false
	}
	obj[name] = v
	b, err := json.Marshal(obj)
	return b, err == nil
}
