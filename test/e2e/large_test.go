package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// fileLarge is testdata/e2e-large.yaml, a Gateway of its own beside the lab's.
const fileLarge = "e2e-large.yaml"

// bigAnswerBytes is the text of the tool big: more than the gateway's body limit (4 MiB) and
// its data plane's buffer (4 MiB + 64 KiB).
const bigAnswerBytes = 6 << 20

// jsonServer is a go-sdk MCP server in JSON response mode with the tools big (a text of
// bigAnswerBytes) and hidden. It records whether an answer over the buffer limit went out
// without content-length (chunked), the case under test.
type jsonServer struct {
	srv          *httptest.Server
	mu           sync.Mutex
	chunkedLarge bool
}

func startJSONServer(t *testing.T) *jsonServer {
	js := &jsonServer{}
	server := mcp.NewServer(&mcp.Implementation{Name: "json-answers", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "big", Description: "answers with a large text"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("b", bigAnswerBytes)}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "hidden", Description: "hidden by the rule"},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{JSONResponse: true})
	js.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		if cw.n > bigAnswerBytes && w.Header().Get("Content-Length") == "" {
			js.mu.Lock()
			js.chunkedLarge = true
			js.mu.Unlock()
		}
	}))
	t.Cleanup(js.srv.Close)
	return js
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += n
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// TestLargeChunkedJSONAnswer: a go-sdk server in JSON response mode answers a tools/call with a
// result larger than the body limit, chunked (no content-length). Buffered whole, it overflowed
// the data plane's buffer and the client got a bare 500. Under an MCP rule the gateway cannot
// read it, so the client gets the JSON-RPC -32603 error for its call; without a policy the
// answer passes whole, unread, recorded no_answer. A small answer (with its content-length) is
// still filtered under the rule.
func TestLargeChunkedJSONAnswer(t *testing.T) {
	js := startJSONServer(t)
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileLarge, map[string]string{"GATEWAY_PORT": strconv.Itoa(free[0]), "SERVER_PORT": portOf(js.srv)})
	base := "http://" + addr(free[0])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e-large", Version: "1"}, nil)

	// Under the rule: once the policy is in force, tools/list shows big only.
	var ruled *mcp.ClientSession
	eventually(t, "tools/list through the ruled backend, filtered", func() error {
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/ruled", MaxRetries: -1}, nil)
		if err != nil {
			return err
		}
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			cs.Close()
			return err
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		if !slices.Equal(names, []string{"big"}) {
			cs.Close()
			return fmt.Errorf("tools %v, want [big]", names)
		}
		ruled = cs
		return nil
	})
	defer ruled.Close()
	_, err = ruled.CallTool(ctx, &mcp.CallToolParams{Name: "big"})
	if err == nil || !strings.Contains(err.Error(), "could not be inspected") {
		t.Errorf("ruled: tools/call big gave error %v, want the gateway's -32603 error", err)
	}
	// The client above reads the first JSON value of the answer; the answer is that error alone,
	// not followed by the rest of the server's (a reply replacing only the piece Envoy sent).
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/ruled", strings.NewReader(`{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"big","arguments":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("accept", "application/json, text/event-stream")
	req.Header.Set("mcp-session-id", ruled.ID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !json.Valid(body) || !strings.Contains(string(body), `"code":-32603`) {
		t.Errorf("ruled: raw tools/call big: %d, %d bytes (%v), %.200q...; want 200 and the -32603 error alone", resp.StatusCode, len(body), err, body)
	}

	// Without a policy: the answer passes whole.
	open, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/open", MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	res, err := open.CallTool(ctx, &mcp.CallToolParams{Name: "big"})
	if err != nil {
		t.Fatalf("open: tools/call big: %v", err)
	}
	if text, _ := res.Content[0].(*mcp.TextContent); text == nil || len(text.Text) != bigAnswerBytes {
		t.Errorf("open: the result's text is not the %d bytes the server sent", bigAnswerBytes)
	}
	js.mu.Lock()
	chunked := js.chunkedLarge
	js.mu.Unlock()
	if !chunked {
		t.Fatal("the server sent no large answer without content-length: the test shows nothing")
	}

	eventually(t, "the audit lines of both calls", func() error {
		lines, err := jsonLines(env.stdoutLog())
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, l := range lines {
			if l["request_id"] == nil && l["method"] == "tools/call" && l["tool"] == "big" && strings.HasPrefix(fmt.Sprint(l["route"]), "e2e-large/") {
				got[fmt.Sprint(l["route"])] = fmt.Sprintf("%v %v", l["outcome"], l["jsonrpc_error"])
			}
		}
		want := map[string]string{"e2e-large/ruled/rule/0": "error -32603", "e2e-large/open/rule/0": "no_answer <nil>"}
		for route, w := range want {
			if got[route] != w {
				return fmt.Errorf("audit of tools/call big by route %v, want %v", got, want)
			}
		}
		return nil
	})
}
