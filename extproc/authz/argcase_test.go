package authz

import (
	"encoding/json"
	"testing"
)

// TestArgumentInOtherCase: a member of the tool arguments whose name equals one a rule selects
// only when letter case is folded (as Go's encoding/json matches names: a server binding
// {"Path": ...} to its path field) is found, at the top level and in the objects (and lists of
// objects) the rules select into; the exact name, names no rule selects, and rules that select
// no argument find nothing. It runs after the rules, as the gateway calls it.
func TestArgumentInOtherCase(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e,
		deny("files#mcp[0]", `has(mcp.tool.arguments.path) && mcp.tool.arguments.path.startsWith("/etc")`),
		deny("opts#mcp[1]", `mcp.tool.name == "x" && mcp.tool.arguments.opts.mode == "raw"`),
		deny("idx#mcp[2]", `mcp.tool.name == "x" && mcp.tool.arguments["Url"] == "u"`),
		deny("list#mcp[3]", `mcp.tool.name == "x" && mcp.tool.arguments.items[0].kind == "k"`),
		deny("in#mcp[4]", `mcp.tool.name == "x" && "secret" in mcp.tool.arguments.opts`),
		deny("top#mcp[5]", `mcp.tool.name == "x" && "flag" in mcp.tool.arguments`),
		deny("jwt#mcp[6]", `has(jwt.arguments) && jwt.arguments.claim == "c"`),
	)
	for args, want := range map[string]string{
		`{"path":"/etc/passwd"}`:                 "",
		`{"Path":"/etc/passwd"}`:                 "Path",
		`{"PATH":"/etc/passwd","other":1}`:       "PATH",
		`{"pat\u0048":"/etc/passwd"}`:            "patH",
		"{\"\u017fecret\":1,\"opts\":{}}":        "", // secret is selected in opts only
		`{"opts":{"Mode":"raw"}}`:                "opts.Mode",
		`{"opts":{"mode":"raw","x":{"Mode":1}}}`: "",
		`{"Opts":{"mode":"raw"}}`:                "Opts",
		`{"opts":{"\u017fecret":1}}`:             "opts.\u017fecret", // ſ folds to s
		`{"url":"u"}`:                            "url",
		`{"Url":"u"}`:                            "",
		`{"items":[{"kind":"k"},{"KIND":"k"}]}`:  "items[1].KIND",
		`{"items":[{"kind":"k"}],"Items":[]}`:    "Items",
		"{\"items\":[{\"\u212aind\":\"k\"}]}":    "items[0].\u212aind", // the Kelvin sign folds to k
		`{"Other":1,"nested":{"Path":"/etc"}}`:   "",
		`{"flag":1,"Claim":1}`:                   "",
		`{"FLAG":1}`:                             "FLAG",
		`["not an object"]`:                      "",
	} {
		in := &Input{ToolName: "x", ToolArguments: json.RawMessage(args)}
		rs.Evaluate(t.Context(), in)
		got, found := rs.ArgumentInOtherCase(in)
		if got != want || found != (want != "") {
			t.Errorf("%s: ArgumentInOtherCase = %q, %v; want %q", args, got, found, want)
		}
	}
	none := compile(t, e, deny("t", `mcp.tool.name == "x"`), deny("s", `size(mcp.tool.arguments) > 3`))
	if got, found := none.ArgumentInOtherCase(&Input{ToolArguments: json.RawMessage(`{"Path":1}`)}); found {
		t.Errorf("rules that select no argument found %q", got)
	}
	var nilSet *RuleSet
	if _, found := nilSet.ArgumentInOtherCase(&Input{ToolArguments: json.RawMessage(`{"Path":1}`)}); found {
		t.Error("no rules found a member")
	}
}

// TestArgumentInOtherCaseUndecoded: a call whose rules never read its arguments (they decided on
// the tool's name) has them neither decoded nor searched: their member names could not have
// changed the decision.
func TestArgumentInOtherCaseUndecoded(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e, deny("files#mcp[0]", `mcp.tool.name == "read_file" && mcp.tool.arguments.path.startsWith("/etc")`))
	in := &Input{ToolName: "write_file", ToolArguments: json.RawMessage(`{"Path":"/etc/passwd"}`)}
	if d := rs.Evaluate(t.Context(), in); !d.Allowed {
		t.Fatalf("%+v", d)
	}
	if got, found := rs.ArgumentInOtherCase(in); found || in.argsOK {
		t.Fatalf("ArgumentInOtherCase = %q, %v, arguments decoded %v; want nothing found or decoded", got, found, in.argsOK)
	}
	// The same arguments, read by the rule, are searched.
	in = &Input{ToolName: "read_file", ToolArguments: json.RawMessage(`{"Path":"/etc/passwd"}`)}
	rs.Evaluate(t.Context(), in)
	if got, found := rs.ArgumentInOtherCase(in); got != "Path" || !found {
		t.Fatalf("ArgumentInOtherCase = %q, %v; want Path", got, found)
	}
}
