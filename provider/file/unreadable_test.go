package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/translator"
)

// TestPolicyThatDoesNotLoadFailsClosed: a policy document that does not load (an unknown field,
// a value of the wrong type, a key given twice, a policy kind under the wrong apiVersion, in the
// wrong case or misspelt in an agentgateway group) is refused, and also kept as far as it reads
// (kind, metadata, the targetRefs whose group, kind and name are strings) as an unreadable policy,
// so that the route it targets answers 500 rather than going unprotected. One that may be a
// policy but whose name or targets do not read (a YAML syntax error, a misspelt metadata) makes
// its file blind (Watch does not start on it); other kinds keep nothing and are not.
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
	const jwt = "  traffic: {jwtAuthentication: {mode: Strict, providers: [{issuer: x, jwks: {inline: '{}'}}]}}\n"
	policy := func(apiVersion, kind, rest string) string {
		return "apiVersion: " + apiVersion + "\nkind: " + kind + "\n" + rest
	}
	const ag = "agentgateway.dev/v1alpha1"
	for _, c := range []struct {
		name, doc  string
		kept       string // the kept policy's kind, "" when nothing is kept
		field, msg string // the refusal of the kept policy
		blind      bool   // nothing kept although it may be a policy
	}{
		{"unknown field", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+
			"  traffic: {jwtAuthentication: {mod: Strict, providers: [{issuer: x, jwks: {inline: '{}'}}]}}\n"),
			translator.KindAgentgatewayPolicy, "spec.traffic.jwtAuthentication.mod", "unknown field", false},
		{"wrong type", policy("enterpriseagentgateway.solo.io/v1alpha1", "EnterpriseAgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+
			"  traffic: {jwtAuthentication: {mode: 3}}\n"),
			translator.KindEnterpriseAgentgatewayPolicy, "spec.traffic.jwtAuthentication.mode", "must be a string", false},
		{"wrong apiVersion", policy("agentgateway.dev/v1", "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+jwt),
			translator.KindAgentgatewayPolicy, "apiVersion", "is not served in agentgateway.dev/v1", false},
		{"misspelt group", policy("agentgateway.dv/v1alpha1", "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+jwt),
			translator.KindAgentgatewayPolicy, "apiVersion", "is not served in agentgateway.dv/v1alpha1", false},
		{"kind in the wrong case", policy(ag, "agentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+jwt),
			translator.KindAgentgatewayPolicy, "kind", "did you mean AgentgatewayPolicy?", false},
		{"misspelt kind", policy(ag, "AgentgatewayPolicies", "metadata: {name: p}\nspec:\n"+target+jwt),
			translator.KindAgentgatewayPolicy, "kind", `no kind "AgentgatewayPolicies"`, false},
		{"misspelt enterprise kind", policy("enterpriseagentgateway.solo.io/v1alpha1", "EnterpriseAgentGatewayPolcy", "metadata: {name: p}\nspec:\n"+target+jwt),
			translator.KindEnterpriseAgentgatewayPolicy, "kind", `no kind "EnterpriseAgentGatewayPolcy"`, false},
		{"key given twice", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+jwt+"  traffic: {}\n"),
			translator.KindAgentgatewayPolicy, "", `key "traffic" already set`, false},
		{"sectionName of the wrong type", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+
			"  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: 1}]\n"+jwt),
			translator.KindAgentgatewayPolicy, "spec.targetRefs[0].sectionName", "must be a string", false},
		{"YAML syntax error", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+target+
			"  traffic: {jwtAuthentication: {mode: Strict, providers: [{issuer: 'x, jwks: {inline: '{}'}}]}}\n"), "", "", "", true},
		{"misspelt metadata", policy(ag, "AgentgatewayPolicy", "metdata: {name: p}\nspec:\n"+target+jwt), "", "", "", true},
		{"no targetRefs", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec: {traffic: {foo: 1}}\n"), "", "", "", true},
		{"targetRefs that do not read", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec: {targetRefs: 3, traffic: {foo: 1}}\n"), "", "", "", true},
		{"BackendTLSPolicy", policy("gateway.networking.k8s.io/v1", "BackendTLSPolicy", "metadata: {name: b}\nspec:\n"+
			"  targetRefs: [{group: '', kind: Service, name: svc}]\n  validation: {hostname: a.example, wellKnownCACertificates: System, subjectAltName: []}\n"), "", "", "", true},
		{"a targetRef that does not read", policy(ag, "AgentgatewayPolicy", "metadata: {name: p}\nspec:\n"+
			"  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}, {group: gateway.networking.k8s.io, kind: HTTPRoute, name: 123}]\n"+jwt),
			translator.KindAgentgatewayPolicy, "spec.targetRefs[1].name", "must be a string", true},
		{"misspelt BackendTLSPolicy", policy("gateway.networking.k8s.io/v1", "BackendTLSPolicies", "metadata: {name: b}\nspec: {targetRefs: []}\n"), "", "", "", true},
		{"a kustomization", "resources:\n- gw.yaml\n", "", "", "", false},
		{"a YAML list", "- a\n- b\n", "", "", "", false},
		{"another kind", policy(ag, "AgentgatewayBackend", "metadata: {name: p}\nspec: {foo: 1}\n"), "", "", "", false},
		{"another kind in the wrong case", policy("gateway.networking.k8s.io/v1", "HTTPROUTE", "metadata: {name: q}\n"), "", "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.yaml")
			write(t, path, gatewayDoc+"---\n"+route+"---\n"+c.doc)
			var cache Cache
			res, _, err := cache.Load(path)
			if err == nil {
				t.Fatal("loaded without errors")
			}
			if blind := len(cache.blind()) > 0; blind != c.blind {
				t.Errorf("blind: %v, want %v (load error: %v)", blind, c.blind, err)
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

// TestWatchBlind: Watch does not start on a document that does not load and may be a policy whose
// targets do not read (a YAML syntax error in a policy file): the routes it may protect cannot be
// told, and there is no last good version to serve instead. Once started, a new file with such a
// document is held back whole, so that its route is not served without its policy, and served
// once it loads.
func TestWatchBlind(t *testing.T) {
	const broken = "apiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayPolicy\nmetadata: {name: p}\nspec:\n" +
		"  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]\n  traffic: {authorization: {policy: {matchExpressions: ['false}}}\n"
	const route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: gw}]}\n"
	dir := t.TempDir()
	write(t, filepath.Join(dir, "gw.yaml"), gatewayDoc)
	write(t, filepath.Join(dir, "policy.yaml"), broken)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Watch(ctx, []string{dir}, func(*translator.Resources, Sources, error) []string {
		t.Error("Watch served a load with a blind file")
		cancel()
		return nil
	})
	if !errors.Is(err, ErrBlind) || !strings.Contains(err.Error(), "policy.yaml: document 1: not valid YAML") {
		t.Fatalf("Watch = %v, want ErrBlind naming policy.yaml's error", err)
	}

	if err := os.Remove(filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	ch, stop := startWatch(t, dir)
	t.Cleanup(stop)
	if l := next(t, ch); len(l.res.Gateways) != 1 {
		t.Fatalf("first load: %d gateways", len(l.res.Gateways))
	}
	added := filepath.Join(dir, "added.yaml")
	write(t, added, route+"---\n"+broken)
	l := next(t, ch)
	if len(l.res.HTTPRoutes) != 0 || !slices.Contains(l.kept, added+": nothing of it is served: it is new and its content was refused") {
		t.Fatalf("a new blind file: %d routes, kept %q; want it held back whole", len(l.res.HTTPRoutes), l.kept)
	}
	// A policy moved from a served file into a new one that does not load: the served file keeps
	// its served content (with the policy) while the new one is held back.
	write(t, added, route+"---\n"+strings.Replace(broken, "'false}", "'false']}", 1))
	if l := next(t, ch); len(l.res.HTTPRoutes) != 1 || len(l.res.Policies) != 1 || l.err != nil {
		t.Fatalf("fixed: %d routes, %d policies, error %v; want both served", len(l.res.HTTPRoutes), len(l.res.Policies), l.err)
	}
	moved := filepath.Join(dir, "moved.yaml")
	write(t, moved, broken)
	write(t, added, route)
	l = next(t, ch)
	keeps := func(f string) bool {
		return slices.ContainsFunc(l.kept, func(k string) bool { return strings.HasPrefix(k, f+":") })
	}
	for !keeps(moved) || !keeps(added) {
		if len(l.res.Policies) == 0 {
			break // served without the policy: failed below
		}
		l = next(t, ch) // the two writes may come as two reloads
	}
	if len(l.res.HTTPRoutes) != 1 || len(l.res.Policies) != 1 {
		t.Fatalf("a policy moved into a new file that does not load: %d routes, %d policies (kept %q); want the route with its policy, as served",
			len(l.res.HTTPRoutes), len(l.res.Policies), l.kept)
	}
	write(t, moved, strings.Replace(broken, "'false}", "'false']}", 1))
	if l := next(t, ch); len(l.res.HTTPRoutes) != 1 || len(l.res.Policies) != 1 || l.err != nil {
		t.Fatalf("fixed: %d routes, %d policies, error %v; want both served", len(l.res.HTTPRoutes), len(l.res.Policies), l.err)
	}
}
