package mux_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// rawTarget is a target written by hand: it answers initialize with capabilities and a session
// id of its own (session's, or "raw-session"), every other request with answer (a result, or an
// error code and no result), and records the ids of the requests it got.
type rawTarget struct {
	capabilities string
	session      func() string
	answer       func(method string, params json.RawMessage) (result any, code int)
	mu           sync.Mutex
	ids          []string
}

func (rt *rawTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || json.Unmarshal(body, &m) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if m.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	out := map[string]any{"jsonrpc": "2.0", "id": m.ID}
	if m.Method == "initialize" {
		caps := rt.capabilities
		if caps == "" {
			caps = "{}"
		}
		sid := "raw-session"
		if rt.session != nil {
			sid = rt.session()
		}
		w.Header().Set("Mcp-Session-Id", sid)
		out["result"] = map[string]any{"protocolVersion": "2025-06-18", "capabilities": json.RawMessage(caps), "serverInfo": map[string]string{"name": "raw", "version": "1"}}
	} else {
		rt.mu.Lock()
		rt.ids = append(rt.ids, string(m.ID))
		rt.mu.Unlock()
		result, code := rt.answer(m.Method, m.Params)
		if code != 0 {
			out["error"] = map[string]any{"code": code, "message": fmt.Sprintf("error %d for %s", code, m.Method)}
		} else {
			out["result"] = result
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// newRawGateway serves the mux (opts, Upstream and Secret set here) for the backend of targets,
// target i served by handlers[i] (cluster "cluster-NAME"), and returns the URL of its front hop.
func newRawGateway(t *testing.T, opts mux.Options, failureMode string, names []string, handlers ...http.Handler) string {
	t.Helper()
	url, _, _ := newRawMux(t, opts, "Conditional", failureMode, names, handlers...)
	return url
}

// newRawMux is newRawGateway for the backend's prefixMode; it also returns the mux and its
// contract.HeaderMux.
func newRawMux(t *testing.T, opts mux.Options, prefixMode, failureMode string, names []string, handlers ...http.Handler) (string, *mux.Server, string) {
	t.Helper()
	d := &upstreamDouble{clusters: map[string]http.Handler{}, seen: map[string][]http.Header{}, posts: map[string][]string{}}
	desc := contract.Mux{Gateway: "ns/gw", Backend: "ns/be", PrefixMode: prefixMode, FailureMode: failureMode}
	for i, name := range names {
		d.clusters["cluster-"+name] = handlers[i]
		desc.Targets = append(desc.Targets, contract.MuxTarget{Name: name, Cluster: "cluster-" + name, Path: "/mcp"})
	}
	sock := serveUnix(t, d)
	header, _ := json.Marshal(desc)
	opts.Upstream = func(string) string { return "unix://" + sock }
	opts.Secret = testSecret
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := mux.New(opts)
	return serveFront(t, h, string(header)), h, string(header)
}

// serveFront serves h as Envoy's front hop reaches it (the route's contract.HeaderMux desc and
// the secret ext_proc sets) and returns the URL of its MCP endpoint.
func serveFront(t *testing.T, h http.Handler, desc string) string {
	t.Helper()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set(contract.HeaderMux, desc)
		r.Header.Set(contract.HeaderMuxAuth, testSecret)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL + "/mcp"
}

// openRaw initializes a session at url and returns its id and the initialize answer.
func openRaw(t *testing.T, url string) (string, string) {
	t.Helper()
	resp, body := post(t, url, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	return sid, body
}

// tools returns n tools named PREFIXi, each with a description of pad bytes.
func tools(prefix string, n, pad int) []map[string]any {
	var out []map[string]any
	for i := range n {
		out = append(out, map[string]any{"name": fmt.Sprintf("%s%d", prefix, i), "description": strings.Repeat("d", pad), "inputSchema": map[string]any{"type": "object"}})
	}
	return out
}

// TestMuxMethodNotFound: a target without a list method or logging/setLevel (-32601, as the
// Python and TypeScript SDKs answer a method they have no handler for) lists nothing and has
// nothing to set, under FailClosed; another error still fails the request.
func TestMuxMethodNotFound(t *testing.T) {
	full := &rawTarget{answer: func(method string, _ json.RawMessage) (any, int) {
		switch method {
		case "tools/list":
			return map[string]any{"tools": tools("t", 2, 1)}, 0
		case "prompts/list":
			return map[string]any{"prompts": []any{map[string]string{"name": "p"}}}, 0
		case "logging/setLevel":
			return map[string]any{}, 0
		}
		return nil, -32603
	}}
	toolsOnly := &rawTarget{answer: func(method string, _ json.RawMessage) (any, int) {
		switch method {
		case "tools/list":
			return map[string]any{"tools": tools("u", 1, 1)}, 0
		case "resources/list":
			return nil, -32603 // a failure, not a missing method
		}
		return nil, -32601
	}}
	url := newRawGateway(t, mux.Options{}, contract.FailClosed, []string{"a", "b"}, full, toolsOnly)
	sid, _ := openRaw(t, url)
	for _, c := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"description":"d","inputSchema":{"type":"object"},"name":"a_t0"},{"description":"d","inputSchema":{"type":"object"},"name":"a_t1"},{"description":"d","inputSchema":{"type":"object"},"name":"b_u0"}]}}`},
		{`{"jsonrpc":"2.0","id":2,"method":"prompts/list"}`, `{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"a_p"}]}}`},
		{`{"jsonrpc":"2.0","id":3,"method":"resources/templates/list"}`, `"code":-32603`},
		{`{"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{"level":"info"}}`, `{"jsonrpc":"2.0","id":4,"result":{}}`},
		{`{"jsonrpc":"2.0","id":5,"method":"resources/list"}`, `"code":-32603`},
	} {
		resp, got := post(t, url, sid, c.body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(got, c.want) {
			t.Errorf("%s: %d %s, want %s", c.body, resp.StatusCode, got, c.want)
		}
	}
}

// pagedTarget lists its tools on three pages (cursors "", c2, c3): t-0, tc2-0, tc3-0.
func pagedTarget() *rawTarget {
	return &rawTarget{answer: func(method string, params json.RawMessage) (any, int) {
		var p struct {
			Cursor string `json:"cursor"`
		}
		json.Unmarshal(params, &p)
		next := map[string]string{"": "c2", "c2": "c3", "c3": ""}[p.Cursor]
		return map[string]any{"tools": tools("t"+p.Cursor+"-", 1, 1), "nextCursor": next}, 0
	}}
}

// TestMuxListPages: a target's list is followed page by page, each page's request with an id of
// its own, and the answer matched to it.
func TestMuxListPages(t *testing.T) {
	paged := pagedTarget()
	other := &rawTarget{answer: func(string, json.RawMessage) (any, int) {
		return map[string]any{"tools": tools("o", 1, 1)}, 0
	}}
	url := newRawGateway(t, mux.Options{}, contract.FailClosed, []string{"a", "b"}, paged, other)
	sid, _ := openRaw(t, url)
	for _, id := range []string{`7`, `"x"`} {
		resp, got := post(t, url, sid, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/list"}`)
		var answer struct {
			ID     json.RawMessage `json:"id"`
			Result struct {
				Tools []struct{ Name string } `json:"tools"`
			} `json:"result"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(got), &answer) != nil || string(answer.ID) != id {
			t.Fatalf("tools/list id %s: %d %s", id, resp.StatusCode, got)
		}
		var names []string
		for _, tool := range answer.Result.Tools {
			names = append(names, tool.Name)
		}
		if want := []string{"a_t-0", "a_tc2-0", "a_tc3-0", "b_o0"}; !slices.Equal(names, want) {
			t.Errorf("tools/list id %s: %q, want %q", id, names, want)
		}
	}
	paged.mu.Lock()
	defer paged.mu.Unlock()
	seen := map[string]bool{}
	for _, id := range paged.ids {
		if seen[id] {
			t.Errorf("the target got id %s twice in its session: %q", id, paged.ids)
		}
		seen[id] = true
	}
	if len(paged.ids) != 6 {
		t.Errorf("the target got %d requests, want 3 pages twice: %q", len(paged.ids), paged.ids)
	}
}

// TestMuxListLimit: a merged list larger than MaxBodyBytes is answered with -32603 naming the
// method and the limit, though each target's list fits.
func TestMuxListLimit(t *testing.T) {
	const limit = 4096
	big := func(prefix string) *rawTarget {
		return &rawTarget{answer: func(string, json.RawMessage) (any, int) {
			return map[string]any{"tools": tools(prefix, 10, 250)}, 0 // about 3 KB
		}}
	}
	url := newRawGateway(t, mux.Options{MaxBodyBytes: limit}, contract.FailOpen, []string{"a", "b"}, big("x"), big("y"))
	sid, _ := openRaw(t, url)
	resp, got := post(t, url, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(got, `"code":-32603`) || !strings.Contains(got, "tools/list") || !strings.Contains(got, fmt.Sprint(limit)) {
		t.Errorf("tools/list of 2 x 3 KB under a limit of %d: %d %s, want -32603 naming tools/list and the limit", limit, resp.StatusCode, got)
	}
	// One target's list alone fits.
	url = newRawGateway(t, mux.Options{MaxBodyBytes: limit}, contract.FailOpen, []string{"a"}, big("x"))
	sid, _ = openRaw(t, url)
	if resp, got := post(t, url, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); resp.StatusCode != http.StatusOK || !strings.Contains(got, `"a_x9"`) || len(got) > limit {
		t.Errorf("tools/list of one 3 KB list: %d %d bytes %.200s", resp.StatusCode, len(got), got)
	}
}

// TestMuxComplete: completion/complete goes to the target its ref's prefix names, with the
// target's own name or URI; a ref of another type, or without its name, is -32602, as the
// front hop refuses it.
func TestMuxComplete(t *testing.T) {
	echo := func(name string) *rawTarget {
		return &rawTarget{answer: func(method string, params json.RawMessage) (any, int) {
			var p struct {
				Ref json.RawMessage `json:"ref"`
			}
			json.Unmarshal(params, &p)
			return map[string]any{"completion": map[string]any{"values": []string{name + " " + string(p.Ref)}}}, 0
		}}
	}
	url := newRawGateway(t, mux.Options{}, contract.FailClosed, []string{"a", "b"}, echo("a"), echo("b"))
	sid, _ := openRaw(t, url)
	for ref, want := range map[string]string{
		`{"type":"ref/prompt","name":"b_p"}`:          `"values":["b {\"name\":\"p\",\"type\":\"ref/prompt\"}"]`,
		`{"type":"ref/resource","uri":"a+file:///x"}`: `"values":["a {\"type\":\"ref/resource\",\"uri\":\"file:///x\"}"]`,
		`{"type":"ref/prompt","name":"c_p"}`:          `"message":"Unknown prompt: c_p"`,
		`{"type":"ref/resource","uri":"file:///x"}`:   `"message":"Unknown resource: file:///x"`,
		`{"type":"ref/other","name":"a_p"}`:           `"code":-32602`,
		`{"type":"ref/prompt","uri":"a_p"}`:           `"code":-32602`,
	} {
		resp, got := post(t, url, sid, `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":`+ref+`,"argument":{"name":"x","value":""}}}`)
		if resp.StatusCode != http.StatusOK || !strings.Contains(got, want) {
			t.Errorf("ref %s: %d %s, want %s", ref, resp.StatusCode, got, want)
		}
	}
}
