package kubernetes_test

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestRouteLosesItsLastParent follows HTTPRoutes whose last Gateway served by mcpgate goes away
// in each way it can: the parentRef edited to another Gateway, the Gateway deleted, the Gateway
// moved to a class mcpgate does not serve. The status keeps no entry of mcpgate's
// (status.parents is a required list: it becomes empty, not null), another controller's entry is
// kept, and a policy on a route that lost its Gateway names the route as its ancestor instead.
func TestRouteLosesItsLastParent(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/lost-parents", "lost-parents"
	route := func(name, parent string) string {
		return fmt.Sprintf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: %s}
spec:
  parentRefs: [{name: %s}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
`, name, ns, parent)
	}
	const policy = `---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: on-edited, namespace: ` + ns + `}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: edited}]
  traffic:
    authorization:
      policy:
        matchExpressions: ['request.method == "POST"']
`
	gateway := func(name, class string) string { return "---\n" + string(httpGateway(ns, name, class)) }
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: lost-parents-elsewhere}
spec: {controllerName: example.com/elsewhere}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: `+ns+`}
spec: {ports: [{port: 80}]}
`+gateway("deleted", "lost-parents")+gateway("moved", "lost-parents")+
		route("edited", "deleted")+route("on-deleted", "deleted")+route("on-moved", "moved")+policy), "apply", "-f", "-")
	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName})

	routeKey := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }
	ours := func(r *gwv1.HTTPRoute) []gwv1.RouteParentStatus {
		var out []gwv1.RouteParentStatus
		for _, p := range r.Status.Parents {
			if p.ControllerName == ctrlName {
				out = append(out, p)
			}
		}
		return out
	}
	eventually(t, "routes and policy accepted", func() error {
		for route, parent := range map[string]string{"edited": "deleted", "on-deleted": "deleted", "on-moved": "moved"} {
			r := get(t, routeKey(route), &gwv1.HTTPRoute{})
			p := ours(r)
			if len(p) != 1 || string(p[0].ParentRef.Name) != parent {
				return fmt.Errorf("route %s: parents %+v, want ours for %s", route, r.Status.Parents, parent)
			}
			if err := condition(p[0].Conditions, "Accepted", metav1.ConditionTrue, "Accepted", r.Generation); err != nil {
				return fmt.Errorf("route %s: %w", route, err)
			}
		}
		pol := get(t, routeKey("on-edited"), &v1alpha1.AgentgatewayPolicy{})
		if a := pol.Status.Ancestors; len(a) != 1 || a[0].ControllerName != ctrlName || a[0].AncestorRef.Name != "deleted" {
			return fmt.Errorf("policy ancestors %+v, want ours for the Gateway deleted", a)
		}
		return nil
	})
	// Another controller's parent on one route: it stays when mcpgate's goes.
	mustKubectl(t, nil, "-n", ns, "patch", "httproute", "on-moved", "--subresource=status", "--type=json", "-p",
		`[{"op":"add","path":"/status/parents/-","value":{"parentRef":{"name":"moved"},"controllerName":"example.com/elsewhere",`+
			`"conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}]`)

	mustKubectl(t, []byte(route("edited", "nowhere")+gateway("moved", "lost-parents-elsewhere")), "apply", "-f", "-")
	mustKubectl(t, nil, "-n", ns, "delete", "gateway", "deleted")
	eventually(t, "mcpgate's entries removed", func() error {
		for _, name := range []string{"edited", "on-deleted", "on-moved"} {
			r := get(t, routeKey(name), &gwv1.HTTPRoute{})
			if p := ours(r); len(p) != 0 {
				return fmt.Errorf("route %s keeps mcpgate's parents %+v", name, p)
			}
		}
		if r := get(t, routeKey("on-moved"), &gwv1.HTTPRoute{}); len(r.Status.Parents) != 1 || r.Status.Parents[0].ControllerName != "example.com/elsewhere" {
			return fmt.Errorf("route on-moved: parents %+v, want the other controller's kept", r.Status.Parents)
		}
		if a := get(t, routeKey("on-edited"), &v1alpha1.AgentgatewayPolicy{}).Status.Ancestors; len(a) != 1 ||
			a[0].AncestorRef.Kind == nil || *a[0].AncestorRef.Kind != "HTTPRoute" || a[0].AncestorRef.Name != "edited" {
			return fmt.Errorf("policy ancestors %+v, want only the route edited (it takes effect on no Gateway)", a)
		}
		return nil
	})
}

// TestGatewayMovedToAnotherClass moves a Gateway mcpgate served to a class it does not serve:
// mcpgate's conditions, addresses and listener entries go (Gateway API: the new class's controller
// owns the status; meanwhile the Gateway reads "Waiting for controller" as a new one does). What
// that controller writes afterwards, and the status of a Gateway mcpgate never served, are left
// alone.
func TestGatewayMovedToAnotherClass(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/moved-gateway", "moved-gateway"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: moved-gateway-elsewhere}
spec: {controllerName: example.com/elsewhere}
---
# The Gateway's addresses, as a user's own data plane gives them.
apiVersion: v1
kind: Service
metadata:
  name: envoy
  namespace: `+ns+`
  labels: {gateway.networking.k8s.io/gateway-name: gw}
spec: {ports: [{port: 8080}]}
`), "apply", "-f", "-")
	for name, class := range map[string]string{"gw": ns, "stays": ns, "theirs": "moved-gateway-elsewhere"} {
		mustKubectl(t, httpGateway(ns, name, class), "apply", "-f", "-")
	}
	// The other controller's status, written as kubectl writes it (another field manager).
	theirStatus := func(name string, generation int64) {
		mustKubectl(t, nil, "-n", ns, "patch", "gateway", name, "--subresource=status", "--type=merge", "-p", fmt.Sprintf(
			`{"status":{"addresses":[{"type":"IPAddress","value":"10.9.9.9"}],"conditions":[`+
				`{"type":"Accepted","status":"True","reason":"Accepted","message":"elsewhere","observedGeneration":%[1]d,"lastTransitionTime":"2026-01-01T00:00:00Z"},`+
				`{"type":"Programmed","status":"True","reason":"Programmed","message":"elsewhere","observedGeneration":%[1]d,"lastTransitionTime":"2026-01-01T00:00:00Z"}],`+
				`"listeners":[{"name":"http","attachedRoutes":0,"supportedKinds":[],"conditions":[`+
				`{"type":"Accepted","status":"True","reason":"Accepted","message":"elsewhere","observedGeneration":%[1]d,"lastTransitionTime":"2026-01-01T00:00:00Z"}]}]}}`, generation))
	}
	theirStatus("theirs", 1)
	theirs := get(t, types.NamespacedName{Namespace: ns, Name: "theirs"}, &gwv1.Gateway{})

	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName})
	key := types.NamespacedName{Namespace: ns, Name: "gw"}
	eventually(t, "mcpgate's status", func() error {
		gw := get(t, key, &gwv1.Gateway{})
		if err := condition(gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation); err != nil {
			return err
		}
		if len(gw.Status.Addresses) != 1 || len(gw.Status.Listeners) != 1 {
			return fmt.Errorf("addresses %+v, listeners %+v", gw.Status.Addresses, gw.Status.Listeners)
		}
		return nil
	})

	mustKubectl(t, httpGateway(ns, "gw", "moved-gateway-elsewhere"), "apply", "-f", "-")
	eventually(t, "mcpgate's status gone", func() error {
		gw := get(t, key, &gwv1.Gateway{})
		if len(gw.Status.Addresses) != 0 || len(gw.Status.Listeners) != 0 {
			return fmt.Errorf("addresses %+v, listeners %+v", gw.Status.Addresses, gw.Status.Listeners)
		}
		for _, c := range gw.Status.Conditions {
			if c.Status != metav1.ConditionUnknown || c.Reason != "Pending" || c.ObservedGeneration != 0 {
				return fmt.Errorf("condition %+v, want only the API server's defaults (Unknown, Pending)", c)
			}
		}
		return nil
	})
	theirStatus("gw", get(t, key, &gwv1.Gateway{}).Generation)
	written := get(t, key, &gwv1.Gateway{})
	for _, r := range []string{"after-1", "after-2"} {
		routeAfterPass(t, ns, "stays", r)
	}
	for _, g := range []*gwv1.Gateway{written, theirs} {
		if now := get(t, client.ObjectKeyFromObject(g), &gwv1.Gateway{}); now.ResourceVersion != g.ResourceVersion {
			t.Errorf("Gateway %s: the other controller's status was rewritten: %+v", g.Name, now.Status)
		}
	}
}
