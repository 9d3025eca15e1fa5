package kubernetes_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestDataPlaneReadsRemembered: a change's pass does not read a Gateway's data plane Secrets and
// PodDisruptionBudget again once a pass found them current under its Deployment (the audit log
// counts the controller's reads: the controller may get them by name, not list or watch them, so
// no informer holds them). When the Deployment is gone (deleted by hand; the garbage collector
// may take the Secrets with it), the next pass reads them again and restores the data plane.
func TestDataPlaneReadsRemembered(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/remembered", "remembered"
	classAndNamespace(t, ns, ctrlName)
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// No full pass in the test: only changes cause passes. The controller's requests are told
	// from the test's by their user agent.
	const userAgent = "mcpgate-tests/remembered-controller"
	cfg := rest.CopyConfig(testCluster.cfg)
	cfg.UserAgent = userAgent
	startController(t, t, cfg, kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: time.Hour, DataPlane: testDataPlane(ca)})
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	depKey := types.NamespacedName{Namespace: ns, Name: "gw"}
	markAvailable(t, depKey, 1)
	reads := func() []string {
		return requestsIn(t, ns, userAgent, []string{"get"}, "secrets", "poddisruptionbudgets")
	}
	// The pass that wrote r1's status found the data plane current under its Deployment.
	routeAfterPass(t, ns, "gw", "r1")
	first := reads()
	for _, want := range []string{"get secrets gw-session-key", "get secrets gw-xds-tls", "get poddisruptionbudgets gw"} {
		if !strings.Contains(strings.Join(first, "\n"), want) {
			t.Errorf("the controller's reads %q do not hold %q", first, want)
		}
	}
	routeAfterPass(t, ns, "gw", "r2")
	routeAfterPass(t, ns, "gw", "r3")
	if got := reads(); len(got) != len(first) {
		t.Errorf("two changes' passes read the data plane's Secrets and budget again: %q", got[len(first):])
	}

	dep := get(t, depKey, &appsv1.Deployment{})
	mustKubectl(t, nil, "-n", ns, "delete", "deployment", "gw")
	eventually(t, "the data plane made again, its Secrets and budget owned by the new Deployment", func() error {
		return ownedByNew(t, depKey, dep.UID)
	})
	if got := reads(); len(got) == len(first) {
		t.Errorf("the data plane was restored without reading its Secrets and budget")
	}
}

// ownedByNew is nil once the data plane Deployment key exists with another UID than old and owns
// its Secrets and PodDisruptionBudget.
func ownedByNew(t *testing.T, key types.NamespacedName, old types.UID) error {
	t.Helper()
	var dep appsv1.Deployment
	if err := testCluster.client.Get(t.Context(), key, &dep); err != nil {
		return err
	}
	if dep.UID == old {
		return fmt.Errorf("Deployment %s is the one deleted", key)
	}
	owned := map[string]client.Object{
		key.Name + "-session-key": &corev1.Secret{}, key.Name + "-xds-tls": &corev1.Secret{}, key.Name: &policyv1.PodDisruptionBudget{},
	}
	for name, obj := range owned {
		if err := testCluster.client.Get(t.Context(), types.NamespacedName{Namespace: key.Namespace, Name: name}, obj); err != nil {
			return err
		}
		if refs := obj.GetOwnerReferences(); len(refs) != 1 || refs[0].Kind != "Deployment" || refs[0].UID != dep.UID {
			return fmt.Errorf("%T %s owner references %s, want the Deployment of uid %s", obj, name, ownerRefs(refs), dep.UID)
		}
	}
	return nil
}
