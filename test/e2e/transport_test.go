package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestTransportPerRequest: the lab's target declares SSE, but the fetch server also serves
// Streamable HTTP at /mcp, and mcpgate proxies each client's transport unchanged (the lab's
// inspector config has both). Under an MCP rule that hides fetch (testdata/fetch-tools.yaml),
// each client gets the answers of the transport it speaks: tools/list without fetch, a call of
// fetch refused with JSON-RPC -32602 "Unknown tool: fetch" (Streamable HTTP: in the POST's own
// answer; legacy SSE: on the GET stream), and its session in the access log and the audit line.
func TestTransportPerRequest(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	if err := s.lab.putTestdata(fileFetchTools); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.lab.remove(fileFetchTools); err != nil {
			t.Error(err)
		}
	})
	for _, srv := range []string{srvFetchHTTP, srvFetchSSE} {
		t.Run("inspector "+srv, func(t *testing.T) {
			eventually(t, "tools/list hides fetch", func() error {
				return s.expectTools(srv, "", []string{})
			})
		})
	}
	gw := "http://" + addr(s.ports.gateway)
	for _, c := range []struct {
		name      string
		transport mcp.Transport
		path      string // the POSTs' path (legacy SSE: the endpoint's, before its query)
	}{
		{"streamable-http", &mcp.StreamableClientTransport{Endpoint: gw + "/mcp", MaxRetries: -1}, "/mcp"},
		{"sse", &mcp.SSEClientTransport{Endpoint: gw + "/sse"}, "/sse"},
	} {
		t.Run("go-sdk client "+c.name, func(t *testing.T) {
			ctx, cs := connectClient(t, c.transport)
			tools, err := cs.ListTools(ctx, nil)
			if err != nil || len(tools.Tools) != 0 {
				t.Fatalf("tools/list = %+v, %v; want no tools (fetch is hidden)", tools, err)
			}
			if err := expectUnknownTool(ctx, cs, "fetch", map[string]any{"url": s.pageURL}); err != nil {
				t.Fatal(err)
			}
			// The client holds a Streamable HTTP session sealed by the gateway; the logs name the
			// server's. (A legacy SSE client does not know its session.)
			var want string
			if cs.ID() != "" {
				if want, err = s.serverSession(cs.ID()); err != nil {
					t.Fatal(err)
				}
			}
			var session string
			eventually(t, "access log line of the refused call", func() error {
				session, err = s.refusedFetchLine(c.path, want)
				return err
			})
			eventually(t, "audit line of the refused call", func() error {
				return s.refusedFetchAudit(session)
			})
		})
	}
}

// refusedFetchLine finds the data plane's access-log line of a POST to path that carried a refused
// tools/call of fetch in session (legacy SSE, session "": the client does not know its session,
// and the endpoint's query, which names it, is not logged: any) and returns the line's
// mcpgate.session, which must be that session. A Streamable HTTP POST is answered by the
// gateway (200, jsonrpc_error -32602); a legacy one is accepted (202) and answered on the stream.
func (s *suite) refusedFetchLine(path, session string) (string, error) {
	lines, err := jsonLines(s.stdoutLog())
	if err != nil {
		return "", err
	}
	var seen []string
	for _, l := range lines {
		md, _ := l["mcpgate"].(map[string]any)
		p, _ := l["path"].(string)
		if l["request_id"] == nil || l["method"] != "POST" || md["method"] != "tools/call" || md["tool"] != "fetch" || md["decision"] != "deny" {
			continue
		}
		u, err := url.Parse(p)
		if err != nil || u.Path != path {
			continue
		}
		code, rpcErr := "200", "-32602"
		if session == "" {
			code, rpcErr = "202", "<nil>"
		}
		got, _ := md["session"].(string)
		if got != "" && (session == "" || got == session) && fmt.Sprint(l["response_code"]) == code && fmt.Sprint(md["jsonrpc_error"]) == rpcErr {
			return got, nil
		}
		seen = append(seen, fmt.Sprintf("%s %s session=%s response_code=%v jsonrpc_error=%v", l["method"], p, got, l["response_code"], md["jsonrpc_error"]))
	}
	return "", fmt.Errorf("%s: no access log line of POST %s with the refused tools/call of fetch in session %q (answered as its transport answers it); lines of refused fetch calls: %s",
		s.stdoutLog(), path, session, strings.Join(seen, "; "))
}

// refusedFetchAudit finds ext_proc's audit line of the refused call of fetch in session.
func (s *suite) refusedFetchAudit(session string) error {
	lines, err := jsonLines(s.stdoutLog())
	if err != nil {
		return err
	}
	for _, l := range lines {
		if l["request_id"] == nil && l["method"] == "tools/call" && l["tool"] == "fetch" && l["session"] == session &&
			l["decision"] == "deny" && l["outcome"] == "error" && fmt.Sprint(l["jsonrpc_error"]) == "-32602" {
			return nil
		}
	}
	return fmt.Errorf("%s: no audit line of tools/call fetch in session %s with decision deny, outcome error, jsonrpc_error -32602", s.stdoutLog(), session)
}
