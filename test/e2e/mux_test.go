package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/extproc/mux"
)

// Files of the multiplexing test.
const (
	fileMux     = "e2e-mux.yaml"      // testdata/e2e-mux.yaml: a Gateway whose backend has three targets
	fileMuxRule = "e2e-mux-rule.yaml" // testdata/e2e-mux-rule.yaml: an MCP rule on it by target and tool
	// testdata/e2e-mux-never.yaml: a Gateway whose backend has two targets under prefixMode Never
	fileMuxNever = "e2e-mux-never.yaml"
	// testdata/e2e-mux-never-rule.yaml: an MCP rule on it by target
	fileMuxNeverRule = "e2e-mux-never-rule.yaml"
)

// TestMultiplexedBackend: one AgentgatewayBackend with three targets (the fetch server over
// legacy SSE, server-everything and the go-sdk conformance server over Streamable HTTP) serves a
// client as one MCP server:
// the inspector CLI and the go-sdk client see every target's tools named TARGET_tool, a call
// reaches the target its prefix names, and an MCP rule on the backend judges each tool by its own
// name and target (tools/list hides the others, a call of one is refused with "Unknown tool").
func TestMultiplexedBackend(t *testing.T) {
	s := env
	port := serveMux(t)
	url := "http://" + addr(port) + "/mcp"
	inspect := func(args ...string) inspectorRun {
		return s.inspector.run(append([]string{url, "--transport", "http"}, args...)...)
	}
	listTools := func() ([]string, error) { return toolNames(inspect("--method", "tools/list")) }

	t.Run("inspector", func(t *testing.T) {
		eventually(t, "tools/list of the three targets", func() error {
			names, err := listTools()
			if err != nil {
				return err
			}
			for _, want := range []string{"fetch_fetch", "everything_echo", "conformance_test_simple_text"} {
				if !slices.Contains(names, want) {
					return fmt.Errorf("tools/list = %v, want %s among them", names, want)
				}
			}
			for _, n := range names {
				if !strings.HasPrefix(n, "fetch_") && !strings.HasPrefix(n, "everything_") && !strings.HasPrefix(n, "conformance_") {
					return fmt.Errorf("tools/list shows %s, not named after a target", n)
				}
			}
			return nil
		})
		for _, c := range []struct {
			want string
			args []string
		}{
			{pageMarker, []string{"--tool-name", "fetch_fetch", "--tool-arg", "url=" + s.pageURL}},
			{"Echo: through the mux", []string{"--tool-name", "everything_echo", "--tool-args-json", `{"message":"through the mux"}`}},
		} {
			r := inspect(append([]string{"--method", "tools/call"}, c.args...)...)
			var res toolResult
			if r.code != 0 {
				t.Fatalf("tools/call failed\n%s", r)
			}
			if err := r.result(&res); err != nil {
				t.Fatal(err)
			}
			if res.IsError || !strings.Contains(res.text(), c.want) {
				t.Errorf("tools/call %v = isError %v %q, want %q", c.args, res.IsError, res.text(), c.want)
			}
		}
	})

	t.Run("go-sdk client", func(t *testing.T) {
		ctx, cs := connectClient(t, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1})
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "conformance_test_simple_text"})
		if err != nil || res.IsError || len(res.Content) == 0 {
			t.Fatalf("tools/call conformance_test_simple_text = %+v, %v", res, err)
		}
		prompts, err := cs.ListPrompts(ctx, nil)
		if err != nil {
			t.Fatalf("prompts/list: %v", err)
		}
		var got []string
		for _, p := range prompts.Prompts {
			got = append(got, p.Name)
		}
		if !slices.Contains(got, "everything_simple-prompt") {
			t.Errorf("prompts/list = %v, want everything_simple-prompt among them", got)
		}
		if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "everything_simple-prompt"}); err != nil {
			t.Errorf("prompts/get everything_simple-prompt: %v", err)
		}
		if err := expectUnknownTool(ctx, cs, "nosuchtarget_echo", map[string]any{"message": "x"}); err != nil {
			t.Error(err)
		}
	})

	// Resumption: a call's event stream through the mux carries the mux's event ids, and a GET
	// with one of them has server-everything (its InMemoryEventStore) replay what came after.
	t.Run("resumption", func(t *testing.T) {
		expectResumed(t, url)
	})

	// HTTP+SSE (2024-11-05) clients: the mux serves the route's stream (here at /sse, any path of
	// the route would do) and its POSTs as it serves a Streamable HTTP client.
	t.Run("HTTP+SSE clients", func(t *testing.T) {
		sseURL := "http://" + addr(port) + "/sse"
		names, err := toolNames(s.inspector.run(sseURL, "--transport", "sse", "--method", "tools/list"))
		if err != nil {
			t.Fatalf("inspector --transport sse: tools/list: %v", err)
		}
		for _, want := range []string{"fetch_fetch", "everything_echo", "conformance_test_simple_text"} {
			if !slices.Contains(names, want) {
				t.Errorf("inspector --transport sse: tools/list = %v, want %s among them", names, want)
			}
		}
		r := s.inspector.run(sseURL, "--transport", "sse", "--method", "tools/call", "--tool-name", "everything_get-sum", "--tool-args-json", `{"a":2,"b":3}`)
		var res toolResult
		if r.code != 0 {
			t.Fatalf("inspector --transport sse: tools/call failed\n%s", r)
		}
		if err := r.result(&res); err != nil {
			t.Fatal(err)
		}
		if res.IsError || !strings.Contains(res.text(), "5") {
			t.Errorf("inspector --transport sse: tools/call everything_get-sum = isError %v %q, want 5", res.IsError, res.text())
		}
		expectLegacyCall(t, "e2e-mux/mux", "everything", "everything_get-sum")

		ctx, cs := connectClient(t, &mcp.SSEClientTransport{Endpoint: sseURL})
		tools, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatalf("go-sdk SSE client: tools/list: %v", err)
		}
		if !slices.ContainsFunc(tools.Tools, func(tool *mcp.Tool) bool { return tool.Name == "fetch_fetch" }) {
			t.Errorf("go-sdk SSE client: tools/list has no fetch_fetch")
		}
		call, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fetch_fetch", Arguments: map[string]any{"url": s.pageURL}})
		if err != nil || call.IsError || len(call.Content) == 0 || !strings.Contains(call.Content[0].(*mcp.TextContent).Text, pageMarker) {
			t.Fatalf("go-sdk SSE client: tools/call fetch_fetch = %+v, %v", call, err)
		}
		expectLegacyCall(t, "e2e-mux/mux", "fetch", "fetch_fetch")
	})

	t.Run("MCP rule by target and tool", func(t *testing.T) {
		serveTestdata(t, fileMuxRule, nil)
		eventually(t, "tools/list under the rule", func() error {
			names, err := listTools()
			if err != nil {
				return err
			}
			slices.Sort(names)
			if want := []string{"everything_echo", "fetch_fetch"}; !slices.Equal(names, want) {
				return fmt.Errorf("tools/list = %v, want %v", names, want)
			}
			return nil
		})
		ctx, cs := connectClient(t, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1})
		if err := expectUnknownTool(ctx, cs, "conformance_test_simple_text", nil); err != nil {
			t.Error(err)
		}
		if err := expectUnknownTool(ctx, cs, "everything_get-sum", map[string]any{"a": 1, "b": 2}); err != nil {
			t.Error(err)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "everything_echo", Arguments: map[string]any{"message": "allowed"}})
		if err != nil || res.IsError {
			t.Fatalf("tools/call everything_echo = %+v, %v", res, err)
		}
		// The audit line names the tool as the client called it, and the target its prefix names.
		expectAllowedCall(t, "e2e-mux/mux", "everything", "everything_echo")
		expectRequestNotifications(t, url)
		// So do the access log lines: the front hop's (ext_proc's fields; its cluster, the
		// bootstrap's mux, names no backend: ext_proc does) and the upstream hop's (the target's
		// cluster, no ext_proc).
		eventually(t, "access log lines of the allowed call name its backend and target", func() error {
			lines, err := jsonLines(s.stdoutLog())
			if err != nil {
				return err
			}
			front, upstream := false, false
			for _, l := range lines {
				md, _ := l["mcpgate"].(map[string]any)
				if l["request_id"] == nil || md["backend"] != "e2e-mux/tools" || md["target"] != "everything" {
					continue
				}
				front = front || (md["tool"] == "everything_echo" && md["decision"] == "allow" && md["gateway"] == "e2e-mux/mux")
				route, _ := l["route_name"].(string)
				upstream = upstream || (md["tool"] == nil && strings.HasPrefix(route, "mcpgate/mux-upstream/"))
			}
			if !front || !upstream {
				return fmt.Errorf("%s: front hop's line with mcpgate.backend e2e-mux/tools, target everything, tool everything_echo: %v; upstream hop's line with that backend and target: %v",
					s.stdoutLog(), front, upstream)
			}
			return nil
		})
	})
}

// TestMultiplexedNever: an AgentgatewayBackend with two Streamable HTTP targets (the fetch server
// and server-everything) under prefixMode Never serves their tools bare: the go-sdk client and
// the inspector CLI list fetch and echo (no TARGET_ prefix), and a call of each reaches its
// target, which the front hop's ext_proc resolved by listing the session's targets (and names
// in the audit line); a name no target serves is Unknown tool. Under an MCP rule by target
// (fileMuxNeverRule: the fetch server's tools only) tools/list hides server-everything's echo and
// a call of it is Unknown tool, while fetch is still served.
func TestMultiplexedNever(t *testing.T) {
	s := env
	url := serveMuxNever(t)
	eventually(t, "tools/list of the two targets, bare", func() error {
		names, err := toolNames(s.inspector.run(url, "--transport", "http", "--method", "tools/list"))
		if err != nil {
			return err
		}
		for _, want := range []string{"fetch", "echo"} {
			if !slices.Contains(names, want) {
				return fmt.Errorf("tools/list = %v, want %s among them", names, want)
			}
		}
		for _, n := range names {
			if strings.HasPrefix(n, "fetch_") || strings.HasPrefix(n, "everything_") {
				return fmt.Errorf("tools/list shows %s, prefixed", n)
			}
		}
		return nil
	})

	ctx, cs := connectClient(t, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1})
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	targets := map[string]any{}
	for _, tool := range tools.Tools {
		targets[tool.Name] = tool.Meta["mcpgate.dev/target"]
	}
	if targets["fetch"] != "fetch" || targets["echo"] != "everything" {
		t.Errorf("tools/list _meta targets: fetch %v, echo %v; want fetch and everything", targets["fetch"], targets["echo"])
	}
	for _, c := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"fetch", map[string]any{"url": s.pageURL}, pageMarker},
		{"echo", map[string]any{"message": "bare through the mux"}, "Echo: bare through the mux"},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: c.tool, Arguments: c.args})
		if err != nil || res.IsError || len(res.Content) == 0 {
			t.Fatalf("tools/call %s = %+v, %v", c.tool, res, err)
		}
		if text, _ := res.Content[0].(*mcp.TextContent); text == nil || !strings.Contains(text.Text, c.want) {
			t.Errorf("tools/call %s = %+v, want %q", c.tool, res.Content[0], c.want)
		}
	}
	if err := expectUnknownTool(ctx, cs, "everything_echo", map[string]any{"message": "x"}); err != nil {
		t.Error(err)
	}
	expectAllowedCall(t, "e2e-mux-never/never", "everything", "echo")

	t.Run("MCP rule by target", func(t *testing.T) {
		serveTestdata(t, fileMuxNeverRule, nil)
		// Every tool of server-everything is hidden, the fetch server's fetch stays.
		eventually(t, "tools/list under the rule", func() error {
			tools, err := cs.ListTools(ctx, nil)
			if err != nil {
				return err
			}
			var names []string
			for _, tool := range tools.Tools {
				names = append(names, tool.Name)
			}
			if !slices.Contains(names, "fetch") || slices.Contains(names, "echo") {
				return fmt.Errorf("tools/list = %v, want fetch and not echo", names)
			}
			for _, tool := range tools.Tools {
				if tool.Meta["mcpgate.dev/target"] != "fetch" {
					return fmt.Errorf("tools/list shows %s of target %v, want the fetch server's only", tool.Name, tool.Meta["mcpgate.dev/target"])
				}
			}
			return nil
		})
		if err := expectUnknownTool(ctx, cs, "echo", map[string]any{"message": "denied"}); err != nil {
			t.Error(err)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fetch", Arguments: map[string]any{"url": s.pageURL}})
		if err != nil || res.IsError || len(res.Content) == 0 {
			t.Fatalf("tools/call fetch under the rule = %+v, %v", res, err)
		}
		if text, _ := res.Content[0].(*mcp.TextContent); text == nil || !strings.Contains(text.Text, pageMarker) {
			t.Errorf("tools/call fetch under the rule = %+v, want %q", res.Content[0], pageMarker)
		}
	})
}

// forgedTarget adds a client's own x-mcpgate-mux-target to every request.
type forgedTarget struct{ value string }

func (f forgedTarget) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("x-mcpgate-mux-target", f.value)
	return http.DefaultTransport.RoundTrip(r)
}

// TestMultiplexedNeverClientTargetHeader: a client's own x-mcpgate-mux-target, sent on every
// request through the double, does not route a call on a prefixMode Never backend (ext_proc
// removes it and names the target it resolved): echo still reaches server-everything with the
// header naming fetch, and fetch the fetch server with the header naming everything.
func TestMultiplexedNeverClientTargetHeader(t *testing.T) {
	s := env
	url := serveMuxNever(t)
	for _, c := range []struct {
		forged, tool string
		args         map[string]any
		want         string
	}{
		{"fetch", "echo", map[string]any{"message": "forged"}, "Echo: forged"},
		{"everything", "fetch", map[string]any{"url": s.pageURL}, pageMarker},
	} {
		var cs *mcp.ClientSession
		eventually(t, "a session on the Never gateway", func() error {
			var err error
			cs, err = mcp.NewClient(&mcp.Implementation{Name: "forger", Version: "1"}, nil).Connect(t.Context(),
				&mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, HTTPClient: &http.Client{Transport: forgedTarget{c.forged}}}, nil)
			return err
		})
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: c.tool, Arguments: c.args})
		if err != nil || res.IsError || len(res.Content) == 0 {
			t.Fatalf("tools/call %s with a forged %s target: %+v, %v", c.tool, c.forged, res, err)
		}
		if text, _ := res.Content[0].(*mcp.TextContent); text == nil || !strings.Contains(text.Text, c.want) {
			t.Errorf("tools/call %s with a forged %s target = %+v, want %q", c.tool, c.forged, res.Content[0], c.want)
		}
		cs.Close()
	}
}

// serveMuxNever serves fileMuxNever on a free port and returns its MCP URL.
func serveMuxNever(t *testing.T) string {
	t.Helper()
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileMuxNever, map[string]string{
		"GATEWAY_PORT":    strconv.Itoa(free[0]),
		"FETCH_PORT":      strconv.Itoa(env.ports.fetch),
		"EVERYTHING_PORT": strconv.Itoa(env.ports.everythingHTTPUp),
	})
	return "http://" + addr(free[0]) + "/mcp"
}

// expectLegacyCall waits for the audit line of an allowed tools/call of tool on gateway over
// HTTP+SSE (its session the legacy key, 32 hex digits), naming target, answered (outcome result: the
// answer on the stream was matched to the POST).
func expectLegacyCall(t *testing.T, gateway, target, tool string) {
	t.Helper()
	legacyKey := regexp.MustCompile(`^[0-9a-f]{32}$`)
	eventually(t, "audit line of the HTTP+SSE call of "+tool+" names its target "+target, func() error {
		lines, err := jsonLines(env.stdoutLog())
		if err != nil {
			return err
		}
		for _, l := range lines {
			session, _ := l["session"].(string)
			if l["request_id"] == nil && l["method"] == "tools/call" && l["gateway"] == gateway &&
				l["target"] == target && l["tool"] == tool && l["decision"] == "allow" && l["outcome"] == "result" && legacyKey.MatchString(session) {
				return nil
			}
		}
		return fmt.Errorf("%s: no audit line of tools/call with gateway %s, target %s, tool %s, decision allow, outcome result, a legacy session", env.stdoutLog(), gateway, target, tool)
	})
}

// serveMux serves testdata/e2e-mux.yaml (the multiplexed backend of the suite's fetch server,
// server-everything and the conformance server) on a free port of its own Gateway, which it
// returns.
func serveMux(t *testing.T) int {
	t.Helper()
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileMux, map[string]string{
		"GATEWAY_PORT":     strconv.Itoa(free[0]),
		"FETCH_PORT":       strconv.Itoa(env.ports.fetch),
		"EVERYTHING_PORT":  strconv.Itoa(env.ports.everythingHTTPUp),
		"CONFORMANCE_PORT": strconv.Itoa(env.ports.conformanceUp),
	})
	return free[0]
}

// expectAllowedCall waits for the audit line of an allowed tools/call of tool on gateway, naming
// target.
func expectAllowedCall(t *testing.T, gateway, target, tool string) {
	t.Helper()
	eventually(t, "audit line of the allowed call of "+tool+" names its target "+target, func() error {
		lines, err := jsonLines(env.stdoutLog())
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l["request_id"] == nil && l["method"] == "tools/call" && l["gateway"] == gateway &&
				l["target"] == target && l["tool"] == tool && l["decision"] == "allow" {
				return nil
			}
		}
		return fmt.Errorf("%s: no audit line of tools/call with gateway %s, target %s, tool %s, decision allow", env.stdoutLog(), gateway, target, tool)
	})
}

// expectResumed opens a session at the multiplexed url with raw requests, calls
// everything_trigger-long-running-operation (3 progress notifications, then the answer) and reads
// its event stream whole, then resumes it with a GET whose Last-Event-ID is the mux's id of the
// first progress event: the two later progress events and the answer come again, the first does
// not. A Last-Event-ID the mux did not give is answered 400.
func expectResumed(t *testing.T, url string) {
	t.Helper()
	const version = "2025-11-25"
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	try := func(method, session, last, body string) (*http.Response, error) {
		resp, err := sendMCP(ctx, method, url, map[string]string{"Mcp-Protocol-Version": version, "Mcp-Session-Id": session, "Last-Event-ID": last}, body)
		if err == nil {
			t.Cleanup(func() { resp.Body.Close() })
		}
		return resp, err
	}
	send := func(method, session, last, body string) *http.Response {
		t.Helper()
		resp, err := try(method, session, last, body)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var session string
	eventually(t, "a raw session on the multiplexed backend", func() error {
		resp, err := try(http.MethodPost, "", "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		if session = resp.Header.Get("Mcp-Session-Id"); resp.StatusCode != http.StatusOK || session == "" {
			return fmt.Errorf("initialize: %d, session %q", resp.StatusCode, session)
		}
		return nil
	})
	if resp := send(http.MethodPost, session, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notifications/initialized: %d", resp.StatusCode)
	}

	// event reads the next event of sc: its id and data ("" at the stream's end).
	event := func(sc *bufio.Scanner) (id, data string, ok bool) {
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "" && (id != "" || data != ""):
				return id, data, true
			case strings.HasPrefix(line, "id:"):
				id = strings.TrimSpace(line[len("id:"):])
			case strings.HasPrefix(line, "data:"):
				data += strings.TrimSpace(line[len("data:"):])
			}
		}
		return "", "", false
	}
	isProgress := func(data string) bool { return strings.Contains(data, `"notifications/progress"`) }
	isAnswer := func(data string) bool {
		return strings.Contains(data, `"id":5`) && strings.Contains(data, "Long running operation completed")
	}

	resp := send(http.MethodPost, session, "", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"everything_trigger-long-running-operation","arguments":{"duration":0.3,"steps":3},"_meta":{"progressToken":"p"}}}`)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("tools/call: %d %s, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var first string
	progress, answered := 0, false
	for sc := bufio.NewScanner(resp.Body); !answered; {
		id, data, ok := event(sc)
		if !ok {
			t.Fatalf("the call's stream ended after %d progress events, without the answer", progress)
		}
		if isProgress(data) {
			if progress++; progress == 1 {
				first = id
			}
		}
		answered = isAnswer(data)
	}
	if progress != 3 || !strings.HasPrefix(first, mux.EventIDPrefix) {
		t.Fatalf("the call's stream: %d progress events, the first with id %q; want 3, with an id of the mux's (%s...)", progress, first, mux.EventIDPrefix)
	}

	resp = send(http.MethodGet, session, first, "")
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET with Last-Event-ID %s: %d %s", first, resp.StatusCode, body)
	}
	// server-everything keeps the resumed stream open: it is read up to the answer.
	progress, answered = 0, false
	for sc := bufio.NewScanner(resp.Body); !answered; {
		id, data, ok := event(sc)
		if !ok {
			t.Fatalf("the resumed stream ended after %d progress events, without the answer", progress)
		}
		if isProgress(data) {
			progress++
			if strings.Contains(data, `"progress":1,`) {
				t.Errorf("the resumed stream replays the first progress event, which the client had: %s", data)
			}
		}
		if answered = isAnswer(data); (answered || isProgress(data)) && !strings.HasPrefix(id, mux.EventIDPrefix) {
			t.Errorf("the resumed stream's event %s has the id %q, want one of the mux's", data, id)
		}
	}
	if progress != 2 {
		t.Errorf("the resumed stream replayed %d progress events before the answer, want 2", progress)
	}

	resp = send(http.MethodGet, session, "not-an-id-of-the-mux", "")
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "not an event id of mcpgate's mux") {
		t.Errorf("GET with a Last-Event-ID the mux did not give: %d %s, want 400 saying so", resp.StatusCode, body)
	}
}

// expectRequestNotifications sends, in a raw session at the multiplexed url under fileMuxRule,
// tools/call and tools/list messages without an id (notifications): a call of a tool the rule
// denies is refused (202, audited deny), one of an allowed tool passes to its target
// (server-everything takes it: 202, audited allow and notification), and tools/list, which the
// mux passes to no target, is answered 400 and audited as an error, never as a notification
// passed on.
func expectRequestNotifications(t *testing.T, url string) {
	t.Helper()
	post := func(session, body string) (*http.Response, error) {
		resp, err := sendMCP(t.Context(), http.MethodPost, url, map[string]string{"Mcp-Session-Id": session}, body)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var session string
	eventually(t, "a raw session on the multiplexed backend", func() error {
		resp, err := post("", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
		if err != nil {
			return err
		}
		if session = resp.Header.Get("Mcp-Session-Id"); resp.StatusCode != http.StatusOK || session == "" {
			return fmt.Errorf("initialize: %d, session %q", resp.StatusCode, session)
		}
		return nil
	})
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, http.StatusAccepted},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"everything_get-sum","arguments":{"a":40,"b":2}}}`, http.StatusAccepted},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"everything_echo","arguments":{"message":"as a notification"}}}`, http.StatusAccepted},
		{`{"jsonrpc":"2.0","method":"tools/list"}`, http.StatusBadRequest},
	} {
		resp, err := post(session, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", c.body, resp.StatusCode, c.status)
		}
	}
	eventually(t, "audit lines of the notifications say what became of them", func() error {
		lines, err := jsonLines(env.stdoutLog())
		if err != nil {
			return err
		}
		want := map[string]string{ // tool (method) -> decision/outcome/http_status
			"everything_get-sum": "deny/notification/202",
			"everything_echo":    "allow/notification/202",
			"tools/list":         "allow/error/400",
		}
		for _, l := range lines {
			if l["request_id"] != nil || l["gateway"] != "e2e-mux/mux" || l["jsonrpc_id"] != nil {
				continue
			}
			key, _ := l["tool"].(string)
			if l["method"] == "tools/list" {
				key = "tools/list"
			}
			if w, ok := want[key]; ok && fmt.Sprintf("%v/%v/%v", l["decision"], l["outcome"], l["http_status"]) == w {
				delete(want, key)
			}
		}
		if len(want) > 0 {
			return fmt.Errorf("%s: no audit line of the notification %v", env.stdoutLog(), want)
		}
		return nil
	})
}

// sendMCP sends METHOD url as a raw MCP client does: Accept both answers, a JSON body, and the
// headers whose values are not "" (Mcp-Session-Id, Last-Event-ID...). The caller closes the
// answer's body.
func sendMCP(ctx context.Context, method, url string, headers map[string]string, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, body, err)
	}
	return resp, nil
}
