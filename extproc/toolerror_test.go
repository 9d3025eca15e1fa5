package extproc_test

import (
	"fmt"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// A tools/call answered with a result whose isError is true (MCP reports a tool's failure so, not
// as a JSON-RPC error) is audited and counted with outcome tool_error; the answer passes untouched.

// toolFailed is a failed fetch's answer; its text holds `"isError":true` too, which is no member.
const toolFailed = `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"fetch: {\"isError\":true} 502 from upstream"}],"isError":true}}`

// toolErrorRecords waits for n audit records and returns them by JSON-RPC id.
func toolErrorRecords(t *testing.T, h *harness, n int) map[string]map[string]any {
	t.Helper()
	waitFor(t, fmt.Sprint(n, " audit records"), func() bool { return len(h.audit.records(t)) == n })
	out := map[string]map[string]any{}
	for _, r := range h.audit.records(t) {
		out[fmt.Sprint(r["jsonrpc_id"])] = r
	}
	return out
}

// checkToolErrors fails unless the metrics counted n tools/call with outcome tool_error.
func checkToolErrors(t *testing.T, h *harness, n float64) {
	t.Helper()
	if got := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "decision": "allow", "outcome": "tool_error"}); got != n {
		t.Errorf("mcpgate_mcp_requests_total{outcome=tool_error} = %v, want %v", got, n)
	}
}

// TestToolErrorJSON: JSON answers. Only a true isError member of a tools/call result counts: not
// the words in the tool's text, not isError false, not a nested member, not another method's result.
func TestToolErrorJSON(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	call := `"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}`
	for _, tc := range []struct{ id, request, answer, outcome string }{
		{"3", call, toolFailed, "tool_error"},
		{"4", call, `{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"{\"isError\":true}"}],"isError":false}}`, "result"},
		{"5", call, `{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"\"isError\":true"}],"structuredContent":{"isError":true}}}`, "result"},
		{"6", `"method":"ping"`, `{"jsonrpc":"2.0","id":6,"result":{"isError":true}}`, "result"},
	} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S1"))), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":`+tc.id+`,`+tc.request+`}`), true)))
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		resp := check(t)(s.ResponseBody([]byte(tc.answer), true))
		plainContinue(t, resp)
		if md := extproctest.Metadata(resp); md["jsonrpc_error"] != "" || md["outcome"] != tc.outcome {
			t.Errorf("answer %s: metadata %v: want outcome %s (for the access log), no JSON-RPC error", tc.id, md, tc.outcome)
		}
		s.Close()
	}
	recs := toolErrorRecords(t, h, 4)
	checkRecord(t, recs["3"], map[string]any{"tool": "fetch", "decision": "allow", "outcome": "tool_error", "http_status": 200})
	if _, ok := recs["3"]["jsonrpc_error"]; ok {
		t.Errorf("tool error audited with a JSON-RPC error: %v", recs["3"])
	}
	checkRecord(t, recs["4"], map[string]any{"outcome": "result"})
	checkRecord(t, recs["5"], map[string]any{"outcome": "result"})
	checkRecord(t, recs["6"], map[string]any{"method": "ping", "outcome": "result"})
	checkToolErrors(t, h, 1)
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"outcome": "result"}); n != 3 {
		t.Errorf("mcpgate_mcp_requests_total{outcome=result} = %v, want 3", n)
	}
}

// TestToolErrorSSESplit: an SSE answer cut inside the isError member's name, between its colon
// and value, and inside true, reaches the client unchanged (under tool rules held back until the
// event is whole) and is audited as a tool error.
func TestToolErrorSSESplit(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.unix, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}}`), true))
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	if resp.GetModeOverride().GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED {
		t.Fatalf("mode_override = %v, want response STREAMED", resp.GetModeOverride())
	}
	ev := "event: message\r\nid: 1\r\ndata: " + toolFailed + "\r\n\r\n"
	member := strings.LastIndex(ev, `"isError":true`)
	cuts := []int{member + 4, member + len(`"isError":`), member + len(`"isError":tr`), len(ev) - 1}
	var chunks []string
	prev := 0
	for _, c := range append(cuts, len(ev)) {
		chunks = append(chunks, ev[prev:c])
		prev = c
	}
	if got := sendChunks(t, s, chunks, true); got != ev {
		t.Errorf("the client got %q, want %q", got, ev)
	}
	s.Close()
	recs := toolErrorRecords(t, h, 1)
	checkRecord(t, recs["3"], map[string]any{"tool": "fetch", "outcome": "tool_error", "http_status": 200})
	checkToolErrors(t, h, 1)
}

// TestToolErrorBatch: in a batch answer each call gets its own outcome; a refused call, whose ping
// the server answers, stays an error whatever that answer holds.
func TestToolErrorBatch(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	body := `[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}},` +
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"isError"}}},` +
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get-env"}},` +
		`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo"}}]`
	check(t)(s.RequestBody([]byte(body), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	answer := `[{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"isError"}],"isError":false}},` + toolFailed +
		`,{"jsonrpc":"2.0","id":` + standIn(`5`, "get-env") + `,"result":{"isError":true}},{"jsonrpc":"2.0","id":6,"error":{"code":-32603,"message":"x"}}]`
	resp := check(t)(s.ResponseBody([]byte(answer), true))
	want := strings.Replace(answer, `{"jsonrpc":"2.0","id":`+standIn(`5`, "get-env")+`,"result":{"isError":true}}`, `{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"Unknown tool: get-env"}}`, 1)
	if got := string(extproctest.BodyAfter(resp, []byte(answer))); got != want {
		t.Errorf("response body = %s\nwant %s", got, want)
	}
	s.Close()
	recs := toolErrorRecords(t, h, 4)
	checkRecord(t, recs["3"], map[string]any{"tool": "fetch", "decision": "allow", "outcome": "tool_error"})
	checkRecord(t, recs["4"], map[string]any{"tool": "echo", "decision": "allow", "outcome": "result"})
	checkRecord(t, recs["5"], map[string]any{"tool": "get-env", "decision": "deny", "outcome": "error", "jsonrpc_error": -32602})
	checkRecord(t, recs["6"], map[string]any{"tool": "echo", "decision": "allow", "outcome": "error", "jsonrpc_error": -32603})
	checkToolErrors(t, h, 1)
}

// TestToolErrorLegacySSE: on the legacy SSE transport the answer comes on the session's GET
// stream, in pieces; it reaches the client unchanged and is audited as a tool error with the
// POST's status.
func TestToolErrorLegacySSE(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	get := h.open(t, h.tcp, sseRoute)
	check(t)(get.RequestHeaders(getHeaders("/sse", extproctest.LabToken), true))
	check(t)(get.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	check(t)(get.ResponseBody([]byte("event: endpoint\ndata: /message?sessionId=L1\n\n"), false))

	post := h.open(t, h.unix, sseRoute)
	check(t)(post.RequestHeaders(postHeaders(extproctest.LabEndpoint("/message?sessionId=L1"), extproctest.LabToken), false))
	plainContinue(t, check(t)(post.RequestBody([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}}`), true)))
	check(t)(post.ResponseHeaders(respHeaders("202", ""), false))
	post.Close()

	ev := "event: message\ndata: " + toolFailed + "\n\n"
	cut := strings.LastIndex(ev, `isError`) + 2
	if got := sendChunks(t, get, []string{ev[:cut], ev[cut:]}, false); got != ev {
		t.Errorf("the client got %q, want %q", got, ev)
	}
	get.Close()
	recs := toolErrorRecords(t, h, 1)
	checkRecord(t, recs["3"], map[string]any{"tool": "fetch", "session": "L1", "outcome": "tool_error", "http_status": 202})
	checkToolErrors(t, h, 1)
}
