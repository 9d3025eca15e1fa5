package extproc_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestRuleErrorLogValueFree: a rule that fails at run time on the request's values (a tool
// argument, a header) fails closed and is logged with its policy, route and rule and the kind of
// error, without the values: ext_proc's log is not redacted as the audit line is.
func TestRuleErrorLogValueFree(t *testing.T) {
	p := labPolicy(newSigner(t))
	p.TrafficRules = append(p.TrafficRules, &policyv1.Rule{Action: policyv1.Rule_DENY,
		Expression: `"x-when" in request.headers && timestamp(request.headers["x-when"]) < timestamp("2000-01-01T00:00:00Z")`, Source: "Pol/ns/p#traffic[1]"})
	p.McpRules = append(p.McpRules, &policyv1.Rule{Action: policyv1.Rule_DENY,
		Expression: `mcp.tool.name == "fetch" && ip(mcp.tool.arguments.host).isLoopback()`, Source: "Pol/ns/p#mcp[7]"})
	logOpt, logs := withLog(slog.LevelWarn)
	h := newHarness(t, []*policyv1.Policy{p}, logOpt)

	s := h.open(t, h.tcp, streamableRoute)
	hs := append(postHeaders("/mcp", extproctest.LabToken), extproctest.Header{Name: "x-when", Value: "SECRET-WHEN"})
	if resp := check(t)(s.RequestHeaders(hs, false)); resp.GetImmediateResponse().GetStatus().GetCode() != 403 {
		t.Fatalf("a DENY rule that fails: %v, want 403", resp)
	}
	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"host":"SECRET-HOST"}}}`), true))
	if resp.GetImmediateResponse() == nil && !strings.Contains(resp.String(), "-32602") {
		t.Fatalf("a DENY rule that fails on a call: %v, want it refused", resp)
	}
	waitFor(t, "two warnings", func() bool { return logs.count("failed at run time") == 2 })
	out := logs.String()
	if strings.Contains(out, "SECRET") {
		t.Errorf("the log shows a request's value:\n%s", out)
	}
	for _, want := range []string{`rule=Pol/ns/p#traffic[1]`, `error="invalid RFC 3339 timestamp \"[REDACTED]\""`,
		`rule=Pol/ns/p#mcp[7]`, `error="IP Address \"[REDACTED]\" parse error during conversion from string"`, "policy=lab", "route=agentgateway-system/mcp/rule/0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
}
