package mux

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// Query is a call on a multiplexed backend under prefixMode Never whose target the front hop's
// ext_proc asks Resolve for: the call names its tool or prompt bare.
type Query struct {
	// Mux is the route's contract.MetadataMux: the backend as compact JSON (contract.Mux).
	Mux string
	// Session is the client's session id as the mux gave it (unsealed by the front hop): its
	// Mcp-Session-Id, or an HTTP+SSE client's sessionId (the key of the mux's legacy session).
	Session string
	// Header holds the client's request headers as ext_proc passes them on (newRequest copies
	// them to each target's request but those it drops); Resolve applies the route's changes
	// (contract.Mux.RequestHeaders) to a copy, as Envoy's router does before the mux gets the
	// call. Host is the request's authority.
	Header http.Header
	Host   string
	// Caller is the caller the front hop names to the mux (contract.HeaderMuxCaller; "": none):
	// a cached resolution is one caller's (targets may list per caller, and stateless targets
	// give every client one composite session id).
	Caller string
	// ID is the call's JSON-RPC id: the ids of the list requests are made of it.
	ID json.RawMessage
	// Item is mcp.Tool (tools/call) or mcp.Prompt (prompts/get, completion/complete of a prompt);
	// Name its bare name.
	Item mcp.Item
	Name string
}

// The kinds of ResolveError.
const (
	// ResolveUnknown: no target of the session lists the name.
	ResolveUnknown = "unknown"
	// ResolveAmbiguous: several targets of the session list the name.
	ResolveAmbiguous = "ambiguous"
	// ResolveFailed: a target's list failed (FailClosed, or every target under FailOpen), the
	// session is gone, or the query is not one the mux can answer.
	ResolveFailed = "failed"
)

// ResolveError is why Resolve found no target, and the answer the front hop gives the call.
type ResolveError struct {
	// Kind is ResolveUnknown, ResolveAmbiguous or ResolveFailed.
	Kind string
	// Status is the HTTP status of the answer, Code and Message its JSON-RPC error.
	Status  int
	Code    int
	Message string
}

func (e *ResolveError) Error() string { return e.Message }

// Answer returns the JSON-RPC error answer to the call of id.
func (e *ResolveError) Answer(id json.RawMessage) []byte {
	return mcp.ErrorResponse(id, e.Code, e.Message)
}

// Resolve finds the target of a call of a bare tool or prompt name on a multiplexed backend
// under prefixMode Never, as agentgateway does: it lists the tools (prompts) of every target of
// the session through the Gateway's mux upstream listener, with the client's session and
// headers as the mux would send them (the route's request header changes applied first, as
// Envoy's router applies them to the call: contract.Mux.RequestHeaders) (each target followed
// through its nextCursor, at most Options.MaxPages pages), and returns the one target that lists
// the name. The error is a *ResolveError: ResolveUnknown ("Unknown tool: NAME", as the mux and
// the rules answer), ResolveAmbiguous ("Tool NAME is served by multiple targets: a, b"),
// ResolveFailed. A target whose list fails fails the call under FailClosed and is skipped under
// FailOpen; a target without the list method (-32601) lists nothing; one whose lists have not
// all come within Options.ResolveTimeout has failed.
//
// The cost is one list request per target (more with pages). With Options.ResolveCacheTTL, a
// complete resolution (no target failed) is kept that long for the backend description, the
// session, the host and the kind of item (resolveCache): the calls that follow within it send
// no list; a name the kept resolution lacks is resolved afresh before it is called unknown. The
// cache only chooses the target the call is sent to, which the front hop then judges the call
// as and pins in contract.HeaderMuxTarget: a stale entry can make a call fail (the target
// answers unknown tool), never reach a target other than the one judged. The calls of a key
// that come while its resolution is being made wait for it (an agent's parallel first calls
// list once), and resolve afresh only when it was not complete or lacks their name.
func (h *Server) Resolve(ctx context.Context, q Query) (string, error) {
	var key resolveKey
	var start time.Time // when the lists began: an entry expires the TTL after
	var lead *flight    // the flight this call leads, landed with what it resolves
	var kept *resolution
	// A sessionless call (MCP 2026-07-28) has no session to scope a kept resolution to the
	// caller: it is resolved afresh each time.
	cache := h.cache
	if q.Session == "" {
		cache = nil
	}
	if cache != nil {
		// Only a description, session, host and item a full resolution accepted have an entry.
		key = newResolveKey(&q)
		r := cache.get(key)
		if r == nil {
			if f, leads := cache.join(key); leads {
				lead = f
				defer func() { cache.land(key, lead, kept) }()
			} else {
				r = cache.await(ctx, f)
			}
		}
		if r != nil {
			if target, ambiguous, ok := r.lookup(q.Name); ok {
				return resolveAnswer(q, target, ambiguous)
			}
			// Not listed when cached: a tool added since is found by resolving afresh.
		}
		start = cache.now()
	}
	r, complete, err := h.resolve(ctx, q)
	if err != nil {
		return "", err
	}
	if cache != nil && complete {
		cache.put(key, r, start)
		kept = r
	}
	target, ambiguous, _ := r.lookup(q.Name)
	return resolveAnswer(q, target, ambiguous)
}

// headerOf returns the contract.HeaderMux value of the backend whose contract.MetadataMux is m:
// the translator's header is the same JSON without the rule's request header changes and host
// (the mux receives the call with them applied).
func headerOf(m contract.Mux) string {
	m.RequestHeaders, m.Host = nil, ""
	b, err := json.Marshal(m)
	if err != nil {
		return "" // strings only: it cannot fail
	}
	return string(b)
}

// resolveAnswer is Resolve's answer for q: target, or the targets of an ambiguous name, or none.
func resolveAnswer(q Query, target string, ambiguous []string) (string, error) {
	switch {
	case target != "":
		return target, nil
	case len(ambiguous) == 0:
		return "", &ResolveError{Kind: ResolveUnknown, Status: http.StatusOK, Code: mcp.CodeInvalidParams,
			Message: "Unknown " + q.Item.String() + ": " + q.Name}
	}
	it := q.Item.String()
	return "", &ResolveError{Kind: ResolveAmbiguous, Status: http.StatusOK, Code: mcp.CodeInvalidParams,
		Message: strings.ToUpper(it[:1]) + it[1:] + " " + q.Name + " is served by multiple targets: " + strings.Join(ambiguous, ", ")}
}

// resolve lists the items of q's kind of every target of q's session (Resolve) and returns what
// they list; complete reports whether every target answered (none skipped under FailOpen).
func (h *Server) resolve(ctx context.Context, q Query) (_ *resolution, complete bool, _ error) {
	failed := func(status, code int, msg string) (*resolution, bool, error) {
		return nil, false, &ResolveError{Kind: ResolveFailed, Status: status, Code: code, Message: msg}
	}
	m, err := readMux([]string{q.Mux})
	switch {
	case err != nil:
		return failed(http.StatusInternalServerError, mcp.CodeInternalError, "mcpgate: the route's "+contract.MetadataMux+" metadata: "+err.Error())
	case m.PrefixMode != contract.PrefixModeNever:
		return failed(http.StatusInternalServerError, mcp.CodeInternalError, "mcpgate: the route's "+contract.MetadataMux+" metadata: prefixMode "+m.PrefixMode+", want "+contract.PrefixModeNever)
	case q.Item != mcp.Tool && q.Item != mcp.Prompt:
		return failed(http.StatusInternalServerError, mcp.CodeInternalError, "mcpgate: Resolve: only tools and prompts are named bare")
	case h.opts.Upstream == nil:
		return failed(http.StatusInternalServerError, mcp.CodeInternalError, "mcpgate mux: no upstream configured")
	}
	up, err := h.upstream(h.opts.Upstream(m.Gateway))
	if err != nil {
		h.log.Error("mux: upstream address", "gateway", m.Gateway, "error", err)
		return failed(http.StatusInternalServerError, mcp.CodeInternalError, "mcpgate mux: gateway "+m.Gateway+": "+err.Error())
	}
	// The call reaches the mux with the route's request header changes applied by Envoy's router
	// after ext_proc: the lists bring the targets the same headers.
	header := q.Header
	if m.RequestHeaders != nil {
		header = q.Header.Clone()
		if header == nil {
			header = http.Header{}
		}
		m.RequestHeaders.Apply(header)
	}
	host := q.Host
	if m.Host != "" { // the route's URLRewrite hostname, which the router applies to the call
		host = m.Host
	}
	r := &http.Request{Method: http.MethodPost, Header: header, Host: host}
	c := &call{h: h, m: m, up: up, r: r, ctx: ctx, log: h.log.With("backend", m.Backend), namesOnly: true}
	var session []string
	modern := false
	switch s := h.legacy.session(q.Session, headerOf(*m), up); {
	case s != nil:
		// An HTTP+SSE client's call: its session is the mux session the legacy session holds.
		session = []string{s.sessionID()}
	case q.Session != "":
		session = []string{q.Session}
	}
	switch err := c.openSession(session); {
	case errors.Is(err, errNoSession) && !m.Bridge && modernHeader(header):
		// A sessionless call of MCP 2026-07-28: every target of the backend serves it. The lists
		// are requests of that version: their own Mcp-Method, no Mcp-Name, the _meta triple.
		c.allTargets()
		r.Header = header.Clone()
		r.Header.Del(mcp.NameHeader)
		modern = true
	case errors.Is(err, errNoSession):
		return failed(http.StatusBadRequest, mcp.CodeInvalidRequest, err.Error())
	case err != nil:
		c.log.Info("mux: call of an unknown session", "error", err)
		return failed(http.StatusNotFound, mcp.CodeSessionNotFound, "Session not found")
	}
	method, key := "tools/list", "tools"
	if q.Item == mcp.Prompt {
		method, key = "prompts/list", "prompts"
	}
	// The list requests' ids are the call's, marked with the server's random prefix: a string no
	// client request of the session has, nor can guess (pageID adds the page).
	id, _ := json.Marshal(h.resolveID + string(q.ID))
	msg := &message{ID: id, Method: method}
	params := map[string]json.RawMessage{}
	if modern {
		r.Header.Set("Mcp-Method", method)
		params["_meta"] = modernMeta(r.Header.Get("Mcp-Protocol-Version"), h.opts.Version)
	}
	budget := &listBudget{left: int64(h.opts.MaxBodyBytes)}
	names := make([][]listed, len(c.sess))
	// Resolve has a bound of its own, below the ext_proc message timeout: a target that does not
	// answer by then has failed (Options.ResolveTimeout).
	errs := c.fanOut(bound{h.opts.ResolveTimeout, "the resolve timeout, mux Options.ResolveTimeout"}, func(ctx context.Context, mb member) error {
		var err error
		names[c.index(mb)], err = c.listTarget(ctx, mb, msg, params, q.Item, key, "name", budget)
		return err
	})
	targets := make([]string, len(c.sess))
	for i, err := range errs {
		targets[i] = c.sess[i].t.Name
		switch {
		case errors.Is(err, errListTooLarge):
			return failed(http.StatusOK, mcp.CodeInternalError, "mcpgate mux: "+method+": the targets' lists are larger than the mux's limit")
		case err != nil && sessionGone(err, c.sess[i]):
			return failed(http.StatusNotFound, mcp.CodeSessionNotFound, "Session not found")
		case err != nil && (!c.failOpen() || countErrors(errs) == len(errs)):
			return failed(http.StatusOK, mcp.CodeInternalError, "mcpgate mux: "+method+" to resolve "+q.Item.String()+" "+q.Name+": "+err.Error())
		case err != nil:
			names[i] = nil // FailOpen: the target is left out
		}
	}
	return newResolution(targets, names), countErrors(errs) == 0, nil
}
