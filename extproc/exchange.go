package extproc

// The MCP exchanges of a stream: requests kept until their answers (in the same stream, or on the
// session's GET stream: legacy SSE, or a Streamable HTTP POST whose event stream ended first), the answers matched, rewritten where the policy says,
// and recorded.

import (
	"context"
	"encoding/json"
	"iter"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
)

// postedExchange is a legacy SSE request this stream put in the session table.
type postedExchange struct {
	key mcp.SessionKey
	ex  *exchange
}

// exchange is one MCP request (or notification) and what the gateway decided about it.
type exchange struct {
	rec telemetry.Record
	// item is the MCP item the request names (a tool for tools/call...) and name its name (a
	// resource's URI); NoItem and "" for the other requests.
	item mcp.Item
	name string
	// filter is set for a list request (tools/list, prompts/list...) under MCP rules: the
	// answer's items are filtered.
	filter *itemFilter
	// denied is set for a refused request for an item that was replaced by a ping: the ping's
	// answer becomes the "Unknown ..." error.
	denied bool
	// standIn is the id of the ping that replaced a refused call with an id (mcp.RefusedID),
	// which the ping's answer carries.
	standIn json.RawMessage
	// legacyV is the state of a legacy SSE request's record (legacyWaits, legacyEnded,
	// legacyPosted), 0 for the others. Its answer comes on the GET stream, its POST's status on
	// the POST's: the record, whose http_status is the POST's, is finished by whichever of the two
	// comes last (finish, postDone), once. An int32 changed atomically rather than an
	// atomic.Int32, so that park can move an exchange out of its stream's storage by a plain copy.
	legacyV int32
	// postStatus is the status of the POST that carried a legacy SSE request (0: its stream ended
	// without its response headers), and endedAt when the request was answered (or ended without
	// answer): each written before its side's change of legacyV, and read by the other side only
	// after it saw that change.
	postStatus int32
	endedAt    time.Time
}

// The states of a legacy SSE request's record (exchange.legacyV), as bits.
const (
	// legacyWaits: the record waits for both legacyEnded and legacyPosted.
	legacyWaits int32 = 1 << iota
	// legacyEnded: the request was answered or ended without answer (its outcome and endedAt are
	// set).
	legacyEnded
	// legacyPosted: its POST's status is known (postStatus), or its POST's stream ended without it.
	legacyPosted
)

func (e *exchange) rewrite() bool { return e.filter != nil || e.denied }

// newExchange returns a new exchange: a stream's first in the stream's storage (park moves it out,
// should it outlive the stream), the others allocated.
func (st *stream) newExchange() *exchange {
	if st.firstExUsed {
		return new(exchange)
	}
	st.firstExUsed = true
	return &st.firstEx
}

// rewritePending reports whether an exchange awaiting its answer in this stream's response needs
// it rewritten.
func (st *stream) rewritePending() bool {
	for _, ex := range st.pending.all() {
		if ex.rewrite() {
			return true
		}
	}
	return false
}

// itemFilter decides which items of a list answer the caller may see: the tools it could call
// with some arguments (authz.RuleSet.EvaluateListing), the prompts and resources it could get
// (authz.RuleSet.Evaluate). It is read-only once made, so a legacy SSE GET stream may use a POST
// stream's filter.
type itemFilter struct {
	rules *authz.RuleSet
	in    authz.Input
	// ri is the route's: on a multiplexed route each item is judged as its target's
	// (routeInfo.itemTarget).
	ri routeInfo
	// log logs the items left out of a list because their target cannot be told.
	log *slog.Logger
}

// allow returns the judge of one list answer's items.
func (f *itemFilter) allow(ctx context.Context) func(it mcp.Item, name string, item []byte) bool {
	warned := false // once per list: a misbehaving target would log every item of every list
	return func(it mcp.Item, name string, item []byte) bool {
		in := f.in
		in.Target, name = f.ri.itemTarget(it, name)
		if f.ri.bare(it) {
			// prefixMode Never: the mux names each item's target in its _meta. An item whose
			// target is missing, unreadable (a key repeated or in other letter case) or none of
			// the route's is left out, fail closed: judged as no target's, it would pass a rule
			// that denies its target.
			var ok bool
			if in.Target, ok = mcp.ItemMeta(item, contract.MetaTarget); !ok || !f.ri.isTarget(in.Target) {
				if !warned {
					warned = true
					f.log.Warn("listed item without a readable target of the route in its _meta left out (prefixMode Never; the first of this list, others alike not logged)",
						"route", f.ri.route, "backend", f.ri.backend, "item", it.String(), "name", name, "key", "_meta."+contract.MetaTarget, "target", in.Target)
				}
				return false
			}
		}
		switch it {
		case mcp.Tool:
			in.ToolName = name
			return f.rules.EvaluateListing(ctx, &in).Allowed
		case mcp.Prompt:
			in.MCPMethod, in.PromptName = "prompts/get", name
		default:
			in.MCPMethod, in.ResourceName = "resources/read", name
		}
		return f.rules.Evaluate(ctx, &in).Allowed
	}
}

// outcomeWithoutAnswer is the outcome of an exchange that ended without a JSON-RPC answer: a
// notification's (error when the HTTP answer to it refused it, 4xx or 5xx: a server, or the mux,
// did not take it, which the audit must not show as a notification passed on), or no_answer.
func outcomeWithoutAnswer(ex *exchange) string {
	switch {
	case ex.rec.ID != nil:
		return telemetry.OutcomeNoAnswer
	case ex.rec.HTTPStatus >= 400:
		return telemetry.OutcomeError
	}
	return telemetry.OutcomeNotification
}

// exchangeMetadata adds the MCP fields of ex to md.
func (st *stream) exchangeMetadata(md *metadata, ex *exchange) {
	if ex == nil {
		return
	}
	st.ri.muxMetadata(md, ex.rec.Target)
	md.str(contract.FieldMethod, ex.rec.Method)
	md.str(contract.FieldTool, ex.rec.Tool)
	if args, _ := st.s.tel.Arguments(&ex.rec); args != nil {
		md.bytes(contract.FieldArguments, args)
	}
	md.bytes(contract.FieldJSONRPCID, ex.rec.ID)
	md.replace(contract.FieldDecision, ex.rec.Decision)
	md.replace(contract.FieldRule, ex.rec.Rule)
}

// register keeps the exchanges until their answers.
func (st *stream) register(exs []*exchange, now time.Time) {
	for _, ex := range exs {
		if ex == nil {
			continue
		}
		key := mcp.IDKey(ex.rec.ID)
		if ex.denied {
			// A refused call kept for its answer went upstream as a ping with a stand-in id
			// (requestBody), which its answer carries.
			key = mcp.IDKey(ex.standIn)
		}
		switch {
		case ex.rec.ID == nil || key == "":
			st.waiting = append(st.waiting, ex)
		case st.kind == mcp.RequestLegacyPost:
			k := st.sessionKey(key)
			ex.legacyV = legacyWaits // before the session table publishes it
			st.posted = append(st.posted, postedExchange{k, st.park(k, ex, now)})
		default:
			if old := st.pending.put(key, ex); old != nil {
				st.s.finish(old, telemetry.OutcomeNoAnswer, now)
			}
		}
	}
}

// pendingFew is how many exchanges a pendingSet holds in its own storage.
const pendingFew = 4

// pendingSet holds the exchanges awaiting their answers in a stream's response, by IDKey. The first
// few are held in the set itself, in the order they came (the stream's storage, recycled with it:
// most bodies hold one request), more in a map.
type pendingSet struct {
	few [pendingFew]pendingExchange
	// n is how many of few hold an exchange (0 once more is made).
	n    int
	more map[string]*exchange
}

type pendingExchange struct {
	key string
	ex  *exchange
}

func (p *pendingSet) len() int {
	if p.more != nil {
		return len(p.more)
	}
	return p.n
}

// put adds ex under key and returns the exchange it replaces (nil: none).
func (p *pendingSet) put(key string, ex *exchange) (old *exchange) {
	old = p.take(key)
	switch {
	case p.more != nil:
		p.more[key] = ex
	case p.n < pendingFew:
		p.few[p.n] = pendingExchange{key, ex}
		p.n++
	default:
		p.more = make(map[string]*exchange, 2*pendingFew)
		for _, e := range p.few[:p.n] {
			p.more[e.key] = e.ex
		}
		p.more[key] = ex
		p.few, p.n = [pendingFew]pendingExchange{}, 0
	}
	return old
}

// take removes and returns the exchange under key (nil: none).
func (p *pendingSet) take(key string) *exchange {
	if p.more != nil {
		ex := p.more[key]
		delete(p.more, key)
		return ex
	}
	for i := range p.n {
		if ex := p.few[i].ex; p.few[i].key == key {
			p.removeFew(i)
			return ex
		}
	}
	return nil
}

func (p *pendingSet) removeFew(i int) {
	copy(p.few[i:p.n], p.few[i+1:p.n])
	p.n--
	p.few[p.n] = pendingExchange{}
}

// all yields the exchanges and their keys.
func (p *pendingSet) all() iter.Seq2[string, *exchange] {
	return func(yield func(string, *exchange) bool) {
		if p.more != nil {
			for key, ex := range p.more {
				if !yield(key, ex) {
					return
				}
			}
			return
		}
		for _, e := range p.few[:p.n] {
			if !yield(e.key, e.ex) {
				return
			}
		}
	}
}

// drain yields the exchanges and their keys, each removed before it is yielded.
func (p *pendingSet) drain() iter.Seq2[string, *exchange] {
	return func(yield func(string, *exchange) bool) {
		if p.more != nil {
			for key, ex := range p.more {
				delete(p.more, key)
				if !yield(key, ex) {
					return
				}
			}
			return
		}
		for p.n > 0 {
			e := p.few[0]
			p.removeFew(0)
			if !yield(e.key, e.ex) {
				return
			}
		}
	}
}

// sessionKey is the session table's key of the request with JSON-RPC id key (IDKey form) in this
// stream's session.
func (st *stream) sessionKey(key string) mcp.SessionKey {
	if st.scope == "" {
		st.scope = st.ri.scope() // once per stream: it allocates
	}
	return mcp.SessionKey{Scope: st.scope, Session: st.session, ID: key}
}

// park puts ex in the session table under k, where a GET stream of the session finds its answer,
// and returns the exchange the table holds: ex, or a copy of it when ex is in the stream's storage
// (newExchange). The requests the table lets go to make room end without answer.
func (st *stream) park(k mcp.SessionKey, ex *exchange, now time.Time) *exchange {
	if ex == &st.firstEx {
		moved := new(exchange)
		*moved = *ex
		ex = moved
	}
	// The exchange outlives this stream: it keeps copies of what it needs of the body, and the
	// headers (its filter's input, the audit's claims and session).
	size := sessionEntryOverhead + st.s.tel.Detach(&ex.rec) + st.headers.size()
	for _, old := range st.s.sessions.Put(now, k, ex, size) {
		st.s.finish(old, telemetry.OutcomeNoAnswer, now)
	}
	return ex
}

// finishPending ends the exchanges whose answers were to come in this stream's response.
func (st *stream) finishPending(now time.Time) {
	for _, ex := range st.pending.drain() {
		st.s.finish(ex, telemetry.OutcomeNoAnswer, now)
	}
}

// endEventStream handles the exchanges still awaiting their answers when this stream's event
// stream ends. A Streamable HTTP server may close a POST's stream before it answers (after a
// priming event) and send the answers on the session's GET stream resumed with Last-Event-ID
// (MCP 2025-11-25, Resumability and Redelivery): a successful POST's exchanges of a known session
// wait for them in the session table, as legacy SSE requests do; the others end without answer.
func (st *stream) endEventStream(now time.Time) {
	if st.kind != mcp.RequestPost || st.session == "" || st.status < 200 || st.status >= 300 {
		st.finishPending(now)
		return
	}
	for key, ex := range st.pending.drain() {
		st.park(st.sessionKey(key), ex, now)
	}
}

// unreadableAnswers is the body that replaces a response the gateway had to read and could not:
// an internal error for each request awaiting an answer, or one with a null id when none is.
func (st *stream) unreadableAnswers() []byte {
	var elems [][]byte
	for _, ex := range st.pending.drain() {
		elems = append(elems, mcp.ErrorResponse(ex.rec.ID, mcp.CodeInternalError, "mcpgate: the server's answer could not be inspected"))
		ex.rec.HasError, ex.rec.ErrorCode, ex.rec.HTTPStatus = true, mcp.CodeInternalError, st.status
		st.s.finish(ex, telemetry.OutcomeError, time.Now())
	}
	switch len(elems) {
	case 0:
		return mcp.ErrorResponse(nil, mcp.CodeInternalError, "mcpgate: the server's answer could not be inspected")
	case 1:
		return elems[0]
	}
	return mcp.EncodeBatch(elems)
}

// take removes and returns the exchange that the answer with JSON-RPC id key (IDKey form)
// answers: one awaiting its answer in this stream's response or, for a GET stream (legacy SSE or
// Streamable HTTP) and a legacy SSE POST's own response (should a server answer there), one the
// session's POSTs put in the session table.
func (st *stream) take(key string) *exchange {
	if st.kind != mcp.RequestGet && st.kind != mcp.RequestLegacyPost {
		return st.pending.take(key)
	}
	if st.session == "" {
		return nil
	}
	ex, _ := st.s.sessions.Take(st.sessionKey(key))
	return ex
}

// nullIDError finishes with m, when m is an error answer with a null id (a server that refuses
// the whole POST so, as the TypeScript SDK's 404 "Session not found"), the one request of this
// Streamable HTTP POST that awaits its answer, and reports whether it did. With several awaiting,
// which one m answers is not known: they are left as they are. m passes unchanged.
func (st *stream) nullIDError(m *mcp.Message, key string, md *metadata, now time.Time) bool {
	if key != "null" || st.kind != mcp.RequestPost || st.pending.len() != 1 {
		return false
	}
	code, hasErr := m.ErrorCode()
	if !hasErr {
		return false
	}
	for _, ex := range st.pending.drain() {
		ex.rec.HasError, ex.rec.ErrorCode = true, code
		st.settle(ex, telemetry.OutcomeError, md, now)
	}
	return true
}

// answers matches the responses among msgs with their exchanges (see take), finishes them, and
// returns the messages rewritten where needed (changed false: keep them as they are). now is when
// the answers came.
func (st *stream) answers(msgs []mcp.Message, batch bool, md *metadata, now time.Time) ([]byte, bool) {
	var elems [][]byte
	changed := false
	for i := range msgs {
		m := &msgs[i]
		var repl []byte
		if m.Kind == mcp.KindResponse {
			key := mcp.IDKey(m.ID)
			if ex := st.take(key); ex != nil {
				repl = st.answer(m, ex, md, now)
			} else if !st.nullIDError(m, key, md, now) {
				repl = st.unmatched(m)
			}
		}
		if repl == nil && m.Ambiguous && m.Result == nil && st.hasMCPRules() {
			// A member that only letter case tells from "result", which a client that folds case
			// reads as the result, where the gateway sees no exact one (no response at all, or one
			// without a result: answer and unmatched filter only results, ambiguous ones included
			// through MayListItems): filtered as FilterLists reads it.
			repl, _ = st.filterLists(m, st.itemFilter(), false)
		}
		if repl != nil && !changed {
			changed = true
			elems = make([][]byte, 0, len(msgs))
			for j := range i {
				elems = append(elems, msgs[j].Raw)
			}
		}
		if changed {
			if repl == nil {
				repl = m.Raw
			}
			elems = append(elems, repl)
		}
	}
	if !changed {
		return nil, false
	}
	if batch {
		return mcp.EncodeBatch(elems), true
	}
	return elems[0], true
}

// unmatched returns the replacement (nil: keep m) of the answer m that no exchange awaits.
func (st *stream) unmatched(m *mcp.Message) []byte {
	if refused, ok := mcp.RefusedAnswer(m.ID); ok {
		// A refused call's stand-in ping, whose request another replica saw (a legacy SSE
		// session's POSTs and GET stream may pass different pods).
		return refused
	}
	if m.Result != nil && m.MayListItems() && st.hasMCPRules() {
		// An answer whose request the gateway did not see (a stream resumed with Last-Event-ID
		// replays it, its request passed another replica or expired from the session table): a
		// list result in it is filtered all the same.
		repl, _ := st.filterLists(m, st.itemFilter(), false)
		return repl
	}
	return nil
}

// answer finishes ex with its answer m and returns m's replacement (nil: keep m).
func (st *stream) answer(m *mcp.Message, ex *exchange, md *metadata, now time.Time) []byte {
	var repl []byte
	code, hasErr := m.ErrorCode()
	// Any result is filtered under the route's MCP rules, not only the answer of the list request
	// it is matched with: the request an answer is matched with may not be the one it answers
	// when a request of the same id passed another replica (which a legacy SSE session's POSTs
	// may), or left the session table (expired, or pushed out) before its answer came. A result
	// that lists no item to filter (m.MayListItems, read as the answer was parsed) is left as it
	// is.
	var f *itemFilter
	if m.Result != nil && m.MayListItems() {
		if f = ex.filter; f == nil {
			f = st.itemFilter()
		}
	}
	// The answer of a tools/list names the server's tools (admitListedTools), read once: by the
	// filter when there is one.
	listed := ex.rec.Method == mcp.MethodToolsList && !hasErr
	if ex.denied {
		repl = mcp.Unknown(ex.rec.ID, ex.item, ex.name)
		code, hasErr = mcp.CodeInvalidParams, true
	} else if refused, isRefused := mcp.RefusedAnswer(m.ID); isRefused {
		// A request whose id looks like a stand-in's (mcp.RefusedID): its sender forged it,
		// and gets the error (for itself only) rather than the answer.
		repl = refused
		code, hasErr = mcp.CodeInvalidParams, true
	} else if f != nil && m.Result != nil {
		var failed bool
		if repl, failed = st.filterLists(m, f, listed); failed {
			code, hasErr = mcp.CodeInternalError, true
		}
	} else if listed && m.Result != nil {
		st.admitListedTools(m)
	}
	ex.rec.HasError, ex.rec.ErrorCode = hasErr, code
	if ex.rec.HTTPStatus == 0 {
		// A legacy SSE request's becomes its POST's as it is finished (finish).
		ex.rec.HTTPStatus = st.status
	}
	outcome := telemetry.OutcomeResult
	switch {
	case hasErr:
		outcome = telemetry.OutcomeError
	case ex.rec.Method == mcp.MethodToolsCall && m.IsToolError():
		outcome = telemetry.OutcomeToolError
	}
	st.settle(ex, outcome, md, now)
	return repl
}

// settle finishes ex, answered with outcome in the reply that carries md: the access log gets
// the outcome and, for an error, its JSON-RPC code, as the audit line does.
func (st *stream) settle(ex *exchange, outcome string, md *metadata, now time.Time) {
	if ex.rec.HasError {
		md.num(contract.FieldJSONRPCError, ex.rec.ErrorCode)
	}
	md.str(contract.FieldOutcome, outcome)
	st.s.finish(ex, outcome, now)
}

// filterLists removes from the answer m the listed items f refuses (mcp.FilterLists), admitting
// the tool names it reads into the metrics' tool label when admit is set (as admitListedTools
// does). It returns m's replacement (nil: keep m) and whether the replacement is an error because
// m could not be filtered.
func (st *stream) filterLists(m *mcp.Message, f *itemFilter, admit bool) (repl []byte, failed bool) {
	allow := f.allow(st.ctx)
	if admit {
		filter := allow
		allow = func(it mcp.Item, name string, item []byte) bool {
			if it == mcp.Tool {
				st.s.tel.AdmitTool(name)
			}
			return filter(it, name, item)
		}
	}
	out, removed, err := mcp.FilterLists(m.Raw, allow)
	switch {
	case err != nil:
		st.s.log.Warn("list answer could not be filtered; replaced by an error", "route", st.ri.route, "error", err)
		return mcp.ErrorResponse(m.ID, mcp.CodeInternalError, "mcpgate: the server's list answer could not be inspected"), true
	case removed > 0:
		return out, false
	}
	return nil, false
}

// hasMCPRules reports whether the route's policy has MCP rules, under which list answers are
// filtered (itemFilter).
func (st *stream) hasMCPRules() bool { return st.pol != nil && st.pol.tools != nil }

// itemFilter returns the filter of list answers under the policy's MCP rules, made once per
// stream from the request's input; nil when the policy has no MCP rules.
func (st *stream) itemFilter() *itemFilter {
	if st.filter == nil && st.hasMCPRules() {
		in := st.in
		// The filter may outlive the stream (a parked exchange's): it reads a copy of the headers,
		// which are the stream's.
		in.Headers = slices.Clone(st.headers)
		in.MCPMethod = mcp.MethodToolsCall
		st.filter = &itemFilter{rules: st.pol.tools, in: in, ri: st.ri, log: st.s.log}
	}
	return st.filter
}

// finish records the end of an exchange, answered (or ended without answer) at now. A legacy SSE
// request's record waits, when its POST's status is not known yet, for postDone to finish it: its
// latency still ends at now.
func (s *Server) finish(ex *exchange, outcome string, now time.Time) {
	ex.rec.Outcome = outcome
	if atomic.LoadInt32(&ex.legacyV)&legacyWaits != 0 {
		ex.endedAt = now
		if old := atomic.OrInt32(&ex.legacyV, legacyEnded); old&legacyPosted == 0 || old&legacyEnded != 0 {
			return
		}
		ex.rec.HTTPStatus = int(ex.postStatus)
	}
	s.tel.Finish(&ex.rec, now)
}

// postDone records the status of the POST that carried the legacy SSE request ex (0: the POST's
// stream ended without its response headers) and finishes ex's record if it waits for it (see
// finish). ex's POST stream calls it once, whether the exchange is still in the session table or
// not.
func (s *Server) postDone(ex *exchange, status int) {
	if atomic.LoadInt32(&ex.legacyV)&legacyPosted != 0 {
		return // only this POST's stream sets it: done already (before a panic, say)
	}
	ex.postStatus = int32(status)
	if atomic.OrInt32(&ex.legacyV, legacyPosted)&legacyEnded == 0 {
		return
	}
	ex.rec.HTTPStatus = status
	s.tel.Finish(&ex.rec, ex.endedAt)
}

// expireSessions finishes the session table's requests whose answers never came.
func (s *Server) expireSessions(now time.Time) {
	for _, ex := range s.sessions.Expire(now) {
		s.finish(ex, telemetry.OutcomeNoAnswer, now)
	}
}
