package authz

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestEvaluateListing: which tools a tools/list answer shows under rules that read the arguments.
// Each case also checks the listing against the calls: a hidden tool's calls are all refused, and
// a listed tool has the calls it names allowed (and refused) by Evaluate.
func TestEvaluateListing(t *testing.T) {
	e := newEnv(t)
	const https = `mcp.tool.name == "fetch" && mcp.tool.arguments.url.startsWith("https://")`
	ops, dev := map[string]any{"team": "ops"}, map[string]any{"team": "dev"}
	cases := []struct {
		name    string
		rules   []*policyv1.Rule
		claims  map[string]any
		tool    string
		listed  bool
		rule    string
		errs    int
		allowed []string // arguments of calls Evaluate allows ("" for none)
		refused []string // arguments of calls Evaluate refuses
	}{
		{"allow that depends on the arguments", []*policyv1.Rule{allow("a", https)}, ops, "fetch", true, "a", 0,
			[]string{`{"url":"https://x"}`}, []string{`{"url":"http://x"}`, `{}`}},
		{"allow that is false whatever the arguments", []*policyv1.Rule{allow("a", https)}, ops, "echo", false, "a" + NoAllowMatched, 0,
			nil, []string{`{"url":"https://x"}`}},
		{"deny that depends on the arguments", []*policyv1.Rule{deny("d", `mcp.tool.arguments.url.startsWith("http://")`)}, nil, "fetch", true, "", 0,
			[]string{`{"url":"https://x"}`}, []string{`{"url":"http://x"}`}},
		{"deny that holds whatever the arguments", []*policyv1.Rule{deny("d", `mcp.tool.name == "shell" || mcp.tool.arguments.force == true`), allow("a", `true`)}, nil, "shell", false, "d", 0,
			nil, []string{`{}`, `{"force":false}`}},
		{"deny that depends on the arguments, allow that holds", []*policyv1.Rule{deny("d", `mcp.tool.name == "shell" || mcp.tool.arguments.force == true`), allow("a", `true`)}, nil, "fetch", true, "a", 0,
			[]string{`{"force":false}`}, []string{`{"force":true}`}},
		{"deny and allow that depend on the arguments", []*policyv1.Rule{deny("d", `mcp.tool.arguments.url.contains("169.254.")`), allow("a", https)}, nil, "fetch", true, "a", 0,
			[]string{`{"url":"https://x"}`}, []string{`{"url":"https://169.254.169.254/"}`, `{"url":"http://x"}`}},
		{"require that depends on the arguments", []*policyv1.Rule{require("r", `has(mcp.tool.arguments.ticket)`)}, nil, "deploy", true, "", 0,
			[]string{`{"ticket":"T-1"}`}, []string{`{}`, ""}},
		{"require that is false whatever the arguments", []*policyv1.Rule{require("r", `jwt.team == "ops" && has(mcp.tool.arguments.ticket)`)}, dev, "deploy", false, "r", 0,
			nil, []string{`{"ticket":"T-1"}`}},
		{"require that depends on the arguments for its team", []*policyv1.Rule{require("r", `jwt.team == "ops" && has(mcp.tool.arguments.ticket)`)}, ops, "deploy", true, "", 0,
			[]string{`{"ticket":"T-1"}`}, []string{`{}`}},
		{"allow that depends on the arguments, require that does not hold", []*policyv1.Rule{require("r", `jwt.team == "ops"`), allow("a", https)}, dev, "fetch", false, "r", 0,
			nil, []string{`{"url":"https://x"}`}},
		{"every allow false whatever the arguments", []*policyv1.Rule{allow("p#0", `mcp.tool.name == "echo" && size(mcp.tool.arguments) == 0`), allow("q#0", `jwt.team == "ops" && mcp.tool.arguments.url != ""`)}, dev, "fetch", false, "p+q" + NoAllowMatched, 0,
			nil, []string{`{}`, `{"url":"x"}`, ""}},
		{"an allow on the arguments among plain ones", []*policyv1.Rule{allow("a0", `mcp.tool.name == "echo"`), allow("a1", `mcp.tool.arguments.mode == "read"`)}, nil, "files", true, "a1", 0,
			[]string{`{"mode":"read"}`}, []string{`{"mode":"write"}`}},
		{"comprehension over the arguments", []*policyv1.Rule{allow("a", `mcp.tool.arguments.urls.all(u, u.startsWith("https://"))`)}, nil, "fetch", true, "a", 0,
			[]string{`{"urls":["https://a","https://b"]}`}, []string{`{"urls":["https://a","http://b"]}`}},
		{"presence of the arguments", []*policyv1.Rule{allow("a", `!has(mcp.tool.arguments)`)}, nil, "now", true, "a", 0,
			[]string{""}, []string{`{"tz":"UTC"}`}},
		{"the tool bound to a variable", []*policyv1.Rule{allow("a", `[mcp.tool].exists(t, t.arguments.url == "x")`)}, nil, "fetch", true, "a", 0,
			[]string{`{"url":"x"}`}, []string{`{"url":"y"}`}},
		// CEL's logic: unknown outweighs an error, which is right here: a call whose x is not 1
		// makes the DENY false whatever the claim.
		{"deny that fails without the claim unless the arguments decide", []*policyv1.Rule{deny("d", `jwt.org == "evil" && mcp.tool.arguments.x == 1`)}, nil, "fetch", true, "", 0,
			[]string{`{"x":2}`}, []string{`{"x":1}`}},
		// Errors that do not come from the unknown arguments fail closed, as in Evaluate.
		{"allow without the arguments that fails", []*policyv1.Rule{allow("a", `jwt.team == "ops"`), allow("b", https)}, nil, "echo", false, "a+b" + NoAllowMatched + " (failed at run time: a)", 1,
			nil, []string{`{"url":"https://x"}`}},
		{"allow that fails whatever the arguments", []*policyv1.Rule{allow("a", `jwt.team.startsWith(mcp.tool.arguments.prefix)`)}, nil, "fetch", false, "a" + NoAllowMatched + " (failed at run time: a)", 1,
			nil, []string{`{"prefix":"o"}`}},
		{"deny that fails whatever the arguments", []*policyv1.Rule{deny("d", `jwt.banned ? true : mcp.tool.arguments.force == true`), allow("a", `true`)}, nil, "fetch", false, "d", 1,
			nil, []string{`{"force":false}`}},
		{"allow that gives a string whatever the arguments", []*policyv1.Rule{allow("a", `mcp.tool.name == "fetch" ? jwt.team : mcp.tool.arguments.ok`)}, ops, "fetch", false, "a" + NoAllowMatched + " (failed at run time: a)", 1,
			nil, []string{`{"ok":true}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := compile(t, e, c.rules...)
			in := &Input{Claims: c.claims, MCPMethod: "tools/call", ToolName: c.tool, Target: "t"}
			d := rs.EvaluateListing(t.Context(), in)
			if d.Allowed != c.listed || d.Rule != c.rule || len(d.Errors) != c.errs {
				t.Errorf("listing: %+v, want listed=%v rule=%q with %d errors", d, c.listed, c.rule, c.errs)
			}
			if !c.listed && len(c.allowed) > 0 {
				t.Fatal("bad case: a hidden tool with allowed calls")
			}
			for want, calls := range map[bool][]string{true: c.allowed, false: c.refused} {
				for _, args := range calls {
					call := &Input{Claims: c.claims, MCPMethod: "tools/call", ToolName: c.tool, Target: "t", ToolArguments: json.RawMessage(args)}
					if got := rs.Evaluate(t.Context(), call); got.Allowed != want {
						t.Errorf("call with %s: %+v, want allowed=%v", args, got, want)
					}
				}
			}
		})
	}
	var none *RuleSet
	if !none.EvaluateListing(t.Context(), &Input{ToolName: "x"}).Allowed {
		t.Error("a nil RuleSet hides a tool")
	}
}

// TestListingPrograms: only the rules that read the arguments get a partial-evaluation program;
// a listing never reads the arguments an Input carries.
func TestListingPrograms(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e, deny("d", `jwt.team == "x"`), require("r", `has(mcp.tool.arguments.ticket)`), allow("a0", `mcp.tool.name == "fetch"`), allow("a1", `mcp.tool.arguments.url == "x"`))
	for _, c := range []struct {
		r       rule
		partial bool
	}{{rs.deny[0], false}, {rs.require[0], true}, {rs.allow[0], false}, {rs.allow[1], true}} {
		if (c.r.listing != nil) != c.partial {
			t.Errorf("rule %s: listing program %v, want %v", c.r.source, c.r.listing != nil, c.partial)
		}
	}
	in := &Input{Claims: map[string]any{"team": "y"}, ToolName: "fetch", ToolArguments: json.RawMessage(`{"url":"y"}`)}
	if d := rs.EvaluateListing(t.Context(), in); !d.Allowed || d.Rule != "a0" || d.Errors != nil {
		t.Errorf("%+v", d)
	}
	if in.argsOK {
		t.Error("the listing decoded the Input's arguments")
	}
}

// TestListingCost: the partial-evaluation programs keep the cost limit and the context of the
// rules that need them, and an evaluation they stop fails closed.
func TestListingCost(t *testing.T) {
	small, err := NewEnv(Options{CostLimit: 50})
	if err != nil {
		t.Fatal(err)
	}
	rs := compile(t, small, allow("a", `jwt.groups.exists(g, g == "admins") && mcp.tool.arguments.y == 1`))
	if !rs.allow[0].tracked || rs.allow[0].listing == nil {
		t.Fatalf("tracked %v, listing program %v", rs.allow[0].tracked, rs.allow[0].listing != nil)
	}
	few := &Input{Claims: map[string]any{"groups": []any{"admins"}}, ToolName: "t"}
	if d := rs.EvaluateListing(t.Context(), few); !d.Allowed || d.Errors != nil {
		t.Fatalf("within the limit: %+v", d)
	}
	groups := make([]any, 200)
	for i := range groups {
		groups[i] = "g"
	}
	many := &Input{Claims: map[string]any{"groups": groups}, ToolName: "t"}
	d := rs.EvaluateListing(t.Context(), many)
	if d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Error(), "cost limit exceeded") {
		t.Fatalf("over the limit: %+v", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rs = compile(t, newEnv(t), allow("a", `jwt.groups.exists(g, g == "admins") && mcp.tool.arguments.y == 1`))
	if !rs.allow[0].tracked {
		t.Fatal("a comprehension over a claim is not tracked")
	}
	d = rs.EvaluateListing(ctx, many)
	if d.Allowed || len(d.Errors) != 1 || !errors.Is(d.Errors[0], context.Canceled) {
		t.Fatalf("cancelled: %+v", d)
	}
}
