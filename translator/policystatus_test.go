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
