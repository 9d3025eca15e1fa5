package extproc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// TestAuditLineInjection: a client's tools/call whose arguments and id hold a whole audit record
// between newlines, line separators and invalid UTF-8 gets one audit line, a JSON object naming
// its own subject; no line of the client's making appears. The reply's metadata (the access
// log's fields) reaches Envoy as a valid protobuf, the client's invalid UTF-8 replaced.
func TestAuditLineInjection(t *testing.T) {
	sg := newSigner(t)
	pol := labPolicy(sg)
	pol.McpRules = nil // any tool: the tool name is the client's too
	h := newHarness(t, []*policyv1.Policy{pol})
	forged := `{"time":"2026-01-01T00:00:00Z","subject":"alice","method":"tools/call","tool":"get-env","decision":"allow","outcome":"result"}`
	tool := "fetch\xff\xfe\u2028" // a run of invalid bytes: one U+FFFD in the access log and the audit line
	body := `{"jsonrpc":"2.0","id":"7\u2028` + "\xfe\xc3" + `","method":"tools/call","params":{"name":"` + tool + `","arguments":{"url":"https://example.com","x":` +
		"\n" + forged + "\r\n,\"y\":\"\u2029\u0085\xff\"}}}"
	s := h.open(t, h.tcp, streamableRoute)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", extproctest.LabSession("S"))), false))
	resp := check(t)(s.RequestBody([]byte(body), true))
	plainContinue(t, resp)
	md := extproctest.Metadata(resp)
	for _, f := range []string{contract.FieldTool, contract.FieldArguments, contract.FieldJSONRPCID} {
		if !utf8.ValidString(md[f]) || md[f] == "" {
			t.Errorf("metadata %s = %q, want it set and valid UTF-8", f, md[f])
		}
	}
	if want := strings.ToValidUTF8(tool, "\uFFFD"); md[contract.FieldTool] != want {
		t.Errorf("metadata tool = %q, want %q", md[contract.FieldTool], want)
	}
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":"7\u2028`+"\xfe\xc3"+`","result":{"content":[]}}`), true))
	s.Close()
	waitFor(t, "the audit line", func() bool { return strings.Contains(h.audit.String(), "latency_ms") })
	lines := strings.SplitAfter(h.audit.String(), "\n")
	if len(lines) != 2 || lines[1] != "" {
		t.Fatalf("want one audit line, got %d: %q", len(lines)-1, h.audit.String())
	}
	line := strings.TrimSuffix(lines[0], "\n")
	if !utf8.ValidString(line) || strings.ContainsAny(line, "\r\u0085\u2028\u2029") {
		t.Errorf("audit line holds invalid UTF-8 or a line separator: %q", line)
	}
	dec := json.NewDecoder(strings.NewReader(line))
	var rec map[string]any
	if err := dec.Decode(&rec); err != nil || dec.More() {
		t.Fatalf("audit line is not one JSON object (%v): %q", err, line)
	}
	checkRecord(t, rec, map[string]any{"subject": "user-id", "tool": "fetch\uFFFD\u2028", "jsonrpc_id": "7\u2028\uFFFD", "outcome": "result"})
	args, _ := rec["arguments"].(map[string]any)
	if x, _ := args["x"].(map[string]any); x["subject"] != "alice" || args["y"] != "\u2029\u0085\uFFFD" {
		t.Errorf("arguments not kept as the client sent them: %v", rec["arguments"])
	}
	if bytes.Count([]byte(h.audit.String()), []byte(`"alice"`)) != 1 {
		t.Errorf("the forged subject appears outside the arguments: %q", h.audit.String())
	}
}

// TestAuditClaimsAndRuleInput: the rules on an MCP message see the request's claims as well as
// the message (the per-message input starts from the request's), and the audit line writes the
// token's claims that the rules read: with rules reading none, no claims at all.
func TestAuditClaimsAndRuleInput(t *testing.T) {
	sg := newSigner(t)
	reading := labPolicy(sg)
	reading.Name = "reading"
	// Traffic rules reading mcp.* run on each message, with the claims.
	reading.TrafficRules = []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `jwt.org == "solo.io" && mcp.method != ""`, Source: "rbac#0"}}
	reading.McpRules = []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == "fetch" && jwt.team == "a"`, Source: "tools#0"}}
	blind := labPolicy(sg)
	blind.Name = "blind"
	blind.TrafficRules = nil
	h := newHarness(t, []*policyv1.Policy{reading, blind})
	token := sg.token(t, gojwt.MapClaims{"sub": "u", "org": "solo.io", "team": "a", "email": "u@example.com"})
	for _, tc := range []struct {
		policy string
		claims any
	}{
		{"reading", map[string]any{"org": "solo.io", "team": "a"}},
		{"blind", nil},
	} {
		route := streamableRoute
		route.Policy = tc.policy
		s := h.open(t, h.clients()["tcp"], route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", token), false))
		resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
		if ir := resp.GetImmediateResponse(); ir != nil {
			t.Fatalf("%s: the call was refused: %s", tc.policy, ir.GetBody())
		}
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json", hdr("content-length", "38")), false))
		check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}  `), true))
		recs := h.audit.records(t)
		rec := recs[len(recs)-1]
		if got, want := fmt.Sprint(rec["claims"]), fmt.Sprint(tc.claims); got != want {
			t.Errorf("%s: audit claims = %s, want %s", tc.policy, got, want)
		}
	}
}
