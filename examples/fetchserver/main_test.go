package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// connect starts the fetch server behind httptest and returns a go-sdk client session over the
// given transport ("sse" or "mcp").
func connect(t *testing.T, transport string) *mcp.ClientSession {
	t.Helper()
	srv := httptest.NewServer(handler(newServer(&http.Client{})))
	t.Cleanup(srv.Close)
	var tr mcp.Transport
	switch transport {
	case "sse":
		tr = &mcp.SSEClientTransport{Endpoint: srv.URL + "/sse"}
	case "mcp":
		tr = &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	client := mcp.NewClient(&mcp.Implementation{Name: "fetchserver-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connect over %s: %v", transport, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func callFetch(t *testing.T, cs *mcp.ClientSession, url string) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fetch", Arguments: map[string]any{"url": url}})
	if err != nil {
		t.Fatalf("tools/call fetch %s: %v", url, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestFetchOverBothTransports(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/get":
			fmt.Fprint(w, `{"url": "/get", "hello": "world"}`)
		case "/big":
			fmt.Fprint(w, strings.Repeat("x", maxPageBytes+100))
		default:
			http.NotFound(w, r)
		}
	}))
	defer page.Close()

	for _, transport := range []string{"sse", "mcp"} {
		t.Run(transport, func(t *testing.T) {
			cs := connect(t, transport)

			tools, err := cs.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatalf("tools/list: %v", err)
			}
			if len(tools.Tools) != 1 || tools.Tools[0].Name != "fetch" {
				t.Fatalf("tools/list = %+v, want the one tool fetch", tools.Tools)
			}
			if got := fmt.Sprint(tools.Tools[0].InputSchema); !strings.Contains(got, "url") {
				t.Errorf("fetch input schema %s does not name url", got)
			}

			res := callFetch(t, cs, page.URL+"/get")
			if res.IsError || text(res) != `{"url": "/get", "hello": "world"}` {
				t.Errorf("fetch /get = isError %v, %q", res.IsError, text(res))
			}

			res = callFetch(t, cs, page.URL+"/big")
			if res.IsError || len(text(res)) != maxPageBytes {
				t.Errorf("fetch /big = isError %v, %d bytes, want the first %d", res.IsError, len(text(res)), maxPageBytes)
			}

			for url, want := range map[string]string{
				page.URL + "/missing":     "404 Not Found",
				"file:///etc/passwd":      "want an absolute http or https URL",
				"http://127.0.0.1:1/nope": "connection refused",
			} {
				res := callFetch(t, cs, url)
				if !res.IsError || !strings.Contains(text(res), want) {
					t.Errorf("fetch %s = isError %v, %q; want an error with %q", url, res.IsError, text(res), want)
				}
			}
		})
	}
}
