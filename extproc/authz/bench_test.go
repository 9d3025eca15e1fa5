package authz

import (
	"encoding/json"
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// BenchmarkEvaluate measures one request's authorization with a fresh Input per request, as
// ext_proc builds it: the lab's single rule, and ten mixed rules (3 DENY, 2 REQUIRE, 5 ALLOW, of
// which only the last matches, so all ten run) reading claims, request fields, headers, the
// source address, the tool and its arguments.
func BenchmarkEvaluate(b *testing.B) {
	e := newEnv(b)
	tmpl := Input{
		Claims:        labClaims(),
		Method:        "POST",
		Path:          "/mcp",
		Host:          "gateway.example",
		Headers:       HeaderMap{"x-env": "prod", "content-type": "application/json", "accept": "application/json, text/event-stream"},
		MCPMethod:     "tools/call",
		ToolName:      "fetch",
		ToolTarget:    "mcp-website-fetcher",
		ToolArguments: json.RawMessage(`{"url":"https://httpbin.org/get"}`),
		SourceAddress: "10.1.2.3:51000",
	}
	mixed := []*policyv1.Rule{
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
	for _, bc := range []struct {
		name  string
		rules []*policyv1.Rule
		rule  string
	}{
		{"lab_rule", []*policyv1.Rule{allow("lab", labRule)}, "lab"},
		{"10_mixed_rules", mixed, "a4"},
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
