package extproc_test

import (
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
	s := h.open(t, h.tcp, open)
	check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "5000")), false))
	if m := resp.GetModeOverride().GetResponseBodyMode(); resp.GetModeOverride() == nil || m != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("response body mode = %v, want NONE (%v)", m, resp)
	}
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"tool": "fetch", "outcome": "no_answer", "http_status": 200})
	// at the limit it is read as before
	s = h.open(t, h.tcp, open)
	check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
	resp = check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "1024")), false))
	if m := resp.GetModeOverride().GetResponseBodyMode(); m != extprocfilterv3.ProcessingMode_BUFFERED {
		t.Errorf("at the limit: response body mode = %v, want BUFFERED", m)
	}
}
