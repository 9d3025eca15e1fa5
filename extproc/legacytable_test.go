package extproc_test

import (
	"fmt"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// openLegacySession opens a legacy SSE GET stream on sseRoute whose server announces endpoint.
func openLegacySession(t *testing.T, h *harness, endpoint string) *extproctest.Stream {
	t.Helper()
	get := h.open(t, h.tcp, sseRoute)
	get.ResponseBodyMode = extprocfilterv3.ProcessingMode_BUFFERED
	plainContinue(t, check(t)(get.RequestHeaders(getHeaders("/sse", extproctest.LabToken), true)))
	check(t)(get.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	check(t)(get.ResponseBody([]byte("event: endpoint\ndata: "+endpoint+"\n\n"), false))
	return get
}

// postLegacy posts body to a legacy SSE session's endpoint (the server's: posted as the client
// has it, sealed); the server accepts it with 202.
func postLegacy(t *testing.T, h *harness, endpoint, body string) {
	t.Helper()
	p := h.open(t, h.unix, sseRoute)
	check(t)(p.RequestHeaders(postHeaders(extproctest.LabEndpoint(endpoint), extproctest.LabToken), false))
	check(t)(p.RequestBody([]byte(body), true))
	check(t)(p.ResponseHeaders(respHeaders("202", ""), false))
	p.Close()
}

// answerOn sends a result for id on a legacy SSE session's GET stream.
func answerOn(t *testing.T, get *extproctest.Stream, id int) {
	t.Helper()
	check(t)(get.ResponseBody([]byte(fmt.Sprintf("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"content\":[]}}\n\n", id)), false))
}

// auditOf returns the audit records of session.
func auditOf(t *testing.T, h *harness, session string) []map[string]any {
	var out []map[string]any
	for _, r := range h.audit.records(t) {
		if r["session"] == session {
			out = append(out, r)
		}
	}
	return out
}

// TestLegacySSEFloodKeepsOtherSessions: a legacy SSE session that posts more requests than
// MaxSessionRequests without their answers coming pushes out its own oldest requests, not
// another session's, even when the shared table would otherwise be full.
func TestLegacySSEFloodKeepsOtherSessions(t *testing.T) {
	const batches = 5 // of 256 requests: 1280 > MaxSessionRequests
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.MaxSessions = extproc.MaxSessionRequests + 100
	})
	victim, flood := "/message?sessionId=victim", "/message?sessionId=flood"
	vget := openLegacySession(t, h, victim)
	openLegacySession(t, h, flood)

	postLegacy(t, h, victim, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://example.com"}}}`)
	for b := range batches {
		msgs := make([]string, extproc.MaxBatchMessages)
		for i := range msgs {
			msgs[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, b*extproc.MaxBatchMessages+i)
		}
		postLegacy(t, h, flood, "["+strings.Join(msgs, ",")+"]")
	}
	answerOn(t, vget, 1)

	waitFor(t, "the victim's audit record", func() bool { return len(auditOf(t, h, "victim")) == 1 })
	checkRecord(t, auditOf(t, h, "victim")[0], map[string]any{"tool": "fetch", "outcome": "result", "jsonrpc_id": 1})
	dropped := batches*extproc.MaxBatchMessages - extproc.MaxSessionRequests
	var records []map[string]any
	waitFor(t, "the flood's dropped requests", func() bool { records = auditOf(t, h, "flood"); return len(records) == dropped })
	for i, r := range records {
		checkRecord(t, r, map[string]any{"outcome": "no_answer", "jsonrpc_id": i})
	}
}

// TestLegacySSELargeArgumentsKept: a request waiting in the legacy SSE table holds what its
// audit line needs (the arguments cut to their audit size), not its body, so a request with
// large arguments fits a table far smaller than its body and is matched with its answer.
func TestLegacySSELargeArgumentsKept(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.MaxSessionBytes = 64 << 10
	})
	endpoint := "/message?sessionId=large"
	get := openLegacySession(t, h, endpoint)
	big := strings.Repeat("x", 1<<20)
	postLegacy(t, h, endpoint, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"`+big+`"}}}`)
	answerOn(t, get, 7)
	var records []map[string]any
	waitFor(t, "the audit record", func() bool { records = auditOf(t, h, "large"); return len(records) == 1 })
	checkRecord(t, records[0], map[string]any{"tool": "fetch", "outcome": "result", "jsonrpc_id": 7, "arguments_truncated": true})
}
