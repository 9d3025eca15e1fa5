// Package mcp reads and rewrites the MCP traffic that passes the gateway: JSON-RPC 2.0 messages
// (single, batch, notifications, responses), text/event-stream bodies parsed incrementally across
// arbitrary chunk boundaries, tools/list filtering, the ping substitution for refused calls on the
// legacy SSE transport, and the bounded table that correlates legacy SSE answers with requests.
//
// The JSON reader is a scanner written for this purpose: it does not allocate per value, keeps ids
// and payloads as raw JSON, and is conservative where MCP servers' own parsers differ. Go's
// encoding/json matches member names case-insensitively (servers built on it, such as mcp-go, read
// "METHOD" as "method"), JavaScript matches them exactly; a message whose member names differ from
// the JSON-RPC names only in case, or repeat one (most parsers keep the last, some the first, some
// refuse the message), is flagged Ambiguous so that the gateway can refuse it instead of guessing
// which reading the server makes.
package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Kind is the kind of a JSON-RPC message.
type Kind uint8

const (
	// KindInvalid is an object that is no JSON-RPC message (no string method, no result or error).
	KindInvalid Kind = iota
	// KindRequest has a method and an id.
	KindRequest
	// KindNotification has a method and no id.
	KindNotification
	// KindResponse has a result or an error.
	KindResponse
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	default:
		return "invalid"
	}
}

// JSON-RPC error codes the gateway answers with.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeSessionNotFound is the MCP SDKs' code for a request naming a session the server does
	// not know (with HTTP 404).
	CodeSessionNotFound = -32001
)

// MethodToolsCall and MethodToolsList are the MCP methods the gateway authorizes and filters.
const (
	MethodToolsCall = "tools/call"
	MethodToolsList = "tools/list"
	// MethodComplete asks for completions of a prompt's or resource template's argument; the
	// rules judge it as the item its ref names (CompletionRef).
	MethodComplete = "completion/complete"
)

// Message is one JSON-RPC message. Its slices alias the parsed body.
type Message struct {
	// Kind is what the message is (request, notification, response), or KindInvalid.
	Kind Kind
	// Raw is the message's own JSON object.
	Raw []byte
	// ID is the raw JSON id, nil when absent.
	ID json.RawMessage
	// Method is the method of a request or notification.
	Method string
	// Params is the raw JSON params member of a request or notification, nil when absent.
	Params json.RawMessage
	// Result is the raw JSON result member of a response, nil when absent.
	Result json.RawMessage
	// Error is the raw JSON error object of a response, nil when absent (see ErrorCode).
	Error json.RawMessage
	// Ambiguous is set when a member name equals a JSON-RPC member name only when case is folded
	// (for example "Method"), or a JSON-RPC member appears twice. Servers disagree on such
	// messages; the gateway refuses them where authorization depends on the reading.
	Ambiguous bool

	// What Parse read of an object Result's own members as it parsed the message (resultRead), so
	// that the answer is not walked again (IsToolError, MayListItems), and of an object Params'
	// (paramsRead): the tools/call they would be (ToolCall).
	resultRead, paramsRead bool
	result                 resultFacts
	params                 toolCallReader
}

// ErrorCode returns the code of a response's error member.
func (m *Message) ErrorCode() (int, bool) {
	if m.Error == nil {
		return 0, false
	}
	code := 0
	found := false
	_ = eachMember(m.Error, func(mb member) error {
		if string(mb.name) == "code" {
			if n, err := strconv.Atoi(string(mb.value)); err == nil {
				code, found = n, true
			}
		}
		return nil
	})
	return code, found
}

// IsToolError reports whether m is a result that reports a failed tool call: MCP's
// CallToolResult with isError true (a tool's failure is a result, not a JSON-RPC error). Only the
// result object's own members count, not nested objects or the text of its content. A member
// whose name equals "isError" only when case is folded counts too (Go's encoding/json reads it
// as isError), and with several of them any true one does: readers disagree on which counts, and
// the gateway would rather report a failure than hide one. Parse reads it as it parses the
// message; a Message made otherwise has its result scanned, member by member, without decoding.
func (m *Message) IsToolError() bool {
	if m.resultRead {
		return m.result.toolError
	}
	if len(m.Result) == 0 || m.Result[0] != '{' {
		return false
	}
	var r resultFacts
	_ = eachMember(m.Result, func(mb member) error {
		r.read(mb.name, mb.value)
		return nil
	})
	return r.toolError
}

// MayListItems reports whether FilterLists can find items to filter in m: false when m's result
// has no member "tools", "prompts", "resources" or "resourceTemplates" (in any letter case)
// holding an array, and m no other member that FilterLists reads as the result (m.Ambiguous).
// Parse reads it as it parses the message; for a Message made otherwise it is true whenever the
// result is an object.
func (m *Message) MayListItems() bool {
	if len(m.Result) == 0 || m.Result[0] != '{' {
		return m.Ambiguous
	}
	return !m.resultRead || m.result.listsItems || m.Ambiguous
}

// resultFacts is what a walk of a result object's own members finds.
type resultFacts struct {
	// toolError: a member isError (in any letter case) is true; listsItems: a member that lists
	// items (listOf) is an array.
	toolError, listsItems bool
}

// read notes the result member name with the raw value.
func (r *resultFacts) read(name, value []byte) {
	switch {
	case string(value) == "true" && bytes.EqualFold(name, []byte("isError")):
		r.toolError = true
	case len(value) > 0 && value[0] == '[' && listOf(name) != nil:
		r.listsItems = true
	}
}

// ErrNotJSONRPC is wrapped by Parse errors: the body is not JSON, not an object or an array of
// objects, or an empty batch.
var ErrNotJSONRPC = errors.New("not JSON-RPC")

// Parse reads a body holding one JSON-RPC message or a batch. Objects that are not JSON-RPC
// messages are returned with KindInvalid; the body as a whole is refused (ErrNotJSONRPC) only when
// it is not JSON, not an object or an array of objects, or an empty array.
func Parse(body []byte) (msgs []Message, batch bool, err error) {
	return ParseInto(nil, body)
}

// ParseInto is Parse with the messages in buf's storage when they fit (buf[:0] grown when not),
// so that a caller that parses body after body reuses it.
func ParseInto(buf []Message, body []byte) (msgs []Message, batch bool, err error) {
	b := trimJSON(body)
	if len(b) == 0 {
		return nil, false, fmt.Errorf("%w: empty body", ErrNotJSONRPC)
	}
	switch b[0] {
	case '{':
		msgs = append(buf[:0], Message{})
		if err := parseMessage(&msgs[0], b); err != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrNotJSONRPC, err)
		}
		return msgs, false, nil
	case '[':
		n := 0
		err := eachElement(b, func(elem []byte) error {
			if elem[0] != '{' {
				return errors.New("batch element is not an object")
			}
			n++
			return nil
		})
		if err != nil {
			return nil, true, fmt.Errorf("%w: %w", ErrNotJSONRPC, err)
		}
		if n == 0 {
			return nil, true, fmt.Errorf("%w: empty batch", ErrNotJSONRPC)
		}
		msgs = slices.Grow(buf[:0], n)
		err = eachElement(b, func(elem []byte) error {
			msgs = append(msgs, Message{})
			return parseMessage(&msgs[len(msgs)-1], elem)
		})
		if err != nil {
			return nil, true, fmt.Errorf("%w: %w", ErrNotJSONRPC, err)
		}
		return msgs, true, nil
	default:
		return nil, false, fmt.Errorf("%w: body is not a JSON object or array", ErrNotJSONRPC)
	}
}

// rpcNames are the member names of a JSON-RPC message.
var rpcNames = [...]string{"jsonrpc", "id", "method", "params", "result", "error"}

// foldsTo reports whether name equals one of names only when case is folded.
func foldsTo(name []byte, names []string) bool {
	for _, n := range names {
		if bytes.EqualFold(name, []byte(n)) {
			return true
		}
	}
	return false
}

// parseMessage reads the message b into m (m zero).
func parseMessage(m *Message, b []byte) error {
	m.Raw = b
	var method []byte
	hasMethod, methodString := false, false
	var seen uint8 // one bit per JSON-RPC member seen, to spot a repeated one
	err := walkObject(b, func(name []byte, _, vstart int) (int, error) {
		var end int
		var err error
		switch {
		case string(name) == "result" && vstart < len(b) && b[vstart] == '{':
			// The result's own members are read in this pass (IsToolError, MayListItems); the
			// last result counts, as for Result.
			m.resultRead, m.result = true, resultFacts{}
			end, err = readMembers(b, vstart, m.result.read)
		case string(name) == "params" && vstart < len(b) && b[vstart] == '{':
			// So are the params' (ToolCall), whatever the method (which may come after them);
			// the last params count, as for Params.
			m.paramsRead, m.params = true, toolCallReader{}
			end, err = readMembers(b, vstart, m.params.read)
		default:
			end, err = skipValue(b, vstart, 1)
		}
		if err != nil {
			return 0, err
		}
		value := b[vstart:end]
		var bit uint8
		switch string(name) {
		case "jsonrpc":
			bit = 1 << 0
		case "id":
			m.ID, bit = value, 1<<1
		case "method":
			hasMethod, method, bit = true, value, 1<<2
		case "params":
			m.Params, bit = value, 1<<3
			if value[0] != '{' {
				m.paramsRead, m.params = false, toolCallReader{}
			}
		case "result":
			m.Result, bit = value, 1<<4
			if value[0] != '{' {
				m.resultRead, m.result = false, resultFacts{}
			}
		case "error":
			m.Error, bit = value, 1<<5
		default:
			if foldsTo(name, rpcNames[:]) {
				m.Ambiguous = true
			}
		}
		if seen&bit != 0 {
			m.Ambiguous = true
		}
		seen |= bit
		return end, nil
	})
	if err != nil {
		return err
	}
	if hasMethod {
		m.Method, methodString = methodName(method)
	}
	switch {
	case hasMethod && !methodString:
		m.Kind = KindInvalid
	case hasMethod && m.ID != nil:
		m.Kind = KindRequest
	case hasMethod:
		m.Kind = KindNotification
	case m.Result != nil || m.Error != nil:
		m.Kind = KindResponse
	}
	return nil
}

// readMembers walks the object starting at b[i], a message member's value, calling read with each
// of its own members' name and raw value, and returns the index just past it.
func readMembers(b []byte, i int, read func(name, value []byte)) (int, error) {
	return walkMembers(b, i, func(name []byte, _, vstart int) (int, error) {
		end, err := skipValue(b, vstart, 2)
		if err == nil {
			read(name, b[vstart:end])
		}
		return end, err
	})
}

// methodName decodes a method, returning the shared constant for the common MCP methods so that
// the hot path does not allocate.
func methodName(raw []byte) (string, bool) {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 {
		switch string(raw[1 : len(raw)-1]) {
		case "tools/call":
			return MethodToolsCall, true
		case "tools/list":
			return MethodToolsList, true
		case "initialize":
			return "initialize", true
		case "ping":
			return "ping", true
		case "notifications/initialized":
			return "notifications/initialized", true
		}
	}
	return stringValue(raw)
}

// ToolCall is the name and arguments of tools/call params.
type ToolCall struct {
	// Name is the decoded string value of the name member: the tool called.
	Name string
	// Arguments is raw JSON, nil when absent.
	Arguments json.RawMessage
	// Ambiguous is set when a member name equals "name" or "arguments" only when case is folded,
	// or one of them appears twice.
	Ambiguous bool
}

// ParseToolCall reads tools/call params. ok is false when params is not an object or has no string
// name.
func ParseToolCall(params json.RawMessage) (tc ToolCall, ok bool) {
	if len(params) == 0 || params[0] != '{' {
		return ToolCall{}, false
	}
	var r toolCallReader
	err := eachMember(params, func(mb member) error {
		r.read(mb.name, mb.value)
		return nil
	})
	if err != nil {
		return r.tc, false
	}
	return r.toolCall()
}

// ToolCall is ParseToolCall(m.Params), read as Parse parsed the message (a Message made otherwise
// has its params parsed now).
func (m *Message) ToolCall() (ToolCall, bool) {
	if !m.paramsRead {
		return ParseToolCall(m.Params)
	}
	return m.params.toolCall()
}

// toolCallReader reads the members of tools/call params, one at a time.
type toolCallReader struct {
	tc ToolCall
	// name is the raw name member, decoded by toolCall.
	name []byte
}

func (r *toolCallReader) read(name, value []byte) {
	switch string(name) {
	case "name":
		r.tc.Ambiguous = r.tc.Ambiguous || r.name != nil
		r.name = value
	case "arguments":
		r.tc.Ambiguous = r.tc.Ambiguous || r.tc.Arguments != nil
		r.tc.Arguments = value
	default:
		if foldsTo(name, []string{"name", "arguments"}) {
			r.tc.Ambiguous = true
		}
	}
}

// toolCall returns the tools/call of the members read; ok is false without a string name.
func (r *toolCallReader) toolCall() (tc ToolCall, ok bool) {
	tc = r.tc
	if r.name == nil {
		return tc, false
	}
	tc.Name, ok = stringValue(r.name)
	return tc, ok
}

// ErrorResponse encodes a JSON-RPC error response with the given raw id (null when nil).
func ErrorResponse(id json.RawMessage, code int, message string) []byte {
	msg, _ := json.Marshal(message)
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	out := make([]byte, 0, 64+len(id)+len(msg))
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"error":{"code":`...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, `,"message":`...)
	out = append(out, msg...)
	return append(out, "}}"...)
}

// Ping encodes a ping request with the given raw id. It stands in for a refused call on the legacy
// SSE transport, where the answer must come back on the event stream.
func Ping(id json.RawMessage) []byte {
	out := make([]byte, 0, 48+len(id))
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	return append(out, `,"method":"ping"}`...)
}

// EncodeBatch joins raw JSON messages into a batch.
func EncodeBatch(elems [][]byte) []byte {
	n := 2
	for _, e := range elems {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range elems {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}

// IDKey returns a canonical key for a raw JSON-RPC id, so that an id is recognized however the
// server re-encodes it ("a\u0062" and "ab", 1 and 1.0). It returns "" for a value that is no valid
// id.
func IDKey(raw json.RawMessage) string {
	b := trimJSON(raw)
	if len(b) == 0 {
		return ""
	}
	switch c := b[0]; {
	case c == '"':
		s, ok := stringValue(b)
		if !ok {
			return ""
		}
		return "s" + s
	case c == '-' || isDigit(c):
		if end, err := scanNumber(b, 0); err != nil || end != len(b) {
			return ""
		}
		if !bytes.ContainsAny(b, ".eE") {
			return "n" + string(b)
		}
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return ""
		}
		return "n" + strconv.FormatFloat(f, 'f', -1, 64)
	case c == 'n' && string(b) == "null":
		return "null"
	default:
		return ""
	}
}

// replaceMembers rewrites the JSON object obj, replacing the value of every member for whose name
// pick returns a function repl with repl(value). It returns obj unchanged when nothing changes.
func replaceMembers(obj []byte, pick func(name []byte) func(value []byte) ([]byte, error)) ([]byte, error) {
	var out []byte
	last := 0
	err := eachMember(obj, func(mb member) error {
		repl := pick(mb.name)
		if repl == nil {
			return nil
		}
		nv, err := repl(mb.value)
		if err != nil {
			return err
		}
		if bytes.Equal(nv, mb.value) {
			return nil
		}
		vstart := mb.end - len(mb.value)
		if out == nil {
			out = make([]byte, 0, len(obj))
		}
		out = append(out, obj[last:vstart]...)
		out = append(out, nv...)
		last = mb.end
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return obj, nil
	}
	return append(out, obj[last:]...), nil
}

// listed is a member of a list result: the array of items it holds, and the member of each item
// that names it.
type listed struct {
	member string
	item   Item
	name   string
}

// lists are the members of list results (tools/list, prompts/list, resources/list,
// resources/templates/list): a resource is named by its URI, a template by its URI template.
var lists = [...]listed{
	{"tools", Tool, "name"},
	{"prompts", Prompt, "name"},
	{"resources", Resource, "uri"},
	{"resourceTemplates", Resource, "uriTemplate"},
}

// listOf returns the list whose member a list result's member name names (compared with case
// folded, as FilterLists reads it); nil for another member.
func listOf(name []byte) *listed {
	for i := range lists {
		if bytes.EqualFold(name, []byte(lists[i].member)) {
			return &lists[i]
		}
	}
	return nil
}

// FilterLists removes from the response msg the listed items for which allow returns false (given
// each item's kind, name and bytes, an element of the list): the
// elements of result.tools, result.prompts, result.resources and result.resourceTemplates,
// whatever request msg answers (its members' names compared with case folded, as servers that
// fold case would read them). It returns the rewritten message and the number of items removed
// (0 and msg itself when none). An item without exactly one readable name (none, not a string,
// repeated, or another in other letter case) is removed: the gateway cannot tell whether it is
// allowed.
func FilterLists(msg []byte, allow func(it Item, name string, item []byte) bool) ([]byte, int, error) {
	removed := 0
	filter := func(l *listed) func([]byte) ([]byte, error) {
		return func(items []byte) ([]byte, error) {
			if len(items) == 0 || items[0] != '[' {
				return items, nil
			}
			var kept [][]byte
			n := 0
			err := eachElement(items, func(item []byte) error {
				n++
				if name, ok := itemName(item, l.name); ok && allow(l.item, name, item) {
					kept = append(kept, item)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			if len(kept) == n {
				return items, nil
			}
			removed += n - len(kept)
			return EncodeBatch(kept), nil
		}
	}
	pickList := func(name []byte) func([]byte) ([]byte, error) {
		if l := listOf(name); l != nil {
			return filter(l)
		}
		return nil
	}
	filterResult := func(result []byte) ([]byte, error) {
		if len(result) == 0 || result[0] != '{' {
			return result, nil
		}
		return replaceMembers(result, pickList)
	}
	out, err := replaceMembers(msg, func(name []byte) func([]byte) ([]byte, error) {
		if bytes.EqualFold(name, []byte("result")) {
			return filterResult
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list result: %w", err)
	}
	return out, removed, nil
}

// itemName returns the member key (a string) of the item object item of a list result; ok is
// false when it has not exactly one readable one (none, not a string, repeated, or another in
// other letter case).
func itemName(item []byte, key string) (name string, ok bool) {
	raw, ok := memberRaw(item, key)
	if !ok {
		return "", false
	}
	return stringValue(raw)
}

// ItemMeta returns the string _meta[key] of a listed item (a multiplexed backend's item's target
// under prefixMode Never, contract.MetaTarget); ok is false when the item has not exactly one
// readable _meta object with exactly one such string (as itemName reads a name).
func ItemMeta(item []byte, key string) (value string, ok bool) {
	meta, ok := memberRaw(item, "_meta")
	if !ok {
		return "", false
	}
	return itemName(meta, key)
}

// memberRaw returns the raw value of the member key of the object obj; ok is false when it has not
// exactly one (none, repeated, or another in other letter case) or obj is not an object.
func memberRaw(obj []byte, key string) (raw []byte, ok bool) {
	if len(obj) == 0 || obj[0] != '{' {
		return nil, false
	}
	ambiguous := false
	_ = eachMember(obj, func(mb member) error {
		switch {
		case string(mb.name) == key:
			ambiguous = ambiguous || raw != nil
			raw = mb.value
		case bytes.EqualFold(mb.name, []byte(key)):
			ambiguous = true
		}
		return nil
	})
	if ambiguous || raw == nil {
		return nil, false
	}
	return raw, true
}

// ToolNames calls fn with the name of each tool of the tools/list response msg that
// FilterLists would ask about (those with exactly one readable name), reading msg once and
// copying nothing.
func ToolNames(msg []byte, fn func(name string)) error {
	err := eachMember(msg, func(res member) error {
		if !bytes.EqualFold(res.name, []byte("result")) || len(res.value) == 0 || res.value[0] != '{' {
			return nil
		}
		return eachMember(res.value, func(tools member) error {
			if !bytes.EqualFold(tools.name, []byte("tools")) || len(tools.value) == 0 || tools.value[0] != '[' {
				return nil
			}
			return eachElement(tools.value, func(tool []byte) error {
				if name, ok := itemName(tool, "name"); ok {
					fn(name)
				}
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("tools/list result: %w", err)
	}
	return nil
}

// SessionParamNames are the names of the legacy SSE session query parameter, decoded: "sessionId"
// (TypeScript SDK, mcp-go), "sessionid" (go-sdk) and "session_id" (Python SDK). The translator
// routes a bridged SSE target's POSTs to it by them (as sent: Envoy does not decode names).
var SessionParamNames = [...]string{"sessionId", "sessionid", "session_id"}

// SessionFromURL returns the legacy SSE session id in the query of a path or URL: "sessionId"
// (TypeScript SDK, mcp-go), "sessionid" (go-sdk) or "session_id" (Python SDK), the first when
// several are given (see SessionParams). Names are compared decoded, as servers read them
// ("session%5Fid" is "session_id").
func SessionFromURL(u string) string {
	s, _ := SessionParams(u)
	return s
}

// SessionParams returns the first legacy SSE session query parameter of a path or URL (see
// SessionFromURL) and how many there are. With more than one, servers differ on which they
// read: the go-sdk reads the first "sessionid", Starlette the last "session_id", and each SDK
// reads only its own name.
func SessionParams(u string) (first string, n int) {
	for v := range sessionParams(u) {
		if n == 0 {
			first = unescapeQuery(u[v[0]:v[1]])
		}
		n++
	}
	return first, n
}

// WithSession returns u with the value of each legacy SSE session query parameter (see
// SessionFromURL) replaced by id, query-escaped; u itself when it has none.
func WithSession(u, id string) string {
	var b strings.Builder
	last := 0
	for v := range sessionParams(u) {
		b.WriteString(u[last:v[0]])
		if u[v[0]-1] != '=' { // a name without a value: "?sessionId&..."
			b.WriteByte('=')
		}
		b.WriteString(url.QueryEscape(id))
		last = v[1]
	}
	if last == 0 {
		return u
	}
	b.WriteString(u[last:])
	return b.String()
}

// sessionParams yields the [start, end) offsets in u of the (escaped) value of each legacy SSE
// session query parameter.
func sessionParams(u string) iter.Seq[[2]int] {
	return func(yield func([2]int) bool) {
		for k, v := range queryParams(u) {
			if slices.Contains(SessionParamNames[:], k) && !yield(v) {
				return
			}
		}
	}
}

// BracketedSessionParam returns the name, decoded, of the first query parameter of a path or URL
// that is a legacy SSE session parameter's name followed by "[" ("sessionId[]", "sessionId[0]"),
// or "" when there is none. Express's query parser (qs) reads sessionId[]=ID as ["ID"], which the
// TypeScript SDK's transports[...] lookup takes for "ID": such a server reads the session where
// the gateway sees none.
func BracketedSessionParam(u string) string {
	for k := range queryParams(u) {
		if name, _, found := strings.Cut(k, "["); found && slices.Contains(SessionParamNames[:], name) {
			return k
		}
	}
	return ""
}

// queryParams yields each query parameter of u: its name, decoded, and the [start, end) offsets
// in u of its (escaped) value.
func queryParams(u string) iter.Seq2[string, [2]int] {
	return func(yield func(string, [2]int) bool) {
		q := strings.IndexByte(u, '?')
		if q < 0 {
			return
		}
		end := len(u)
		if h := strings.IndexByte(u[q:], '#'); h >= 0 {
			end = q + h
		}
		for pos := q + 1; pos <= end; {
			amp := strings.IndexByte(u[pos:end], '&')
			next := end
			if amp >= 0 {
				next = pos + amp
			}
			raw, _, _ := strings.Cut(u[pos:next], "=")
			start := min(pos+len(raw)+1, next) // after "=", if any
			if !yield(unescapeQuery(raw), [2]int{start, next}) {
				return
			}
			pos = next + 1
		}
	}
}

// unescapeQuery decodes %XX and '+' of a query value; a malformed escape leaves the value as is.
func unescapeQuery(v string) string {
	if !strings.ContainsAny(v, "%+") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			n, _ := strconv.ParseUint(v[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
