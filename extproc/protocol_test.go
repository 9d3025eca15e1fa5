package extproc_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	gojwt "github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// check returns a function that fails the test on a send or receive error.
func check(t *testing.T) func(*extprocv3.ProcessingResponse, error) *extprocv3.ProcessingResponse {
	return func(resp *extprocv3.ProcessingResponse, err error) *extprocv3.ProcessingResponse {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for k := range extproctest.Metadata(resp) {
			if !slices.ContainsFunc(contract.Fields(), func(f contract.Field) bool {
				return f.Name == k && (f.Source == contract.FromExtProc || f.Fallback == contract.FromExtProc)
			}) {
				t.Errorf("the reply writes %q into the dynamic metadata: only the fields ext_proc writes (contract.FromExtProc, as Source or Fallback) belong there", k)
			}
		}
		return resp
	}
}

// plainContinue fails unless resp continues without touching the body.
func plainContinue(t *testing.T, resp *extprocv3.ProcessingResponse) {
	t.Helper()
	c := extproctest.Common(resp)
	if c == nil || c.GetStatus() != extprocv3.CommonResponse_CONTINUE || c.GetBodyMutation() != nil {
		t.Fatalf("want CONTINUE without body mutation, got %v", resp)
	}
}

// setHeaders returns the headers a reply sets.
func setHeaders(resp *extprocv3.ProcessingResponse) map[string]string {
	m := extproctest.Common(resp).GetHeaderMutation()
	if ir := resp.GetImmediateResponse(); ir != nil {
		m = ir.GetHeaders()
	}
	out := map[string]string{}
	for _, o := range m.GetSetHeaders() {
		out[o.GetHeader().GetKey()] = string(o.GetHeader().GetRawValue())
	}
	return out
}

// checkRecord fails unless the audit record has every field of want.
func checkRecord(t *testing.T, rec map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, _ := json.Marshal(rec[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("audit %s = %s, want %s (record %v)", k, got, exp, rec)
		}
	}
}

const toolsListAnswer = `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"fetch","description":"Fetches a URL – résumé"},{"name":"get-env","description":"secret"},{"name":"echo"}]}}`
const toolsListFiltered = `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"fetch","description":"Fetches a URL – résumé"},{"name":"echo"}]}}`

// TestJSONAnswer: a tools/call over Streamable HTTP answered with application/json, on TCP and on
// the Unix socket.
func TestJSONAnswer(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for name, c := range h.clients() {
		t.Run(name, func(t *testing.T) {
			before := len(h.audit.records(t))
			s := h.open(t, c, streamableRoute)
			resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S1"))), false))
			plainContinue(t, resp)
			if rm := extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(); len(rm) != 1 || rm[0] != "authorization" {
				t.Errorf("validated token not removed: %v", rm)
			}
			if md := extproctest.Metadata(resp); len(md) != 0 {
				t.Errorf("request headers metadata %v: a body follows, it goes with the body's reply", md)
			}
			body := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://httpbin.org/get"}}}`)
			resp = check(t)(s.RequestBody(body, true))
			plainContinue(t, resp)
			md := extproctest.Metadata(resp)
			if md["authn"] != "ok" || md["subject"] != "user-id" || md["session"] != "S1" {
				t.Errorf("request metadata %v", md)
			}
			if md["method"] != "tools/call" || md["tool"] != "fetch" || md["arguments"] != `{"url":"https://httpbin.org/get"}` || md["jsonrpc_id"] != "3" || md["decision"] != "allow" || md["rule"] != "AgentgatewayPolicy/agentgateway-system/tools#0" {
				t.Errorf("request body metadata %v", md)
			}
			resp = check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "52")), false))
			plainContinue(t, resp)
			if mo := resp.GetModeOverride(); mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED || mo.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED {
				t.Errorf("JSON answer must stay BUFFERED, got mode_override %v", mo)
			}
			answer := []byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"ok"}]}}`)
			plainContinue(t, check(t)(s.ResponseBody(answer, true)))
			if err := s.CloseSend(); err != nil {
				t.Fatalf("half-close: %v", err)
			}
			recs := h.audit.records(t)
			if len(recs) != before+1 {
				t.Fatalf("%d audit records, want %d", len(recs), before+1)
			}
			checkRecord(t, recs[before], map[string]any{
				"gateway": streamableRoute.Gateway, "route": streamableRoute.Route, "backend": streamableRoute.Backend,
				"target": "mcp-target", "session": "S1", "subject": "user-id", "claims": map[string]any{"org": "solo.io"},
				"authn": "ok", "method": "tools/call", "tool": "fetch", "arguments": map[string]any{"url": "https://httpbin.org/get"},
				"jsonrpc_id": 3, "decision": "allow", "rule": "AgentgatewayPolicy/agentgateway-system/tools#0",
				"http_status": 200, "outcome": "result",
			})
			if _, ok := recs[before]["latency_ms"].(float64); !ok {
				t.Errorf("no latency in %v", recs[before])
			}
		})
	}
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "tool": "fetch", "decision": "allow", "outcome": "result"}); n != 2 {
		t.Errorf("mcpgate_mcp_requests_total = %v, want 2", n)
	}
	waitFor(t, "streams to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 0 })
}

// sseStream is an SSE answer holding a notification, a tools/list answer with a multi-byte rune,
// CR LF line ends and an id line (as the TypeScript SDK sends), the answer's with a retry field.
const sseAnswer = "id: 7f3e\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\r\n\r\n" +
	"id: 7f3f\r\nretry: 3000\r\nevent: message\r\ndata: " + toolsListAnswer + "\r\n\r\n"

// awkwardCuts splits sseAnswer inside "data:", inside the two-byte é, between CR and LF, and in
// the middle of the tools array.
func awkwardCuts(t *testing.T) [][]byte {
	t.Helper()
	s := sseAnswer
	dataCut := strings.Index(s, "data: {\"jsonrpc\":\"2.0\",\"id\":2") + 2
	runeCut := strings.Index(s, "é") + 1
	crlfCut := strings.Index(s[runeCut:], "\r\n") + runeCut + 1
	midCut := strings.Index(s, `"get-env"`) + 4
	cuts := []int{10, dataCut, runeCut, midCut, crlfCut, len(s) - 1}
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		if c <= prev {
			t.Fatalf("cuts out of order: %v", cuts)
		}
		out = append(out, []byte(s[prev:c]))
		prev = c
	}
	return append(out, []byte(s[prev:]))
}

// TestSSEAnswerSplit: a tools/list answered as text/event-stream in chunks cut at awkward places,
// pipelined as Envoy may (all chunks sent before the first reply): one reply per chunk, in order,
// and the tools the MCP rules refuse are filtered out.
func TestSSEAnswerSplit(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.unix, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true)))
	resp := check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream", hdr("mcp-session-id", "S9")), false))
	mo := resp.GetModeOverride()
	if mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED || mo.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED {
		t.Fatalf("mode_override = %v, want response STREAMED, request BUFFERED", mo)
	}
	if extproctest.Metadata(resp)["session"] != "S9" {
		t.Errorf("session from the response header missing: %v", extproctest.Metadata(resp))
	}
	chunks := awkwardCuts(t)
	for i, c := range chunks {
		if err := s.Send(extproctest.ResponseBodyMsg(c, i == len(chunks)-1)); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	for i, c := range chunks {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if extproctest.Common(resp).GetHeaderMutation() != nil {
			t.Errorf("chunk %d: header mutation in a STREAMED body reply", i)
		}
		out.Write(extproctest.BodyAfter(resp, c))
	}
	// The rewritten event is encoded anew (LF line ends, event before id, its retry field kept);
	// the rest is untouched.
	want := strings.Replace(sseAnswer, "id: 7f3f\r\nretry: 3000\r\nevent: message\r\ndata: "+toolsListAnswer+"\r\n\r\n",
		"event: message\nid: 7f3f\nretry: 3000\ndata: "+toolsListFiltered+"\n\n", 1)
	if out.String() != want {
		t.Errorf("stream after ext_proc:\n%q\nwant\n%q", out.String(), want)
	}
	s.Close()
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"method": "tools/list", "session": "S9", "outcome": "result", "http_status": 200, "jsonrpc_id": 2})
}

// TestSSEAnswerWithoutEnd: a tools/list answer whose event the stream ends without its blank line
// (or its last line end), sent a byte at a time: the go-sdk client reads such an event, so it is
// filtered like a complete one, not passed on unread.
func TestSSEAnswerWithoutEnd(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for _, end := range []string{"", "\n"} {
		s := h.open(t, h.unix, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true)))
		check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
		ans := "event: message\ndata: " + toolsListAnswer + end
		var out bytes.Buffer
		for i := range len(ans) {
			c := []byte(ans[i : i+1])
			out.Write(extproctest.BodyAfter(check(t)(s.ResponseBody(c, i == len(ans)-1)), c))
		}
		if want := "event: message\ndata: " + toolsListFiltered + "\n\n"; out.String() != want {
			t.Errorf("answer ending %q after ext_proc: %q, want %q", end, out.String(), want)
		}
		s.Close()
	}
}

// TestSSEPassthrough: an SSE answer that needs no rewrite reaches the client unchanged. Without
// tool rules its chunks pass untouched as they come; under tool rules an incomplete event is held
// back until its end (any event may be a tools/list result).
func TestSSEPassthrough(t *testing.T) {
	sg := newSigner(t)
	noTools := labPolicy(sg)
	noTools.Name, noTools.McpRules = "no-tools", nil
	h := newHarness(t, []*policyv1.Policy{labPolicy(sg), noTools})
	ans := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[]}}\n\n"
	chunks := []string{ans[:7], ans[7:30], ans[30:]}
	plain := streamableRoute
	plain.Policy = noTools.Name
	for _, route := range []extproctest.Route{plain, streamableRoute} {
		s := h.open(t, h.tcp, route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`), true))
		check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream; charset=utf-8"), false))
		if route.Policy == plain.Policy {
			for i, c := range chunks {
				plainContinue(t, check(t)(s.ResponseBody([]byte(c), i == 2)))
			}
		} else if got := sendChunks(t, s, chunks, true); got != ans {
			t.Errorf("under tool rules the client got %q, want %q", got, ans)
		}
		s.Close()
	}
	waitFor(t, "the audit records", func() bool { return len(h.audit.records(t)) == 2 })
	for _, rec := range h.audit.records(t) {
		checkRecord(t, rec, map[string]any{"tool": "echo", "outcome": "result"})
	}
}

// TestToolsListJSON: a tools/list answered with application/json is filtered, with content-length
// set to the new length.
func TestToolsListJSON(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", fmt.Sprint(len(toolsListAnswer)))), false))
	resp := check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
	if got := string(extproctest.BodyAfter(resp, nil)); got != toolsListFiltered {
		t.Errorf("body = %s", got)
	}
	if cl := setHeaders(resp)["content-length"]; cl != fmt.Sprint(len(toolsListFiltered)) {
		t.Errorf("content-length = %q, want %d", cl, len(toolsListFiltered))
	}
}

// TestDeniedCallStreamable: a tools/call of a tool the MCP rules refuse is answered by ext_proc:
// HTTP 200, application/json, JSON-RPC -32602 "Unknown tool: NAME" with the request's id.
func TestDeniedCallStreamable(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":"call-9","method":"tools/call","params":{"name":"get-env","arguments":{"name":"AWS_SECRET"}}}`), true))
	ir := resp.GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 200 {
		t.Fatalf("want immediate 200, got %v", resp)
	}
	if string(ir.GetBody()) != `{"jsonrpc":"2.0","id":"call-9","error":{"code":-32602,"message":"Unknown tool: get-env"}}` {
		t.Errorf("body = %s", ir.GetBody())
	}
	if setHeaders(resp)["content-type"] != "application/json" {
		t.Errorf("headers = %v", setHeaders(resp))
	}
	md := extproctest.Metadata(resp)
	if md["decision"] != "deny" || md["tool"] != "get-env" || md["jsonrpc_error"] != "-32602" || md["outcome"] != "error" || md["rule"] != "AgentgatewayPolicy/agentgateway-system/tools"+authz.NoAllowMatched {
		t.Errorf("metadata %v", md)
	}
	recs := h.audit.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	checkRecord(t, recs[0], map[string]any{"decision": "deny", "rule": "AgentgatewayPolicy/agentgateway-system/tools" + authz.NoAllowMatched,
		"tool": "get-env", "jsonrpc_error": -32602, "outcome": "error", "http_status": 200, "jsonrpc_id": "call-9"})
}

// TestBatch: in a batch, a refused call becomes a ping with its id, and the ping's answer becomes
// the "Unknown tool" error; the other messages pass.
func TestBatch(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.unix, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}},` +
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]`
	resp := check(t)(s.RequestBody([]byte(body), true))
	wantBody := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}},` +
		`{"jsonrpc":"2.0","id":` + standIn(`2`, "get-env") + `,"method":"ping"},` +
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]`
	if got := string(extproctest.BodyAfter(resp, nil)); got != wantBody {
		t.Fatalf("request body = %s\nwant %s", got, wantBody)
	}
	if setHeaders(resp)["content-length"] != fmt.Sprint(len(wantBody)) {
		t.Errorf("content-length %v", setHeaders(resp))
	}
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp = check(t)(s.ResponseBody([]byte(`[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","id":`+standIn(`2`, "get-env")+`,"result":{}}]`), true))
	want := `[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown tool: get-env"}}]`
	if got := string(extproctest.BodyAfter(resp, nil)); got != want {
		t.Errorf("response body = %s\nwant %s", got, want)
	}
	s.Close()
	waitFor(t, "3 audit records", func() bool { return len(h.audit.records(t)) == 3 })
	byMethod := map[string]map[string]any{}
	for _, r := range h.audit.records(t) {
		byMethod[fmt.Sprint(r["method"], r["tool"])] = r
	}
	checkRecord(t, byMethod["tools/callfetch"], map[string]any{"decision": "allow", "outcome": "result"})
	checkRecord(t, byMethod["tools/callget-env"], map[string]any{"decision": "deny", "outcome": "error", "jsonrpc_error": -32602})
	checkRecord(t, byMethod["notifications/progress<nil>"], map[string]any{"outcome": "notification", "http_status": 200})
}

// legacySSE runs a legacy SSE session on route: the GET stream announces the session, POSTs go
// to the endpoint, answers arrive on the GET stream. endpoint is the path the server announces,
// after the events of prelude ("": none), which pass unchanged.
func legacySSE(t *testing.T, route extproctest.Route, prelude, endpoint, session string) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	get := h.open(t, h.tcp, route)
	get.ResponseBodyMode = extprocfilterv3.ProcessingMode_BUFFERED
	plainContinue(t, check(t)(get.RequestHeaders(getHeaders("/sse", extproctest.LabToken), true)))
	resp := check(t)(get.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	if resp.GetModeOverride().GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED {
		t.Fatalf("GET stream not STREAMED: %v", resp.GetModeOverride())
	}
	if prelude != "" {
		resp := check(t)(get.ResponseBody([]byte(prelude), false))
		if got := string(extproctest.BodyAfter(resp, []byte(prelude))); got != prelude {
			t.Errorf("events before the endpoint event after ext_proc = %q, want them unchanged", got)
		}
	}
	// The endpoint event in two pieces; under MCP rules the first may be held back until the
	// stream's first event is whole (it might have been a replayed tools/list answer).
	// The client gets it with the session sealed for its caller (package bind).
	ep := "event: endpoint\ndata: " + endpoint + "\n\n"
	first := check(t)(get.ResponseBody([]byte(ep[:9]), false))
	resp = check(t)(get.ResponseBody([]byte(ep[9:]), false))
	sealed := extproctest.LabEndpoint(endpoint)
	if got, want := string(extproctest.BodyAfter(first, []byte(ep[:9])))+string(extproctest.BodyAfter(resp, []byte(ep[9:]))), "event: endpoint\ndata: "+sealed+"\n\n"; got != want {
		t.Errorf("endpoint event after ext_proc = %q, want %q", got, want)
	}
	if extproctest.Metadata(resp)["session"] != session {
		t.Fatalf("endpoint event did not give session %q: %v", session, extproctest.Metadata(resp))
	}

	post := func(body string) (*extproctest.Stream, *extprocv3.ProcessingResponse) {
		p := h.open(t, h.unix, route)
		hs := postHeaders(sealed, extproctest.LabToken)
		resp := check(t)(p.RequestHeaders(hs, false))
		if got := applyHeaderMutation(hs, resp)[":path"]; got != endpoint {
			t.Fatalf("POST to %s: the server gets %s, want its session back", sealed, got)
		}
		resp = check(t)(p.RequestBody([]byte(body), true))
		if md := extproctest.Metadata(resp); md["session"] != session {
			t.Fatalf("POST to %s: session %q", endpoint, md["session"])
		}
		return p, resp
	}
	accepted := func(p *extproctest.Stream) {
		resp := check(t)(p.ResponseHeaders(respHeaders("202", ""), false))
		if resp.GetModeOverride().GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
			t.Errorf("202 without content type must not be sent: %v", resp.GetModeOverride())
		}
		p.Close()
	}

	// tools/list: the answer on the GET stream is filtered; it arrives before the POST's 202.
	p1, resp := post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	plainContinue(t, resp)
	ans := "event: message\ndata: " + toolsListAnswer + "\n\n"
	r1 := check(t)(get.ResponseBody([]byte(ans[:40]), false))
	r2 := check(t)(get.ResponseBody([]byte(ans[40:]), false))
	got := string(extproctest.BodyAfter(r1, []byte(ans[:40]))) + string(extproctest.BodyAfter(r2, []byte(ans[40:])))
	if got != "event: message\ndata: "+toolsListFiltered+"\n\n" {
		t.Errorf("tools/list answer on the stream = %q", got)
	}
	accepted(p1)

	// A refused call: the POST carries a ping instead, whose id stands in for the call's; the
	// ping's answer becomes the error, with the call's id.
	p2, resp := post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get-env","arguments":{}}}`)
	if got := string(extproctest.BodyAfter(resp, nil)); got != `{"jsonrpc":"2.0","id":`+standIn(`5`, "get-env")+`,"method":"ping"}` {
		t.Fatalf("refused call forwarded as %s", got)
	}
	if extproctest.Metadata(resp)["decision"] != "deny" {
		t.Errorf("metadata %v", extproctest.Metadata(resp))
	}
	accepted(p2)
	pong := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":" + standIn(`5`, "get-env") + ",\"result\":{}}\n\n"
	resp = check(t)(get.ResponseBody([]byte(pong), false))
	if got := string(extproctest.BodyAfter(resp, []byte(pong))); got != "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":-32602,\"message\":\"Unknown tool: get-env\"}}\n\n" {
		t.Errorf("ping answer on the stream = %q", got)
	}

	// An allowed call passes both ways untouched.
	p3, resp := post(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://httpbin.org/get"}}}`)
	plainContinue(t, resp)
	accepted(p3)
	result := "event: message\ndata: {\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]},\"jsonrpc\":\"2.0\",\"id\":6}\n\n"
	plainContinue(t, check(t)(get.ResponseBody([]byte(result), false)))
	get.Close()

	waitFor(t, "3 audit records", func() bool { return len(h.audit.records(t)) == 3 })
	recs := h.audit.records(t)
	checkRecord(t, recs[0], map[string]any{"method": "tools/list", "session": session, "outcome": "result", "jsonrpc_id": 2, "http_status": 202})
	checkRecord(t, recs[1], map[string]any{"tool": "get-env", "session": session, "decision": "deny", "outcome": "error", "jsonrpc_error": -32602, "http_status": 202})
	checkRecord(t, recs[2], map[string]any{"tool": "fetch", "session": session, "decision": "allow", "outcome": "result", "http_status": 202})
	checkDeniedCount(t, h, route)
}

// checkDeniedCount fails unless the metrics counted one refused call of get-env on route, answered
// with an error.
func checkDeniedCount(t *testing.T, h *harness, route extproctest.Route) {
	t.Helper()
	labels := map[string]string{"route": route.Route, "target": route.Target, "method": "tools/call", "tool": "get-env"}
	denied := map[string]string{"decision": "deny", "outcome": "error"}
	for k, v := range labels {
		denied[k] = v
	}
	if all, n := h.metric(t, "mcpgate_mcp_requests_total", labels), h.metric(t, "mcpgate_mcp_requests_total", denied); all != 1 || n != 1 {
		t.Errorf("mcpgate_mcp_requests_total of tools/call get-env: %v, %v of them deny/error; want 1 deny/error", all, n)
	}
}

func TestLegacySSESessionTypeScript(t *testing.T) {
	legacySSE(t, sseRoute, "", "/message?sessionId=694d5887-7007-44bb-ab5a-fb1f27061499", "694d5887-7007-44bb-ab5a-fb1f27061499")
}

func TestLegacySSESessionGoSDK(t *testing.T) {
	legacySSE(t, sseRoute, "", "/sse?sessionid=NUVADNBQ4YTSO4U2IY6VTTUUEG", "NUVADNBQ4YTSO4U2IY6VTTUUEG")
}

// TestLegacySSESessionRetryFirst: a stream that sets its retry delay (and sends a comment)
// before the endpoint event still has its endpoint read and sealed.
func TestLegacySSESessionRetryFirst(t *testing.T) {
	legacySSE(t, sseRoute, ": hello\n\nretry: 3000\n\n", "/sse?sessionid=NUVADNBQ4YTSO4U2IY6VTTUUEG", "NUVADNBQ4YTSO4U2IY6VTTUUEG")
}

func TestLegacySSESessionPython(t *testing.T) {
	legacySSE(t, sseRoute, "", "/messages/?session_id=9f0b3c6a1e2d4c5b8a7f6e5d4c3b2a10", "9f0b3c6a1e2d4c5b8a7f6e5d4c3b2a10")
}

// TestNonJSONBody: without tool rules, a body that is not JSON-RPC passes untouched and is
// counted; with tool rules it is refused, since the gateway cannot tell which tool it calls.
func TestNonJSONBody(t *testing.T) {
	open := &policyv1.Policy{Name: "open"}
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t)), open})
	route := streamableRoute
	route.Policy = "open"
	s := h.open(t, h.tcp, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	plainContinue(t, check(t)(s.RequestBody([]byte("hello, not JSON"), true)))
	check(t)(s.ResponseHeaders(respHeaders("400", "text/plain"), false))
	if n := h.metric(t, "mcpgate_extproc_non_jsonrpc_bodies_total", map[string]string{"direction": "request"}); n != 1 {
		t.Errorf("non-JSON-RPC bodies counted %v", n)
	}

	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}`), true))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), `"code":-32700`) {
		t.Errorf("unreadable body under tool rules: %v", resp)
	}
	// A body the server would decode first (its bytes are not what it reads) is refused too.
	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("content-encoding", "deflate")), false))
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}}`), true))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), `content-encoding`) {
		t.Errorf("encoded body under tool rules: %v", resp)
	}
	// Member names that some servers read case-insensitively are refused too.
	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","NAME":"get-env"}}`), true))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), `"code":-32600`) {
		t.Errorf("ambiguous body under tool rules: %v", resp)
	}
	// In an event stream, an event without a message (a priming event, a retry delay) is not a
	// body; one whose data is not JSON-RPC is counted.
	s = h.open(t, h.tcp, route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	check(t)(s.ResponseBody([]byte("id: 0\ndata: \n\nretry: 500\n\ndata: hello\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"), true))
	if n := h.metric(t, "mcpgate_extproc_non_jsonrpc_bodies_total", map[string]string{"direction": "response"}); n != 1 {
		t.Errorf("non-JSON-RPC events counted %v, want 1 (the priming and retry events are not)", n)
	}
}

// TestOversizeBody: a request body over the limit gets 413 with a JSON-RPC error naming it.
func TestOversizeBody(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.MaxBodyBytes = 1024 })
	s := h.open(t, h.unix, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"` + strings.Repeat("a", 2000) + `"}}}`
	resp := check(t)(s.RequestBody([]byte(big), true))
	ir := resp.GetImmediateResponse()
	if ir.GetStatus().GetCode() != 413 || setHeaders(resp)["content-type"] != "application/json" {
		t.Fatalf("want 413 application/json, got %v", resp)
	}
	var e struct {
		Error struct {
			Code    int
			Message string
		}
	}
	if err := json.Unmarshal(ir.GetBody(), &e); err != nil || e.Error.Code != -32600 || !strings.Contains(e.Error.Message, "1024 bytes") {
		t.Errorf("body %s (%v)", ir.GetBody(), err)
	}
	checkRecord(t, h.audit.records(t)[0], map[string]any{"http_status": 413, "outcome": "refused", "decision": "deny", "rule": "limit"})
}

// TestCancelledMidway: Envoy resets the stream after the request body (the client went away):
// the exchange is recorded without an answer and the stream count drops back.
func TestCancelledMidway(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
	if h.metric(t, "mcpgate_extproc_streams_active", nil) != 1 {
		t.Errorf("streams_active = %v during the stream", h.metric(t, "mcpgate_extproc_streams_active", nil))
	}
	s.Close()
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"tool": "fetch", "outcome": "no_answer", "jsonrpc_id": 11})
	waitFor(t, "streams to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 0 })
}

// TestJWTAndCEL: the lab's token passes; no token (also when it is sent in another header than
// Authorization) and bad tokens get 401 with the challenge; a valid token of another org gets
// 403 from the traffic rule.
func TestJWTAndCEL(t *testing.T) {
	sg := newSigner(t)
	logOpt, logs := withLog(slog.LevelDebug)
	h := newHarness(t, []*policyv1.Policy{labPolicy(sg)}, logOpt)
	otherOrg := sg.token(t, gojwt.MapClaims{"sub": "mallory", "org": "evil.example"})
	tampered := extproctest.LabToken[:len(extproctest.LabToken)-4] + "AAAA"
	elsewhere := []extproctest.Header{hdr("x-api-token", extproctest.LabToken), hdr("cookie", "token="+extproctest.LabToken)}
	tests := []struct {
		name, token string
		path        string // "/mcp" when empty
		extra       []extproctest.Header
		status      int
		body, www   string
		authn       string
	}{
		{"missing", "", "", nil, 401, "Jwt is missing", `Bearer realm="mcpgate"`, "missing"},
		{"in another header", "", "", elsewhere, 401, "Jwt is missing", `Bearer realm="mcpgate"`, "missing"},
		// jwt_authn's default places include the access_token query parameter; mcpgate reads
		// only the Authorization header (a token in a URL ends up in logs and histories)
		{"in the query", "", "/mcp?access_token=" + extproctest.LabToken, nil, 401, "Jwt is missing", `Bearer realm="mcpgate"`, "missing"},
		{"bad signature", tampered, "", nil, 401, "Jwt verification fails", `Bearer realm="mcpgate", error="invalid_token"`, "invalid: Jwt verification fails"},
		{"malformed", "abc", "", nil, 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", `Bearer realm="mcpgate", error="invalid_token"`, "invalid: Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"other org", otherOrg, "", nil, 403, "RBAC: access denied", "", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := cmp.Or(tt.path, "/mcp")
			s := h.open(t, h.tcp, streamableRoute)
			resp := check(t)(s.RequestHeaders(postHeaders(path, tt.token, tt.extra...), false))
			ir := resp.GetImmediateResponse()
			if ir == nil || int(ir.GetStatus().GetCode()) != tt.status || string(ir.GetBody()) != tt.body {
				t.Fatalf("want %d %q, got %v", tt.status, tt.body, resp)
			}
			hs := setHeaders(resp)
			if hs["www-authenticate"] != tt.www || hs["content-type"] != "text/plain" {
				t.Errorf("headers %v", hs)
			}
			md := extproctest.Metadata(resp)
			if md["authn"] != tt.authn || md["decision"] != "deny" || md["outcome"] != "refused" {
				t.Errorf("metadata %v", md)
			}
			if tt.token != "" && strings.Contains(fmt.Sprint(md), tt.token) {
				t.Errorf("metadata holds the token: %v", md)
			}
		})
	}
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}}`), true))
	if strings.Contains(resp.String(), "eyJ") {
		t.Errorf("reply holds a token: %v", resp)
	}
	if !strings.Contains(logs.String(), "policies updated") {
		t.Error("the logs were not captured")
	}
	if out := logs.String(); strings.Contains(out, "eyJ") || strings.Contains(out, tampered[len(tampered)-20:]) {
		t.Errorf("the logs hold a token:\n%s", out)
	}
	if n := h.metric(t, "mcpgate_authn_failures_total", nil); n != 5 {
		t.Errorf("authn failures = %v, want 5", n)
	}
	recs := h.audit.records(t)
	if len(recs) != 7 {
		t.Fatalf("%d audit records", len(recs))
	}
	checkRecord(t, recs[5], map[string]any{"subject": "mallory", "claims": map[string]any{"org": "evil.example"}, "http_status": 403, "outcome": "refused",
		"rule": "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac" + authz.NoAllowMatched})
	for _, r := range recs {
		if b, _ := json.Marshal(r); strings.Contains(string(b), "eyJ") {
			t.Errorf("audit record holds a token: %s", b)
		}
	}
}

// TestPolicyUpdates: a policy whose CEL does not compile is NACKed and the last good policies stay;
// a new version applies to new streams only; a route naming an unknown policy fails closed (after
// a short wait for it).
func TestPolicyUpdates(t *testing.T) {
	sg := newSigner(t)
	h := newHarness(t, []*policyv1.Policy{labPolicy(sg)}, withPolicyWait(50*time.Millisecond))
	call := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`)

	// A stream that starts under the first version...
	inflight := h.open(t, h.tcp, streamableRoute)
	check(t)(inflight.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))

	// ...is not disturbed by a version that refuses echo.
	v2 := labPolicy(sg)
	v2.McpRules = []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.tool.name == "echo"`, Source: "v2#0"}}
	h.push(t, v2)
	waitFor(t, "version 2", func() bool {
		return h.metric(t, "mcpgate_extproc_policy_updates_total", map[string]string{"result": "ack"}) == 2
	})
	plainContinue(t, check(t)(inflight.RequestBody(call, true)))
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	if resp := check(t)(s.RequestBody(call, true)); resp.GetImmediateResponse() == nil || extproctest.Metadata(resp)["rule"] != "v2#0" {
		t.Fatalf("version 2 not applied to a new stream: %v", resp)
	}

	// A syntax error: NACK, version 2 stays.
	bad := labPolicy(sg)
	bad.McpRules = []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == `, Source: "bad#0"}}
	h.push(t, bad)
	waitFor(t, "the NACK", func() bool {
		return h.metric(t, "mcpgate_extproc_policy_updates_total", map[string]string{"result": "nack"}) >= 1
	})
	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	if resp := check(t)(s.RequestBody(call, true)); extproctest.Metadata(resp)["rule"] != "v2#0" {
		t.Fatalf("last good policy not kept: %v", resp)
	}
	if err := h.srv.HandlePolicies(contract.PolicyTypeURL, nil); err != nil {
		t.Fatalf("empty set refused: %v", err)
	}

	// No policy "lab" any more: its routes fail closed with a clear message.
	s = h.open(t, h.unix, streamableRoute)
	resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	ir := resp.GetImmediateResponse()
	if ir.GetStatus().GetCode() != 500 || !strings.Contains(string(ir.GetBody()), `names policy "lab", which ext_proc has not received`) {
		t.Errorf("unknown policy: %v", resp)
	}
}

// TestPolicyUpdateInPart: like Envoy with listeners and clusters, ext_proc applies a policy
// update in part. Of an update with one valid change and two policies that do not compile, the
// valid change takes effect, the rejected policy with a last good version keeps it, the one
// without answers its routes 500 at once (no wait for a version that has it), and the NACK names
// both. A later valid version of the rejected policy is applied.
func TestPolicyUpdateInPart(t *testing.T) {
	sg := newSigner(t)
	// A request does not wait for a rejected policy (one that did would answer "has not
	// received" after this wait).
	logOpt, logs := withLog(slog.LevelDebug)
	h := newHarness(t, nil, withPolicyWait(20*time.Second), logOpt)
	echo := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`)
	version := func(name, source, expr string) *policyv1.Policy {
		p := labPolicy(sg)
		p.Name = name
		p.McpRules = []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: expr, Source: source}}
		return p
	}
	route := func(policy string) extproctest.Route {
		r := streamableRoute
		r.Policy = policy
		return r
	}
	// ruleOf calls echo on a route naming policy and returns the reply.
	ruleOf := func(policy string) *extprocv3.ProcessingResponse {
		t.Helper()
		s := h.open(t, h.tcp, route(policy))
		if resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false)); resp.GetImmediateResponse() != nil {
			return resp
		}
		return check(t)(s.RequestBody(echo, true))
	}
	denied := func(policy, rule string) {
		t.Helper()
		if resp := ruleOf(policy); resp.GetImmediateResponse() == nil || extproctest.Metadata(resp)["rule"] != rule {
			t.Errorf("policy %s: want echo refused by %s, got %v", policy, rule, resp)
		}
	}
	// deniedBy waits until a new stream on policy's route has echo refused by rule (each version
	// is installed whole: a version seen by one policy is that of all of them).
	deniedBy := func(policy, rule string) {
		t.Helper()
		waitFor(t, "policy "+policy+" with rule "+rule, func() bool { return extproctest.Metadata(ruleOf(policy))["rule"] == rule })
	}
	// The NACK count says that a version was handled: ext_proc counts an update after installing
	// it, and only these versions are rejected (the empty set a new ext_proc may get first is not).
	updates := func(result string) float64 {
		return h.metric(t, "mcpgate_extproc_policy_updates_total", map[string]string{"result": result})
	}

	h.push(t, version("lab", "lab-v1#0", `mcp.tool.name == "echo"`), version("other", "other-v1#0", `mcp.tool.name == "echo"`))
	deniedBy("other", "other-v1#0")
	denied("lab", "lab-v1#0")

	h.push(t, version("lab", "lab-v2#0", `mcp.tool.name == "echo"`), version("other", "other-v2#0", `mcp.tool.name ==`),
		version("fresh", "fresh-v1#0", `mcp.tool.name ==`))
	waitFor(t, "the NACK", func() bool { return updates("nack") == 1 })
	denied("lab", "lab-v2#0")
	denied("other", "other-v1#0")
	resp := ruleOf("fresh")
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 500 || !strings.Contains(string(ir.GetBody()), `names policy "fresh", which ext_proc rejected`) {
		t.Errorf("rejected policy without a last good version: %v", resp)
	}

	h.push(t, version("lab", "lab-v2#0", `mcp.tool.name == "echo"`), version("other", "other-v3#0", `mcp.tool.name == "echo"`))
	deniedBy("other", "other-v3#0")
	denied("lab", "lab-v2#0")

	// The NACK names each rejected policy; the valid one's change is not an error.
	h.push(t, version("lab", "lab-v4#0", `mcp.tool.name == "echo"`), version("other", "other-v4#0", `mcp.tool.name ==`), version("fresh", "fresh-v4#0", "1 +"))
	waitFor(t, "the second NACK", func() bool { return updates("nack") == 2 })
	denied("lab", "lab-v4#0")
	var last string
	for _, l := range logs.Lines() {
		if strings.Contains(l, "policy update partly rejected") {
			last = l
		}
	}
	if !strings.Contains(last, "rejected=\"[fresh other]\"") || !strings.Contains(last, "policy other: mcp_rules") ||
		!strings.Contains(last, "policy fresh: mcp_rules") || strings.Contains(last, "policy lab") {
		t.Errorf("the last partial rejection does not name the rejected policies alone: %s", last)
	}

	// The same bad policies again, with another change: NACKed again while they stay (from
	// what was found before), the change applied.
	h.push(t, version("lab", "lab-v5#0", `mcp.tool.name == "echo"`), version("other", "other-v4#0", `mcp.tool.name ==`), version("fresh", "fresh-v4#0", "1 +"))
	waitFor(t, "the third NACK", func() bool { return updates("nack") == 3 })
	denied("lab", "lab-v5#0")
	denied("other", "other-v3#0")
	for _, p := range []string{"other", "fresh"} {
		n := 0
		for _, l := range logs.Lines() {
			if strings.Contains(l, "refused again, not compiled") && strings.HasSuffix(l, " policy="+p) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("policy %s, sent again unchanged: refused from what was found %d times, want 1 (not compiled again)", p, n)
		}
	}
}

// TestPolicyNACKMessage: the NACK names the policy and the rule.
func TestPolicyNACKMessage(t *testing.T) {
	h := newHarness(t, nil)
	p := labPolicy(newSigner(t))
	p.TrafficRules = append(p.TrafficRules, &policyv1.Rule{Expression: "jwt.org ==", Source: "EnterpriseAgentgatewayPolicy/ns/broken#0"})
	res, err := anyOf(p)
	if err != nil {
		t.Fatal(err)
	}
	err = h.srv.HandlePolicies(contract.PolicyTypeURL, res)
	if err == nil || !strings.Contains(err.Error(), "policy lab") || !strings.Contains(err.Error(), "EnterpriseAgentgatewayPolicy/ns/broken#0") || !strings.Contains(err.Error(), "traffic_rules") {
		t.Errorf("NACK message = %v", err)
	}
	if err := h.srv.HandlePolicies("type.googleapis.com/envoy.config.listener.v3.Listener", nil); err == nil {
		t.Error("other type accepted")
	}
}

// TestNoBodyAndOtherContent: a GET answered 405, a DELETE without body, a text/plain answer: no
// body reaches ext_proc and the replies still match the messages.
func TestNoBodyAndOtherContent(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(getHeaders("/mcp", extproctest.LabToken), true))
	resp := check(t)(s.ResponseHeaders(respHeaders("405", ""), true))
	if resp.GetModeOverride() != nil {
		t.Errorf("mode_override for a response without body: %v", resp.GetModeOverride())
	}
	// A DELETE ending a session: headers only, both ways.
	s = h.open(t, h.tcp, streamableRoute)
	del := []extproctest.Header{hdr(":authority", "127.0.0.1:8080"), hdr(":path", "/mcp"), hdr(":method", "DELETE"),
		hdr(":scheme", "http"), hdr("mcp-session-id", extproctest.LabSession("S1")), hdr("authorization", "Bearer "+extproctest.LabToken)}
	plainContinue(t, check(t)(s.RequestHeaders(del, true)))
	resp = check(t)(s.ResponseHeaders(respHeaders("200", ""), true))
	plainContinue(t, resp)
	if resp.GetModeOverride() != nil {
		t.Errorf("mode_override for a DELETE's answer without body: %v", resp.GetModeOverride())
	}
	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`), true))
	resp = check(t)(s.ResponseHeaders(respHeaders("500", "text/plain"), false))
	if resp.GetModeOverride().GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("text/plain answer: %v", resp.GetModeOverride())
	}
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"method": "initialize", "outcome": "no_answer", "http_status": 500})
	if err := s.CloseSend(); err != nil {
		t.Errorf("half-close: %v", err)
	}
}

// TestSpans: each MCP request gets a span "METHOD TOOL" that continues the request's W3C trace
// (traceparent), with OpenTelemetry's MCP attributes read from the request as Envoy sends it (the
// MCP-Protocol-Version header, the source.address attribute).
func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.TracerProvider = tp })
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S7")),
		hdr("mcp-protocol-version", "2025-11-25")), false))
	check(t)(s.RequestBody([]byte(`[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"fetch","arguments":{}}},{"jsonrpc":"2.0","id":"b","method":"tools/list"}]`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	// (the list names fetch first: a span is named after a tool a server has shown to exist)
	check(t)(s.ResponseBody([]byte(`[{"jsonrpc":"2.0","id":"b","result":{"tools":[{"name":"fetch","inputSchema":{"type":"object"}}]}},{"jsonrpc":"2.0","id":"a","error":{"code":-32000,"message":"boom"}}]`), true))
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	names := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		names[sp.Name()] = sp
		if sp.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sp.Parent().SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("span %s does not continue the request's trace: parent %v", sp.Name(), sp.Parent())
		}
	}
	call, list := names["tools/call fetch"], names["tools/list"]
	if call == nil || list == nil {
		t.Fatalf("span names %v", names)
	}
	attrs := map[string]string{}
	for _, a := range call.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	for k, v := range map[string]string{"mcp.method.name": "tools/call", "gen_ai.tool.name": "fetch", "gen_ai.operation.name": "execute_tool",
		"mcp.session.id": "S7", "jsonrpc.request.id": "a", "rpc.response.status_code": "-32000", "error.type": "-32000",
		"mcp.protocol.version": "2025-11-25", "client.address": "127.0.0.1", "client.port": "50000",
		"mcpgate.gateway": streamableRoute.Gateway, "mcpgate.route": streamableRoute.Route, "mcpgate.target": streamableRoute.Target,
		"mcpgate.decision": "allow", "mcpgate.outcome": "error"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	if call.Status().Code != codes.Error || list.Status().Code == codes.Error {
		t.Errorf("statuses %v %v", call.Status(), list.Status())
	}
}

// TestRedaction: Config.Redact applies to the access log metadata and the audit line alike.
func TestRedaction(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.Redact = extproc.Redact{Keys: []string{"apiKey"}, MaxArgumentBytes: 64}
	})
	s := h.open(t, h.unix, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u","APIKEY":"k-123"}}}`), true))
	if got := extproctest.Metadata(resp)["arguments"]; got != `{"APIKEY":"[REDACTED]","url":"u"}` {
		t.Errorf("metadata arguments = %s", got)
	}
	s.Close()
	waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
	checkRecord(t, h.audit.records(t)[0], map[string]any{"arguments": map[string]any{"APIKEY": "[REDACTED]", "url": "u"}})
}

// TestDefaultRedaction: without Config.Redact.Keys the usual names of credentials are hidden, at
// any depth, in any case and with any separators, in the access log metadata and the audit line,
// and so are credentials in a URL's query; max_tokens is not; an empty list hides none.
func TestDefaultRedaction(t *testing.T) {
	args := `{"url":"https://h.example/r?access_token=t-2&page=1","auth":{"Password":"p-1","api_key":"k-1"},"Token":"t-1","db_password":"p-2","headers":{"Cookie":"c-1","X-Api-Key":"k-2"},"max_tokens":5}`
	call := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":` + args + `}}`)
	for name, c := range map[string]struct {
		keys []string
		want string
	}{
		"default": {nil, `{"Token":"[REDACTED]","auth":{"Password":"[REDACTED]","api_key":"[REDACTED]"},"db_password":"[REDACTED]","headers":{"Cookie":"[REDACTED]","X-Api-Key":"[REDACTED]"},"max_tokens":5,"url":"https://h.example/r?access_token=[REDACTED]&page=1"}`},
		"none":    {[]string{}, args},
	} {
		h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(cfg *extproc.Config) {
			cfg.Redact.Keys, cfg.Redact.MaxArgumentBytes = c.keys, 4096
		})
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody(call, true))
		if got := extproctest.Metadata(resp)["arguments"]; got != c.want {
			t.Errorf("%s: metadata arguments = %s, want %s", name, got, c.want)
		}
		s.Close()
		waitFor(t, "the audit record", func() bool { return len(h.audit.records(t)) == 1 })
		var want map[string]any
		if err := json.Unmarshal([]byte(c.want), &want); err != nil {
			t.Fatal(err)
		}
		checkRecord(t, h.audit.records(t)[0], map[string]any{"arguments": want})
	}
}

// TestDeferredTrafficRules: traffic rules that read mcp.* run on the body's messages, including a
// body holding only a response (a client answering the server), which must not slip past them.
func TestDeferredTrafficRules(t *testing.T) {
	p := &policyv1.Policy{Name: "lab", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.method == "tools/call" || mcp.method == ""`, Source: "deny#0"}}}
	h := newHarness(t, []*policyv1.Policy{p})
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`,
	} {
		s := h.open(t, h.tcp, streamableRoute)
		plainContinue(t, check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false)))
		resp := check(t)(s.RequestBody([]byte(body), true))
		if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 403 || extproctest.Metadata(resp)["rule"] != "deny#0" {
			t.Errorf("%s: want 403 by deny#0, got %v", body, resp)
		}
	}
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true)))
}

// refusedUnderToolRules fails unless each body is refused with 400 and the JSON-RPC error code
// on a route under tools (a policy with tool rules), and passes untouched on a route without a
// policy's tool rules.
func refusedUnderToolRules(t *testing.T, tools *policyv1.Policy, code int, bodies ...string) {
	t.Helper()
	refusedOn(t, tools, code, false, bodies...)
}

// refusedOnEveryMCPRoute fails unless each body is refused with 400 and the JSON-RPC error code
// on a route under tools and on a route without a policy's tool rules alike: a body the server
// reads otherwise than the gateway's audit.
func refusedOnEveryMCPRoute(t *testing.T, tools *policyv1.Policy, code int, bodies ...string) {
	t.Helper()
	refusedOn(t, tools, code, true, bodies...)
}

// refusedOn checks each body on a route under tools and one without tool rules (refused there
// too when everywhere).
func refusedOn(t *testing.T, tools *policyv1.Policy, code int, everywhere bool, bodies ...string) {
	t.Helper()
	h := newHarness(t, []*policyv1.Policy{tools, {Name: "open"}})
	strict, open := streamableRoute, streamableRoute
	strict.Policy, open.Policy = tools.GetName(), "open"
	for _, body := range bodies {
		s := h.open(t, h.tcp, strict)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(body), true))
		if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), fmt.Sprintf(`"code":%d`, code)) {
			t.Errorf("%s under tool rules: want 400 with %d, got %v", body, code, resp)
		}
		s = h.open(t, h.tcp, open)
		check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
		resp = check(t)(s.RequestBody([]byte(body), true))
		if !everywhere {
			plainContinue(t, resp)
		} else if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), fmt.Sprintf(`"code":%d`, code)) {
			t.Errorf("%s without tool rules: want 400 with %d, got %v", body, code, resp)
		}
	}
}

// TestAmbiguousMessageKinds: a member name that only differs in case from a JSON-RPC name is
// refused whatever the gateway takes the message for, on every MCP route (the audit records what
// the server runs). A server that matches names without regard
// to case (Go's encoding/json, as mcp-go decodes) reads {"METHOD":"tools/call"} as a call, while
// the gateway, matching exactly, sees no method at all.
func TestAmbiguousMessageKinds(t *testing.T) {
	refusedOnEveryMCPRoute(t, labPolicy(newSigner(t)), -32600,
		`{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"get-env"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call","params":{"name":"get-env"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"mEthod":"tools/call","params":{"name":"get-env"}}]`,
	)
}

// TestDuplicateMembers: a repeated JSON-RPC or tools/call member is refused on every MCP route,
// with tool rules or without. The gateway reads the last one, as encoding/json and JavaScript do; a server whose parser
// keeps the first would run get-env.
func TestDuplicateMembers(t *testing.T) {
	refusedOnEveryMCPRoute(t, labPolicy(newSigner(t)), -32600,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env","name":"fetch"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"get-env"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"},"params":{"name":"fetch"}}`,
	)
}

// TestToolCallWithoutName: under tool rules that only deny, a tools/call whose params.name is not
// a string would be judged as a call of the tool "" and allowed; it is refused instead, since the
// gateway cannot tell which tool the server will look up.
func TestToolCallWithoutName(t *testing.T) {
	deny := &policyv1.Policy{Name: "deny", McpRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.tool.name == "get-env"`, Source: "deny#0"}}}
	var bodies []string
	for _, params := range []string{`{"name":["get-env"]}`, `{"name":{"0":"get-env"}}`, `{"name":null}`, `{"arguments":{}}`, `"get-env"`, `null`} {
		bodies = append(bodies, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+params+`}`)
	}
	refusedUnderToolRules(t, deny, -32602, bodies...)
}

// TestRewriteUnderOtherContentType: an answer that must be rewritten (a tools/list to filter)
// is read whatever content type the server gives it; passing it unseen would show the hidden
// tools. A body that cannot be read is replaced by an error.
func TestRewriteUnderOtherContentType(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for _, tt := range []struct{ ct, body, want, setCT string }{
		{"", toolsListAnswer, toolsListFiltered, ""},
		{"application/json-rpc", toolsListAnswer, toolsListFiltered, ""},
		{"text/plain", "tools: fetch, get-env, echo", `{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"mcpgate: the server's answer could not be inspected"}}`, "application/json"},
	} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
		resp := check(t)(s.ResponseHeaders(respHeaders("200", tt.ct), false))
		if mo := resp.GetModeOverride(); mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
			t.Errorf("content type %q: mode_override %v, want the answer BUFFERED_PARTIAL (whole up to the limit; no content-length)", tt.ct, mo)
			continue
		}
		resp = check(t)(s.ResponseBody([]byte(tt.body), true))
		if got := string(extproctest.BodyAfter(resp, []byte(tt.body))); got != tt.want {
			t.Errorf("content type %q: body %s\nwant %s", tt.ct, got, tt.want)
		}
		if hs := setHeaders(resp); hs["content-length"] != fmt.Sprint(len(tt.want)) || hs["content-type"] != tt.setCT {
			t.Errorf("content type %q: headers set %v", tt.ct, hs)
		}
	}
}

// TestRequestBodyInPieces: a route whose request body reaches ext_proc in pieces (STREAMED, not
// the BUFFERED the translator configures) has only its first piece checked, so under tool rules
// a later piece with data is refused rather than passed unread; an empty last piece (the end of
// a chunked upload) is fine.
func TestRequestBodyInPieces(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	first := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	s := h.open(t, h.tcp, streamableRoute)
	s.RequestBodyMode = extprocfilterv3.ProcessingMode_STREAMED
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	plainContinue(t, check(t)(s.RequestBody(first, false)))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}`), true))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 500 || !strings.Contains(string(ir.GetBody()), "BUFFERED") {
		t.Errorf("second piece: want 500 naming the BUFFERED mode, got %v", resp)
	}
	s = h.open(t, h.tcp, streamableRoute)
	s.RequestBodyMode = extprocfilterv3.ProcessingMode_STREAMED
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	plainContinue(t, check(t)(s.RequestBody(first, false)))
	plainContinue(t, check(t)(s.RequestBody(nil, true)))
}

// TestUncorrelatedToolsList: a tools/list answer whose request this stream did not carry is
// filtered all the same. A client that drops the POST's event stream and resumes it with a GET
// and Last-Event-ID gets the answer replayed there, where the gateway never saw the request.
func TestUncorrelatedToolsList(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(append(getHeaders("/mcp", extproctest.LabToken), hdr("last-event-id", "7f3e")), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	ev := "id: 7f3f\ndata: " + toolsListAnswer + "\n\n"
	resp := check(t)(s.ResponseBody([]byte(ev), false))
	if got := string(extproctest.BodyAfter(resp, []byte(ev))); got != "id: 7f3f\ndata: "+toolsListFiltered+"\n\n" {
		t.Errorf("replayed answer = %q", got)
	}
	other := "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[]}}\n\n"
	plainContinue(t, check(t)(s.ResponseBody([]byte(other), false)))
}

// TestResponseBodyInPieces: when a JSON answer that must be rewritten reaches ext_proc in pieces
// (its route's mode_override, BUFFERED for an answer of known length, was not applied), the
// first piece cannot be read and is replaced by an error; the pieces after it are cleared, not
// passed with the tools they hold. (An answer of unknown length is asked for BUFFERED_PARTIAL,
// where a piece with more to come is the answer cut at Envoy's buffer limit:
// TestOversizeAnswerChunked.)
func TestResponseBodyInPieces(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	s.ResponseBodyMode = extprocfilterv3.ProcessingMode_STREAMED
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(append(respHeaders("200", "application/json"), hdr("content-length", strconv.Itoa(len(toolsListAnswer)))), false))
	cut := strings.Index(toolsListAnswer, `"get-env"`) - 3
	resp := check(t)(s.ResponseBody([]byte(toolsListAnswer[:cut]), false))
	if got := string(extproctest.BodyAfter(resp, nil)); !strings.Contains(got, `"code":-32603`) {
		t.Errorf("first piece became %s, want the error", got)
	}
	for i, piece := range []string{toolsListAnswer[cut:], ""} {
		resp = check(t)(s.ResponseBody([]byte(piece), i == 1))
		if got := extproctest.BodyAfter(resp, []byte(piece)); len(got) != 0 {
			t.Errorf("piece %d passed: %s", i+2, got)
		}
	}
}

// TestAmbiguousArguments: where rules read the tool arguments, argument members that repeat or
// differ only in letter case, at any depth, are refused: the rules read one of them (the last, as
// encoding/json does), while mcp-go binds typed arguments without regard to case and other parsers
// keep the first. Where no rule reads them, the arguments are the server's business.
func TestAmbiguousArguments(t *testing.T) {
	args := &policyv1.Policy{Name: "args", McpRules: []*policyv1.Rule{{Action: policyv1.Rule_ALLOW,
		Expression: `mcp.tool.name == "fetch" && mcp.tool.arguments.url.startsWith("https://")`, Source: "args#0"}}}
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://ok","URL":"file:///etc/passwd"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"file:///etc/passwd","url":"https://ok"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"https://ok","opts":[{"to":"a","TO":"b"}]}}}`,
	}
	refusedUnderToolRules(t, args, -32600, bodies...)

	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	for _, body := range bodies {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		plainContinue(t, check(t)(s.RequestBody([]byte(body), true)))
	}
}

// panicWriter is an audit writer that panics: a stand-in for a bug anywhere in a stream's work.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("audit writer bug") }

// TestPanicFailsOnlyItsStream: a panic while a message is handled, or while a stream ends, fails
// that stream with codes.Internal (Envoy answers 500); it neither stops the process nor leaves
// locks held that would hang the next streams, and the stream is still accounted as ended.
func TestPanicFailsOnlyItsStream(t *testing.T) {
	logOpt, logs := withLog(slog.LevelError)
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, func(c *extproc.Config) { c.Audit = panicWriter{} }, logOpt)
	// A guard against a hang, not a measure of speed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		s, err := extproctest.Open(ctx, h.tcp, streamableRoute)
		if err != nil {
			t.Fatal(err)
		}
		// No token: the refusal's audit record panics.
		if _, err := s.RequestHeaders(postHeaders("/mcp", ""), false); status.Code(err) != grpccodes.Internal {
			t.Fatalf("stream %d: %v, want codes.Internal", i, err)
		}
		s.Close()
	}
	// The call is recorded when the stream ends: the panic comes from the stream's end.
	s, err := extproctest.Open(ctx, h.tcp, streamableRoute)
	if err != nil {
		t.Fatal(err)
	}
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}}`), true)))
	if err := s.CloseSend(); status.Code(err) != grpccodes.Internal {
		t.Fatalf("end of stream: %v, want codes.Internal", err)
	}
	waitFor(t, "streams to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 0 })
	// Each panic is logged with its route, the one from the stream's end too (which recycled the
	// stream's state before the panic was recovered).
	if n, named := logs.count("ext_proc stream panicked"), logs.count("route="+streamableRoute.Route+" panic="); n != 3 || named != 3 {
		t.Errorf("%d panics logged, %d naming the route, want 3 and 3:\n%s", n, named, logs.String())
	}
}

// TestCompressedAnswers: ext_proc must read MCP answers, so MCP requests go upstream without
// accept-encoding; an answer that must be rewritten and comes compressed all the same cannot be
// read, even as server-sent events, and is replaced by a plain JSON error. Under tool rules so is
// a compressed answer that nothing awaited here must rewrite (an allowed tools/call's).
func TestCompressedAnswers(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	gzipped := func(body string) []byte {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write([]byte(body))
		zw.Close()
		return gz.Bytes()
	}
	for _, tc := range []struct {
		name, req, ct string
		answer        []byte
	}{
		{"tools/list", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "text/event-stream", gzipped("event: message\ndata: " + toolsListAnswer + "\n\n")},
		{"tools/list", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "application/json", gzipped("event: message\ndata: " + toolsListAnswer + "\n\n")},
		// An allowed call's answer, which nothing here must rewrite: compressed, it is not read,
		// and may hold what the rules hide (a tools/list result under another id).
		{"tools/call", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch"}}`, "application/json", gzipped(`{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`)},
	} {
		ct := tc.name + ", " + tc.ct
		s := h.open(t, h.tcp, streamableRoute)
		resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("accept-encoding", "gzip, br")), false))
		if rm := extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(); !slices.Contains(rm, "accept-encoding") {
			t.Errorf("accept-encoding kept: removed %v", rm)
		}
		check(t)(s.RequestBody([]byte(tc.req), true))
		resp = check(t)(s.ResponseHeaders(respHeaders("200", tc.ct, hdr("content-encoding", "gzip")), false))
		if mo := resp.GetModeOverride(); mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL {
			t.Errorf("%s, gzip: mode_override %v, want the answer BUFFERED_PARTIAL (whole up to the limit; no content-length)", ct, mo)
			continue
		}
		resp = check(t)(s.ResponseBody(tc.answer, true))
		if got := string(extproctest.BodyAfter(resp, tc.answer)); !strings.Contains(got, `"code":-32603`) {
			t.Errorf("%s, gzip: body %q, want the error", ct, got)
		}
		if rm := extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(); !slices.Contains(rm, "content-encoding") || setHeaders(resp)["content-type"] != "application/json" {
			t.Errorf("%s, gzip: headers removed %v, set %v", ct, rm, setHeaders(resp))
		}
	}
}

// TestTrafficRuleDecidesAllowedCalls: under the lab's policy (JWT + the traffic rule
// jwt.org == "solo.io", no tool rules) an allowed tools/call records the traffic rule that allowed
// it, in the audit line and in the access log's metadata.
func TestTrafficRuleDecidesAllowedCalls(t *testing.T) {
	sg := newSigner(t)
	pol := labPolicy(sg)
	pol.McpRules = nil
	h := newHarness(t, []*policyv1.Policy{pol})
	const rule = "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac#0"
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"http://x"}}}`), true))
	if md := extproctest.Metadata(resp); md["rule"] != rule || md["decision"] != "allow" || md["tool"] != "fetch" {
		t.Errorf("metadata %v, want rule %s and decision allow", md, rule)
	}
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`), true))
	recs := h.audit.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d audit records, want 1", len(recs))
	}
	checkRecord(t, recs[0], map[string]any{"tool": "fetch", "decision": "allow", "rule": rule, "outcome": "result"})
}

// TestRefusalsNameTheirRule: a request refused by authorization rules names what refused it,
// in the access log's metadata and the audit line alike: the source of the DENY rule that
// matched, or, when ALLOW rules exist and none matched, the policies of those rules and
// authz.NoAllowMatched. The same holds for MCP rules (a refused tools/call, alone or in a batch)
// and traffic rules. A tools/list is allowed (its answer is filtered): it records the traffic
// rule that allowed it.
func TestRefusalsNameTheirRule(t *testing.T) {
	sg := newSigner(t)
	pol := labPolicy(sg)
	const (
		tools     = "AgentgatewayPolicy/agentgateway-system/tools"
		moreTools = "AgentgatewayPolicy/agentgateway-system/more-tools"
		noEcho    = "AgentgatewayPolicy/agentgateway-system/no-echo#0"
		traffic   = "EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac"
	)
	pol.McpRules = append(pol.McpRules,
		&policyv1.Rule{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == "time"`, Source: moreTools + "#0"},
		&policyv1.Rule{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == "date"`, Source: moreTools + "#1"},
		&policyv1.Rule{Action: policyv1.Rule_DENY, Expression: `mcp.tool.name == "echo"`, Source: noEcho})
	h := newHarness(t, []*policyv1.Policy{pol})
	noAllow := tools + "+" + moreTools + authz.NoAllowMatched

	call := func(id int, tool string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q}}`, id, tool)
	}
	for _, c := range []struct{ tool, rule string }{{"get-env", noAllow}, {"echo", noEcho}} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody([]byte(call(1, c.tool)), true))
		if md := extproctest.Metadata(resp); md["rule"] != c.rule || md["decision"] != "deny" || md["tool"] != c.tool {
			t.Errorf("tools/call %s: metadata %v, want rule %q", c.tool, md, c.rule)
		}
		recs := h.audit.records(t)
		checkRecord(t, recs[len(recs)-1], map[string]any{"tool": c.tool, "decision": "deny", "rule": c.rule, "outcome": "error"})
	}

	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	resp := check(t)(s.RequestBody([]byte("["+call(1, "fetch")+","+call(2, "get-env")+"]"), true))
	if md := extproctest.Metadata(resp); md["rule"] != noAllow || md["tool"] != "get-env" {
		t.Errorf("batch: metadata %v, want the refused call's rule %q", md, noAllow)
	}
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	check(t)(s.ResponseBody([]byte(`[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","id":`+standIn(`2`, "get-env")+`,"result":{}}]`), true))
	s.Close()
	waitFor(t, "the batch's records", func() bool { return len(h.audit.records(t)) == 4 })
	byTool := map[string]map[string]any{}
	for _, r := range h.audit.records(t)[2:] {
		byTool[fmt.Sprint(r["tool"])] = r
	}
	checkRecord(t, byTool["fetch"], map[string]any{"decision": "allow", "rule": tools + "#0", "outcome": "result"})
	checkRecord(t, byTool["get-env"], map[string]any{"decision": "deny", "rule": noAllow, "outcome": "error"})

	s = h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
	waitFor(t, "the tools/list record", func() bool { return len(h.audit.records(t)) == 5 })
	checkRecord(t, h.audit.records(t)[4], map[string]any{"method": "tools/list", "decision": "allow", "rule": traffic + "#0", "outcome": "result"})

	s = h.open(t, h.tcp, streamableRoute)
	resp = check(t)(s.RequestHeaders(postHeaders("/mcp", sg.token(t, gojwt.MapClaims{"sub": "mallory", "org": "evil.example"})), false))
	if md := extproctest.Metadata(resp); resp.GetImmediateResponse().GetStatus().GetCode() != 403 || md["rule"] != traffic+authz.NoAllowMatched {
		t.Errorf("traffic refusal: %v, want 403 with rule %q", resp, traffic+authz.NoAllowMatched)
	}
	checkRecord(t, h.audit.records(t)[5], map[string]any{"decision": "deny", "rule": traffic + authz.NoAllowMatched, "http_status": 403, "outcome": "refused"})
}

// TestBodyAtTheDefaultLimit: with the default limit (4 MiB) a body of exactly the limit is read
// and one byte more gets the JSON-RPC 413, over real gRPC: the server's gRPC message limit must
// leave room for the limit plus the listener's slack, or Envoy gets a RESOURCE_EXHAUSTED and
// answers 500.
func TestBodyAtTheDefaultLimit(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	call := func(n int) []byte {
		head := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"`
		tail := `"}}}`
		return []byte(head + strings.Repeat("a", n-len(head)-len(tail)) + tail)
	}
	for _, tc := range []struct {
		size   int
		status int32
	}{{extproc.DefaultMaxBodyBytes, 0}, {extproc.DefaultMaxBodyBytes + 1, 413}, {extproc.DefaultMaxBodyBytes + 64<<10, 413}} {
		s := h.open(t, h.tcp, streamableRoute)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp, err := s.RequestBody(call(tc.size), true)
		if err != nil {
			t.Fatalf("%d bytes: %v", tc.size, err)
		}
		if got := resp.GetImmediateResponse().GetStatus().GetCode(); int32(got) != tc.status {
			t.Errorf("%d bytes: immediate response %d, want %d (0: continue)", tc.size, got, tc.status)
		}
		s.Close()
	}
}

// TestSessionIDMustBeVisibleASCII: MCP requires an Mcp-Session-Id of visible ASCII (0x21-0x7E).
// A request whose header has any other byte (CR, LF, NUL, a space, DEL, UTF-8) is refused with
// 400 and a JSON-RPC -32600 at its headers, under a policy or none, and its audit record and
// metadata carry no session: the stateful session envelope decodes a client's base64 into the
// header unchecked, so without the check the audit recorded whatever bytes the client chose. A
// valid id passes and is recorded.
func TestSessionIDMustBeVisibleASCII(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t)), {Name: "open"}})
	open := streamableRoute
	open.Policy = ""
	bad := []string{"s-1\r\nx-injected: 1", "s-1\n", "s\x00-1", "s 1", "s\t1", "s-1\x7f", "s-\x80", "sé"}
	for _, route := range []extproctest.Route{streamableRoute, open} {
		for _, id := range bad {
			s := h.open(t, h.tcp, route)
			resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession(id))), false))
			ir := resp.GetImmediateResponse()
			if ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), `"code":-32600`) || setHeaders(resp)["content-type"] != "application/json" {
				t.Errorf("policy %q, session id %q: want 400 with JSON-RPC -32600, got %v", route.Policy, id, resp)
			}
			if md := extproctest.Metadata(resp); md["session"] != "" || md["decision"] != "deny" {
				t.Errorf("policy %q, session id %q: metadata %v", route.Policy, id, md)
			}
		}
		// One value, not empty: servers differ in which of several they read, and the session
		// checked is the first (an empty first one named none, and a second went upstream
		// unchecked).
		for _, ids := range [][]string{
			{extproctest.LabSession("s-1"), "s\r\n1"},
			{"", "s-1"},
			{extproctest.LabSession("s-1"), extproctest.LabSession("s-1")},
			{""},
		} {
			var hs []extproctest.Header
			for _, id := range ids {
				hs = append(hs, hdr("mcp-session-id", id))
			}
			s := h.open(t, h.tcp, route)
			resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hs...), false))
			if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), `"code":-32600`) {
				t.Errorf("policy %q, Mcp-Session-Id %q: want 400 with JSON-RPC -32600, got %v", route.Policy, ids, resp)
			}
		}
	}
	recs := h.audit.records(t)
	if len(recs) != 2*(len(bad)+4) {
		t.Fatalf("%d audit records, want %d", len(recs), 2*(len(bad)+4))
	}
	for _, rec := range recs {
		checkRecord(t, rec, map[string]any{"http_status": 400, "outcome": "refused", "decision": "deny"})
		if rec["session"] != nil {
			t.Errorf("the audit recorded session %q", rec["session"])
		}
	}
	good := "0123456789abcdef-ABC_~!#$%&'()*+,./:;<=>?@[\\]^`{|}"
	s := h.open(t, h.tcp, streamableRoute)
	resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession(good))), false))
	plainContinue(t, resp)
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), true))
	if md := extproctest.Metadata(resp); resp.GetImmediateResponse() != nil || md["session"] != good {
		t.Errorf("a visible ASCII session id: %v", resp)
	}
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`), true))
	waitFor(t, "the valid id's audit record", func() bool { return len(h.audit.records(t)) == len(recs)+1 })
	checkRecord(t, h.audit.records(t)[len(recs)], map[string]any{"method": "tools/list", "session": good, "http_status": 200})
}

// TestBatchLimit: a batch of more than MaxBatchMessages messages is refused with 400 and a
// JSON-RPC error, under a policy or none, and nothing of it is kept; a batch at the limit passes.
func TestBatchLimit(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	batch := func(n int) []byte {
		elems := make([]string, n)
		for i := range elems {
			elems[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
		}
		return []byte("[" + strings.Join(elems, ",") + "]")
	}
	for name, route := range mirrorRoutes() {
		s := h.open(t, h.tcp, route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		resp := check(t)(s.RequestBody(batch(extproc.MaxBatchMessages+1), true))
		ir := resp.GetImmediateResponse()
		if ir.GetStatus().GetCode() != 400 || !strings.Contains(string(ir.GetBody()), `"code":-32600`) ||
			!strings.Contains(string(ir.GetBody()), fmt.Sprintf("limit of %d", extproc.MaxBatchMessages)) {
			t.Errorf("%s: a batch over the limit: %v", name, resp)
		}
		s = h.open(t, h.tcp, route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		if resp := check(t)(s.RequestBody(batch(extproc.MaxBatchMessages), true)); resp.GetImmediateResponse() != nil {
			t.Errorf("%s: a batch at the limit was refused: %v", name, resp)
		}
	}
}

// TestPeerCertificateRule: a traffic rule on the verified client certificate reads the
// request_attributes Envoy sends with the first message of a filter chain that verifies client
// certificates; a certificate with another DNS SAN, and a chain that sends no certificate
// attributes (where the translator asks for none), are refused with 403.
func TestPeerCertificateRule(t *testing.T) {
	p := &policyv1.Policy{Name: "lab", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_ALLOW,
		Expression: `source.dnsSan == "client-a.example" && source.subject == "CN=client-a,O=mcpgate"`, Source: "allow#0"}}}
	h := newHarness(t, []*policyv1.Policy{p})
	certOf := func(dns, subject string) map[string]string {
		return map[string]string{
			contract.AttrPeerSubject: subject, contract.AttrPeerDNSSAN: dns,
			contract.AttrPeerSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		}
	}
	for _, c := range []struct {
		name  string
		peer  map[string]string
		allow bool
	}{
		{"client-a", certOf("client-a.example", "CN=client-a,O=mcpgate"), true},
		{"client-b", certOf("client-b.example", "CN=client-b,O=mcpgate"), false},
		// A TLS connection's subject attribute is "" without a certificate, and no digest.
		{"no certificate", map[string]string{contract.AttrPeerSubject: ""}, false},
		{"chain without attributes", nil, false},
	} {
		s := h.open(t, h.tcp, streamableRoute)
		s.Peer = c.peer
		resp := check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
		if c.allow {
			plainContinue(t, resp)
			continue
		}
		if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 403 {
			t.Errorf("%s: want 403, got %v", c.name, resp)
		}
	}
}
