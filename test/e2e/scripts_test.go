package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The README's main command and the demo, as a user runs them: `make run` and `make demo` in the
// repository, on the lab's fixed ports (8080, 8000, 18000, 18001, 18002, 19000, 15000, the demo's 8001),
// which nothing else in the suite uses. With `make run` up elsewhere on the machine they fail,
// saying which port is taken.

// TestMakeRun: `make run` starts a gateway on the lab's example that an MCP client reaches over
// SSE with the lab's token, calling fetch as the README's commands do; Ctrl-C stops everything.
func TestMakeRun(t *testing.T) {
	s := env
	p, err := s.startProc(procSpec{name: "make-run", dir: "../..", args: []string{"make", "run"},
		env: []string{"MCPGATE_RUN_DIR=" + filepath.Join(t.TempDir(), "run")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	if err := waitTCP(p, "127.0.0.1:8080", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	transport := &mcp.SSEClientTransport{Endpoint: "http://127.0.0.1:8080/sse", HTTPClient: bearerClient(s.devToken)}
	var cs *mcp.ClientSession
	eventually(t, "an MCP session through make run's gateway", func() error {
		cs, err = mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e-make-run", Version: "1"}, nil).Connect(ctx, transport, nil)
		return err
	})
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fetch", Arguments: map[string]any{"url": "http://127.0.0.1:19000/healthz"}})
	if err != nil || res.IsError || len(res.Content) == 0 {
		t.Fatalf("tools/call fetch = %+v, %v", res, err)
	}
	if text, _ := res.Content[0].(*mcp.TextContent); text == nil || !strings.Contains(text.Text, "ok") {
		t.Errorf("fetch of mcpgate's /healthz: %+v", res.Content[0])
	}
	cs.Close()

	// Ctrl-C: the terminal sends SIGINT to the whole foreground group.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("make run still running 30 s after Ctrl-C\n%s", p.describe())
	}
	for _, port := range []string{"8080", "8000", "18000", "18001", "19000"} {
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			conn.Close()
			t.Errorf("port %s still served after make run stopped", port)
		}
	}
}

// TestMakeRunSaysWhatIsRefused: with a file of run/ that mcpgate refuses (a CEL rule that does not
// compile), `make run` says so before the gateway starts, since a restarted gateway has no last
// good version of it to serve.
func TestMakeRunSaysWhatIsRefused(t *testing.T) {
	p, dir := makeRunOn(t, "make-run-refused", func(dir string) {
		replaceOnce(t, filepath.Join(dir, "rbac.yaml"), `jwt.org == "solo.io"`, `jwt.org ==`)
	})
	out, err := os.ReadFile(p.logs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rbac.yaml: EnterpriseAgentgatewayPolicy agentgateway-system/mcp-rbac: spec.traffic.authorization.policy.matchExpressions[0]: CEL does not compile",
		"part of " + dir + " is refused"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("make run's output lacks %q:\n%s", want, out)
		}
	}
}

// TestMakeRunPolicyThatDoesNotLoadFailsClosed: a JWT policy file with a typo (an unknown field),
// read by a restarted `make run` that has no last good version of it, makes the routes it targets
// answer 500: the Gateway does not go without its JWT check. (The lab's step 3 removes the CEL
// rule, so the JWT policy is the only one.)
func TestMakeRunPolicyThatDoesNotLoadFailsClosed(t *testing.T) {
	p, _ := makeRunOn(t, "make-run-unreadable", func(dir string) {
		if err := os.Remove(filepath.Join(dir, "rbac.yaml")); err != nil {
			t.Fatal(err)
		}
		replaceOnce(t, filepath.Join(dir, "jwt.yaml"), "mode: Strict", "mod: Strict")
	})
	eventually(t, "a 500 without a token", func() error {
		resp, err := http.Get("http://127.0.0.1:8080/sse")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError { // a 200 is an event stream: not read
			return fmt.Errorf("GET /sse without a token: %s, want 500 (the JWT policy does not load)", resp.Status)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if !strings.Contains(string(body), "policy of this route is not accepted") {
			return fmt.Errorf("GET /sse without a token: 500 %q, want the refused policy's answer", body)
		}
		return nil
	})
	out, err := os.ReadFile(p.logs[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "jwt.yaml: EnterpriseAgentgatewayPolicy agentgateway-system/mcp-jwt-auth: spec.traffic.jwtAuthentication.mod: its document does not load: unknown field"; !bytes.Contains(out, []byte(want)) {
		t.Errorf("make run's output lacks %q:\n%s", want, out)
	}
}

// makeRunOn starts `make run` on a copy of the lab's example that edit changed first, and waits
// for the Gateway's port. It returns the process (make run's output is in p.logs[0]) and the
// copy's folder.
func makeRunOn(t *testing.T, name string, edit func(dir string)) (*proc, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.CopyFS(dir, os.DirFS("../../examples/mcp-connectivity")); err != nil {
		t.Fatal(err)
	}
	edit(dir)
	p, err := env.startProc(procSpec{name: name, dir: "../..", args: []string{"make", "run"}, env: []string{"MCPGATE_RUN_DIR=" + dir}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	if err := waitTCP(p, "127.0.0.1:8080", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	return p, dir
}

// replaceOnce replaces the first old in the file at path by new; the file must hold old.
func replaceOnce(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s: %v, or no %q in it", path, err, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMakeDemo: `make demo` runs the lab's steps to the end.
func TestMakeDemo(t *testing.T) {
	p, err := env.startProc(procSpec{name: "make-demo", dir: "../..", args: []string{"make", "demo"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Minute):
		t.Fatalf("make demo still running after 5 minutes\n%s", p.describe())
	}
	if p.err != nil {
		t.Fatalf("make demo: %v\n%s", p.err, p.describe())
	}
	// What each step must show (the script prints every command's answer and goes on when one
	// fails): step 4's and 8's fetched page, step 7's refusals, the end.
	log, err := os.ReadFile(p.logs[0])
	if err != nil {
		t.Fatal(err)
	}
	// This run's output: the log file is appended to, each run after a "### " line.
	out := string(log[bytes.LastIndex(log, []byte("\n### "))+1:])
	for what, want := range map[string]string{
		"a page fetched through the gateway (steps 4, 8, 9)":  `\"url\": \"http://127.0.0.1:8001/get\"`,
		"the inspector's auth error without a token (step 7)": "auth_required",
		"the 401 without a token (step 7)":                    "Jwt is missing",
		"the CEL rule's refusal of another org (step 9)":      "Non-200 status code (403)",
		"the MCP target's cluster (step 10)":                  "name: agentgatewaybackend/agentgateway-system/mcp-backend/mcp-target",
		"the end":                                             "== Done ==",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make demo does not show %s (%q):\n%s", what, want, out)
		}
	}
	if n := strings.Count(out, `\"url\": \"http://127.0.0.1:8001/get\"`); n < 3 {
		t.Errorf("make demo fetched the page %d times, want 3 (steps 4, 8 and 9):\n%s", n, out)
	}
}
