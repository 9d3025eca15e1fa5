package extproc_test

import (
	"strings"
	"testing"

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
