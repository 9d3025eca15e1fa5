package mux

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// get serves a GET: the session's server-to-client stream, merged from the targets' own. It opens
// a GET stream to every target of the session that gave a session id (a target without one has no
// stream of the session) and writes one event stream to the client, each target's message events
// as they come (toClient: the ids of its requests rewritten, the URIs of its resource updates
// prefixed), flushed one by one.
//
// A target that answers 405 has no GET stream (MCP allows it) and is left out; when every target
// does, so is the client (405). A target that no longer knows its session (404) ends the client's
// session (404, as for any request). Another failure to open a target's stream fails the GET (502)
// under FailClosed and leaves the target out under FailOpen (502 when none opens); so does a
// target that gives no answer within Options.StreamOpenTimeout. Once the stream
// runs, a target's stream that ends or fails is logged and the others go on; the client's ends
// when all have. The client going away ends every target's stream (the requests' context).
//
// Event ids are left out and Last-Event-ID is not passed on: the mux does not resume streams, so
// a client that reconnects gets a new stream, without what it missed meanwhile.
func (c *call) get() {
	if !c.readSession(nil) {
		return
	}
	if !acceptsEventStream(c.r.Header.Values("Accept")) {
		http.Error(c.w, "mcpgate mux: a GET stream is text/event-stream, which Accept does not admit", http.StatusNotAcceptable)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.ctx = ctx
	streams := make([]*http.Response, len(c.sess))
	defer func() {
		for _, resp := range streams {
			if resp != nil {
				resp.Body.Close()
			}
		}
	}()
	wait := c.h.opts.StreamOpenTimeout
	errs := c.fanOut(func(ctx context.Context, mb member) error {
		if mb.sid == "" {
			return nil
		}
		// The stream lives as long as ctx; its opening gets wait (a target that never answers
		// would hold the client's stream back, every target's with it).
		tctx, tcancel := context.WithCancel(ctx)
		timer := time.AfterFunc(wait, tcancel)
		req := c.newRequest(tctx, http.MethodGet, mb, nil)
		if req != nil {
			req.Header.Set("Accept", "text/event-stream")
		}
		resp, err := c.do(tctx, mb, req, false)
		if !timer.Stop() {
			if err == nil {
				resp.Body.Close()
			}
			return &targetError{mb.t.Name, fmt.Errorf("no answer to its GET within %s", wait)}
		}
		if err != nil {
			return &targetError{mb.t.Name, err}
		}
		switch {
		case resp.StatusCode == http.StatusMethodNotAllowed:
			drain(resp)
			c.log.Debug("mux: target has no GET stream", "target", mb.t.Name)
			return nil
		case resp.StatusCode/100 != 2:
			defer drain(resp)
			return &targetError{mb.t.Name, httpError(resp)}
		case !isEventStream(resp):
			defer drain(resp)
			return &targetError{mb.t.Name, errors.New("its GET answer is " + resp.Header.Get("Content-Type") + ", not text/event-stream")}
		}
		streams[c.index(mb)] = resp
		return nil
	})
	open := 0
	for i, err := range errs {
		switch {
		case err != nil && sessionGone(err, c.sess[i]):
			c.writeError(http.StatusNotFound, nil, mcp.CodeSessionNotFound, "Session not found")
			return
		case streams[i] != nil:
			open++
		}
	}
	switch failed := firstError(errs); {
	case failed != nil && (!c.failOpen() || open == 0):
		http.Error(c.w, "mcpgate mux: GET: "+failed.Error(), http.StatusBadGateway)
		return
	case open == 0:
		c.w.Header().Set("Allow", "POST, DELETE")
		http.Error(c.w, "mcpgate mux: no target of the session has a GET stream", http.StatusMethodNotAllowed)
		return
	}

	flusher := c.startEvents()
	var mu sync.Mutex // serializes the client's events
	var wg sync.WaitGroup
	for i, resp := range streams {
		if resp == nil {
			continue
		}
		mb := c.sess[i]
		wg.Go(func() {
			var buf []byte
			err := c.h.readEvents(resp.Body, func(ev *mcp.Event) bool {
				buf, _ = c.clientEvent(buf[:0], ev, mb)
				mu.Lock()
				defer mu.Unlock()
				if _, err := c.w.Write(buf); err != nil {
					// The client is gone: every target's stream ends.
					cancel()
					return false
				}
				_ = flusher.Flush()
				return true
			})
			switch {
			case ctx.Err() != nil:
			case err != nil:
				c.log.Warn("mux: target's GET stream failed", "target", mb.t.Name, "error", err)
			default:
				c.log.Info("mux: target's GET stream ended", "target", mb.t.Name)
			}
		})
	}
	wg.Wait()
}

// acceptsEventStream reports whether Accept values admit text/event-stream (no Accept admits
// anything).
func acceptsEventStream(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for r := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(r))
			if err == nil && (mt == "text/event-stream" || mt == "text/*" || mt == "*/*") {
				return true
			}
		}
	}
	return false
}
