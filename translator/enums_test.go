package translator_test

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/translator"
)

// enumField is one field of api/v1alpha1 whose schema is an enum, set on an otherwise valid
// backend or policy.
type enumField struct {
	kind, field string
	values      []string // the CRD's enum, in its order
	set         func(b *v1alpha1.AgentgatewayBackend, p *v1alpha1.AgentgatewayPolicy, v string)
}

// enumFields lists every enum field of api/v1alpha1 (grep kubebuilder:validation:Enum).
func enumFields() []enumField {
	return []enumField{
		{translator.KindAgentgatewayBackend, "spec.mcp.targets[0].static.protocol", []string{"SSE", "StreamableHTTP"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.Targets[0].Static.Protocol = v1alpha1.MCPProtocol(v)
			}},
		{translator.KindAgentgatewayBackend, "spec.mcp.targets[1].static.protocol", []string{"SSE", "StreamableHTTP"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.Targets[1].Static.Protocol = v1alpha1.MCPProtocol(v)
			}},
		{translator.KindAgentgatewayBackend, "spec.mcp.targets[0].static.policies.tls.insecureSkipVerify", []string{"All", "Hostname"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.Targets[0].Static.Policies = &v1alpha1.McpTargetPolicies{TLS: &v1alpha1.BackendTLS{InsecureSkipVerify: insecureMode(v)}}
			}},
		{translator.KindAgentgatewayBackend, "spec.mcp.targets[1].static.policies.tls.insecureSkipVerify", []string{"All", "Hostname"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.Targets[1].Static.Policies = &v1alpha1.McpTargetPolicies{TLS: &v1alpha1.BackendTLS{InsecureSkipVerify: insecureMode(v)}}
			}},
		{translator.KindAgentgatewayBackend, "spec.mcp.sessionRouting", []string{"Stateful", "Stateless"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.SessionRouting = v1alpha1.SessionRouting(v)
			}},
		{translator.KindAgentgatewayBackend, "spec.mcp.failureMode", []string{"FailClosed", "FailOpen"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.FailureMode = v1alpha1.FailureMode(v)
			}},
		{translator.KindAgentgatewayBackend, "spec.mcp.prefixMode", []string{"Conditional", "Always", "Never"},
			func(b *v1alpha1.AgentgatewayBackend, _ *v1alpha1.AgentgatewayPolicy, v string) {
				b.Spec.MCP.PrefixMode = v1alpha1.PrefixMode(v)
			}},
		{translator.KindAgentgatewayPolicy, "spec.traffic.jwtAuthentication.mode", []string{"Strict", "Optional", "Permissive"},
			func(_ *v1alpha1.AgentgatewayBackend, p *v1alpha1.AgentgatewayPolicy, v string) {
				p.Spec.Traffic.JWTAuthentication.Mode = v1alpha1.JWTMode(v)
			}},
		{translator.KindAgentgatewayPolicy, "spec.traffic.authorization.action", []string{"Allow", "Deny", "Require"},
			func(_ *v1alpha1.AgentgatewayBackend, p *v1alpha1.AgentgatewayPolicy, v string) {
				p.Spec.Traffic.Authorization.Action = v1alpha1.AuthorizationAction(v)
			}},
		{translator.KindEnterpriseAgentgatewayPolicy, "spec.backend.mcp.authorization.action", []string{"Allow", "Deny", "Require"},
			func(_ *v1alpha1.AgentgatewayBackend, p *v1alpha1.AgentgatewayPolicy, v string) {
				p.Kind = translator.KindEnterpriseAgentgatewayPolicy
				p.Spec.Backend.MCP.Authorization.Action = v1alpha1.AuthorizationAction(v)
			}},
	}
}

// insecureMode is a pointer to v, nil (the field omitted) for "".
func insecureMode(v string) *v1alpha1.InsecureTLSMode {
	if v == "" {
		return nil
	}
	m := v1alpha1.InsecureTLSMode(v)
	return &m
}

// enumObjects is a valid MCP backend with two static targets, a policy on it that sets every
// policy enum, and a second backend that no enum touches.
func enumObjects() (*v1alpha1.AgentgatewayBackend, *v1alpha1.AgentgatewayPolicy, *translator.Resources) {
	b := &v1alpha1.AgentgatewayBackend{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"},
		Spec: v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{
			{Name: "one", Static: &v1alpha1.McpTarget{Host: "10.0.0.1", Port: 3000}},
			{Name: "two", Static: &v1alpha1.McpTarget{Host: "10.0.0.2", Port: 3000}},
		}}}}
	other := &v1alpha1.AgentgatewayBackend{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other"},
		Spec: v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{
			{Name: "one", Static: &v1alpha1.McpTarget{Host: "10.0.0.3", Port: 3000, Protocol: v1alpha1.MCPProtocolSSE}},
		}}}}
	rules := v1alpha1.AuthorizationPolicy{MatchExpressions: []v1alpha1.CELExpression{`mcp.tool.name == "x"`}}
	p := &v1alpha1.AgentgatewayPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
		Spec: v1alpha1.AgentgatewayPolicySpec{
			TargetRefs: []v1alpha1.PolicyTargetReference{{Group: "agentgateway.dev", Kind: "AgentgatewayBackend", Name: "b"}},
			Traffic: &v1alpha1.TrafficPolicy{
				JWTAuthentication: &v1alpha1.JWTAuthentication{Providers: []v1alpha1.JWTProvider{{Issuer: "i", JWKS: v1alpha1.JWKS{Remote: &v1alpha1.RemoteJWKS{URL: "https://i.example/jwks"}}}}},
				Authorization:     &v1alpha1.Authorization{Policy: rules},
			},
			Backend: &v1alpha1.BackendPolicy{MCP: &v1alpha1.BackendMCP{Authorization: &v1alpha1.Authorization{Policy: rules}}},
		}}
	return b, p, &translator.Resources{Backends: []*v1alpha1.AgentgatewayBackend{b, other}, Policies: []*v1alpha1.AgentgatewayPolicy{p}}
}

// TestEnumsAsTheAPIServer: a value outside a CRD enum is refused as the API server refuses it
// (objects from files meet none): case-sensitive, naming the field, in the API server's words,
// and only that object is refused. Every value of the enum, and the field omitted, is accepted.
func TestEnumsAsTheAPIServer(t *testing.T) {
	for _, f := range enumFields() {
		for _, v := range append([]string{""}, f.values...) {
			b, p, res := enumObjects()
			f.set(b, p, v)
			if probs := translator.Translate(res, translator.Options{}).Status.Problems(); len(probs) != 0 {
				t.Errorf("%s %q refused: %v", f.field, v, probs)
			}
		}
		for _, bad := range []string{"sse", "WebSocket", strings.ToLower(f.values[0]), " " + f.values[0]} {
			want := fmt.Sprintf("Unsupported value: %q: supported values: ", bad)
			for i, v := range f.values {
				if i > 0 {
					want += ", "
				}
				want += `"` + v + `"`
			}
			b, p, res := enumObjects()
			f.set(b, p, bad)
			out := translator.Translate(res, translator.Options{})
			probs := out.Status.Problems()
			name := b.Name
			if f.kind != translator.KindAgentgatewayBackend {
				name = p.Name
			}
			wantErr := translator.FieldError{Kind: f.kind, Namespace: "ns", Name: name, Field: f.field, Message: want}
			if len(probs) != 1 || probs[0] != wantErr {
				t.Errorf("%s %q: problems %v, want only %v", f.field, bad, probs, wantErr)
			}
			for k, st := range out.Status.Policies {
				c := st.Ancestors[0].Conditions[0]
				if refused := k.Kind == f.kind && k.Name == p.Name; refused != (c.Status == metav1.ConditionFalse) || refused && !strings.HasPrefix(c.Message, f.field+": "+want) {
					t.Errorf("%s %q: policy %s: %s %s", f.field, bad, k, c.Status, c.Message)
				}
			}
			for nn, st := range out.Status.Backends {
				accepted := st.Conditions[0].Status == metav1.ConditionTrue
				if refused := f.kind == translator.KindAgentgatewayBackend && nn.Name == b.Name; accepted == refused {
					t.Errorf("%s %q: backend %s accepted: %v (%s)", f.field, bad, nn, accepted, st.Conditions[0].Message)
				}
			}
		}
	}
}

// TestFailureModesAreTheMuxs: the translator passes spec.mcp.failureMode to the mux as it is
// (contract.Mux.FailureMode), so the API's values must be the ones the mux knows.
func TestFailureModesAreTheMuxs(t *testing.T) {
	if string(v1alpha1.FailureModeFailClosed) != contract.FailClosed || string(v1alpha1.FailureModeFailOpen) != contract.FailOpen {
		t.Fatalf("v1alpha1 failure modes %q %q, contract's %q %q", v1alpha1.FailureModeFailClosed, v1alpha1.FailureModeFailOpen, contract.FailClosed, contract.FailOpen)
	}
}
