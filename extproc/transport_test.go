package extproc_test

import (
	"fmt"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestTransportPerRequest: the transport a target declares (x-mcpgate-mcp) only says the route is
// MCP. Servers often serve both transports and the gateway passes each client's unchanged, so
// each request is treated as what it is, in the four combinations of declared target and client:
// a refused call is answered the way the client's transport carries answers, tools/list answers
// are filtered, the session is recorded in the metadata and the audit lines, and the refused
// call is counted in the metrics.
func TestTransportPerRequest(t *testing.T) {
	for _, route := range []extproctest.Route{sseRoute, streamableRoute} {
		t.Run("target "+route.MCP+", client streamable-http", func(t *testing.T) {
			streamableSession(t, route)
		})
		t.Run("target "+route.MCP+", client legacy sse", func(t *testing.T) {
			legacySSE(t, route, "", "/sse?sessionid=NUVADNBQ4YTSO4U2IY6VTTUUEG", "NUVADNBQ4YTSO4U2IY6VTTUUEG")
		})
	}
}

// streamableSession runs a Streamable HTTP session on route as the inspector and the go-sdk
// client do: initialize (the server names the session in its answer), notifications/initialized,
// the GET stream, tools/list, a refused tools/call, DELETE.
func streamableSession(t *testing.T, route extproctest.Route) {
	const session = "OPCAI5PJURGN4ASUWVV56SWYUW"
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	// The server names the session; the client holds it sealed for its caller (package bind).
	fromServer, withSession := hdr("mcp-session-id", session), hdr("mcp-session-id", extproctest.LabSession(session))
	wantSession := func(what string, resp *extprocv3.ProcessingResponse) {
		t.Helper()
		if got := extproctest.Metadata(resp)["session"]; got != session {
			t.Errorf("%s: metadata session %q, want %q (metadata %v)", what, got, session, extproctest.Metadata(resp))
		}
	}

	// initialize: no session yet; the answer's Mcp-Session-Id names it.
	s := h.open(t, h.tcp, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`), true)))
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream", fromServer), false))
	if got := applyHeaderMutation([]extproctest.Header{fromServer}, resp)["mcp-session-id"]; got != withSession.Value {
		t.Errorf("initialize answer: Mcp-Session-Id set to %q, want it sealed for the caller, %q", got, withSession.Value)
	}
	wantSession("initialize answer headers", resp)
	ans := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"s\",\"version\":\"1\"}}}\n\n"
	plainContinue(t, check(t)(s.ResponseBody([]byte(ans), true)))
	s.Close()

	// notifications/initialized: 202 without a body.
	s = h.open(t, h.unix, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, withSession), false))
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), true))
	plainContinue(t, resp)
	wantSession("notifications/initialized", resp)
	check(t)(s.ResponseHeaders(respHeaders("202", ""), true))
	s.Close()

	// The GET stream: a server-to-client stream, not a legacy one, even on a target that declares
	// SSE. A tools/list answer replayed on it (after a reconnection with Last-Event-ID) is filtered;
	// an endpoint event later in it is no legacy announcement.
	get := h.open(t, h.tcp, route)
	resp = check(t)(get.RequestHeaders(append(getHeaders("/mcp", extproctest.LabToken), withSession), true))
	wantSession("GET stream", resp)
	resp = check(t)(get.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	if resp.GetModeOverride().GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED {
		t.Fatalf("GET stream not STREAMED: %v", resp.GetModeOverride())
	}
	for _, ev := range []string{
		": ok\n\n",
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
		"event: endpoint\ndata: /sse?sessionid=OTHER\n\n",
	} {
		resp = check(t)(get.ResponseBody([]byte(ev), false))
		plainContinue(t, resp)
		if got := extproctest.Metadata(resp)["session"]; got != "" {
			t.Errorf("event %q set session %q on a Streamable HTTP GET stream", ev, got)
		}
	}
	// The replayed answer arrives in two pieces: the first is held back until the event is whole.
	replay := "id: 9\ndata: " + toolsListAnswer + "\n\n"
	cut := strings.Index(replay, `"get-env"`)
	r1 := check(t)(get.ResponseBody([]byte(replay[:cut]), false))
	r2 := check(t)(get.ResponseBody([]byte(replay[cut:]), false))
	if got := string(extproctest.BodyAfter(r1, []byte(replay[:cut]))) + string(extproctest.BodyAfter(r2, []byte(replay[cut:]))); got != "id: 9\ndata: "+toolsListFiltered+"\n\n" {
		t.Errorf("replayed tools/list answer = %q", got)
	}

	// tools/list: the answer in the POST's own response is filtered.
	s = h.open(t, h.unix, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, withSession), false))
	wantSession("tools/list", check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true)))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", fmt.Sprint(len(toolsListAnswer)))), false))
	resp = check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
	if got := string(extproctest.BodyAfter(resp, []byte(toolsListAnswer))); got != toolsListFiltered {
		t.Errorf("tools/list answer = %s", got)
	}
	s.Close()

	// A refused call: the gateway answers it in the POST's response; the server never sees it.
	s = h.open(t, h.tcp, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, withSession), false))
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-env","arguments":{}}}`), true))
	ir := resp.GetImmediateResponse()
	if ir.GetStatus().GetCode() != 200 || setHeaders(resp)["content-type"] != "application/json" ||
		string(ir.GetBody()) != `{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown tool: get-env"}}` {
		t.Fatalf("refused call: want an immediate 200 application/json Unknown tool error, got %v", resp)
	}
	wantSession("refused tools/call", resp)
	if md := extproctest.Metadata(resp); md["decision"] != "deny" || md["jsonrpc_error"] != "-32602" {
		t.Errorf("refused call metadata %v", md)
	}

	// DELETE ends the session.
	s = h.open(t, h.unix, route)
	resp = check(t)(s.RequestHeaders([]extproctest.Header{
		hdr(":authority", "127.0.0.1:8080"), hdr(":path", "/mcp"), hdr(":method", "DELETE"), hdr(":scheme", "http"),
		hdr("authorization", "Bearer "+extproctest.LabToken), withSession,
	}, true))
	plainContinue(t, resp)
	wantSession("DELETE", resp)
	plainContinue(t, check(t)(s.ResponseHeaders(respHeaders("204", ""), true)))
	s.Close()
	get.Close()

	waitFor(t, "4 audit records", func() bool { return len(h.audit.records(t)) == 4 })
	byMethod := map[string]map[string]any{}
	for _, r := range h.audit.records(t) {
		byMethod[fmt.Sprint(r["method"])] = r
	}
	checkRecord(t, byMethod["initialize"], map[string]any{"session": session, "outcome": "result", "http_status": 200})
	checkRecord(t, byMethod["notifications/initialized"], map[string]any{"session": session, "outcome": "notification", "http_status": 202})
	checkRecord(t, byMethod["tools/list"], map[string]any{"session": session, "outcome": "result", "http_status": 200})
	checkRecord(t, byMethod["tools/call"], map[string]any{"session": session, "tool": "get-env", "decision": "deny",
		"outcome": "error", "jsonrpc_error": -32602, "jsonrpc_id": 3, "http_status": 200})
	checkDeniedCount(t, h, route)
}
