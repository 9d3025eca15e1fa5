package extproc_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

func withPolicyWait(d time.Duration) harnessOption {
	return func(c *extproc.Config) { c.PolicyWait = d }
}

// TestLatePolicy: in Kubernetes a route naming a policy can reach Envoy before the policy reaches
// ext_proc. A request on it waits for a policy version that has the policy and is then served
// under it. A newer version still without it wakes the waiting request, which waits on: each
// version is pushed only once the request is seen waiting (before the first) and seen waking and
// waiting on (before the second), so that neither can arrive before the request waits.
func TestLatePolicy(t *testing.T) {
	sg := newSigner(t)
	logOpt, logs := withLog(slog.LevelDebug)
	h := newHarness(t, []*policyv1.Policy{{Name: "other"}}, withPolicyWait(time.Minute), logOpt)
	s := h.open(t, h.tcp, streamableRoute)
	if err := s.Send(extproctest.RequestHeadersMsg(postHeaders("/mcp", extproctest.LabToken), false)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request to wait for its policy", func() bool { return logs.count("waiting for the policy") == 1 })
	h.push(t, &policyv1.Policy{Name: "other2"})
	waitFor(t, "the request to wake on a version without its policy and wait on", func() bool { return logs.count("still waiting") == 1 })
	h.push(t, labPolicy(sg))
	resp, err := s.Recv()
	if err != nil {
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
// stream (the bound is an hour: only the cancellation can end the wait), and leaves no audit
// record: before, it recorded a refusal (500, unknown policy) that no one received.
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
	// Envoy answered the request, or the client went away: ext_proc refused nothing, so it
	// records nothing (the stream ends after its last audit record is written).
	if recs := h.audit.records(t); len(recs) != 0 {
		t.Errorf("a request whose stream ended while it waited for its policy was audited: %v", recs)
	}
}
