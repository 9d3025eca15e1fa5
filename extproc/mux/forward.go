package mux

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// forward sends a request to one target and passes its answer back as it comes: a JSON body
// whole, an event stream event by event (flushed), the ids of the target's own requests in it
// rewritten (toClientID). name, when not "", is the item's name for the target's Mcp-Name header.
func (c *call) forward(msg *message, mb member, name string) {
	req := c.newRequest(c.ctx, http.MethodPost, mb, msg.encode())
	if req != nil && name != "" && req.Header.Get(mcp.NameHeader) != "" {
		req.Header.Set(mcp.NameHeader, mcp.EncodeHeaderValue(name))
	}
	resp, err := c.up.do(c.ctx, req)
	if err == nil && resp.StatusCode/100 != 2 {
		err = httpError(resp)
		drain(resp)
	}
	if err != nil {
		c.log.Warn("mux: target failed", "target", mb.t.Name, "method", msg.Method, "error", err)
		if sessionGone(err, mb) {
			c.writeError(http.StatusNotFound, msg.ID, mcp.CodeSessionNotFound, "Session not found")
			return
		}
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: "+(&targetError{mb.t.Name, err}).Error())
		return
	}
	defer drain(resp)
	limit := c.h.opts.MaxBodyBytes
	if !isEventStream(resp) {
		var out []byte
		err := readMessages(resp, limit, func(m *message) bool {
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
	c.w.Header().Set("Content-Type", "text/event-stream")
	c.w.Header().Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	flusher := http.NewResponseController(c.w)
	_ = flusher.Flush()
	want := mcp.IDKey(msg.ID)
	answered := false
	var buf []byte
	err = readEvents(resp.Body, limit, func(ev *mcp.Event) bool {
		var m message
		data := ev.Data
		if json.Unmarshal(ev.Data, &m) == nil {
			answered = answered || (m.isResponse() && mcp.IDKey(m.ID) == want)
			data = c.toClient(&m, mb, ev.Data)
		}
		// The target's event ids are left out: a client could resume with them only on the
		// GET stream, which the mux does not serve.
		buf = mcp.AppendEvent(buf[:0], &mcp.Event{Type: "message", Data: data})
		if _, err := c.w.Write(buf); err != nil {
			return false
		}
		_ = flusher.Flush()
		return !answered
	})
	if !answered && c.ctx.Err() == nil {
		if err == nil {
			err = errors.New("its event stream ended without the answer")
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			c.log.Warn("mux: target's answer stream", "target", mb.t.Name, "method", msg.Method, "error", err)
		}
		buf = mcp.AppendEvent(buf[:0], &mcp.Event{Type: "message",
			Data: mcp.ErrorResponse(msg.ID, mcp.CodeInternalError, "mcpgate mux: "+(&targetError{mb.t.Name, err}).Error())})
		_, _ = c.w.Write(buf)
		_ = flusher.Flush()
	}
}

// toClient returns the message a target sent, as the client gets it: a request of the target's
// with its id rewritten (toClientID); any other message as the target sent it (raw, or m encoded
// when raw is nil).
func (c *call) toClient(m *message, mb member, raw []byte) []byte {
	if m.isRequest() {
		m.ID = toClientID(mb.t.Name, m.ID)
		return m.encode()
	}
	if raw != nil {
		return raw
	}
	return m.encode()
}
