package extproc_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

func withPolicyWait(d time.Duration) harnessOption {
	return func(c *extproc.Config) { c.PolicyWait = d }
}

// TestLatePolicy: in Kubernetes a route naming a policy can reach Envoy before the policy reaches
// ext_proc. A request on it waits for a policy version that has the policy (here pushed 200 ms
// after the request arrived, with a newer version without it in between) and is then served
// under it.
func TestLatePolicy(t *testing.T) {
	sg := newSigner(t)
	h := newHarness(t, []*policyv1.Policy{{Name: "other"}}, withPolicyWait(time.Minute))
	s := h.open(t, h.tcp, streamableRoute)
	if err := s.Send(extproctest.RequestHeadersMsg(postHeaders("/mcp", extproctest.LabToken), false)); err != nil {
		t.Fatal(err)
	}
	pushed := make(chan error, 1)
	go func() {
		// A version that still lacks the policy wakes the request, which waits on.
		err := h.xds.Update(map[string]map[string][]proto.Message{"*": {contract.PolicyTypeURL: {&policyv1.Policy{Name: "other2"}}}})
		time.Sleep(200 * time.Millisecond)
		if err == nil {
			err = h.xds.Update(map[string]map[string][]proto.Message{"*": {contract.PolicyTypeURL: {labPolicy(sg)}}})
		}
		pushed <- err
	}()
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	plainContinue(t, resp)
	// Served under the policy: its MCP rules refuse get-env.
	resp = check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}}`), true))
	if md := extproctest.Metadata(resp); resp.GetImmediateResponse() == nil || md["decision"] != "deny" || md["authn"] != "ok" {
		t.Errorf("request not served under the late policy: %v", resp)
	}
	if n := h.metric(t, "mcpgate_extproc_policy_waits_total", map[string]string{"result": "received"}); n != 1 {
		t.Errorf("policy waits received = %v, want 1", n)
	}
}

// TestPolicyNeverComes: when no version with the policy comes within the bound, the request
// fails closed with the 500 of an unknown policy.
func TestPolicyNeverComes(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{{Name: "other"}}, withPolicyWait(50*time.Millisecond))
	route := streamableRoute
	route.Policy = "missing"
	s := h.open(t, h.unix, route)
	resp := check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	ir := resp.GetImmediateResponse()
	if ir.GetStatus().GetCode() != 500 || ir.GetDetails() != "mcpgate_unknown_policy" || !strings.Contains(string(ir.GetBody()), `names policy "missing", which ext_proc has not received`) {
		t.Errorf("want the unknown policy's 500, got %v", resp)
	}
	if n := h.metric(t, "mcpgate_extproc_policy_waits_total", map[string]string{"result": "timeout"}); n != 1 {
		t.Errorf("policy waits timed out = %v, want 1", n)
	}
}

// TestPolicyWaitCancelled: a request waiting for its policy stops waiting when Envoy resets the
// stream (the bound is an hour: only the cancellation can end the wait).
func TestPolicyWaitCancelled(t *testing.T) {
	logOpt, logs := withLog(slog.LevelDebug)
	h := newHarness(t, []*policyv1.Policy{{Name: "other"}}, withPolicyWait(time.Hour), logOpt)
	s := h.open(t, h.tcp, streamableRoute)
	if err := s.Send(extproctest.RequestHeadersMsg(postHeaders("/mcp", extproctest.LabToken), false)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to wait for its policy", func() bool { return logs.count("waiting for the policy") == 1 })
	s.Close()
	waitFor(t, "the wait to end", func() bool {
		return h.metric(t, "mcpgate_extproc_policy_waits_total", map[string]string{"result": "cancelled"}) == 1
	})
	waitFor(t, "the stream to end", func() bool { return h.metric(t, "mcpgate_extproc_streams_active", nil) == 0 })
}
