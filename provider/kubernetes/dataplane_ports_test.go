package kubernetes_test

import (
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestDataPlaneServesAcceptedListeners gives a Gateway a listener mcpgate refuses (TCP) beside an
// HTTP one: its data plane opens only the HTTP listener's port, on the Service and the Envoy
// container, and Envoy's readiness probe checks that port (nothing listens on the refused one, so
// a probe there would keep the pods from ever being ready). Once the refused listener becomes
// HTTP, its port follows.
func TestDataPlaneServesAcceptedListeners(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/refused-listener", "refused-listener"
	gateway := func(protocol string) []byte {
		return []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ` + ns + `}
spec:
  gatewayClassName: refused-listener
  listeners:
  - {name: tcp, port: 7070, protocol: ` + protocol + `}
  - {name: http, port: 8080, protocol: HTTP}
`)
	}
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, gateway("TCP"), "apply", "-f", "-")
	startController(t, t, testCluster.cfg, kubernetes.Options{ControllerName: ctrlName, DataPlane: testDataPlane(nil)})
	key := types.NamespacedName{Namespace: ns, Name: "gw"}
	ports := func(want ...int32) func() error {
		return func() error {
			var svc corev1.Service
			var dep appsv1.Deployment
			if err := testCluster.client.Get(t.Context(), key, &svc); err != nil {
				return err
			}
			if err := testCluster.client.Get(t.Context(), key, &dep); err != nil {
				return err
			}
			var svcPorts, containerPorts []int32
			for _, p := range svc.Spec.Ports {
				svcPorts = append(svcPorts, p.Port)
			}
			envoy := dep.Spec.Template.Spec.Containers[0]
			for _, p := range envoy.Ports {
				containerPorts = append(containerPorts, p.ContainerPort)
			}
			var probe int32
			if r := envoy.ReadinessProbe; r != nil && r.TCPSocket != nil {
				probe = r.TCPSocket.Port.IntVal
			}
			if !slices.Equal(svcPorts, want) || !slices.Equal(containerPorts, want) || probe != want[0] {
				return fmt.Errorf("Service ports %v, container %s ports %v, readiness probe on %d; want ports %v, probe on %d",
					svcPorts, envoy.Name, containerPorts, probe, want, want[0])
			}
			return nil
		}
	}
	eventually(t, "only the HTTP listener's port", ports(8080))
	mustKubectl(t, gateway("HTTP"), "apply", "-f", "-")
	eventually(t, "both ports once both listeners are HTTP", ports(7070, 8080))
}
