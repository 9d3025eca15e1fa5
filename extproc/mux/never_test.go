package mux_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/contract"
	mcpx "github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// targetHeader plays the front hop's ext_proc on a prefixMode Never route: it sets
// contract.HeaderMuxTarget on each tools/call and prompts/get to what target says of the name
// ("": none).
type targetHeader struct {
	target func(name string) string
}

func (th targetHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal(body, &m) == nil && (m.Method == "tools/call" || m.Method == "prompts/get") {
			if t := th.target(m.Params.Name); t != "" {
				req.Header.Set(contract.HeaderMuxTarget, t)
			}
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestMuxNeverLists: under prefixMode Never the merged tools and prompts keep their bare names,
// each with its target in _meta["mcpgate.dev/target"]; a name several targets serve (whoami, ask,
// count: a's and b's) is left out; resources keep TARGET+uri.
func TestMuxNeverLists(t *testing.T) {
	gw := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, nil, targetA, targetB)
	cs, err := connect(t, gw.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	resources, err := cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var gotTools, gotPrompts, gotURIs []string
	for _, tool := range tools.Tools {
		gotTools = append(gotTools, tool.Name+"@"+fmt.Sprint(tool.Meta[contract.MetaTarget]))
	}
	for _, p := range prompts.Prompts {
		gotPrompts = append(gotPrompts, p.Name+"@"+fmt.Sprint(p.Meta[contract.MetaTarget]))
	}
	for _, r := range resources.Resources {
		gotURIs = append(gotURIs, r.URI)
	}
	for _, c := range []struct {
		method    string
		got, want []string
	}{
		// no whoami, ask or count: both serve them
		{"tools/list", gotTools, []string{"x@a", "y@b"}},
		{"prompts/list", gotPrompts, []string{"p@a", "q@b"}},
		// prefixed as under Conditional
		{"resources/list", gotURIs, []string{"a+file:///a.txt", "b+file:///b.txt"}},
	} {
		if slices.Sort(c.got); !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.method, c.got, c.want)
		}
	}
}

// TestMuxNeverCalls: under prefixMode Never a call goes, by its bare name, to the target that
// contract.HeaderMuxTarget names (whoami, which both serve, answers as the header's target), which
// the targets do not get; without the header the call is refused (fail closed), and a header
// naming no target of the session is Unknown tool.
func TestMuxNeverCalls(t *testing.T) {
	gw := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, nil, targetA, targetB)
	var whoami atomic.Value
	whoami.Store("a")
	hc := &http.Client{Transport: targetHeader{target: func(name string) string {
		return map[string]string{"x": "a", "y": "b", "q": "b", "whoami": whoami.Load().(string)}[name]
	}}}
	cs, err := connectWith(t, gw.url, mcp.NewClient(&mcp.Implementation{Name: "never", Version: "1"}, nil), hc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ tool, target, want string }{
		{"x", "", "a.x: hi"}, {"y", "", "b.y: hi"}, {"whoami", "a", "a"}, {"whoami", "b", "b"},
	} {
		if c.target != "" {
			whoami.Store(c.target)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: c.tool, Arguments: map[string]any{"text": "hi"}})
		if err != nil {
			t.Fatalf("tools/call %s: %v", c.tool, err)
		}
		if got := text(t, res); got != c.want {
			t.Errorf("tools/call %s (header %q): %q, want %q", c.tool, c.target, got, c.want)
		}
	}
	p, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "q"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Messages[0].Content.(*mcp.TextContent).Text; got != "b.q" {
		t.Errorf("prompts/get q: %q, want b.q", got)
	}
	for cluster, seen := range gw.double.seen {
		for _, h := range seen {
			if v := h.Values(contract.HeaderMuxTarget); len(v) > 0 {
				t.Errorf("target %s got %s %q: the mux drops it", cluster, contract.HeaderMuxTarget, v)
			}
		}
	}

	sid := openSession(t, gw.url)
	for _, c := range []struct {
		body, header, want string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "", `"code":-32603`},
		{`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"q"}}`, "", `"code":-32603`},
		{`{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"q"},"argument":{"name":"a","value":""}}}`, "", `"code":-32603`},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","arguments":{}}}`, "c", `Unknown tool: x`},
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a_x","arguments":{}}}`, "a", `unknown tool \"a_x\"`}, // a's own answer: the name is not split
	} {
		headers := map[string]string{}
		if c.header != "" {
			headers[contract.HeaderMuxTarget] = c.header
		}
		resp, got := postWith(t, gw.url, sid, c.body, headers)
		if resp.StatusCode != http.StatusOK || !strings.Contains(got, c.want) {
			t.Errorf("%s (header %q): %d %s, want %s", c.body, c.header, resp.StatusCode, got, c.want)
		}
		if c.header == "" && !strings.Contains(got, contract.HeaderMuxTarget) {
			t.Errorf("%s without %s: %s, want the error to name the header", c.body, contract.HeaderMuxTarget, got)
		}
	}
}

// resolve asks m to resolve the bare name of it in session sid of the backend desc.
func resolve(m *mux.Server, desc, sid string, it mcpx.Item, name string) (string, *mux.ResolveError) {
	target, err := m.Resolve(context.Background(), mux.Query{Mux: desc, Session: sid, Header: http.Header{}, ID: json.RawMessage(`1`), Item: it, Name: name})
	var re *mux.ResolveError
	if err != nil && !errors.As(err, &re) {
		re = &mux.ResolveError{Kind: "not a *ResolveError: " + err.Error()}
	}
	return target, re
}

// TestResolve: Resolve lists the session's targets and finds the one that serves a bare name
// (tools and prompts); a name none serves is unknown ("Unknown tool: NAME"), one several serve
// ambiguous (an error naming them); a session the mux did not give is not found.
func TestResolve(t *testing.T) {
	gw := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, nil, targetA, targetB)
	sid := openSession(t, gw.url)
	for _, c := range []struct {
		it                          mcpx.Item
		name, target, kind, message string
	}{
		{mcpx.Tool, "x", "a", "", ""},
		{mcpx.Tool, "y", "b", "", ""},
		{mcpx.Prompt, "q", "b", "", ""},
		{mcpx.Tool, "nope", "", mux.ResolveUnknown, "Unknown tool: nope"},
		{mcpx.Prompt, "x", "", mux.ResolveUnknown, "Unknown prompt: x"},
		{mcpx.Tool, "whoami", "", mux.ResolveAmbiguous, "Tool whoami is served by multiple targets: a, b"},
	} {
		target, err := resolve(gw.mux, gw.desc, sid, c.it, c.name)
		switch {
		case c.kind == "" && (err != nil || target != c.target):
			t.Errorf("Resolve(%s %s) = %q, %v; want %s", c.it, c.name, target, err, c.target)
		case c.kind != "" && (err == nil || err.Kind != c.kind || err.Message != c.message || err.Code != mcpx.CodeInvalidParams):
			t.Errorf("Resolve(%s %s) = %q, %+v; want %s %q (-32602)", c.it, c.name, target, err, c.kind, c.message)
		}
	}
	if _, err := resolve(gw.mux, gw.desc, "bm90LWEtc2Vzc2lvbg", mcpx.Tool, "x"); err == nil || err.Status != http.StatusNotFound {
		t.Errorf("Resolve in a session the mux did not give: %+v, want 404 Session not found", err)
	}
	conditional := strings.Replace(gw.desc, `"prefixMode":"Never"`, `"prefixMode":"Conditional"`, 1)
	if _, err := resolve(gw.mux, conditional, sid, mcpx.Tool, "x"); err == nil || err.Kind != mux.ResolveFailed {
		t.Errorf("Resolve on a Conditional backend: %+v, want failed", err)
	}
}

// TestResolveHost: the resolver's lists carry the host the route's URLRewrite sets
// (contract.Mux.Host), as Envoy's router gives the call; without one, the request's.
func TestResolveHost(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	target := &rawTarget{answer: func(string, json.RawMessage) (any, int) {
		return map[string]any{"tools": tools("h", 1, 1)}, 0
	}}
	recording := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		target.ServeHTTP(w, r)
	})
	url, m, desc := newRawMux(t, mux.Options{}, contract.PrefixModeNever, contract.FailClosed, []string{"a"}, recording)
	sid, _ := openRaw(t, url)
	rewritten := strings.Replace(desc, `"targets":`, `"host":"tools.internal","targets":`, 1)
	for _, c := range []struct{ desc, want string }{{rewritten, "tools.internal"}, {desc, "gateway.example"}} {
		mu.Lock()
		hosts = nil
		mu.Unlock()
		target, err := m.Resolve(context.Background(), mux.Query{Mux: c.desc, Session: sid, Header: http.Header{}, Host: "gateway.example",
			ID: json.RawMessage(`1`), Item: mcpx.Tool, Name: "h0"})
		mu.Lock()
		got := slices.Clone(hosts)
		mu.Unlock()
		if err != nil || target != "a" || len(got) == 0 || slices.ContainsFunc(got, func(h string) bool { return h != c.want }) {
			t.Errorf("Resolve = %q, %v; the target saw hosts %q, want %s", target, err, got, c.want)
		}
	}
}

// TestResolveFailureModes: a target whose list fails is skipped under FailOpen and fails the call
// under FailClosed (naming the target); a target followed through its pages serves a name of its
// last page.
func TestResolveFailureModes(t *testing.T) {
	var broken atomic.Bool
	flaky := &rawTarget{answer: func(method string, _ json.RawMessage) (any, int) {
		if broken.Load() {
			return nil, -32603
		}
		return map[string]any{"tools": tools("f", 1, 1)}, 0
	}}
	paged := pagedTarget()
	for _, mode := range []string{contract.FailOpen, contract.FailClosed} {
		broken.Store(false)
		url, m, desc := newRawMux(t, mux.Options{}, contract.PrefixModeNever, mode, []string{"a", "b"}, flaky, paged)
		sid, _ := openRaw(t, url)
		for name, want := range map[string]string{"f0": "a", "tc3-0": "b", "t-0": "b"} {
			if target, err := resolve(m, desc, sid, mcpx.Tool, name); err != nil || target != want {
				t.Errorf("%s: Resolve(%s) = %q, %+v; want %s", mode, name, target, err, want)
			}
		}
		broken.Store(true) // a's tools/list fails from now on
		target, err := resolve(m, desc, sid, mcpx.Tool, "tc3-0")
		switch mode {
		case contract.FailOpen:
			if err != nil || target != "b" {
				t.Errorf("FailOpen, a failing: Resolve(tc3-0) = %q, %+v; want b (a skipped)", target, err)
			}
		default:
			if err == nil || err.Kind != mux.ResolveFailed || err.Code != mcpx.CodeInternalError || !strings.Contains(err.Message, "target a") {
				t.Errorf("FailClosed, a failing: Resolve(tc3-0) = %q, %+v; want failed -32603 naming target a", target, err)
			}
		}
	}
}

// stalledList serves initialize (and the rest) as t does, and holds a tools/list until the
// request ends or release closes, answering nothing: before its response's headers, or, with
// sse, after them (an event stream that never brings the answer).
type stalledList struct {
	t       *rawTarget
	sse     bool
	release chan struct{}
}

func (s stalledList) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !bytes.Contains(body, []byte(`"tools/list"`)) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.t.ServeHTTP(w, r)
		return
	}
	if s.sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
	}
	select {
	case <-r.Context().Done():
	case <-s.release:
	}
}

// TestResolveTimeout: Resolve has a bound of its own (Options.ResolveTimeout), below Envoy's
// ext_proc message timeout: a target that does not answer its tools/list by then (before its
// headers, or within its event stream) has failed: skipped under FailOpen (a's tool resolves),
// the call's -32603 naming it under FailClosed. The caller's context stands in for the ext_proc
// stream, which Envoy would reset at its message timeout: it is still alive when Resolve returns.
func TestResolveTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := &rawTarget{answer: func(string, json.RawMessage) (any, int) { return map[string]any{"tools": tools("f", 1, 1)}, 0 }}
	for _, sse := range []bool{false, true} {
		for _, mode := range []string{contract.FailOpen, contract.FailClosed} {
			b := stalledList{t: &rawTarget{answer: func(string, json.RawMessage) (any, int) { return map[string]any{}, 0 }}, sse: sse, release: release}
			url, m, desc := newRawMux(t, mux.Options{ResolveTimeout: 100 * time.Millisecond}, contract.PrefixModeNever, mode, []string{"a", "b"}, a, b)
			sid, _ := openRaw(t, url)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			target, err := m.Resolve(ctx, mux.Query{Mux: desc, Session: sid, Header: http.Header{}, ID: json.RawMessage(`1`), Item: mcpx.Tool, Name: "f0"})
			if ctx.Err() != nil {
				t.Fatalf("%s, b stalled (sse %v): Resolve(f0) = %q, %v only once the caller's context had ended: no bound of its own", mode, sse, target, err)
			}
			cancel()
			var re *mux.ResolveError
			switch {
			case mode == contract.FailOpen && (err != nil || target != "a"):
				t.Errorf("FailOpen, b stalled (sse %v): Resolve(f0) = %q, %v; want a (b skipped)", sse, target, err)
			case mode == contract.FailClosed && (!errors.As(err, &re) || re.Kind != mux.ResolveFailed || re.Code != mcpx.CodeInternalError ||
				!strings.Contains(re.Message, "target b: no answer within") || !strings.Contains(re.Message, "the resolve timeout")):
				t.Errorf("FailClosed, b stalled (sse %v): Resolve(f0) = %q, %v; want failed -32603 naming target b and the resolve timeout", sse, target, err)
			}
		}
	}
}

// notificationLog serves as t does, and records the methods of the notifications it gets.
type notificationLog struct {
	t       *rawTarget
	mu      sync.Mutex
	methods []string
}

func (n *notificationLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(body, &m) == nil && m.ID == nil && m.Method != "" {
		n.mu.Lock()
		n.methods = append(n.methods, m.Method)
		n.mu.Unlock()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	n.t.ServeHTTP(w, r)
}

// TestMuxNeverRequestNotifications: under prefixMode Never a client notification whose method is
// a request's (a tools/call without an id) without the target the front hop names
// (contract.HeaderMuxTarget) reaches no target, fail closed, and is answered 400; so is one of a
// method in other letter case, which names no item (TestMuxRequestNotifications: with the header
// it goes to that target). A notifications/... one reaches every target.
func TestMuxNeverRequestNotifications(t *testing.T) {
	answer := func(string, json.RawMessage) (any, int) { return map[string]any{}, 0 }
	a, b := &notificationLog{t: &rawTarget{answer: answer}}, &notificationLog{t: &rawTarget{answer: answer}}
	url, _, _ := newRawMux(t, mux.Options{}, contract.PrefixModeNever, contract.FailClosed, []string{"a", "b"}, a, b)
	sid, _ := openRaw(t, url)
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x","arguments":{}}}`, http.StatusBadRequest},
		{`{"jsonrpc":"2.0","method":"prompts/get","params":{"name":"p"}}`, http.StatusBadRequest},
		{`{"jsonrpc":"2.0","method":"Notifications/cancelled","params":{"requestId":1}}`, http.StatusBadRequest},
		{`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, http.StatusAccepted},
	} {
		if resp, got := post(t, url, sid, c.body); resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.body, resp.StatusCode, got, c.status)
		}
	}
	for name, n := range map[string]*notificationLog{"a": a, "b": b} {
		n.mu.Lock()
		if want := []string{"notifications/cancelled"}; !slices.Equal(n.methods, want) {
			t.Errorf("target %s got the notifications %v, want %v", name, n.methods, want)
		}
		n.mu.Unlock()
	}
}

// TestResolveIDs: the ids of Resolve's list requests, which go in the client's session, are the
// call's marked with a random prefix of the mux ("mcpgate-resolve:" and 16 hex digits): a client
// cannot send one of its own that equals them. Two muxes have different prefixes.
func TestResolveIDs(t *testing.T) {
	var ids []string
	for range 2 {
		a := &rawTarget{answer: func(string, json.RawMessage) (any, int) { return map[string]any{"tools": tools("f", 1, 1)}, 0 }}
		url, m, desc := newRawMux(t, mux.Options{}, contract.PrefixModeNever, contract.FailClosed, []string{"a"}, a)
		sid, _ := openRaw(t, url)
		if target, err := resolve(m, desc, sid, mcpx.Tool, "f0"); err != nil || target != "a" {
			t.Fatalf("Resolve(f0) = %q, %+v; want a", target, err)
		}
		a.mu.Lock()
		for _, raw := range a.ids {
			var id string // the page's id (pageID): the list's id as JSON, "#", the page
			_ = json.Unmarshal([]byte(raw), &id)
			ids = append(ids, id)
		}
		a.mu.Unlock()
	}
	format := regexp.MustCompile(`^"mcpgate-resolve:[0-9a-f]{16}:1"#1$`)
	if len(ids) != 2 || !format.MatchString(ids[0]) || !format.MatchString(ids[1]) || ids[0] == ids[1] {
		t.Errorf("the list requests' ids of two muxes = %q, want two of %s, different", ids, format)
	}
}

// TestResolveLegacyClient: an HTTP+SSE client's calls of bare names resolve too: the front hop
// passes its sessionId (the key of the mux's legacy session), whose mux session is listed.
func TestResolveLegacyClient(t *testing.T) {
	gw := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, nil, targetA, targetB)
	ls := openLegacy(t, gw.url, nil)
	_, key, _ := strings.Cut(ls.endpoint, "?sessionId=")
	ls.initialize(t, origin(gw.url)+"/mcp?sessionId="+key)
	if target, err := resolve(gw.mux, gw.desc, key, mcpx.Tool, "x"); err != nil || target != "a" {
		t.Errorf("Resolve(tool x) in an HTTP+SSE client's session = %q, %+v; want a", target, err)
	}
	// the route's metadata holds the rule's host rewrite (and request header changes), which the
	// mux's header lacks: the same backend
	rewritten := strings.TrimSuffix(gw.desc, "}") + `,"host":"tools.example"}`
	if target, err := resolve(gw.mux, rewritten, key, mcpx.Tool, "x"); err != nil || target != "a" {
		t.Errorf("Resolve(tool x) with the rule's host in the metadata = %q, %+v; want a", target, err)
	}
	// the key serves only the backend it was opened with
	other := strings.Replace(gw.desc, `"failureMode":"FailClosed"`, `"failureMode":"FailOpen"`, 1)
	if _, err := resolve(gw.mux, other, key, mcpx.Tool, "x"); err == nil || err.Status != http.StatusNotFound {
		t.Errorf("Resolve with the key on another backend: %+v, want 404 Session not found", err)
	}
}
