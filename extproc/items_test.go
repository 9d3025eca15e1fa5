package extproc_test

import (
	"fmt"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/extproc/mcp"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestDeniedPromptAndResource: under MCP rules, a prompts/get or resources/read of an item the
// rules do not allow is answered by ext_proc, as a refused tools/call is: HTTP 200, JSON-RPC
// -32602 "Unknown prompt: NAME" / "Unknown resource: URI", recorded as denied; an allowed one
// passes. (labPolicy allows the prompt greet and the resources under file:///a.)
func TestDeniedPromptAndResource(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for _, tc := range []struct{ body, want, details string }{
		{`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"secret","arguments":{}}}`,
			`{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown prompt: secret"}}`, "mcpgate_prompt_denied"},
		{`{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":"file:///etc/passwd"}}`,
			`{"jsonrpc":"2.0","id":"r","error":{"code":-32602,"message":"Unknown resource: file:///etc/passwd"}}`, "mcpgate_resource_denied"},
		{`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"file:///etc/passwd"}}`,
			`{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"Unknown resource: file:///etc/passwd"}}`, "mcpgate_resource_denied"},
		// MCP 2026-07-28 subscribes with subscriptions/listen: each URI judged as a subscription.
		{`{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///a/b.txt","file:///etc/passwd"]}}}`,
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown resource: file:///etc/passwd"}}`, "mcpgate_resource_denied"},
	} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(tc.body), true))
		ir := resp.GetImmediateResponse()
		if ir == nil || ir.GetStatus().GetCode() != 200 || string(ir.GetBody()) != tc.want || ir.GetDetails() != tc.details {
			t.Errorf("%s: want immediate 200 %s (%s), got %v", tc.body, tc.want, tc.details, resp)
		}
		if md := extproctest.Metadata(resp); md["decision"] != "deny" || md["rule"] != "AgentgatewayPolicy/agentgateway-system/tools"+authz.NoAllowMatched {
			t.Errorf("%s: metadata %v", tc.body, md)
		}
	}
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"greet"}}`,
		`{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"file:///a/b.txt"}}`,
		`{"jsonrpc":"2.0","id":8,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a/b.txt"]}}}`,
		`{"jsonrpc":"2.0","id":9,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true}}}`,
	} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(body), true)))
	}
	waitFor(t, "the audit records of the refusals", func() bool { return h.audit.count(`"decision":"deny"`) == 4 })
	byID := h.audit.recordsByID(t)
	checkRecord(t, byID["3"], map[string]any{"method": "prompts/get", "prompt": "secret", "decision": "deny", "outcome": "error", "jsonrpc_error": -32602})
	checkRecord(t, byID["r"], map[string]any{"method": "resources/read", "resource": "file:///etc/passwd", "decision": "deny"})
	if _, hasTool := byID["3"]["tool"]; hasTool {
		t.Errorf("a prompts/get record names a tool: %v", byID["3"])
	}
	checkRecord(t, byID["7"], map[string]any{"method": "subscriptions/listen", "resource": "file:///etc/passwd", "decision": "deny"})
	// A listen whose subscriptions are not a list of URIs cannot be judged: refused.
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":10,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":"file:///etc/passwd"}}}`), true))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || ir.GetDetails() != "mcpgate_listen_unnamed" {
		t.Errorf("listen with a string for resourceSubscriptions: %v, want 400 mcpgate_listen_unnamed", resp)
	}
}

// TestListsFiltered: prompts/list, resources/list and resources/templates/list answers are
// filtered by the MCP rules as tools/list answers are, with content-length set to the new length.
func TestListsFiltered(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for _, tc := range []struct{ method, answer, want string }{
		{"prompts/list",
			`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"greet","description":"hi"},{"name":"secret"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"greet","description":"hi"}]}}`},
		{"resources/list",
			`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///etc/passwd","name":"passwd"},{"uri":"file:///a/b.txt","name":"b"}],"nextCursor":"n"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///a/b.txt","name":"b"}],"nextCursor":"n"}}`},
		{"resources/templates/list",
			`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"file:///a/{x}"},{"uriTemplate":"db://{table}"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"file:///a/{x}"}]}}`},
	} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"`+tc.method+`"}`), true))
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", fmt.Sprint(len(tc.answer)))), false))
		resp := check(t)(s.ResponseBody([]byte(tc.answer), true))
		if got := string(extproctest.BodyAfter(resp, nil)); got != tc.want {
			t.Errorf("%s: body = %s\nwant %s", tc.method, got, tc.want)
		}
		if cl := setHeaders(resp)["content-length"]; cl != fmt.Sprint(len(tc.want)) {
			t.Errorf("%s: content-length = %q, want %d", tc.method, cl, len(tc.want))
		}
	}
}

// TestBatchRefusedPrompt: in a batch, a refused prompts/get becomes a ping whose answer becomes
// the "Unknown prompt" error, as a refused call does.
func TestBatchRefusedPrompt(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.unix, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	body := `[{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}},{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"secret"}}]`
	resp := check(t)(s.RequestBody([]byte(body), true))
	stand := standInOf(`2`, mcp.Prompt, "secret")
	wantBody := `[{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}},{"jsonrpc":"2.0","id":` + stand + `,"method":"ping"}]`
	if got := string(extproctest.BodyAfter(resp, nil)); got != wantBody {
		t.Fatalf("request body = %s\nwant %s", got, wantBody)
	}
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp = check(t)(s.ResponseBody([]byte(`[{"jsonrpc":"2.0","id":1,"result":{"messages":[]}},{"jsonrpc":"2.0","id":`+stand+`,"result":{}}]`), true))
	want := `[{"jsonrpc":"2.0","id":1,"result":{"messages":[]}},{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown prompt: secret"}}]`
	if got := string(extproctest.BodyAfter(resp, nil)); got != want {
		t.Errorf("response body = %s\nwant %s", got, want)
	}
}

// TestPromptWithoutName: under MCP rules a prompts/get or resources/read that names no item is
// refused (judged as a request for "", it would pass rules that only deny); without rules it
// passes. One whose name repeats in another case is refused on every route.
func TestPromptWithoutName(t *testing.T) {
	deny := &policyv1.Policy{Name: "deny", McpRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.prompt.name == "secret"`, Source: "deny#0"}}}
	refusedUnderToolRules(t, deny, -32602,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":["secret"]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":null}}`,
	)
	// A name that repeats in another case, on every route: the audit records the prompt the
	// server reads.
	refusedOnEveryMCPRoute(t, deny, -32600,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x","NAME":"secret"}}`,
	)
}

// TestAmbiguousAnswerFiltered: under MCP rules, an answer whose result member differs from
// "result" only in letter case is filtered as one, whether the gateway reads it as no response
// at all or as one without a result: a client that folds case (Go's encoding/json) reads it as
// the result and would see the hidden tools.
func TestAmbiguousAnswerFiltered(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for _, tc := range []struct{ answer, want string }{
		{`{"jsonrpc":"2.0","id":2,"Result":{"tools":[{"name":"fetch"},{"name":"get-env"}]}}`,
			`{"jsonrpc":"2.0","id":2,"Result":{"tools":[{"name":"fetch"}]}}`},
		{`{"jsonrpc":"2.0","id":2,"error":null,"RESULT":{"prompts":[{"name":"greet"},{"name":"secret"}]}}`,
			`{"jsonrpc":"2.0","id":2,"error":null,"RESULT":{"prompts":[{"name":"greet"}]}}`},
	} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		resp := check(t)(s.ResponseBody([]byte(tc.answer), true))
		if got := string(extproctest.BodyAfter(resp, []byte(tc.answer))); got != tc.want {
			t.Errorf("answer %s\nreached the client as %s\nwant %s", tc.answer, got, tc.want)
		}
	}
}
