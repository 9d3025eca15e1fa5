package file

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBackendAuthFields: agentgateway's backend auth as its manifests write it loads
// (passthrough, an empty object; key), in a backend and in both policy kinds; aws, which
// mcpgate does not serve, is refused naming the field, the object and the file.
func TestBackendAuthFields(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "auth.yaml")
	write(t, f, `apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: user-tools, namespace: ns}
spec:
  mcp:
    targets: [{name: t, static: {host: h, port: 80}}]
  policies:
    auth: {passthrough: {}}
---
apiVersion: enterpriseagentgateway.solo.io/v1alpha1
kind: EnterpriseAgentgatewayPolicy
metadata: {name: forward, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  backend:
    auth:
      passthrough: {}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: keyed, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  backend:
    auth: {key: sk-not-real}
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: cloud, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  backend:
    auth: {aws: {}}
`)
	res, _, err := Load(f)
	want := f + ": document 4: AgentgatewayPolicy ns/cloud: spec.backend.auth.aws: unknown field"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load: %v, want an error with %q", err, want)
	}
	if len(res.Backends) != 1 || res.Backends[0].Spec.Policies.Auth.Passthrough == nil {
		t.Fatalf("the backend's passthrough did not load: %+v", res.Backends)
	}
	if len(res.Policies) != 2 || res.Policies[0].Spec.Backend.Auth.Passthrough == nil ||
		res.Policies[1].Spec.Backend.Auth.Key == nil || *res.Policies[1].Spec.Backend.Auth.Key != "sk-not-real" {
		t.Fatalf("the policies' auth did not load: %d policies", len(res.Policies))
	}
}
