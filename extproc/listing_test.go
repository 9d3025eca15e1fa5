package extproc_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestToolsListArgumentRule: an MCP rule that reads the tool's arguments decides each call with
// them, and tools/list keeps a tool some call of which the rule allows. MCP hosts only offer the
// tools tools/list shows, so hiding fetch here would make its allowed calls unusable.
func TestToolsListArgumentRule(t *testing.T) {
	p := labPolicy(newSigner(t))
	p.McpRules = []*policyv1.Rule{{
		Action:     policyv1.Rule_ALLOW,
		Expression: `mcp.tool.name == "echo" || (mcp.tool.name == "fetch" && mcp.tool.arguments.url.startsWith("https://"))`,
		Source:     "AgentgatewayPolicy/agentgateway-system/tools#0",
	}}
	h := newHarness(t, []*policyv1.Policy{p})

	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp := check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
	if got := string(extproctest.BodyAfter(resp, []byte(toolsListAnswer))); got != toolsListFiltered {
		t.Errorf("tools/list answer = %s\nwant %s (fetch kept: https calls are allowed; get-env removed)", got, toolsListFiltered)
	}

	call := func() *extproctest.Stream {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		return s
	}
	https := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://httpbin.org/get"}}}`
	plainContinue(t, check(t)(call().RequestBody([]byte(https), true)))

	http := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://169.254.169.254/"}}}`
	resp = check(t)(call().RequestBody([]byte(http), true))
	ir := resp.GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 200 ||
		string(ir.GetBody()) != `{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"Unknown tool: fetch"}}` {
		t.Fatalf("fetch of an http URL: want an immediate 200 with the Unknown tool error, got %v", resp)
	}
}
