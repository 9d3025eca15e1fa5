package mux_test

//lint:file-ignore SA1019 the merged stream relays logging and roots requests, which MCP deprecates (SEP-2577) and servers still send

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/mux"
)

// getOpened is an HTTP transport that reports each GET answered 200: the client's GET stream is
// open, and (the mux answers only once every target's GET answered) so are the targets'.
type getOpened chan struct{}

func (g getOpened) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		select {
		case g <- struct{}{}:
		default:
		}
	}
	return resp, err
}

// receive returns the next value of ch, failing the test when none comes.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never came", what)
		panic("unreachable")
	}
}

// TestMuxGetStream: what the targets send outside any call (list changes, resource updates, log
// messages, requests) reaches the go-sdk client on its GET stream through the mux, and the client's
// answer to a request reaches the target; a target without GET stream (405) is left out.
func TestMuxGetStream(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB, targetN)
	got := make(chan string, 8)
	client := mcp.NewClient(&mcp.Implementation{Name: "mux-test", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { got <- "tools/list_changed" },
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			got <- "resources/updated " + req.Params.URI
		},
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			got <- fmt.Sprintf("log %s %v", req.Params.Level, req.Params.Data)
		},
	})
	client.AddRoots(&mcp.Root{URI: "file:///work", Name: "work"})
	opened := make(getOpened, 1)
	cs, err := connectWith(t, gw.url, client, &http.Client{Transport: opened})
	if err != nil {
		t.Fatal(err)
	}
	receive(t, opened, "the client's GET stream")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	mcp.AddTool(gw.servers["cluster-a"], &mcp.Tool{Name: "late", Description: "added after the session opened"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
	if v := receive(t, got, "tools/list_changed"); v != "tools/list_changed" {
		t.Errorf("client got %q, want a's tools/list_changed", v)
	}

	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "b+file:///b.txt"}); err != nil {
		t.Fatal(err)
	}
	if err := gw.servers["cluster-b"].ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "file:///b.txt"}); err != nil {
		t.Fatal(err)
	}
	if v := receive(t, got, "resources/updated"); v != "resources/updated b+file:///b.txt" {
		t.Errorf("client got %q, want b's update of its resource, named as resources/list names it", v)
	}

	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	for ss := range gw.servers["cluster-a"].Sessions() {
		if err := ss.Log(ctx, &mcp.LoggingMessageParams{Level: "warning", Data: "from a"}); err != nil {
			t.Fatal(err)
		}
	}
	if v := receive(t, got, "the log message"); v != "log warning from a" {
		t.Errorf("client got %q, want a's log message", v)
	}

	// A request of b's outside any call: the client answers it, and the answer goes to b.
	for ss := range gw.servers["cluster-b"].Sessions() {
		roots, err := ss.ListRoots(ctx, nil)
		if err != nil {
			t.Fatalf("roots/list from b: %v", err)
		}
		if len(roots.Roots) != 1 || roots.Roots[0].URI != "file:///work" {
			t.Errorf("roots/list from b: %+v, want the client's root", roots.Roots)
		}
	}

	gw.mu.Lock()
	defer gw.mu.Unlock()
	for _, cluster := range []string{"cluster-a", "cluster-b", "cluster-n"} {
		if gw.gets[cluster] != 1 {
			t.Errorf("cluster %s got %d GETs, want 1", cluster, gw.gets[cluster])
		}
	}
}

// getStream opens a raw GET stream of the session at the mux.
func getStream(t *testing.T, ctx context.Context, url, sid string) *http.Response {
	t.Helper()
	return getAs(t, ctx, url, sid, "")
}

// getAs opens a GET stream at url (ctx ends it) of session sid ("": none, an HTTP+SSE client's
// stream) as caller (contract.HeaderMuxCaller; "": none); the caller closes the response.
func getAs(t *testing.T, ctx context.Context, url, sid, caller string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	if caller != "" {
		req.Header.Set(contract.HeaderMuxCaller, caller)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// openSession opens a session at the mux with raw requests and returns its id.
func openSession(t *testing.T, url string) string {
	t.Helper()
	resp, body := post(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d %s, session %q", resp.StatusCode, body, sid)
	}
	if resp, body := post(t, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", resp.StatusCode, body)
	}
	return sid
}

// readUntil reads the event stream's lines until one holds want; false when the stream ends first.
func readUntil(sc *bufio.Scanner, want string) bool {
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) {
			return true
		}
	}
	return false
}

// TestMuxGetStreamEnds: the client's stream goes on while a target's ends and ends when all have;
// a client that goes away ends the targets' streams.
func TestMuxGetStreamEnds(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetA, targetB)
	sid := openSession(t, gw.url)
	addTool := func(cluster, name string) {
		mcp.AddTool(gw.servers[cluster], &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
	}

	t.Run("ClientGone", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := getStream(t, ctx, gw.url, sid)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("GET: %d %s, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		addTool("cluster-a", "one")
		sc := bufio.NewScanner(resp.Body)
		if !readUntil(sc, `"method":"notifications/tools/list_changed"`) {
			t.Fatal("the stream ended before a's tools/list_changed")
		}
		cancel()
		ended := map[string]bool{}
		for len(ended) < 2 {
			ended[receive(t, gw.getEnded, "the end of a target's GET")] = true
		}
		if !ended["cluster-a"] || !ended["cluster-b"] {
			t.Errorf("GET streams ended at %v, want cluster-a and cluster-b", ended)
		}
	})

	t.Run("TargetsEnd", func(t *testing.T) {
		resp := getStream(t, context.Background(), gw.url, sid)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d, want 200", resp.StatusCode)
		}
		for ss := range gw.servers["cluster-a"].Sessions() {
			ss.Close()
		}
		if v := receive(t, gw.getEnded, "the end of a's GET"); v != "cluster-a" {
			t.Fatalf("GET ended at %s, want cluster-a", v)
		}
		// b's stream goes on.
		addTool("cluster-b", "two")
		sc := bufio.NewScanner(resp.Body)
		if !readUntil(sc, `"method":"notifications/tools/list_changed"`) {
			t.Fatal("the stream ended with a's, before b's tools/list_changed")
		}
		for ss := range gw.servers["cluster-b"].Sessions() {
			ss.Close()
		}
		if readUntil(sc, "data:") {
			t.Error("the stream has an event after both targets' streams ended")
		}
		if err := sc.Err(); err != nil {
			t.Errorf("the stream ended with %v, want its end", err)
		}
	})
}

// TestMuxGetStreamRefused: a session none of whose targets has a GET stream gets 405; an
// unknown session 404; a client that does not accept an event stream 406.
func TestMuxGetStreamRefused(t *testing.T) {
	gw := newGateway(t, "FailClosed", targetN)
	sid := openSession(t, gw.url)
	resp := getStream(t, context.Background(), gw.url, sid)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET, n without GET stream: %d, want 405", resp.StatusCode)
	}

	gw = newGateway(t, "FailClosed", targetA, targetB)
	sid = openSession(t, gw.url)
	for ss := range gw.servers["cluster-b"].Sessions() {
		ss.Close()
	}
	resp = getStream(t, context.Background(), gw.url, sid)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET, b's session ended: %d, want 404 (the client starts anew)", resp.StatusCode)
	}

	for _, session := range []string{sid, ""} { // "": an HTTP+SSE client's stream
		req, _ := http.NewRequest(http.MethodGet, gw.url, nil)
		req.Header.Set("Accept", "application/json")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusNotAcceptable {
			t.Errorf("GET (session %q) accepting only JSON: %d, want 406", session, resp.StatusCode)
		}
	}
}

// TestMuxGetStreamStuckTarget: a target that never answers its GET cannot hold the client's
// merged stream back: past StreamOpenTimeout it fails the GET, which under FailOpen leaves it out
// (the client gets the others' stream) and under FailClosed fails the client's GET (502).
func TestMuxGetStreamStuckTarget(t *testing.T) {
	short := func(o *mux.Options) { o.StreamOpenTimeout = 50 * time.Millisecond }
	gw := newGatewayWith(t, "FailOpen", short, targetA, targetS)
	sid := openSession(t, gw.url)
	resp := getStream(t, context.Background(), gw.url, sid)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET, FailOpen, s stuck: %d, want 200 (a's stream)", resp.StatusCode)
	}

	gw = newGatewayWith(t, "FailClosed", short, targetA, targetS)
	sid = openSession(t, gw.url)
	resp = getStream(t, context.Background(), gw.url, sid)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "target s: no answer to its GET within 50ms") {
		t.Errorf("GET, FailClosed, s stuck: %d %s, want 502 naming target s", resp.StatusCode, body)
	}
}
