package extproc_test

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// muxRoute is a route to a multiplexed backend with targets a and b (the mux serves it), under
// the policy muxPolicy.
var muxRoute = extproctest.Route{
	Gateway: "agentgateway-system/agentgateway", Route: "agentgateway-system/mux/rule/0",
	Policy: "mux", MCP: "streamable-http", Backend: "agentgateway-system/mux-backend", Targets: "a,b",
}

// muxPlainRoute is muxRoute without x-mcpgate-targets: a route to its target a alone, where
// nothing is split.
var muxPlainRoute = func() extproctest.Route {
	r := muxRoute
	r.Targets, r.Target = "", "a"
	return r
}()

// muxPolicy is the lab's JWT and traffic rule, and MCP rules that name the items by their target's
// own names and by their targets: a's tool fetch, b's prompt greet, a's file resources.
func muxPolicy(sg *signer) *policyv1.Policy {
	p := labPolicy(sg)
	p.Name = "mux"
	p.McpRules = []*policyv1.Rule{
		{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == "fetch" && mcp.tool.target == "a"`, Source: "AgentgatewayPolicy/ns/mux#0"},
		{Action: policyv1.Rule_ALLOW, Expression: `mcp.prompt.name == "greet" && mcp.prompt.target == "b"`, Source: "AgentgatewayPolicy/ns/mux#1"},
		{Action: policyv1.Rule_ALLOW, Expression: `mcp.resource.target == "a" && mcp.resource.name.startsWith("file:///")`, Source: "AgentgatewayPolicy/ns/mux#2"},
	}
	return p
}

// TestMuxRouteRules: on a route with x-mcpgate-targets, the rules see each item split at its
// target prefix (mcp.tool.name the target's own name, mcp.tool.target the prefix), as the mux
// calls it; a name without a known prefix has target "" and is judged as it is. The audit line
// and the metrics name the item's target. Without the key the same names are judged whole.
func TestMuxRouteRules(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{muxPolicy(newSigner(t))})
	plain := muxPlainRoute
	for _, tc := range []struct {
		route   extproctest.Route
		body    string
		allowed bool
	}{
		{muxRoute, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_fetch","arguments":{}}}`, true},
		{muxRoute, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b_fetch","arguments":{}}}`, false},
		{muxRoute, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, false},
		{muxRoute, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"c_fetch","arguments":{}}}`, false},
		{muxRoute, `{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"b_greet"}}`, true},
		{muxRoute, `{"jsonrpc":"2.0","id":6,"method":"prompts/get","params":{"name":"a_greet"}}`, false},
		{muxRoute, `{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"a+file:///x"}}`, true},
		{muxRoute, `{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"b+file:///x"}}`, false},
		{muxRoute, `{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"a_file:///x"}}`, false},
		// Without x-mcpgate-targets nothing is split: the route's target is a, the tool a_fetch.
		{plain, `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"a_fetch","arguments":{}}}`, false},
		{plain, `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, true},
	} {
		s := h.open(t, h.tcp, tc.route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(tc.body), true))
		if ir := resp.GetImmediateResponse(); (ir == nil) != tc.allowed {
			t.Errorf("%s (targets %q): allowed %v, want %v: %v", tc.body, tc.route.Targets, ir == nil, tc.allowed, resp)
		}
		// An allowed request is audited when its stream ends without an answer.
		s.Close()
	}
	waitFor(t, "the audit records", func() bool { return len(h.audit.records(t)) == 11 })
	byID := h.audit.recordsByID(t)
	checkRecord(t, byID["1"], map[string]any{"tool": "a_fetch", "target": "a", "decision": "allow"})
	checkRecord(t, byID["2"], map[string]any{"tool": "b_fetch", "target": "b", "decision": "deny"})
	checkRecord(t, byID["5"], map[string]any{"prompt": "b_greet", "target": "b"})
	checkRecord(t, byID["7"], map[string]any{"resource": "a+file:///x", "target": "a"})
	if target, found := byID["3"]["target"]; found {
		t.Errorf("a call of an unprefixed tool on a multiplexed route: target %v, want none", target)
	}
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "target": "b"}); n != 1 {
		t.Errorf("mcpgate_mcp_requests_total of b's calls = %v, want 1", n)
	}
}

// TestMuxRouteListsFiltered: a multiplexed route's list answers (the mux's merged lists) are
// filtered item by item, each judged as its target's.
func TestMuxRouteListsFiltered(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{muxPolicy(newSigner(t))})
	for _, tc := range []struct{ method, answer, want string }{
		{"tools/list",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a_fetch"},{"name":"b_fetch"},{"name":"fetch"},{"name":"a_echo"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a_fetch"}]}}`},
		{"prompts/list",
			`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"a_greet"},{"name":"b_greet"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"b_greet"}]}}`},
		{"resources/list",
			`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"b+file:///x"},{"uri":"a+file:///x"},{"uri":"a+db://t"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"a+file:///x"}]}}`},
		{"resources/templates/list",
			`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"a+file:///{p}"},{"uriTemplate":"b+file:///{p}"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"a+file:///{p}"}]}}`},
	} {
		s := h.open(t, h.tcp, muxRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"`+tc.method+`"}`), true))
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		resp := check(t)(s.ResponseBody([]byte(tc.answer), true))
		if got := string(extproctest.BodyAfter(resp, nil)); got != tc.want {
			t.Errorf("%s: body = %s\nwant %s", tc.method, got, tc.want)
		}
	}
}

// TestMuxRouteSecret: on a route with x-mcpgate-targets, every request ext_proc passes (POST,
// GET, DELETE; with a token or none) gets the mux's secret in x-mcpgate-mux-auth at its request
// headers, overwriting the client's; without a secret configured the header is removed; a route
// without x-mcpgate-targets never gets it.
func TestMuxRouteSecret(t *testing.T) {
	const secret = "the-mux-secret"
	forged := hdr(contract.HeaderMuxAuth, "forged")
	open := muxRoute
	open.Policy = ""
	plain := open
	plain.Targets, plain.Target = "", "a"
	h := newHarness(t, []*policyv1.Policy{muxPolicy(newSigner(t))}, func(c *extproc.Config) { c.MuxSecret = secret })
	for _, tc := range []struct {
		name    string
		route   extproctest.Route
		headers []extproctest.Header
		eos     bool
		want    string
	}{
		{"POST under a policy", muxRoute, postHeaders("/mcp", extproctest.LabToken, forged), false, secret},
		{"POST without a policy", open, postHeaders("/mcp", "", forged), false, secret},
		{"GET", open, getHeaders("/mcp", ""), true, secret},
		{"DELETE", open, []extproctest.Header{hdr(":authority", "x"), hdr(":path", "/mcp"), hdr(":method", "DELETE"), forged}, true, secret},
		{"not multiplexed", plain, postHeaders("/mcp", "", forged), false, ""},
	} {
		s := h.open(t, h.tcp, tc.route)
		resp := check(t)(s.RequestHeaders(tc.headers, tc.eos))
		if got := setHeaders(resp)[contract.HeaderMuxAuth]; got != tc.want {
			t.Errorf("%s: %s set to %q, want %q: %v", tc.name, contract.HeaderMuxAuth, got, tc.want, resp)
		}
		s.Close()
	}

	h = newHarness(t, nil)
	s := h.open(t, h.tcp, open)
	defer s.Close()
	resp := check(t)(s.RequestHeaders(postHeaders("/mcp", "", forged), false))
	m := extproctest.Common(resp).GetHeaderMutation()
	if _, set := setHeaders(resp)[contract.HeaderMuxAuth]; set || !slices.Contains(m.GetRemoveHeaders(), contract.HeaderMuxAuth) {
		t.Errorf("without a secret: mutation %v, want %s removed", m, contract.HeaderMuxAuth)
	}
}

// TestMuxRouteCaller: every request of a route to the mux (multiplexed, bridged; POST, GET)
// gets x-mcpgate-caller set to bind.Binder.CallerID of its caller under the session key,
// overwriting a client's forged value: the verified token's issuer and subject wherever it comes
// from, or without a token its source address (the IP; an IPv6 address's /64). Another route
// never passes a client's value on.
func TestMuxRouteCaller(t *testing.T) {
	sg := newSigner(t)
	b, err := bind.New(extproctest.SessionKey())
	if err != nil {
		t.Fatal(err)
	}
	forged := hdr(contract.HeaderMuxCaller, "forged")
	lab := b.CallerID(bind.Caller{Verified: true, Issuer: "solo.io", Subject: "user-id"}, "")
	mallory := b.CallerID(bind.Caller{Verified: true, Issuer: testIssuer, Subject: "mallory"}, "")
	v4 := b.CallerID(bind.Caller{}, "10.1.2.3")
	open := muxRoute
	open.Policy = ""
	bridged := bridgeRoute
	bridged.Policy = ""
	plain := open
	plain.Targets, plain.Target = "", "a"
	h := newHarness(t, []*policyv1.Policy{muxPolicy(sg)}, func(c *extproc.Config) { c.MuxSecret = "the-mux-secret" })
	for _, tc := range []struct {
		name    string
		route   extproctest.Route
		source  string
		headers []extproctest.Header
		eos     bool
		want    string
	}{
		{"a token", muxRoute, "10.1.2.3:4000", postHeaders("/mcp", extproctest.LabToken, forged), false, lab},
		{"the token from another address", muxRoute, "10.9.9.9:4000", postHeaders("/mcp", extproctest.LabToken, forged), false, lab},
		{"another subject", muxRoute, "10.1.2.3:4000", postHeaders("/mcp", sg.token(t, gojwt.MapClaims{"sub": "mallory", "org": "solo.io"}), forged), false, mallory},
		{"no token", open, "10.1.2.3:4000", postHeaders("/mcp", "", forged), false, v4},
		{"no token, another port", open, "10.1.2.3:5000", postHeaders("/mcp", ""), false, v4},
		{"no token, an IPv4-mapped address", open, "[::ffff:10.1.2.3]:5000", postHeaders("/mcp", ""), false, v4},
		{"no token, another address", open, "10.1.2.4:4000", postHeaders("/mcp", ""), false, b.CallerID(bind.Caller{}, "10.1.2.4")},
		{"no token, IPv6", open, "[2001:db8::1]:4000", postHeaders("/mcp", ""), false, b.CallerID(bind.Caller{}, "2001:db8::/64")},
		{"no token, IPv6 in the same /64", open, "[2001:db8::2:1]:4000", postHeaders("/mcp", ""), false, b.CallerID(bind.Caller{}, "2001:db8::/64")},
		{"a legacy stream", open, "10.1.2.3:4000", append(getHeaders("/sse", ""), forged), true, v4},
		{"bridged", bridged, "10.1.2.3:4000", postHeaders("/mcp", "", forged), false, v4},
		{"not to the mux", plain, "10.1.2.3:4000", postHeaders("/mcp", "", forged), false, ""},
	} {
		s := h.open(t, h.tcp, tc.route)
		s.SourceAddress = tc.source
		resp := check(t)(s.RequestHeaders(tc.headers, tc.eos))
		if got := setHeaders(resp)[contract.HeaderMuxCaller]; got != tc.want {
			t.Errorf("%s: %s set to %q, want %q: %v", tc.name, contract.HeaderMuxCaller, got, tc.want, resp)
		}
		if tc.want == "" && !slices.Contains(extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(), contract.HeaderMuxCaller) {
			t.Errorf("%s: the client's %s is not removed: %v", tc.name, contract.HeaderMuxCaller, resp)
		}
		s.Close()
	}
	if lab == mallory || lab == v4 || strings.Contains(lab, "user-id") {
		t.Errorf("callers %q (lab), %q (mallory), %q (no token): want three opaque names", lab, mallory, v4)
	}
}

// TestCompletionJudged: completion/complete is judged as the prompt (ref/prompt, ref.name) or
// resource (ref/resource, ref.uri) it completes an argument of, split at its target prefix on a
// multiplexed route as the mux routes it, and a refused one is answered as a refused
// prompts/get or resources/read is; a ref that names neither is refused under rules.
func TestCompletionJudged(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{muxPolicy(newSigner(t))})
	plain := muxRoute
	plain.Targets, plain.Target = "", "a"
	complete := func(id int, ref string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"completion/complete","params":{"ref":%s,"argument":{"name":"x","value":"y"}}}`, id, ref)
	}
	for _, tc := range []struct {
		route extproctest.Route
		body  string
		// want is "" for an allowed request, else what the refusal's body holds.
		want string
	}{
		{muxRoute, complete(1, `{"type":"ref/prompt","name":"b_greet"}`), ""},
		{muxRoute, complete(2, `{"type":"ref/prompt","name":"a_greet"}`), `{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown prompt: a_greet"}}`},
		{muxRoute, complete(3, `{"type":"ref/resource","uri":"a+file:///x"}`), ""},
		{muxRoute, complete(4, `{"type":"ref/resource","uri":"b+file:///x"}`), `"message":"Unknown resource: b+file:///x"`},
		{muxRoute, complete(5, `{"type":"ref/prompt","name":"greet"}`), `"message":"Unknown prompt: greet"`},
		{muxRoute, complete(6, `{"type":"ref/tool","name":"a_fetch"}`), `params.ref must be an object`},
		{muxRoute, complete(7, `{"type":"ref/prompt"}`), `params.ref must be an object`},
		{muxRoute, complete(8, `{"type":"ref/prompt","name":"b_greet","Name":"a_greet"}`), `member names that repeat`},
		// Not multiplexed: the route's target is a, the names are whole.
		{plain, complete(9, `{"type":"ref/prompt","name":"greet"}`), `"message":"Unknown prompt: greet"`},
		{plain, complete(10, `{"type":"ref/resource","uri":"file:///x"}`), ""},
	} {
		s := h.open(t, h.tcp, tc.route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(tc.body), true))
		ir := resp.GetImmediateResponse()
		switch {
		case tc.want == "" && ir != nil:
			t.Errorf("%s: refused %s, want it allowed", tc.body, ir.GetBody())
		case tc.want != "" && (ir == nil || !strings.Contains(string(ir.GetBody()), tc.want)):
			t.Errorf("%s: %v, want a refusal with %s", tc.body, resp, tc.want)
		}
		s.Close()
	}
	waitFor(t, "the audit records", func() bool { return len(h.audit.records(t)) >= 10 })
	byID := h.audit.recordsByID(t)
	checkRecord(t, byID["1"], map[string]any{"method": "completion/complete", "prompt": "b_greet", "target": "b", "decision": "allow"})
	checkRecord(t, byID["2"], map[string]any{"prompt": "a_greet", "target": "a", "decision": "deny"})
	checkRecord(t, byID["4"], map[string]any{"resource": "b+file:///x", "target": "b", "decision": "deny"})
}

// TestMuxRouteAccessLogFields: on a multiplexed backend's front hop, whose cluster (the
// bootstrap's mux) holds no backend or target for the access log, the request's dynamic
// metadata (Envoy merges every reply's) carries the backend and the target of the request's item,
// the same as its audit line: a call's prefix target, none for a name without a known prefix or
// a request without an item, the backend also on a request refused at its headers. A route
// that is not multiplexed leaves both to its cluster's metadata.
func TestMuxRouteAccessLogFields(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{muxPolicy(newSigner(t))})
	plain := muxRoute
	plain.Targets, plain.Target = "", "a"
	const backend = "agentgateway-system/mux-backend"
	for _, tc := range []struct {
		name    string
		route   extproctest.Route
		token   string
		body    string // "" for a GET
		id      string // the audit record's jsonrpc_id, "" for none to compare
		backend string // want, "" for none
		target  string
	}{
		{"allowed call", muxRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_fetch","arguments":{}}}`, "1", backend, "a"},
		{"refused call", muxRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b_fetch","arguments":{}}}`, "2", backend, "b"},
		{"unknown prefix", muxRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, "3", backend, ""},
		{"prompt", muxRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"b_greet"}}`, "4", backend, "b"},
		{"resource", muxRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"a+file:///x"}}`, "5", backend, "a"},
		{"no item", muxRoute, extproctest.LabToken, `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`, "6", backend, ""},
		{"no token", muxRoute, "", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a_fetch","arguments":{}}}`, "", backend, ""},
		{"GET", muxRoute, extproctest.LabToken, "", "", backend, ""},
		{"not multiplexed", plain, extproctest.LabToken, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`, "", "", ""},
	} {
		md := requestMetadata(t, h, tc.route, tc.token, tc.body)
		if md[contract.FieldBackend] != tc.backend || md[contract.FieldTarget] != tc.target {
			t.Errorf("%s: metadata backend %q target %q, want %q and %q (%v)", tc.name,
				md[contract.FieldBackend], md[contract.FieldTarget], tc.backend, tc.target, md)
		}
		if tc.id == "" {
			continue
		}
		waitFor(t, "the audit record of "+tc.name, func() bool {
			return slices.ContainsFunc(h.audit.records(t), func(r map[string]any) bool { return fmt.Sprint(r["jsonrpc_id"]) == tc.id })
		})
		for _, r := range h.audit.records(t) {
			if fmt.Sprint(r["jsonrpc_id"]) == tc.id {
				want := map[string]any{"backend": tc.backend, "target": nil}
				if tc.target != "" {
					want["target"] = tc.target
				}
				checkRecord(t, r, want)
			}
		}
	}
}

// requestMetadata sends a request on route, a POST of body or a GET when body is "", and returns
// the dynamic metadata of ext_proc's replies to it, merged as Envoy merges them.
func requestMetadata(t *testing.T, h *harness, route extproctest.Route, token, body string) map[string]string {
	t.Helper()
	md := map[string]string{}
	merge := func(resp *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
		maps.Copy(md, extproctest.Metadata(resp))
		return resp
	}
	s := h.open(t, h.tcp, route)
	defer s.Close()
	if body == "" {
		merge(check(t)(s.RequestHeaders(getHeaders("/mcp", token), true)))
	} else if resp := merge(check(t)(s.RequestHeaders(postHeaders("/mcp", token), false))); resp.GetImmediateResponse() == nil {
		merge(check(t)(s.RequestBody([]byte(body), true)))
	}
	return md
}

// TestMuxRouteLegacySession: an HTTP+SSE client of a mux route (multiplexed, or bridged) gets the
// mux's endpoint event with its sessionId sealed to the caller, though the route says
// streamable-http (ext_proc classifies each request by what it is); a POST to the sealed endpoint
// carries the mux's secret and reaches the mux with the mux's own key; another caller's is 404.
func TestMuxRouteLegacySession(t *testing.T) {
	const secret = "the-mux-secret"
	sg := newSigner(t)
	open := &policyv1.Policy{Name: "open", Jwt: labPolicy(sg).GetJwt()}
	h := newHarness(t, []*policyv1.Policy{open}, func(c *extproc.Config) { c.MuxSecret = secret })
	multiplexed := muxRoute
	multiplexed.Policy = "open"
	bridged := bridgeRoute
	bridged.Policy = "open"
	for name, route := range map[string]extproctest.Route{"multiplexed": multiplexed, "bridge": bridged} {
		const endpoint = "/sse?sessionId=0123456789abcdef0123456789abcdef"
		get := h.open(t, h.tcp, route)
		if got := setHeaders(check(t)(get.RequestHeaders(getHeaders("/sse", extproctest.LabToken), true)))[contract.HeaderMuxAuth]; got != secret {
			t.Errorf("%s: GET: %s %q, want the secret", name, contract.HeaderMuxAuth, got)
		}
		check(t)(get.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
		ep := "event: endpoint\ndata: " + endpoint + "\n\n"
		got := string(extproctest.BodyAfter(check(t)(get.ResponseBody([]byte(ep), false)), []byte(ep)))
		sealed := extproctest.LabEndpoint(endpoint)
		if want := "event: endpoint\ndata: " + sealed + "\n\n"; got != want || sealed == endpoint {
			t.Errorf("%s: the client gets %q, want %q", name, got, want)
		}
		get.Close()

		hs := postHeaders(sealed, extproctest.LabToken)
		p := h.open(t, h.unix, route)
		resp := check(t)(p.RequestHeaders(hs, false))
		if got := applyHeaderMutation(hs, resp)[":path"]; got != endpoint {
			t.Errorf("%s: the mux gets %q, want its endpoint %q", name, got, endpoint)
		}
		if got := setHeaders(resp)[contract.HeaderMuxAuth]; got != secret {
			t.Errorf("%s: POST: %s %q, want the secret", name, contract.HeaderMuxAuth, got)
		}
		p.Close()

		p = h.open(t, h.unix, route)
		checkRefusal(t, name+": another caller", check(t)(p.RequestHeaders(postHeaders(sealed, sg.token(t, gojwt.MapClaims{"sub": "mallory"})), false)), 404, "null", -32001, "Session not found")
		p.Close()
	}
}

// TestMuxRouteRequestNotifications: a tools/call sent as a notification (no id) is judged as the
// call would be, on a multiplexed route as on a route to one server: a tool the rules deny is
// refused (202, nothing passes on; audited deny), an allowed one passes on (audited allow). Its
// audit outcome says what the answer was: notification when the server (or the mux) took it, 202;
// error when it refused it (the mux answers 400 to one it passes to no target, or passes on its
// target's 400).
func TestMuxRouteRequestNotifications(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{muxPolicy(newSigner(t))})
	plain := muxPlainRoute
	for _, tc := range []struct {
		route   extproctest.Route
		tool    string
		allowed bool
		status  string // the answer of the server (or the mux) to an allowed one
		outcome string
	}{
		{muxRoute, "a_fetch", true, "400", "error"},
		{muxRoute, "a_fetch", true, "202", "notification"},
		{muxRoute, "b_fetch", false, "", "notification"},
		{plain, "fetch", true, "202", "notification"},
		{plain, "fetch", true, "400", "error"},
		{plain, "a_fetch", false, "", "notification"},
	} {
		name := fmt.Sprintf("%s (targets %q, answer %s)", tc.tool, tc.route.Targets, tc.status)
		before := len(h.audit.records(t))
		s := h.open(t, h.tcp, tc.route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"`+tc.tool+`","arguments":{}}}`), true))
		ir := resp.GetImmediateResponse()
		switch {
		case (ir == nil) != tc.allowed:
			t.Fatalf("%s: allowed %v, want %v: %v", name, ir == nil, tc.allowed, resp)
		case ir != nil && ir.GetStatus().GetCode() != 202:
			t.Errorf("%s: refused with %d, want 202 (a notification gets no JSON-RPC answer)", name, ir.GetStatus().GetCode())
		case ir == nil:
			check(t)(s.ResponseHeaders(respHeaders(tc.status, ""), true))
		}
		s.Close()
		waitFor(t, "the audit record of "+name, func() bool { return len(h.audit.records(t)) == before+1 })
		rec := h.audit.records(t)[before]
		decision, status := "allow", tc.status
		if !tc.allowed {
			decision, status = "deny", "202"
		}
		code, _ := strconv.Atoi(status)
		checkRecord(t, rec, map[string]any{"method": "tools/call", "tool": tc.tool, "decision": decision, "outcome": tc.outcome, "http_status": code})
	}
}
