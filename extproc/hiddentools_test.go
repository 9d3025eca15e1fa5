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

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

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
		}{{"/sse?sessionid=S1", ""}, {"/mcp", "S1"}, {"/mcp?x=1", "S1"}} {
			s := h.open(t, h.tcp, route)
			var extra []extproctest.Header
			if tc.session != "" {
				extra = append(extra, hdr("mcp-session-id", tc.session))
			}
			plainContinue(t, check(t)(s.RequestHeaders(postHeaders(tc.path, extproctest.LabToken, extra...), false)))
		}
	}
}
