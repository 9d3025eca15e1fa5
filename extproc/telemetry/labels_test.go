package telemetry

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestToolLabelNotFilledByClients: tool names that only a client chose (calls refused, answered
// with an error or a tool error, or never answered; more than the label holds) count as "other"
// and take no room: a tool that answers a call with a result afterwards is counted under its name.
func TestToolLabelNotFilledByClients(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := []string{OutcomeRefused, OutcomeError, OutcomeToolError, OutcomeNoAnswer}
	for i := range 1200 {
		r := sampleRecord()
		r.Tool, r.Outcome = "bogus-"+strconv.Itoa(i), outcomes[i%len(outcomes)]
		tel.Finish(r, r.Time)
	}
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"tool": "other"}); n != 1200 {
		t.Errorf("client-chosen names counted as other: %v, want 1200", n)
	}
	r := sampleRecord()
	tel.Finish(r, r.Time)
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"tool": "fetch", "outcome": "result"}); n != 1 {
		t.Errorf("a tool that answered with a result: counted %v times under its name, want 1", n)
	}
	// Admitted, its later refusals and errors are counted under its name too.
	r = sampleRecord()
	r.Decision, r.Outcome, r.HasError, r.ErrorCode = DecisionDeny, OutcomeError, true, -32602
	tel.Finish(r, r.Time)
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"tool": "fetch"}); n != 2 {
		t.Errorf("fetch counted %v times, want 2", n)
	}
}

// TestMethodLabelNotFilledByClients: the same for methods: MCP's own are known from the start;
// others count under their name once a request of theirs got a result.
func TestMethodLabelNotFilledByClients(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		r := sampleRecord()
		r.Method, r.Tool, r.Outcome = "bogus/"+strconv.Itoa(i), "", []string{OutcomeError, OutcomeNotification, OutcomeRefused}[i%3]
		tel.Finish(r, r.Time)
	}
	for _, m := range []string{"notifications/initialized", "tools/list", "x/custom"} {
		r := sampleRecord()
		r.Method, r.Tool = m, ""
		tel.Finish(r, r.Time)
		if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"method": m}); n != 1 {
			t.Errorf("method %s counted %v times under its name, want 1", m, n)
		}
	}
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"method": "other"}); n != 300 {
		t.Errorf("client-chosen methods counted as other: %v, want 300", n)
	}
}

// TestAdmitTool: a name admitted (from a tools/list answer) is counted under its name whatever
// the outcome; names that are no short printable text are not admitted.
func TestAdmitTool(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel, err := New(Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tel.AdmitTool("listed")
	tel.AdmitTool("has space")
	r := sampleRecord()
	r.Tool, r.Outcome = "listed", OutcomeNoAnswer
	tel.Finish(r, r.Time)
	r.Tool = "has space"
	tel.Finish(r, r.Time)
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"tool": "listed"}); n != 1 {
		t.Errorf("listed counted %v times, want 1", n)
	}
	if n := metric(t, reg, "mcpgate_mcp_requests_total", map[string]string{"tool": "other"}); n != 1 {
		t.Errorf("other counted %v times, want 1", n)
	}
}
