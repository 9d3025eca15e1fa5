package extproc_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestHostRuleHoldsForEverySpelling: a DENY rule on request.host refuses the host however the
// client spells :authority to reach the same virtual host (Envoy ignores case and port).
func TestHostRuleHoldsForEverySpelling(t *testing.T) {
	pol := &policyv1.Policy{Name: "lab", TrafficRules: []*policyv1.Rule{
		{Action: policyv1.Rule_DENY, Expression: `request.host == "admin.example.com"`, Source: "P/ns/deny-admin#traffic[0]"},
	}}
	h := newHarness(t, []*policyv1.Policy{pol})
	for host, denied := range map[string]bool{
		"admin.example.com": true, "Admin.example.com": true, "admin.example.com:8080": true,
		"admin.example.com.": true, "ADMIN.EXAMPLE.COM.:443": true, "www.example.com": false,
	} {
		s := h.open(t, h.tcp, streamableRoute)
		hs := []extproctest.Header{hdr(":authority", host), hdr(":path", "/mcp"), hdr(":method", "GET"), hdr(":scheme", "http")}
		resp := check(t)(s.RequestHeaders(hs, true))
		if got := resp.GetImmediateResponse().GetStatus().GetCode() == 403; got != denied {
			t.Errorf(":authority %q: refused %v, want %v (%v)", host, got, denied, resp)
		}
		s.Close()
	}
}

// TestArgumentInOtherCaseRefused: under a DENY rule on mcp.tool.arguments.path (guarded with
// has(), as docs/design.md advises for optional values), {"Path": "/etc/passwd"}, which a server
// binding arguments with Go's encoding/json reads as path, is refused as ambiguous (400, -32600,
// naming the member) before the upstream sees it, whatever its value; so is the same member in a
// traffic rule that reads the arguments. The exact name is judged by the rules.
func TestArgumentInOtherCaseRefused(t *testing.T) {
	const guard = `has(mcp.tool.arguments.path) && mcp.tool.arguments.path.startsWith("/etc")`
	pol := &policyv1.Policy{Name: "lab", McpRules: []*policyv1.Rule{
		{Action: policyv1.Rule_DENY, Expression: guard, Source: "P/ns/files#mcp[0]"},
	}}
	traffic := &policyv1.Policy{Name: "traffic", TrafficRules: []*policyv1.Rule{
		{Action: policyv1.Rule_DENY, Expression: `mcp.method == "tools/call" && has(mcp.tool.arguments.opts.mode) && mcp.tool.arguments.opts.mode == "raw"`, Source: "P/ns/modes#traffic[0]"},
	}}
	h := newHarness(t, []*policyv1.Policy{pol, traffic})
	trafficRoute := streamableRoute
	trafficRoute.Policy = "traffic"
	for _, tc := range []struct {
		route  extproctest.Route
		args   string
		status int32 // 0: passed on
		member string
	}{
		{streamableRoute, `{"path":"/etc/passwd"}`, 200, ""}, // the rule's Unknown tool answer
		{streamableRoute, `{"path":"/tmp/x"}`, 0, ""},
		{streamableRoute, `{"Path":"/etc/passwd"}`, 400, "Path"},
		{streamableRoute, `{"PATH":"/tmp/x"}`, 400, "PATH"},
		{streamableRoute, `{"pa\u0054h":"/etc/passwd"}`, 400, "paTh"},
		{streamableRoute, `{"Other":"/etc/passwd"}`, 0, ""},
		{trafficRoute, `{"opts":{"Mode":"raw"}}`, 400, "opts.Mode"},
		{trafficRoute, `{"opts":{"mode":"raw"}}`, 403, ""},
		{trafficRoute, `{"opts":{"mode":"cooked"}}`, 0, ""},
	} {
		s := h.open(t, h.tcp, tc.route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", "", hdr("mcp-session-id", extproctest.AnonSession("S"))), false))
		resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":`+tc.args+`}}`), true))
		s.Close()
		ir := resp.GetImmediateResponse()
		if got := int32(ir.GetStatus().GetCode()); got != tc.status {
			t.Errorf("%s on %s: status %d, want %d (%v)", tc.args, tc.route.Policy, got, tc.status, resp)
			continue
		}
		if tc.member == "" {
			continue
		}
		var e struct {
			Error struct {
				Code    int
				Message string
			}
		}
		if err := json.Unmarshal(ir.GetBody(), &e); err != nil || e.Error.Code != -32600 || !strings.Contains(e.Error.Message, `"`+tc.member+`"`) {
			t.Errorf("%s: answer %s, want a -32600 error naming %q", tc.args, ir.GetBody(), tc.member)
		}
	}
	waitFor(t, "the audit lines", func() bool { return len(h.audit.records(t)) == 9 })
	for _, rec := range h.audit.records(t) {
		if rec["outcome"] == "refused" && rec["tool"] != "read_file" {
			t.Errorf("refusal recorded without its tool: %v", rec)
		}
	}
}

// TestToolLabelNotFilledByClients: a client calling a thousand tools that do not exist (answered
// with errors), in batches, takes no room in the metrics' tool label: the tools the server lists
// and those that answer with a result are counted under their names afterwards.
func TestToolLabelNotFilledByClients(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	route := streamableRoute
	route.Policy = ""
	exchange := func(req, answer string) {
		t.Helper()
		s := h.open(t, h.tcp, route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", "", hdr("mcp-session-id", extproctest.AnonSession("S"))), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(req), true)))
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		check(t)(s.ResponseBody([]byte(answer), true))
		s.Close()
	}
	const batches, size = 5, 250
	for b := range batches {
		var reqs, answers []string
		for i := range size {
			id := strconv.Itoa(b*size + i)
			reqs = append(reqs, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"bogus-`+id+`"}}`)
			answers = append(answers, `{"jsonrpc":"2.0","id":`+id+`,"error":{"code":-32602,"message":"Unknown tool"}}`)
		}
		exchange("["+strings.Join(reqs, ",")+"]", "["+strings.Join(answers, ",")+"]")
	}
	exchange(`{"jsonrpc":"2.0","id":"l","method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"l","result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"get-env","inputSchema":{}}]}}`)
	exchange(`{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"fetch","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":"c","result":{"content":[]}}`)
	exchange(`{"jsonrpc":"2.0","id":"e","method":"tools/call","params":{"name":"get-env"}}`,
		`{"jsonrpc":"2.0","id":"e","error":{"code":-32603,"message":"failed"}}`)
	exchange(`{"jsonrpc":"2.0","id":"f","method":"tools/call","params":{"name":"fetch","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":"f","result":{"content":[]}}`)
	waitFor(t, "the audit lines", func() bool { return len(h.audit.records(t)) == batches*size+4 })
	for tool, want := range map[string]float64{"other": batches * size, "fetch": 2, "get-env": 1} {
		if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "tool": tool}); n != want {
			t.Errorf("tools/call counted under tool %q: %v, want %v", tool, n, want)
		}
	}
}

// TestMessagesOutOfOrder: Envoy sends the request headers first and nothing after an immediate
// response. A request body before them (a route whose request header mode is not SEND) is
// refused with 500, never passed unauthenticated; a message after an immediate response ends the
// stream with an error, never judged as a request of its own.
func TestMessagesOutOfOrder(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	call := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env","arguments":{}}}`)
	s := h.open(t, h.tcp, streamableRoute)
	resp := check(t)(s.RequestBody(call, true))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 500 || ir.GetDetails() != "mcpgate_headers_not_sent" ||
		!strings.Contains(string(ir.GetBody()), streamableRoute.Route) {
		t.Errorf("a request body before the request headers: %v, want 500 mcpgate_headers_not_sent naming the route", resp)
	}
	s.Close()
	// audited as every other refusal
	waitFor(t, "the refusal's audit line", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"http_status": 500, "outcome": "refused", "decision": "deny"})

	// A local reply of a filter before ext_proc (the CORS filter's answer to a preflight) passes
	// through ext_proc's encoder side without request headers: it passes.
	s = h.open(t, h.tcp, streamableRoute)
	plainContinue(t, check(t)(s.ResponseHeaders(respHeaders("200", ""), true)))
	s.Close()

	s = h.open(t, h.tcp, streamableRoute)
	if resp := check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false)); resp.GetImmediateResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("no token: %v, want 401", resp)
	}
	if resp, err := s.RequestBody(call, true); err == nil {
		t.Errorf("a request body after the 401: %v, want the stream to end with an error", resp)
	}
	s.Close()
}
