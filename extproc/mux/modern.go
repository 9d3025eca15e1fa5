package mux

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// ModernVersion is the first MCP version of the "modern" era (2026-07-28, SEP-2575): no
// initialize and no session, each request carrying its version in params._meta
// (MetaKeyProtocolVersion) and MCP-Protocol-Version. The mux serves it on a multiplexed backend
// every target of which offers it (docs/design.md, "Protocol eras").
const ModernVersion = "2026-07-28"

// MetaKeyProtocolVersion, MetaKeyServerInfo and MetaKeySubscriptionID are the _meta keys of the
// modern era: a request's version, the server's Implementation on a result, the
// subscriptions/listen request a notification belongs to.
const (
	MetaKeyProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	MetaKeyServerInfo      = "io.modelcontextprotocol/serverInfo"
	MetaKeySubscriptionID  = "io.modelcontextprotocol/subscriptionId"
)

// sessionless reports whether the request names no session.
func (c *call) sessionless() bool { return len(c.r.Header.Values("Mcp-Session-Id")) == 0 }

// modern reports whether msg is a sessionless message of the modern era on a multiplexed backend:
// no Mcp-Session-Id, and MCP-Protocol-Version or params._meta's version ModernVersion or later.
// Under Bridge the mux speaks the initialize era only.
func (c *call) modern(msg *message) bool {
	if c.m.Bridge || !c.sessionless() {
		return false
	}
	return modernHeader(c.r.Header) || modernVersion(metaVersion(msg.Params))
}

// modernHeader reports whether MCP-Protocol-Version says ModernVersion or later.
func modernHeader(h http.Header) bool { return modernVersion(h.Get("Mcp-Protocol-Version")) }

// modernVersion reports whether v is an MCP version (YYYY-MM-DD) of ModernVersion or later:
// versions compare as their text does, but only as versions ("9" or "zzz" sort after it too).
func modernVersion(v string) bool {
	if len(v) != len(ModernVersion) || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; i != 4 && i != 7 && (c < '0' || c > '9') {
			return false
		}
	}
	return v >= ModernVersion
}

// modernMeta returns the _meta of a request the mux makes of its own in the modern era (Resolve's
// lists): the version, the mux as the client, no client capabilities.
func modernMeta(version, muxVersion string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		MetaKeyProtocolVersion:                       version,
		"io.modelcontextprotocol/clientInfo":         map[string]string{"name": ServerName, "version": muxVersion},
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	})
	return b
}

// metaVersion returns params._meta's protocol version ("" when there is none).
func metaVersion(params json.RawMessage) string {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	var v string
	if json.Unmarshal(params, &p) == nil {
		_ = json.Unmarshal(p.Meta[MetaKeyProtocolVersion], &v)
	}
	return v
}

// allTargets sets the call's session to every target of the backend, without session ids: a
// modern request is served by every target (lists, subscriptions/listen) or the one its name
// names (calls).
func (c *call) allTargets() {
	c.sess = make([]member, len(c.m.Targets))
	for i, t := range c.m.Targets {
		c.sess[i] = member{t: t}
	}
}

// serveModern serves a sessionless message of the modern era (modern): a request as a session's
// (request), but subscriptions/listen (listen), a notification or a response sent to every target
// or the one it names.
func (c *call) serveModern(msg *message) {
	c.allTargets()
	c.modernEra = true
	switch {
	case msg.isRequest() && msg.Method == "subscriptions/listen":
		c.listen(msg)
	case msg.isRequest():
		c.request(msg)
	case msg.isNotification():
		c.notify(msg)
	case msg.isResponse():
		c.respond(msg)
	default:
		c.writeError(http.StatusBadRequest, msg.ID, mcp.CodeInvalidRequest, "mcpgate mux: not a JSON-RPC request, notification or response")
	}
}

// discoverResult is the part of a server/discover result the mux merges.
type discoverResult struct {
	ResultType        string                     `json:"resultType,omitempty"`
	Meta              map[string]json.RawMessage `json:"_meta,omitempty"`
	TTLMs             *int                       `json:"ttlMs,omitempty"`
	CacheScope        string                     `json:"cacheScope,omitempty"`
	SupportedVersions []string                   `json:"supportedVersions"`
	Capabilities      map[string]any             `json:"capabilities"`
	Instructions      string                     `json:"instructions,omitempty"`
}

// discover answers a sessionless server/discover when every target offers ModernVersion: it goes
// to every target in parallel, and the answer is the versions every target that answered offers,
// the union of the capabilities the mux serves (as initialize's), the mux's serverInfo in _meta
// and each target's instructions under its name. It reports false, having written nothing, when
// a target answers that it does not offer ModernVersion (a JSON-RPC error, an HTTP 4xx, versions
// without it) or when a target fails (no answer, a 5xx) under FailClosed or all do under
// FailOpen: the request is then answered as any request without a session (400, -32600), on
// which clients fall back to initialize. After a target answered that it does not offer
// ModernVersion, the backend's probes report false at once for olderMemoTTL (olderMemo).
func (c *call) discover(msg *message) bool {
	if c.m.Bridge || c.h.older.known(c.m, time.Now()) {
		return false
	}
	c.allTargets()
	body := msg.encode()
	results := make([]*discoverResult, len(c.sess))
	older := make([]bool, len(c.sess))
	errs := c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
		a, err := c.exchange(ctx, mb, body, msg.ID)
		var se *statusError
		switch {
		case errors.As(err, &se) && se.status/100 == 4 && se.status != http.StatusTooManyRequests:
			// A server of the initialize era refuses a request without a session.
			older[c.index(mb)] = true
			return nil
		case err != nil:
			return err
		case a.msg.Error != nil:
			older[c.index(mb)] = true
			return nil
		}
		var r discoverResult
		if json.Unmarshal(a.msg.Result, &r) != nil || !slices.Contains(r.SupportedVersions, ModernVersion) {
			older[c.index(mb)] = true
			return nil
		}
		results[c.index(mb)] = &r
		return nil
	})
	answered := 0
	for i := range results {
		if older[i] {
			c.log.Debug("mux: target does not offer MCP "+ModernVersion+"; server/discover refused", "target", c.sess[i].t.Name)
			c.h.older.mark(c.m, time.Now())
			return false
		}
		if results[i] != nil {
			answered++
		}
	}
	if answered == 0 || firstError(errs) != nil && !c.failOpen() {
		return false
	}
	out := discoverResult{Capabilities: map[string]any{}}
	var instructions []string
	var versions []string
	first := true
	for i, r := range results {
		if r == nil {
			continue
		}
		if first {
			versions, out.ResultType, out.TTLMs, out.CacheScope, first = r.SupportedVersions, r.ResultType, r.TTLMs, r.CacheScope, false
		} else {
			versions = slices.DeleteFunc(versions, func(v string) bool { return !slices.Contains(r.SupportedVersions, v) })
			if r.TTLMs == nil || out.TTLMs != nil && *r.TTLMs < *out.TTLMs {
				out.TTLMs = r.TTLMs
			}
			if r.CacheScope != out.CacheScope {
				out.CacheScope = "private" // the narrower of two scopes
			}
		}
		instructions = mergeTarget(out.Capabilities, r.Capabilities, instructions, c.sess[i].t.Name, r.Instructions)
	}
	out.SupportedVersions = versions
	out.Instructions = strings.Join(instructions, "\n\n")
	info, _ := json.Marshal(map[string]string{"name": ServerName, "version": c.h.opts.Version})
	out.Meta = map[string]json.RawMessage{MetaKeyServerInfo: info}
	result, _ := json.Marshal(out)
	c.writeJSON(http.StatusOK, (&message{ID: msg.ID, Result: result}).encode())
	return true
}

// olderMemoTTL is how long the mux remembers that a target of a backend does not offer
// ModernVersion (olderMemo).
const olderMemoTTL = 30 * time.Second

// olderMemo remembers, per backend, that one of its targets answered server/discover as a server
// of the initialize era, so that the probes of the clients that follow (the go-sdk client, the
// inspector's --protocol-era auto: one per connection) are refused at once rather than costing a
// request to every target each. A mark holds for olderMemoTTL, and only while the backend has
// the targets it was made with. Failures (a target down) are not marked: they pass. It holds
// one mark per backend name, of the backends marked within olderMemoTTL.
type olderMemo struct{ marks sync.Map } // backend name -> *olderMark

// olderMark is olderMemo's mark of a backend: its targets then, and until when it holds.
type olderMark struct {
	targets []contract.MuxTarget
	until   time.Time
}

// mark remembers that a target of m does not offer ModernVersion, as of now, and forgets the
// marks expired by now: those of backends not probed since (deleted ones among them) would stay
// for ever. Marks are made at most once per backend per olderMemoTTL: the walk is cheap.
func (o *olderMemo) mark(m *contract.Mux, now time.Time) {
	o.marks.Range(func(k, v any) bool {
		if !now.Before(v.(*olderMark).until) {
			o.marks.CompareAndDelete(k, v)
		}
		return true
	})
	o.marks.Store(m.Backend, &olderMark{targets: m.Targets, until: now.Add(olderMemoTTL)})
}

// known reports whether a mark says, at now, that a target of m does not offer ModernVersion.
func (o *olderMemo) known(m *contract.Mux, now time.Time) bool {
	v, ok := o.marks.Load(m.Backend)
	if !ok {
		return false
	}
	mk := v.(*olderMark)
	return now.Before(mk.until) && slices.Equal(mk.targets, m.Targets)
}

// listenParams are the params of subscriptions/listen the mux reads: the resource URIs subscribed
// to are the client's (TARGET+uri), split among the targets.
type listenParams struct {
	Notifications *struct {
		ResourceSubscriptions []string `json:"resourceSubscriptions"`
	} `json:"notifications"`
}

// listen serves a sessionless subscriptions/listen: the client's long-lived stream of the
// notifications it subscribes to, merged from every target's, as get merges GET streams. It
// goes to every target (each with the resource URIs of its own, without the prefix), whose
// first message, notifications/subscriptions/acknowledged, the mux waits for (each within
// Options.StreamOpenTimeout) and merges into one (the union of what the targets honour, their
// resource URIs prefixed, the client's request id as subscriptionId); then each target's
// notifications pass as they come (toClient), until every target's stream has ended, when the
// client gets the listen's result. A target that fails or refuses the listen (a JSON-RPC error;
// -32601 from a target without it is left out whatever the failure mode) fails it under
// FailClosed (-32603 naming the target) and is left out under FailOpen.
func (c *call) listen(msg *message) {
	var p listenParams
	params, _, ok := stringMember(msg.Params, "")
	if !ok || json.Unmarshal(msg.Params, &p) != nil || p.Notifications == nil {
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInvalidParams, "mcpgate mux: subscriptions/listen: params.notifications must be an object")
		return
	}
	var notifications map[string]json.RawMessage
	_ = json.Unmarshal(params["notifications"], &notifications)
	uris := map[string][]string{}
	for _, uri := range p.Notifications.ResourceSubscriptions {
		target, rest, ok := mcp.SplitTarget(mcp.Resource, uri, c.targetNames())
		if !ok {
			c.writeJSON(http.StatusOK, mcp.Unknown(msg.ID, mcp.Resource, uri))
			return
		}
		uris[target] = append(uris[target], rest)
	}
	stop, ok := c.holdStream(msg.ID)
	if !ok {
		return
	}
	defer stop()
	ctx := c.ctx // the stream's: stop ends it
	streams := make([]*http.Response, len(c.sess))
	acks := make([]map[string]json.RawMessage, len(c.sess))
	defer func() {
		for _, resp := range streams {
			if resp != nil {
				resp.Body.Close()
			}
		}
	}()
	// Each target's stream is read by its own goroutine, from its acknowledgement on: the client's
	// stream starts once every target has acknowledged (or failed).
	started := make(chan struct{})
	var acked sync.WaitGroup
	var mu sync.Mutex // serializes the client's events
	var flusher *http.ResponseController
	var out []byte
	var readers sync.WaitGroup
	errs := make([]error, len(c.sess))
	for i, mb := range c.sess {
		n := make(map[string]json.RawMessage, len(notifications))
		for k, v := range notifications {
			n[k] = v
		}
		delete(n, "resourceSubscriptions")
		if u := uris[mb.t.Name]; len(u) > 0 {
			n["resourceSubscriptions"], _ = json.Marshal(u)
		}
		tp := make(map[string]json.RawMessage, len(params))
		for k, v := range params {
			tp[k] = v
		}
		tp["notifications"], _ = json.Marshal(n)
		raw, _ := json.Marshal(tp)
		body := (&message{ID: msg.ID, Method: msg.Method, Params: raw}).encode()
		acked.Add(1)
		readers.Go(func() {
			waiting := true
			done := func() {
				if waiting {
					waiting = false
					acked.Done()
				}
			}
			defer done()
			tctx, tcancel := context.WithCancel(ctx)
			defer tcancel()
			timer := time.AfterFunc(c.h.opts.StreamOpenTimeout, tcancel)
			resp, err := c.do(tctx, mb, c.newRequest(tctx, http.MethodPost, mb, body), true)
			if err == nil && resp.StatusCode/100 != 2 {
				err = httpError(resp)
				drain(resp)
			}
			if err != nil {
				errs[i] = &targetError{mb.t.Name, err}
				return
			}
			streams[i] = resp
			var data []byte
			err = c.h.readMessages(resp, func(m *message) bool {
				switch {
				case waiting && m.isResponse():
					// An answer before the acknowledgement: a refusal (or a listen with nothing to
					// listen to).
					if m.Error != nil && rpcCode(m.Error) != codeMethodNotFound {
						errs[i] = &targetError{mb.t.Name, rpcError(m.Error)}
					}
					return false
				case waiting && m.isNotification() && m.Method == "notifications/subscriptions/acknowledged":
					timer.Stop()
					var ack struct {
						Notifications map[string]json.RawMessage `json:"notifications"`
					}
					_ = json.Unmarshal(m.Params, &ack)
					acks[i] = ack.Notifications
					done()
					<-started
					return ctx.Err() == nil // the listen failed (another target) or the client is gone
				case waiting:
					return true // nothing is the client's before the acknowledgement
				case m.isResponse():
					return false // the target's listen ended
				}
				data = mcp.AppendEvent(data[:0], &mcp.Event{Data: c.toClient(m, mb, nil)})
				mu.Lock()
				defer mu.Unlock()
				if _, err := c.w.Write(data); err != nil {
					stop()
					return false
				}
				_ = flusher.Flush()
				return true
			})
			if err != nil && ctx.Err() == nil {
				if waiting && errs[i] == nil {
					errs[i] = &targetError{mb.t.Name, err}
				}
				c.log.Info("mux: target's subscriptions/listen stream ended", "target", mb.t.Name, "error", err)
			}
		})
	}
	acked.Wait()
	open := 0
	for i := range acks {
		if acks[i] != nil {
			open++
		}
	}
	if failed := firstError(errs); failed != nil && (!c.failOpen() || open == 0) {
		stop()
		close(started)
		readers.Wait()
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: subscriptions/listen: "+failed.Error())
		return
	}
	merged := map[string]any{}
	var resources []string
	for i, ack := range acks {
		for k, v := range ack {
			if k == "resourceSubscriptions" {
				var u []string
				_ = json.Unmarshal(v, &u)
				for _, uri := range u {
					resources = append(resources, c.sess[i].t.Name+string(mcp.Resource.Separator())+uri)
				}
				continue
			}
			var b bool
			if json.Unmarshal(v, &b) == nil {
				merged[k] = b || merged[k] == true
			}
		}
	}
	if len(resources) > 0 {
		merged["resourceSubscriptions"] = resources
	}
	ackParams, _ := json.Marshal(map[string]any{"notifications": merged, "_meta": map[string]json.RawMessage{MetaKeySubscriptionID: msg.ID}})
	flusher = c.startEvents()
	out = mcp.AppendEvent(out, &mcp.Event{Data: (&message{Method: "notifications/subscriptions/acknowledged", Params: ackParams}).encode()})
	_, _ = c.w.Write(out)
	_ = flusher.Flush()
	close(started)
	readers.Wait()
	if c.ctx.Err() != nil {
		return
	}
	result, _ := json.Marshal(map[string]any{"resultType": "complete", "_meta": map[string]json.RawMessage{MetaKeySubscriptionID: msg.ID}})
	mu.Lock()
	defer mu.Unlock()
	_, _ = c.w.Write(mcp.AppendEvent(out[:0], &mcp.Event{Data: (&message{ID: msg.ID, Result: result}).encode()}))
	_ = flusher.Flush()
}
