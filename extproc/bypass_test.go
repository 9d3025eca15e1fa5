package extproc_test

import (
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// rmCall is a tools/call of the tool rm, which the policies of these tests deny.
var rmCall = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}`)

// withMethod returns hs with its :method replaced.
func withMethod(hs []extproctest.Header, method string) []extproctest.Header {
	out := append([]extproctest.Header(nil), hs...)
	for i := range out {
		if out[i].Name == ":method" {
			out[i].Value = method
		}
	}
	return out
}

// TestBodyOfAnyMethodJudgedAsPost: the MCP Python SDK's legacy SSE message handler
// (SseServerTransport.handle_post_message) runs the body of a request to its message path with
// session_id, whatever the HTTP method. A request of any method whose body follows is judged as a
// POST: its legacy session query parameter is opened (a raw or another caller's id is 404 at the
// headers, a sealed one is given back to the server raw), and traffic rules that read mcp.* judge
// its body's messages (403). A GET or DELETE is judged at its headers too: its body may never
// come (an HTTP/2 request ending with trailers sends ext_proc none), and it acts without one.
func TestBodyOfAnyMethodJudgedAsPost(t *testing.T) {
	deny := &policyv1.Policy{Name: "lab", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.tool.name == "rm"`}}}
	allow := &policyv1.Policy{Name: "pings", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `mcp.method == "ping"`}}}
	h := newHarness(t, []*policyv1.Policy{deny, allow})
	const raw = "0123456789abcdef0123456789abcdef"
	sealed := extproctest.AnonSession(raw)
	for _, method := range []string{"PUT", "PATCH", "GET", "DELETE", "POST"} {
		// A raw id (or any the gateway did not seal for this caller): 404 at the headers.
		s := h.open(t, h.tcp, streamableRoute)
		resp := check(t)(s.RequestHeaders(withMethod(postHeaders("/messages/?session_id="+raw, ""), method), false))
		checkRefusal(t, method+" with a raw legacy session id and a body", resp, 404, "null", -32001, "Session not found")
		s.Close()

		// A sealed one: the server gets its own id; the call is judged by the traffic rules.
		s = h.open(t, h.tcp, streamableRoute)
		hs := withMethod(postHeaders("/messages/?session_id="+sealed, ""), method)
		resp = check(t)(s.RequestHeaders(hs, false))
		if resp.GetImmediateResponse() != nil {
			t.Fatalf("%s with a sealed legacy session id: %v, want CONTINUE", method, resp)
		}
		if got := applyHeaderMutation(hs, resp)[":path"]; got != "/messages/?session_id="+raw {
			t.Errorf("%s with a sealed legacy session id: the server gets :path %q, want its own id", method, got)
		}
		resp = check(t)(s.RequestBody(rmCall, true))
		if got := resp.GetImmediateResponse().GetStatus().GetCode(); got != 403 {
			t.Errorf("%s: tools/call rm under DENY mcp.tool.name == \"rm\": %v, want 403", method, resp)
		}
		s.Close()
	}

	// Streamable HTTP's GET and DELETE keep their meaning: without a body a GET opens a stream
	// and a DELETE ends the session, judged at their headers.
	s := h.open(t, h.tcp, streamableRoute)
	plainContinue(t, check(t)(s.RequestHeaders(append(getHeaders("/mcp", ""), hdr("mcp-session-id", sealed)), true)))
	s.Close()
	s = h.open(t, h.tcp, streamableRoute)
	plainContinue(t, check(t)(s.RequestHeaders(withMethod(postHeaders("/mcp", "", hdr("mcp-session-id", sealed)), "DELETE"), true)))
	s.Close()
	// With a body, a GET's messages are judged too.
	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(append(getHeaders("/mcp", ""), hdr("mcp-session-id", sealed)), false))
	if resp := check(t)(s.RequestBody(rmCall, true)); resp.GetImmediateResponse().GetStatus().GetCode() != 403 {
		t.Errorf("a GET's body with tools/call rm: %v, want 403", resp)
	}
	s.Close()

	// A request of any method but POST whose body may follow is judged at its headers as well:
	// ALLOW mcp.method == "ping" refuses it there (its body may never come: an HTTP/2 request
	// ending with trailers brings none), as one without a body. A POST's rules run on its body.
	pings := streamableRoute
	pings.Policy = "pings"
	for method, status := range map[string]int32{"GET": 403, "DELETE": 403, "PUT": 403, "PATCH": 403, "OPTIONS": 403, "POST": 0} {
		s := h.open(t, h.tcp, pings)
		resp := check(t)(s.RequestHeaders(withMethod(postHeaders("/mcp", "", hdr("mcp-session-id", sealed)), method), false))
		if got := resp.GetImmediateResponse().GetStatus().GetCode(); int32(got) != status {
			t.Errorf("%s with a body under ALLOW mcp.method == \"ping\": headers answered %v, want status %d", method, resp, status)
		}
		if status == 0 {
			if resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), true)); resp.GetImmediateResponse() != nil {
				t.Errorf("%s: a ping under ALLOW mcp.method == \"ping\": %v, want CONTINUE", method, resp)
			}
		}
		s.Close()
	}
}

// TestBracketedSessionParameterRefused: Express's query parser (qs) reads sessionId[]=ID (also
// escaped, or sessionId[0]=ID) as ["ID"], and the TypeScript SDK's transports[["ID"]] is
// transports["ID"]: the server serves the session ID. The gateway, which looks for the name
// sessionId, would take the request for a Streamable HTTP one without a session and open none.
// Such a name is refused at the headers, as two session parameters are (400, -32600).
func TestBracketedSessionParameterRefused(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{{Name: "lab"}})
	const raw = "0123456789abcdef0123456789abcdef"
	for _, path := range []string{
		"/message?sessionId[]=" + raw,
		"/message?sessionId%5B%5D=" + raw,
		"/message?sessionId%5b%5d=" + raw,
		"/message?sessionId[0]=" + raw,
		"/message?x=1&sessionId[][x]=" + raw,
		"/messages/?session_id[]=" + raw,
		"/sse?sessionid[]=" + raw,
		"/message?session%49d[]=" + raw,
		"/message?sessionId[]=" + extproctest.AnonSession(raw),
	} {
		s := h.open(t, h.tcp, streamableRoute)
		resp := check(t)(s.RequestHeaders(postHeaders(path, ""), false))
		checkRefusal(t, "POST "+path, resp, 400, "null", -32600, "session")
		if d := resp.GetImmediateResponse().GetDetails(); d != "mcpgate_ambiguous_session" {
			t.Errorf("POST %s: details %q, want mcpgate_ambiguous_session", path, d)
		}
		s.Close()
	}
	// Names that only begin like one pass as any other parameter.
	for _, path := range []string{"/mcp?sessionIds[]=1", "/mcp?session[]=1", "/mcp?sessionIdx=1"} {
		s := h.open(t, h.tcp, streamableRoute)
		plainContinue(t, check(t)(s.RequestHeaders(postHeaders(path, ""), false)))
		s.Close()
	}
}

// TestUnreadableBodyRefusedOnEveryMCPRoute: every tool call is audited, so on every MCP route,
// under a policy without rules that read messages or under none, a body the server reads
// otherwise than the gateway is refused as under tool rules, with an audit line: member names
// that repeat or differ only in letter case (Go's encoding/json takes the last "Method" for
// "method": the audit would say ping where the server runs tools/call rm), a compressed body
// (express.json() inflates it; the gateway would audit nothing) and a charset other than UTF-8.
// Such a route asks for plain answers as well (accept-encoding removed).
func TestUnreadableBodyRefusedOnEveryMCPRoute(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{{Name: "plain", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `request.method != ""`}}}})
	plain, none := streamableRoute, streamableRoute
	plain.Policy, none.Policy = "plain", ""
	sid := hdr("mcp-session-id", extproctest.AnonSession("S"))
	cases := []struct {
		name    string
		extra   []extproctest.Header
		body    string
		status  int
		code    int
		details string
	}{
		{"Method after method", nil, `{"jsonrpc":"2.0","id":7,"method":"ping","Method":"tools/call","params":{"name":"rm"}}`, 400, -32600, "mcpgate_ambiguous_jsonrpc"},
		{"method twice", nil, `{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call","params":{"name":"rm"}}`, 400, -32600, "mcpgate_ambiguous_jsonrpc"},
		{"Name after name", nil, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","Name":"rm"}}`, 400, -32600, "mcpgate_ambiguous_jsonrpc"},
		{"Uri after uri", nil, `{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"file:///a","Uri":"file:///etc/passwd"}}`, 400, -32600, "mcpgate_ambiguous_jsonrpc"},
		{"gzip", []extproctest.Header{hdr("content-encoding", "gzip")}, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 400, -32700, "mcpgate_not_jsonrpc"},
		{"gzip over JSON", []extproctest.Header{hdr("content-encoding", "gzip")}, `{"jsonrpc":"2.0","id":7,"method":"ping"}`, 400, -32700, "mcpgate_not_jsonrpc"},
		{"UTF-16", []extproctest.Header{hdr("content-type", "application/json; charset=utf-16")}, `{"jsonrpc":"2.0","id":7,"method":"ping"}`, 400, -32700, "mcpgate_not_jsonrpc"},
		{"a plain call", nil, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"rm"}}`, 0, 0, ""},
		{"identity", []extproctest.Header{hdr("content-encoding", "identity")}, `{"jsonrpc":"2.0","id":7,"method":"ping"}`, 0, 0, ""},
	}
	refusals := 0
	for _, route := range []extproctest.Route{plain, none} {
		for _, tc := range cases {
			what := tc.name + " on route policy " + route.Policy
			s := h.open(t, h.tcp, route)
			hs := postHeaders("/mcp", "", append([]extproctest.Header{sid, hdr("accept-encoding", "gzip")}, tc.extra...)...)
			if tc.name == "UTF-16" {
				hs = hs[:len(hs)-1]
				for i := range hs {
					if hs[i].Name == "content-type" {
						hs[i].Value = tc.extra[0].Value
					}
				}
			}
			resp := check(t)(s.RequestHeaders(hs, false))
			if _, kept := applyHeaderMutation(hs, resp)["accept-encoding"]; kept {
				t.Errorf("%s: accept-encoding kept (%v)", what, resp)
			}
			resp = check(t)(s.RequestBody([]byte(tc.body), true))
			s.Close()
			if tc.status == 0 {
				if resp.GetImmediateResponse() != nil {
					t.Errorf("%s: %v, want CONTINUE", what, resp)
				}
				continue
			}
			refusals++
			checkRefusal(t, what, resp, tc.status, "null", tc.code, "")
			if d := resp.GetImmediateResponse().GetDetails(); d != tc.details {
				t.Errorf("%s: details %q, want %q", what, d, tc.details)
			}
		}
	}
	waitFor(t, "the audit lines", func() bool { return len(h.audit.records(t)) == 2*len(cases) })
	got := 0
	for _, rec := range h.audit.records(t) {
		if rec["outcome"] == "refused" && rec["decision"] == "deny" && rec["http_status"] == float64(400) {
			got++
		}
	}
	if got != refusals {
		t.Errorf("%d refusals audited, want %d: %v", got, refusals, h.audit.records(t))
	}

	// An answer compressed all the same (the server ignored the removed accept-encoding) cannot be
	// read without MCP rules to rewrite it: it passes unread, and the call is still audited, without
	// its answer's outcome.
	s := h.open(t, h.tcp, none)
	check(t)(s.RequestHeaders(postHeaders("/mcp", "", sid), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":"z","method":"tools/call","params":{"name":"rm"}}`), true))
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-encoding", "gzip")), false))
	if m := resp.GetModeOverride().GetResponseBodyMode(); m != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("a compressed answer without MCP rules: response body mode %v, want NONE", m)
	}
	s.Close()
	waitFor(t, "the compressed answer's call's audit line", func() bool { return h.audit.recordsByID(t)["z"] != nil })
	checkRecord(t, h.audit.recordsByID(t)["z"], map[string]any{"tool": "rm", "method": "tools/call", "http_status": 200, "outcome": "no_answer"})
}
