package extproc_test

import (
	"fmt"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// bigToolsList is a tools/list answer over 1 KiB that names the hidden tool get-env.
func bigToolsList() string {
	desc := strings.Repeat("d", 1500)
	return `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"fetch","description":"` + desc +
		`"},{"name":"get-env","description":"secret"}]}}`
}

// TestOversizeAnswer: a tools/list answer over the body limit cannot be filtered, so it never
// reaches the client: it is replaced by a JSON-RPC error.
func TestOversizeAnswer(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	answer := []byte(bigToolsList())
	resp := check(t)(s.ResponseBody(answer, true))
	got := string(extproctest.BodyAfter(resp, answer))
	if strings.Contains(got, "get-env") || !strings.Contains(got, `"code":-32603`) || !strings.Contains(got, "could not be inspected") {
		t.Errorf("client receives %s, want the -32603 error in place of the answer", got)
	}
	if ct := setHeaders(resp)["content-type"]; ct != "application/json" {
		t.Errorf("content-type = %q", ct)
	}
}

// TestOversizeAnswerAnnounced: under tool rules, a tools/list answer whose content-length is over
// the body limit is replaced at its headers (CONTINUE_AND_REPLACE, the upstream's body dropped):
// buffered, it would overflow Envoy's buffer and give the client a 500 instead of the error.
func TestOversizeAnswerAnnounced(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "5000")), false))
	c := extproctest.Common(resp)
	if c.GetStatus() != extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
		t.Fatalf("response headers reply %v, want CONTINUE_AND_REPLACE", resp)
	}
	if got := string(c.GetBodyMutation().GetBody()); !strings.Contains(got, `"id":2`) || !strings.Contains(got, `"code":-32603`) {
		t.Errorf("replacement body %s, want the -32603 error for id 2", got)
	}
	if ct := setHeaders(resp)["content-type"]; ct != "application/json" {
		t.Errorf("content-type = %q", ct)
	}
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"method": "tools/list", "outcome": "error", "jsonrpc_error": -32603})
}

// TestSSEEventTooLarge: a tools/list answer arriving as a server-sent event over the body limit,
// in pieces, is never passed: the unfinished event is held, and when it outgrows the limit the
// response is reset (an immediate 502, which Envoy turns into a reset of the begun response).
func TestSSEEventTooLarge(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	event := "event: message\ndata: " + bigToolsList() + "\n\n"
	var passed strings.Builder
	for i := 0; i < len(event); i += 200 {
		end := min(i+200, len(event))
		resp := check(t)(s.ResponseBody([]byte(event[i:end]), end == len(event)))
		if ir := resp.GetImmediateResponse(); ir != nil {
			if ir.GetStatus().GetCode() != 502 || ir.GetDetails() != "mcpgate_event_too_large" {
				t.Fatalf("immediate response %v, want 502 mcpgate_event_too_large", ir)
			}
			if strings.Contains(passed.String(), "get-env") {
				t.Errorf("before the reset the client received %q", passed.String())
			}
			return
		}
		passed.Write(extproctest.BodyAfter(resp, []byte(event[i:end])))
	}
	t.Fatalf("the event over the limit passed: %q", passed.String())
}

// TestLargeAnswerWithoutToolRules: on a route without tool rules a JSON answer whose
// content-length is over the body limit is not sent to ext_proc (mode NONE): buffered, it would
// overflow Envoy's buffer and the client would get a 500 for an answer nothing needs to read.
// Under tool rules the same answer is read, and replaced (TestOversizeAnswer).
func TestLargeAnswerWithoutToolRules(t *testing.T) {
	h := newHarness(t, nil, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
	open := streamableRoute
	open.Policy = ""
	s := callFetch(t, h, open, "", 3)
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "5000")), false))
	if m := resp.GetModeOverride().GetResponseBodyMode(); resp.GetModeOverride() == nil || m != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("response body mode = %v, want NONE (%v)", m, resp)
	}
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"tool": "fetch", "outcome": "no_answer", "http_status": 200})
	// at the limit it is read as before
	s = callFetch(t, h, open, "", 4)
	resp = check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "1024")), false))
	if m := resp.GetModeOverride().GetResponseBodyMode(); m != extprocfilterv3.ProcessingMode_BUFFERED {
		t.Errorf("at the limit: response body mode = %v, want BUFFERED", m)
	}
}

// callFetch opens a stream on route and passes it the request of a tools/call of fetch with id,
// carrying token (none when empty).
func callFetch(t *testing.T, h *harness, route extproctest.Route, token string, id int) *extproctest.Stream {
	t.Helper()
	s := h.open(t, h.tcp, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", token), false))
	check(t)(s.RequestBody([]byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, id)), true))
	return s
}

// bigCallResult is a tools/call answer for id over 1 KiB, as the go-sdk in JSON response mode
// sends a large result: application/json without content-length (chunked).
func bigCallResult(id int) []byte {
	return []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"%s"}]}}`, id, strings.Repeat("x", 3000)))
}

// TestOversizeAnswerChunked: a JSON answer without content-length cannot be judged at its headers,
// and buffered whole it would overflow Envoy's buffer (a bare 500 to the client). It is asked for
// in BUFFERED_PARTIAL mode: Envoy sends what it holds at its buffer limit with end_of_stream
// false, the response headers still held. Under tool rules that piece is answered with a local
// reply carrying the -32603 error (a replaced piece would be followed by the rest of the body);
// without tool rules it passes unchanged, the rest after it, and the call is recorded as when the
// content-length announces the size (TestLargeAnswerWithoutToolRules).
func TestOversizeAnswerChunked(t *testing.T) {
	piece := bigCallResult(3)[:2000] // at Envoy's buffer limit, the answer's end still to come
	t.Run("tool rules", func(t *testing.T) {
		h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
		s := callFetch(t, h, streamableRoute, extproctest.LabToken, 3)
		resp := check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		if m := resp.GetModeOverride().GetResponseBodyMode(); m != extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
			t.Fatalf("response body mode = %v, want BUFFERED_PARTIAL (%v)", m, resp)
		}
		resp = check(t)(s.ResponseBody(piece, false))
		ir := resp.GetImmediateResponse()
		if ir == nil {
			t.Fatalf("reply to the piece at the limit %v, want an immediate response: a replaced piece is followed by the rest", resp)
		}
		if ir.GetStatus().GetCode() != 200 || !strings.Contains(string(ir.GetBody()), `"id":3`) || !strings.Contains(string(ir.GetBody()), `"code":-32603`) {
			t.Errorf("immediate response %d %s, want 200 with the -32603 error for id 3", ir.GetStatus().GetCode(), ir.GetBody())
		}
		if ct := setHeaders(resp)["content-type"]; ct != "application/json" {
			t.Errorf("content-type = %q", ct)
		}
		waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
		checkRecord(t, h.audit.records(t)[0], map[string]any{"tool": "fetch", "outcome": "error", "jsonrpc_error": -32603, "http_status": 200})
		if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "outcome": "error"}); n != 1 {
			t.Errorf("mcpgate_mcp_requests_total of the call with outcome error = %v, want 1", n)
		}
	})
	t.Run("tool rules, cut below the body limit", func(t *testing.T) {
		// Envoy's buffer limit may be below MaxBodyBytes (an HTTP/2 stream's is its window, a
		// route may set its own): a piece that is not the last is an answer cut short, whatever
		// its length, and read as one too large, not as JSON that does not parse.
		h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
		s := callFetch(t, h, streamableRoute, extproctest.LabToken, 3)
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		ir := check(t)(s.ResponseBody(piece, false)).GetImmediateResponse()
		if ir.GetStatus().GetCode() != 200 || !strings.Contains(string(ir.GetBody()), `"code":-32603`) {
			t.Errorf("reply to a piece under the body limit cut at Envoy's: immediate response %d %s, want 200 with the -32603 error", ir.GetStatus().GetCode(), ir.GetBody())
		}
	})
	t.Run("tool rules, status kept", func(t *testing.T) {
		// The immediate response replaces the upstream's headers: it carries their status, as a
		// replaced body would.
		h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
		s := callFetch(t, h, streamableRoute, extproctest.LabToken, 3)
		check(t)(s.ResponseHeaders(respHeaders("500", "application/json"), false))
		ir := check(t)(s.ResponseBody(piece, false)).GetImmediateResponse()
		if ir.GetStatus().GetCode() != 500 || !strings.Contains(string(ir.GetBody()), `"code":-32603`) {
			t.Errorf("immediate response %d %s, want the upstream's 500 with the -32603 error", ir.GetStatus().GetCode(), ir.GetBody())
		}
		waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
		checkRecord(t, h.audit.records(t)[0], map[string]any{"tool": "fetch", "outcome": "error", "jsonrpc_error": -32603, "http_status": 500})
	})
	t.Run("no tool rules", func(t *testing.T) {
		h := newHarness(t, nil, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
		open := streamableRoute
		open.Policy = ""
		s := callFetch(t, h, open, "", 3)
		resp := check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		if m := resp.GetModeOverride().GetResponseBodyMode(); m != extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
			t.Fatalf("response body mode = %v, want BUFFERED_PARTIAL (%v)", m, resp)
		}
		plainContinue(t, check(t)(s.ResponseBody(piece, false)))
		waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
		checkRecord(t, h.audit.records(t)[0], map[string]any{"tool": "fetch", "outcome": "no_answer", "http_status": 200})
		if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "outcome": "no_answer"}); n != 1 {
			t.Errorf("mcpgate_mcp_requests_total of the call with outcome no_answer = %v, want 1", n)
		}
		// An answer that fits comes whole (end_of_stream true) and is read as before.
		s = callFetch(t, h, open, "", 4)
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		plainContinue(t, check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":4,"result":{"content":[]}}`), true)))
		waitFor(t, "the second audit record", func() bool { return len(h.audit.records(t)) == 2 })
		checkRecord(t, h.audit.records(t)[1], map[string]any{"tool": "fetch", "outcome": "result", "http_status": 200})
	})
}

// TestLargeFirstEventOfSessionStream: on a route without rules, the first event of a Streamable
// HTTP GET stream (it names its session) passes as it comes, even over the body limit: only the
// first event of a GET stream without a session (a legacy SSE stream, whose endpoint event is
// sealed) is held until whole, and reset when it outgrows the limit.
func TestLargeFirstEventOfSessionStream(t *testing.T) {
	h := newHarness(t, nil, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
	open := streamableRoute
	open.Policy = ""
	event := "event: message\ndata: " + bigToolsList() + "\n\n"
	for _, c := range []struct {
		name    string
		headers []extproctest.Header
		reset   bool
	}{
		{"Streamable HTTP GET", append(getHeaders("/mcp", ""), hdr("mcp-session-id", extproctest.AnonSession("S1"))), false},
		{"GET without a session", getHeaders("/sse", ""), true},
	} {
		s := h.open(t, h.tcp, open)
		plainContinue(t, check(t)(s.RequestHeaders(c.headers, true)))
		check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
		reset := false
		var passed strings.Builder
		for i := 0; i < len(event) && !reset; i += 200 {
			end := min(i+200, len(event))
			resp := check(t)(s.ResponseBody([]byte(event[i:end]), false))
			if ir := resp.GetImmediateResponse(); ir != nil {
				reset = ir.GetDetails() == "mcpgate_event_too_large"
				break
			}
			passed.Write(extproctest.BodyAfter(resp, []byte(event[i:end])))
		}
		switch {
		case reset != c.reset:
			t.Errorf("%s: reset %v, want %v", c.name, reset, c.reset)
		case !c.reset && passed.String() != event:
			t.Errorf("%s: the client received %d of the event's %d bytes", c.name, passed.Len(), len(event))
		}
		s.Close()
	}
}
