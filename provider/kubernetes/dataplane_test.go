package kubernetes

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func testGateway() *gwv1.Gateway {
	return &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gw", UID: "uid-1"},
		Spec: gwv1.GatewaySpec{
			GatewayClassName: "mcpgate",
			Listeners: []gwv1.Listener{
				{Name: "b", Port: 9090, Protocol: gwv1.HTTPProtocolType},
				{Name: "a", Port: 80, Protocol: gwv1.HTTPProtocolType},
				{Name: "c", Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: ptr(gwv1.Hostname("x.example"))},
			},
			Infrastructure: &gwv1.GatewayInfrastructure{
				Labels:      map[gwv1.LabelKey]gwv1.LabelValue{"team": "tools"},
				Annotations: map[gwv1.AnnotationKey]gwv1.AnnotationValue{"example.com/owner": "tools"},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func TestBuildDataPlane(t *testing.T) {
	d := DataPlane{XDSAddress: "mcpgate-controller.mcpgate-system.svc:18000", ExtProcImage: "mcpgate:test"}.withDefaults()
	objs, err := d.buildDataPlane(testGateway(), "mcpgate.dev/gateway-controller", []byte("bootstrap-1"))
	if err != nil {
		t.Fatal(err)
	}
	var ports []int32
	for _, p := range objs.service.Spec.Ports {
		ports = append(ports, *p.Port)
	}
	if !slices.Equal(ports, []int32{80, 9090}) {
		t.Errorf("Service ports %v, want the distinct listener ports [80 9090]", ports)
	}
	if *objs.service.Spec.Type != DefaultServiceType {
		t.Errorf("Service type %s", *objs.service.Spec.Type)
	}
	for name, labels := range map[string]map[string]string{
		"ConfigMap": objs.configMap.Labels, "Deployment": objs.deployment.Labels, "Service": objs.service.Labels,
		"pod": objs.deployment.Spec.Template.Labels,
	} {
		if labels["team"] != "tools" || labels[LabelManagedBy] != ManagedByValue || labels[LabelGatewayName] != "gw" {
			t.Errorf("%s labels %v: want spec.infrastructure.labels and the controller's", name, labels)
		}
	}
	var envoy *coreac.ContainerApplyConfiguration
	for i, c := range objs.deployment.Spec.Template.Spec.Containers {
		if *c.Name == "envoy" {
			envoy = &objs.deployment.Spec.Template.Spec.Containers[i]
		}
	}
	if envoy == nil {
		t.Fatal("no envoy container")
	}
	// A terminating pod is removed from the Service's endpoints while Envoy still serves: Envoy
	// stops only once load balancers and kube-proxy had time to stop sending it connections.
	if envoy.Lifecycle == nil || envoy.Lifecycle.PreStop == nil || envoy.Lifecycle.PreStop.Sleep == nil || *envoy.Lifecycle.PreStop.Sleep.Seconds < 1 {
		t.Errorf("Envoy stops at once when its pod terminates: lifecycle %+v", envoy.Lifecycle)
	}
	for name, annotations := range map[string]map[string]string{
		"ConfigMap": objs.configMap.Annotations, "Deployment": objs.deployment.Annotations, "Service": objs.service.Annotations,
	} {
		if annotations[AnnotationController] != "mcpgate.dev/gateway-controller" || annotations["example.com/owner"] != "tools" {
			t.Errorf("%s annotations %v: want the controller's name and spec.infrastructure.annotations", name, annotations)
		}
	}
	if _, ok := objs.deployment.Spec.Template.Annotations[AnnotationController]; ok {
		t.Error("the pod template names the controller: pods would roll with a new controller name")
	}
	if objs.deployment.Spec.Replicas != nil {
		t.Error("the Deployment sets replicas, so the controller would undo kubectl scale")
	}
	if *objs.configMap.Name != "gw-bootstrap" || objs.configMap.Data[BootstrapKey] != "bootstrap-1" {
		t.Errorf("ConfigMap %s %v", *objs.configMap.Name, objs.configMap.Data)
	}

	again, err := d.buildDataPlane(testGateway(), "mcpgate.dev/gateway-controller", []byte("bootstrap-1"))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := d.buildDataPlane(testGateway(), "mcpgate.dev/gateway-controller", []byte("bootstrap-2"))
	if err != nil {
		t.Fatal(err)
	}
	hash := func(o dataPlaneObjects) []string {
		return []string{o.configMap.Annotations[AnnotationConfigHash], o.deployment.Annotations[AnnotationConfigHash], o.service.Annotations[AnnotationConfigHash]}
	}
	if !slices.Equal(hash(objs), hash(again)) {
		t.Errorf("the same Gateway hashes differently: %v %v", hash(objs), hash(again))
	}
	h1, h2 := hash(objs), hash(changed)
	if h1[0] == h2[0] || h1[1] == h2[1] || h1[2] != h2[2] {
		t.Errorf("a new bootstrap must change the ConfigMap and Deployment (pods roll) and not the Service: %v -> %v", h1, h2)
	}
}

func TestBuildDataPlaneWithoutListeners(t *testing.T) {
	gw := testGateway()
	gw.Spec.Listeners = nil
	if _, err := (DataPlane{}).withDefaults().buildDataPlane(gw, "mcpgate.dev/gateway-controller", nil); err == nil {
		t.Error("a Gateway without listeners got a data plane")
	}
}
