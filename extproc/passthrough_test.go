package extproc_test

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestBackendAuthPassthrough: Envoy's messages of a tools/call with a valid token, on the real
// gRPC server. Where the route says backend auth passthrough (x-mcpgate-passthrough), the
// request headers' reply removes no header, so the backend gets the caller's token; without it
// the validated token is removed (as before). Either way the call is authenticated and judged
// alike, a bad token is still refused with 401, and neither the audit line nor the server's log
// holds the token.
func TestBackendAuthPassthrough(t *testing.T) {
	logOpt, logs := withLog(slog.LevelDebug)
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))}, logOpt)
	c := h.tcp
	passthrough := streamableRoute
	passthrough.Passthrough = contract.PassthroughOn
	for _, tc := range []struct {
		name    string
		route   extproctest.Route
		removed []string
	}{
		{"passthrough", passthrough, nil},
		{"without", streamableRoute, []string{"authorization"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.audit.records(t))
			s := h.open(t, c, tc.route)
			resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S1"))), false))
			plainContinue(t, resp)
			if rm := extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(); !slices.Equal(rm, tc.removed) {
				t.Errorf("removed headers %q, want %q", rm, tc.removed)
			}
			if _, set := setHeaders(resp)["authorization"]; set {
				t.Error("the reply sets an Authorization header")
			}
			resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
			plainContinue(t, resp)
			if md := extproctest.Metadata(resp); md["authn"] != "ok" || md["subject"] != "user-id" || md["decision"] != "allow" {
				t.Errorf("request metadata %v", md)
			}
			plainContinue(t, check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false)))
			plainContinue(t, check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":3,"result":{"content":[]}}`), true)))
			if err := s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			recs := h.audit.records(t)
			if len(recs) != before+1 {
				t.Fatalf("%d audit records, want %d", len(recs), before+1)
			}
			checkRecord(t, recs[before], map[string]any{"authn": "ok", "subject": "user-id", "tool": "fetch", "decision": "allow", "outcome": "result"})
		})
	}
	t.Run("bad token", func(t *testing.T) {
		s := h.open(t, c, passthrough)
		resp := check(t)(s.RequestHeaders(postHeaders("/mcp", "not-a-jwt", hdr("mcp-session-id", extproctest.LabSession("S1"))), false))
		if ir := resp.GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 401 {
			t.Errorf("a bad token on a passthrough route: %v, want 401", resp.GetResponse())
		}
	})
	sig := extproctest.LabToken[strings.LastIndexByte(extproctest.LabToken, '.')+1:]
	for name, text := range map[string]string{"audit": h.audit.String(), "log": logs.String()} {
		if strings.Contains(text, sig) {
			t.Errorf("the %s holds the token", name)
		}
	}
}
