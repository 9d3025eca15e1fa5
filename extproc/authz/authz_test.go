package authz

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// labRule is the lab's traffic.authorization expression (step 9), verbatim.
const labRule = `jwt.org == "solo.io"`

// labClaims are the claims of the lab's DEV_TOKEN, as the jwt package decodes them.
func labClaims() map[string]any {
	var c map[string]any
	if err := json.Unmarshal([]byte(`{"iss":"solo.io","org":"solo.io","sub":"user-id","team":"team-id","exp":2079556104,"llms":{"openai":["gpt-4o"]}}`), &c); err != nil {
		panic(err)
	}
	return c
}

func newEnv(t testing.TB) *Env {
	t.Helper()
	e, err := NewEnv(Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// allow, deny and require build rules named by their expression's index.
func allow(src, expr string) *policyv1.Rule {
	return &policyv1.Rule{Action: policyv1.Rule_ALLOW, Expression: expr, Source: src}
}
func deny(src, expr string) *policyv1.Rule {
	return &policyv1.Rule{Action: policyv1.Rule_DENY, Expression: expr, Source: src}
}
func require(src, expr string) *policyv1.Rule {
	return &policyv1.Rule{Action: policyv1.Rule_REQUIRE, Expression: expr, Source: src}
}

func compile(t testing.TB, e *Env, rules ...*policyv1.Rule) *RuleSet {
	t.Helper()
	rs, err := e.Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestLabRule(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e, allow("EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac#0", labRule))

	d := rs.Evaluate(t.Context(), &Input{Claims: labClaims()})
	if !d.Allowed || d.Rule != "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac#0" || d.Errors != nil {
		t.Fatalf("lab token: %+v, want allowed by the lab rule", d)
	}
	other := labClaims()
	other["org"] = "evil.io"
	if d := rs.Evaluate(t.Context(), &Input{Claims: other}); d.Allowed || d.Rule != "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac: no ALLOW rule matched" || d.Errors != nil {
		t.Fatalf("another org: %+v, want denied by default, naming the policy", d)
	}
	// No token: jwt.org fails at run time; the rule does not match, the request is denied and
	// the error is reported.
	d = rs.Evaluate(t.Context(), &Input{})
	if d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Error(), "mcp-rbac#0") || !strings.Contains(d.Errors[0].Error(), "no such key: org") {
		t.Fatalf("no token: %+v, want denied with the rule's error", d)
	}
	if got := rs.ReferencedClaims(); !reflect.DeepEqual(got, []string{"org"}) {
		t.Errorf("ReferencedClaims = %v", got)
	}
	if rs.NeedsMCP() {
		t.Error("the lab rule does not read mcp")
	}
}

func TestCombinations(t *testing.T) {
	e := newEnv(t)
	alice := &Input{Claims: map[string]any{"sub": "alice", "team": "red", "admin": true}, Method: "POST"}
	bob := &Input{Claims: map[string]any{"sub": "bob", "team": "blue"}, Method: "GET"}
	cases := []struct {
		name  string
		rules []*policyv1.Rule
		in    *Input
		allow bool
		rule  string
	}{
		{"no rules allows", nil, alice, true, ""},
		{"allow matches", []*policyv1.Rule{allow("a", `jwt.sub == "alice"`)}, alice, true, "a"},
		{"no allow matches denies", []*policyv1.Rule{allow("a", `jwt.sub == "alice"`), allow("b", `jwt.team == "green"`)}, bob, false, "a+b" + NoAllowMatched},
		{"no allow matches: each policy once", []*policyv1.Rule{allow("p#0", `false`), deny("d#0", `false`), allow("q#0", `false`), allow("p#1", `false`)}, bob, false, "p+q" + NoAllowMatched},
		{"allows are OR-ed", []*policyv1.Rule{allow("a", `jwt.sub == "alice"`), allow("b", `jwt.team == "blue"`)}, bob, true, "b"},
		{"deny beats allow", []*policyv1.Rule{allow("a", `true`), deny("d", `jwt.team == "red"`)}, alice, false, "d"},
		{"deny that does not match", []*policyv1.Rule{deny("d", `jwt.team == "red"`)}, bob, true, ""},
		{"only denies allow the rest", []*policyv1.Rule{deny("d", `request.method == "DELETE"`)}, alice, true, ""},
		{"require not met denies", []*policyv1.Rule{require("r", `has(jwt.admin) && jwt.admin`), allow("a", `true`)}, bob, false, "r"},
		{"require met, allow decides", []*policyv1.Rule{require("r", `jwt.admin == true`), allow("a", `request.method == "POST"`)}, alice, true, "a"},
		{"require met, no allow", []*policyv1.Rule{require("r", `jwt.admin == true`)}, alice, true, ""},
		{"require met, allow fails", []*policyv1.Rule{require("r", `jwt.admin == true`), allow("a", `request.method == "GET"`)}, alice, false, "a" + NoAllowMatched},
		{"deny before require", []*policyv1.Rule{require("r", `false`), deny("d", `true`)}, alice, false, "d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := compile(t, e, c.rules...).Evaluate(t.Context(), c.in)
			if d.Allowed != c.allow || d.Rule != c.rule || d.Errors != nil {
				t.Fatalf("got %+v, want allowed=%v rule=%q", d, c.allow, c.rule)
			}
		})
	}
	var nilSet *RuleSet
	if d := nilSet.Evaluate(t.Context(), alice); !d.Allowed || nilSet.NeedsMCP() || nilSet.Len() != 0 {
		t.Fatal("a nil RuleSet does not allow")
	}
}

func TestRunTimeErrors(t *testing.T) {
	e := newEnv(t)
	noToken := &Input{Method: "GET"}
	t.Run("allow-only: error denies and is reported", func(t *testing.T) {
		d := compile(t, e, allow("p#0", `jwt.org == "solo.io"`)).Evaluate(t.Context(), noToken)
		if d.Allowed || len(d.Errors) != 1 {
			t.Fatalf("%+v", d)
		}
		// the decision names the rule that failed (the audit line has it, the log has the error)
		if want := "p" + NoAllowMatched + " (failed at run time: p#0)"; d.Rule != want {
			t.Errorf("rule %q, want %q", d.Rule, want)
		}
	})
	t.Run("deny that errors denies (guard with has to let it pass)", func(t *testing.T) {
		d := compile(t, e, deny("p#0", `jwt.org == "evil"`)).Evaluate(t.Context(), noToken)
		if d.Allowed || d.Rule != "p#0" || len(d.Errors) != 1 || !strings.HasPrefix(d.Errors[0].Error(), "rule p#0: ") {
			t.Fatalf("%+v", d)
		}
		d = compile(t, e, deny("p#0", `has(jwt.org) && jwt.org == "evil"`)).Evaluate(t.Context(), noToken)
		if !d.Allowed || d.Errors != nil {
			t.Fatalf("guarded: %+v", d)
		}
	})
	// A client cannot skip a DENY rule by making it fail: an argument of another type than the
	// rule expects, or arguments large enough to exceed the cost limit.
	t.Run("deny that a client makes fail denies", func(t *testing.T) {
		rs := compile(t, e, deny("p#0", `mcp.tool.arguments.path.startsWith("/etc")`), allow("p#1", `true`))
		for name, args := range map[string]string{
			"string":        `{"path":"/etc/shadow"}`,
			"list":          `{"path":["/etc/shadow"]}`,
			"number":        `{"path":1}`,
			"not an object": `[1]`,
		} {
			d := rs.Evaluate(t.Context(), &Input{ToolName: "read", ToolArguments: json.RawMessage(args)})
			if d.Allowed || d.Rule != "p#0" {
				t.Errorf("%s: %+v", name, d)
			}
		}
		if d := rs.Evaluate(t.Context(), &Input{ToolName: "read", ToolArguments: json.RawMessage(`{"path":"/tmp/x"}`)}); !d.Allowed {
			t.Errorf("a path the rule does not refuse: %+v", d)
		}
		costly := compile(t, e, deny("p#0", `mcp.tool.arguments.paths.exists(p, p.startsWith("/etc"))`), allow("p#1", `true`))
		big := `{"paths":[` + strings.Repeat(`"/tmp/a",`, 50000) + `"/etc/shadow"]}`
		if d := costly.Evaluate(t.Context(), &Input{ToolName: "read", ToolArguments: json.RawMessage(big)}); d.Allowed {
			t.Errorf("a DENY rule over the cost limit let the call through: %+v", d)
		}
	})
	t.Run("require that errors denies", func(t *testing.T) {
		d := compile(t, e, require("p#0", `jwt.team == "red"`)).Evaluate(t.Context(), noToken)
		if d.Allowed || d.Rule != "p#0" || len(d.Errors) != 1 {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("a dyn result that is not a bool", func(t *testing.T) {
		d := compile(t, e, allow("p#0", `jwt.org`)).Evaluate(t.Context(), &Input{Claims: map[string]any{"org": "x"}})
		if d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Error(), "gives string, want bool") {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("cost limit", func(t *testing.T) {
		small, err := NewEnv(Options{CostLimit: 50})
		if err != nil {
			t.Fatal(err)
		}
		rs := compile(t, small, allow("p#0", `mcp.tool.arguments.items.all(i, i > 0)`))
		args := `{"items":[` + strings.Repeat("1,", 200) + `1]}`
		d := rs.Evaluate(t.Context(), &Input{ToolName: "t", ToolArguments: json.RawMessage(args)})
		if d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Error(), "cost limit exceeded") {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		rs := compile(t, e, allow("p#0", `mcp.tool.arguments.items.all(i, i > 0)`))
		args := `{"items":[` + strings.Repeat("1,", 500) + `1]}`
		d := rs.Evaluate(ctx, &Input{ToolName: "t", ToolArguments: json.RawMessage(args)})
		if d.Allowed || len(d.Errors) != 1 || !errors.Is(d.Errors[0], context.Canceled) {
			t.Fatalf("%+v", d)
		}
	})
	t.Run("arguments that are not an object", func(t *testing.T) {
		rs := compile(t, e, allow("p#0", `mcp.tool.arguments.url != ""`))
		d := rs.Evaluate(t.Context(), &Input{ToolName: "fetch", ToolArguments: json.RawMessage(`[1]`)})
		if d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Error(), "mcp.tool.arguments: not a JSON object") {
			t.Fatalf("%+v", d)
		}
	})
}

func TestCompileErrors(t *testing.T) {
	e := newEnv(t)
	_, err := e.Compile([]*policyv1.Rule{
		allow("AgentgatewayPolicy/ns/good#0", labRule),
		allow("AgentgatewayPolicy/ns/bad#0", `jwt.org == `),
		deny("AgentgatewayPolicy/ns/bad#1", `request.mehtod == "GET"`),
		allow("AgentgatewayPolicy/ns/bad#2", `request.path + "x"`),
		{Action: policyv1.Rule_Action(9), Expression: "true"},
	})
	if err == nil {
		t.Fatal("compiled")
	}
	msg := err.Error()
	for _, want := range []string{
		"rule AgentgatewayPolicy/ns/bad#0: ERROR: <input>:1:12: Syntax error",
		"rule AgentgatewayPolicy/ns/bad#1: ERROR: <input>:1:8: undefined field 'mehtod'",
		"rule AgentgatewayPolicy/ns/bad#2: expression gives string, want bool",
		"rule rules[4]: unknown action 9",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "good#0") {
		t.Errorf("the good rule is named in the error:\n%s", msg)
	}
	for expr, want := range map[string]string{
		labRule:                        "",
		`jwt.org == `:                  "Syntax error",
		`mcp.tool.nmae == "x"`:         "undefined field 'nmae'",
		`source.address == 1`:          "no matching overload",
		`1 + 1`:                        "expression gives int, want bool",
		`jwt.team`:                     "", // dyn: checked at run time
		`unknown_var == 1`:             "undeclared reference to 'unknown_var'",
		`request.headers["x-a"] == 2`:  "no matching overload",
		`mcp.method.startsWith("to")`:  "",
		`"a,b".split(",").size() == 2`: "",
	} {
		err := e.Check(expr)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%q) = %v, want %q", expr, err, want)
		}
	}
}

func TestVariables(t *testing.T) {
	e := newEnv(t)
	in := &Input{
		Claims:        labClaims(),
		Method:        "POST",
		Path:          "/mcp?session=1",
		Host:          "gateway.example:8080",
		Headers:       HeaderMap{"x-team": "red", "user-agent": "inspector/1.0"},
		MCPMethod:     "tools/call",
		ToolName:      "fetch",
		Target:        "mcp-website-fetcher",
		ToolArguments: json.RawMessage(`{"url":"https://httpbin.org/get","max_length":5000,"opts":{"raw":true}}`),
		SourceAddress: "10.1.2.3:51000",
	}
	for expr, want := range map[string]bool{
		`mcp.tool.name == "fetch"`:                                  true,
		`mcp.tool.name == "delete"`:                                 false,
		`mcp.tool.target == "mcp-website-fetcher"`:                  true,
		`mcp.method == "tools/call"`:                                true,
		`mcp.tool.arguments.url.startsWith("https://httpbin.org/")`: true,
		`mcp.tool.arguments.max_length <= 10000`:                    true,
		`mcp.tool.arguments.opts.raw`:                               true,
		`has(mcp.tool.arguments.url)`:                               true,
		`has(mcp.tool.arguments.missing)`:                           false,
		`request.method == "POST" && request.path == "/mcp"`:        true,
		`request.host.startsWith("gateway.example")`:                true,
		`request.headers["x-team"] == "red"`:                        true,
		`request.headers["X-Team"] == "red"`:                        true,
		`"user-agent" in request.headers`:                           true,
		`"authorization" in request.headers`:                        false,
		`request.headers.size() == 2`:                               true,
		`request.headers.exists(h, h.startsWith("x-"))`:             true,
		`has(request.headers)`:                                      true,
		`source.address == "10.1.2.3"`:                              true,
		`cidr("10.0.0.0/8").containsIP(source.address)`:             true,
		`cidr("192.168.0.0/16").containsIP(source.address)`:         false,
		`jwt.llms.openai.exists(m, m == "gpt-4o")`:                  true,
		`jwt["team"] == "team-id"`:                                  true,
		`jwt.exp > 2000000000`:                                      true,
		`jwt.sub == "user-id" && mcp.tool.name == "fetch"`:          true,
		`has(jwt.org) && jwt.org.lowerAscii() == "solo.io"`:         true,
		`has(mcp.tool)`:                                             true,
		`type(request) == mcpgate.Request`:                          true,
	} {
		rs := compile(t, e, allow("r", expr))
		d := rs.Evaluate(t.Context(), in)
		if d.Allowed != want || d.Errors != nil {
			t.Errorf("%s: %+v, want %v", expr, d, want)
		}
	}
	// Headers absent, tool absent (a request that names no MCP item: its items' fields are
	// empty), IPv6 source without port.
	bare := &Input{SourceAddress: "::1", Claims: map[string]any{}}
	for expr, want := range map[string]bool{
		`has(request.headers)`:            false,
		`request.headers.size() == 0`:     true,
		`"x" in request.headers`:          false,
		`has(mcp.tool)`:                   false,
		`mcp.tool.name == ""`:             true,
		`size(mcp.tool.arguments) == 0`:   true,
		`mcp.prompt.name == ""`:           true,
		`source.address == "::1"`:         true,
		`ip(source.address).isLoopback()`: true,
		`has(jwt.org)`:                    false,
	} {
		d := compile(t, e, allow("r", expr)).Evaluate(t.Context(), bare)
		if d.Allowed != want || d.Errors != nil {
			t.Errorf("bare %s: %+v, want %v", expr, d, want)
		}
	}
}

func TestReferences(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e,
		allow("a", `jwt.org == "solo.io" && jwt["team"] == "x"`),
		deny("b", `has(jwt.groups) && "admins" in jwt.groups`),
		require("c", `request.method != "DELETE"`),
	)
	if got := rs.ReferencedClaims(); !reflect.DeepEqual(got, []string{"groups", "org", "team"}) {
		t.Errorf("ReferencedClaims = %v", got)
	}
	if rs.NeedsMCP() || rs.Len() != 3 {
		t.Errorf("NeedsMCP %v Len %d", rs.NeedsMCP(), rs.Len())
	}
	if !compile(t, e, deny("t", `mcp.tool.name == "delete"`)).NeedsMCP() {
		t.Error("a tool rule does not need MCP")
	}
	for expr, want := range map[string]bool{
		`mcp.tool.name == "fetch"`:                      false,
		`mcp.tool.arguments.url.startsWith("https://")`: true,
		`has(mcp.tool.arguments.url)`:                   true,
		`size(mcp.tool.arguments) < 3`:                  true,
		`"x" in mcp.tool.arguments`:                     true,
		`[mcp.tool].exists(t, t.arguments.url == "x")`:  true,
	} {
		if got := compile(t, e, allow("t", expr)).ReadsArguments(); got != want {
			t.Errorf("ReadsArguments(%s) = %v, want %v", expr, got, want)
		}
	}
	var none *RuleSet
	if none.ReadsArguments() {
		t.Error("no rules read arguments")
	}
}

func TestToolListFiltering(t *testing.T) {
	// The shape ext_proc uses to filter tools/list: one Input, ToolName changed per tool.
	e := newEnv(t)
	rs := compile(t, e, allow("mcp#0", `mcp.tool.name in ["fetch", "echo"]`), deny("mcp#1", `jwt.team == "interns" && mcp.tool.name == "echo"`))
	in := &Input{Claims: map[string]any{"team": "interns"}, MCPMethod: "tools/list", Target: "t"}
	var allowed []string
	for _, tool := range []string{"fetch", "echo", "delete"} {
		in.ToolName = tool
		if rs.EvaluateListing(t.Context(), in).Allowed {
			allowed = append(allowed, tool)
		}
	}
	if !reflect.DeepEqual(allowed, []string{"fetch"}) {
		t.Fatalf("allowed tools %v, want [fetch]", allowed)
	}
	in.Reset()
	if in.ToolName != "" || in.Claims != nil {
		t.Fatal("Reset kept fields")
	}
}

// TestArgumentsDecodedOnce: the tool arguments are decoded at most once per Input, whatever
// the number of rules and evaluations that read them, and not at all when no rule reads them.
func TestArgumentsDecodedOnce(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e, allow("a", `mcp.tool.arguments.n == 1.0`), allow("b", `mcp.tool.arguments.n == 2.0`))
	in := &Input{ToolName: "x", ToolArguments: json.RawMessage(`{"n":2}`)}
	if d := rs.Evaluate(t.Context(), in); !d.Allowed || d.Rule != "b" {
		t.Fatalf("%+v", d)
	}
	first := reflect.ValueOf(in.args).UnsafePointer()
	if first == nil || !in.argsOK {
		t.Fatal("the decoded arguments are not kept on the Input")
	}
	rs.Evaluate(t.Context(), in)
	if reflect.ValueOf(in.args).UnsafePointer() != first {
		t.Fatal("arguments were decoded again")
	}
	// Nothing is decoded when no rule reads the arguments.
	lazy := &Input{ToolName: "x", ToolArguments: json.RawMessage(`{"n":2}`)}
	compile(t, e, allow("a", `mcp.tool.name == "x"`)).Evaluate(t.Context(), lazy)
	if lazy.argsOK {
		t.Fatal("arguments decoded though no rule reads them")
	}
}

func TestCostTracking(t *testing.T) {
	e := newEnv(t)
	for expr, tracked := range map[string]bool{
		labRule:                                                             false,
		`request.headers["x-env"] == "prod"`:                                false,
		`mcp.tool.name in ["fetch", "echo"]`:                                false,
		`cidr("10.0.0.0/8").containsIP(source.address)`:                     false,
		`mcp.tool.arguments.url.startsWith("https://")`:                     false,
		`request.headers.exists(h, h.startsWith("x-"))`:                     true,
		`mcp.tool.arguments.items.all(i, i > 0)`:                            true,
		`mcp.tool.arguments.s.replace("a", "bb").replace("b", "cc") == "x"`: true,
		`jwt.groups.exists(g, g == "admins")`:                               true,
	} {
		rs := compile(t, e, allow("r", expr))
		if rs.allow[0].tracked != tracked {
			t.Errorf("%s: tracked = %v, want %v", expr, rs.allow[0].tracked, tracked)
		}
	}
	// A rule that grows its input past the limit is stopped at run time.
	rs := compile(t, e, allow("r", `mcp.tool.arguments.s.replace("a", "aaaaaaaaaa").replace("a", "aaaaaaaaaa").replace("a", "aaaaaaaaaa").size() > 0`))
	d := rs.Evaluate(t.Context(), &Input{ToolName: "x", ToolArguments: json.RawMessage(`{"s":"` + strings.Repeat("a", 2000) + `"}`)})
	if d.Allowed || len(d.Errors) != 1 || !strings.Contains(d.Errors[0].Error(), "cost limit exceeded") {
		t.Fatalf("%+v", d)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	e := newEnv(t)
	rs := compile(t, e, allow("a", labRule), deny("d", `mcp.tool.arguments.n == 3.0`), require("r", `request.headers.exists(h, h == "x")`))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := (g + i) % 4
				in := &Input{Claims: labClaims(), Headers: HeaderMap{"x": "1"}, ToolName: "t", ToolArguments: json.RawMessage(`{"n":` + strconv.Itoa(n) + `}`)}
				d := rs.Evaluate(t.Context(), in)
				if d.Allowed != (n != 3) {
					t.Errorf("n=%d: %+v", n, d)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRuleErrorValueFree: a rule's run-time error names the rule and, through ValueFree, says
// what kind of error it met without the request's values it quotes (an argument, a claim); the
// full message (Error) still has them, which is what ValueFree is for.
func TestRuleErrorValueFree(t *testing.T) {
	e := newEnv(t)
	in := &Input{ToolName: "t", Claims: map[string]any{"when": "SECRET-WHEN"},
		ToolArguments: json.RawMessage(`{"host":"SECRET-HOST","re":"SECRET-RE(","k":"SECRET-KEY","n":"SECRET-NUM","d":"SECRET-DUR","i":1.5}`)}
	for expr, kind := range map[string]string{
		`ip(mcp.tool.arguments.host).family() == 4`:               "IP Address",
		`timestamp(jwt.when) > timestamp("2020-01-01T00:00:00Z")`: "invalid RFC 3339 timestamp",
		`"x".matches(mcp.tool.arguments.re)`:                      "error parsing regexp",
		`jwt[mcp.tool.arguments.k] == "x"`:                        "no such key",
		`[1, 2][mcp.tool.arguments.i] == 1`:                       "unsupported index value",
		`int(mcp.tool.arguments.n) > 1`:                           "type conversion error",
		`duration(mcp.tool.arguments.d) > duration("1s")`:         "type conversion error",
	} {
		d := compile(t, e, deny("P#3", expr)).Evaluate(t.Context(), in)
		if len(d.Errors) != 1 {
			t.Errorf("%s: errors %v, want one", expr, d.Errors)
			continue
		}
		re, ok := errors.AsType[*RuleError](d.Errors[0])
		if !ok {
			t.Fatalf("%s: error %T, want a *RuleError", expr, d.Errors[0])
		}
		free := re.ValueFree()
		if kind != "type conversion error" && !strings.Contains(re.Error(), "SECRET") && !strings.Contains(re.Error(), "1.5") {
			t.Errorf("%s: full message %q holds no value: the case tests nothing", expr, re.Error())
		}
		if re.Rule != "P#3" || strings.Contains(free, "SECRET") || strings.Contains(free, "1.5") || !strings.HasPrefix(free, kind) {
			t.Errorf("%s: rule %q, value-free %q (full %q): want P#3 and the kind %q without SECRET", expr, re.Rule, free, re.Error(), kind)
		}
	}
	for msg, want := range map[string]string{
		`IP Address "a\"b: c" parse error`:              `IP Address "[REDACTED]" parse error`,
		"error parsing regexp: missing closing ): `x(`": "error parsing regexp",
		`no such key: s3cret`:                           "no such key",
		`unsupported index value 7 in list`:             "unsupported index value",
		`bad 'unclosed value`:                           `bad "[REDACTED]"`,
		`gives int, want bool`:                          `gives int, want bool`,
		`timestamp "x" out of range: "y"`:               `timestamp "[REDACTED]" out of range`,
	} {
		if got := valueFree(msg); got != want {
			t.Errorf("valueFree(%q) = %q, want %q", msg, got, want)
		}
	}
}
