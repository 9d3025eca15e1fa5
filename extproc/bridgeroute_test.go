package extproc_test

import (
	"slices"
	"testing"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// bridgeRoute is the route that bridges a Streamable HTTP client to the lab's single SSE target
// through the mux (contract.MetadataBridge): the target is named, there is no target list.
var bridgeRoute = extproctest.Route{
	Gateway: "agentgateway-system/agentgateway", Route: "agentgateway-system/mcp/rule/0",
	Policy: "bridge", MCP: contract.TransportStreamableHTTP, Backend: "agentgateway-system/mcp-backend",
	Target: "mcp-target", Bridge: contract.TransportSSE,
}

// bridgePolicy is the lab's JWT and traffic rule, and an MCP rule that allows the bridged
// target's tool fetch by its own name and its target.
func bridgePolicy(sg *signer) *policyv1.Policy {
	p := labPolicy(sg)
	p.Name = "bridge"
	p.McpRules = []*policyv1.Rule{
		{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == "fetch" && mcp.tool.target == "mcp-target"`, Source: "AgentgatewayPolicy/agentgateway-system/bridge#0"},
	}
	return p
}

// TestBridgeRouteSecret: a bridge route goes to the mux, so every request ext_proc passes
// (POST, GET, DELETE; under a policy or none) gets the mux's secret in x-mcpgate-mux-auth,
// a client's value replaced, and a client's x-mcpgate-mux-target removed, as on a multiplexed
// route; the same route without x-mcpgate-bridge (the target's own route) gets neither.
func TestBridgeRouteSecret(t *testing.T) {
	const secret = "the-mux-secret"
	forged, forgedTarget := hdr(contract.HeaderMuxAuth, "forged"), hdr(contract.HeaderMuxTarget, "other")
	open := bridgeRoute
	open.Policy = ""
	direct := open
	direct.Bridge, direct.MCP = "", contract.TransportSSE
	h := newHarness(t, []*policyv1.Policy{bridgePolicy(newSigner(t))}, func(c *extproc.Config) { c.MuxSecret = secret })
	for _, tc := range []struct {
		name    string
		route   extproctest.Route
		headers []extproctest.Header
		eos     bool
		via     bool // the route goes to the mux
	}{
		{"POST under a policy", bridgeRoute, postHeaders("/sse", extproctest.LabToken, forged, forgedTarget), false, true},
		{"POST without a policy", open, postHeaders("/sse", "", forged, forgedTarget), false, true},
		{"GET", open, append(getHeaders("/sse", ""), forged, forgedTarget), true, true},
		{"DELETE", open, []extproctest.Header{hdr(":authority", "x"), hdr(":path", "/sse"), hdr(":method", "DELETE"), forged, forgedTarget}, true, true},
		{"the target's own route", direct, postHeaders("/sse", "", forged, forgedTarget), false, false},
	} {
		s := h.open(t, h.tcp, tc.route)
		resp := check(t)(s.RequestHeaders(tc.headers, tc.eos))
		if ir := resp.GetImmediateResponse(); ir != nil {
			t.Fatalf("%s: refused: %v", tc.name, ir)
		}
		want := ""
		if tc.via {
			want = secret
		}
		if got := setHeaders(resp)[contract.HeaderMuxAuth]; got != want {
			t.Errorf("%s: %s set to %q, want %q: %v", tc.name, contract.HeaderMuxAuth, got, want, resp)
		}
		removed := slices.Contains(extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(), contract.HeaderMuxTarget)
		if removed != tc.via {
			t.Errorf("%s: %s removed %v, want %v: %v", tc.name, contract.HeaderMuxTarget, removed, tc.via, resp)
		}
		s.Close()
	}
}

// TestBridgeRouteNames: a bridge route's items are named as the target names them: the rules see
// the bare tool name and mcp.tool.target the route's target (a prefixed name is not split: it
// is another tool), the audit line names the target, and tools/list answers are filtered on the
// bare names.
func TestBridgeRouteNames(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{bridgePolicy(newSigner(t))})
	for _, tc := range []struct {
		body    string
		allowed bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, true},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"mcp-target_fetch","arguments":{}}}`, false},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, false},
	} {
		s := h.open(t, h.tcp, bridgeRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(tc.body), true))
		if ir := resp.GetImmediateResponse(); (ir == nil) != tc.allowed {
			t.Errorf("%s: allowed %v, want %v: %v", tc.body, ir == nil, tc.allowed, resp)
		}
		s.Close()
	}
	waitFor(t, "the audit records", func() bool { return len(h.audit.records(t)) == 3 })
	byID := h.audit.recordsByID(t)
	checkRecord(t, byID["1"], map[string]any{"tool": "fetch", "target": "mcp-target", "backend": bridgeRoute.Backend, "decision": "allow"})
	checkRecord(t, byID["2"], map[string]any{"tool": "mcp-target_fetch", "target": "mcp-target", "decision": "deny"})

	s := h.open(t, h.tcp, bridgeRoute)
	defer s.Close()
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp := check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"fetch"},{"name":"echo"},{"name":"mcp-target_fetch"}]}}`), true))
	if got, want := string(extproctest.BodyAfter(resp, nil)), `{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"fetch"}]}}`; got != want {
		t.Errorf("tools/list: body = %s\nwant %s", got, want)
	}
}

// TestBridgeRouteAccessLogFields: a bridge route's cluster is the bootstrap's mux, which holds
// no backend or target for the access log, so the request's dynamic metadata carries the
// backend and the route's target on every request: a call, a list, a GET, a request refused at
// its headers. The target's own route leaves both to its cluster's metadata.
func TestBridgeRouteAccessLogFields(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{bridgePolicy(newSigner(t))})
	direct := bridgeRoute
	direct.Bridge, direct.MCP = "", contract.TransportSSE
	const target = "mcp-target"
	for _, tc := range []struct {
		name            string
		route           extproctest.Route
		token           string
		body            string // "" for a GET
		backend, target string // want, "" for none
	}{
		{"allowed call", bridgeRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, bridgeRoute.Backend, target},
		{"refused call", bridgeRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, bridgeRoute.Backend, target},
		{"no item", bridgeRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, bridgeRoute.Backend, target},
		{"no token", bridgeRoute, "", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, bridgeRoute.Backend, target},
		{"GET", bridgeRoute, extproctest.LabToken, "", bridgeRoute.Backend, target},
		{"the target's own route", direct, extproctest.LabToken, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, "", ""},
	} {
		md := requestMetadata(t, h, tc.route, tc.token, tc.body)
		if md[contract.FieldBackend] != tc.backend || md[contract.FieldTarget] != tc.target {
			t.Errorf("%s: metadata backend %q target %q, want %q and %q (%v)", tc.name,
				md[contract.FieldBackend], md[contract.FieldTarget], tc.backend, tc.target, md)
		}
	}
}
