package extproc_test

import (
	"strings"
	"testing"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestSessionBoundToCaller: the session id a server gives reaches the client sealed for the
// caller that opened the session (package bind); a request naming it is served only for that
// caller, with the server's own id given back. Another caller's request with it (a stolen id), an
// id the gateway did not seal, or one altered, is answered as a server answers an unknown
// session (404, JSON-RPC -32001), never reaching the server: MCP's security best practices
// (session hijacking).
func TestSessionBoundToCaller(t *testing.T) {
	sg := newSigner(t)
	h := newHarness(t, []*policyv1.Policy{labPolicy(sg)})
	const serverID = "OPCAI5PJURGN4ASUWVV56SWYUW"

	// initialize by the lab's caller: the server names the session.
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`), true))
	upstream := respHeaders("200", "application/json", hdr("mcp-session-id", serverID))
	resp := check(t)(s.ResponseHeaders(upstream, false))
	held := applyHeaderMutation(upstream, resp)["mcp-session-id"]
	if held != extproctest.LabSession(serverID) {
		t.Fatalf("initialize answer: the client gets Mcp-Session-Id %q, want %q (sealed for the lab's caller)", held, extproctest.LabSession(serverID))
	}
	if got := extproctest.Metadata(resp)["session"]; got != serverID {
		t.Errorf("initialize answer: metadata session %q, want the server's %q", got, serverID)
	}
	s.Close()

	// The caller that opened it: the server gets its own id; the rules, the audit and the access
	// log see it too.
	hs := postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", held))
	s = h.open(t, h.tcp, streamableRoute)
	resp = check(t)(s.RequestHeaders(hs, false))
	if got := applyHeaderMutation(hs, resp)["mcp-session-id"]; got != serverID {
		t.Errorf("the server gets Mcp-Session-Id %q, want its own %q", got, serverID)
	}
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), true))
	if got := extproctest.Metadata(resp)["session"]; got != serverID {
		t.Errorf("metadata session %q, want %q", got, serverID)
	}
	// A server that names the session in every answer: the client gets the id it holds.
	resp = check(t)(s.ResponseHeaders(upstream, false))
	if got := applyHeaderMutation(upstream, resp)["mcp-session-id"]; got != held {
		t.Errorf("a later answer naming the session: the client gets %q, want the id it holds, %q", got, held)
	}
	s.Close()

	other := sg.token(t, gojwt.MapClaims{"sub": "mallory", "org": "solo.io"})
	flipped := []byte(held)
	flipped[len(flipped)-2] ^= 'A' ^ 'B'
	for name, req := range map[string][]extproctest.Header{
		"another caller's POST":   postHeaders("/mcp", other, hdr("mcp-session-id", held)),
		"another caller's GET":    append(getHeaders("/mcp", other), hdr("mcp-session-id", held)),
		"another caller's DELETE": {hdr(":authority", "127.0.0.1:8080"), hdr(":path", "/mcp"), hdr(":method", "DELETE"), hdr(":scheme", "http"), hdr("authorization", "Bearer "+other), hdr("mcp-session-id", held)},
		"the server's id":         postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", serverID)),
		"an altered tag":          postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", string(flipped))),
		"another session's tag":   postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", "X"+held)),
		"another key's seal":      postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", serverID+".AAAAAAAAAAAAAAAAAAAAAA")),
	} {
		s := h.open(t, h.tcp, streamableRoute)
		resp := check(t)(s.RequestHeaders(req, true))
		checkRefusal(t, name, resp, 404, "null", -32001, "Session not found")
		if md := extproctest.Metadata(resp); md["rule"] != "session" || md["session"] != "" {
			t.Errorf("%s: metadata %v, want rule session and no session", name, md)
		}
		s.Close()
	}
	// Authentication comes first: without a token the lab's Strict policy answers 401.
	s = h.open(t, h.tcp, streamableRoute)
	if resp := check(t)(s.RequestHeaders(postHeaders("/mcp", "", hdr("mcp-session-id", held)), false)); resp.GetImmediateResponse().GetStatus().GetCode() != 401 {
		t.Errorf("no token: want 401, got %v", resp)
	}
	s.Close()

	waitFor(t, "the refusals' audit lines", func() bool { return h.audit.count(`"rule":"session"`) == 7 })
	for _, r := range h.audit.records(t) {
		if r["rule"] == "session" && (r["http_status"] != float64(404) || r["session"] != nil || r["outcome"] != "refused") {
			t.Errorf("audit line of a refused session: %v", r)
		}
	}
	if strings.Contains(h.audit.String(), held) {
		t.Error("an audit line holds the sealed id a client sent")
	}
}

// TestLegacySessionBoundToCaller: a legacy SSE session's id reaches the client sealed in the
// endpoint event, even when the event comes in pieces on a route without MCP rules (the first
// event is held until whole); a POST to the endpoint is served for its caller only, the server
// getting its own query back.
func TestLegacySessionBoundToCaller(t *testing.T) {
	sg := newSigner(t)
	open := &policyv1.Policy{Name: "open", Jwt: labPolicy(sg).GetJwt()}
	h := newHarness(t, []*policyv1.Policy{open})
	route := sseRoute
	route.Policy = "open"
	const endpoint = "/message?x=1&sessionId=694d5887"

	get := h.open(t, h.tcp, route)
	plainContinue(t, check(t)(get.RequestHeaders(getHeaders("/sse", extproctest.LabToken), true)))
	check(t)(get.ResponseHeaders(respHeaders("200", "text/event-stream"), false))
	ep := "event: endpoint\ndata: " + endpoint + "\n\nevent: message\ndata: {}\n\n"
	var got string
	for _, piece := range []string{ep[:20], ep[20:30], ep[30:]} {
		got += string(extproctest.BodyAfter(check(t)(get.ResponseBody([]byte(piece), false)), []byte(piece)))
	}
	sealed := extproctest.LabEndpoint(endpoint)
	if want := "event: endpoint\ndata: " + sealed + "\n\nevent: message\ndata: {}\n\n"; got != want {
		t.Fatalf("the client gets %q, want %q", got, want)
	}
	if !strings.HasPrefix(sealed, "/message?x=1&sessionId=694d5887.") {
		t.Fatalf("sealed endpoint %q", sealed)
	}

	hs := postHeaders(sealed, extproctest.LabToken)
	p := h.open(t, h.unix, route)
	resp := check(t)(p.RequestHeaders(hs, false))
	if got := applyHeaderMutation(hs, resp)[":path"]; got != endpoint {
		t.Errorf("the server gets %q, want its endpoint %q", got, endpoint)
	}
	p.Close()

	other := sg.token(t, gojwt.MapClaims{"sub": "mallory"})
	for name, path := range map[string]string{"another caller": sealed, "the server's id": endpoint} {
		token := extproctest.LabToken
		if name == "another caller" {
			token = other
		}
		p := h.open(t, h.unix, route)
		checkRefusal(t, name, check(t)(p.RequestHeaders(postHeaders(path, token), false)), 404, "null", -32001, "Session not found")
		p.Close()
	}
}
