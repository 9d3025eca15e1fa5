package extproc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc"
	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/extproctest"
	"github.com/mcpgate/mcpgate/extproc/mux"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
)

// neverMux is the mux of a multiplexed backend under prefixMode Never (targets a and b, go-sdk
// servers behind a double of Envoy's mux upstream listener that routes by x-mcpgate-cluster) and
// a session open on it.
type neverMux struct {
	mux   *mux.Server
	route extproctest.Route
	// session is the mux's session id, sealed for the lab token's caller as the front hop gives it.
	session string
	// post sends body to the mux in the session, as the front hop passes a request, and returns
	// the mux's answer.
	post func(body string) *httptest.ResponseRecorder
}

const neverSecret = "never-secret"

// newNeverMux serves targets a (tools fetch and shared, prompt hello) and b (tools search and
// shared, prompt greet).
func newNeverMux(t *testing.T) *neverMux {
	t.Helper()
	target := func(name string, tools ...string) http.Handler {
		s := goTarget(name)
		for _, tool := range tools {
			addTool(s, name, &mcp.Tool{Name: tool})
		}
		prompt := map[string]string{"a": "hello", "b": "greet"}[name]
		s.AddPrompt(&mcp.Prompt{Name: prompt}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: prompt}}}}, nil
		})
		return serveTarget(s)
	}
	return newNeverMuxOf(t, map[string]http.Handler{"cluster-a": target("a", "fetch", "shared"), "cluster-b": target("b", "search", "shared")})
}

// goTarget is a go-sdk server with the tools given, each answering "NAME.TOOL" (addTool).
func goTarget(name string, tools ...*mcp.Tool) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	for _, tool := range tools {
		addTool(s, name, tool)
	}
	return s
}

// addTool adds tool to s, the server of target name: it answers "NAME.TOOL".
func addTool(s *mcp.Server, name string, tool *mcp.Tool) {
	text := name + "." + tool.Name
	mcp.AddTool(s, tool, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
}

// serveTarget serves s over Streamable HTTP.
func serveTarget(s *mcp.Server) http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}

// newNeverMuxOf is newNeverMux of targets a and b served by the handlers of clusters
// "cluster-a" and "cluster-b".
func newNeverMuxOf(t *testing.T, clusters map[string]http.Handler) *neverMux {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "up.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := clusters[r.Header.Get(contract.HeaderMuxCluster)]
		if h == nil {
			http.Error(w, "route not found", http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go up.Serve(lis)
	t.Cleanup(func() { up.Close() })
	desc, _ := json.Marshal(contract.Mux{Gateway: "agentgateway-system/agentgateway", Backend: muxRoute.Backend, PrefixMode: contract.PrefixModeNever,
		FailureMode: contract.FailClosed, Targets: []contract.MuxTarget{{Name: "a", Cluster: "cluster-a", Path: "/mcp"}, {Name: "b", Cluster: "cluster-b", Path: "/mcp"}}})
	n := &neverMux{mux: mux.New(mux.Options{Upstream: func(string) string { return "unix://" + sock }, Secret: neverSecret}), route: muxRoute}
	n.route.Mux = string(desc)
	// The session, opened as the mux opens it for a client.
	post := func(sid, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		r.Header.Set(contract.HeaderMux, string(desc))
		r.Header.Set(contract.HeaderMuxAuth, neverSecret)
		if sid != "" {
			r.Header.Set("Mcp-Session-Id", sid)
		}
		w := httptest.NewRecorder()
		n.mux.ServeHTTP(w, r)
		return w
	}
	w := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := w.Header().Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize through the mux: %d %s", w.Code, w.Body)
	}
	if w := post(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); w.Code != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d %s", w.Code, w.Body)
	}
	n.session = extproctest.LabSession(sid)
	n.post = func(body string) *httptest.ResponseRecorder { return post(sid, body) }
	return n
}

// neverPolicy allows a's tools and b's prompts, by their targets.
func neverPolicy(sg *signer) *policyv1.Policy {
	p := labPolicy(sg)
	p.Name = "mux"
	p.McpRules = []*policyv1.Rule{
		{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.target == "a"`, Source: "AgentgatewayPolicy/ns/never#0"},
		{Action: policyv1.Rule_ALLOW, Expression: `mcp.prompt.target == "b"`, Source: "AgentgatewayPolicy/ns/never#1"},
	}
	return p
}

// callerRecorder is a MuxResolver that records the caller of each query and passes it on.
type callerRecorder struct {
	extproc.MuxResolver
	mu      sync.Mutex
	callers []string
}

func (r *callerRecorder) Resolve(ctx context.Context, q mux.Query) (string, error) {
	r.mu.Lock()
	r.callers = append(r.callers, q.Caller)
	r.mu.Unlock()
	return r.MuxResolver.Resolve(ctx, q)
}

// TestNeverRouteResolveCaller: the front hop resolves a call for its caller (mux.Query.Caller,
// the x-mcpgate-caller it names to the mux): the mux keeps each caller's resolutions apart.
func TestNeverRouteResolveCaller(t *testing.T) {
	n := newNeverMux(t)
	rec := &callerRecorder{MuxResolver: n.mux}
	b, err := bind.New(extproctest.SessionKey())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, []*policyv1.Policy{neverPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.MuxSecret, c.MuxResolver = neverSecret, rec
	})
	s := h.open(t, h.tcp, n.route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", n.session)), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
	s.Close()
	want := b.CallerID(bind.Caller{Verified: true, Issuer: "solo.io", Subject: "user-id"}, "")
	if len(rec.callers) != 1 || rec.callers[0] != want {
		t.Errorf("resolutions' callers %q, want the lab token's %q", rec.callers, want)
	}
}

// TestNeverRouteRules: on a prefixMode Never route (x-mcpgate-mux) ext_proc resolves a call's
// bare name through the mux (listing the session's targets) and judges it as that target's: a
// rule naming mcp.tool.target allows a's fetch and denies b's search; the allowed call's body
// reply names its target to the mux (x-mcpgate-mux-target); a name no target serves is Unknown
// tool, one both serve an error naming them. The audit line names the resolved target. Without a
// resolver such a call is refused.
func TestNeverRouteRules(t *testing.T) {
	n := newNeverMux(t)
	h := newHarness(t, []*policyv1.Policy{neverPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.MuxSecret, c.MuxResolver = neverSecret, n.mux
	})
	call := func(id int, method, name string) string {
		if method == "completion/complete" {
			return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":%q},"argument":{"name":"x","value":""}}}`, id, name)
		}
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"name":%q,"arguments":{}}}`, id, method, name)
	}
	for _, tc := range []struct {
		body string
		// target is the x-mcpgate-mux-target of an allowed call; want what a refusal's body holds.
		target, want string
	}{
		{call(1, "tools/call", "fetch"), "a", ""},
		{call(2, "tools/call", "search"), "", `"message":"Unknown tool: search"`},
		{call(3, "tools/call", "shared"), "", `"message":"Tool shared is served by multiple targets: a, b"`},
		{call(4, "tools/call", "nope"), "", `"message":"Unknown tool: nope"`},
		{call(5, "prompts/get", "greet"), "b", ""},
		{call(6, "prompts/get", "hello"), "", `"message":"Unknown prompt: hello"`},
		{call(7, "completion/complete", "greet"), "b", ""},
		// A prefixed name is a bare name no target serves.
		{call(8, "tools/call", "a_fetch"), "", `"message":"Unknown tool: a_fetch"`},
	} {
		s := h.open(t, h.tcp, n.route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", n.session)), false))
		resp := check(t)(s.RequestBody([]byte(tc.body), true))
		ir := resp.GetImmediateResponse()
		switch {
		case tc.want == "" && (ir != nil || setHeaders(resp)[contract.HeaderMuxTarget] != tc.target):
			t.Errorf("%s: %v, want it allowed with %s %s", tc.body, resp, contract.HeaderMuxTarget, tc.target)
		case tc.want != "" && (ir == nil || !strings.Contains(string(ir.GetBody()), tc.want)):
			t.Errorf("%s: %v, want a refusal with %s", tc.body, resp, tc.want)
		}
		s.Close()
	}
	waitFor(t, "the audit records", func() bool { return len(h.audit.records(t)) >= 8 })
	byID := h.audit.recordsByID(t)
	checkRecord(t, byID["1"], map[string]any{"tool": "fetch", "target": "a", "decision": "allow"})
	checkRecord(t, byID["2"], map[string]any{"tool": "search", "target": "b", "decision": "deny"})
	checkRecord(t, byID["5"], map[string]any{"prompt": "greet", "target": "b", "decision": "allow"})
	if n := h.metric(t, "mcpgate_mcp_requests_total", map[string]string{"method": "tools/call", "target": "b"}); n != 1 {
		t.Errorf("mcpgate_mcp_requests_total of b's calls = %v, want 1", n)
	}

	// No resolver: refused, fail closed.
	h = newHarness(t, []*policyv1.Policy{neverPolicy(newSigner(t))}, func(c *extproc.Config) { c.MuxSecret = neverSecret })
	s := h.open(t, h.tcp, n.route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", n.session)), false))
	resp := check(t)(s.RequestBody([]byte(call(9, "tools/call", "fetch")), true))
	if ir := resp.GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != http.StatusInternalServerError {
		t.Errorf("a call without a resolver: %v, want 500", resp)
	}
}

// TestNeverRouteListsFiltered: on a prefixMode Never route each tool and prompt of a list answer
// is judged as the target its _meta["mcpgate.dev/target"] names (an item without one is left
// out: TestNeverRouteListsFailClosed); resources keep their prefix. On a Conditional route the _meta is not read.
func TestNeverRouteListsFiltered(t *testing.T) {
	h := newHarness(t, []*policyv1.Policy{neverPolicy(newSigner(t))})
	never := muxRoute
	never.Mux = `{"gateway":"agentgateway-system/agentgateway","backend":"agentgateway-system/mux-backend","prefixMode":"Never","targets":[]}`
	meta := func(name, target string) string {
		return fmt.Sprintf(`{"name":%q,"_meta":{"k":1,%q:%q}}`, name, contract.MetaTarget, target)
	}
	for _, tc := range []struct {
		route                extproctest.Route
		method, items, wants string
	}{
		{never, "tools/list", `"tools":[` + meta("fetch", "a") + `,` + meta("search", "b") + `,{"name":"a_x"}]`, `"tools":[` + meta("fetch", "a") + `]`},
		{never, "prompts/list", `"prompts":[` + meta("greet", "b") + `,` + meta("hello", "a") + `]`, `"prompts":[` + meta("greet", "b") + `]`},
		{muxRoute, "tools/list", `"tools":[` + meta("b_fetch", "a") + `,` + meta("a_fetch", "b") + `]`, `"tools":[` + meta("a_fetch", "b") + `]`},
	} {
		s := h.open(t, h.tcp, tc.route)
		check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
		check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"`+tc.method+`"}`), true))
		check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
		resp := check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":1,"result":{`+tc.items+`}}`), true))
		if got, want := string(extproctest.BodyAfter(resp, nil)), `{"jsonrpc":"2.0","id":1,"result":{`+tc.wants+`}}`; got != want {
			t.Errorf("%s (mux %q): body = %s\nwant %s", tc.method, tc.route.Mux, got, want)
		}
	}
}

// TestNeverListForgedMetaKey: a target of a prefixMode Never backend cannot keep its tool in the
// filtered list against a DENY rule on its target by giving it a _meta key that differs from
// mcpgate.dev/target (or _meta) in letter case only: the mux removes such keys and tags the
// item with its real target, and the front hop judges the item as that target's.
func TestNeverListForgedMetaKey(t *testing.T) {
	n := newNeverMuxOf(t, map[string]http.Handler{
		"cluster-a": serveTarget(goTarget("a", &mcp.Tool{Name: "fetch"})),
		"cluster-b": serveTarget(goTarget("b", &mcp.Tool{Name: "plain"},
			&mcp.Tool{Name: "sneaky", Meta: mcp.Meta{"MCPGATE.dev/target": "a"}})),
	})
	w := n.post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"sneaky"`) {
		t.Fatalf("the mux's tools/list: %d %s, want sneaky listed", w.Code, w.Body)
	}
	p := labPolicy(newSigner(t))
	p.Name = "mux"
	p.McpRules = []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.tool.target == "b"`, Source: "AgentgatewayPolicy/ns/never#0"}}
	h := newHarness(t, []*policyv1.Policy{p})
	s := h.open(t, h.tcp, n.route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp := check(t)(s.ResponseBody(w.Body.Bytes(), true))
	got := string(extproctest.BodyAfter(resp, nil))
	if !strings.Contains(got, `"fetch"`) || strings.Contains(got, `"plain"`) || strings.Contains(got, `"sneaky"`) {
		t.Errorf("tools/list after the front hop = %s, want a's fetch only (b's plain and sneaky denied by their target)", got)
	}
}

// TestNeverRouteListsFailClosed: on a prefixMode Never route whose rules only deny, a listed tool
// whose _meta["mcpgate.dev/target"] is missing, unreadable (the key or _meta repeated in other
// letter case, not a string) or none of the route's targets is left out: judged as no target's,
// it would pass the rule that denies its real target.
func TestNeverRouteListsFailClosed(t *testing.T) {
	p := labPolicy(newSigner(t))
	p.Name = "mux"
	p.McpRules = []*policyv1.Rule{{Action: policyv1.Rule_DENY, Expression: `mcp.tool.target == "b"`, Source: "AgentgatewayPolicy/ns/never#0"}}
	h := newHarness(t, []*policyv1.Policy{p})
	never := muxRoute
	never.Mux = `{"gateway":"agentgateway-system/agentgateway","backend":"agentgateway-system/mux-backend","prefixMode":"Never","targets":[]}`
	kept := `{"name":"fetch","_meta":{"mcpgate.dev/target":"a"}}`
	items := []string{kept,
		`{"name":"search","_meta":{"mcpgate.dev/target":"b"}}`,
		`{"name":"none"}`,
		`{"name":"nometa","_meta":{"k":1}}`,
		`{"name":"folded","_meta":{"mcpgate.dev/target":"b","MCPGATE.dev/target":"a"}}`,
		`{"name":"foldedmeta","_meta":{"mcpgate.dev/target":"b"},"_Meta":{"mcpgate.dev/target":"a"}}`,
		`{"name":"repeated","_meta":{"mcpgate.dev/target":"b","mcpgate.dev/target":"a"}}`,
		`{"name":"number","_meta":{"mcpgate.dev/target":1}}`,
		`{"name":"other","_meta":{"mcpgate.dev/target":"c"}}`,
		`{"name":"empty","_meta":{"mcpgate.dev/target":""}}`,
	}
	s := h.open(t, h.tcp, never)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken), false))
	check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), true))
	check(t)(s.ResponseHeaders(respHeaders("200", "application/json"), false))
	resp := check(t)(s.ResponseBody([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`+strings.Join(items, ",")+`]}}`), true))
	if got, want := string(extproctest.BodyAfter(resp, nil)), `{"jsonrpc":"2.0","id":1,"result":{"tools":[`+kept+`]}}`; got != want {
		t.Errorf("tools/list = %s\nwant %s", got, want)
	}
}

// TestNeverRouteResolveRouteHeaders: the resolver lists the targets with the request headers
// the call itself brings them: the route's RequestHeaderModifier (contract.Mux.RequestHeaders),
// which Envoy's router applies after ext_proc, applied to the headers ext_proc saw. The targets
// list their tools only with the x-api-key the route sets, and the Cookie the route removes
// must not reach them, nor a client's x-mcpgate-caller (ext_proc's name of the caller, for the
// mux only).
func TestNeverRouteResolveRouteHeaders(t *testing.T) {
	var seen []http.Header
	var mu sync.Mutex
	// keyed serves s, and refuses a tools/list without the route's key or with a cookie.
	keyed := func(s *mcp.Server) http.Handler {
		h := serveTarget(s)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"tools/list"`)) {
				mu.Lock()
				seen = append(seen, r.Header.Clone())
				mu.Unlock()
				if r.Header.Get("X-Api-Key") != "route-key" || r.Header.Get("Cookie") != "" {
					http.Error(w, "want the route's x-api-key and no cookie", http.StatusUnauthorized)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
	n := newNeverMuxOf(t, map[string]http.Handler{
		"cluster-a": keyed(goTarget("a", &mcp.Tool{Name: "fetch"})),
		"cluster-b": keyed(goTarget("b", &mcp.Tool{Name: "search"})),
	})
	var m contract.Mux
	if err := json.Unmarshal([]byte(n.route.Mux), &m); err != nil {
		t.Fatal(err)
	}
	m.RequestHeaders = &contract.HeaderChanges{Remove: []string{"cookie"},
		Add: []contract.HeaderAdd{{Name: "x-api-key", Value: "route-key"}, {Name: "x-env", Value: "gw", Append: true}}}
	desc, _ := json.Marshal(m)
	n.route.Mux = string(desc)
	h := newHarness(t, []*policyv1.Policy{neverPolicy(newSigner(t))}, func(c *extproc.Config) {
		c.MuxSecret, c.MuxResolver = neverSecret, n.mux
	})
	s := h.open(t, h.tcp, n.route)
	check(t)(s.RequestHeaders(postHeaders("/mcp", extproctest.LabToken, hdr("mcp-session-id", n.session),
		hdr("cookie", "session=secret"), hdr("x-api-key", "client-key"), hdr("x-env", "client"), hdr(contract.HeaderMuxCaller, "forged")), false))
	resp := check(t)(s.RequestBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch","arguments":{}}}`), true))
	if ir := resp.GetImmediateResponse(); ir != nil || setHeaders(resp)[contract.HeaderMuxTarget] != "a" {
		t.Errorf("tools/call fetch: %v, want it allowed with %s a", resp, contract.HeaderMuxTarget)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the targets got %d tools/list, want 2 (one each)", len(seen))
	}
	for _, hd := range seen {
		if hd.Get("Cookie") != "" || hd.Get("X-Api-Key") != "route-key" || !slices.Equal(hd.Values("X-Env"), []string{"client", "gw"}) ||
			len(hd.Values(contract.HeaderMuxCaller)) != 0 {
			t.Errorf("a target's tools/list came with Cookie %q, X-Api-Key %q, X-Env %q, %s %q; want none, route-key, [client gw], none",
				hd.Values("Cookie"), hd.Values("X-Api-Key"), hd.Values("X-Env"), contract.HeaderMuxCaller, hd.Values(contract.HeaderMuxCaller))
		}
	}
}

// TestMuxRouteTargetHeaderRemoved: a client's x-mcpgate-mux-target is removed at the request
// headers on every route of a multiplexed backend (Conditional or Never), so that only ext_proc
// names a call's target to the mux.
func TestMuxRouteTargetHeaderRemoved(t *testing.T) {
	h := newHarness(t, nil, func(c *extproc.Config) { c.MuxSecret = neverSecret })
	open := muxRoute
	open.Policy = ""
	never := open
	never.Mux = `{"prefixMode":"Never"}`
	plain := open
	plain.Targets, plain.Target = "", "a"
	for _, tc := range []struct {
		name    string
		route   extproctest.Route
		removed bool
	}{{"Conditional", open, true}, {"Never", never, true}, {"not multiplexed", plain, false}} {
		s := h.open(t, h.tcp, tc.route)
		resp := check(t)(s.RequestHeaders(postHeaders("/mcp", "", hdr(contract.HeaderMuxTarget, "b")), false))
		if got := slices.Contains(extproctest.Common(resp).GetHeaderMutation().GetRemoveHeaders(), contract.HeaderMuxTarget); got != tc.removed {
			t.Errorf("%s: %s removed %v, want %v: %v", tc.name, contract.HeaderMuxTarget, got, tc.removed, resp)
		}
		s.Close()
	}
}
