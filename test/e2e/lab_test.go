package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The lab's steps (shared/seed/mcp-connectivity-lab.md) in order, each a subtest that builds on the
// previous one; the first failing step ends the test. Steps 1-3 are the files the suite starts with.
func TestLab(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		run  func(*testing.T, *suite)
	}{
		{"step4_connectivity", step4Connectivity},
		{"step5_access_log", step5AccessLog},
		{"step6-7_jwt_required", step67JWTRequired},
		{"step8_with_token", step8WithToken},
		{"step9_rbac", step9RBAC},
		{"step9_mcp_tool_rule", step9MCPToolRule},
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, s) }) {
			t.Fatalf("%s failed; the later steps build on it", st.name)
		}
	}
}

// Servers of the inspector config (the lab's two plus the suite's).
const (
	srvFetchSSE       = "agentgateway"      // the lab's: fetch server over SSE
	srvFetchHTTP      = "agentgateway-http" // fetch server over Streamable HTTP
	srvEverythingSSE  = "everything-sse"
	srvEverythingHTTP = "everything-http"
)

// Step 4: tools/list and tools/call through the gateway, over both transports.
func step4Connectivity(t *testing.T, s *suite) {
	for _, srv := range []string{srvFetchSSE, srvFetchHTTP} {
		t.Run(srv, func(t *testing.T) {
			eventually(t, "tools/list through the gateway", func() error {
				return s.expectTools(srv, "", []string{"fetch"})
			})
			if err := s.expectFetch(srv, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, srv := range []string{srvEverythingSSE, srvEverythingHTTP} {
		t.Run(srv, func(t *testing.T) {
			eventually(t, "tools/list through the gateway", func() error {
				names, err := s.listTools(srv, "")
				if err == nil && (len(names) < 10 || !slices.Contains(names, "echo") || !slices.Contains(names, "get-sum")) {
					err = fmt.Errorf("tools/list = %v, want server-everything's tools", names)
				}
				return err
			})
			if err := s.expectEcho(srv, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Step 5: the data plane's access log shows the MCP method, tool and arguments of the calls of
// step 4, over each transport (the SSE call is a POST to the endpoint the server announced, the
// Streamable HTTP one a POST to /mcp), and ext_proc wrote an audit line for them.
func step5AccessLog(t *testing.T, s *suite) {
	sessions := map[string]string{} // transport -> the session of its logged call
	for _, c := range []struct{ transport, path, code, outcome string }{
		{"sse", "/sse", "202", "<nil>"},              // go-sdk's SSE endpoint: /sse?sessionid=ID (logged without its query), answered 202 (the answer comes on the GET stream)
		{"streamable-http", "/mcp", "200", "result"}, // the result in the POST's answer
	} {
		eventually(t, "access log line of tools/call fetch over "+c.transport, func() error {
			lines, err := jsonLines(s.stdoutLog())
			if err != nil {
				return err
			}
			for _, l := range lines {
				md, _ := l["mcpgate"].(map[string]any)
				path, _ := l["path"].(string)
				session, _ := md["session"].(string)
				if md["method"] == "tools/call" && md["tool"] == "fetch" && strings.Contains(fmt.Sprint(md["arguments"]), s.pageURL) &&
					l["method"] == http.MethodPost && path == c.path && fmt.Sprint(l["response_code"]) == c.code && session != "" &&
					fmt.Sprint(md["outcome"]) == c.outcome {
					sessions[c.transport] = session
					return nil
				}
			}
			return fmt.Errorf("%s: no line of POST %s answered %s has mcpgate.method tools/call, mcpgate.tool fetch, a session, the URL %s in mcpgate.arguments and mcpgate.outcome %s (%d JSON lines)",
				s.stdoutLog(), c.path, c.code, s.pageURL, c.outcome, len(lines))
		})
	}
	// ext_proc's audit line of each of those calls: same session, method, tool and arguments.
	for transport, session := range sessions {
		eventually(t, "audit line of tools/call fetch over "+transport, func() error {
			lines, err := jsonLines(s.stdoutLog())
			if err != nil {
				return err
			}
			n := 0
			for _, l := range lines {
				if l["request_id"] == nil && l["method"] == "tools/call" && l["tool"] == "fetch" && l["session"] == session &&
					strings.Contains(fmt.Sprint(l["arguments"]), s.pageURL) {
					n++
				}
			}
			switch {
			case n == 1:
				return nil
			case n > 1:
				// One call, one line: a line written twice is a defect, not something to wait out.
				t.Errorf("%s: %d audit lines of the one tools/call fetch over %s (session %s)", s.stdoutLog(), n, transport, session)
				return nil
			}
			return fmt.Errorf("%s: no audit line with method tools/call, tool fetch, session %s and the URL %s in arguments (%d JSON lines)", s.stdoutLog(), session, s.pageURL, len(lines))
		})
	}
}

// Steps 6-7: with the lab's Strict JWT policy (verbatim) in the watched folder, calls without a
// token, or with a bad one, are refused with 401 and the inspector reports an auth error. The
// policy targets the Gateway, so it protects every listener's routes, the suite's servers' too.
func step67JWTRequired(t *testing.T, s *suite) {
	if err := s.lab.copyExample(fileJWT); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []string{srvFetchSSE, srvFetchHTTP, srvEverythingSSE, srvEverythingHTTP} {
		t.Run(srv, func(t *testing.T) {
			eventually(t, "tools/list without a token is refused", func() error {
				return expectAuthError(s.inspect(srv, "", "--method", "tools/list"), http.StatusUnauthorized)
			})
			if err := expectAuthError(s.inspect(srv, "not-a-jwt", "--method", "tools/list"), http.StatusUnauthorized); err != nil {
				t.Fatalf("with a bad token: %v", err)
			}
		})
	}
	t.Run("http", func(t *testing.T) {
		badSignature := s.devToken[:len(s.devToken)-4] + "AAAA"
		for _, c := range []struct{ name, token, wantAuth, wantBody string }{
			{"no token", "", `Bearer realm="mcpgate"`, "Jwt is missing"},
			{"bad signature", badSignature, `Bearer realm="mcpgate", error="invalid_token"`, "Jwt verification fails"},
		} {
			for _, req := range []struct{ method, url, body string }{
				{http.MethodGet, "http://" + addr(s.ports.gateway) + "/sse", ""},
				{http.MethodPost, "http://" + addr(s.ports.gateway) + "/mcp", initializeBody},
			} {
				resp, err := s.request(req.method, req.url, c.token, req.body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.status != http.StatusUnauthorized || resp.header.Get("WWW-Authenticate") != c.wantAuth ||
					!strings.Contains(resp.body, c.wantBody) {
					t.Errorf("%s %s with %s = %d, WWW-Authenticate %q, body %q; want 401 with %s and %q",
						req.method, req.url, c.name, resp.status, resp.header.Get("WWW-Authenticate"), resp.body, c.wantAuth, c.wantBody)
				}
			}
		}
	})
}

// initializeBody is an MCP initialize request, as the inspector sends it first over Streamable HTTP.
const initializeBody = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcpgate-e2e","version":"1"}}}`

// Step 8: with the lab's DEV_TOKEN, tools/list and tools/call succeed, and the access log carries
// the token's subject.
func step8WithToken(t *testing.T, s *suite) {
	for _, srv := range []string{srvFetchSSE, srvFetchHTTP} {
		t.Run(srv, func(t *testing.T) {
			if err := s.expectTools(srv, s.devToken, []string{"fetch"}); err != nil {
				t.Fatal(err)
			}
			if err := s.expectFetch(srv, s.devToken); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("subject in access log", func(t *testing.T) {
		eventually(t, "access log line with the token's subject", func() error {
			lines, err := jsonLines(s.stdoutLog())
			if err != nil {
				return err
			}
			for _, l := range lines {
				md, _ := l["mcpgate"].(map[string]any)
				if md["subject"] == "user-id" && md["method"] == "tools/call" && md["authn"] == "ok" {
					return nil
				}
			}
			return errors.New("no access log line of tools/call has mcpgate.subject user-id and mcpgate.authn ok")
		})
	})
}

// Step 9: the lab's CEL rule (jwt.org == "solo.io"): the lab's token passes, a valid token of
// another org is refused with 403. The other org's token comes from a second provider with a key
// made by the suite, added to the lab's JWT policy next to the lab's provider.
func step9RBAC(t *testing.T, s *suite) {
	jwtPolicy, err := s.lab.jwtWithProvider(s.issuer.issuer, s.issuer.jwks())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.lab.put(fileJWT, jwtPolicy); err != nil {
		t.Fatal(err)
	}
	if err := s.lab.copyExample(fileRBAC); err != nil {
		t.Fatal(err)
	}
	otherOrg, err := s.issuer.token("mallory", "other.example")
	if err != nil {
		t.Fatal(err)
	}
	soloOrg, err := s.issuer.token("alice", "solo.io")
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []string{srvFetchSSE, srvFetchHTTP} {
		t.Run(srv, func(t *testing.T) {
			eventually(t, "a token of another org is refused", func() error {
				return expectAuthError(s.inspect(srv, otherOrg, "--method", "tools/list"), http.StatusForbidden)
			})
			if err := s.expectFetch(srv, s.devToken); err != nil {
				t.Fatalf("the lab's token: %v", err)
			}
			if err := s.expectTools(srv, soloOrg, []string{"fetch"}); err != nil {
				t.Fatalf("a solo.io token of the second provider: %v", err)
			}
		})
	}
	t.Run("http", func(t *testing.T) {
		resp, err := s.request(http.MethodGet, "http://"+addr(s.ports.gateway)+"/sse", otherOrg, "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.status != http.StatusForbidden || !strings.Contains(resp.body, "RBAC: access denied") {
			t.Errorf("GET /sse with another org's token = %d %q, want 403 RBAC: access denied", resp.status, resp.body)
		}
	})
}

// Step 9, tools: an MCP rule (backend.mcp.authorization) allowing only echo on server-everything
// hides the other tools from tools/list and refuses calls to them with "Unknown tool".
func step9MCPToolRule(t *testing.T, s *suite) {
	if err := s.lab.putTestdata(fileMCPTools); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []string{srvEverythingSSE, srvEverythingHTTP} {
		t.Run(srv, func(t *testing.T) {
			eventually(t, "tools/list shows only echo", func() error {
				return s.expectTools(srv, s.devToken, []string{"echo"})
			})
			// The lab's client lists prompts through the gateway too: only the allowed one.
			r := s.inspect(srv, s.devToken, "--method", "prompts/list")
			var prompts struct {
				Prompts []struct{ Name string } `json:"prompts"`
			}
			if err := r.result(&prompts); err != nil || r.code != 0 || len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != "simple-prompt" {
				t.Errorf("inspector prompts/list: want only simple-prompt (%v)\n%s", err, r)
			}
			if err := s.expectEcho(srv, s.devToken); err != nil {
				t.Fatal(err)
			}
			// The inspector looks the tool up in tools/list first, so a hidden tool is refused
			// before any call is sent.
			r = s.inspect(srv, s.devToken, "--method", "tools/call", "--tool-name", "get-sum", "--tool-arg", "a=1", "b=2")
			if e, err := r.failure(); err != nil || r.code != 5 || e.Code != "tool_not_found" {
				t.Errorf("inspector tools/call get-sum: want exit 5 tool_not_found (the tool is hidden)\n%s", r)
			}
		})
	}
	// A client that calls without listing first gets the gateway's JSON-RPC error.
	for _, c := range []struct {
		name      string
		transport mcp.Transport
	}{
		{"sse", &mcp.SSEClientTransport{Endpoint: "http://" + addr(s.ports.everythingSSE) + "/sse", HTTPClient: bearerClient(s.devToken)}},
		{"streamable-http", &mcp.StreamableClientTransport{Endpoint: "http://" + addr(s.ports.everythingHTTP) + "/mcp", HTTPClient: bearerClient(s.devToken), MaxRetries: -1}},
	} {
		t.Run("go-sdk client "+c.name, func(t *testing.T) {
			ctx, cs := connectClient(t, c.transport)
			if err := expectUnknownTool(ctx, cs, "get-sum", map[string]any{"a": 1, "b": 2}); err != nil {
				t.Fatal(err)
			}
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "after refusal"}})
			if err != nil || res.IsError {
				t.Fatalf("tools/call echo after the refusal = %+v, %v", res, err)
			}
			if err := expectPromptsAndResources(ctx, cs); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("fetch route unaffected", func(t *testing.T) {
		if err := s.expectTools(srvFetchSSE, s.devToken, []string{"fetch"}); err != nil {
			t.Fatal(err)
		}
	})
}

// connectClient connects the go-sdk client over transport; the session and its context (30 s)
// end with the test.
func connectClient(t *testing.T, transport mcp.Transport) (context.Context, *mcp.ClientSession) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e", Version: "1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return ctx, cs
}

// inSession connects a go-sdk client over transport (within 15 s), runs f in its session and
// closes it: one attempt of a check that eventually retries.
func inSession(transport mcp.Transport, f func(context.Context, *mcp.ClientSession) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e", Version: "1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer cs.Close()
	return f(ctx, cs)
}

// expectUnknownTool calls tool and wants the gateway's refusal: JSON-RPC error -32602
// "Unknown tool: TOOL".
func expectUnknownTool(ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != jsonrpc.CodeInvalidParams || rpcErr.Message != "Unknown tool: "+tool {
		return fmt.Errorf("tools/call %s = %+v, %v; want JSON-RPC error -32602 Unknown tool: %s", tool, res, err, tool)
	}
	return nil
}

// expectPromptsAndResources checks the MCP rules of fileMCPTools on prompts and resources:
// prompts/list shows only simple-prompt, which prompts/get gets while another prompt is refused
// with "Unknown prompt"; resources/list shows only (and some) static resources, one of which reads,
// resources/templates/list shows none (the server's templates are dynamic), and reading a dynamic
// resource is refused with "Unknown resource".
func expectPromptsAndResources(ctx context.Context, cs *mcp.ClientSession) error {
	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		return fmt.Errorf("prompts/list: %w", err)
	}
	var names []string
	for _, p := range prompts.Prompts {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"simple-prompt"}) {
		return fmt.Errorf("prompts/list = %v, want [simple-prompt]", names)
	}
	if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "simple-prompt"}); err != nil {
		return fmt.Errorf("prompts/get simple-prompt: %w", err)
	}
	if err := wantUnknown(cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "args-prompt", Arguments: map[string]string{"city": "Paris"}})); err != "Unknown prompt: args-prompt" {
		return fmt.Errorf("prompts/get args-prompt: %s", err)
	}
	resources, err := cs.ListResources(ctx, nil)
	if err != nil {
		return fmt.Errorf("resources/list: %w", err)
	}
	if len(resources.Resources) == 0 {
		return errors.New("resources/list shows no resource; want the static ones")
	}
	for _, r := range resources.Resources {
		if !strings.HasPrefix(r.URI, "demo://resource/static/") {
			return fmt.Errorf("resources/list shows %s, which the rules refuse", r.URI)
		}
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: resources.Resources[0].URI}); err != nil {
		return fmt.Errorf("resources/read %s: %w", resources.Resources[0].URI, err)
	}
	templates, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil || len(templates.ResourceTemplates) != 0 {
		return fmt.Errorf("resources/templates/list = %+v, %v; want none (the dynamic ones are refused)", templates, err)
	}
	const dynamic = "demo://resource/dynamic/text/1"
	if err := wantUnknown(cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: dynamic})); err != "Unknown resource: "+dynamic {
		return fmt.Errorf("resources/read %s: %s", dynamic, err)
	}
	return nil
}

// wantUnknown returns the message of a JSON-RPC -32602 error err, or says what came instead.
func wantUnknown[R any](res R, err error) string {
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != jsonrpc.CodeInvalidParams {
		return fmt.Sprintf("got %+v, %v; want JSON-RPC error -32602", res, err)
	}
	return rpcErr.Message
}

// inspect runs the inspector as the lab does: --config FILE --server NAME [--header ...] ARGS.
func (s *suite) inspect(server, token string, args ...string) inspectorRun {
	full := []string{"--config", s.inspCfg, "--server", server}
	if token != "" {
		full = append(full, "--header", "Authorization: Bearer "+token)
	}
	return s.inspector.run(append(full, args...)...)
}

// listTools runs tools/list and returns the tool names.
func (s *suite) listTools(server, token string) ([]string, error) {
	return toolNames(s.inspect(server, token, "--method", "tools/list"))
}

// toolNames returns the tool names of an inspector's tools/list run, or why there are none.
func toolNames(r inspectorRun) ([]string, error) {
	if r.code != 0 {
		return nil, fmt.Errorf("tools/list failed\n%s", r)
	}
	var l toolList
	if err := r.result(&l); err != nil {
		return nil, err
	}
	return l.names(), nil
}

func (s *suite) expectTools(server, token string, want []string) error {
	names, err := s.listTools(server, token)
	if err != nil {
		return err
	}
	if !slices.Equal(names, want) {
		return fmt.Errorf("%s tools/list = %v, want %v", server, names, want)
	}
	return nil
}

// expectFetch calls fetch on the local page (the lab's httpbin.org/get) and checks the page came back.
func (s *suite) expectFetch(server, token string) error {
	return s.expectCall(server, token, pageMarker, "--tool-name", "fetch", "--tool-arg", "url="+s.pageURL)
}

// expectEcho calls server-everything's echo.
func (s *suite) expectEcho(server, token string) error {
	return s.expectCall(server, token, "Echo: hello gateway", "--tool-name", "echo", "--tool-args-json", `{"message":"hello gateway"}`)
}

func (s *suite) expectCall(server, token, wantText string, args ...string) error {
	r := s.inspect(server, token, append([]string{"--method", "tools/call"}, args...)...)
	if r.code != 0 {
		return fmt.Errorf("tools/call failed\n%s", r)
	}
	var res toolResult
	if err := r.result(&res); err != nil {
		return err
	}
	if res.IsError || !strings.Contains(res.text(), wantText) {
		return fmt.Errorf("tools/call result isError=%v %q, want %q\n%s", res.IsError, res.text(), wantText, r)
	}
	return nil
}

// expectAuthError checks the inspector failed with its auth error (exit 3, auth_required, which
// it gives for 401 and 403 alike) and that the HTTP status was the one wanted: a 403 is named in
// the envelope; a 401 is not named, but it makes the inspector start OAuth (which needs a TTY).
func expectAuthError(r inspectorRun, status int) error {
	if r.code == 0 {
		return fmt.Errorf("the call succeeded, want exit 3 auth_required (HTTP %d)\n%s", status, r)
	}
	e, err := r.failure()
	if err != nil {
		return err
	}
	if r.code != 3 || e.Code != "auth_required" {
		return fmt.Errorf("want exit 3 auth_required (HTTP %d)\n%s", status, r)
	}
	forbidden := e.Status == http.StatusForbidden || strings.Contains(e.Message, "403")
	switch status {
	case http.StatusForbidden:
		if !forbidden {
			return fmt.Errorf("want HTTP 403 in the error\n%s", r)
		}
	case http.StatusUnauthorized:
		if forbidden || (e.Status != http.StatusUnauthorized && !strings.Contains(e.Message, "OAuth")) {
			return fmt.Errorf("want the inspector's answer to HTTP 401 (OAuth), not another refusal\n%s", r)
		}
	default:
		return fmt.Errorf("expectAuthError: status %d is neither 401 nor 403", status)
	}
	return nil
}

// httpAnswer is the start of an HTTP answer.
type httpAnswer struct {
	status int
	header http.Header
	// closes: the answer said Connection: close (which Go's client takes out of header)
	closes bool
	body   string // at most 4 KiB; empty for a 200 (a stream stays open)
}

// request sends METHOD url with an optional bearer token and JSON body, as an MCP client does
// (Accept: application/json, text/event-stream), and reads at most 4 KiB of an answer that is not
// a 200.
func (s *suite) request(method, url, token, body string) (httpAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return httpAnswer{}, err
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return httpAnswer{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	a := httpAnswer{status: resp.StatusCode, header: resp.Header, closes: resp.Close}
	if resp.StatusCode == http.StatusOK {
		return a, nil // a stream: its body is not needed
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	a.body = string(data)
	return a, nil
}

// bearerClient is an HTTP client that sends Authorization: Bearer token on every request.
func bearerClient(token string) *http.Client {
	return &http.Client{Transport: bearerTransport{token: token, next: http.DefaultTransport}}
}

type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// jsonLines returns the lines of a file that are JSON objects.
func jsonLines(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var obj map[string]any
		if json.Unmarshal(sc.Bytes(), &obj) == nil {
			out = append(out, obj)
		}
	}
	return out, sc.Err()
}

// eventuallyFor is how long eventually retries: an edit of the watched files reaches the data
// plane and ext_proc within a second or two, but a check runs the inspector (a Node process), which
// takes seconds on a loaded two-core machine.
const eventuallyFor = 45 * time.Second

// eventually retries check until it passes or eventuallyFor has gone by: an edit of the watched
// files reaches the data plane and ext_proc asynchronously, and access-log lines are written when
// a request ends.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(eventuallyFor)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, eventuallyFor, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
