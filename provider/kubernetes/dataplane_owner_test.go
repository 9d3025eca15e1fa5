package kubernetes_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestOtherControllersDataPlaneKept runs two mcpgate controllers' worth of data planes in one
// cluster (two controllerNames, e.g. a canary): a controller deletes the data planes of the
// Gateways it stopped serving, never those another mcpgate controller made (so the xDS
// certificate Secret their Deployment owns stays too).
func TestOtherControllersDataPlaneKept(t *testing.T) {
	const ours, theirs = "test.mcpgate.dev/ours", "test.mcpgate.dev/theirs"
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ours}
spec: {controllerName: `+ours+`}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: `+theirs+`}
---
apiVersion: v1
kind: Namespace
metadata: {name: two-controllers}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ours, namespace: two-controllers}
spec:
  gatewayClassName: ours
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: two-controllers}
spec:
  gatewayClassName: theirs
  listeners: [{name: http, port: 8080, protocol: HTTP}]
`), "apply", "-f", "-")
	// With xDS TLS, so that each data plane has its certificate Secret too.
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The other controller makes its Gateway's data plane, then stops.
	other := startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: theirs, DataPlane: testDataPlane(ca)})
	theirDeployment := types.NamespacedName{Namespace: "two-controllers", Name: "theirs"}
	theirBootstrap := types.NamespacedName{Namespace: "two-controllers", Name: "theirs-bootstrap"}
	theirSecret := types.NamespacedName{Namespace: "two-controllers", Name: "theirs-xds-tls"}
	eventually(t, "their data plane", func() error {
		if err := testCluster.client.Get(t.Context(), theirDeployment, &appsv1.Deployment{}); err != nil {
			return err
		}
		if err := testCluster.client.Get(t.Context(), theirSecret, &corev1.Secret{}); err != nil {
			return err
		}
		if err := testCluster.client.Get(t.Context(), theirDeployment, &corev1.Service{}); err != nil {
			return err
		}
		if err := testCluster.client.Get(t.Context(), theirBootstrap, &corev1.ConfigMap{}); err != nil {
			return err
		}
		// its status too: stopped before writing it, it would have none to keep
		var gw gwv1.Gateway
		if err := testCluster.client.Get(t.Context(), theirDeployment, &gw); err != nil {
			return err
		}
		if len(gw.Status.Listeners) != 1 {
			return fmt.Errorf("their Gateway's status not written yet: %+v", gw.Status)
		}
		return condition(gw.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", gw.Generation)
	})
	other.stop(t)

	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ours, DataPlane: testDataPlane(ca)})
	eventually(t, "our data plane", func() error {
		return testCluster.client.Get(t.Context(), types.NamespacedName{Namespace: "two-controllers", Name: "ours"}, &appsv1.Deployment{})
	})
	// A change after our first pass: once its Service follows, the passes that saw their data
	// plane are over.
	mustKubectl(t, nil, "-n", "two-controllers", "patch", "gateway", "ours", "--type=json", "-p",
		`[{"op":"add","path":"/spec/listeners/-","value":{"name":"more","port":9090,"protocol":"HTTP"}}]`)
	eventually(t, "our Service follows the Gateway", func() error {
		var svc corev1.Service
		if err := testCluster.client.Get(t.Context(), types.NamespacedName{Namespace: "two-controllers", Name: "ours"}, &svc); err != nil {
			return err
		}
		var ports []int32
		for _, p := range svc.Spec.Ports {
			ports = append(ports, p.Port)
		}
		if !slices.Equal(ports, []int32{8080, 9090}) {
			return fmt.Errorf("ports %v", ports)
		}
		return nil
	})
	for _, o := range []struct {
		what string
		key  types.NamespacedName
		obj  client.Object
	}{
		{"Deployment", theirDeployment, &appsv1.Deployment{}},
		{"Service", theirDeployment, &corev1.Service{}},
		{"bootstrap ConfigMap", theirBootstrap, &corev1.ConfigMap{}},
		{"xDS certificate Secret", theirSecret, &corev1.Secret{}},
	} {
		if err := testCluster.client.Get(t.Context(), o.key, o.obj); apierrors.IsNotFound(err) {
			t.Errorf("the other controller's %s was deleted", o.what)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// Their Gateway's status is theirs: a controller clears only the status it wrote itself.
	if gw := get(t, theirDeployment, &gwv1.Gateway{}); len(gw.Status.Listeners) != 1 ||
		condition(gw.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", gw.Generation) != nil {
		t.Errorf("the other controller's Gateway status was cleared: %+v", gw.Status)
	}
	// Their Secret lives as long as their Deployment, which owns it.
	var dep appsv1.Deployment
	var sec corev1.Secret
	if err := testCluster.client.Get(t.Context(), theirDeployment, &dep); err != nil {
		t.Fatal(err)
	}
	if err := testCluster.client.Get(t.Context(), theirSecret, &sec); err != nil {
		t.Fatal(err)
	}
	checkOwnedByDeployment(t, &sec, &dep)
}
