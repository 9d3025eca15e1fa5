package authz

import (
	"encoding/json"
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// benchInput is a call of fetch with the lab's token, as ext_proc fills the Input.
func benchInput() Input {
	return Input{
		Claims:        labClaims(),
		Method:        "POST",
		Path:          "/mcp",
		Host:          "gateway.example",
		Headers:       HeaderMap{"x-env": "prod", "content-type": "application/json", "accept": "application/json, text/event-stream"},
		MCPMethod:     "tools/call",
		ToolName:      "fetch",
		Target:        "mcp-website-fetcher",
		ToolArguments: json.RawMessage(`{"url":"https://httpbin.org/get"}`),
		SourceAddress: "10.1.2.3:51000",
	}
}

// mixedRules are ten rules (3 DENY, 2 REQUIRE, 5 ALLOW) reading claims, request fields, headers,
// the source address, the tool and its arguments; with the lab's token only the last ALLOW
// matches a call.
func mixedRules() []*policyv1.Rule {
	return []*policyv1.Rule{
		deny("d0", `has(jwt.banned) && jwt.banned == true`),
		deny("d1", `request.method == "DELETE"`),
		deny("d2", `mcp.tool.name == "delete_repo"`),
		require("r0", `has(jwt.sub)`),
		require("r1", `cidr("10.0.0.0/8").containsIP(source.address)`),
		allow("a0", `jwt.org == "other.io"`),
		allow("a1", `jwt.team == "ops" && mcp.tool.name == "shell"`),
		allow("a2", `request.headers["x-env"] == "staging"`),
		allow("a3", `mcp.tool.arguments.url.startsWith("https://internal/")`),
		allow("a4", labRule),
	}
}

// BenchmarkEvaluate measures one request's authorization with a fresh Input per request, as
// ext_proc builds it: the lab's single rule, and mixedRules (only the last matches, so all ten
// run).
func BenchmarkEvaluate(b *testing.B) {
	e := newEnv(b)
	tmpl := benchInput()
	for _, bc := range []struct {
		name  string
		rules []*policyv1.Rule
		rule  string
	}{
		{"lab_rule", []*policyv1.Rule{allow("lab", labRule)}, "lab"},
		{"10_mixed_rules", mixedRules(), "a4"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rs := compile(b, e, bc.rules...)
			b.ReportAllocs()
			for b.Loop() {
				in := tmpl
				d := rs.Evaluate(b.Context(), &in)
				if !d.Allowed || d.Rule != bc.rule || d.Errors != nil {
					b.Fatalf("%+v", d)
				}
			}
		})
	}
}

// BenchmarkEvaluateListing measures the filtering of one tools/list answer of five tools, as
// ext_proc does it: one Input per answer, copied per tool with the tool's name. The tool rules of
// the lab (no rule reads the arguments), the audit's rule that allows fetch by its URL argument,
// and the ten mixed rules of BenchmarkEvaluate (one reads the arguments).
func BenchmarkEvaluateListing(b *testing.B) {
	e := newEnv(b)
	tmpl := benchInput()
	tmpl.ToolName, tmpl.ToolArguments = "", nil
	tools := []string{"fetch", "echo", "get-env", "shell", "delete_repo"}
	for _, bc := range []struct {
		name   string
		rules  []*policyv1.Rule
		listed int
	}{
		{"lab_tool_rule", []*policyv1.Rule{allow("mcp#0", `mcp.tool.name in ["fetch", "echo"]`)}, 2},
		{"argument_rule", []*policyv1.Rule{allow("mcp#0", `mcp.tool.name == "echo" || (mcp.tool.name == "fetch" && mcp.tool.arguments.url.startsWith("https://"))`)}, 2},
		{"10_mixed_rules", mixedRules(), 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rs := compile(b, e, bc.rules...)
			b.ReportAllocs()
			for b.Loop() {
				listed := 0
				for _, tool := range tools {
					in := tmpl
					in.ToolName = tool
					if rs.EvaluateListing(b.Context(), &in).Allowed {
						listed++
					}
				}
				if listed != bc.listed {
					b.Fatalf("%d tools listed, want %d", listed, bc.listed)
				}
			}
		})
	}
}
