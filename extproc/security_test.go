package extproc_test

import (
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
