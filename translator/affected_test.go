package translator_test

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// TestAffectedConditions: one route under many policies of both kinds, on the route and on its
// rule, some refused, some targeting it twice; a policy on a listener and one on the backend.
// Each target gets one condition per policy kind, in the order of the oldest policy of each
// kind, naming at most eight policies (oldest first, each once), the refused ones apart.
func TestAffectedConditions(t *testing.T) {
	res := benchResources(1, false, 1) // Gateway gw (listener l0), route, backend and policy r0
	routeRef := v1alpha1.PolicyTargetReference{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "r0"}
	policy := func(name, kind, expr string, refs ...v1alpha1.PolicyTargetReference) {
		p := &v1alpha1.AgentgatewayPolicy{
			TypeMeta:   metav1.TypeMeta{Kind: kind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench"},
			Spec: v1alpha1.AgentgatewayPolicySpec{TargetRefs: refs, Traffic: &v1alpha1.TrafficPolicy{Authorization: &v1alpha1.Authorization{
				Policy: v1alpha1.AuthorizationPolicy{MatchExpressions: []v1alpha1.CELExpression{v1alpha1.CELExpression(expr)}}}}},
		}
		res.Policies = append(res.Policies, p)
	}
	rule := gwv1.SectionName("main")
	res.HTTPRoutes[0].Spec.Rules[0].Name = &rule
	ruleRef := routeRef
	ruleRef.SectionName = &rule
	for i := range 10 {
		if i == 7 {
			policy("a07", "", "true", ruleRef, routeRef)
			continue
		}
		policy(fmt.Sprintf("a%02d", i), "", "true", routeRef)
	}
	policy("a035", "", "true", ruleRef)
	policy("b0", "", "(((", routeRef)
	policy("b1", "", "(((", routeRef, routeRef)
	policy("e0", translator.KindEnterpriseAgentgatewayPolicy, "true", routeRef, routeRef)
	section := gwv1.SectionName("l0")
	policy("g0", "", "true", v1alpha1.PolicyTargetReference{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "gw", SectionName: &section})
	policy("k0", "", "true", v1alpha1.PolicyTargetReference{Group: "agentgateway.dev", Kind: "AgentgatewayBackend", Name: "r0"})
	out := translator.Translate(res, translator.Options{})

	type want struct{ typ, reason, msg string }
	check := func(what string, got []metav1.Condition, wants ...want) {
		t.Helper()
		var affected []metav1.Condition
		for _, c := range got {
			if c.Type == wants[0].typ || c.Type == wants[len(wants)-1].typ {
				affected = append(affected, c)
			}
		}
		if len(affected) != len(wants) {
			t.Fatalf("%s: Affected conditions %+v, want %d", what, affected, len(wants))
		}
		for i, w := range wants {
			c := affected[i]
			if c.Type != w.typ || c.Status != metav1.ConditionTrue || c.Reason != w.reason || c.Message != w.msg {
				t.Errorf("%s: condition %d is %s %s %s %q, want %s True %s %q", what, i, c.Type, c.Status, c.Reason, c.Message, w.typ, w.reason, w.msg)
			}
		}
	}
	nn := types.NamespacedName{Namespace: "bench", Name: "r0"}
	route := out.Status.HTTPRoutes[nn]
	if route == nil || len(route.Parents) != 1 {
		t.Fatalf("route status %+v, want one parent", route)
	}
	check("route", route.Parents[0].Conditions,
		want{"mcpgate.dev/AgentgatewayPolicyAffected", translator.ReasonPolicyRefused,
			"applied here: AgentgatewayPolicy a00, a01, a02, a03, a035, a04, a05, a06 and 4 more; " +
				"refused (see their status), so the routes they apply to answer 500 until they are fixed: AgentgatewayPolicy b0, b1"},
		want{"mcpgate.dev/EnterpriseAgentgatewayPolicyAffected", translator.ReasonPolicyAffected,
			"applied here: EnterpriseAgentgatewayPolicy e0"})
	gw := out.Status.Gateways[types.NamespacedName{Namespace: "bench", Name: "gw"}]
	if gw == nil || len(gw.Listeners) != 1 {
		t.Fatalf("gateway status %+v, want one listener", gw)
	}
	check("listener l0", gw.Listeners[0].Conditions,
		want{"mcpgate.dev/AgentgatewayPolicyAffected", translator.ReasonPolicyAffected, "applied here: AgentgatewayPolicy g0"})
	for _, c := range gw.Conditions {
		if c.Type == "mcpgate.dev/AgentgatewayPolicyAffected" {
			t.Errorf("gateway: %+v, want the listener's policy on the listener only", c)
		}
	}
	check("backend", out.Status.Backends[nn].Conditions,
		want{"mcpgate.dev/AgentgatewayPolicyAffected", translator.ReasonPolicyAffected, "applied here: AgentgatewayPolicy k0"})
}

// TestAffectedLeavesOutConflicted: an object's Affected condition names the policies that take
// effect there. A policy that loses its only settings (JWT authentication, backend auth) to an
// older policy on the same target (Conflicted) is not among them there, while one that keeps
// something (its rules, its backend auth through another target) is: in backend-auth-conflict,
// route-key on route tools and key-both on route other; in policy-conflict, mcp-jwt-auth2 on the
// Gateway.
func TestAffectedLeavesOutConflicted(t *testing.T) {
	affected := func(conds []metav1.Condition, typ string) string {
		t.Helper()
		for _, c := range conds {
			if c.Type == typ {
				return c.Message
			}
		}
		t.Fatalf("no %s condition in %v", typ, conds)
		return ""
	}
	out := translator.Translate(loadInputs(t, "testdata/backend-auth-conflict.in.yaml"), translator.Options{})
	for route, want := range map[string]string{
		"tools": "applied here: AgentgatewayPolicy route-passthrough, route-key-and-rules",
		"other": "applied here: AgentgatewayPolicy other-old",
		"third": "applied here: AgentgatewayPolicy key-both",
	} {
		st := out.Status.HTTPRoutes[types.NamespacedName{Namespace: "default", Name: route}]
		if st == nil || len(st.Parents) != 1 {
			t.Fatalf("route %s: status %v, want one parent", route, st)
		}
		if got := affected(st.Parents[0].Conditions, "mcpgate.dev/AgentgatewayPolicyAffected"); got != want {
			t.Errorf("route %s: Affected %q, want %q", route, got, want)
		}
	}
	out = translator.Translate(loadInputs(t, "testdata/policy-conflict.in.yaml"), translator.Options{})
	gw := out.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	if gw == nil {
		t.Fatal("no status of Gateway default/gw")
	}
	if got, want := affected(gw.Conditions, "mcpgate.dev/EnterpriseAgentgatewayPolicyAffected"), "applied here: EnterpriseAgentgatewayPolicy mcp-jwt-auth"; got != want {
		t.Errorf("Gateway: Affected %q, want %q", got, want)
	}
}
