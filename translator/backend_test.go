package translator_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// TestBackendAddressFields: a static address (of an MCP target, a static backend, an AI
// provider) without a host or port, or with a bad one, is refused naming the field itself
// (…static.host, …static.port), not the object that holds it.
func TestBackendAddressFields(t *testing.T) {
	mcp := func(host string, port int32) v1alpha1.AgentgatewayBackendSpec {
		return v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{
			{Name: "t", Static: &v1alpha1.McpTarget{Host: host, Port: port}},
		}}}
	}
	static := func(host string, port int32) v1alpha1.AgentgatewayBackendSpec {
		return v1alpha1.AgentgatewayBackendSpec{Static: &v1alpha1.StaticBackend{Host: host, Port: port}}
	}
	ai := func(host string, port int32) v1alpha1.AgentgatewayBackendSpec {
		return v1alpha1.AgentgatewayBackendSpec{AI: &v1alpha1.AIBackend{Provider: &v1alpha1.LLMProvider{
			OpenAI: &v1alpha1.OpenAIConfig{}, Host: host, Port: port}}}
	}
	for _, c := range []struct {
		spec       v1alpha1.AgentgatewayBackendSpec
		field, msg string
	}{
		{mcp("127.0.0.1", 0), "spec.mcp.targets[0].static.port", "a port is required"},
		{mcp("", 3000), "spec.mcp.targets[0].static.host", "a host is required"},
		{mcp("", 0), "spec.mcp.targets[0].static.host", "a host is required"},
		{mcp("127.0.0.1", 70000), "spec.mcp.targets[0].static.port", "70000 is out of range 1-65535"},
		{mcp("127.0.0.1", -1), "spec.mcp.targets[0].static.port", "-1 is out of range 1-65535"},
		{mcp("not a host", 3000), "spec.mcp.targets[0].static.host", `"not a host" is neither an IP address nor a DNS name`},
		{static("127.0.0.1", 0), "spec.static.port", "a port is required"},
		{static("", 80), "spec.static.host", "a host is required"},
		{static("x..y", 80), "spec.static.host", `"x..y" is neither an IP address nor a DNS name`},
		{ai("", 70000), "spec.ai.provider.port", "70000 is out of range 1-65535"},
		{ai("not a host", 0), "spec.ai.provider.host", `"not a host" is neither an IP address nor a DNS name`},
	} {
		b := &v1alpha1.AgentgatewayBackend{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"}, Spec: c.spec}
		probs := translator.Translate(&translator.Resources{Backends: []*v1alpha1.AgentgatewayBackend{b}}, translator.Options{}).Status.Problems()
		want := translator.FieldError{Kind: translator.KindAgentgatewayBackend, Namespace: "ns", Name: "b", Field: c.field, Message: c.msg}
		if len(probs) != 1 || probs[0] != want {
			t.Errorf("problems %v, want only %v", probs, want)
		}
	}
}
