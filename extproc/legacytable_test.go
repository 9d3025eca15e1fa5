package extproc_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// postLegacyOpen posts body to a legacy SSE session's endpoint and returns the POST's stream,
// before its response headers.
func postLegacyOpen(t *testing.T, h *harness, endpoint, body string) *extproctest.Stream {
	t.Helper()
	p := h.open(t, h.unix, sseRoute)
	check(t)(p.RequestHeaders(postHeaders(extproctest.LabEndpoint(endpoint), extproctest.LabToken), false))
	check(t)(p.RequestBody([]byte(body), true))
	return p
}

// auditOfID returns the audit records of session whose JSON-RPC id is id.
func auditOfID(t *testing.T, h *harness, session string, id int) []map[string]any {
	var out []map[string]any
	for _, r := range auditOf(t, h, session) {
		if r["jsonrpc_id"] == float64(id) {
			out = append(out, r)
		}
	}
	return out
}

const legacyCall = `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://example.com"}}}`

// TestLegacyAnswerBeforePostStatus: a legacy SSE request answered on the GET stream before its
// POST's response headers gets its audit line when they come (the record is finished as the reply
// to them is made): with the POST's status, once, its latency ending at the answer.
func TestLegacyAnswerBeforePostStatus(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	const endpoint = "/message?sessionId=early"
	get := openLegacySession(t, h, endpoint)

	start := time.Now()
	p := postLegacyOpen(t, h, endpoint, fmt.Sprintf(legacyCall, 1))
	answerOn(t, get, 1)
	answered := time.Since(start)
	if recs := auditOfID(t, h, "early", 1); len(recs) != 0 {
		t.Fatalf("audit line written before the POST's status: %v", recs)
	}
	// A while between the answer and the POST's status, which the latency must not include.
	time.Sleep(50 * time.Millisecond)
	check(t)(p.ResponseHeaders(respHeaders("202", ""), false))
	p.Close()
	recs := auditOfID(t, h, "early", 1)
	if len(recs) != 1 {
		t.Fatalf("audit lines of the request after its POST's status: %v, want 1", recs)
	}
	checkRecord(t, recs[0], map[string]any{"tool": "fetch", "outcome": "result", "http_status": 202})
	if ms, _ := recs[0]["latency_ms"].(float64); ms > float64(answered.Microseconds())/1000 {
		t.Errorf("latency_ms = %v, want at most %v (the answer's time, not the POST status's)", ms, float64(answered.Microseconds())/1000)
	}

	// Another request, its POST's status first: each line is written once, the POSTs' streams
	// ended.
	postLegacy(t, h, endpoint, fmt.Sprintf(legacyCall, 2))
	answerOn(t, get, 2)
	waitFor(t, "the POSTs' streams to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 1 })
	for id := 1; id <= 2; id++ {
		if recs := auditOfID(t, h, "early", id); len(recs) != 1 {
			t.Errorf("audit lines of request %d: %v, want 1", id, recs)
		}
	}
}

// TestLegacyPostStatusBeforeAnswer: a legacy SSE request whose POST's response headers come
// before its answer gets its audit line with the answer, with the POST's status.
func TestLegacyPostStatusBeforeAnswer(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	const endpoint = "/message?sessionId=late"
	get := openLegacySession(t, h, endpoint)
	postLegacy(t, h, endpoint, fmt.Sprintf(legacyCall, 1))
	answerOn(t, get, 1)
	recs := auditOfID(t, h, "late", 1)
	if len(recs) != 1 {
		t.Fatalf("audit lines after the answer: %v, want 1", recs)
	}
	checkRecord(t, recs[0], map[string]any{"tool": "fetch", "outcome": "result", "http_status": 202})
	waitFor(t, "the POST's stream to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 1 })
	if recs := auditOfID(t, h, "late", 1); len(recs) != 1 {
		t.Errorf("audit lines after the POST's stream ended: %v, want 1", recs)
	}
}

// TestLegacyPostStreamEndsWithoutStatus: a legacy SSE request whose POST's stream ends (here
// cancelled) before its response headers still gets its audit line, once, without http_status (no
// POST status seen: 0, left out): when the stream ends if the answer came first, with the answer otherwise.
func TestLegacyPostStreamEndsWithoutStatus(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	const endpoint = "/message?sessionId=gone"
	get := openLegacySession(t, h, endpoint)

	// The answer first, then the POST's stream cancelled.
	p := postLegacyOpen(t, h, endpoint, fmt.Sprintf(legacyCall, 1))
	answerOn(t, get, 1)
	if recs := auditOfID(t, h, "gone", 1); len(recs) != 0 {
		t.Fatalf("audit line written before the POST's stream ended: %v", recs)
	}
	p.Close()
	waitFor(t, "the audit line after the POST's stream ended", func() bool { return len(auditOfID(t, h, "gone", 1)) > 0 })

	// The POST's stream cancelled, then the answer.
	p = postLegacyOpen(t, h, endpoint, fmt.Sprintf(legacyCall, 2))
	p.Close()
	waitFor(t, "the POST's stream to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 1 })
	answerOn(t, get, 2)
	if recs := auditOfID(t, h, "gone", 2); len(recs) != 1 {
		t.Fatalf("audit lines of an answer after its POST's stream ended: %v, want 1", recs)
	}

	// A third request, its POST's status first: each line is written once, the POSTs' streams
	// ended.
	postLegacy(t, h, endpoint, fmt.Sprintf(legacyCall, 3))
	answerOn(t, get, 3)
	waitFor(t, "the POSTs' streams to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 1 })
	for id := 1; id <= 3; id++ {
		recs := auditOfID(t, h, "gone", id)
		if len(recs) != 1 {
			t.Fatalf("audit lines of request %d: %v, want 1", id, recs)
		}
		want := any(nil)
		if id == 3 {
			want = 202
		}
		checkRecord(t, recs[0], map[string]any{"tool": "fetch", "outcome": "result", "http_status": want})
	}
}
