package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestProtocolEraAuto: the inspector CLI with `--protocol-era auto` (a client of MCP 2026-07-28
// that also speaks the initialize era) lists and calls tools through the gateway on the routes the
// mux serves, a multiplexed backend (testdata/e2e-mux.yaml) and the bridged SSE target
// (testdata/e2e-backends.yaml, everything-sse), as on a direct Streamable HTTP route
// (everything-http). The client first POSTs server/discover without a session; these targets
// (but the conformance server's stateful handler, whose versions lack 2026-07-28) speak only the
// initialize era, so the mux answers that probe with a JSON-RPC error (HTTP 400, as the pinned
// server-everything does), which tells the client to fall back to initialize (docs/design.md,
// "Protocol eras"). With `--protocol-era modern` (no fallback) the multiplexed route fails as a
// server of the initialize era does (TestProtocolEraModern: one whose targets all offer
// 2026-07-28 serves it).
func TestProtocolEraAuto(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	muxPort := serveMux(t)
	routes := []struct {
		name    string
		url     string
		backend string // the audit lines' backend
		list    []string
		tool    string
		args    string
		want    string
	}{
		{"multiplexed backend", "http://" + addr(muxPort) + "/mcp", "e2e-mux/tools",
			[]string{"fetch_fetch", "everything_echo", "conformance_test_simple_text"},
			"everything_echo", `{"message":"auto through the mux"}`, "Echo: auto through the mux"},
		{"bridged SSE target", "http://" + addr(s.ports.everythingSSE) + "/mcp", "agentgateway-system/everything-sse",
			[]string{"echo"}, "echo", `{"message":"auto through the bridge"}`, "Echo: auto through the bridge"},
		{"direct Streamable HTTP target", "http://" + addr(s.ports.everythingHTTP) + "/mcp", "agentgateway-system/everything-http",
			[]string{"echo"}, "echo", `{"message":"auto direct"}`, "Echo: auto direct"},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			inspect := func(era string, args ...string) inspectorRun {
				return s.inspector.run(append([]string{rt.url, "--transport", "http", "--protocol-era", era}, args...)...)
			}
			eventually(t, "tools/list with --protocol-era auto", func() error {
				names, err := toolNames(inspect("auto", "--method", "tools/list"))
				if err != nil {
					return err
				}
				for _, want := range rt.list {
					if !slices.Contains(names, want) {
						return fmt.Errorf("tools/list = %v, want %s among them", names, want)
					}
				}
				return nil
			})
			r := inspect("auto", "--method", "tools/call", "--tool-name", rt.tool, "--tool-args-json", rt.args)
			if r.code != 0 {
				t.Fatalf("tools/call %s with --protocol-era auto failed\n%s", rt.tool, r)
			}
			var res toolResult
			if err := r.result(&res); err != nil {
				t.Fatal(err)
			}
			if res.IsError || !strings.Contains(res.text(), rt.want) {
				t.Errorf("tools/call %s = isError %v %q, want %q", rt.tool, res.IsError, res.text(), rt.want)
			}
			// The client's probe reached the route and was refused with a JSON-RPC error, so the
			// client fell back to initialize (the call above).
			expectRefusedDiscover(t, rt.backend)
		})
	}

	t.Run("multiplexed backend, --protocol-era modern", func(t *testing.T) {
		r := s.inspector.run(routes[0].url, "--transport", "http", "--protocol-era", "modern", "--method", "tools/list")
		if r.code == 0 {
			t.Fatalf("tools/list with --protocol-era modern succeeded; the mux serves MCP 2026-07-28 only when every target offers it, and these do not\n%s", r)
		}
		e, err := r.failure()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Message, "did not offer pinned protocol version 2026-07-28") {
			t.Errorf("tools/list with --protocol-era modern: %q, want the client's \"did not offer pinned protocol version 2026-07-28\" (a server of the initialize era)\n%s", e.Message, r)
		}
	})
}

// expectRefusedDiscover waits for an audit line of a server/discover on backend answered with a
// JSON-RPC error and HTTP 400.
func expectRefusedDiscover(t *testing.T, backend string) {
	t.Helper()
	eventually(t, "audit line of server/discover on "+backend+" answered with an error", func() error {
		lines, err := jsonLines(env.stdoutLog())
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l["request_id"] == nil && l["method"] == "server/discover" && l["backend"] == backend &&
				l["jsonrpc_error"] != nil && fmt.Sprint(l["http_status"]) == "400" {
				return nil
			}
		}
		return fmt.Errorf("%s: no audit line of server/discover with backend %s, a jsonrpc_error and http_status 400", env.stdoutLog(), backend)
	})
}

// TestProtocolEraModern: the inspector CLI pinned to MCP 2026-07-28 (`--protocol-era modern`, no
// fallback) lists and calls tools through the gateway on a multiplexed backend
// (testdata/e2e-mux-modern.yaml) of two go-sdk conformance servers with the stateless handler,
// which offer that version: the mux answers server/discover with it and serves the sessionless
// requests (docs/design.md, "Protocol eras"). The front hop judges the prefixed call as its
// target's. On a direct route (a backend with one of them alone, no mux) the version passes
// through to the server.
func TestProtocolEraModern(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	free, err := freePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"conformance-stateless-one", "conformance-stateless-two"} {
		p, err := s.startProc(procSpec{name: name, args: []string{s.bin.conformance, "-http", addr(free[i+1]), "-stateless=true"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := waitTCP(p, addr(free[i+1]), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	serveTestdata(t, "e2e-mux-modern.yaml", map[string]string{
		"GATEWAY_PORT": strconv.Itoa(free[0]),
		"ONE_PORT":     strconv.Itoa(free[1]),
		"TWO_PORT":     strconv.Itoa(free[2]),
		"DIRECT_PORT":  strconv.Itoa(free[3]),
	})
	for _, route := range []struct {
		name, port, gateway, target, list, call string
	}{
		{"multiplexed", addr(free[0]), "e2e-mux-modern/modern", "two", "one_test_simple_text", "two_test_simple_text"},
		{"direct", addr(free[3]), "e2e-mux-modern/direct", "one", "test_simple_text", "test_simple_text"},
	} {
		t.Run(route.name, func(t *testing.T) {
			inspect := func(args ...string) inspectorRun {
				return s.inspector.run(append([]string{"http://" + route.port + "/mcp", "--transport", "http", "--protocol-era", "modern"}, args...)...)
			}
			eventually(t, "tools/list with --protocol-era modern", func() error {
				r := inspect("--method", "tools/list")
				names, err := toolNames(r)
				if err != nil {
					return fmt.Errorf("%w\n%s", err, r)
				}
				for _, want := range []string{route.list, route.call} {
					if !slices.Contains(names, want) {
						return fmt.Errorf("tools/list = %v, want %s among them", names, want)
					}
				}
				return nil
			})
			r := inspect("--method", "tools/call", "--tool-name", route.call)
			if r.code != 0 {
				t.Fatalf("tools/call %s with --protocol-era modern failed\n%s", route.call, r)
			}
			var res toolResult
			if err := r.result(&res); err != nil {
				t.Fatal(err)
			}
			if res.IsError || !strings.Contains(res.text(), "simple text response") {
				t.Errorf("tools/call %s = isError %v %q, want the conformance server's simple text", route.call, res.IsError, res.text())
			}
			expectAllowedCall(t, route.gateway, route.target, route.call)
		})
		t.Run(route.name+" input_required", func(t *testing.T) {
			expectInputRequired(t, "http://"+route.port+"/mcp", strings.TrimSuffix(route.call, "test_simple_text"))
		})
	}
}

// expectInputRequired: a go-sdk client of MCP 2026-07-28 calls, through the gateway at url, the
// conformance server's tools that answer a first call with an input_required result (SEP-2322,
// multi round-trip requests): one that asks for an elicitation, one that also hands the client a
// requestState to send back. The client answers in band and calls again with inputResponses
// (and the requestState); the second call's result is the server's answer to them. prefix is
// what the route puts before the server's tool names.
func expectInputRequired(t *testing.T, url, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var asked atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Add(1)
			if req.Params.Message == "Please confirm" {
				return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"ok": true}}, nil
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "mcpgate"}}, nil
		},
	})
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("protocol version %q, want 2026-07-28 (the era whose results may be input_required)", v)
	}
	for _, c := range []struct{ tool, want string }{
		{"test_input_required_result_elicitation", "Hello, mcpgate!"},
		{"test_input_required_result_request_state", "state-ok: requestState received and confirmation accepted"},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: prefix + c.tool})
		if err != nil || res.IsError || textOf(res) != c.want {
			t.Errorf("tools/call %s = %+v, %v; want %q", prefix+c.tool, res, err, c.want)
		}
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("the client answered %d input requests, want 2 (one per tool)", n)
	}
}
