package mux

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
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
// Each event relayed gets an id (EventIDPrefix, kind getStream) naming, for every target that has
// given one on this stream, the latest event id it gave. A GET with Last-Event-ID resumes from
// there (resumeFrom): every target named is asked for its stream with its own Last-Event-ID, the
// others plainly; an id of a call's stream (kind callStream) resumes that one target's stream
// alone, its events given ids of that kind again. A target that refuses its Last-Event-ID fails
// the GET (400), whatever the failure mode: the client would lose that target's events unawares.
func (c *call) get() {
	if !c.readSession(nil) {
		return
	}
	if !acceptsEventStream(c.r.Header.Values("Accept")) {
		http.Error(c.w, "mcpgate mux: a GET stream is text/event-stream, which Accept does not admit", http.StatusNotAcceptable)
		return
	}
	from, err := c.resumeFrom()
	if err != nil {
		c.log.Info("mux: GET with a Last-Event-ID the mux cannot resume from", "error", err)
		http.Error(c.w, "mcpgate mux: "+err.Error(), http.StatusBadRequest)
		return
	}
	stop, ok := c.holdStream(nil)
	if !ok {
		return
	}
	defer stop()
	ctx := c.ctx // the stream's: stop ends it
	streams := make([]*http.Response, len(c.sess))
	defer func() {
		for _, resp := range streams {
			if resp != nil {
				resp.Body.Close()
			}
		}
	}()
	errs := c.fanOut(bound{}, func(ctx context.Context, mb member) error {
		last := from.id(mb.t.Name)
		if mb.sid == "" || from.kind == callStream && last == "" {
			return nil
		}
		resp, err := c.openStream(ctx, mb, last)
		switch {
		case err != nil:
			return err
		case resp.StatusCode == http.StatusMethodNotAllowed:
			drain(resp)
			c.log.Debug("mux: target has no GET stream", "target", mb.t.Name)
			return nil
		}
		if err := streamRefusal(resp, mb, last); err != nil {
			return err
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
	var refused *resumeError
	switch failed := firstError(errs); {
	case slices.ContainsFunc(errs, func(err error) bool { return errors.As(err, &refused) }):
		http.Error(c.w, "mcpgate mux: GET: "+refused.Error(), http.StatusBadRequest)
		return
	case failed != nil && (!c.failOpen() || open == 0):
		http.Error(c.w, "mcpgate mux: GET: "+failed.Error(), http.StatusBadGateway)
		return
	case open == 0:
		c.w.Header().Set("Allow", "POST, DELETE")
		http.Error(c.w, "mcpgate mux: no target of the session has a GET stream", http.StatusMethodNotAllowed)
		return
	}

	flusher := c.startEvents()
	var mu sync.Mutex // serializes the client's events and guards the position
	// pos is the latest event id of each target (the session's order) the client has: what its
	// events' ids say.
	pos := make([]string, len(c.sess))
	names := make([]string, len(c.sess))
	for i, mb := range c.sess {
		names[i], pos[i] = mb.t.Name, from.id(mb.t.Name)
	}
	kind := byte(getStream)
	if from.kind == callStream {
		kind = callStream
	}
	var out, scratch []byte
	var wg sync.WaitGroup
	for i, resp := range streams {
		if resp == nil {
			continue
		}
		mb := c.sess[i]
		wg.Go(func() {
			var data []byte
			err := c.h.readEvents(resp.Body, func(ev *mcp.Event) bool {
				data, _ = c.clientData(data[:0], ev, mb)
				mu.Lock()
				defer mu.Unlock()
				if ev.HasID && ev.ID != "" {
					pos[i] = ev.ID
				}
				out = appendEventType(out[:0], ev)
				out, scratch = appendEventID(out, scratch, kind, names, pos)
				out = mcp.AppendRetry(out, ev.Retry)
				out = append(out, data...)
				if _, err := c.w.Write(out); err != nil {
					// The client is gone: every target's stream ends.
					stop()
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

// openStream opens target mb's server-to-client stream: a GET of its session, with
// Last-Event-ID last when it is not "" (the target's own event id: its stream resumed from
// there). The stream lives as long as ctx; its opening gets Options.StreamOpenTimeout (a target
// that never answers would hold the client's stream back). The answer may have any status
// (streamRefusal); a failure to get one is a targetError.
func (c *call) openStream(ctx context.Context, mb member, last string) (*http.Response, error) {
	wait := c.h.opts.StreamOpenTimeout
	tctx, tcancel := context.WithCancel(ctx)
	timer := time.AfterFunc(wait, tcancel)
	req := c.newRequest(tctx, http.MethodGet, mb, nil)
	if req != nil {
		req.Header.Set("Accept", "text/event-stream")
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
	}
	resp, err := c.do(tctx, mb, req, false)
	if !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		return nil, &targetError{mb.t.Name, fmt.Errorf("no answer to its GET within %s", wait)}
	}
	if err != nil {
		return nil, &targetError{mb.t.Name, err}
	}
	return resp, nil
}

// streamRefusal returns the error of target mb's answer to openStream that is not its stream
// (its body drained), nil for a stream: a resumeError for an answer other than 2xx or 404 to a
// GET with Last-Event-ID last, else a targetError.
func streamRefusal(resp *http.Response, mb member, last string) error {
	switch {
	case resp.StatusCode/100 != 2 && last != "" && resp.StatusCode != http.StatusNotFound:
		defer drain(resp)
		return &resumeError{targetError{mb.t.Name, httpError(resp)}, last}
	case resp.StatusCode/100 != 2:
		defer drain(resp)
		return &targetError{mb.t.Name, httpError(resp)}
	case !isEventStream(resp):
		defer drain(resp)
		return &targetError{mb.t.Name, errors.New("its GET answer is " + resp.Header.Get("Content-Type") + ", not text/event-stream")}
	}
	return nil
}

// resumeFrom reads the request's Last-Event-ID: the position the client resumes from, empty when
// it sent none. An id the mux did not give (EventIDPrefix), or one naming a target that is not
// in the session or has no stream in it, is an error: the mux cannot tell which events the client
// missed, and a new stream would lose them unsaid.
func (c *call) resumeFrom() (*streamPosition, error) {
	v := c.r.Header.Values("Last-Event-ID")
	switch len(v) {
	case 0:
		return &streamPosition{kind: getStream}, nil
	case 1:
	default:
		return nil, errors.New("Last-Event-ID sent more than once")
	}
	p, err := decodeEventID(v[0])
	if err != nil {
		return nil, fmt.Errorf("Last-Event-ID %q: %w; open the stream without it", v[0], err)
	}
	for _, name := range p.names {
		if mb, ok := c.member(name); !ok || mb.sid == "" {
			return nil, fmt.Errorf("Last-Event-ID %q names target %q, which has no stream in this session; open the stream without it", v[0], name)
		}
	}
	return p, nil
}

// resumeError is a target's refusal of the GET that resumes its stream (its Last-Event-ID).
type resumeError struct {
	targetError
	last string
}

func (e *resumeError) Error() string {
	return "target " + e.target + " cannot resume its stream from its event id " + strconv.Quote(e.last) + ": " + e.err.Error()
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
