package kubernetes_test

import (
	"fmt"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestReferenceGrant: an HTTPRoute's backendRef to a Service in another namespace is refused
// (RefNotPermitted) until a ReferenceGrant in the Service's namespace allows it. The controller
// runs with deploy/'s RBAC, so it must be allowed to watch ReferenceGrants.
func TestReferenceGrant(t *testing.T) {
	const ctrlName = "test.mcpgate.dev/grants"
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: grants}
spec: {controllerName: `+ctrlName+`}
---
apiVersion: v1
kind: Namespace
metadata: {name: grants-app}
---
apiVersion: v1
kind: Namespace
metadata: {name: grants-svc}
---
apiVersion: v1
kind: Service
metadata: {name: tools, namespace: grants-svc}
spec:
  selector: {app: tools}
  ports: [{port: 80, targetPort: 8000}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: grants-app}
spec:
  gatewayClassName: grants
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-tools, namespace: grants-app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: tools, namespace: grants-svc, port: 80}]
`), "apply", "-f", "-")
	installDeploy(t, false)
	ctrl := startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName})
	ads := watchADS(t, ctrl, "grants-app/gw")
	const cluster = "service/grants-svc/tools/80"
	routeResolved := func(status metav1.ConditionStatus, reason string) error {
		r := get(t, types.NamespacedName{Namespace: "grants-app", Name: "to-tools"}, &gwv1.HTTPRoute{})
		if len(r.Status.Parents) != 1 {
			return fmt.Errorf("route parents %+v, want one", r.Status.Parents)
		}
		return condition(r.Status.Parents[0].Conditions, "ResolvedRefs", status, reason, r.Generation)
	}
	eventually(t, "the cross-namespace backendRef refused", func() error {
		if err := ads.hasNames(resourcev3.ListenerType, "grants-app/gw/8080"); err != nil {
			return err
		}
		return routeResolved(metav1.ConditionFalse, "RefNotPermitted")
	})
	if _, ok := ads.get(resourcev3.ClusterType, cluster); ok {
		t.Fatalf("cluster %s served without a ReferenceGrant", cluster)
	}

	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: app-to-tools, namespace: grants-svc}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: grants-app}]
  to: [{group: "", kind: Service}]
`), "apply", "-f", "-")
	eventually(t, "the backendRef allowed by the ReferenceGrant", func() error {
		if _, ok := ads.get(resourcev3.ClusterType, cluster); !ok {
			return fmt.Errorf("cluster %s not served", cluster)
		}
		return routeResolved(metav1.ConditionTrue, "ResolvedRefs")
	})

	mustKubectl(t, nil, "delete", "referencegrant", "-n", "grants-svc", "app-to-tools")
	eventually(t, "the backendRef refused again once the grant is gone", func() error {
		if _, ok := ads.get(resourcev3.ClusterType, cluster); ok {
			return fmt.Errorf("cluster %s still served", cluster)
		}
		return routeResolved(metav1.ConditionFalse, "RefNotPermitted")
	})
}
