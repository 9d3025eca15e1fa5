package translator_test

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/translator"
)

// accepted returns the Accepted condition of a policy's only ancestor.
func accepted(t *testing.T, st translator.Status, k translator.ObjectKey) *metav1.Condition {
	t.Helper()
	ps := st.Policies[k]
	if ps == nil || len(ps.Ancestors) != 1 {
		t.Fatalf("%s: status %+v, want one ancestor", k, ps)
	}
	c := meta.FindStatusCondition(ps.Ancestors[0].Conditions, string(gwv1.PolicyConditionAccepted))
	if c == nil {
		t.Fatalf("%s: no Accepted condition", k)
	}
	return c
}

// TestSecondJWTPolicyConflicted: the lab with a second, newer JWT policy on its Gateway
// (issuer other.io). The lab's mcp-jwt-auth (solo.io) is served; the second is Conflicted and
// names it, and says so in the warnings; mcp-rbac, which sets no JWT, is plainly Accepted.
func TestSecondJWTPolicyConflicted(t *testing.T) {
	res := loadInputs(t, "testdata/lab.in.yaml")
	for _, p := range res.Policies {
		if p.Name != "mcp-jwt-auth" {
			continue
		}
		p2 := p.DeepCopy()
		p2.Name = "mcp-jwt-auth2"
		p2.CreationTimestamp = metav1.NewTime(p.CreationTimestamp.Add(time.Minute))
		p2.Spec.Traffic.JWTAuthentication.Providers[0].Issuer = "other.io"
		res.Policies = append(res.Policies, p2)
		break
	}
	out := translator.Translate(res, translator.Options{})
	ns := "agentgateway-system"
	key := func(name string) translator.ObjectKey {
		return translator.ObjectKey{Kind: translator.KindEnterpriseAgentgatewayPolicy, Namespace: ns, Name: name}
	}
	c := accepted(t, out.Status, key("mcp-jwt-auth2"))
	if c.Status != metav1.ConditionFalse || c.Reason != string(gwv1.PolicyReasonConflicted) ||
		!strings.Contains(c.Message, "EnterpriseAgentgatewayPolicy agentgateway-system/mcp-jwt-auth sets it") {
		t.Errorf("mcp-jwt-auth2: Accepted %s %s %q, want False Conflicted naming mcp-jwt-auth", c.Status, c.Reason, c.Message)
	}
	for _, name := range []string{"mcp-jwt-auth", "mcp-rbac"} {
		if c := accepted(t, out.Status, key(name)); c.Status != metav1.ConditionTrue || c.Message != "" {
			t.Errorf("%s: Accepted %s %q, want True without a message", name, c.Status, c.Message)
		}
	}
	w := out.Status.Warnings()
	if len(w) != 1 || w[0].Name != "mcp-jwt-auth2" || w[0].Field != "spec.traffic.jwtAuthentication" {
		t.Errorf("warnings %v, want mcp-jwt-auth2's spec.traffic.jwtAuthentication", w)
	}
	pols := out.Gateways[ns+"/agentgateway"].Policies
	if len(pols) != 1 || pols[0].GetJwt().GetProviders()[0].GetIssuer() != "solo.io" {
		t.Fatalf("served policies %v, want one with issuer solo.io", pols)
	}
}

// TestPolicyOnOtherControllersGateway: the lab with a Gateway of another controller (class
// other) and a policy on it. mcpgate writes no ancestor for it and refuses nothing, while a
// policy on a Gateway that does not exist keeps its TargetNotFound ancestor.
func TestPolicyOnOtherControllersGateway(t *testing.T) {
	res := loadInputs(t, "testdata/lab.in.yaml")
	res.GatewayClasses = append(res.GatewayClasses, &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/other"}})
	gw := res.Gateways[0].DeepCopy()
	gw.Name, gw.Spec.GatewayClassName = "gw-other", "other"
	res.Gateways = append(res.Gateways, gw)
	for _, name := range []string{"gw-other", "gw-missing"} {
		p := res.Policies[0].DeepCopy()
		p.Name = "on-" + name
		p.Spec.TargetRefs = p.Spec.TargetRefs[:1]
		p.Spec.TargetRefs[0].Group, p.Spec.TargetRefs[0].Kind, p.Spec.TargetRefs[0].Name = "gateway.networking.k8s.io", "Gateway", gwv1.ObjectName(name)
		res.Policies = append(res.Policies, p)
	}
	out := translator.Translate(res, translator.Options{RequireGatewayClass: true, GatewayClassNames: []string{"enterprise-agentgateway"}})
	kind := res.Policies[0].Kind
	if kind == "" {
		kind = translator.KindAgentgatewayPolicy
	}
	other := out.Status.Policies[translator.ObjectKey{Kind: kind, Namespace: gw.Namespace, Name: "on-gw-other"}]
	if other == nil || len(other.Ancestors) != 0 {
		t.Errorf("policy on gw-other: status %+v, want no ancestor", other)
	}
	for _, p := range out.Status.Problems() {
		if p.Name == "on-gw-other" {
			t.Errorf("policy on gw-other refused: %v", p)
		}
	}
	if c := accepted(t, out.Status, translator.ObjectKey{Kind: kind, Namespace: gw.Namespace, Name: "on-gw-missing"}); c.Reason != string(gwv1.PolicyReasonTargetNotFound) {
		t.Errorf("policy on a missing Gateway: Accepted %s %s, want TargetNotFound", c.Status, c.Reason)
	}
	if len(out.Gateways) != 1 {
		t.Errorf("served %d Gateways, want the lab's only", len(out.Gateways))
	}
}
