package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// gatewayDifferences are the conformance scenarios whose result through the gateway differs from
// the result against the server directly on purpose, each with the reason (written into
// docs/conformance.md). Any other difference fails TestConformance.
var gatewayDifferences = map[string]string{}

// TestConformance runs the MCP conformance suite (server mode, Streamable HTTP) against the go-sdk
// conformance everything-server directly and through the gateway, and compares per scenario.
// With MCPGATE_WRITE_CONFORMANCE_DOC=1 (make conformance-doc) it rewrites docs/conformance.md.
func TestConformance(t *testing.T) {
	s := env
	if err := s.lab.base(); err != nil {
		t.Fatal(err)
	}
	gatewayURL := "http://" + addr(s.ports.conformance) + "/mcp"
	eventually(t, "the conformance route without policies", func() error {
		return s.probeInitialize(gatewayURL)
	})

	direct, err := s.conformance("direct", "http://"+addr(s.ports.conformanceUp)+"/mcp")
	if err != nil {
		t.Fatal(err)
	}
	gateway, err := s.conformance("gateway", gatewayURL)
	if err != nil {
		t.Fatal(err)
	}
	if len(direct) < 30 {
		t.Fatalf("direct run has %d scenarios, want the suite's 30 or more: %v", len(direct), direct)
	}
	for name, d := range direct {
		if !d.ok() {
			t.Errorf("direct %s: %s (the reference server passes every scenario)", name, d)
		}
	}
	for _, name := range union(direct, gateway) {
		d, g := direct[name], gateway[name]
		why, expected := gatewayDifferences[name]
		switch {
		case d.String() == g.String() && expected:
			t.Errorf("%s: the same through the gateway (%s), but listed as a difference: %s", name, g, why)
		case d.String() != g.String() && !expected:
			t.Errorf("%s: direct %s, through the gateway %s", name, d, g)
		}
	}
	if os.Getenv("MCPGATE_WRITE_CONFORMANCE_DOC") != "" {
		if err := os.WriteFile("../../docs/conformance.md", conformanceDoc(s, direct, gateway), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote docs/conformance.md")
	}
}

// scenarioResult is one scenario's checks.
type scenarioResult struct {
	present  bool
	passed   int
	failed   int
	warnings int
	failures []string // "check-id: message"
}

func (r scenarioResult) ok() bool { return r.present && r.failed == 0 }

func (r scenarioResult) String() string {
	switch {
	case !r.present:
		return "not run"
	case r.failed == 0:
		return fmt.Sprintf("pass (%d checks)", r.passed)
	default:
		return fmt.Sprintf("FAIL (%d of %d checks: %s)", r.failed, r.passed+r.failed, strings.Join(r.failures, "; "))
	}
}

// scenarioDir is the folder the suite writes per scenario: server-NAME-TIMESTAMP.
var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[0-9-]+Z$`)

// conformance runs every server scenario against url with Node 22 and reads the checks.
func (s *suite) conformance(name, url string) (map[string]scenarioResult, error) {
	dir := filepath.Join(s.out, "conformance", name)
	log := filepath.Join(s.out, "conformance-"+name+".log")
	cmd := exec.Command(s.tools.node22, s.tools.conformance, "server", "--url", url, "-o", dir)
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(log, out, 0o644)
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
			ID           string `json:"id"`
			Status       string `json:"status"`
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("conformance %s: %s: %w", name, e.Name(), err)
		}
		r := scenarioResult{present: true}
		for _, c := range checks {
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

// probeInitialize POSTs an initialize and wants 200: the route is up and no policy refuses it.
func (s *suite) probeInitialize(url string) error {
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST initialize %s = %s", url, resp.Status)
	}
	return nil
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
func conformanceDoc(s *suite, direct, gateway map[string]scenarioResult) []byte {
	var b bytes.Buffer
	dataPlane := "`bin/envoydouble` (the Envoy test double; no `envoy` binary was given)"
	if s.bin.realEnvoy {
		dataPlane = "Envoy (`ENVOY_BIN`)"
	}
	pinned, _ := readPinned("testdata/npm-tools.txt")
	fmt.Fprintf(&b, `# MCP conformance: direct and through the gateway

Generated by `+"`make conformance-doc`"+` (test/e2e TestConformance); do not edit by hand.

The official MCP conformance suite (`+"`@modelcontextprotocol/conformance@%s`"+`, server mode: an MCP
client that runs every server scenario over Streamable HTTP, on Node 22) runs twice against the go-sdk
v1.8.0 conformance everything-server: once directly and once through mcpgate, whose Gateway routes a
listener to the server as an `+"`AgentgatewayBackend`"+` MCP target (no policy). Data plane of this run:
%s.

TestConformance, part of `+"`make test`"+`, fails when a scenario's result through the gateway differs
from the direct one and the difference is not listed below with its reason.

## Run it

`+"```"+`
make conformance-doc                              # rewrites this file
go test -count=1 -run TestConformance -v ./test/e2e/  # compares only
ENVOY_BIN=/path/to/envoy make conformance-doc     # the same through a real Envoy
`+"```"+`

Results and logs of the last run: `+"`test/e2e/out/conformance/`"+`.

## Results

| scenario | direct | through the gateway |
|---|---|---|
`, pinned["@modelcontextprotocol/conformance"], dataPlane)
	var dPass, gPass, n int
	for _, name := range union(direct, gateway) {
		d, g := direct[name], gateway[name]
		n++
		if d.ok() {
			dPass++
		}
		if g.ok() {
			gPass++
		}
		mark := ""
		if _, ok := gatewayDifferences[name]; ok {
			mark = " (see below)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s%s |\n", name, cell(d), cell(g), mark)
	}
	fmt.Fprintf(&b, "\nScenarios passed: %d of %d directly, %d of %d through the gateway.\n", dPass, n, gPass, n)
	b.WriteString("\n## Differences on purpose\n\n")
	if len(gatewayDifferences) == 0 {
		b.WriteString("None: every scenario has the same result through the gateway as directly.\n")
	}
	for _, name := range union(direct, gateway) {
		if why, ok := gatewayDifferences[name]; ok {
			fmt.Fprintf(&b, "- **%s**: %s\n", name, why)
		}
	}
	return b.Bytes()
}

func cell(r scenarioResult) string {
	return strings.ReplaceAll(r.String(), "|", "\\|")
}
