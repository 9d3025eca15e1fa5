package extproc_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// postClosedAfterPriming posts body with headers extra on streamableRoute; the server answers with
// an event stream that holds only a priming event (an id, empty data) and ends (MCP 2025-11-25
// SSE polling: the answers come on the GET stream resumed with Last-Event-ID).
func postClosedAfterPriming(t *testing.T, h *harness, body string, extra ...extproctest.Header) {
	t.Helper()
	postStatusClosedAfterPriming(t, h, "200", body, extra...)
}

// postStatusClosedAfterPriming is postClosedAfterPriming with the HTTP status status.
func postStatusClosedAfterPriming(t *testing.T, h *harness, status, body string, extra ...extproctest.Header) {
	t.Helper()
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, extra...), false))
	check(t)(s.RequestBody([]byte(body), true))
	check(t)(s.ResponseHeaders(respHeaders(status, "text/event-stream"), false))
	plainContinue(t, check(t)(s.ResponseBody([]byte("id: e1\ndata: \n\nretry: 100\n\n"), true)))
	s.Close()
}

// resumedEvent sends ev on GET stream g and returns what the client gets.
func resumedEvent(t *testing.T, g *extproctest.Stream, ev string, eos bool) string {
	t.Helper()
	return string(extproctest.BodyAfter(check(t)(g.ResponseBody([]byte(ev), eos)), []byte(ev)))
}

// TestResumedAnswer: Streamable HTTP POSTs' event streams end after their priming events, and
// the answers come on the session's GET stream resumed with Last-Event-ID (MCP 2025-11-25,
// Resumability and Redelivery): each exchange is audited and counted once, with the outcome of
// its answer, not as no_answer; the tools/list answer on the GET is filtered, and a refused
// call's stand-in answer becomes its error.
func TestResumedAnswer(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	session := hdr("mcp-session-id", extproctest.LabSession("S1"))
	postClosedAfterPriming(t, h, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, session)
	postClosedAfterPriming(t, h, `[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get-env"}},`+
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{}}}]`, session)
	if recs := h.audit.records(t); len(recs) != 0 {
		t.Fatalf("audit records before the answers came: %v", recs)
	}

	g := h.open(t, h.unix, streamableRoute)
	check(t)(g.RequestHeaders(append(getHeaders("/mcp", extproctest.LabToken), session, hdr("last-event-id", "e1")), true))
	check(t)(g.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	toolErr := "id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[],\"isError\":true}}\n\n"
	if got := resumedEvent(t, g, toolErr, false); got != toolErr {
		t.Errorf("tool error on the resumed GET: the client gets %q, want it unchanged", got)
	}
	if got := resumedEvent(t, g, "id: e3\ndata: "+toolsListAnswer+"\n\n", false); !strings.Contains(got, toolsListFiltered) {
		t.Errorf("tools/list answer on the resumed GET: %q, want %s", got, toolsListFiltered)
	}
	if got := resumedEvent(t, g, "id: e4\ndata: {\"jsonrpc\":\"2.0\",\"id\":"+standIn("6", "get-env")+",\"result\":{}}\n\n", false); !strings.Contains(got, `"id":6`) || !strings.Contains(got, "-32602") {
		t.Errorf("refused call's stand-in answer on the resumed GET: %q, want the -32602 error with id 6", got)
	}
	resumedEvent(t, g, "id: e5\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32603,\"message\":\"boom\"}}\n\n", true)
	g.Close()

	var recs []map[string]any
	waitFor(t, "4 audit records", func() bool { recs = auditOf(t, h, "S1"); return len(recs) >= 4 })
	byID := map[float64]map[string]any{}
	for _, r := range recs {
		id, _ := r["jsonrpc_id"].(float64)
		if byID[id] != nil {
			t.Errorf("exchange %v audited twice: %v", id, recs)
		}
		byID[id] = r
		if _, ok := r["latency_ms"]; !ok {
			t.Errorf("record without latency_ms: %v", r)
		}
	}
	checkRecord(t, byID[5], map[string]any{"tool": "echo", "decision": "allow", "outcome": "tool_error", "http_status": 200})
	checkRecord(t, byID[2], map[string]any{"method": "tools/list", "outcome": "result"})
	checkRecord(t, byID[6], map[string]any{"tool": "get-env", "decision": "deny", "outcome": "error", "jsonrpc_error": -32602})
	checkRecord(t, byID[7], map[string]any{"tool": "fetch", "outcome": "error", "jsonrpc_error": -32603})
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"outcome": "no_answer"}); n != 0 {
		t.Errorf("mcpgate_mcp_requests_total{outcome=no_answer} = %v, want 0", n)
	}
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{}); n != 4 {
		t.Errorf("mcpgate_mcp_requests_total = %v, want 4", n)
	}
}

// TestResumedAnswerNeverComes: a request whose POST's event stream ended before its answer waits
// in the session table; when no answer comes it is audited no_answer once, when it leaves the
// table (pushed out by a limit, or expired). A POST without a session, or whose status is not
// 2xx, ends its exchanges at the end of its response, as before.
func TestResumedAnswerNeverComes(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.MaxSessions, c.SessionTTL = 1, 200*time.Millisecond
	})
	postClosedAfterPriming(t, h, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if recs := h.audit.records(t); len(recs) != 1 {
		t.Fatalf("sessionless request: %d audit records, want 1: %v", len(recs), recs)
	}
	checkRecord(t, h.audit.records(t)[0], map[string]any{"method": "ping", "outcome": "no_answer"})

	session := hdr("mcp-session-id", extproctest.LabSession("S1"))
	postClosedAfterPriming(t, h, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, session)
	if recs := auditOf(t, h, "S1"); len(recs) != 0 {
		t.Fatalf("audit records while the answer may still come on the GET stream: %v", recs)
	}
	postClosedAfterPriming(t, h, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, session)
	recs := auditOf(t, h, "S1")
	if len(recs) != 1 {
		t.Fatalf("after the table's limit pushed one out: %d audit records, want 1: %v", len(recs), recs)
	}
	checkRecord(t, recs[0], map[string]any{"method": "ping", "jsonrpc_id": 2, "outcome": "no_answer", "http_status": 200})
	waitFor(t, "the expired request's record", func() bool { recs = auditOf(t, h, "S1"); return len(recs) == 2 })
	checkRecord(t, recs[1], map[string]any{"method": "ping", "jsonrpc_id": 3, "outcome": "no_answer", "http_status": 200})
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"outcome": "no_answer"}); n != 3 {
		t.Errorf("mcpgate_mcp_requests_total{outcome=no_answer} = %v, want 3", n)
	}

	// An event stream with an error status: the server will not answer its requests elsewhere.
	postStatusClosedAfterPriming(t, h, "500", `{"jsonrpc":"2.0","id":4,"method":"ping"}`, hdr("mcp-session-id", extproctest.LabSession("S2")))
	if recs := auditOf(t, h, "S2"); len(recs) != 1 {
		t.Fatalf("non-2xx event stream: %d audit records at its end, want 1: %v", len(recs), recs)
	}
	checkRecord(t, auditOf(t, h, "S2")[0], map[string]any{"method": "ping", "jsonrpc_id": 4, "outcome": "no_answer", "http_status": 500})
}

// TestHTTPErrorNullID: a server that refuses a POST with an HTTP error whose JSON-RPC error has a
// null id (the TypeScript SDK's 404 "Session not found" for an expired session) answers the one
// request of the POST that awaits its answer, in a JSON body or an event stream; with several
// awaiting, none of them is taken for it.
func TestHTTPErrorNullID(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	const nullErr = `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}`
	post := func(session, body, status, ct, answer string) {
		t.Helper()
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession(session))), false))
		check(t)(s.RequestBody([]byte(body), true))
		check(t)(s.ResponseHeaders(respHeaders(status, ct), false))
		if got := string(extproctest.BodyAfter(check(t)(s.ResponseBody([]byte(answer), true)), []byte(answer))); got != answer {
			t.Errorf("the client gets %q, want the server's %q", got, answer)
		}
		s.Close()
	}
	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}`
	post("json", call, "404", "application/json", nullErr)
	post("sse", call, "200", "text/event-stream", "event: message\ndata: "+nullErr+"\n\n")
	post("two", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`, "400", "application/json", nullErr)

	waitFor(t, "4 audit records", func() bool { return len(h.audit.records(t)) == 4 })
	checkRecord(t, auditOf(t, h, "json")[0], map[string]any{"tool": "echo", "outcome": "error", "jsonrpc_error": -32001, "http_status": 404})
	checkRecord(t, auditOf(t, h, "sse")[0], map[string]any{"tool": "echo", "outcome": "error", "jsonrpc_error": -32001, "http_status": 200})
	for _, r := range auditOf(t, h, "two") {
		checkRecord(t, r, map[string]any{"method": "ping", "outcome": "no_answer", "jsonrpc_error": nil, "http_status": 400})
	}
}
