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

// TestNamespacesAndOwnDataPlane runs a controller of its own controllerName that watches one
// namespace and deploys no data plane: it serves only that namespace's Gateway, whose addresses
// come from a Service the user labels for it.
func TestNamespacesAndOwnDataPlane(t *testing.T) {
	const ctrlName = "test.mcpgate.dev/namespaced"
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: namespaced}
spec: {controllerName: `+ctrlName+`}
---
apiVersion: v1
kind: Namespace
metadata: {name: watched}
---
apiVersion: v1
kind: Namespace
metadata: {name: unwatched}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: watched}
spec:
  gatewayClassName: namespaced
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: unwatched}
spec:
  gatewayClassName: namespaced
  listeners: [{name: http, port: 8081, protocol: HTTP}]
`), "apply", "-f", "-")
	ctrl := startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, Namespaces: []string{"watched"}})
	watched, unwatched := watchADS(t, ctrl, "watched/gw"), watchADS(t, ctrl, "unwatched/gw")
	gateway := func(ns string) *gwv1.Gateway {
		return get(t, types.NamespacedName{Namespace: ns, Name: "gw"}, &gwv1.Gateway{})
	}
	eventually(t, "the watched namespace's Gateway served, without an address", func() error {
		if err := watched.hasNames(resourcev3.ListenerType, "watched/gw/8080"); err != nil {
			return err
		}
		gw := gateway("watched")
		return condition(gw.Status.Conditions, "Programmed", metav1.ConditionFalse, "AddressNotAssigned", gw.Generation)
	})
	if err := unwatched.hasNames(resourcev3.ListenerType); err != nil {
		t.Errorf("a Gateway outside --namespace is served: %v", err)
	}
	if gw := gateway("unwatched"); len(gw.Status.Addresses) > 0 || len(gw.Status.Listeners) > 0 {
		t.Errorf("a Gateway outside --namespace got status %+v", gw.Status)
	}

	mustKubectl(t, []byte(`apiVersion: v1
kind: Service
metadata:
  name: my-envoy
  namespace: watched
  labels: {gateway.networking.k8s.io/gateway-name: gw}
spec:
  selector: {app: my-envoy}
  ports: [{port: 8080}]
`), "apply", "-f", "-")
	eventually(t, "addresses from the user's Service", func() error {
		gw := gateway("watched")
		if err := condition(gw.Status.Conditions, "Programmed", metav1.ConditionTrue, "Programmed", gw.Generation); err != nil {
			return err
		}
		if len(gw.Status.Addresses) != 1 {
			return fmt.Errorf("addresses %+v", gw.Status.Addresses)
		}
		return nil
	})
}
