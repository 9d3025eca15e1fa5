package extproc_test

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// applyHeaderMutation applies a reply's header mutation to hs as Envoy does (removals, then
// overwrites) and returns the result.
func applyHeaderMutation(hs []extproctest.Header, resp *extprocv3.ProcessingResponse) map[string]string {
	out := map[string]string{}
	for _, h := range hs {
		out[h.Name] = h.Value
	}
	m := extproctest.Common(resp).GetHeaderMutation()
	for _, name := range m.GetRemoveHeaders() {
		delete(out, name)
	}
	for _, o := range m.GetSetHeaders() {
		out[o.GetHeader().GetKey()] = string(o.GetHeader().GetRawValue())
	}
	return out
}

// TestStreamedAnswerContentLength: an upstream's text/event-stream answer with a content-length,
// on an MCP route (response body mode NONE). Envoy decides on content-length with the route's
// mode, when the response headers reach the filter (NONE: it stays),
// and the mode_override to STREAMED does not change that; once ext_proc rewrites an event, that
// length is wrong. The headers reply must therefore remove it.
func TestStreamedAnswerContentLength(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	ans := "event: message\ndata: " + toolsListAnswer + "\n\n"
	upstream := respHeaders("200", "text/event-stream", hdr("content-length", strconv.Itoa(len(ans))))
	resp := check(t)(s.ResponseHeaders(upstream, false))
	if resp.GetModeOverride().GetResponseBodyMode() != extprocfilterv3.ProcessingMode_STREAMED {
		t.Fatalf("mode_override = %v, want response STREAMED", resp.GetModeOverride())
	}
	forwarded := applyHeaderMutation(upstream, resp)
	var out bytes.Buffer
	for i, c := range []string{ans[:30], ans[30:]} {
		r := check(t)(s.ResponseBody([]byte(c), i == 1))
		out.Write(extproctest.BodyAfter(r, []byte(c)))
	}
	if want := "event: message\ndata: " + toolsListFiltered + "\n\n"; out.String() != want {
		t.Fatalf("stream after ext_proc = %q, want %q", out.String(), want)
	}
	if cl, ok := forwarded["content-length"]; ok && cl != strconv.Itoa(out.Len()) {
		t.Errorf("the client gets content-length %s for a body of %d bytes", cl, out.Len())
	}
}

// TestBufferedAnswerContentLength: a tools/list answer with a content-length, filtered in BUFFERED
// mode. Envoy keeps the upstream's content-length (the route's mode sends the headers) and, once
// it applied the body reply's header mutation, refuses a replaced body of another length (500).
// It ignores a content-length that reply sets when the mode in force has the response headers
// SKIP, which a mode_override without response_header_mode takes from the filter level
// (ext_proc.cc effectiveModeOverride; processor_state.h shouldRemoveContentLength). So the
// override says SEND, and the body's reply sets the new length.
func TestBufferedAnswerContentLength(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	upstream := respHeaders("200", "application/json", hdr("content-length", strconv.Itoa(len(toolsListAnswer))))
	resp := check(t)(s.ResponseHeaders(upstream, false))
	if mo := resp.GetModeOverride(); mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED ||
		mo.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SEND {
		t.Fatalf("mode_override = %v, want response headers SEND and body BUFFERED", mo)
	}
	r := check(t)(s.ResponseBody([]byte(toolsListAnswer), true))
	out := extproctest.BodyAfter(r, []byte(toolsListAnswer))
	if string(out) != toolsListFiltered {
		t.Fatalf("body after ext_proc = %s, want %s", out, toolsListFiltered)
	}
	if cl := applyHeaderMutation(upstream, r)["content-length"]; cl != strconv.Itoa(len(out)) {
		t.Errorf("the body's reply leaves content-length %s for a body of %d bytes", cl, len(out))
	}
}

const bodyNotSentLog = "MCP route's request body mode is NONE"

// openNoBody opens a stream on route whose request body mode (protocol_config) is NONE: Envoy
// will not send the request body.
func openNoBody(t *testing.T, h *harness, route extproctest.Route) *extproctest.Stream {
	s := h.open(t, h.tcp, route)
	s.RequestBodyMode = extprocfilterv3.ProcessingMode_NONE
	return s
}

// TestRequestBodyNotSentToolRules: on an MCP route whose request body mode is NONE (a
// configuration mismatch), a POST under MCP rules cannot be authorized tool by tool, so it is
// refused as a body the rules cannot read is (500 naming the route); GET and DELETE stream
// requests pass as with the body mode the route should have; a route without MCP rules passes,
// with its metadata in the headers reply since no body reply will carry it. The mismatch is
// logged once per route.
func TestRequestBodyNotSentToolRules(t *testing.T) {
	logOpt, logs := withLog(slog.LevelWarn)
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t)), {Name: "open"}}, logOpt)
	for _, path := range []string{"/mcp", extproctest.LabEndpoint("/message?sessionId=694d5887")} {
		s := openNoBody(t, h, streamableRoute)
		resp := check(t)(s.RequestHeaders(postHeaders(path, extproctest.LabToken), false))
		ir := resp.GetImmediateResponse()
		if ir.GetStatus().GetCode() != 500 || ir.GetDetails() != "mcpgate_body_not_sent" || !strings.Contains(string(ir.GetBody()), streamableRoute.Route) {
			t.Errorf("POST %s under MCP rules without its body: want 500 naming the route, got %v", path, resp)
		}
	}
	s := openNoBody(t, h, streamableRoute)
	resp := check(t)(s.RequestHeaders(getHeaders("/mcp", extproctest.LabToken), true))
	plainContinue(t, resp)
	if md := extproctest.Metadata(resp); md["authn"] != "ok" || md["decision"] != "allow" {
		t.Errorf("GET stream metadata %v", md)
	}
	s = openNoBody(t, h, streamableRoute)
	plainContinue(t, check(t)(s.RequestHeaders([]extproctest.Header{
		hdr(":authority", "127.0.0.1:8080"), hdr(":path", "/mcp"), hdr(":method", "DELETE"), hdr(":scheme", "http"),
		hdr("mcp-session-id", extproctest.LabSession("S1")), hdr("authorization", "Bearer "+extproctest.LabToken),
	}, true)))

	open := streamableRoute
	open.Policy, open.Route = "open", "agentgateway-system/mcp-open/rule/0"
	s = openNoBody(t, h, open)
	resp = check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	plainContinue(t, resp)
	if md := extproctest.Metadata(resp); md["authn"] != "none" || md["decision"] != "allow" {
		t.Errorf("POST without rules, no body to follow: the headers reply must carry the metadata, got %v", md)
	}

	if n := logs.count(bodyNotSentLog); n != 2 {
		t.Errorf("mismatch logged %d times for 2 routes, want once per route:\n%s", n, logs)
	}
}

// TestRequestBodyNotSentTrafficRules: traffic rules that read mcp.* are not deferred to a body
// that will not come: they run at the request headers, without MCP fields; a POST they would
// have judged by its messages is refused (500), while a GET stream they allow passes.
func TestRequestBodyNotSentTrafficRules(t *testing.T) {
	denyNoMethod := &policyv1.Policy{Name: "lab", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.method == "tools/call" || mcp.method == ""`, Source: "deny#0"}}}
	denyTool := &policyv1.Policy{Name: "tool", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.tool.name == "get-env"`, Source: "deny-tool#0"}}}
	h := newHarness(t, []*policyv1.Policy{denyNoMethod, denyTool})

	s := openNoBody(t, h, streamableRoute)
	resp := check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 403 || extproctest.Metadata(resp)["rule"] != "deny#0" {
		t.Errorf("traffic rules at the headers: want 403 by deny#0, got %v", resp)
	}

	route := streamableRoute
	route.Policy = "tool"
	s = openNoBody(t, h, route)
	resp = check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 500 || ir.GetDetails() != "mcpgate_body_not_sent" {
		t.Errorf("POST whose traffic rules read its messages, without its body: want 500, got %v", resp)
	}
	s = openNoBody(t, h, route)
	resp = check(t)(s.RequestHeaders(getHeaders("/mcp", ""), true))
	plainContinue(t, resp)
	if md := extproctest.Metadata(resp); md["decision"] != "allow" {
		t.Errorf("GET stream metadata %v", md)
	}
	// A GET with a body (Envoy has not sent it): the rules still run at the headers.
	s = openNoBody(t, h, streamableRoute)
	resp = check(t)(s.RequestHeaders(getHeaders("/mcp", ""), false))
	if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 403 {
		t.Errorf("GET with a body that will not be sent: want 403 by deny#0, got %v", resp)
	}
}

// TestTrafficRulesOnGETWithoutEndOfStream: on a route whose bodies reach ext_proc, a GET or
// DELETE whose headers do not end the stream is judged at the headers all the same: an HTTP/2
// client that ends it with trailers and no data sends ext_proc no body message, so rules
// deferred to the body would never run. Only a POST, whose body carries MCP's messages, defers
// them.
func TestTrafficRulesOnGETWithoutEndOfStream(t *testing.T) {
	denyNoMethod := &policyv1.Policy{Name: "lab", TrafficRules: []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.method == ""`, Source: "deny#0"}}}
	h := newHarness(t, []*policyv1.Policy{denyNoMethod})
	del := []extproctest.Header{hdr(":authority", "127.0.0.1:8080"), hdr(":path", "/mcp"), hdr(":method", "DELETE"), hdr(":scheme", "http"), hdr("mcp-session-id", extproctest.AnonSession("S1"))}
	for name, hs := range map[string][]extproctest.Header{"GET": getHeaders("/mcp", ""), "DELETE": del} {
		s := h.open(t, h.tcp, streamableRoute)
		resp := check(t)(s.RequestHeaders(hs, false))
		if ir := resp.GetImmediateResponse(); ir.GetStatus().GetCode() != 403 || extproctest.Metadata(resp)["rule"] != "deny#0" {
			t.Errorf("%s without END_STREAM: want 403 by deny#0 at the headers, got %v", name, resp)
		}
	}
	// a POST waits for its body, where the method is
	s := h.open(t, h.tcp, streamableRoute)
	if resp := check(t)(s.RequestHeaders(postHeaders("/mcp", ""), false)); resp.GetImmediateResponse() != nil {
		t.Fatalf("POST refused before its body: %v", resp)
	}
	if resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), true)); resp.GetImmediateResponse() != nil {
		t.Errorf("POST of tools/list: %v", resp)
	}
}
