package kubernetes

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var (
	ours   = gwv1.GatewayController("mcpgate.dev/gateway-controller")
	theirs = gwv1.GatewayController("example.com/other")
)

func cond(typ string, status metav1.ConditionStatus, at time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: typ, LastTransitionTime: metav1.NewTime(at)}
}

func TestMergeConditionsKeepsTimeOfUnchangedStatus(t *testing.T) {
	then, now := time.Unix(1000, 0), metav1.NewTime(time.Unix(2000, 0))
	have := []metav1.Condition{cond("Accepted", metav1.ConditionTrue, then), cond("Programmed", metav1.ConditionFalse, then)}
	want := []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"},
		{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed"},
		{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs"},
	}
	got := mergeConditions(have, want, ours, now)
	for typ, at := range map[string]time.Time{"Accepted": then, "Programmed": now.Time, "ResolvedRefs": now.Time} {
		if c := meta.FindStatusCondition(got, typ); c == nil || !c.LastTransitionTime.Time.Equal(at) {
			t.Errorf("%s: lastTransitionTime %v, want %v", typ, c, at)
		}
	}
	if !want[0].LastTransitionTime.IsZero() {
		t.Error("mergeConditions changed its input")
	}
}

// TestMergeConditionsKeepsOthers: Gateway API (gateway_types.go, gatewayclass_types.go status
// Conditions): "Implementations MUST NOT remove or reorder Conditions that they are not directly
// responsible for. For example, if an implementation sees a Condition with type
// special.io/SomeField, it MUST NOT remove, change or update that Condition." mcpgate's stale
// types go; the others stay in their place, on GatewayClasses, Gateways, listeners and route
// parents alike; an unchanged status merges to what it was (no write).
func TestMergeConditionsKeepsOthers(t *testing.T) {
	then, now := time.Unix(1000, 0), metav1.NewTime(time.Unix(2000, 0))
	foreign := cond("special.io/SomeField", metav1.ConditionTrue, then)
	kuadrant := cond("kuadrant.io/AuthPolicyAffected", metav1.ConditionTrue, then)
	have := []metav1.Condition{foreign, cond("Accepted", metav1.ConditionTrue, then), kuadrant,
		cond("PartiallyInvalid", metav1.ConditionTrue, then), cond("mcpgate.dev/AgentgatewayPolicyAffected", metav1.ConditionTrue, then)}
	want := []metav1.Condition{
		{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs", ObservedGeneration: 1},
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", ObservedGeneration: 1},
	}
	types := func(l []metav1.Condition) string {
		var out []string
		for _, c := range l {
			out = append(out, c.Type)
		}
		return strings.Join(out, " ")
	}
	const wantTypes = "special.io/SomeField Accepted kuadrant.io/AuthPolicyAffected ResolvedRefs"
	got := mergeConditions(have, want, ours, now)
	if types(got) != wantTypes {
		t.Errorf("merged %s, want %s (others kept in place, mcpgate's stale PartiallyInvalid and Affected gone, new last)", types(got), wantTypes)
	}
	if c := meta.FindStatusCondition(got, foreign.Type); c == nil || *c != foreign {
		t.Errorf("special.io/SomeField changed: %+v", c)
	}
	if again := mergeConditions(got, want, ours, metav1.NewTime(time.Unix(3000, 0))); !reflect.DeepEqual(again, got) {
		t.Errorf("merging the same again gives %+v, want %+v (no write)", again, got)
	}
	gw := gatewayStatus(gwv1.GatewayStatus{Conditions: have, Listeners: []gwv1.ListenerStatus{{Name: "http", Conditions: have}}},
		&gwv1.GatewayStatus{Conditions: want, Listeners: []gwv1.ListenerStatus{{Name: "http", Conditions: want}}},
		nil, nil, nil, false, gatewayKey{Namespace: "ns", Name: "gw"}, ours, now)
	if types(gw.Conditions) != wantTypes || types(gw.Listeners[0].Conditions) != wantTypes {
		t.Errorf("Gateway conditions %s, listener conditions %s, want %s", types(gw.Conditions), types(gw.Listeners[0].Conditions), wantTypes)
	}
	ref := gwv1.ParentReference{Name: "gw"}
	parents := mergeParents([]gwv1.RouteParentStatus{{ParentRef: ref, ControllerName: ours, Conditions: have}},
		[]gwv1.RouteParentStatus{{ParentRef: ref, ControllerName: ours, Conditions: want}}, ours, now)
	if types(parents[0].Conditions) != wantTypes {
		t.Errorf("route parent conditions %s, want %s", types(parents[0].Conditions), wantTypes)
	}
	other := gwv1.GatewayController("example.com/gateway-controller")
	if got := mergeConditions([]metav1.Condition{cond("example.com/AgentgatewayPolicyAffected", metav1.ConditionTrue, then)}, nil, other, now); len(got) != 0 {
		t.Errorf("controller %s: its own stale Affected condition kept: %+v", other, got)
	}
}

func TestMergeParentsKeepsOtherControllers(t *testing.T) {
	then, now := time.Unix(1000, 0), metav1.NewTime(time.Unix(2000, 0))
	gw := gwv1.ParentReference{Name: "agentgateway"}
	other := gwv1.ParentReference{Name: "elsewhere"}
	have := []gwv1.RouteParentStatus{
		{ParentRef: other, ControllerName: theirs, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, then)}},
		{ParentRef: gw, ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, then)}},
		{ParentRef: other, ControllerName: ours, Conditions: []metav1.Condition{cond("Accepted", metav1.ConditionTrue, then)}},
	}
	want := []gwv1.RouteParentStatus{{ParentRef: gw, ControllerName: ours, Conditions: []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"},
		{Type: "ResolvedRefs", Status: metav1.ConditionFalse, Reason: "BackendNotFound"},
	}}}
	got := mergeParents(have, want, ours, now)
	if len(got) != 2 {
		t.Fatalf("parents %+v, want the other controller's and ours for agentgateway", got)
	}
	if got[0].ControllerName != theirs || !got[0].Conditions[0].LastTransitionTime.Time.Equal(then) {
		t.Errorf("other controller's parent changed: %+v", got[0])
	}
	if got[1].ParentRef.Name != "agentgateway" || !got[1].Conditions[0].LastTransitionTime.Time.Equal(then) ||
		!got[1].Conditions[1].LastTransitionTime.Time.Equal(now.Time) {
		t.Errorf("our parent %+v: want Accepted's old time kept and ResolvedRefs at now", got[1])
	}
	if got := mergeParents(have, nil, ours, now); len(got) != 1 || got[0].ControllerName != theirs {
		t.Errorf("no parents of ours: %+v, want only the other controller's", got)
	}
	if got := mergeParents(have[1:2], nil, ours, now); got == nil || len(got) != 0 {
		t.Errorf("our last parent gone: %#v, want an empty list (status.parents is required: null is refused)", got)
	}
}

func TestMergeAncestors(t *testing.T) {
	now := metav1.NewTime(time.Unix(2000, 0))
	have := []gwv1.PolicyAncestorStatus{{AncestorRef: gwv1.ParentReference{Name: "x"}, ControllerName: theirs}}
	want := []gwv1.PolicyAncestorStatus{{AncestorRef: gwv1.ParentReference{Name: "agentgateway"}, ControllerName: ours,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionFalse, Reason: "Invalid", Message: "bad CEL"}}}}
	got := mergeAncestors(have, want, ours, now)
	if len(got) != 2 || got[0].ControllerName != theirs || got[1].Conditions[0].Message != "bad CEL" || !got[1].Conditions[0].LastTransitionTime.Equal(&now) {
		t.Errorf("ancestors %+v", got)
	}
}

// TestMergeOwnedOrderAndLimit: every entry keeps its place, this controller's new ones come last
// (another controller that merges alike then writes the same order); this controller's entries
// past the list's limit are left out, never another controller's.
func TestMergeOwnedOrderAndLimit(t *testing.T) {
	now := metav1.NewTime(time.Unix(2000, 0))
	anc := func(name string, ctrl gwv1.GatewayController) gwv1.PolicyAncestorStatus {
		return gwv1.PolicyAncestorStatus{AncestorRef: gwv1.ParentReference{Name: gwv1.ObjectName(name)}, ControllerName: ctrl}
	}
	names := func(l []gwv1.PolicyAncestorStatus) string {
		var out []string
		for _, a := range l {
			out = append(out, string(a.AncestorRef.Name)+"/"+string(a.ControllerName)[:4])
		}
		return strings.Join(out, " ")
	}
	have := []gwv1.PolicyAncestorStatus{anc("a", ours), anc("x", theirs), anc("b", ours)}
	want := []gwv1.PolicyAncestorStatus{anc("b", ours), anc("a", ours), anc("c", ours)}
	if got, wantOrder := names(mergeAncestors(have, want, ours, now)), names([]gwv1.PolicyAncestorStatus{anc("a", ours), anc("x", theirs), anc("b", ours), anc("c", ours)}); got != wantOrder {
		t.Errorf("merged %s, want %s", got, wantOrder)
	}
	var full []gwv1.PolicyAncestorStatus
	for i := range maxAncestors - 1 {
		full = append(full, anc(fmt.Sprint("t", i), theirs))
	}
	got := mergeAncestors(full, want, ours, now)
	if len(got) != maxAncestors || got[maxAncestors-1].AncestorRef.Name != "b" || got[0].ControllerName != theirs {
		t.Errorf("%d ancestors of another controller and 3 of ours merged to %s; want theirs and our first, %d in all", maxAncestors-1, names(got), maxAncestors)
	}
}

func TestServiceAddresses(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.0.0.7", "fd00::7"}}}
	if got := serviceAddresses(svc); len(got) != 2 || got[0].Value != "10.0.0.7" || *got[0].Type != gwv1.IPAddressType {
		t.Errorf("cluster IPs: %+v", got)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.5"}, {Hostname: "gw.example.com"}}
	got := serviceAddresses(svc)
	if len(got) != 2 || got[0].Value != "203.0.113.5" || got[1].Value != "gw.example.com" || *got[1].Type != gwv1.HostnameAddressType {
		t.Errorf("load balancer: %+v", got)
	}
	if got := serviceAddresses(&corev1.Service{Spec: corev1.ServiceSpec{ClusterIPs: []string{"None"}}}); len(got) != 0 {
		t.Errorf("headless Service: %+v", got)
	}
}

func TestGatewayStatusProgrammed(t *testing.T) {
	now := metav1.NewTime(time.Unix(2000, 0))
	key := gatewayKey{Namespace: "ns", Name: "gw"}
	want := &gwv1.GatewayStatus{Conditions: []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"},
		{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed"},
	}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw"}, Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.0.0.7"}}}
	for _, c := range []struct {
		name    string
		svc     *corev1.Service
		planes  map[gatewayKey]dataPlaneState
		deploys bool
		status  metav1.ConditionStatus
		reason  string
	}{
		{"applied, available, with address", svc, map[gatewayKey]dataPlaneState{key: {}}, true, metav1.ConditionTrue, "Programmed"},
		{"user's data plane", svc, nil, false, metav1.ConditionTrue, "Programmed"},
		{"not applied", svc, map[gatewayKey]dataPlaneState{}, true, metav1.ConditionFalse, "Pending"},
		{"apply failed", svc, map[gatewayKey]dataPlaneState{key: {err: errors.New("Deployment ns/gw exists")}}, true, metav1.ConditionFalse, "Invalid"},
		{"no available replica", svc, map[gatewayKey]dataPlaneState{key: {unavailable: "Deployment ns/gw has no available replica yet"}}, true, metav1.ConditionFalse, "NoResources"},
		{"no Service", nil, nil, false, metav1.ConditionFalse, "AddressNotAssigned"},
		{"no address", &corev1.Service{}, nil, false, metav1.ConditionFalse, "AddressNotAssigned"},
	} {
		got := gatewayStatus(gwv1.GatewayStatus{}, want, nil, c.svc, c.planes, c.deploys, key, ours, now)
		p := meta.FindStatusCondition(got.Conditions, "Programmed")
		if p.Status != c.status || p.Reason != c.reason {
			t.Errorf("%s: Programmed %s/%s %q, want %s/%s", c.name, p.Status, p.Reason, p.Message, c.status, c.reason)
		}
	}
	if want.Conditions[1].Status != metav1.ConditionTrue {
		t.Error("gatewayStatus changed the translator's status")
	}

	// spec.addresses the translator found unusable: Programmed when the Service has them all.
	unusable := &gwv1.GatewayStatus{Conditions: []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted"},
		{Type: "Programmed", Status: metav1.ConditionFalse, Reason: "AddressNotUsable", Message: "requested addresses are not assigned"},
	}}
	lb := svc.DeepCopy()
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "fd00::5"}, {Hostname: "gw.example.com"}}
	ip, host := gwv1.IPAddressType, gwv1.HostnameAddressType
	for _, c := range []struct {
		name      string
		requested []gwv1.GatewaySpecAddress
		status    metav1.ConditionStatus
	}{
		{"the Service's IP, written otherwise, and hostname", []gwv1.GatewaySpecAddress{{Value: "fd00:0::5"}, {Type: &host, Value: "GW.example.com"}}, metav1.ConditionTrue},
		{"an IP the Service does not have", []gwv1.GatewaySpecAddress{{Type: &ip, Value: "fd00::6"}}, metav1.ConditionFalse},
		{"the Service's hostname as an IP address", []gwv1.GatewaySpecAddress{{Type: &ip, Value: "gw.example.com"}}, metav1.ConditionFalse},
	} {
		got := gatewayStatus(gwv1.GatewayStatus{}, unusable, c.requested, lb, nil, false, key, ours, now)
		if p := meta.FindStatusCondition(got.Conditions, "Programmed"); p.Status != c.status {
			t.Errorf("%s: Programmed %s/%s, want %s", c.name, p.Status, p.Reason, c.status)
		}
	}
}

func TestStatusManager(t *testing.T) {
	if got := statusManager("mcpgate.dev/gateway-controller"); got != "mcpgate.dev/gateway-controller" {
		t.Errorf("status manager %q, want the controllerName", got)
	}
	long := "example.com/" + strings.Repeat("x", 200)
	a, b := statusManager(long), statusManager(long+"y")
	if len(a) > 128 || a == b || !strings.HasPrefix(a, FieldOwner) {
		t.Errorf("status managers of long controllerNames %q, %q: want distinct names of at most 128 characters", a, b)
	}
}
