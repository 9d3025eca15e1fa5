package mux_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/contract"
	mcpx "github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// bridgeDesc is a backend whose one SSE target e the mux bridges (contract.Mux.Bridge).
var bridgeDesc = contract.Mux{Gateway: "ns/gw", Backend: "ns/be", PrefixMode: "Conditional", Bridge: true,
	Targets: []contract.MuxTarget{targetE}}

// addHeaders is an HTTP transport that adds headers to every request, as a client behind a proxy
// sends them.
type addHeaders struct {
	headers map[string]string
	next    http.RoundTripper
}

func (a addHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range a.headers {
		req.Header.Set(k, v)
	}
	next := a.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(req)
}

// holdTool adds to s the tool "hold", which reports on started that it runs and answers "held"
// once release is closed, after a progress notification "held progress" when the call has a
// progress token.
func holdTool(s *mcp.Server, started chan<- struct{}, release <-chan struct{}) {
	mcp.AddTool(s, &mcp.Tool{Name: "hold", Description: "answers once released"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			if token := req.Params.GetProgressToken(); token != nil {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1, Message: "held progress"}); err != nil {
					return nil, nil, err
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "held"}}}, nil, nil
		})
}

// TestBridgeSSE: a Streamable HTTP client (the go-sdk's) reaches an HTTP+SSE target through the
// mux's bridge (contract.Mux.Bridge): the target's own initialize answer, bare names (tools,
// prompts, resources), calls, progress notifications in a call's stream, an elicitation answered
// by the client, and a list change on the GET stream; every request the target gets (its GET
// stream, the POSTs to its endpoint) carries the cluster's route and the client's headers.
func TestBridgeSSE(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, nil)
	changed := make(chan string, 4)
	rec, opts := newAnswering()
	opts.ToolListChangedHandler = func(context.Context, *mcp.ToolListChangedRequest) { changed <- "tools/list_changed" }
	client := mcp.NewClient(&mcp.Implementation{Name: "bridge-test", Version: "1"}, opts)
	opened := make(getOpened, 1)
	hc := &http.Client{Transport: addHeaders{headers: map[string]string{"Authorization": "Bearer t0ken", "X-Forwarded-For": "203.0.113.7"}, next: opened}}
	cs, err := connectWith(t, gw.url, client, hc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if init := cs.InitializeResult(); init.ServerInfo.Name != "e" || init.Instructions != "use e" {
		t.Errorf("initialize: serverInfo %+v, instructions %q: want the target's own (e, \"use e\")", init.ServerInfo, init.Instructions)
	}

	for _, tool := range wantTools(t, cs, "ask", "count", "v", "whoami").Tools {
		if tool.Meta[contract.MetaTarget] != nil {
			t.Errorf("tool %s has _meta %v: a bridged list is passed through", tool.Name, tool.Meta)
		}
	}
	if got := callText(t, cs, "v", map[string]any{"text": "hi"}); got != "e.v: hi" {
		t.Errorf("tools/call v: %q, want e.v: hi", got)
	}
	callCount(t, cs, "count", "tok")
	wantProgress(t, rec.progress, "e")
	if got := callText(t, cs, "ask", nil); got != "e heard accept green" {
		t.Errorf("tools/call ask: %q, want e's answer with the client's", got)
	}

	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil || len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != "o" {
		t.Fatalf("prompts/list: %+v, %v; want o, bare", prompts, err)
	}
	if p, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "o"}); err != nil || p.Messages[0].Content.(*mcp.TextContent).Text != "e.o" {
		t.Errorf("prompts/get o: %+v, %v; want e.o", p, err)
	}
	resources, err := cs.ListResources(ctx, nil)
	if err != nil || len(resources.Resources) != 1 || resources.Resources[0].URI != "file:///e.txt" {
		t.Fatalf("resources/list: %+v, %v; want file:///e.txt, unprefixed", resources, err)
	}
	if r, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///e.txt"}); err != nil || r.Contents[0].Text != "contents of e" {
		t.Errorf("resources/read file:///e.txt: %+v, %v", r, err)
	}
	templates, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil || len(templates.ResourceTemplates) != 1 || templates.ResourceTemplates[0].URITemplate != "notes://e/{id}" {
		t.Errorf("resources/templates/list: %+v, %v; want notes://e/{id}", templates, err)
	}

	// The client's GET stream is open (the mux's GET, which the bridge serves): a list change,
	// outside any call, reaches it.
	receive(t, opened, "the client's GET stream")
	mcp.AddTool(gw.servers["cluster-e"], &mcp.Tool{Name: "late"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	})
	if v := receive(t, changed, "tools/list_changed"); v != "tools/list_changed" {
		t.Errorf("client got %q, want e's tools/list_changed", v)
	}

	gw.double.mu.Lock()
	defer gw.double.mu.Unlock()
	seen := gw.double.seen["cluster-e"]
	if len(seen) < 8 {
		t.Fatalf("cluster-e got %d requests, want the GET stream and a POST per message", len(seen))
	}
	for i, h := range seen {
		if h.Get("Authorization") != "Bearer t0ken" || h.Get("X-Forwarded-For") != "203.0.113.7" || h.Get("Mcp-Session-Id") != "" || h.Get(contract.HeaderMuxAuth) != "" {
			t.Errorf("cluster-e request %d headers %v: want the client's Authorization and X-Forwarded-For, no Mcp-Session-Id or %s", i, h, contract.HeaderMuxAuth)
		}
	}
	if gw.gets["cluster-e"] != 1 {
		t.Errorf("cluster-e got %d GETs, want the session's one stream", gw.gets["cluster-e"])
	}
}

// postCtx is post bounded by 30 s (a request the bridge loses must fail the test, not hang it).
func postCtx(t *testing.T, url, session, body string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return &http.Response{}, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return &http.Response{}, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s: %v", body, err)
	}
	return resp, string(b)
}

// deleteSession sends DELETE for session sid and returns the status.
func deleteSession(t *testing.T, url, sid string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// bridgeKey returns the bridge's session key of target e in the mux's session id sid.
func bridgeKey(t *testing.T, sid string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(sid)
	var s struct {
		Targets map[string]string `json:"targets"`
	}
	if err != nil || json.Unmarshal(raw, &s) != nil || len(s.Targets["e"]) != 32 {
		t.Fatalf("session id %q (%s): want e's key, 32 hex digits", sid, raw)
	}
	return s.Targets["e"]
}

// forgedSession returns a session id of backend ns/be naming key as e's.
func forgedSession(key string) string {
	b, _ := json.Marshal(map[string]any{"backend": "ns/be", "targets": map[string]string{"e": key}})
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestBridgeSSERouting: the server's messages on the SSE stream go to the streams of the
// requests they belong to (raw requests, each stream read on its own): a progress notification
// to the request of its progressToken, though another request started later; a server's request
// (elicitation) to the call in flight, whose client answers it by POST with the id the mux gave it.
func TestBridgeSSERouting(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, nil)
	started, release := make(chan struct{}, 2), make(chan struct{})
	holdTool(gw.servers["cluster-e"], started, release)
	resp, body := postCtx(t, gw.url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	var wg sync.WaitGroup
	var withToken, later string
	wg.Go(func() {
		_, withToken = postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":"p","method":"tools/call","params":{"name":"hold","arguments":{},"_meta":{"progressToken":"tk"}}}`)
	})
	receive(t, started, "the call of hold with a progress token")
	wg.Go(func() {
		_, later = postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"hold","arguments":{}}}`)
	})
	receive(t, started, "the later call of hold")
	close(release)
	wg.Wait()
	if !strings.Contains(withToken, "held progress") || !strings.Contains(withToken, `"id":"p"`) {
		t.Errorf("the call with progressToken tk: %s, want its progress and its answer", withToken)
	}
	if strings.Contains(later, "held progress") || !strings.Contains(later, `"id":"q"`) {
		t.Errorf("the later call: %s, want its answer without the other call's progress", later)
	}

	// ask elicits: the request comes in the call's stream; the answer is posted with its id.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.url, strings.NewReader(`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"ask","arguments":{}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	call, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Body.Close()
	sc := bufio.NewScanner(call.Body)
	var elicit struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && json.Unmarshal([]byte(data), &elicit) == nil && elicit.Method != "" {
			break
		}
	}
	if elicit.Method != "elicitation/create" || !strings.HasPrefix(string(elicit.ID), `"`+mux.ServerRequestIDPrefix+"e:") {
		t.Fatalf("the call of ask's stream: %s %s, want e's elicitation/create with an id of the mux", elicit.Method, elicit.ID)
	}
	if resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":`+string(elicit.ID)+`,"result":{"action":"accept","content":{"color":"red"}}}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("the client's answer to the elicitation: %d %s, want 202", resp.StatusCode, body)
	}
	if !readUntil(sc, "e heard accept red") {
		t.Errorf("the call of ask: no answer with the client's")
	}
}

// TestBridgeSSESessions: a bridged session ends on DELETE (the target's GET stream is closed and
// the session's requests are 404); a session the bridge does not hold is 404.
func TestBridgeSSESessions(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, nil)
	sid := openSession(t, gw.url)
	key := bridgeKey(t, sid)
	if resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{"text":"t"}}}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"text":"e"`) {
		t.Fatalf("tools/call whoami: %d %s", resp.StatusCode, body)
	}
	for _, k := range []string{"0123456789abcdef0123456789abcdef", key[:31] + "x"} {
		if resp, body := postCtx(t, gw.url, forgedSession(k), `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":-32001`) {
			t.Errorf("tools/list in a session the bridge does not hold: %d %s, want 404 -32001", resp.StatusCode, body)
		}
	}
	// The same session id for a backend described with e on another cluster (another route's
	// description, or another Gateway's): the session is e's on cluster-e only.
	moved := bridgeDesc
	moved.Targets = []contract.MuxTarget{targetE}
	moved.Targets[0].Cluster = "cluster-a"
	desc, err := json.Marshal(moved)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := postCtx(t, serveFront(t, gw.mux, string(desc)), sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":-32001`) {
		t.Errorf("tools/list in e's session for e on another cluster: %d %s, want 404 -32001", resp.StatusCode, body)
	}
	if status := deleteSession(t, gw.url, sid); status != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", status)
	}
	if got := receive(t, gw.getEnded, "the end of e's GET stream"); got != "cluster-e" {
		t.Errorf("GET stream ended: %s, want cluster-e's", got)
	}
	if resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":-32001`) {
		t.Errorf("tools/list after DELETE: %d %s, want 404 -32001", resp.StatusCode, body)
	}
}

// TestMuxSSETargets: an SSE target among Streamable HTTP ones, prefixed as they are (names,
// URIs, calls, progress) under FailClosed; a call's progress goes to the call's stream.
func TestMuxSSETargets(t *testing.T) {
	gw := newGateway(t, contract.FailClosed, targetA, targetE)
	progress := make(chan string, 3)
	cs, err := connect(t, gw.url, &mcp.ClientOptions{ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
		progress <- req.Params.Message
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if init := cs.InitializeResult(); init.ServerInfo.Name != mux.ServerName || init.Instructions != "a: use a\n\ne: use e" {
		t.Errorf("initialize: %+v %q, want the mux's merged answer", init.ServerInfo, init.Instructions)
	}
	wantTools(t, cs, "a_ask", "a_count", "a_whoami", "a_x", "e_ask", "e_count", "e_v", "e_whoami")
	for tool, want := range map[string]string{"e_v": "e.v: hi", "a_x": "a.x: hi", "e_whoami": "e"} {
		if got := callText(t, cs, tool, map[string]any{"text": "hi"}); got != want {
			t.Errorf("tools/call %s: %q, want %q", tool, got, want)
		}
	}
	callCount(t, cs, "e_count", 7)
	wantProgress(t, progress, "e")
	if r, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "e+file:///e.txt"}); err != nil || r.Contents[0].Text != "contents of e" {
		t.Errorf("resources/read e+file:///e.txt: %+v, %v", r, err)
	}
	if p, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "e_o"}); err != nil || p.Messages[0].Content.(*mcp.TextContent).Text != "e.o" {
		t.Errorf("prompts/get e_o: %+v, %v", p, err)
	}
}

// TestMuxSSENever: under prefixMode Never, Resolve lists an SSE target's tools through the bridge
// in the client's session, and a call the front hop resolved to it reaches it.
func TestMuxSSENever(t *testing.T) {
	gw := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, nil, targetA, targetE)
	sid := openSession(t, gw.url)
	for _, c := range []struct {
		name, target, kind string
	}{{"v", "e", ""}, {"x", "a", ""}, {"whoami", "", mux.ResolveAmbiguous}, {"nope", "", mux.ResolveUnknown}} {
		target, err := resolve(gw.mux, gw.desc, sid, mcpx.Tool, c.name)
		switch {
		case c.kind == "" && (err != nil || target != c.target):
			t.Errorf("Resolve(%s) = %q, %+v; want %s", c.name, target, err, c.target)
		case c.kind != "" && (err == nil || err.Kind != c.kind):
			t.Errorf("Resolve(%s) = %q, %+v; want %s", c.name, target, err, c.kind)
		}
	}
	if target, err := resolve(gw.mux, gw.desc, sid, mcpx.Prompt, "o"); err != nil || target != "e" {
		t.Errorf("Resolve(prompt o) = %q, %+v; want e", target, err)
	}
	resp, body := postWith(t, gw.url, sid, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"v","arguments":{"text":"n"}}}`,
		map[string]string{contract.HeaderMuxTarget: "e"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "e.v: n") {
		t.Errorf("tools/call v (resolved to e): %d %s", resp.StatusCode, body)
	}
}

// TestBridgeSSEStreamDropped: the target's GET stream ending mid-session (the target goes away)
// fails the request in flight (-32603 naming the target) and the session: its next
// request is 404.
func TestBridgeSSEStreamDropped(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, nil)
	started, release := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(release) })
	holdTool(gw.servers["cluster-e"], started, release)
	sid := openSession(t, gw.url)
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":"h","method":"tools/call","params":{"name":"hold","arguments":{}}}`)
		done <- result{resp.StatusCode, body}
	}()
	receive(t, started, "the call of hold at e")
	// The target goes away: its connections, the GET stream's with them, are closed.
	gw.upstream.Close()
	r := receive(t, done, "the answer of the call in flight")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"code":-32603`) || !strings.Contains(r.body, "target e") || !strings.Contains(r.body, `"id":"h"`) {
		t.Errorf("call in flight when the stream ended: %d %s, want -32603 naming target e", r.status, r.body)
	}
	if resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("tools/list after the stream ended: %d %s, want 404", resp.StatusCode, body)
	}
}

// TestMuxSSEIDs: the requests of one session whose ids are equal do not take each other's answers
// at an SSE target: two calls of the client with id 7 at once, and a call with id "1#1" in flight
// while the mux lists the targets for the client's tools/list with id 1, whose first page's
// request has that id.
func TestMuxSSEIDs(t *testing.T) {
	gw := newGateway(t, contract.FailClosed, targetA, targetE)
	started, release := make(chan struct{}, 2), make(chan struct{})
	holdTool(gw.servers["cluster-e"], started, release)
	sid := openSession(t, gw.url)
	var wg sync.WaitGroup
	var held, heldToo string
	wg.Go(func() {
		_, held = postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":"1#1","method":"tools/call","params":{"name":"e_hold","arguments":{}}}`)
	})
	receive(t, started, "the call of hold")
	wg.Go(func() {
		_, heldToo = postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"e_hold","arguments":{}}}`)
	})
	receive(t, started, "the second call of hold")
	_, list := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if !strings.Contains(list, `"name":"e_v"`) || !strings.Contains(list, `"name":"a_x"`) || !strings.Contains(list, `"id":1,`) {
		t.Errorf("tools/list id 1 while a call with id \"1#1\" is in flight: %s, want both targets' tools", list)
	}
	_, whoami := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"e_whoami","arguments":{"text":"t"}}}`)
	if !strings.Contains(whoami, `"text":"e"`) || !strings.Contains(whoami, `"id":7`) {
		t.Errorf("tools/call e_whoami id 7 while another id 7 is in flight: %s, want its own answer", whoami)
	}
	close(release)
	wg.Wait()
	for _, c := range []struct{ id, body string }{{`"id":"1#1"`, held}, {`"id":7`, heldToo}} {
		if !strings.Contains(c.body, `"text":"held"`) || !strings.Contains(c.body, c.id) {
			t.Errorf("tools/call e_hold %s: %s, want held", c.id, c.body)
		}
	}
}

// TestBridgeSSEIdle: a session unused for Options.SSEIdleTimeout is closed: the target's GET
// stream ends and the session's requests are 404.
func TestBridgeSSEIdle(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, func(o *mux.Options) { o.SSEIdleTimeout = 50 * time.Millisecond })
	resp, body := postCtx(t, gw.url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if got := receive(t, gw.getEnded, "the end of e's GET stream"); got != "cluster-e" {
		t.Errorf("GET stream ended: %s, want cluster-e's", got)
	}
	if resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("tools/list after the idle timeout: %d %s, want 404", resp.StatusCode, body)
	}
}

// TestBridgeSSEMaxSessions: an initialize beyond Options.MaxSSESessions fails naming the limit;
// a session that ends makes room.
func TestBridgeSSEMaxSessions(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, func(o *mux.Options) { o.MaxSSESessions = 1 })
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	sid := openSession(t, gw.url)
	resp, body := postCtx(t, gw.url, "", init)
	if resp.Header.Get("Mcp-Session-Id") != "" || !strings.Contains(body, `"code":-32603`) || !strings.Contains(body, "MaxSSESessions") {
		t.Errorf("initialize beyond the limit: %d %s, want -32603 naming MaxSSESessions", resp.StatusCode, body)
	}
	if status := deleteSession(t, gw.url, sid); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d", status)
	}
	if resp, body := postCtx(t, gw.url, "", init); resp.Header.Get("Mcp-Session-Id") == "" {
		t.Errorf("initialize after the session ended: %d %s, want a session", resp.StatusCode, body)
	}
}

// TestBridgeSSEClose: Server.Close closes the sessions of SSE targets (their GET streams end; a
// GET the client holds ends) and refuses new ones.
func TestBridgeSSEClose(t *testing.T) {
	gw := newGatewayDesc(t, bridgeDesc, nil)
	sid := openSession(t, gw.url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := getStream(t, ctx, gw.url, sid)
	defer get.Body.Close()
	if get.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", get.StatusCode)
	}
	gw.mux.Close()
	if got := receive(t, gw.getEnded, "the end of e's GET stream"); got != "cluster-e" {
		t.Errorf("GET stream ended: %s, want cluster-e's", got)
	}
	if n, err := io.Copy(io.Discard, bufio.NewReader(get.Body)); err != nil || ctx.Err() != nil {
		t.Errorf("the client's GET after Close: %d bytes, %v; want its end", n, err)
	}
	if resp, body := postCtx(t, gw.url, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("tools/list after Close: %d %s, want 404", resp.StatusCode, body)
	}
	if _, body := postCtx(t, gw.url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`); !strings.Contains(body, `"code":-32603`) || !strings.Contains(body, "shutting down") {
		t.Errorf("initialize after Close: %s, want -32603: the mux is shutting down", body)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("MUX_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestBridgeRefusal: under Bridge a target's refusal of the initialize (its SSE GET answered 401
// with a challenge), or of a call, reaches the client as the target gave it; a multiplexed backend
// answers a target's refusal with its JSON-RPC error naming the target, as for any failure.
func TestBridgeRefusal(t *testing.T) {
	refuse := contract.MuxTarget{Name: "r", Cluster: "cluster-refuse", Path: "/sse", Protocol: contract.TransportSSE}
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	bridge := bridgeDesc
	bridge.Targets = []contract.MuxTarget{refuse}
	resp, body := post(t, newGatewayDesc(t, bridge, nil).url, "", init)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="refuse"` || body != "no token" {
		t.Errorf("initialize under Bridge, target refuses: %d %q %q, want the target's 401, challenge and body", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	resp, body = post(t, newGateway(t, contract.FailClosed, targetA, refuse).url, "", init)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"code":-32603`) || !strings.Contains(body, "target r: ") {
		t.Errorf("initialize of a multiplexed backend, a target refuses: %d %s, want 200 -32603 naming target r", resp.StatusCode, body)
	}
	calls := contract.MuxTarget{Name: "c", Cluster: "cluster-refuse-calls", Path: "/mcp"}
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"%s","arguments":{"text":"hi"}}}`
	bridge.Targets = []contract.MuxTarget{calls}
	url := newGatewayDesc(t, bridge, nil).url
	resp, body = post(t, url, openSession(t, url), fmt.Sprintf(call, "x"))
	if resp.StatusCode != http.StatusForbidden || body != "calls refused" {
		t.Errorf("tools/call under Bridge, target refuses: %d %q, want the target's 403 and body", resp.StatusCode, body)
	}
	url = newGateway(t, contract.FailClosed, targetA, calls).url
	resp, body = post(t, url, openSession(t, url), fmt.Sprintf(call, "c_x"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"code":-32603`) || !strings.Contains(body, "target c: ") {
		t.Errorf("tools/call of a multiplexed backend, the target refuses: %d %s, want 200 -32603 naming target c", resp.StatusCode, body)
	}
}
