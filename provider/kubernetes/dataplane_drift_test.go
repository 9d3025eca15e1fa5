package kubernetes_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestDataPlaneHandEditsReverted edits a Gateway's data plane by hand, as kubectl does (another
// field manager): the controller restores every field it sets (the Envoy image, the bootstrap,
// a Service port, an xDS certificate Secret's data) and keeps what it does not set (the replicas
// of `kubectl scale`, a label someone added, the Service's sessionAffinity). A pass that finds the data plane as the controller
// left it writes nothing: the API server's audit log shows no request on those objects.
func TestDataPlaneHandEditsReverted(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/hand-edits", "hand-edits"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A full pass every second (a minute by default) finds the Secret edited: Secrets are not watched.
	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: time.Second, DataPlane: testDataPlane(ca)})
	key := types.NamespacedName{Namespace: ns, Name: "gw"}
	cmKey := types.NamespacedName{Namespace: ns, Name: "gw-bootstrap"}
	secKey := types.NamespacedName{Namespace: ns, Name: "gw-xds-tls"}
	eventually(t, "data plane", func() error {
		if err := testCluster.client.Get(t.Context(), key, &appsv1.Deployment{}); err != nil {
			return err
		}
		return testCluster.client.Get(t.Context(), secKey, &corev1.Secret{})
	})
	dep := get(t, key, &appsv1.Deployment{})
	image := dep.Spec.Template.Spec.Containers[0].Image
	bootstrap := get(t, cmKey, &corev1.ConfigMap{}).Data[kubernetes.BootstrapKey]
	caPEM := get(t, secKey, &corev1.Secret{}).Data[pki.CAFile]

	mustKubectl(t, nil, "-n", ns, "scale", "deployment", "gw", "--replicas=3")
	mustKubectl(t, nil, "-n", ns, "label", "deployment", "gw", "example.com/team=tools")
	mustKubectl(t, nil, "-n", ns, "patch", "deployment", "gw", "--type=json", "-p",
		`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"example.com/not-envoy:1"}]`)
	mustKubectl(t, nil, "-n", ns, "patch", "configmap", "gw-bootstrap", "--type=merge", "-p", `{"data":{"bootstrap.yaml":"admin: {}"}}`)
	// Before the port's patch, so that the apply restoring the port finds it (docs/kubernetes.md:
	// the affinity a bridged SSE target's sessions want on several replicas).
	mustKubectl(t, nil, "-n", ns, "patch", "service", "gw", "-p", `{"spec":{"sessionAffinity":"ClientIP"}}`)
	mustKubectl(t, nil, "-n", ns, "patch", "service", "gw", "--type=json", "-p", `[{"op":"replace","path":"/spec/ports/0/targetPort","value":9999}]`)
	eventually(t, "the controller's fields restored, the others kept", func() error {
		dep := get(t, key, &appsv1.Deployment{})
		if got := dep.Spec.Template.Spec.Containers[0].Image; got != image {
			return fmt.Errorf("Envoy image %q, want %q", got, image)
		}
		if r := dep.Spec.Replicas; r == nil || *r != 3 {
			return fmt.Errorf("replicas %v, want kubectl scale's 3 kept", r)
		}
		if dep.Labels["example.com/team"] != "tools" {
			return fmt.Errorf("labels %v: the label added by hand is gone", dep.Labels)
		}
		if got := get(t, cmKey, &corev1.ConfigMap{}).Data[kubernetes.BootstrapKey]; got != bootstrap {
			return fmt.Errorf("bootstrap %q", got)
		}
		svc := get(t, key, &corev1.Service{})
		if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
			return fmt.Errorf("Service sessionAffinity %q, want the patch's ClientIP kept", svc.Spec.SessionAffinity)
		}
		var ports []string
		for _, p := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String()))
		}
		if !slices.Equal(ports, []string{"8080->8080"}) {
			return fmt.Errorf("Service ports %v", ports)
		}
		return nil
	})
	// (apart: a new certificate changes the pod template, which would restore the image too)
	mustKubectl(t, nil, "-n", ns, "patch", "secret", "gw-xds-tls", "--type=merge", "-p", `{"data":{"ca.crt":"bm90IGEgQ0E="}}`)
	eventually(t, "the Secret restored", func() error {
		if got := get(t, secKey, &corev1.Secret{}).Data[pki.CAFile]; string(got) != string(caPEM) {
			return fmt.Errorf("Secret ca.crt %q", got)
		}
		return nil
	})

	// Passes that find nothing changed (each new route's status shows that a pass ran to its end).
	routeAfterPass(t, ns, "gw", "r0")
	dataPlane := []string{"deployments", "configmaps", "services", "secrets"}
	before := writesIn(t, ns, dataPlane...)
	for _, r := range []string{"r1", "r2", "r3"} {
		routeAfterPass(t, ns, "gw", r)
	}
	if after := writesIn(t, ns, dataPlane...); len(after) != len(before) {
		t.Errorf("passes without a change wrote the data plane: %q", after[len(before):])
	}
}
