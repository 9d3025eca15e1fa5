package translator

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
)

// TestOutputKeepsNoState: once a translation is done, its output points to nothing of the
// translation's own state (targets, Gateways in translation, and through them the compiled
// routes): the output is kept (the snapshot) until the next one, and whatever it points to stays
// in memory with it. A message allocated together with a record of the translation (to save an
// allocation) would keep that record and all it points to.
func TestOutputKeepsNoState(t *testing.T) {
	ns, group, kind := "ns", gwv1.Group(backendGroup), gwv1.Kind(KindAgentgatewayBackend)
	res := &Resources{Gateways: []*gwv1.Gateway{{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: ns},
		Spec: gwv1.GatewaySpec{GatewayClassName: "mcpgate", Listeners: []gwv1.Listener{{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType}}}}}}
	backends := map[string]v1alpha1.AgentgatewayBackendSpec{
		"mcp":    {MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{{Name: "t", Static: &v1alpha1.McpTarget{Host: "10.0.0.1", Port: 3000}}}}},
		"dns":    {MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{{Name: "t", Static: &v1alpha1.McpTarget{Host: "mcp.example", Port: 3000}}}}},
		"static": {Static: &v1alpha1.StaticBackend{Host: "10.0.0.2", Port: 80}},
		"ai":     {AI: &v1alpha1.AIBackend{Provider: &v1alpha1.LLMProvider{OpenAI: &v1alpha1.OpenAIConfig{}}}},
	}
	for name, spec := range backends {
		res.Backends = append(res.Backends, &v1alpha1.AgentgatewayBackend{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec})
		res.HTTPRoutes = append(res.HTTPRoutes, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw"}}},
			Hostnames:       []gwv1.Hostname{gwv1.Hostname(name + ".example")},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Group: &group, Kind: &kind, Name: gwv1.ObjectName(name)}}}}}},
		}})
		res.Policies = append(res.Policies, &v1alpha1.AgentgatewayPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.AgentgatewayPolicySpec{
				TargetRefs: []v1alpha1.PolicyTargetReference{{Group: gatewayGroup, Kind: KindHTTPRoute, Name: gwv1.ObjectName(name)}},
				Traffic: &v1alpha1.TrafficPolicy{Authorization: &v1alpha1.Authorization{
					Policy: v1alpha1.AuthorizationPolicy{MatchExpressions: []v1alpha1.CELExpression{`jwt.sub == "a"`}}}}}})
	}

	tr := newTranslation(res, Options{}.withDefaults())
	tr.run()
	out := tr.out
	if p := out.Status.Problems(); len(p) > 0 {
		t.Fatalf("the input has problems: %v", p)
	}
	var freed atomic.Int32
	count := func(n *atomic.Int32) { n.Add(1) }
	want := int32(0)
	for _, bi := range tr.backends {
		if bi.target == nil {
			t.Fatalf("backend %s has no target: %s", bi.key, bi.err)
		}
		runtime.AddCleanup(bi.target, count, &freed)
		want++
	}
	for _, gi := range tr.served {
		runtime.AddCleanup(gi, count, &freed)
		want++
	}
	// The translation is not used from here on: only the output stays reachable. Cleanups run some time after a collection finds their object unreachable: give them a
	// few collections (this waits for an event, it measures no time).
	for range 100 {
		if freed.Load() == want {
			break
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if got := freed.Load(); got != want {
		t.Errorf("the output keeps %d of %d targets and Gateways of the translation alive", want-got, want)
	}
	runtime.KeepAlive(out)
}
