package extproc_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/extproc/extproctest"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// mirrorRoutes returns the lab route (tool rules, Strict JWT) and a route without a policy: the
// Mcp-Method/Mcp-Name check is a protocol check that holds on both.
func mirrorRoutes() map[string]extproctest.Route {
	open := streamableRoute
	open.Policy = ""
	return map[string]extproctest.Route{"lab": streamableRoute, "no policy": open}
}

// TestMirrorHeadersMatching: requests whose Mcp-Method and Mcp-Name agree with the body, plain
// or base64-wrapped or repeated with the same value, reach the upstream untouched, as do requests
// without them (older clients, such as the conformance suite's, send neither).
func TestMirrorHeadersMatching(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	b64 := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	for _, tt := range []struct {
		body string
		hs   []extproctest.Header
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{"url":"u"}}}`, []extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-name", "fetch")}},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}}`, []extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-name", b64("fetch"))}},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}}`, []extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-method", "tools/call")}},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}}`, nil},
		{`{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":"file:///a b/résumé.txt"}}`, []extproctest.Header{hdr("mcp-method", "resources/read"), hdr("mcp-name", b64("file:///a b/résumé.txt"))}},
		{`{"jsonrpc":"2.0","id":"r","method":"resources/subscribe","params":{"uri":"file:///a"}}`, []extproctest.Header{hdr("mcp-method", "resources/subscribe"), hdr("mcp-name", "file:///a")}},
		{`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet"}}`, []extproctest.Header{hdr("mcp-name", "greet")}},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, []extproctest.Header{hdr("mcp-method", "tools/list")}},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, []extproctest.Header{hdr("mcp-method", "notifications/initialized")}},
	} {
		for name, route := range mirrorRoutes() {
			s := h.open(t, h.tcp, route)
			check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, tt.hs...), false))
			resp := check(t)(s.RequestBody([]byte(tt.body), true))
			if resp.GetImmediateResponse() != nil {
				t.Errorf("%s: %s with %v: refused: %s", name, tt.body, tt.hs, resp.GetImmediateResponse().GetBody())
				continue
			}
			plainContinue(t, resp)
		}
	}
}

// TestMirrorHeadersMismatch: a request whose Mcp-Method or Mcp-Name disagrees with its body (or
// cannot be checked against it) is answered 400 with JSON-RPC -32020 and the request's id before
// the upstream sees it, under tool rules or none, and recorded as a refusal. The tool rules judge
// the body: a header naming an allowed tool over a refused one, or the reverse, is a refusal
// (-32020), neither a pass nor the rules' "Unknown tool".
func TestMirrorHeadersMismatch(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	long := strings.Repeat("x", 500)
	for _, tt := range []struct {
		what, body string
		hs         []extproctest.Header
		id, tool   any    // the audit record's jsonrpc_id and tool
		msg        string // in the error message
	}{
		{"method mismatch", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-method", "tools/list")}, 1, "fetch", `Mcp-Method header "tools/list" does not match the body's method "tools/call"`},
		{"allowed tool in the header, refused in the body", `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"get-env"}}`,
			[]extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-name", "fetch")}, "c1", "get-env", `Mcp-Name header "fetch" does not match the body's params.name "get-env"`},
		{"refused tool in the header, allowed in the body", `{"jsonrpc":"2.0","id":"c2","method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-name", "get-env")}, "c2", "fetch", `Mcp-Name header "get-env" does not match the body's params.name "fetch"`},
		{"name without method header", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-env"}}`,
			[]extproctest.Header{hdr("mcp-name", "echo")}, 3, "get-env", `params.name "get-env"`},
		{"resources/read uri", `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///etc/shadow"}}`,
			[]extproctest.Header{hdr("mcp-method", "resources/read"), hdr("mcp-name", "file:///tmp/ok")}, 4, nil, `params.uri "file:///etc/shadow"`},
		{"resources/read without uri", `{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"name":"file:///tmp/ok"}}`,
			[]extproctest.Header{hdr("mcp-name", "file:///tmp/ok")}, 5, nil, "no string params.uri"},
		{"mcp-name on a method that names nothing", `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`,
			[]extproctest.Header{hdr("mcp-method", "tools/list"), hdr("mcp-name", "fetch")}, 6, nil, `on method "tools/list", which names nothing`},
		{"repeated values that differ", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-name", "fetch"), hdr("mcp-name", "get-env")}, 7, "fetch", "repeated with different values"},
		{"repeated method values that differ", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-method", "tools/list")}, 7, "fetch", "repeated with different values"},
		{"a byte outside ASCII", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fétch"}}`,
			[]extproctest.Header{hdr("mcp-name", "fétch")}, 8, "fétch", "neither printable ASCII"},
		{"a control byte", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-method", "tools/call\x00")}, 8, "fetch", "neither printable ASCII"},
		{"not UTF-8", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-name", "fetch\xff")}, 8, "fetch", "neither printable ASCII"},
		{"a sentinel that does not decode", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-name", "=?base64?ZmV0Y2g?=")}, 8, "fetch", "neither printable ASCII"},
		{"a sentinel of another tool", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"get-env"}}`,
			[]extproctest.Header{hdr("mcp-name", "=?base64?ZmV0Y2g=?=")}, 8, "get-env", `Mcp-Name header "fetch"`},
		{"params.name that servers read differently", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"fetch","Name":"get-env"}}`,
			[]extproctest.Header{hdr("mcp-name", "fetch")}, 9, "fetch", "cannot be checked"},
		{"a response carrying mcp-method", `{"jsonrpc":"2.0","id":10,"result":{}}`,
			[]extproctest.Header{hdr("mcp-method", "tools/call")}, 10, nil, `the body's method ""`},
		{"a long value is cut", `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"fetch"}}`,
			[]extproctest.Header{hdr("mcp-name", long)}, 11, "fetch", strings.Repeat("x", 64) + "…\" does not match"},
	} {
		for name, route := range mirrorRoutes() {
			before := len(h.audit.records(t))
			s := h.open(t, h.tcp, route)
			check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, tt.hs...), false))
			resp := check(t)(s.RequestBody([]byte(tt.body), true))
			ir := resp.GetImmediateResponse()
			if ir.GetStatus().GetCode() != 400 || setHeaders(resp)["content-type"] != "application/json" {
				t.Errorf("%s (%s): want 400 application/json, got %v", tt.what, name, resp)
				continue
			}
			var e struct {
				ID    any
				Error struct {
					Code    int
					Message string
				}
			}
			if err := json.Unmarshal(ir.GetBody(), &e); err != nil || e.Error.Code != -32020 || !strings.Contains(e.Error.Message, tt.msg) || !jsonEqual(e.ID, tt.id) {
				t.Errorf("%s (%s): body %s (%v), want -32020 with id %v and %q", tt.what, name, ir.GetBody(), err, tt.id, tt.msg)
			}
			if strings.Contains(e.Error.Message, long) {
				t.Errorf("%s (%s): the whole value is in the message", tt.what, name)
			}
			md := extproctest.Metadata(resp)
			id, _ := json.Marshal(tt.id)
			if md["decision"] != "deny" || md["rule"] != "" || md["jsonrpc_id"] != string(id) {
				t.Errorf("%s (%s): metadata %v", tt.what, name, md)
			}
			recs := h.audit.records(t)
			if len(recs) != before+1 {
				t.Fatalf("%s (%s): %d audit records, want %d", tt.what, name, len(recs), before+1)
			}
			checkRecord(t, recs[before], map[string]any{"http_status": 400, "outcome": "refused", "decision": "deny", "jsonrpc_id": tt.id, "tool": tt.tool})
		}
	}
}

// jsonEqual reports whether a and b encode to the same JSON.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestMirrorHeadersOnBatch: MCP 2026-07-28 has no batches; a batch carrying Mcp-Method or
// Mcp-Name is refused (with a null id: it is no single request) under tool rules or none. A batch
// without them is judged as before.
func TestMirrorHeadersOnBatch(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{labPolicy(newSigner(t))})
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}]`
	for _, hd := range []extproctest.Header{hdr("mcp-method", "tools/call"), hdr("mcp-name", "fetch")} {
		for name, route := range mirrorRoutes() {
			s := h.open(t, h.tcp, route)
			check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hd), false))
			resp := check(t)(s.RequestBody([]byte(body), true))
			ir := resp.GetImmediateResponse()
			if ir.GetStatus().GetCode() != 400 || !strings.HasPrefix(string(ir.GetBody()), `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Mcp-Method and Mcp-Name mirror a single message`) {
				t.Errorf("%s (%s): batch with the header: %v", hd.Name, name, resp)
			}
		}
	}
	s := h.open(t, h.tcp, mirrorRoutes()["no policy"])
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	plainContinue(t, check(t)(s.RequestBody([]byte(body), true)))
	// under the lab's tool rule, the refused call becomes a ping, as in TestBatch
	s = h.open(t, h.tcp, mirrorRoutes()["lab"])
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	want := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch"}},{"jsonrpc":"2.0","id":` + standIn(`2`, "get-env") + `,"method":"ping"}]`
	if got := string(extproctest.BodyAfter(check(t)(s.RequestBody([]byte(body), true)), nil)); got != want {
		t.Errorf("batch without the headers under the lab's rule: %s, want %s", got, want)
	}
}
