package kubernetes_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestGatewayClassFinalizer: the controller, as its ServiceAccount with deploy/'s RBAC and
// admission policies, keeps Gateway API's gateway-exists finalizer on a GatewayClass of its
// controllerName while a Gateway of the class exists, so `kubectl delete gatewayclass` leaves the
// class terminating until the Gateway is deleted; then the controller removes the finalizer and
// the class is gone. A class of another controllerName that it serves by name gets no finalizer.
func TestGatewayClassFinalizer(t *testing.T) {
	const ctrlName, ns, other = "test.mcpgate.dev/finalizer", "finalizer", "finalizer-other"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: `+other+`}
spec: {controllerName: example.com/another-controller}
`), "apply", "-f", "-")
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	mustKubectl(t, httpGateway(ns, "byname", other), "apply", "-f", "-")
	installDeploy(t, false)
	startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName, GatewayClasses: []string{other}})

	classKey := types.NamespacedName{Name: ns}
	eventually(t, "the finalizer on GatewayClass "+ns, func() error {
		c := get(t, classKey, &gwv1.GatewayClass{})
		if !slices.Contains(c.Finalizers, gwv1.GatewayClassFinalizerGatewaysExist) {
			return fmt.Errorf("GatewayClass %s: metadata.finalizers %q, want %s", ns, c.Finalizers, gwv1.GatewayClassFinalizerGatewaysExist)
		}
		return nil
	})
	// A route on each Gateway, with status: the pass that wrote it saw both Gateways, and
	// handled the finalizers before it wrote status.
	routeAfterPass(t, ns, "gw", "r1")
	routeAfterPass(t, ns, "byname", "r2")
	if c := get(t, types.NamespacedName{Name: other}, &gwv1.GatewayClass{}); len(c.Finalizers) != 0 {
		t.Errorf("GatewayClass %s of another controller, served by name: metadata.finalizers %q, want none", other, c.Finalizers)
	}

	mustKubectl(t, nil, "delete", "gatewayclass", ns, "--wait=false")
	routeAfterPass(t, ns, "gw", "r3") // a pass after the deletion
	c := get(t, classKey, &gwv1.GatewayClass{})
	if c.DeletionTimestamp == nil || !slices.Contains(c.Finalizers, gwv1.GatewayClassFinalizerGatewaysExist) {
		t.Fatalf("GatewayClass %s deleted while Gateway %s/gw exists: deletionTimestamp %v, metadata.finalizers %q, want it terminating with %s",
			ns, ns, c.DeletionTimestamp, c.Finalizers, gwv1.GatewayClassFinalizerGatewaysExist)
	}

	mustKubectl(t, nil, "-n", ns, "delete", "gateway", "gw")
	eventually(t, "GatewayClass "+ns+" gone", func() error {
		var c gwv1.GatewayClass
		err := testCluster.client.Get(context.Background(), classKey, &c)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		return fmt.Errorf("GatewayClass %s still exists: deletionTimestamp %v, metadata.finalizers %q", ns, c.DeletionTimestamp, c.Finalizers)
	})
}
