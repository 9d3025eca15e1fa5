package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestBridgedSSETarget: server-everything over legacy SSE only (testdata/e2e-backends.yaml, the
// backend everything-sse with one SSE target) serves a Streamable HTTP client through the
// gateway, which bridges it through mcpgate's mux (docs/design.md, Multiplexing): the inspector
// CLI and the go-sdk client list the server's tools under their own names, call them, receive
// the call's progress notifications, and answer the server's elicitation request, which the
// server sends on its SSE stream during the call. A legacy SSE client still reaches the server
// as it is (the lab's own inspector entry). The front hop's access log line names the backend
// and target, and a closed session is gone (404).
func TestBridgedSSETarget(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr(s.ports.everythingSSE) + "/mcp"

	t.Run("inspector", func(t *testing.T) {
		expectInspectorEcho(t, url, "http")
		// The lab's way still works: a legacy SSE client passes through to the server.
		names, err := toolNames(s.inspector.run("http://"+addr(s.ports.everythingSSE)+"/sse", "--transport", "sse", "--method", "tools/list"))
		if err != nil || !slices.Contains(names, "echo") {
			t.Errorf("tools/list over legacy SSE = %v, %v; want echo among them", names, err)
		}
	})

	t.Run("go-sdk client", func(t *testing.T) {
		ctx, cs := expectEverything(t, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1})
		if cs.ID() == "" {
			t.Fatal("the bridged session has no Mcp-Session-Id")
		}

		eventually(t, "the front hop's access log line of the bridged call", func() error {
			lines, err := jsonLines(s.stdoutLog())
			if err != nil {
				return err
			}
			for _, l := range lines {
				md, _ := l["mcpgate"].(map[string]any)
				if l["request_id"] != nil && md["tool"] == "echo" && md["backend"] == "agentgateway-system/everything-sse" &&
					md["target"] == "everything" && md["decision"] == "allow" && fmt.Sprint(l["response_code"]) == "200" {
					return nil
				}
			}
			return fmt.Errorf("%s: no access log line of tools/call echo with mcpgate.backend agentgateway-system/everything-sse, target everything, decision allow, 200", s.stdoutLog())
		})

		// Closing the session (DELETE) ends it: a request naming it gets 404.
		id := cs.ID()
		if err := cs.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST in the closed session: %d, want 404", resp.StatusCode)
		}
	})
}

// textOf joins the text contents of a tool's result.
func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// TestBridgedStreamableTarget: server-everything over Streamable HTTP only (the backend
// everything-http, whose HTTPRoute sends /sse to it in a rule of its own) serves HTTP+SSE clients
// at /sse through the gateway, which bridges them through mcpgate's mux (docs/design.md,
// Multiplexing), as agentgateway serves /sse whatever its target speaks: the inspector CLI over
// SSE lists and calls the server's tools; the go-sdk SSE client calls them, receives a call's
// progress notifications and answers the server's elicitation request, each on its stream. The
// front hop's access log line names the backend and target.
func TestBridgedStreamableTarget(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr(s.ports.everythingHTTP) + "/sse"

	t.Run("inspector", func(t *testing.T) {
		expectInspectorEcho(t, url, "sse")
	})

	t.Run("go-sdk client", func(t *testing.T) {
		expectEverything(t, &mcp.SSEClientTransport{Endpoint: url})
		eventually(t, "the front hop's access log line of the bridged call", func() error {
			lines, err := jsonLines(s.stdoutLog())
			if err != nil {
				return err
			}
			for _, l := range lines {
				md, _ := l["mcpgate"].(map[string]any)
				if md["tool"] == "echo" && md["backend"] == "agentgateway-system/everything-http" && md["target"] == "everything" &&
					md["decision"] == "allow" && strings.HasPrefix(fmt.Sprint(l["path"]), "/sse") && fmt.Sprint(l["response_code"]) == "202" {
					return nil
				}
			}
			return fmt.Errorf("%s: no access log line of a POST to /sse with tools/call echo, mcpgate.backend agentgateway-system/everything-http, target everything, decision allow, 202", s.stdoutLog())
		})
	})
}

// expectEverything connects a go-sdk client over transport to server-everything through the
// gateway and calls echo, trigger-long-running-operation with a progress token (three progress
// notifications, one per step, on the server's stream) and trigger-elicitation-request (the
// server's elicitation request during the call, which the client answers). The session ends with
// the test.
func expectEverything(t *testing.T, transport mcp.Transport) (context.Context, *mcp.ClientSession) {
	t.Helper()
	var progress atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "elicited through the bridge"}}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "go-sdk"}})
	if err != nil || res.IsError || !strings.Contains(textOf(res), "Echo: go-sdk") {
		t.Fatalf("tools/call echo = %+v, %v", res, err)
	}
	params := &mcp.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 0.3, "steps": 3}}
	params.SetProgressToken("e2e-progress")
	res, err = cs.CallTool(ctx, params)
	if err != nil || res.IsError || !strings.Contains(textOf(res), "Long running operation completed") {
		t.Fatalf("tools/call trigger-long-running-operation = %+v, %v", res, err)
	}
	// The client runs its handler apart from the call, so the last one may come after it.
	eventually(t, "the call's three progress notifications", func() error {
		if n := progress.Load(); n != 3 {
			return fmt.Errorf("progress notifications of the call: %d, want 3 (the server sends one per step on its stream)", n)
		}
		return nil
	})
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "trigger-elicitation-request"})
	if err != nil || res.IsError || !strings.Contains(textOf(res), "Name: elicited through the bridge") {
		t.Fatalf("tools/call trigger-elicitation-request = %+v, %v; want the client's elicitation answer in the result", res, err)
	}
	return ctx, cs
}

// expectInspectorEcho runs the inspector CLI over transport ("http", "sse") against
// server-everything through the gateway at url: tools/list names echo and
// trigger-long-running-operation (unprefixed), and tools/call echo answers.
func expectInspectorEcho(t *testing.T, url, transport string) {
	t.Helper()
	eventually(t, "tools/list over "+transport, func() error {
		names, err := toolNames(env.inspector.run(url, "--transport", transport, "--method", "tools/list"))
		if err != nil {
			return err
		}
		if !slices.Contains(names, "echo") || !slices.Contains(names, "trigger-long-running-operation") {
			return fmt.Errorf("tools/list = %v, want echo and trigger-long-running-operation among them (unprefixed)", names)
		}
		return nil
	})
	r := env.inspector.run(url, "--transport", transport, "--method", "tools/call", "--tool-name", "echo", "--tool-args-json", `{"message":"bridged"}`)
	var res toolResult
	if r.code != 0 {
		t.Fatalf("tools/call echo failed\n%s", r)
	}
	if err := r.result(&res); err != nil {
		t.Fatal(err)
	}
	if res.IsError || !strings.Contains(res.text(), "Echo: bridged") {
		t.Errorf("tools/call echo = isError %v %q, want Echo: bridged", res.IsError, res.text())
	}
}
