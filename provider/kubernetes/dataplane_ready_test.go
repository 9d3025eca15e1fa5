package kubernetes_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestProgrammedWaitsForAReplica: a Gateway is Programmed once its data plane can serve, when its
// Deployment has an available replica (as Envoy Gateway reports it); before, and when scaled to
// zero, it is Programmed False with reason NoResources. envtest runs no Deployment controller
// or kubelet: the test writes the Deployment's status as they would.
func TestProgrammedWaitsForAReplica(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/replicas", "replicas"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, DataPlane: testDataPlane(nil)})
	key := types.NamespacedName{Namespace: ns, Name: "gw"}
	programmed := func(status metav1.ConditionStatus, reason string) func() error {
		return func() error {
			gw := get(t, key, &gwv1.Gateway{})
			return condition(gw.Status.Conditions, "Programmed", status, reason, gw.Generation)
		}
	}
	eventually(t, "not Programmed while no replica is available", programmed(metav1.ConditionFalse, "NoResources"))
	markAvailable(t, key, 1)
	eventually(t, "Programmed with an available replica", programmed(metav1.ConditionTrue, "Programmed"))
	mustKubectl(t, nil, "-n", ns, "scale", "deployment", "gw", "--replicas=0")
	markAvailable(t, key, 0)
	eventually(t, "not Programmed once scaled to zero", programmed(metav1.ConditionFalse, "NoResources"))
}
