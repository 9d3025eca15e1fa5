package file

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/translator"
)

// TestPolicyThatDoesNotLoadFailsClosed: a policy document that does not load (an unknown field,
// a value of the wrong type, a policy kind under the wrong apiVersion or in the wrong case) is
// refused, and also kept as far as it reads (kind, metadata, targetRefs) as an unreadable policy,
// so that the route it targets answers 500 rather than going unprotected. Other kinds, and
// policies whose targetRefs do not read, keep nothing.
func TestPolicyThatDoesNotLoadFailsClosed(t *testing.T) {
	const route = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec: {ports: [{port: 80}]}
`
	const target = "  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]\n"
	for _, c := range []struct {
		name, doc  string
		kept       string // the kept policy's kind, "" when nothing is kept
		field, msg string // the refusal of the kept policy
	}{
		{"unknown field", "apiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayPolicy\nmetadata: {name: p}\nspec:\n" + target +
			"  traffic: {jwtAuthentication: {mod: Strict, providers: [{issuer: x, jwks: {inline: '{}'}}]}}\n",
			translator.KindAgentgatewayPolicy, "spec.traffic.jwtAuthentication.mod", "unknown field"},
		{"wrong type", "apiVersion: enterpriseagentgateway.solo.io/v1alpha1\nkind: EnterpriseAgentgatewayPolicy\nmetadata: {name: p}\nspec:\n" + target +
			"  traffic: {jwtAuthentication: {mode: 3}}\n",
			translator.KindEnterpriseAgentgatewayPolicy, "spec.traffic.jwtAuthentication.mode", "must be a string"},
		{"wrong apiVersion", "apiVersion: agentgateway.dev/v1\nkind: AgentgatewayPolicy\nmetadata: {name: p}\nspec:\n" + target +
			"  traffic: {authorization: {policy: {matchExpressions: ['true']}}}\n",
			translator.KindAgentgatewayPolicy, "apiVersion", "is not served in agentgateway.dev/v1"},
		{"kind in the wrong case", "apiVersion: agentgateway.dev/v1alpha1\nkind: agentgatewayPolicy\nmetadata: {name: p}\nspec:\n" + target +
			"  traffic: {authorization: {policy: {matchExpressions: ['true']}}}\n",
			translator.KindAgentgatewayPolicy, "kind", "did you mean AgentgatewayPolicy?"},
		{"no targetRefs", "apiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayPolicy\nmetadata: {name: p}\nspec: {traffic: {foo: 1}}\n", "", "", ""},
		{"targetRefs that do not read", "apiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayPolicy\nmetadata: {name: p}\nspec: {targetRefs: 3, traffic: {foo: 1}}\n", "", "", ""},
		{"another kind", "apiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayBackend\nmetadata: {name: p}\nspec: {foo: 1}\n", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.yaml")
			write(t, path, gatewayDoc+"---\n"+route+"---\n"+c.doc)
			res, _, err := Load(path)
			if err == nil {
				t.Fatal("loaded without errors")
			}
			if c.kept == "" {
				if len(res.UnreadablePolicies) != 0 {
					t.Fatalf("kept %+v, want nothing", res.UnreadablePolicies)
				}
				return
			}
			if len(res.UnreadablePolicies) != 1 {
				t.Fatalf("kept %d unreadable policies, want 1 (load error: %v)", len(res.UnreadablePolicies), err)
			}
			u := res.UnreadablePolicies[0]
			k := translator.ObjectKey{Kind: c.kept, Namespace: "default", Name: "p"}
			if u.Field != c.field || !strings.Contains(u.Message, c.msg) ||
				(u.Policy.Kind != "" && u.Policy.Kind != c.kept) || u.Policy.Namespace != k.Namespace || u.Policy.Name != k.Name || len(u.Policy.Spec.TargetRefs) != 1 {
				t.Fatalf("kept %+v (%+v), want %s refused at %s with %q", u, u.Policy, k, c.field, c.msg)
			}
			out := translator.Translate(res, translator.Options{})
			refused := false
			for _, p := range out.Status.Problems() {
				refused = refused || p.Object() == k && p.Field == c.field
			}
			if !refused {
				t.Errorf("the policy is not refused: %v", out.Status.Problems())
			}
			routes := 0
			for _, rc := range out.Gateways["default/gw"].Routes {
				for _, vh := range rc.VirtualHosts {
					for _, r := range vh.Routes {
						if strings.HasPrefix(r.Name, "httproute/default/r/") {
							routes++
							if r.GetDirectResponse().GetStatus() != 500 {
								t.Errorf("route %s is served (%v), want a 500: its policy does not load", r.Name, r.GetAction())
							}
						}
					}
				}
			}
			if routes == 0 {
				t.Error("no route of HTTPRoute default/r")
			}
		})
	}
}
