package extproc_test

// Ways a client could try to see the tools the MCP rules hide, or a refused call's answer as a
// success: ext_proc holds and filters every answer stream under tool rules, whatever it knows of
// the requests, refuses what it would read otherwise than the server, and turns a refused call's
// stand-in answer into the error on any replica.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/extproc/mcp"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// sendChunks sends chunks as s's response body (eos on the last one when eos) and returns what
// the client receives.
func sendChunks(t *testing.T, s *extproctest.Stream, chunks []string, eos bool) string {
	t.Helper()
	var out strings.Builder
	for i, c := range chunks {
		resp := check(t)(s.ResponseBody([]byte(c), eos && i == len(chunks)-1))
		out.Write(extproctest.BodyAfter(resp, []byte(c)))
	}
	return out.String()
}

// splitEvent sends the server-sent event ev on s's response in two chunks cut inside the hidden
// tool's entry, so that a stream that does not hold back incomplete events passes the tool's
// name before the event can be read; it returns what the client receives.
func splitEvent(t *testing.T, s *extproctest.Stream, ev string) string {
	t.Helper()
	cut := strings.Index(ev, `"get-env"`) + 4
	if cut < 4 {
		t.Fatalf("no hidden tool in %q", ev)
	}
	return sendChunks(t, s, []string{ev[:cut], ev[cut:]}, false)
}

// standIn is the id (JSON) of the ping that stands in for the refused call of tool with id (JSON).
func standIn(id, tool string) string { return standInOf(id, mcp.Tool, tool) }

// standInOf is the stand-in id of a refused request for the item it named name with the raw id.
func standInOf(id string, it mcp.Item, name string) string {
	return string(mcp.RefusedID(json.RawMessage(id), it, name))
}

// checkRefusal fails unless resp refuses the request with HTTP status and a JSON-RPC error of
// code with id (raw JSON) whose message holds msg.
func checkRefusal(t *testing.T, what string, resp *extprocv3.ProcessingResponse, status int, id string, code int, msg string) {
	t.Helper()
	ir := resp.GetImmediateResponse()
	if ir == nil || int(ir.GetStatus().GetCode()) != status || setHeaders(resp)["content-type"] != "application/json" {
		t.Errorf("%s: want an immediate %d application/json, got %v", what, status, resp)
		return
	}
	var body struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(ir.GetBody(), &body); err != nil || string(body.ID) != id || body.Error.Code != code || !strings.Contains(body.Error.Message, msg) {
		t.Errorf("%s: body %s, want id %s, code %d, a message with %q", what, ir.GetBody(), id, code, msg)
	}
}

// TestHeldWithoutPendingRewrite: under tool rules an answer stream is held and filtered even when
// no request of the stream asked for a tools/list: a server may answer a ping (or anything) with
// a tools/list result, and a client that confused the gateway's bookkeeping once could make it
// stop holding split events.
func TestHeldWithoutPendingRewrite(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S"))), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`), true)))
	check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	if got := splitEvent(t, s, "event: message\ndata: "+toolsListAnswer+"\n\n"); got != "event: message\ndata: "+toolsListFiltered+"\n\n" {
		t.Errorf("POST's event stream: the client got %q", got)
	}

	// JSON, under any content-type a client may read as JSON.
	for _, ct := range []string{"application/json", "application/json-rpc", "text/plain; x=application/json"} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S"))), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`), true)))
		resp := check(t)(s.ResponseHeaders(respHeaders("200", ct), false))
		if mo := resp.GetModeOverride(); mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
			t.Errorf("content-type %s: mode_override %v, want the answer BUFFERED_PARTIAL (whole up to the limit; no content-length)", ct, mo)
			continue
		}
		resp = check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
		if got := string(extproctest.BodyAfter(resp, []byte(toolsListAnswer))); got != toolsListFiltered {
			t.Errorf("content-type %s: the client got %s", ct, got)
		}
	}

	// Too large to be read: replaced, not passed unfiltered.
	small := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = len(toolsListAnswer) - 1 })
	s = small.open(t, small.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S"))), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`), true)))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp := check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
	if got := string(extproctest.BodyAfter(resp, []byte(toolsListAnswer))); got != `{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"mcpgate: the server's answer could not be inspected"}}` {
		t.Errorf("an answer over the limit: the client got %s", got)
	}

	// A Streamable HTTP GET stream (server requests, notifications, replayed answers).
	g := h.open(t, h.tcp, streamableRoute)
	check(t)(g.RequestHeaders(append(getHeaders("/mcp", extproctest.LabToken), hdr("mcp-session-id", extproctest.LabSession("S"))), true))
	check(t)(g.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	check(t)(g.ResponseBody([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"), false))
	if got := splitEvent(t, g, "data: "+toolsListAnswer+"\n\n"); got != "data: "+toolsListFiltered+"\n\n" {
		t.Errorf("GET stream: the client got %q", got)
	}
}

// TestRepeatedIDRefused: a requester must not reuse a request id within a session (MCP); a batch
// that repeats one, or a legacy SSE POST whose id awaits its answer in the session, is refused
// with 400 and JSON-RPC -32600, under a policy or none: the gateway would match the answers with
// the wrong requests (a tools/list's result with a ping that needs no filtering).
func TestRepeatedIDRefused(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t)), {Name: "open"}})
	open := streamableRoute
	open.Policy = "open"
	for _, route := range []extproctest.Route{streamableRoute, open} {
		// The session the client holds: policy "open" does not authenticate.
		session := extproctest.LabSession("S")
		if route.Policy == "open" {
			session = extproctest.AnonSession("S")
		}
		for _, body := range []string{
			`[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`,
			`[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":2.0,"method":"ping"}]`,
			`[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"get-env"}},{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]`,
		} {
			s := h.open(t, h.tcp, route)
			check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", session)), false))
			resp := check(t)(s.RequestBody([]byte(body), true))
			checkRefusal(t, fmt.Sprintf("policy %s, batch %s", route.Policy, body), resp, 400, "null", -32600, "already in flight")
		}
		s := h.open(t, h.tcp, route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", session)), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(`[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","id":"2","method":"ping"}]`), true)))
	}

	const endpoint = "/message?sessionId=dup"
	get := openLegacySession(t, h, endpoint)
	postLegacy(t, h, endpoint, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	p := h.open(t, h.unix, sseRoute)
	check(t)(p.RequestHeaders(postHeaders(extproctest.LabEndpoint(endpoint), extproctest.LabToken), false))
	resp := check(t)(p.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`), true))
	checkRefusal(t, "legacy POST of an id in flight", resp, 400, "2", -32600, "already in flight")
	// Another session may use the id.
	openLegacySession(t, h, "/message?sessionId=other")
	postLegacy(t, h, "/message?sessionId=other", `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	// The answer is still matched with the tools/list, and filtered.
	if got := splitEvent(t, get, "event: message\ndata: "+toolsListAnswer+"\n\n"); got != "event: message\ndata: "+toolsListFiltered+"\n\n" {
		t.Errorf("legacy GET stream: the client got %q", got)
	}
	waitFor(t, "the tools/list's record", func() bool { return len(auditOf(t, h, "dup")) == 2 })
	recs := auditOf(t, h, "dup")
	checkRecord(t, recs[0], map[string]any{"method": "ping", "outcome": "refused", "http_status": 400, "jsonrpc_id": 2})
	checkRecord(t, recs[1], map[string]any{"method": "tools/list", "outcome": "result", "jsonrpc_id": 2})
	// Another target of the backend may use an id in flight in a session of the same name: the
	// session table's scope is the backend and the target.
	otherTarget := sseRoute
	otherTarget.Target = "other-target"
	openLegacySession(t, h, endpoint)
	postLegacy(t, h, endpoint, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	p = h.open(t, h.unix, otherTarget)
	check(t)(p.RequestHeaders(postHeaders(extproctest.LabEndpoint(endpoint), extproctest.LabToken), false))
	plainContinue(t, check(t)(p.RequestBody([]byte(`{"jsonrpc":"2.0","id":3,"method":"ping"}`), true)))
}

// TestAmbiguousLegacySessionRefused: a POST whose legacy SSE session the server could read
// otherwise than the gateway is refused with 400 and JSON-RPC -32600 at its headers, under a
// policy or none: with Mcp-Session-Id as well, the gateway took it for Streamable HTTP and never
// awaited its answers on the session's GET stream; with a repeated session parameter, the gateway
// read the first, Starlette reads the last.
func TestAmbiguousLegacySessionRefused(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t)), {Name: "open"}})
	open := sseRoute
	open.Policy = "open"
	for _, route := range []extproctest.Route{sseRoute, open} {
		// The session the client holds: policy "open" does not authenticate, so the caller is
		// no one.
		seal := extproctest.LabSession
		if route.Policy == "open" {
			seal = extproctest.AnonSession
		}
		for _, tc := range []struct {
			path  string
			extra []extproctest.Header
		}{
			{"/sse?sessionid=S1", []extproctest.Header{hdr("mcp-session-id", "x")}},
			{"/messages/?session_id=OTHER&session_id=S1", nil},
			{"/message?sessionId=OTHER&session_id=S1", nil},
			{"/messages/?session%5Fid=OTHER&session_id=S1", nil},
		} {
			s := h.open(t, h.tcp, route)
			resp := check(t)(s.RequestHeaders(postHeaders(tc.path, extproctest.LabToken, tc.extra...), false))
			checkRefusal(t, fmt.Sprintf("policy %s, POST %s %v", route.Policy, tc.path, tc.extra), resp, 400, "null", -32600, "legacy SSE session")
		}
		for _, tc := range []struct {
			path, session string
		}{{"/sse?sessionid=" + seal("S1"), ""}, {"/mcp", seal("S1")}, {"/mcp?x=1", seal("S1")}} {
			s := h.open(t, h.tcp, route)
			var extra []extproctest.Header
			if tc.session != "" {
				extra = append(extra, hdr("mcp-session-id", tc.session))
			}
			plainContinue(t, check(t)(s.RequestHeaders(postHeaders(tc.path, extproctest.LabToken, extra...), false)))
		}
	}
}

// TestLegacyTwoReplicas: with two data-plane pods, each with its own ext_proc, a legacy SSE
// session's GET stream may pass one and its POSTs the other. The GET's pod knows none of the
// requests: it filters the tools/list answer all the same, and turns the stand-in ping's answer
// into the refused call's error, with the call's own id (a number stays a number, a string a
// string).
func TestLegacyTwoReplicas(t *testing.T) {
	sg := newSigner(t)
	a := newHarness(t, []*policyv1.Policy{labPolicy(sg)})
	b := newHarness(t, []*policyv1.Policy{labPolicy(sg)})
	const endpoint = "/message?sessionId=abc"
	get := openLegacySession(t, a, endpoint)

	postLegacy(t, b, endpoint, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if got := splitEvent(t, get, "event: message\ndata: "+toolsListAnswer+"\n\n"); got != "event: message\ndata: "+toolsListFiltered+"\n\n" {
		t.Errorf("tools/list answer on the other pod: the client got %q", got)
	}

	for _, id := range []string{`5`, `"call-9"`, `"mcpgate-refused:x"`} {
		call := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"get-env","arguments":{}}}`
		p := b.open(t, b.unix, sseRoute)
		check(t)(p.RequestHeaders(postHeaders(extproctest.LabEndpoint(endpoint), extproctest.LabToken), false))
		resp := check(t)(p.RequestBody([]byte(call), true))
		forwarded := extproctest.BodyAfter(resp, []byte(call))
		var ping struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.Unmarshal(forwarded, &ping); err != nil || ping.Method != "ping" || !strings.HasPrefix(string(ping.ID), `"`+mcp.RefusedIDPrefix) {
			t.Fatalf("id %s: the refused call was forwarded as %s", id, forwarded)
		}
		pong := `event: message` + "\n" + `data: {"jsonrpc":"2.0","id":` + string(ping.ID) + `,"result":{}}` + "\n\n"
		resp = check(t)(get.ResponseBody([]byte(pong), false))
		want := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"error\":{\"code\":-32602,\"message\":\"Unknown tool: get-env\"}}\n\n"
		if got := string(extproctest.BodyAfter(resp, []byte(pong))); got != want {
			t.Errorf("id %s: the stand-in's answer on the other pod became %q, want %q", id, got, want)
		}
	}
}

// TestForgedRefusedID: a request whose id looks like a refused call's stand-in gets an error in
// answer, whatever the server answered: a client can only make its own answers errors.
func TestForgedRefusedID(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	forged := string(mcp.RefusedID(json.RawMessage(`7`), mcp.Tool, "fetch"))
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S"))), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":`+forged+`,"method":"tools/list"}`), true)))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	ans := `{"jsonrpc":"2.0","id":` + forged + `,"result":{"tools":[{"name":"fetch"}]}}`
	resp := check(t)(s.ResponseBody([]byte(ans), true))
	if got := string(extproctest.BodyAfter(resp, []byte(ans))); got != `{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: fetch"}}` {
		t.Errorf("forged stand-in id: the client got %s", got)
	}
}
