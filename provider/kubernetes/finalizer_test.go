package kubernetes_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// TestControllerChangesOnlyClassFinalizer: with deploy/ installed, the controller's ServiceAccount
// may change a GatewayClass only in its gateway-exists finalizer
// (deploy/controller/gatewayclass-policy.yaml): a change of the spec, the labels, the annotations
// or another finalizer is refused by the API server; adding and removing the finalizer is not.
// The writes are server-side dry runs, which run admission and store nothing.
func TestControllerChangesOnlyClassFinalizer(t *testing.T) {
	installDeploy(t, false)
	const name = "finalizer-policy"
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: `+name+`
  finalizers: [example.com/keep]
spec: {controllerName: test.mcpgate.dev/finalizer-policy}
`), "apply", "-f", "-")
	c := probeClient(t)
	ctx := context.Background()
	// probeClient knows only Kubernetes' own kinds
	class := &unstructured.Unstructured{}
	class.SetAPIVersion(gwv1.GroupName + "/v1")
	class.SetKind("GatewayClass")
	class.SetName(name)
	jsonPatch := func(p string) error {
		return c.Patch(ctx, class.DeepCopy(), client.RawPatch(types.JSONPatchType, []byte(p)), client.DryRunAll)
	}
	onlyFinalizers := func(err error) error {
		return refusedWith("changes only metadata.finalizers of a GatewayClass", err)
	}
	// The API server loads a new admission policy in the background: wait for it to refuse.
	eventually(t, "a change of the spec is refused", func() error {
		return onlyFinalizers(jsonPatch(`[{"op":"add","path":"/spec/description","value":"taken over"}]`))
	})
	for _, tc := range []struct {
		what, patch string
		refused     func(error) error
	}{
		{"a label", `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`, onlyFinalizers},
		{"an annotation", `[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]`, onlyFinalizers},
		{"another finalizer removed", `[{"op":"remove","path":"/metadata/finalizers/0"}]`, func(err error) error {
			return refusedWith("adds or removes only the finalizer "+gwv1.GatewayClassFinalizerGatewaysExist, err)
		}},
		{"another finalizer added", `[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/block"}]`, func(err error) error {
			return refusedWith("adds or removes only the finalizer "+gwv1.GatewayClassFinalizerGatewaysExist, err)
		}},
		{"the gateway-exists finalizer added", `[{"op":"add","path":"/metadata/finalizers/-","value":"` + gwv1.GatewayClassFinalizerGatewaysExist + `"}]`, nil},
	} {
		err := jsonPatch(tc.patch)
		if tc.refused == nil {
			if err != nil {
				t.Errorf("%s: %v, want it allowed", tc.what, err)
			}
			continue
		}
		if err := tc.refused(err); err != nil {
			t.Errorf("%s: %v, want it refused", tc.what, err)
		}
	}
	// Removing it: the class needs it first (as the admin), then the controller removes it.
	mustKubectl(t, nil, "patch", "gatewayclass", name, "--type=json",
		`-p=[{"op":"add","path":"/metadata/finalizers/-","value":"`+gwv1.GatewayClassFinalizerGatewaysExist+`"}]`)
	if err := jsonPatch(`[{"op":"remove","path":"/metadata/finalizers/1"}]`); err != nil {
		t.Errorf("the gateway-exists finalizer removed: %v, want it allowed", err)
	}
	// The class keeps its own finalizer for good: leave it deletable.
	mustKubectl(t, nil, "patch", "gatewayclass", name, "--type=json", `-p=[{"op":"remove","path":"/metadata/finalizers"}]`)
}
