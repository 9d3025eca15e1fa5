package mux_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// connectSSE connects a go-sdk client speaking HTTP+SSE (MCP 2024-11-05) to url.
func connectSSE(t *testing.T, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-test", Version: "1"}, opts)
	cs, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("HTTP+SSE client: connect %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestLegacyClient: a go-sdk client speaking HTTP+SSE is served by the mux as a Streamable HTTP
// client is, on a multiplexed backend (names prefixed) and under Bridge (one Streamable HTTP
// target, names its own): lists, calls, progress notifications, an elicitation round trip (the
// target's request on the client's stream, the client's answer posted). Closing the client (its
// stream) deletes the session at every target.
func TestLegacyClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		desc    contract.Mux
		tools   []string
		x, ask  string
		count   string
		clients []string
	}{
		{"multiplexed", contract.Mux{Gateway: "ns/gw", Backend: "ns/be", PrefixMode: "Conditional", FailureMode: "FailClosed", Targets: []contract.MuxTarget{targetA, targetB}},
			[]string{"a_ask", "a_count", "a_whoami", "a_x", "b_ask", "b_count", "b_whoami", "b_y"}, "a_x", "b_ask", "a_count", []string{"cluster-a", "cluster-b"}},
		{"bridge", contract.Mux{Gateway: "ns/gw", Backend: "ns/be", PrefixMode: "Conditional", Bridge: true, Targets: []contract.MuxTarget{targetA}},
			[]string{"ask", "count", "whoami", "x"}, "x", "ask", "count", []string{"cluster-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := newGatewayDesc(t, tc.desc, nil)
			rec, opts := newAnswering()
			cs := connectSSE(t, gw.url, opts)
			init := cs.InitializeResult()
			if tc.desc.Bridge != (init.ServerInfo.Name == "a") || !tc.desc.Bridge && init.ServerInfo.Name != mux.ServerName {
				t.Errorf("serverInfo %+v: want the target's under Bridge, else the mux's", init.ServerInfo)
			}
			wantTools(t, cs, tc.tools...)
			if got, want := callText(t, cs, tc.x, map[string]any{"text": "hi"}), "a.x: hi"; got != want {
				t.Errorf("tools/call %s: %q, want %q", tc.x, got, want)
			}
			target := strings.TrimSuffix(tc.ask, "_ask")
			if tc.desc.Bridge {
				target = "a"
			}
			if got, want := callText(t, cs, tc.ask, nil), target+" heard accept green"; got != want {
				t.Errorf("tools/call %s: %q, want %q (the client's answer to the elicitation)", tc.ask, got, want)
			}
			if asked, want := rec.elicitations(), []string{"your color? (" + target + ")"}; !slices.Equal(asked, want) {
				t.Errorf("elicitations %q: want %q", asked, want)
			}
			callCount(t, cs, tc.count, "tok")
			wantProgress(t, rec.progress, "a")

			// The client's stream ends: every target's session is deleted.
			cs.Close()
			var deleted []string
			for range tc.clients {
				deleted = append(deleted, receive(t, gw.double.deletes, "a target's DELETE after the client's stream ended"))
			}
			slices.Sort(deleted)
			if !slices.Equal(deleted, tc.clients) {
				t.Errorf("DELETE reached %v, want %v", deleted, tc.clients)
			}
		})
	}
}

// legacyStream is a raw HTTP+SSE client's stream at the mux.
type legacyStream struct {
	resp     *http.Response
	sc       *bufio.Scanner
	endpoint string
	cancel   context.CancelFunc
}

// openLegacy opens a raw HTTP+SSE stream at url (with the request headers headers) and reads its
// endpoint event.
func openLegacy(t *testing.T, url string, headers map[string]string) *legacyStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s without a session: %d %s %s, want 200 text/event-stream", url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	ls := &legacyStream{resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	if !readUntil(ls.sc, "event: endpoint") || !ls.sc.Scan() || !strings.HasPrefix(ls.sc.Text(), "data: ") {
		t.Fatalf("GET %s: no endpoint event first", url)
	}
	ls.endpoint = strings.TrimPrefix(ls.sc.Text(), "data: ")
	return ls
}

// next returns the data of the stream's next message event.
func (ls *legacyStream) next(t *testing.T) string {
	t.Helper()
	for ls.sc.Scan() {
		if data, ok := strings.CutPrefix(ls.sc.Text(), "data: "); ok {
			return data
		}
	}
	t.Fatalf("the stream ended (%v) before a message", ls.sc.Err())
	return ""
}

// initialize posts initialize to the session's endpoint url (id 1) and reads its answer off the
// stream.
func (ls *legacyStream) initialize(t *testing.T, url string) {
	t.Helper()
	if resp, body := post(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST initialize: %d %s", resp.StatusCode, body)
	}
	if data := ls.next(t); !strings.Contains(data, `"id":1`) {
		t.Fatalf("the stream's first message %q: want the initialize answer", data)
	}
}

// origin returns the scheme and host of url.
func origin(url string) string {
	i := strings.Index(url[len("http://"):], "/")
	return url[:len("http://")+i]
}

// TestLegacyRaw: the endpoint event names the path the client sent (x-envoy-original-path when
// the route rewrote it), with the session's key; a POST to it is answered 202 (empty) and its
// answer comes on the stream; a body that is no JSON-RPC message is 400.
func TestLegacyRaw(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	ls := openLegacy(t, gw.url, map[string]string{"X-Envoy-Original-Path": "/sse?x=1"})
	path, key, ok := strings.Cut(ls.endpoint, "?sessionId=")
	if !ok || path != "/sse" || len(key) != 32 {
		t.Fatalf("endpoint %q: want /sse?sessionId= and a key of 128 bits", ls.endpoint)
	}
	url := origin(gw.url) + "/mcp?sessionId=" + key
	resp, body := post(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if resp.StatusCode != http.StatusAccepted || body != "" {
		t.Fatalf("POST initialize: %d %q, want 202 and no body", resp.StatusCode, body)
	}
	var init struct {
		ID     int `json:"id"`
		Result struct {
			ServerInfo      mcp.Implementation `json:"serverInfo"`
			ProtocolVersion string             `json:"protocolVersion"`
		} `json:"result"`
	}
	if data := ls.next(t); json.Unmarshal([]byte(data), &init) != nil || init.ID != 1 || init.Result.ServerInfo.Name != mux.ServerName {
		t.Fatalf("the stream's first message %q: want the initialize answer", data)
	}
	if resp, body := post(t, url, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, url, "", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("tools/list: %d, want 202", resp.StatusCode)
	}
	if data := ls.next(t); !strings.Contains(data, `"id":2`) || !strings.Contains(data, `"b_whoami"`) {
		t.Errorf("the stream's next message %q: want the tools/list answer", data)
	}
	for _, bad := range []string{`[{"jsonrpc":"2.0","id":3,"method":"ping"}]`, `not json`} {
		if resp, body := post(t, url, "", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}
}

// TestLegacyLastEventID: an HTTP+SSE client's stream carries no event ids of the mux, so a
// Last-Event-ID on it (a client reconnecting the way EventSource does) is no position to resume
// from: the stream is served as a new one, and what the targets send outside any call reaches it.
func TestLegacyLastEventID(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	ls := openLegacy(t, gw.url, map[string]string{"Last-Event-ID": "42"})
	_, key, _ := strings.Cut(ls.endpoint, "?sessionId=")
	url := origin(gw.url) + "/mcp?sessionId=" + key
	ls.initialize(t, url)
	if resp, body := post(t, url, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", resp.StatusCode, body)
	}
	// The session's merged GET stream opens after initialize; a's list change goes on it. Until
	// it is open the change has nowhere to go, so the tool is added again until one arrives
	// (a guard against a test that hangs, not a time the mux must meet).
	got := make(chan string, 1)
	go func() {
		for ls.sc.Scan() {
			if data, ok := strings.CutPrefix(ls.sc.Text(), "data: "); ok {
				got <- data
				return
			}
		}
		got <- "" // the stream ended
	}()
	for i := 0; ; i++ {
		mcp.AddTool(gw.servers["cluster-a"], &mcp.Tool{Name: fmt.Sprintf("late%d", i)},
			func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{}, nil, nil
			})
		select {
		case data := <-got:
			if !strings.Contains(data, "notifications/tools/list_changed") {
				t.Fatalf("the stream's next message %q: want a's tools/list_changed", data)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if i == 300 {
			ls.cancel()
			t.Fatal("no tools/list_changed on the stream: the session's GET stream was not relayed")
		}
	}
}

// TestLegacyUnknownSession: a POST naming no open session, or an open one through another
// description of the backend (another backend, or cluster), is 404; the session's own is served.
func TestLegacyUnknownSession(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	ls := openLegacy(t, gw.url, nil)
	_, key, _ := strings.Cut(ls.endpoint, "?sessionId=")
	other := contract.Mux{Gateway: "ns/gw", Backend: "ns/other", PrefixMode: "Conditional", Targets: []contract.MuxTarget{targetA, targetB}}
	desc, _ := json.Marshal(other)
	otherURL := serveFront(t, gw.mux, string(desc))
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for name, url := range map[string]string{
		"unknown key":       origin(gw.url) + "/mcp?sessionId=0123456789abcdef0123456789abcdef",
		"another backend":   otherURL + "?sessionId=" + key,
		"the key in a path": origin(gw.url) + "/mcp/" + key,
	} {
		resp, body := post(t, url, "", ping)
		want := http.StatusNotFound
		if name == "the key in a path" {
			want = http.StatusOK // a Streamable HTTP POST: ping is answered as one
		}
		if resp.StatusCode != want {
			t.Errorf("%s: POST %s: %d %s, want %d", name, url, resp.StatusCode, body, want)
		}
	}
	if resp, body := post(t, origin(gw.url)+"/mcp?session_id="+key, "", ping); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the session's own POST (session_id): %d %s, want 202", resp.StatusCode, body)
	}
	if data := ls.next(t); !strings.Contains(data, `"result":{}`) {
		t.Errorf("ping's answer %q: want an empty result", data)
	}
}

// TestLegacyIdle: a session without a POST for Options.SSEIdleTimeout is closed: its stream
// ends, and a POST of it is 404.
func TestLegacyIdle(t *testing.T) {
	gw := newGatewayWith(t, "FailClosed", func(o *mux.Options) { o.SSEIdleTimeout = 50 * time.Millisecond }, targetA)
	ls := openLegacy(t, gw.url, nil)
	var gaveUp atomic.Bool
	timer := time.AfterFunc(30*time.Second, func() {
		gaveUp.Store(true)
		ls.cancel()
	})
	defer timer.Stop()
	for ls.sc.Scan() {
		if ls.sc.Text() != "" {
			t.Errorf("the idle session's stream: %q, want its end", ls.sc.Text())
		}
	}
	if gaveUp.Load() {
		t.Fatal("the idle session's stream did not end within 30 s")
	}
	if resp, _ := post(t, origin(gw.url)+ls.endpoint, "", `{"jsonrpc":"2.0","id":2,"method":"ping"}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST after the idle close: %d, want 404", resp.StatusCode)
	}
}

// TestLegacyMaxSessions: a stream beyond Options.MaxSSESessions is refused (503 naming the
// limit); the open one is served.
func TestLegacyMaxSessions(t *testing.T) {
	gw := newGatewayWith(t, "FailClosed", func(o *mux.Options) { o.MaxSSESessions = 1 }, targetA)
	ls := openLegacy(t, gw.url, nil)
	req, _ := http.NewRequest(http.MethodGet, gw.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	if resp.StatusCode != http.StatusOK { // a stream would not end
		body, _ = io.ReadAll(resp.Body)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "MaxSSESessions") {
		t.Errorf("a second stream: %d %s, want 503 naming MaxSSESessions", resp.StatusCode, body)
	}
	if resp, body := post(t, origin(gw.url)+ls.endpoint, "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("the open session's POST: %d %s, want 202", resp.StatusCode, body)
	}
}

// TestSessionsMetric: mcpgate_mux_sessions counts the sessions and streams the mux holds: the
// bridge's session of an SSE target while it is open, an HTTP+SSE client's while its stream is, a
// session's GET stream while it is open.
func TestSessionsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	gw := newGatewayDesc(t, bridgeDesc, func(o *mux.Options) { o.Registerer = reg })
	sessions := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "mcpgate_mux_sessions" && len(m.GetLabel()) == 1 {
					got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
		return got
	}
	want := func(step string, target, client, stream float64) {
		t.Helper()
		// A stream's end reaches the mux after the client's: wait for it (as receive does).
		deadline := time.Now().Add(30 * time.Second)
		for got := sessions(); got["sse_target"] != target || got["sse_client"] != client || got["stream"] != stream || len(got) != 3; got = sessions() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: mcpgate_mux_sessions %v, want sse_target %v, sse_client %v, stream %v", step, got, target, client, stream)
			}
			time.Sleep(time.Millisecond)
		}
	}
	want("none open", 0, 0, 0)
	sid := openSession(t, gw.url)
	want("a Streamable HTTP client's session of the SSE target", 1, 0, 0)
	ls := openLegacy(t, gw.url, nil)
	want("and an HTTP+SSE client's stream", 1, 1, 0)
	ls.cancel()
	want("the HTTP+SSE client gone", 1, 0, 0)
	ctx, cancel := context.WithCancel(t.Context())
	resp := getStream(t, ctx, gw.url, sid)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	want("and the session's GET stream", 1, 0, 1)
	cancel()
	resp.Body.Close()
	want("the GET stream closed", 1, 0, 0)
	if status := deleteSession(t, gw.url, sid); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d", status)
	}
	want("the session deleted", 0, 0, 0)
}

// TestLegacyBytesInFlight: the requests of an HTTP+SSE client being served (answered 202 before
// they are) hold their messages until their answers: a session's are bounded by bytes too (four
// bodies of the largest size), beyond which a POST is 503 and not served.
func TestLegacyBytesInFlight(t *testing.T) {
	gw := newGatewayWith(t, contract.FailClosed, func(o *mux.Options) { o.MaxBodyBytes, o.StreamOpenTimeout = 2048, 500*time.Millisecond }, targetA, targetB)
	ls := openLegacy(t, gw.url, nil)
	endpoint := origin(gw.url) + ls.endpoint
	// The client can be asked (elicitation) and never answers: a_ask's calls are served until the
	// session ends.
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}`
	if resp, body := post(t, endpoint, "", init); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if data := ls.next(t); !strings.Contains(data, `"serverInfo"`) {
		t.Fatalf("initialize answer %q", data)
	}
	pad := strings.Repeat("x", 1600)
	accepted := 0
	for i := 2; i < 12; i++ {
		call := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"a_ask","arguments":{},"_meta":{"pad":"%s"}}}`, i, pad)
		resp, body := post(t, endpoint, "", call)
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !strings.Contains(body, "hold as many bytes as they may") {
				t.Errorf("POST beyond the bytes in flight: 503 %q, want it to say why", body)
			}
			break
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
		}
		accepted++
	}
	if accepted != 4 {
		t.Errorf("%d calls of 1.6 KB served at once, want 4 (four bodies of 2 KiB, Options.MaxBodyBytes)", accepted)
	}
}
