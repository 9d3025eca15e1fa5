package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/internal/drain"
	"github.com/mcpgate/mcpgate/translator"
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
				// A Gateway cannot take the controller's labels: managed-by marks what the controller
				// may delete, and the shipped NetworkPolicy lets only its pods reach xDS.
				Labels:      map[gwv1.LabelKey]gwv1.LabelValue{"team": "tools", LabelManagedBy: "someone-else", LabelName: "other"},
				Annotations: map[gwv1.AnnotationKey]gwv1.AnnotationValue{"example.com/owner": "tools"},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// testPorts are the ports of testGateway's accepted listeners, as servedPorts reads them from its
// translation.
var testPorts = []int32{80, 9090}

// testSessionKey is a Gateway's session key, as sessionKey makes one.
var testSessionKey = bytes.Repeat([]byte{7}, bind.KeySize)

// TestServedPorts translates a Gateway whose listeners share a port and include one the
// translator refuses: the data plane's ports are the distinct ports Envoy listens on.
func TestServedPorts(t *testing.T) {
	gw := testGateway()
	gw.Spec.Listeners = append(gw.Spec.Listeners, gwv1.Listener{Name: "tcp", Port: 7070, Protocol: gwv1.TCPProtocolType})
	out := translator.Translate(&translator.Resources{Gateways: []*gwv1.Gateway{gw}}, translator.Options{})
	if got := servedPorts(out.Gateways["ns/gw"]); !slices.Equal(got, testPorts) {
		t.Errorf("served ports %v, want %v (the refused TCP listener's 7070 left out)", got, testPorts)
	}
	if got := servedPorts(nil); got != nil {
		t.Errorf("a Gateway without configuration: ports %v", got)
	}
}

func TestBuildDataPlane(t *testing.T) {
	d := DataPlane{XDSAddress: "mcpgate-controller.mcpgate-system.svc:18000", ExtProcImage: "mcpgate:test"}.withDefaults()
	objs, err := d.buildDataPlane(testGateway(), testPorts, "mcpgate.dev/gateway-controller", []byte("bootstrap-1"), testSessionKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int32
	for _, p := range objs.service.Spec.Ports {
		ports = append(ports, *p.Port)
	}
	if !slices.Equal(ports, testPorts) {
		t.Errorf("Service ports %v, want the served ports %v", ports, testPorts)
	}
	if *objs.service.Spec.Type != DefaultServiceType {
		t.Errorf("Service type %s", *objs.service.Spec.Type)
	}
	// Clients' addresses reach Envoy (source.address, the ring hash of legacy SSE sessions),
	// except where the API server refuses the field (ClusterIP).
	if p := objs.service.Spec.ExternalTrafficPolicy; p == nil || *p != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("LoadBalancer Service: externalTrafficPolicy %v, want Local", p)
	}
	cip := d
	cip.ServiceType = corev1.ServiceTypeClusterIP
	if o, err := cip.buildDataPlane(testGateway(), testPorts, "mcpgate.dev/gateway-controller", []byte("bootstrap-1"), testSessionKey, nil); err != nil || o.service.Spec.ExternalTrafficPolicy != nil {
		t.Errorf("ClusterIP Service: externalTrafficPolicy %v (%v), want none", o.service.Spec.ExternalTrafficPolicy, err)
	}
	for name, labels := range map[string]map[string]string{
		"ConfigMap": objs.configMap.Labels, "Deployment": objs.deployment.Labels, "Service": objs.service.Labels,
		"PodDisruptionBudget": objs.pdb.Labels, "pod": objs.deployment.Spec.Template.Labels,
	} {
		if labels["team"] != "tools" || labels[LabelManagedBy] != ManagedByValue || labels[LabelGatewayName] != "gw" || labels[LabelName] != DataPlaneName {
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
	// The Go sidecar's runtime knows its memory limit (GOMEMLIMIT), else it grows its heap to
	// twice the live data and is killed at the limit under load.
	var extproc bool
	for _, ac := range objs.deployment.Spec.Template.Spec.InitContainers {
		if *ac.Name != "extproc" {
			continue
		}
		extproc = true
		var c corev1.Container
		if b, err := json.Marshal(ac); err != nil || json.Unmarshal(b, &c) != nil {
			t.Fatalf("extproc container %v: %v", ac, err)
		}
		if p := goMemLimitProblem(c); p != "" {
			t.Errorf("the extproc sidecar: %s", p)
		}
	}
	if !extproc {
		t.Error("no extproc sidecar")
	}
	// The sidecars share the Gateway's session key, from its Secret; Envoy does not see it.
	secrets := objs.secrets(objs.gatewayOwner)
	if len(secrets) != 1 || *secrets[0].Name != "gw-session-key" || !bytes.Equal(secrets[0].Data[SessionKeyFile], testSessionKey) ||
		secrets[0].Labels[LabelManagedBy] != ManagedByValue {
		t.Errorf("Secrets %v: want gw-session-key holding the session key, managed by mcpgate", secrets)
	}
	// The Secrets are applied owned by the Gateway, then by the Deployment (applyDataPlane): each
	// time with that one owner.
	for _, owner := range []*metaac.OwnerReferenceApplyConfiguration{objs.gatewayOwner, objs.deploymentOwner("dep-uid")} {
		for _, sec := range objs.secrets(owner) {
			if refs := sec.OwnerReferences; len(refs) != 1 || *refs[0].Kind != *owner.Kind || *refs[0].UID != *owner.UID {
				t.Errorf("Secret %s owned by %+v, want %s %s only", *sec.Name, refs, *owner.Kind, *owner.UID)
			}
		}
	}
	sidecar := objs.deployment.Spec.Template.Spec.InitContainers[0]
	if !slices.Contains(sidecar.Args, "--session-key-file="+SessionKeyDir+"/"+SessionKeyFile) || !mounts(sidecar, "session-key", SessionKeyDir) {
		t.Errorf("the extproc sidecar does not read the session key: args %v, mounts %v", sidecar.Args, sidecar.VolumeMounts)
	}
	if mounts(*envoy, "session-key", SessionKeyDir) {
		t.Error("Envoy mounts the session key")
	}
	// `kubectl logs` shows each request's access log line within a second, not Envoy's 10 s.
	if i := slices.Index(envoy.Args, "--file-flush-interval-msec"); i < 0 || i+1 >= len(envoy.Args) || envoy.Args[i+1] != "1000" {
		t.Errorf("Envoy's args %v: want --file-flush-interval-msec 1000", envoy.Args)
	}
	// A terminating pod is removed from the Service's endpoints while Envoy still serves: its
	// preStop hook has the sidecar drain Envoy (drain.Handler, with the session key's token),
	// which Envoy's flags make immediate and longer than the drain waits, within the pod's
	// grace period; only then Envoy gets SIGTERM.
	var hook *coreac.HTTPGetActionApplyConfiguration
	if envoy.Lifecycle != nil && envoy.Lifecycle.PreStop != nil {
		hook = envoy.Lifecycle.PreStop.HTTPGet
	}
	if hook == nil || *hook.Path != drain.Path || hook.Port.IntValue() != extProcAdminPort || len(hook.HTTPHeaders) != 1 ||
		*hook.HTTPHeaders[0].Name != drain.TokenHeader || *hook.HTTPHeaders[0].Value != drain.Token(testSessionKey) {
		t.Errorf("Envoy's preStop hook %+v: want GET %s on the sidecar's admin port %d with the session key's drain token", envoy.Lifecycle, drain.Path, extProcAdminPort)
	}
	if !slices.Contains(sidecar.Args, "--drain-envoy-admin="+envoyAdminAddr) {
		t.Errorf("the extproc sidecar does not drain Envoy's admin %s: args %v", envoyAdminAddr, sidecar.Args)
	}
	// Behind a cloud load balancer the drain waits for its health checks (DefaultServiceType).
	if !slices.Contains(sidecar.Args, "--drain-min=20s") || drainMin(corev1.ServiceTypeClusterIP) != drain.DefaultMin {
		t.Errorf("the drain's minimum: args %v; want 20s behind a LoadBalancer Service, %s behind a ClusterIP one", sidecar.Args, drain.DefaultMin)
	}
	// An Envoy still up after a drain no termination followed is told to quit, after the grace
	// period and Envoy's --drain-time-s.
	if !slices.Contains(sidecar.Args, "--drain-restart-after="+drainRestartAfter.String()) ||
		drainRestartAfter <= time.Duration(max(terminationGraceSeconds, envoyDrainTimeSeconds))*time.Second {
		t.Errorf("the sidecar's args %v: want --drain-restart-after=%s, after the grace period and --drain-time-s", sidecar.Args, drainRestartAfter)
	}
	if i := slices.Index(envoy.Args, "--drain-time-s"); i < 0 || i+1 >= len(envoy.Args) || envoy.Args[i+1] != strconv.Itoa(envoyDrainTimeSeconds) ||
		!slices.Contains(envoy.Args, "immediate") || time.Duration(envoyDrainTimeSeconds)*time.Second <= drain.DefaultMax {
		t.Errorf("Envoy's args %v: want --drain-time-s %d (longer than the drain's %s) and --drain-strategy immediate", envoy.Args, envoyDrainTimeSeconds, drain.DefaultMax)
	}
	// Replicas spread over nodes where they can.
	if a := objs.deployment.Spec.Template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		*a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname ||
		!maps.Equal(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels, objs.deployment.Spec.Selector.MatchLabels) {
		t.Errorf("affinity %+v: want a preferred anti-affinity of the Deployment's pods by node", a)
	}
	if g := objs.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drain.DefaultMax {
		t.Errorf("terminationGracePeriodSeconds %v: want more than the drain's %s", g, drain.DefaultMax)
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
	// Drains evict one data plane pod at a time, never none: the budget selects exactly the
	// Deployment's pods.
	if b := objs.pdb.Spec; b.MaxUnavailable == nil || *b.MaxUnavailable != intstr.FromInt32(1) || b.MinAvailable != nil ||
		!maps.Equal(b.Selector.MatchLabels, objs.deployment.Spec.Selector.MatchLabels) ||
		b.UnhealthyPodEvictionPolicy == nil || *b.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow || *objs.pdb.Name != "gw" {
		t.Errorf("PodDisruptionBudget %s: %+v; want maxUnavailable 1 over the Deployment's pods, unhealthy pods always evictable", *objs.pdb.Name, b)
	}
	if objs.deployment.Spec.Replicas != nil {
		t.Error("the Deployment sets replicas, so the controller would undo kubectl scale")
	}
	if *objs.configMap.Name != "gw-bootstrap" || objs.configMap.Data[BootstrapKey] != "bootstrap-1" {
		t.Errorf("ConfigMap %s %v", *objs.configMap.Name, objs.configMap.Data)
	}

	again, err := d.buildDataPlane(testGateway(), testPorts, "mcpgate.dev/gateway-controller", []byte("bootstrap-1"), testSessionKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := d.buildDataPlane(testGateway(), testPorts, "mcpgate.dev/gateway-controller", []byte("bootstrap-2"), testSessionKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What the controller compares with the objects' fields (applyIfChanged): the same Gateway
	// builds the same objects; a new bootstrap changes the ConfigMap and the Deployment (its pods
	// roll), not the Service.
	encode := func(o dataPlaneObjects) []string {
		var out []string
		for _, obj := range []any{o.configMap, o.deployment, o.service} {
			b, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
		return out
	}
	if !slices.Equal(encode(objs), encode(again)) {
		t.Error("the same Gateway builds different objects")
	}
	e1, e2 := encode(objs), encode(changed)
	if e1[0] == e2[0] || e1[1] == e2[1] || e1[2] != e2[2] {
		t.Error("a new bootstrap must change the ConfigMap and Deployment (pods roll) and not the Service")
	}
	if objs.deployment.Spec.Template.Annotations[AnnotationBootstrapHash] == changed.deployment.Spec.Template.Annotations[AnnotationBootstrapHash] {
		t.Error("a new bootstrap keeps the pod template's bootstrap hash: the pods would not roll")
	}
	// A new session key (its Secret replaced) rolls the pods: each sidecar reads it once.
	newKey, err := d.buildDataPlane(testGateway(), testPorts, "mcpgate.dev/gateway-controller", []byte("bootstrap-1"), bytes.Repeat([]byte{8}, bind.KeySize), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := objs.deployment.Spec.Template.Annotations[AnnotationSessionKeyHash], newKey.deployment.Spec.Template.Annotations[AnnotationSessionKeyHash]; a == "" || a == b {
		t.Errorf("session key hash %q, with another key %q: the pods would not roll", a, b)
	}
}

// mounts reports whether c mounts volume at path, read-only.
func mounts(c coreac.ContainerApplyConfiguration, volume, path string) bool {
	for _, m := range c.VolumeMounts {
		if *m.Name == volume && *m.MountPath == path && m.ReadOnly != nil && *m.ReadOnly {
			return true
		}
	}
	return false
}

// TestBuildDataPlaneWithoutListeners: a Gateway none of whose listeners is accepted (or that has
// none) gets no data plane objects: there is no port to expose or probe.
func TestBuildDataPlaneWithoutListeners(t *testing.T) {
	if _, err := (DataPlane{}).withDefaults().buildDataPlane(testGateway(), nil, "mcpgate.dev/gateway-controller", nil, testSessionKey, nil); err == nil {
		t.Error("a Gateway without an accepted listener got a data plane")
	}
}

// TestNetworkPolicyAdmitsTheDataPlane reads deploy/'s NetworkPolicy and the controller's
// Deployment: the policy must select the controller's pods and let exactly the data plane pods
// the controller builds (and nothing else) reach the xDS port.
func TestNetworkPolicyAdmitsTheDataPlane(t *testing.T) {
	var policy networkingv1.NetworkPolicy
	var controller appsv1.Deployment
	for path, into := range map[string]any{
		"../../deploy/controller/networkpolicy.yaml": &policy,
		"../../deploy/controller/deployment.yaml":    &controller,
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, into); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	selects := func(sel *metav1.LabelSelector, podLabels map[string]string) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		return !s.Empty() && s.Matches(labels.Set(podLabels))
	}
	if !selects(&policy.Spec.PodSelector, controller.Spec.Template.Labels) {
		t.Errorf("the NetworkPolicy's podSelector %v does not select the controller's pods %v", policy.Spec.PodSelector, controller.Spec.Template.Labels)
	}
	ports := map[string]bool{}
	for _, c := range controller.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
	}
	objs, err := DataPlane{XDSAddress: "x:18000", ExtProcImage: "mcpgate:test"}.withDefaults().buildDataPlane(testGateway(), testPorts, "mcpgate.dev/gateway-controller", nil, testSessionKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	dataPlanePod := objs.deployment.Spec.Template.Labels
	otherPod := map[string]string{LabelName: "something-else", "team": "tools"}
	var xds bool
	for i, rule := range policy.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil || !ports[p.Port.StrVal] {
				t.Errorf("spec.ingress[%d]: port %v is not a named port of the controller", i, p.Port)
				continue
			}
			if p.Port.StrVal != "xds" {
				continue
			}
			xds = true
			if len(rule.From) == 0 {
				t.Errorf("spec.ingress[%d] opens xDS to every source", i)
			}
			for j, peer := range rule.From {
				if peer.IPBlock != nil || peer.PodSelector == nil || peer.NamespaceSelector == nil {
					t.Errorf("spec.ingress[%d].from[%d] %+v: want a pod selector in any namespace", i, j, peer)
					continue
				}
				if !selects(peer.PodSelector, dataPlanePod) {
					t.Errorf("spec.ingress[%d].from[%d] does not admit the data plane pods %v", i, j, dataPlanePod)
				}
				if selects(peer.PodSelector, otherPod) {
					t.Errorf("spec.ingress[%d].from[%d] admits pods that are not the data plane: %v", i, j, otherPod)
				}
			}
		}
	}
	if !xds {
		t.Error("no ingress rule for the xds port: the data plane could not reach the controller")
	}
}

// goMemLimitProblem says what is wrong with a Go container's GOMEMLIMIT ("" when nothing): it is
// the container's own memory limit in bytes, a resourceFieldRef to limits.memory of the container
// with divisor 1 (GOMEMLIMIT reads a plain number as bytes: a divisor of 1Mi would make 512Mi
// a limit of 512 bytes), and the container has a memory limit.
func goMemLimitProblem(c corev1.Container) string {
	if c.Resources.Limits.Memory().IsZero() {
		return "no memory limit for GOMEMLIMIT to follow"
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
			return "GOMEMLIMIT is not from the container's resources"
		}
		r := e.ValueFrom.ResourceFieldRef
		if r.Resource != "limits.memory" || (r.ContainerName != "" && r.ContainerName != c.Name) {
			return fmt.Sprintf("GOMEMLIMIT from %s of container %q, want limits.memory of %q", r.Resource, r.ContainerName, c.Name)
		}
		if !r.Divisor.IsZero() && r.Divisor.Cmp(resource.MustParse("1")) != 0 {
			return fmt.Sprintf("GOMEMLIMIT with divisor %s: not bytes", r.Divisor.String())
		}
		return ""
	}
	return "no GOMEMLIMIT"
}

// TestControllerGoMemLimit reads deploy/'s controller Deployment: each container runs mcpgate,
// whose Go runtime must know the container's memory limit.
func TestControllerGoMemLimit(t *testing.T) {
	var controller appsv1.Deployment
	b, err := os.ReadFile("../../deploy/controller/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &controller); err != nil {
		t.Fatal(err)
	}
	cs := controller.Spec.Template.Spec.Containers
	if len(cs) == 0 {
		t.Fatal("deploy/controller/deployment.yaml: no container")
	}
	for _, c := range cs {
		if p := goMemLimitProblem(c); p != "" {
			t.Errorf("deploy/controller/deployment.yaml: container %s: %s", c.Name, p)
		}
	}
}
