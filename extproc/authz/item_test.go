package authz

import (
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestItems: a request concerns at most one MCP item, and a rule whose outcome depends on another
// item's variable does not apply to it: it neither denies, nor is unmet, nor allows, and is no
// error.
func TestItems(t *testing.T) {
	e := newEnv(t)
	claims := map[string]any{"org": "solo.io"}
	tool := func(name string) *Input {
		return &Input{Claims: claims, MCPMethod: "tools/call", ToolName: name, Target: "t"}
	}
	prompt := func(name string) *Input {
		return &Input{Claims: claims, MCPMethod: "prompts/get", PromptName: name, Target: "t"}
	}
	resource := func(uri string) *Input {
		return &Input{Claims: claims, MCPMethod: "resources/read", ResourceName: uri, Target: "t"}
	}
	initialize := &Input{Claims: claims, MCPMethod: "initialize", Target: "t"}
	cases := []struct {
		name  string
		rules []*policyv1.Rule
		in    *Input
		want  bool
		rule  string
	}{
		// ALLOW rules that name only tools allow no prompt and no resource (as agentgateway).
		{"tool allow-list, its tool", []*policyv1.Rule{allow("a", `mcp.tool.name in ["echo"]`)}, tool("echo"), true, "a"},
		{"tool allow-list, a prompt", []*policyv1.Rule{allow("a", `mcp.tool.name in ["echo"]`)}, prompt("greet"), false, "a" + NoAllowMatched},
		{"tool allow-list, a resource", []*policyv1.Rule{allow("a", `mcp.tool.name in ["echo"]`)}, resource("file:///a"), false, "a" + NoAllowMatched},
		{"prompt allowed by its own rule", []*policyv1.Rule{allow("a", `mcp.tool.name in ["echo"]`), allow("p", `has(mcp.prompt) && mcp.prompt.name == "greet"`)}, prompt("greet"), true, "p"},
		{"another prompt", []*policyv1.Rule{allow("a", `mcp.tool.name in ["echo"]`), allow("p", `mcp.prompt.name == "greet"`)}, prompt("other"), false, "a+p" + NoAllowMatched},
		{"prompt rule, a tool", []*policyv1.Rule{allow("p", `mcp.prompt.name == "greet"`)}, tool("greet"), false, "p" + NoAllowMatched},
		// DENY and REQUIRE rules on a tool leave other items alone.
		{"deny all but a tool, a prompt", []*policyv1.Rule{deny("d", `mcp.tool.name != "safe"`)}, prompt("greet"), true, ""},
		// A request that names no item (only traffic rules see those) reads the items' fields
		// empty, as before there were other items.
		{"deny all but a tool, initialize", []*policyv1.Rule{deny("d", `mcp.tool.name != "safe"`)}, initialize, false, "d"},
		{"claims and a tool term, initialize", []*policyv1.Rule{allow("a", `jwt.org == "solo.io" && mcp.tool.name != "rm"`)}, initialize, true, "a"},
		{"claims and a tool term, a prompt", []*policyv1.Rule{allow("a", `jwt.org == "solo.io" && mcp.tool.name != "rm"`)}, prompt("greet"), false, "a" + NoAllowMatched},
		{"deny all but a tool, another tool", []*policyv1.Rule{deny("d", `mcp.tool.name != "safe"`)}, tool("rm"), false, "d"},
		{"require a tool, a resource", []*policyv1.Rule{require("r", `mcp.tool.name == "safe"`)}, resource("file:///a"), true, ""},
		{"require a tool, another tool", []*policyv1.Rule{require("r", `mcp.tool.name == "safe"`)}, tool("rm"), false, "r"},
		{"deny on tool arguments, a prompt", []*policyv1.Rule{deny("d", `mcp.tool.arguments.x == 1`)}, prompt("greet"), true, ""},
		// Rules on no item, or that hold whatever the missing item says, apply.
		{"claims rule, a prompt", []*policyv1.Rule{allow("j", `jwt.org == "solo.io"`)}, prompt("greet"), true, "j"},
		{"or with a claim", []*policyv1.Rule{allow("o", `mcp.prompt.name == "x" || jwt.org == "solo.io"`)}, tool("echo"), true, "o"},
		{"and with a false claim", []*policyv1.Rule{deny("o", `mcp.prompt.name == "x" && jwt.org == "other"`)}, tool("echo"), true, ""},
		{"method rule, a resource", []*policyv1.Rule{deny("m", `mcp.method == "resources/read"`)}, resource("file:///a"), false, "m"},
		// Resources: the name is the URI; target is the route's.
		{"resource prefix", []*policyv1.Rule{allow("r", `mcp.resource.name.startsWith("file:///public/") && mcp.resource.target == "t"`)}, resource("file:///public/a"), true, "r"},
		{"resource outside prefix", []*policyv1.Rule{allow("r", `mcp.resource.name.startsWith("file:///public/")`)}, resource("file:///etc/passwd"), false, "r" + NoAllowMatched},
		{"subscribe is a resource", []*policyv1.Rule{deny("r", `mcp.resource.name == "file:///a"`)}, &Input{MCPMethod: "resources/subscribe", ResourceName: "file:///a"}, false, "r"},
	}
	for _, c := range cases {
		d := compile(t, e, c.rules...).Evaluate(t.Context(), c.in)
		if d.Allowed != c.want || d.Rule != c.rule || d.Errors != nil {
			t.Errorf("%s: %+v, want allowed %v by %q without errors", c.name, d, c.want, c.rule)
		}
	}
	// A rule that fails for another reason is still an error, and fails closed, in whatever
	// order its terms come: CEL's || gives its first operand's error, which must not hide the
	// missing claim behind the other item's.
	for _, rule := range []*policyv1.Rule{
		deny("d", `mcp.prompt.name == jwt.missing`),
		deny("d", `mcp.tool.name == "rm" || jwt.team != "ops"`),
		deny("d", `jwt.team != "ops" || mcp.tool.name == "rm"`),
		require("d", `mcp.tool.name != "rm" && jwt.team == "ops"`),
	} {
		d := compile(t, e, rule).Evaluate(t.Context(), prompt("greet"))
		if d.Allowed || d.Errors == nil {
			t.Errorf("%s without the claim: %+v, want denied with an error", rule.GetExpression(), d)
		}
		withClaim := prompt("greet")
		withClaim.Claims = map[string]any{"team": "ops", "missing": "x"}
		if d := compile(t, e, rule).Evaluate(t.Context(), withClaim); !d.Allowed || d.Errors != nil {
			t.Errorf("%s with the claim: %+v, want allowed (the rule does not apply)", rule.GetExpression(), d)
		}
	}
	// The method decides the item, whatever other name is set.
	both := prompt("secret")
	both.ToolName = "echo"
	if d := compile(t, e, deny("d", `mcp.prompt.name == "secret"`)).Evaluate(t.Context(), both); d.Allowed {
		t.Errorf("prompts/get with a tool name set: %+v, want the prompt rule to apply", d)
	}
	// Listing tools: a rule on prompts does not apply to the listed tools.
	rs := compile(t, e, allow("p", `mcp.prompt.name == "greet"`), allow("a", `mcp.tool.name == "echo" && mcp.tool.arguments.x == 1`))
	in := &Input{Claims: claims, MCPMethod: "tools/call", Target: "t"}
	for name, want := range map[string]bool{"echo": true, "greet": false} {
		in.ToolName = name
		if got := rs.EvaluateListing(t.Context(), in); got.Allowed != want || got.Errors != nil {
			t.Errorf("listing tool %s: %+v, want %v", name, got, want)
		}
	}
}
