package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mcp"
)

// initialize opens a session at every target (in parallel) and answers with the merged result and
// the session id that lists the targets' own.
func (c *call) initialize(msg *message) {
	body := msg.encode()
	c.sess = make([]member, len(c.m.Targets))
	for i, t := range c.m.Targets {
		c.sess[i] = member{t: t}
	}
	answers := make([]*answer, len(c.sess))
	errs := c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
		a, err := c.exchange(ctx, mb, body, msg.ID)
		if err == nil && a.msg.Error != nil {
			err = &targetError{mb.t.Name, rpcError(a.msg.Error)}
		}
		if err == nil {
			answers[c.index(mb)] = a
		}
		return err
	})
	var opened []member
	var results []json.RawMessage
	var names []string
	for i, a := range answers {
		if a != nil {
			opened = append(opened, member{t: c.sess[i].t, sid: a.sid})
			results = append(results, a.msg.Result)
			names = append(names, c.sess[i].t.Name)
		}
	}
	// A caller beyond its limit of sessions is told so whatever the failure mode: the limit is
	// the caller's, not a target's failure, and a session without the target would hide it.
	limit := callerLimit(errs)
	if failed := firstError(errs); failed != nil && (!c.failOpen() || len(opened) == 0 || limit != nil) {
		// The sessions opened are of no use: they end now, even when the client has gone (its
		// context's end would leave them open at the targets).
		c.sess, c.ctx = opened, context.WithoutCancel(c.ctx)
		c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
			if mb.sid != "" {
				if resp, err := c.do(ctx, mb, c.newRequest(ctx, http.MethodDelete, mb, nil), false); err == nil {
					drain(resp)
				}
			}
			return nil
		})
		if limit != nil {
			writeCallerLimit(c.w, msg.ID, limit)
			return
		}
		if c.passRefusal(failed) {
			return
		}
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: initialize: "+failed.Error())
		return
	}
	if c.m.Bridge {
		// The target's own answer: the mux passes everything through.
		c.w.Header().Set("Mcp-Session-Id", encodeSession(c.m.Backend, opened))
		c.writeJSON(http.StatusOK, (&message{ID: msg.ID, Result: results[0]}).encode())
		return
	}
	result, err := mergeInitialize(results, names, c.h.opts.Version)
	if err != nil {
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: initialize: "+err.Error())
		return
	}
	c.w.Header().Set("Mcp-Session-Id", encodeSession(c.m.Backend, opened))
	c.writeJSON(http.StatusOK, (&message{ID: msg.ID, Result: result}).encode())
}

// firstError returns the first non-nil error of errs.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rpcError is a target's JSON-RPC error, as an error.
func rpcError(raw json.RawMessage) error {
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &e)
	return fmt.Errorf("JSON-RPC error %d: %s", e.Code, e.Message)
}

// initializeResult is the part of an initialize result the mux merges.
type initializeResult struct {
	ProtocolVersion string         `json:"protocolVersion"`
	Capabilities    map[string]any `json:"capabilities"`
	ServerInfo      struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"serverInfo"`
	Instructions string `json:"instructions,omitempty"`
}

// servedCapabilities are the server capabilities the mux serves (request): a target's others
// (tasks, experimental, any unknown to it) are not advertised, their methods being answered
// -32601 by the mux.
var servedCapabilities = map[string]bool{"tools": true, "prompts": true, "resources": true, "logging": true, "completions": true}

// mergeInitialize merges the targets' initialize results: the lowest protocol version (MCP's are
// dates), the union of the capabilities the mux serves (servedCapabilities), the mux's
// serverInfo, and each target's instructions under its name.
func mergeInitialize(results []json.RawMessage, names []string, version string) (json.RawMessage, error) {
	var out initializeResult
	out.Capabilities = map[string]any{}
	out.ServerInfo.Name, out.ServerInfo.Version = ServerName, version
	var instructions []string
	for i, raw := range results {
		var r initializeResult
		if err := json.Unmarshal(raw, &r); err != nil || r.ProtocolVersion == "" {
			return nil, fmt.Errorf("target %s: result without a protocolVersion", names[i])
		}
		if out.ProtocolVersion == "" || r.ProtocolVersion < out.ProtocolVersion {
			out.ProtocolVersion = r.ProtocolVersion
		}
		instructions = mergeTarget(out.Capabilities, r.Capabilities, instructions, names[i], r.Instructions)
	}
	out.Instructions = strings.Join(instructions, "\n\n")
	return json.Marshal(out)
}

// mergeTarget adds a target's capabilities caps, those the mux serves (servedCapabilities), to
// out (unite), and returns instructions with the target's own (text, "" for none) under its name.
func mergeTarget(out, caps map[string]any, instructions []string, name, text string) []string {
	for k := range caps {
		if !servedCapabilities[k] {
			delete(caps, k)
		}
	}
	unite(out, caps)
	if text != "" {
		instructions = append(instructions, name+": "+text)
	}
	return instructions
}

// unite adds src's members to dst: objects member by member, true over false, dst's otherwise.
func unite(dst, src map[string]any) {
	for k, v := range src {
		switch d := dst[k].(type) {
		case nil:
			dst[k] = v
		case map[string]any:
			if s, ok := v.(map[string]any); ok {
				unite(d, s)
			}
		case bool:
			if s, ok := v.(bool); ok {
				dst[k] = d || s
			}
		}
	}
}

// list answers a list request with the lists of every target of the session, each followed to
// its end (at most MaxPages pages), its items' key member (name, uri, uriTemplate) prefixed with
// the target; the merged list has no nextCursor.
func (c *call) list(msg *message, it mcp.Item, key, nameMember string) {
	var params map[string]json.RawMessage
	if len(msg.Params) > 0 && json.Unmarshal(msg.Params, &params) != nil {
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInvalidParams, "mcpgate mux: params is not an object")
		return
	}
	if params == nil {
		params = map[string]json.RawMessage{}
	}
	// The merged list is whole: a client's cursor has nothing to go on from.
	delete(params, "cursor")
	// The merged answer is held whole: it is bounded as any answer the mux reads is, and the
	// front hop would refuse a larger one anyway. Every target's items count against one budget.
	budget := &listBudget{left: int64(c.h.opts.MaxBodyBytes - len(msg.ID) - len(key) - len(`{"jsonrpc":"2.0","id":,"result":{"":[]}}`))}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.ctx = ctx
	items := make([][]listed, len(c.sess))
	errs := c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
		var err error
		items[c.index(mb)], err = c.listTarget(ctx, mb, msg, params, it, key, nameMember, budget)
		if errors.Is(err, errListTooLarge) {
			cancel() // the other targets' lists are of no use now
		}
		return err
	})
	for _, err := range errs {
		if errors.Is(err, errListTooLarge) {
			c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, fmt.Sprintf(
				"mcpgate mux: %s: the merged answer of the targets' lists is larger than the mux's limit of %d bytes", msg.Method, c.h.opts.MaxBodyBytes))
			return
		}
	}
	for i, err := range errs {
		switch {
		case err != nil && sessionGone(err, c.sess[i]):
			c.writeError(http.StatusNotFound, msg.ID, mcp.CodeSessionNotFound, "Session not found")
			return
		case err != nil && !c.failOpen(), err != nil && len(c.sess) == countErrors(errs):
			c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: "+msg.Method+": "+err.Error())
			return
		}
	}
	var shared map[string][]string
	if c.bare(it) {
		shared = c.sharedNames(items)
	}
	var all []json.RawMessage
	for i := range items {
		for _, l := range items[i] {
			if shared[l.name] == nil {
				all = append(all, l.item)
			}
		}
	}
	if len(shared) > 0 {
		names := make([]string, 0, len(shared))
		for name, targets := range shared {
			names = append(names, name+" ("+strings.Join(targets, ", ")+")")
		}
		slices.Sort(names)
		c.log.Warn("mux: names that several targets serve are left out of the list (prefixMode Never)",
			"method", msg.Method, "names", strings.Join(names, "; "))
	}
	more := ""
	if c.modernEra {
		// MCP 2026-07-28 results say they are complete and how long they may be cached (a client
		// of it refuses one that does not): not at all, and only by the caller's client, since the
		// front hop filters the merged list by the caller's rules.
		more = `,"resultType":"complete","ttlMs":0,"cacheScope":"private"`
	}
	c.writeJSON(http.StatusOK, appendListAnswer(nil, msg.ID, key, all, more))
}

// listed is an item of a target's list as the client gets it, and the item's name as the target
// gave it.
type listed struct {
	name string
	item json.RawMessage // nil when the call keeps names only (namesOnly)
}

// sharedNames returns the names that several targets' lists hold, each with those targets in
// the session's order (nil when there is none): under prefixMode Never a name must name one
// target, so they are left out (as agentgateway leaves them).
func (c *call) sharedNames(lists [][]listed) map[string][]string {
	servedBy := map[string][]string{}
	for i, items := range lists {
		for _, l := range items {
			t := servedBy[l.name]
			if n := len(t); n == 0 || t[n-1] != c.sess[i].t.Name {
				servedBy[l.name] = append(t, c.sess[i].t.Name)
			}
		}
	}
	var shared map[string][]string
	for name, targets := range servedBy {
		if len(targets) > 1 {
			if shared == nil {
				shared = map[string][]string{}
			}
			shared[name] = targets
		}
	}
	return shared
}

// errListTooLarge is listTarget's error when the merged list would be larger than MaxBodyBytes.
var errListTooLarge = errors.New("merged list too large")

// listBudget is what is left of the merged list's bytes, shared by the targets' listTarget.
type listBudget struct {
	mu   sync.Mutex
	left int64
}

// take takes n bytes; false when fewer are left.
func (b *listBudget) take(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left -= int64(n)
	return b.left >= 0
}

// appendListAnswer appends the answer with id whose result lists items under key. It is written
// out rather than marshaled, which would check and compact every item once more: id is a request's
// (decoded, so valid JSON) and each item prefixItem's (marshaled).
func appendListAnswer(dst []byte, id json.RawMessage, key string, items []json.RawMessage, more string) []byte {
	n := len(dst) + len(id) + len(key) + len(more) + 48
	for _, item := range items {
		n += len(item) + 1
	}
	dst = slices.Grow(dst, n-len(dst))
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"result":{"`...)
	dst = append(dst, key...)
	dst = append(dst, `":[`...)
	for i, item := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, item...)
	}
	dst = append(dst, ']')
	dst = append(dst, more...)
	return append(dst, "}}"...)
}

// index returns the position of mb in the session.
func (c *call) index(mb member) int {
	for i := range c.sess {
		if c.sess[i].t.Name == mb.t.Name {
			return i
		}
	}
	return -1
}

func countErrors(errs []error) int {
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
		}
	}
	return n
}

// listTarget reads one target's whole list, its items prefixed, within the merged list's budget.
// Each page's request has an id of its own (pageID). A target without the list method (-32601,
// as the Python and TypeScript SDKs answer a method they have no handler for) lists nothing.
func (c *call) listTarget(ctx context.Context, mb member, msg *message, params map[string]json.RawMessage, it mcp.Item, key, nameMember string, budget *listBudget) ([]listed, error) {
	var out []listed
	p := make(map[string]json.RawMessage, len(params)+1)
	for k, v := range params {
		p[k] = v
	}
	for page := 0; ; page++ {
		if page == c.h.opts.MaxPages {
			c.log.Warn("mux: list cut at the page limit", "target", mb.t.Name, "method", msg.Method, "pages", page)
			return out, nil
		}
		raw, _ := json.Marshal(p)
		id := pageID(msg.ID, page)
		req := message{ID: id, Method: msg.Method, Params: raw}
		a, err := c.exchange(ctx, mb, req.encode(), id)
		if err != nil {
			return nil, err
		}
		if a.msg.Error != nil {
			if page == 0 && rpcCode(a.msg.Error) == codeMethodNotFound {
				c.log.Debug("mux: target has no list method: it lists nothing", "target", mb.t.Name, "method", msg.Method)
				return nil, nil
			}
			return nil, &targetError{mb.t.Name, rpcError(a.msg.Error)}
		}
		var result struct {
			NextCursor string            `json:"nextCursor"`
			Items      []json.RawMessage `json:"-"`
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(a.msg.Result, &members); err != nil {
			return nil, &targetError{mb.t.Name, errors.New(msg.Method + " result is not an object")}
		}
		_ = json.Unmarshal(members["nextCursor"], &result.NextCursor)
		if err := json.Unmarshal(members[key], &result.Items); err != nil && members[key] != nil {
			return nil, &targetError{mb.t.Name, errors.New(msg.Method + " result: " + key + " is not a list")}
		}
		for _, item := range result.Items {
			l, ok := c.listItem(item, mb.t.Name, it, nameMember)
			if !ok {
				c.log.Warn("mux: listed item without a name left out", "target", mb.t.Name, "method", msg.Method)
				continue
			}
			if !budget.take(len(l.item) + len(l.name) + 1) {
				return nil, errListTooLarge
			}
			out = append(out, l)
		}
		if result.NextCursor == "" {
			return out, nil
		}
		p["cursor"], _ = json.Marshal(result.NextCursor)
	}
}

// pageID is the id of the request for page (from 0) of a list the client asked for with id: a
// string, the client's id as JSON, "#" and the page's number from 1. Each page's request has
// its own id (a target may refuse an id it saw in the session), and the answer is matched to it.
func pageID(id json.RawMessage, page int) json.RawMessage {
	b, _ := json.Marshal(string(id) + "#" + strconv.Itoa(page+1))
	return b
}

// codeMethodNotFound is JSON-RPC's "Method not found".
const codeMethodNotFound = -32601

// rpcCode returns the code of a JSON-RPC error (0 when it has none).
func rpcCode(raw json.RawMessage) int {
	var e struct {
		Code int `json:"code"`
	}
	_ = json.Unmarshal(raw, &e)
	return e.Code
}

// listItem returns a listed item of target as the client gets it: its name prefixed (prefixItem),
// or, bare (prefixMode Never), its target in _meta (tagItem); its name only under namesOnly.
// ok is false for an item without a name.
func (c *call) listItem(item json.RawMessage, target string, it mcp.Item, nameMember string) (l listed, ok bool) {
	switch {
	case c.namesOnly:
		l.name, ok = itemName(item, nameMember)
	case c.bare(it):
		l.item, l.name, ok = tagItem(item, target, nameMember)
	default:
		l.item, l.name, ok = prefixItem(item, target, it, nameMember)
	}
	return l, ok
}

// itemName reads the name (member nameMember, a non-empty string) of a listed item, as prefixItem
// does.
func itemName(item json.RawMessage, nameMember string) (name string, ok bool) {
	if start, end, found := memberValue(item, nameMember); found {
		ok = json.Unmarshal(item[start:end], &name) == nil && name != ""
		return name, ok
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(item, &obj) != nil || json.Unmarshal(obj[nameMember], &name) != nil {
		return "", false
	}
	return name, name != ""
}

// tagItem sets _meta[contract.MetaTarget] of a listed item to its target (prefixMode Never), over
// any value the target set, so that the front hop judges the item as that target's; the name
// stays bare. The front hop reads keys as servers that fold case would (a key that equals another
// but for letter case makes the item's target unreadable, mcp.ItemMeta), so a target must not
// keep a key of its own that case-folds to a reserved one: every _meta key equal to MetaTarget
// but for case is removed, and every item-level key equal to "_meta" but for case but "_meta"
// itself. An item without such a key and without escapes keeps its bytes, the member appended;
// any other is decoded and marshaled, its _meta made an object if it was not one.
func tagItem(item json.RawMessage, target, nameMember string) (out json.RawMessage, name string, ok bool) {
	if name, ok = itemName(item, nameMember); !ok {
		return nil, "", false
	}
	t, _ := json.Marshal(target)
	trimmed := bytes.TrimRight(item, " \t\r\n")
	if bytes.IndexByte(item, '\\') < 0 && !containsFold(item, `"_meta"`) && len(trimmed) > 2 && trimmed[len(trimmed)-1] == '}' {
		out = make([]byte, 0, len(trimmed)+len(t)+40)
		out = append(out, trimmed[:len(trimmed)-1]...)
		out = append(out, `,"_meta":{"`+contract.MetaTarget+`":`...)
		out = append(out, t...)
		return append(out, "}}"...), name, true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(item, &obj) != nil {
		return nil, "", false
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(obj["_meta"], &meta) != nil || meta == nil {
		meta = map[string]json.RawMessage{}
	}
	dropFolded(obj, "_meta")
	dropFolded(meta, contract.MetaTarget)
	meta[contract.MetaTarget] = t
	obj["_meta"], _ = json.Marshal(meta)
	b, err := json.Marshal(obj)
	return b, name, err == nil
}

// dropFolded removes from obj the keys that equal key when letter case is folded, key itself too.
func dropFolded(obj map[string]json.RawMessage, key string) {
	for k := range obj {
		if strings.EqualFold(k, key) {
			delete(obj, k)
		}
	}
}

// containsFold reports whether b holds s, an ASCII string, with ASCII letter case folded. (The
// keys it looks for hold no letter that a non-ASCII one folds to, as K to the Kelvin sign.)
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		j := bytes.IndexByte(b[i:len(b)-len(s)+1], s[0])
		if j < 0 {
			return false
		}
		i += j
		if bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// prefixItem prefixes the member (name, uri, uriTemplate) of a listed item with the target. The
// item's bytes are kept but for the member's value (one decoded, it is valid JSON): decoding it
// whole and marshaling it again costs a list most of its time. An item with an escaped key or the
// member repeated is decoded and marshaled, the last of repeated members winning as Go's decoder
// has it (so that the front hop, which decodes the list, sees the prefixed name).
func prefixItem(item json.RawMessage, target string, it mcp.Item, nameMember string) (out json.RawMessage, name string, ok bool) {
	if start, end, found := memberValue(item, nameMember); found {
		if json.Unmarshal(item[start:end], &name) != nil || name == "" {
			return nil, "", false
		}
		v, _ := json.Marshal(target + string(it.Separator()) + name)
		out = make([]byte, 0, len(item)+len(v)-(end-start))
		out = append(out, item[:start]...)
		out = append(out, v...)
		return append(out, item[end:]...), name, true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(item, &obj) != nil {
		return nil, "", false
	}
	if json.Unmarshal(obj[nameMember], &name) != nil || name == "" {
		return nil, "", false
	}
	obj[nameMember], _ = json.Marshal(target + string(it.Separator()) + name)
	b, err := json.Marshal(obj)
	return b, name, err == nil
}

// memberValue finds the value of the member name of the object item, valid JSON: item[start:end].
// ok is false when item is not an object, has a key with escapes, or has not exactly one member
// whose key is name.
func memberValue(item []byte, name string) (start, end int, ok bool) {
	i := skipSpace(item, 0)
	if i >= len(item) || item[i] != '{' {
		return 0, 0, false
	}
	found := 0
	for i = skipSpace(item, i+1); i < len(item) && item[i] != '}'; i = skipSpace(item, i) {
		if item[i] == ',' {
			i = skipSpace(item, i+1)
		}
		if i >= len(item) || item[i] != '"' {
			return 0, 0, false
		}
		ks := i
		if i = skipString(item, i); i < 0 {
			return 0, 0, false
		}
		key := item[ks+1 : i-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			// An escaped key may spell name: left to the decoder.
			return 0, 0, false
		}
		if i = skipSpace(item, i); i >= len(item) || item[i] != ':' {
			return 0, 0, false
		}
		vs := skipSpace(item, i+1)
		if i = skipValue(item, vs); i < 0 {
			return 0, 0, false
		}
		if string(key) == name {
			found++
			start, end = vs, i
		}
	}
	return start, end, found == 1
}

// skipSpace returns the index of the first byte of b from i that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the JSON string that starts at b[i], -1 if it does not end.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value that starts at b[i], -1 if it does not end.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				if j = skipString(b, j); j < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
		j++
	}
	return j
}

// setLevel sends logging/setLevel to every target of the session; a target without it (-32601)
// has nothing to set.
func (c *call) setLevel(msg *message) {
	body := msg.encode()
	errs := c.fanOut(c.targetBound(), func(ctx context.Context, mb member) error {
		a, err := c.exchange(ctx, mb, body, msg.ID)
		switch {
		case err != nil:
		case a.msg.Error != nil && rpcCode(a.msg.Error) == codeMethodNotFound:
			// A target without logging (-32601): there is nothing to set.
			c.log.Debug("mux: target has no logging/setLevel", "target", mb.t.Name)
		case a.msg.Error != nil:
			err = &targetError{mb.t.Name, rpcError(a.msg.Error)}
		}
		return err
	})
	if err := firstError(errs); err != nil && (!c.failOpen() || countErrors(errs) == len(errs)) {
		c.writeError(http.StatusOK, msg.ID, mcp.CodeInternalError, "mcpgate mux: logging/setLevel: "+err.Error())
		return
	}
	c.writeJSON(http.StatusOK, (&message{ID: msg.ID, Result: json.RawMessage("{}")}).encode())
}

// route sends a request for one item (tools/call, prompts/get, resources/*, completion/complete)
// to the target its name's prefix names (itemTarget), with the target's own name, and streams the
// answer back.
func (c *call) route(msg *message) {
	mb, name, r := c.itemTarget(msg)
	if r != nil {
		c.writeError(http.StatusOK, msg.ID, r.code, r.text)
		return
	}
	c.forward(msg, mb, name)
}

// refusal is the JSON-RPC error of a message the mux cannot route.
type refusal struct {
	code int
	text string
}

// unknownItem is the refusal of an item whose name no target of the session has, in the words
// of mcp.Unknown (and of ext_proc's refusal).
func unknownItem(it mcp.Item, name string) *refusal {
	return &refusal{mcp.CodeInvalidParams, "Unknown " + it.String() + ": " + name}
}

// itemTarget returns the session's member that a message naming one item goes to (tools/call,
// prompts/get, resources/read|subscribe|unsubscribe by their name; completion/complete by its
// ref, read as the front hop reads it to judge it, mcp.CompletionRef), and rewrites msg's params
// to the target's own name. name is the value of the item's header (mcp.NameHeader) for the
// target ("": unchanged). r says why there is none: params that name no item, a prefix that
// names no target of the session (Unknown tool), or under prefixMode Never no target the front
// hop named (headerTarget). A request and a notification are routed alike.
func (c *call) itemTarget(msg *message) (mb member, name string, r *refusal) {
	it, nameMember := mcp.ItemOf(msg.Method), mcp.NameMember(msg.Method)
	var params, ref map[string]json.RawMessage
	var item string
	var ok bool
	if msg.Method == mcp.MethodComplete {
		it, item, ok, _ = mcp.CompletionRef(msg.Params)
		params, _, _ = stringMember(msg.Params, "")
		if !ok || params == nil || json.Unmarshal(params["ref"], &ref) != nil || ref == nil {
			return member{}, "", &refusal{mcp.CodeInvalidParams,
				`mcpgate mux: completion/complete: params.ref must be an object with "type":"ref/prompt" and a string name, or "type":"ref/resource" and a string uri`}
		}
		nameMember = "name"
		if it == mcp.Resource {
			nameMember = "uri"
		}
	} else if params, item, ok = stringMember(msg.Params, nameMember); !ok {
		return member{}, "", &refusal{mcp.CodeInvalidParams, "mcpgate mux: " + msg.Method + ": params." + nameMember + " must be a string"}
	}
	if c.bare(it) {
		// The name is the target's own: it passes as it is, to the target the front hop named.
		mb, r = c.headerTarget(msg, it, item)
		return mb, "", r
	}
	target, rest, ok := mcp.SplitTarget(it, item, c.targetNames())
	if ok {
		mb, ok = c.member(target)
	}
	if !ok {
		return member{}, "", unknownItem(it, item)
	}
	if ref != nil {
		setMember(ref, nameMember, rest)
		params["ref"], _ = json.Marshal(ref)
	} else {
		setMember(params, nameMember, rest)
		name = rest
	}
	msg.Params, _ = json.Marshal(params)
	return mb, name, nil
}

// headerTarget returns the session's member that the front hop resolved a bare name to
// (prefixMode Never), named by contract.HeaderMuxTarget, which only the front hop's ext_proc sets
// (the request carries the secret, and ext_proc removes a client's value). r is the refusal when
// the header is missing (fail closed: the mux cannot tell which target the rules judged the
// call as) or names no target of the session ("Unknown tool: NAME").
func (c *call) headerTarget(msg *message, it mcp.Item, name string) (mb member, r *refusal) {
	v := c.r.Header.Values(contract.HeaderMuxTarget)
	if len(v) != 1 || v[0] == "" {
		c.log.Warn("mux: call on a prefixMode Never backend without its target; refused", "method", msg.Method, "header", contract.HeaderMuxTarget, "values", len(v))
		return member{}, &refusal{mcp.CodeInternalError, "mcpgate mux: " + msg.Method + ": no single " + contract.HeaderMuxTarget +
			" (under prefixMode Never the front hop's ext_proc names the target of each call); refused"}
	}
	mb, ok := c.member(v[0])
	if !ok {
		return member{}, unknownItem(it, name)
	}
	return mb, nil
}

// stringMember decodes params as an object and reads its string member name ("" reads none).
func stringMember(raw json.RawMessage, name string) (params map[string]json.RawMessage, value string, ok bool) {
	if json.Unmarshal(raw, &params) != nil || params == nil {
		return nil, "", false
	}
	if name == "" {
		return params, "", true
	}
	return params, value, json.Unmarshal(params[name], &value) == nil && params[name] != nil
}

// setMember sets the string member name of obj, dropping the members whose names equal it only when
// letter case is folded (a server reading case-insensitively could take them instead).
func setMember(obj map[string]json.RawMessage, name, value string) {
	for k := range obj {
		if k != name && strings.EqualFold(k, name) {
			delete(obj, k)
		}
	}
	obj[name], _ = json.Marshal(value)
}
