package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/translator"
)

// TestTranslateLab is the check: the lab's example directory translates to a listener
// on 8080, the route to the MCP backend, a cluster for 127.0.0.1:8000, the ext_proc filter and
// the two policies merged.
func TestTranslateLab(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := translate([]string{"-f", "../../examples/mcp-connectivity/"}, &out, &errOut); err != nil {
		t.Fatalf("translate: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"port_value: 8080",
		"name: agentgateway-system/agentgateway/8080",
		// the lab's SSE target, bridged: its legacy stream and messages, then the mux
		"name: httproute/agentgateway-system/mcp/rule/0/match/0/sse-stream",
		"name: httproute/agentgateway-system/mcp/rule/0/match/0/sse-messages-sessionId",
		"name: httproute/agentgateway-system/mcp/rule/0/match/0/bridge",
		"cluster: mcpgate_mux",
		"cluster: agentgatewaybackend/agentgateway-system/mcp-backend/mcp-target",
		"address: 127.0.0.1\n                        port_value: 8000",
		"name: envoy.filters.http.ext_proc",
		"name: EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-jwt-auth+EnterpriseAgentgatewayPolicy/agentgateway-system/mcp-rbac",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestTranslateNothing: input without an object mcpgate reads (an empty directory, manifests
// in its subdirectories only, a Deployment) is an error, and nothing is printed as if it were the
// answer.
func TestTranslateNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "gw.yaml"), []byte("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deployment := filepath.Join(t.TempDir(), "d.yaml")
	if err := os.WriteFile(deployment, []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, deployment} {
		var out, errOut bytes.Buffer
		err := translate([]string{"-f", path}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "no object that mcpgate reads in "+path) || out.Len() != 0 {
			t.Errorf("%s: err %v, output %q; want an error and no output", path, err, out.String())
		}
	}
	// A missing file: one error, naming it once.
	missing := filepath.Join(dir, "missing")
	var out, errOut bytes.Buffer
	err := translate([]string{"-f", missing}, &out, &errOut)
	if err == nil || err.Error() != missing+": no such file or directory" || out.Len() != 0 || errOut.Len() != 0 {
		t.Errorf("missing file: err %v, output %q, stderr %q; want one error naming the file once", err, out.String(), errOut.String())
	}
}

// TestTranslateInvalid: bad input exits non-zero with FILE: Kind ns/name: field: message lines,
// and the valid part is still printed.
func TestTranslateInvalid(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: rbac, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  traffic:
    authorization:
      policy:
        matchExpressions: ['jwt.org ==']
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: x
  listeners: [{name: http, port: 8080, protocol: HTTP, bogus: 1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ok, namespace: ns}
spec:
  gatewayClassName: x
  listeners: [{name: http, port: 9090, protocol: HTTP}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := translate([]string{"-f", bad, "-o", "json"}, &out, &errOut)
	if !errors.Is(err, errInvalidInput) {
		t.Fatalf("err = %v, want errInvalidInput", err)
	}
	for _, want := range []string{
		bad + ": document 2: Gateway ns/gw: spec.listeners[0].bogus: unknown field",
		bad + ": AgentgatewayPolicy ns/rbac: spec.traffic.authorization.policy.matchExpressions[0]: CEL does not compile",
		bad + ": AgentgatewayPolicy ns/rbac: spec.targetRefs[0]: Gateway ns/gw not found",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	if !strings.Contains(out.String(), `"ns/ok"`) {
		t.Errorf("the valid Gateway ns/ok is not printed:\n%s", out.String())
	}
}

// TestTranslateArguments: no -f, or an argument that is not a flag, is a usage error saying what
// is wrong.
func TestTranslateArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "give the manifests with -f PATH"},
		{[]string{"-f", "x", "extra"}, `unexpected arguments ["extra"]`},
	} {
		var out, errOut bytes.Buffer
		err := translate(c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "[]") {
			t.Errorf("translate %q: %v, want %q", c.args, err, c.want)
		}
		if !strings.HasPrefix(errOut.String(), "usage: mcpgate translate") {
			t.Errorf("translate %q: no usage:\n%s", c.args, errOut.String())
		}
	}
}

// TestTranslateMaxBodyBytes: a body limit that Envoy's buffer limits cannot hold (an HTTP/2
// stream's window is at most 2^31-1) is refused naming the flag, not wrapped around; so is a bind
// address that is not an IP address, as run refuses it.
func TestTranslateMaxBodyBytes(t *testing.T) {
	for _, args := range [][]string{
		{"--max-body-bytes", "0"}, {"--max-body-bytes", "4294967000"}, {"--max-body-bytes", fmt.Sprint(translator.LargestMaxBodyBytes + 1)},
		{"--bind-address", "notanip"},
	} {
		var out, errOut bytes.Buffer
		if err := translate(append([]string{"-f", "../../examples/mcp-connectivity"}, args...), &out, &errOut); err == nil || !strings.Contains(err.Error(), args[0]) || !strings.Contains(err.Error(), args[1]) {
			t.Errorf("%s: %v, want an error naming it", args, err)
		}
	}
	var out, errOut bytes.Buffer
	if err := translate([]string{"-f", "../../examples/mcp-connectivity", "--max-body-bytes", fmt.Sprint(translator.LargestMaxBodyBytes)}, &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "per_connection_buffer_limit_bytes: 2147483647") {
		t.Errorf("--max-body-bytes %d: %v, want listeners with the largest buffer limit", translator.LargestMaxBodyBytes, err)
	}
}

// severalTargets is a backend with two MCP targets, the first with a name the mux cannot prefix
// tools with ("_" separates a prefix), so Envoy routes the first only.
const severalTargets = `apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: several, namespace: tools}
spec:
  mcp:
    targets:
    - {name: my_tools, static: {host: 10.9.0.1, port: 3000}}
    - {name: tools, static: {host: 10.9.0.2, port: 3000, protocol: SSE}}
`

// severalTargetsWarning is the translator's warning about severalTargets, after FILE: .
const severalTargetsWarning = `AgentgatewayBackend tools/several: spec.mcp.targets[0].name: not multiplexed: target my_tools (spec.mcp.targets[0]) does not fit the mux: name "my_tools": want a name without any of "_+,:"; only the first target, my_tools (spec.mcp.targets[0]), is routed; not routed: tools (spec.mcp.targets[1])`

// TestTranslateWarnings: what is accepted but not applied as written (a backend's MCP targets
// after the first) is a warning on stderr naming file, object and field; the exit is 0.
func TestTranslateWarnings(t *testing.T) {
	in := filepath.Join(t.TempDir(), "backend.yaml")
	if err := os.WriteFile(in, []byte(severalTargets), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := translate([]string{"-f", in}, &out, &errOut); err != nil {
		t.Fatalf("translate: %v\n%s", err, errOut.String())
	}
	want := "warning: " + in + ": " + severalTargetsWarning
	if got := strings.TrimSpace(errOut.String()); got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

// TestTranslateClusterDomain: --cluster-domain reaches the translator: a static target host
// NAME.NS.svc.example.com is its Service's endpoints (EDS) with --cluster-domain example.com and
// a DNS name (STRICT_DNS) without it.
func TestTranslateClusterDomain(t *testing.T) {
	const cluster = "name: agentgatewaybackend/agentgateway-system/other-domain/outside\n        type: "
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "STRICT_DNS"},
		{[]string{"--cluster-domain", "example.com"}, "EDS"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"-f", "../../translator/testdata/service-dns-targets.in.yaml"}, c.args...)
		if err := translate(args, &out, &errOut); err != nil {
			t.Fatalf("translate %q: %v\n%s", args, err, errOut.String())
		}
		if !strings.Contains(out.String(), cluster+c.want+"\n") {
			t.Errorf("translate %q: output lacks %q", args, cluster+c.want)
		}
	}
}

// TestTranslateUpstreamCAFile: --upstream-ca-file is the trusted CA of every TLS target's
// transport socket, the default bundle without it.
func TestTranslateUpstreamCAFile(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, translator.DefaultUpstreamCAFile},
		{[]string{"--upstream-ca-file", "/etc/mcpgate/ca.pem"}, "/etc/mcpgate/ca.pem"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"-f", "../../translator/testdata/mcp-target-tls.in.yaml"}, c.args...)
		if err := translate(args, &out, &errOut); err != nil {
			t.Fatalf("translate %q: %v\n%s", args, err, errOut.String())
		}
		// every TLS cluster but no-verify's (insecureSkipVerify All) has one
		tlsClusters := strings.Count(out.String(), "name: envoy.transport_sockets.tls\n")
		if n := strings.Count(out.String(), "trusted_ca:\n                  filename: "+c.want+"\n"); tlsClusters < 2 || n != tlsClusters-1 {
			t.Errorf("translate %q: %d trusted CA files %s, want one per TLS cluster but no-verify's (%d)", args, n, c.want, tlsClusters-1)
		}
	}
}
