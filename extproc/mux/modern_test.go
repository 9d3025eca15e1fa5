package mux_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/contract"
	mcpx "github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

var (
	// targetModernA and targetModernB are servers a and b behind the go-sdk's stateless handler,
	// which offers MCP 2026-07-28.
	targetModernA = contract.MuxTarget{Name: "a", Cluster: "cluster-stateless-a", Path: "/mcp"}
	targetModernB = contract.MuxTarget{Name: "b", Cluster: "cluster-stateless-b", Path: "/mcp"}
)

// connectVersion connects a go-sdk client to url asking for MCP version (it tries server/discover
// first for 2026-07-28, and falls back to initialize when the server does not offer it).
func connectVersion(t *testing.T, url, version string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	client := mcp.NewClient(&mcp.Implementation{Name: "mux-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// postModern POSTs a sessionless request of MCP 2026-07-28 shaped as the inspector's
// (--protocol-era modern): Mcp-Method, Mcp-Name when name is not "", MCP-Protocol-Version and the
// _meta triple in params.
func postModern(t *testing.T, url, method, name string, params map[string]any) *http.Response {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	params["_meta"] = map[string]any{
		"io.modelcontextprotocol/protocolVersion":    mux.ModernVersion,
		"io.modelcontextprotocol/clientInfo":         map[string]string{"name": "inspector-like", "version": "1"},
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	// A bound, so that a stream that never brings what a test waits for ends the test.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Method", method)
	req.Header.Set("Mcp-Protocol-Version", mux.ModernVersion)
	if name != "" {
		req.Header.Set("Mcp-Name", name)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s %s: %v", url, method, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// rpcAnswer reads the JSON-RPC response of a JSON answer or the first response of an event stream.
func rpcAnswer(t *testing.T, resp *http.Response) (result json.RawMessage, rpcErr map[string]any) {
	t.Helper()
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  map[string]any  `json:"error"`
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &msg); err != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		return msg.Result, msg.Error
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if ok && json.Unmarshal([]byte(data), &msg) == nil && msg.ID != nil {
			return msg.Result, msg.Error
		}
	}
	t.Fatalf("event stream without a response: %v", sc.Err())
	return nil, nil
}

// TestModernDiscover: a sessionless server/discover goes to every target; when all offer MCP
// 2026-07-28 (the go-sdk's stateless handler) the mux answers with the versions all offer, the
// merged capabilities and its own serverInfo; when one does not (a stateful go-sdk server), it
// answers as before (400, -32600), on which the client falls back to initialize.
func TestModernDiscover(t *testing.T) {
	gw := newGateway(t, contract.FailClosed, targetModernA, targetModernB)
	resp := postModern(t, gw.url, "server/discover", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("server/discover on two stateless targets: HTTP %d, want 200", resp.StatusCode)
	}
	result, rpcErr := rpcAnswer(t, resp)
	if rpcErr != nil {
		t.Fatalf("server/discover on two stateless targets: error %v", rpcErr)
	}
	var r struct {
		SupportedVersions []string                   `json:"supportedVersions"`
		Capabilities      map[string]json.RawMessage `json:"capabilities"`
		Instructions      string                     `json:"instructions"`
		Meta              map[string]struct {
			Name string `json:"name"`
		} `json:"_meta"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.SupportedVersions, mux.ModernVersion) || !slices.Contains(r.SupportedVersions, "2025-11-25") {
		t.Errorf("supportedVersions = %v, want %s and 2025-11-25 (every target offers them)", r.SupportedVersions, mux.ModernVersion)
	}
	if r.Capabilities["tools"] == nil || r.Capabilities["prompts"] == nil || r.Capabilities["resources"] == nil {
		t.Errorf("capabilities = %s, want tools, prompts, resources", result)
	}
	if !strings.Contains(r.Instructions, "a: use a") || !strings.Contains(r.Instructions, "b: use b") {
		t.Errorf("instructions = %q, want each target's under its name", r.Instructions)
	}
	if got := r.Meta[mux.MetaKeyServerInfo].Name; got != mux.ServerName {
		t.Errorf("_meta serverInfo name = %q, want %q", got, mux.ServerName)
	}

	t.Run("a target down", func(t *testing.T) {
		// Under FailOpen the targets that answer decide; under FailClosed a failed one refuses.
		for mode, want := range map[string]int{contract.FailOpen: http.StatusOK, contract.FailClosed: http.StatusBadRequest} {
			gw := newGateway(t, mode, targetModernA, targetDown)
			if resp := postModern(t, gw.url, "server/discover", "", nil); resp.StatusCode != want {
				t.Errorf("%s: server/discover with target c down: HTTP %d, want %d", mode, resp.StatusCode, want)
			}
		}
	})

	t.Run("mixed backend falls back", func(t *testing.T) {
		gw := newGateway(t, contract.FailOpen, targetModernA, targetB)
		resp := postModern(t, gw.url, "server/discover", "", nil)
		_, rpcErr := rpcAnswer(t, resp)
		if resp.StatusCode != http.StatusBadRequest || rpcErr == nil || rpcErr["code"] != float64(-32600) {
			t.Fatalf("server/discover on a stateless and a stateful target: HTTP %d, error %v; want 400 -32600 (the client falls back)", resp.StatusCode, rpcErr)
		}
		// The mux remembers that target b does not offer 2026-07-28: the probes that follow
		// (one per connection of such a client) are refused without a request to any target.
		before := gw.requests("cluster-stateless-a") + gw.requests("cluster-b")
		resp = postModern(t, gw.url, "server/discover", "", nil)
		if _, rpcErr := rpcAnswer(t, resp); resp.StatusCode != http.StatusBadRequest || rpcErr == nil {
			t.Fatalf("second server/discover on a mixed backend: HTTP %d, error %v; want 400 -32600", resp.StatusCode, rpcErr)
		}
		if after := gw.requests("cluster-stateless-a") + gw.requests("cluster-b"); after != before {
			t.Errorf("second server/discover on a mixed backend: %d requests to the targets, want none (remembered)", after-before)
		}
		cs := connectVersion(t, gw.url, mux.ModernVersion)
		if v := cs.InitializeResult().ProtocolVersion; v >= mux.ModernVersion {
			t.Errorf("client's version on a mixed backend = %s, want an initialize-era one (fallback)", v)
		}
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "b_whoami", Arguments: map[string]any{"text": ""}}); err != nil {
			t.Errorf("b_whoami after the fallback: %v", err)
		}
	})
}

// TestModernClient: a go-sdk client asking for MCP 2026-07-28 gets it on a backend of two
// stateless go-sdk targets, and lists (merged, prefixed) and calls tools (routed by prefix)
// without a session; the targets get the requests without a session, with the client's
// MCP-Protocol-Version and the target's own name in Mcp-Name.
func TestModernClient(t *testing.T) {
	gw := newGateway(t, contract.FailClosed, targetModernA, targetModernB)
	cs := connectVersion(t, gw.url, mux.ModernVersion)
	if v := cs.InitializeResult().ProtocolVersion; v != mux.ModernVersion {
		t.Fatalf("negotiated version %s, want %s", v, mux.ModernVersion)
	}
	ctx := context.Background()
	wantTools(t, cs, "a_ask", "a_count", "a_whoami", "a_x", "b_ask", "b_count", "b_whoami", "b_y")
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "b_whoami", Arguments: map[string]any{"text": ""}})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, res); got != "b" {
		t.Errorf("b_whoami = %q, want b", got)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "a_x", Arguments: map[string]any{"text": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(t, res); got != "a.x: hi" {
		t.Errorf("a_x = %q, want a.x: hi", got)
	}
	gw.double.mu.Lock()
	defer gw.double.mu.Unlock()
	var call http.Header
	for _, h := range gw.double.seen["cluster-stateless-b"] {
		if h.Get("Mcp-Session-Id") != "" {
			t.Errorf("target b got Mcp-Session-Id %q, want none (MCP 2026-07-28 has no session)", h.Get("Mcp-Session-Id"))
		}
		if h.Get("Mcp-Method") == "tools/call" {
			call = h
		}
	}
	if call == nil || call.Get("Mcp-Name") != "whoami" || call.Get("Mcp-Protocol-Version") != mux.ModernVersion {
		t.Errorf("target b's tools/call headers %v: want Mcp-Name whoami (its own name), Mcp-Protocol-Version %s", call, mux.ModernVersion)
	}
}

// TestModernRaw: the inspector's sessionless requests (--protocol-era modern), raw: tools/list
// merged and tools/call routed with Mcp-Name rewritten; subscriptions/listen merged from every
// target's stream (one acknowledgement, then each target's notifications).
func TestModernRaw(t *testing.T) {
	gw := newGateway(t, contract.FailClosed, targetModernA, targetModernB)
	result, rpcErr := rpcAnswer(t, postModern(t, gw.url, "tools/list", "", nil))
	if rpcErr != nil {
		t.Fatalf("tools/list: %v", rpcErr)
	}
	if !strings.Contains(string(result), `"a_whoami"`) || !strings.Contains(string(result), `"b_whoami"`) ||
		!strings.Contains(string(result), `"resultType":"complete","ttlMs":0,"cacheScope":"private"`) {
		t.Errorf("tools/list = %s, want a_whoami, b_whoami, resultType complete, ttlMs 0 and cacheScope private (a 2026-07-28 client refuses a result without)", result)
	}
	result, rpcErr = rpcAnswer(t, postModern(t, gw.url, "tools/call", "a_whoami", map[string]any{"name": "a_whoami", "arguments": map[string]any{"text": ""}}))
	if rpcErr != nil || !strings.Contains(string(result), `"text":"a"`) {
		t.Fatalf("tools/call a_whoami = %s, error %v; want the text a", result, rpcErr)
	}

	t.Run("subscriptions/listen of resources", func(t *testing.T) {
		// Each target gets its own URIs, unprefixed; the acknowledgement names them prefixed.
		resp := postModern(t, gw.url, "subscriptions/listen", "", map[string]any{"notifications": map[string]any{
			"resourceSubscriptions": []string{"b+file:///b.txt", "a+file:///a.txt"}}})
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			if !strings.Contains(data, `"notifications/subscriptions/acknowledged"`) ||
				!strings.Contains(data, `"a+file:///a.txt"`) || !strings.Contains(data, `"b+file:///b.txt"`) {
				t.Fatalf("first event %s, want the acknowledgement of a+file:///a.txt and b+file:///b.txt", data)
			}
			return
		}
		t.Fatalf("listen stream without an event: %v", sc.Err())
	})
	t.Run("subscriptions/listen of an unknown target's resource", func(t *testing.T) {
		_, rpcErr := rpcAnswer(t, postModern(t, gw.url, "subscriptions/listen", "", map[string]any{"notifications": map[string]any{
			"resourceSubscriptions": []string{"z+file:///z.txt"}}}))
		if rpcErr == nil || rpcErr["code"] != float64(-32602) {
			t.Errorf("subscriptions/listen of z+file:///z.txt: error %v, want -32602 (no target z)", rpcErr)
		}
	})

	t.Run("subscriptions/listen", func(t *testing.T) {
		resp := postModern(t, gw.url, "subscriptions/listen", "", map[string]any{"notifications": map[string]any{"toolsListChanged": true}})
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("subscriptions/listen: HTTP %d %s %s, want an event stream", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		events := make(chan string, 16)
		go func() {
			defer close(events)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					events <- data
				}
			}
		}()
		ack := <-events
		if !strings.Contains(ack, `"notifications/subscriptions/acknowledged"`) || !strings.Contains(ack, `"toolsListChanged":true`) {
			t.Fatalf("first event %s, want one acknowledgement with toolsListChanged", ack)
		}
		// A tool added to b: its notification comes on the merged stream.
		mcp.AddTool(gw.servers["cluster-stateless-b"], &mcp.Tool{Name: "late"},
			func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{}, nil, nil
			})
		for ev := range events {
			if strings.Contains(ev, `"notifications/tools/list_changed"`) {
				return
			}
			if strings.Contains(ev, `"notifications/subscriptions/acknowledged"`) {
				t.Errorf("a second acknowledgement %s: want one, merged", ev)
			}
		}
		t.Fatal("the listen stream ended without b's notifications/tools/list_changed")
	})
}

// TestModernResolve: under prefixMode Never the front hop resolves a sessionless call of MCP
// 2026-07-28 (MCP-Protocol-Version) with every target of the backend; a sessionless call of the
// initialize era is refused as before (400, -32600).
func TestModernResolve(t *testing.T) {
	gw := newGatewayMode(t, contract.PrefixModeNever, contract.FailClosed, func(o *mux.Options) { o.ResolveCacheTTL = time.Minute }, targetModernA, targetModernB)
	q := func(version string) mux.Query {
		h := http.Header{}
		if version != "" {
			h.Set("Mcp-Protocol-Version", version)
		}
		return mux.Query{Mux: gw.desc, Header: h, ID: json.RawMessage(`1`), Item: mcpx.Tool, Name: "y"}
	}
	for range 2 { // the second time with the resolve cache on: a sessionless call keeps none
		if target, err := gw.mux.Resolve(context.Background(), q(mux.ModernVersion)); err != nil || target != "b" {
			t.Errorf("Resolve(y) of a sessionless MCP %s call = %q, %v; want b", mux.ModernVersion, target, err)
		}
	}
	if got := mux.ResolveCacheLen(gw.mux); got != 0 {
		t.Errorf("resolve cache holds %d entries after sessionless calls, want 0 (no session to scope them to the caller)", got)
	}
	var re *mux.ResolveError
	if _, err := gw.mux.Resolve(context.Background(), q("2025-11-25")); !errors.As(err, &re) || re.Status != http.StatusBadRequest || re.Code != -32600 {
		t.Errorf("Resolve of a sessionless 2025-11-25 call: %v, want 400 -32600", err)
	}
}
