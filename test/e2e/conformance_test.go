package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// gatewayDifferences are, per run (conformanceRuns), the conformance scenarios whose result in
// that run is known to differ from the result against the server directly, each with the reason
// (written into docs/conformance.md). Any other difference fails TestConformance, and so does a
// listed one that is gone.
var gatewayDifferences = map[string]map[string]string{}

// Runs of the conformance suite, in the order of the doc's columns.
var conformanceRuns = []struct{ name, title string }{
	{"direct", "direct"},
	{"gateway", "through the gateway"},
	{"gateway-rule", "through the gateway, MCP rule allowing all"},
	{"gateway-bridge", "through the gateway, bridged to the server over HTTP+SSE"},
}

// TestConformance runs the MCP conformance suite (server mode, Streamable HTTP) against the go-sdk
// conformance everything-server directly, through the gateway, and through the gateway with an MCP
// rule (testdata/conformance-rule.yaml) that allows everything, so that ext_proc evaluates it on
// every message and rewrites every tools/list answer. It compares the runs per scenario. With
// MCPGATE_WRITE_CONFORMANCE_DOC=1 (make conformance-doc) it rewrites docs/conformance.md.
func TestConformance(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{
		"direct":       "http://" + addr(s.ports.conformanceUp) + "/mcp",
		"gateway":      "http://" + addr(s.ports.conformance) + "/mcp",
		"gateway-rule": "http://" + addr(s.ports.conformance) + "/mcp",
		// The backend conformance-sse: the server over HTTP+SSE only (test/sseadapter), its one SSE
		// target bridged by the mux for the suite's Streamable HTTP client.
		"gateway-bridge": "http://" + addr(s.ports.conformanceSSE) + "/mcp",
	}
	results := map[string]map[string]scenarioResult{}
	for _, run := range conformanceRuns {
		switch run.name {
		case "gateway":
			eventually(t, "the conformance route without policies", func() error {
				return s.expectRule(urls[run.name], "")
			})
		case "gateway-rule":
			if err := s.lab.putTestdata(fileConformanceRule); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the conformance route under the allow-all MCP rule", func() error {
				return s.expectRule(urls[run.name], "EnterpriseAgentgatewayPolicy/agentgateway-system/conformance-allow-all")
			})
		case "gateway-bridge":
			if err := s.lab.remove(fileConformanceRule); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the bridged conformance route without policies", func() error {
				return s.expectRule(urls[run.name], "")
			})
		}
		r, err := s.conformance(run.name, urls[run.name])
		if err != nil {
			t.Fatal(err)
		}
		results[run.name] = r
	}
	if err := s.lab.remove(fileConformanceRule); err != nil {
		t.Fatal(err)
	}

	direct := results["direct"]
	if len(direct) < 30 {
		t.Fatalf("direct run has %d scenarios, want the suite's 30 or more: %v", len(direct), direct)
	}
	for name, d := range direct {
		if !d.ok() {
			t.Errorf("direct %s: %s (the reference server passes every scenario)", name, d)
		}
	}
	for _, run := range conformanceRuns[1:] {
		if d, g := direct["tools-list"].tools, results[run.name]["tools-list"].tools; len(d) == 0 || !slices.Equal(d, g) {
			t.Errorf("tools-list saw tools %v direct, %v %s", d, g, run.title)
		}
		for _, name := range union(direct, results[run.name]) {
			d, g := direct[name], results[run.name][name]
			why, expected := gatewayDifferences[run.name][name]
			switch {
			case d.String() == g.String() && expected:
				t.Errorf("%s: %s the same as direct (%s), but listed as a difference: %s", name, run.title, g, why)
			case d.String() != g.String() && !expected:
				t.Errorf("%s: direct %s, %s %s", name, d, run.title, g)
			}
		}
	}
	for run, listed := range gatewayDifferences {
		if _, ok := results[run]; !ok || run == "direct" {
			t.Errorf("gatewayDifferences names run %q, not a run through the gateway", run)
		}
		for name := range listed {
			if _, ok := direct[name]; !ok {
				t.Errorf("gatewayDifferences[%q] names scenario %q, which the direct run does not have", run, name)
			}
		}
	}
	doc := conformanceDoc(s, results)
	switch {
	case os.Getenv("MCPGATE_WRITE_CONFORMANCE_DOC") != "":
		if err := os.WriteFile("../../docs/conformance.md", doc, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote docs/conformance.md")
	case !s.bin.realEnvoy:
		// The committed results are this run's (a real Envoy's run names its version instead).
		if committed, err := os.ReadFile("../../docs/conformance.md"); err != nil || !bytes.Equal(committed, doc) {
			t.Errorf("docs/conformance.md is not this run's results (%v); run make conformance-doc and commit it", err)
		}
	}
}

// expectRule calls the conformance server's test_simple_text through the gateway with the go-sdk
// client and wants, in the access log, that call decided by a rule of the given policy ("" = no
// rule: no policy on the route).
func (s *suite) expectRule(url, policy string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-e2e-probe", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, nil)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer cs.Close()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
		return fmt.Errorf("tools/call test_simple_text: %w", err)
	}
	// The data plane writes the line when the request has ended, Envoy in batches (every
	// accessLogFlushMillis): wait for it.
	session, err := s.serverSession(cs.ID())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rule, found, err := s.toolsCallRule(session)
		switch {
		case err != nil:
			return err
		case !found && time.Now().After(deadline):
			return fmt.Errorf("no access log line for tools/call in session %s", session)
		case !found:
			time.Sleep(100 * time.Millisecond)
		case (policy == "" && rule == "") || (policy != "" && strings.HasPrefix(rule, policy)):
			return nil
		default:
			return fmt.Errorf("tools/call in session %s was decided by rule %q, want %q", session, rule, policy)
		}
	}
}

// toolsCallRule finds the data plane's access-log line of a tools/call in session and returns its
// mcpgate.rule.
func (s *suite) toolsCallRule(session string) (rule string, found bool, err error) {
	lines, err := jsonLines(s.stdoutLog())
	if err != nil {
		return "", false, err
	}
	for _, l := range lines {
		md, _ := l["mcpgate"].(map[string]any)
		if l["request_id"] != nil && md["method"] == "tools/call" && md["session"] == session {
			rule, _ = md["rule"].(string)
			return rule, true, nil
		}
	}
	return "", false, nil
}

// scenarioResult is one scenario's checks.
type scenarioResult struct {
	present  bool
	passed   int
	failed   int
	warnings int
	failures []string // "check-id: message"
	tools    []string // the tool names the tools-list check saw
}

func (r scenarioResult) ok() bool { return r.present && r.failed == 0 }

func (r scenarioResult) String() string {
	switch {
	case !r.present:
		return "not run"
	case r.failed == 0:
		return fmt.Sprintf("pass (%s)", plural(r.passed, "check"))
	default:
		return fmt.Sprintf("FAIL (%d of %s: %s)", r.failed, plural(r.passed+r.failed, "check"), strings.Join(r.failures, "; "))
	}
}

// scenarioDir is the folder the suite writes per scenario: server-NAME-TIMESTAMP.
var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[0-9-]+Z$`)

// conformanceTimeout bounds one run of the conformance suite.
const conformanceTimeout = 4 * time.Minute

// conformance runs every server scenario against url with Node 22 and reads the checks.
func (s *suite) conformance(name, url string) (map[string]scenarioResult, error) {
	dir := filepath.Join(s.out, "conformance", name)
	log := filepath.Join(s.out, "conformance-"+name+".log")
	// A run takes seconds; the limit is for a scenario that hangs (go test's own timeout would end
	// the suite without a word on which).
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.tools.node22, s.tools.conformance, "server", "--url", url, "-o", dir)
	cmd.SysProcAttr = childAttrs(false)
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(log, out, 0o644)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("conformance %s: no end after %s (see %s)\n%s", name, conformanceTimeout, log, tail(log, 20))
	}
	// The suite exits 1 when a scenario fails; the checks say which.
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		return nil, fmt.Errorf("conformance %s: %w", name, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("conformance %s wrote no results (see %s): %w\n%s", name, log, err, tail(log, 20))
	}
	results := map[string]scenarioResult{}
	for _, e := range entries {
		m := scenarioDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return nil, fmt.Errorf("conformance %s: %w", name, err)
		}
		var checks []struct {
			ID           string          `json:"id"`
			Status       string          `json:"status"`
			ErrorMessage string          `json:"errorMessage"`
			Details      json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("conformance %s: %s: %w", name, e.Name(), err)
		}
		r := scenarioResult{present: true}
		for _, c := range checks {
			if c.ID == "tools-list" {
				var d struct {
					Tools []string `json:"tools"`
				}
				if err := json.Unmarshal(c.Details, &d); err != nil {
					return nil, fmt.Errorf("conformance %s: %s: tools-list details: %w", name, e.Name(), err)
				}
				r.tools = d.Tools
			}
			switch c.Status {
			case "SUCCESS":
				r.passed++
			case "FAILURE":
				r.failed++
				r.failures = append(r.failures, c.ID+": "+c.ErrorMessage)
			case "WARNING":
				r.warnings++
			}
		}
		results[m[1]] = r
	}
	return results, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func union(a, b map[string]scenarioResult) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// conformanceDoc renders docs/conformance.md from a run.
func conformanceDoc(s *suite, results map[string]map[string]scenarioResult) []byte {
	var b bytes.Buffer
	dataPlane := "`bin/envoydouble` (the Envoy test double; no `envoy` binary was given)"
	if s.bin.realEnvoy {
		dataPlane = "Envoy `" + s.bin.envoyVersion + "` (`ENVOY_BIN`)"
	}
	pinned, _ := readPinned("testdata/npm-tools.txt")
	fmt.Fprintf(&b, `# MCP conformance: direct and through the gateway

Generated by `+"`make conformance-doc`"+` (test/e2e TestConformance); do not edit by hand.

The official MCP conformance suite (`+"`@modelcontextprotocol/conformance@%s`"+`, server mode: an MCP
client that runs every server scenario over Streamable HTTP, on Node 22) runs four times against the
go-sdk v1.8.0 conformance everything-server:

1. **direct**: against the server itself;
2. **through the gateway**: through a listener of the lab's Gateway whose HTTPRoute leads to the
   server as an `+"`AgentgatewayBackend`"+` MCP target (no policy: ext_proc reads every message and
   writes the access-log metadata);
3. **through the gateway, MCP rule allowing all**: the same with an `+"`EnterpriseAgentgatewayPolicy`"+`
   whose `+"`backend.mcp.authorization`"+` rule is `+"`true`"+`, so ext_proc also evaluates the rule on every
   message and filters every list answer (`+"`tools/list`"+`, `+"`prompts/list`"+`, `+"`resources/list`"+`...) (test/e2e/testdata/conformance-rule.yaml);
4. **through the gateway, bridged to the server over HTTP+SSE**: the same server served over legacy
   HTTP+SSE only, behind an `+"`AgentgatewayBackend`"+` with one SSE target (no policy), which the gateway
   bridges for the suite's Streamable HTTP client through mcpgate's mux (docs/design.md,
   Multiplexing). The server is reached through `+"`test/sseadapter`"+`, a transport adapter: per SSE
   session it starts the server in stdio mode and copies the JSON-RPC messages both ways unchanged,
   over the go-sdk's own `+"`SSEServerTransport`"+`, with the HTTP checks of the go-sdk's `+"`SSEHandler`"+`
   (DNS rebinding protection among them).

Data plane of this run: %s.

TestConformance, part of `+"`make test`"+`, fails when a scenario's result in a run through the gateway
differs from the direct one and the difference is not listed below, for that run, with its reason.

## Run it

`+"```"+`
make conformance-doc                                  # runs the suite and rewrites this file
go test -count=1 -run TestConformance -v ./test/e2e/  # runs and compares only
ENVOY_BIN=/path/to/envoy make conformance-doc         # the same through a real Envoy
ENVOY_BIN=/path/to/envoy make e2e                     # the whole end-to-end suite through a real Envoy
`+"```"+`

Results and logs of the last run: `+"`test/e2e/out/conformance/`"+` and `+"`test/e2e/out/*.log`"+`.

## Results

`, pinned["@modelcontextprotocol/conformance"], dataPlane)
	b.WriteString("| scenario |")
	for _, run := range conformanceRuns {
		b.WriteString(" " + run.title + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(conformanceRuns)) + "\n")
	passed := make([]int, len(conformanceRuns))
	all := map[string]scenarioResult{}
	for _, r := range results {
		maps.Copy(all, r)
	}
	names := union(all, nil)
	for _, name := range names {
		b.WriteString("| " + name + " |")
		for i, run := range conformanceRuns {
			r := results[run.name][name]
			if r.ok() {
				passed[i]++
			}
			b.WriteString(" " + strings.ReplaceAll(r.String(), "|", "\\|"))
			if _, ok := gatewayDifferences[run.name][name]; ok {
				b.WriteString(" (see below)")
			}
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\nScenarios passed:")
	for i, run := range conformanceRuns {
		fmt.Fprintf(&b, " %d of %d %s;", passed[i], len(names), run.title)
	}
	b.Truncate(b.Len() - 1)
	b.WriteString(".\n\n## Known differences\n\n")
	listed := 0
	for _, run := range conformanceRuns {
		for _, name := range names {
			if why, ok := gatewayDifferences[run.name][name]; ok {
				fmt.Fprintf(&b, "- **%s**, %s: %s.\n", name, run.title, why)
				listed++
			}
		}
	}
	if listed == 0 {
		b.WriteString("None: every scenario has the same result through the gateway as directly.\n")
	}
	return b.Bytes()
}
