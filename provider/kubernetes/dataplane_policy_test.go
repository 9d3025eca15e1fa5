package kubernetes_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// The refusals of deploy/controller/dataplane-policy.yaml, as its messages say them.
const (
	refusedNotMine        = "writes and deletes only the Deployments, Services, ConfigMaps and PodDisruptionBudgets it made"
	refusedBudget         = "spec.maxUnavailable must be 1, spec.minAvailable unset"
	refusedBudgetSelector = "selects the pods of its own data plane only"
	refusedExternalIPs    = "a Service of the mcpgate controller has no spec.externalIPs"
	refusedAccount        = "spec.template.spec.serviceAccountName must be unset or default"
	refusedToken          = "spec.template.spec.automountServiceAccountToken must be false"
	refusedHostNamespace  = "hostNetwork, hostPID and hostIPC must not be true"
	refusedPrivileged     = "runs no privileged container"
	refusedSecretRefs     = "names no Secret but its own NAME-session-key and NAME-xds-tls"
	refusedVolumesPattern = "spec.template.spec.volumes %s refused"
)

// TestControllerWritesOnlyDataPlanes: with deploy/ installed, the controller's ServiceAccount may
// create, change and delete only the Deployments, Services and ConfigMaps labelled as mcpgate's,
// and only Deployments shaped as data planes (deploy/controller/dataplane-policy.yaml). A
// controller running as that ServiceAccount creates, updates and deletes a Gateway's data plane
// through the policies; the refused writes are that data plane's Deployment with one thing
// changed each, and others' objects. They are server-side dry runs, which run admission and
// store nothing.
func TestControllerWritesOnlyDataPlanes(t *testing.T) {
	installDeploy(t, false)
	const ctrlName, ns = "test.mcpgate.dev/dataplane-policy", "dataplane-policy"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: someone-elses, namespace: `+ns+`}
data: {k: v}
---
apiVersion: v1
kind: Service
metadata: {name: someone-elses, namespace: `+ns+`}
spec: {ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: someone-elses, namespace: `+ns+`}
spec:
  selector: {matchLabels: {app: someone-elses}}
  template:
    metadata: {labels: {app: someone-elses}}
    spec:
      automountServiceAccountToken: false
      containers: [{name: app, image: example.com/app:1}]
`), "apply", "-f", "-")
	c := probeClient(t)
	ctx := t.Context()
	mine := map[string]string{kubernetes.LabelManagedBy: kubernetes.ManagedByValue}
	in := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }
	meta := func(name string, labels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}
	}
	configMap := func(name string, labels map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: meta(name, labels), Data: map[string]string{"k": "v"}}
	}
	service := func(name string, labels map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: meta(name, labels), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	// budget is a PodDisruptionBudget shaped as the data plane name's (buildDataPlane), but for
	// maxUnavailable.
	budget := func(name string, labels map[string]string, maxUnavailable int32) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{ObjectMeta: meta(name, labels), Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: new(intstr.FromInt32(maxUnavailable)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{
				kubernetes.LabelName: kubernetes.DataPlaneName, kubernetes.LabelGatewayName: name}},
			UnhealthyPodEvictionPolicy: new(policyv1.AlwaysAllow),
		}}
	}

	// The API server loads new admission policies in the background: wait until both refuse.
	eventually(t, "creating an unlabelled ConfigMap is refused", func() error {
		return refusedWith(refusedNotMine, c.Create(ctx, configMap("unlabelled", nil), client.DryRunAll))
	})
	eventually(t, "creating a labelled Deployment with a ServiceAccount token is refused", func() error {
		d := renamed(get(t, in("someone-elses"), &appsv1.Deployment{}), "with-token", mine)
		d.Spec.Template.Spec.AutomountServiceAccountToken = nil
		return refusedWith(refusedToken, c.Create(ctx, d, client.DryRunAll))
	})

	// The real writes: the controller, as its ServiceAccount, creates the data plane, updates it
	// for a new listener port and restores its bootstrap edited by hand (server-side applies:
	// CREATE, then UPDATE in admission), and deletes it with its Gateway (DELETE).
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName, DataPlane: testDataPlane(ca)})
	mustKubectl(t, httpGateway(ns, "gw", ns), "apply", "-f", "-")
	dataPlane := func() []client.Object {
		return []client.Object{
			&appsv1.Deployment{ObjectMeta: meta("gw", nil)}, &corev1.Service{ObjectMeta: meta("gw", nil)},
			&corev1.ConfigMap{ObjectMeta: meta("gw-bootstrap", nil)}, &corev1.Secret{ObjectMeta: meta("gw-xds-tls", nil)},
			&policyv1.PodDisruptionBudget{ObjectMeta: meta("gw", nil)},
		}
	}
	eventually(t, "the controller creates the data plane", func() error {
		for _, o := range dataPlane() {
			if err := testCluster.client.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				return err
			}
		}
		return nil
	})
	mustKubectl(t, nil, "-n", ns, "patch", "gateway", "gw", "--type=json", "-p", `[{"op":"replace","path":"/spec/listeners/0/port","value":8081}]`)
	eventually(t, "the controller updates the data plane to port 8081", func() error {
		dep, svc := get(t, in("gw"), &appsv1.Deployment{}), get(t, in("gw"), &corev1.Service{})
		if p := dep.Spec.Template.Spec.Containers[0].Ports; len(p) != 1 || p[0].ContainerPort != 8081 {
			return fmt.Errorf("Envoy's ports %v", p)
		}
		if p := svc.Spec.Ports; len(p) != 1 || p[0].Port != 8081 {
			return fmt.Errorf("Service ports %v", p)
		}
		return nil
	})
	bootstrap := get(t, in("gw-bootstrap"), &corev1.ConfigMap{}).Data[kubernetes.BootstrapKey]
	mustKubectl(t, nil, "-n", ns, "patch", "configmap", "gw-bootstrap", "--type=merge", "-p", `{"data":{"bootstrap.yaml":"admin: {}"}}`)
	eventually(t, "the controller restores the bootstrap", func() error {
		if got := get(t, in("gw-bootstrap"), &corev1.ConfigMap{}).Data[kubernetes.BootstrapKey]; got != bootstrap {
			return fmt.Errorf("bootstrap %q", got)
		}
		return nil
	})
	dep := get(t, in("gw"), &appsv1.Deployment{})

	t.Run("labels", func(t *testing.T) {
		for _, w := range []struct {
			what    string
			refused string // "": allowed
			write   func() error
		}{
			{"creating an unlabelled Service", refusedNotMine, func() error { return c.Create(ctx, service("unlabelled", nil), client.DryRunAll) }},
			{"creating an unlabelled data plane Deployment", refusedNotMine, func() error {
				return c.Create(ctx, dataPlaneCopy(dep, "unlabelled", nil), client.DryRunAll)
			}},
			{"changing another's ConfigMap", refusedNotMine, func() error {
				return c.Patch(ctx, configMap("someone-elses", nil), mergePatch(`{"data":{"k":"mine"}}`), client.DryRunAll)
			}},
			{"labelling another's Service as mcpgate's", refusedNotMine, func() error {
				return c.Patch(ctx, service("someone-elses", nil), mergePatch(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"mcpgate"}}}`), client.DryRunAll)
			}},
			{"labelling another's Deployment as mcpgate's", refusedNotMine, func() error {
				return c.Patch(ctx, &appsv1.Deployment{ObjectMeta: meta("someone-elses", nil)}, mergePatch(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"mcpgate"}}}`), client.DryRunAll)
			}},
			{"removing the label of its ConfigMap", refusedNotMine, func() error {
				return c.Patch(ctx, configMap("gw-bootstrap", nil), mergePatch(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`), client.DryRunAll)
			}},
			{"deleting another's Deployment", refusedNotMine + " (label app.kubernetes.io/managed-by=mcpgate before and after): DELETE of Deployment " + ns + "/someone-elses refused", func() error {
				return c.Delete(ctx, &appsv1.Deployment{ObjectMeta: meta("someone-elses", nil)}, client.DryRunAll)
			}},
			{"deleting another's Service", refusedNotMine, func() error { return c.Delete(ctx, service("someone-elses", nil), client.DryRunAll) }},
			{"deleting another's ConfigMap", refusedNotMine, func() error { return c.Delete(ctx, configMap("someone-elses", nil), client.DryRunAll) }},
			{"creating a labelled ConfigMap", "", func() error { return c.Create(ctx, configMap("labelled", mine), client.DryRunAll) }},
			{"creating a labelled Service", "", func() error { return c.Create(ctx, service("labelled", mine), client.DryRunAll) }},
			{"deleting its ConfigMap", "", func() error { return c.Delete(ctx, configMap("gw-bootstrap", nil), client.DryRunAll) }},
			{"deleting its Service", "", func() error { return c.Delete(ctx, service("gw", nil), client.DryRunAll) }},
			{"deleting its Deployment", "", func() error {
				return c.Delete(ctx, &appsv1.Deployment{ObjectMeta: meta("gw", nil)}, client.DryRunAll)
			}},
			{"creating a labelled Service with externalIPs", refusedExternalIPs, func() error {
				svc := service("external", mine)
				svc.Spec.ExternalIPs = []string{"192.0.2.1"}
				return c.Create(ctx, svc, client.DryRunAll)
			}},
			{"adding externalIPs to its Service", refusedExternalIPs, func() error {
				return c.Patch(ctx, service("gw", nil), mergePatch(`{"spec":{"externalIPs":["192.0.2.1"]}}`), client.DryRunAll)
			}},
			{"creating an unlabelled PodDisruptionBudget", refusedNotMine, func() error { return c.Create(ctx, budget("unlabelled", nil, 1), client.DryRunAll) }},
			{"creating a labelled PodDisruptionBudget", "", func() error { return c.Create(ctx, budget("labelled", mine, 1), client.DryRunAll) }},
			{"creating a PodDisruptionBudget that forbids evictions", refusedBudget, func() error {
				return c.Create(ctx, budget("no-eviction", mine, 0), client.DryRunAll)
			}},
			{"creating a PodDisruptionBudget with minAvailable", refusedBudget, func() error {
				b := budget("min-available", mine, 1)
				b.Spec.MaxUnavailable, b.Spec.MinAvailable = nil, new(intstr.FromInt32(1))
				return c.Create(ctx, b, client.DryRunAll)
			}},
			{"creating a PodDisruptionBudget selecting every pod", refusedBudgetSelector, func() error {
				b := budget("everything", mine, 1)
				b.Spec.Selector = &metav1.LabelSelector{}
				return c.Create(ctx, b, client.DryRunAll)
			}},
			{"creating a PodDisruptionBudget selecting another Gateway's pods", refusedBudgetSelector, func() error {
				b := budget("other", mine, 1)
				b.Spec.Selector.MatchLabels[kubernetes.LabelGatewayName] = "gw"
				return c.Create(ctx, b, client.DryRunAll)
			}},
			{"creating a PodDisruptionBudget with a selector expression", refusedBudgetSelector, func() error {
				b := budget("expr", mine, 1)
				b.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}
				return c.Create(ctx, b, client.DryRunAll)
			}},
			{"creating a PodDisruptionBudget that keeps unhealthy pods", refusedBudget, func() error {
				b := budget("unhealthy", mine, 1)
				b.Spec.UnhealthyPodEvictionPolicy = new(policyv1.IfHealthyBudget)
				return c.Create(ctx, b, client.DryRunAll)
			}},
			{"changing its PodDisruptionBudget to forbid evictions", refusedBudget, func() error {
				return c.Patch(ctx, budget("gw", nil, 0), mergePatch(`{"spec":{"maxUnavailable":0}}`), client.DryRunAll)
			}},
		} {
			if err := check(w.refused, w.write()); err != nil {
				t.Errorf("%s: %v", w.what, err)
			}
		}
	})

	t.Run("pod template", func(t *testing.T) {
		pod := func(d *appsv1.Deployment) *corev1.PodSpec { return &d.Spec.Template.Spec }
		volume := func(name string, src corev1.VolumeSource) func(*appsv1.Deployment) {
			return func(d *appsv1.Deployment) {
				pod(d).Volumes = append(pod(d).Volumes, corev1.Volume{Name: name, VolumeSource: src})
			}
		}
		secretKey := func(secret string) *corev1.EnvVarSource {
			return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "k"}}
		}
		env := func(src *corev1.EnvVarSource) func(*appsv1.Deployment) {
			return func(d *appsv1.Deployment) {
				c := &pod(d).InitContainers[0]
				c.Env = append(c.Env, corev1.EnvVar{Name: "STOLEN", ValueFrom: src})
			}
		}
		for _, ch := range []struct {
			what    string
			refused string // "": allowed
			edit    func(*appsv1.Deployment)
		}{
			{"the controller's Deployment as it is", "", func(*appsv1.Deployment) {}},
			{"serviceAccountName default", "", func(d *appsv1.Deployment) { pod(d).ServiceAccountName = "default" }},
			{"an env var from its own session key", "", env(secretKey("gw-session-key"))},
			{"serviceAccountName admin", refusedAccount, func(d *appsv1.Deployment) { pod(d).ServiceAccountName = "admin" }},
			{"the deprecated serviceAccount admin", refusedAccount, func(d *appsv1.Deployment) { pod(d).DeprecatedServiceAccount = "admin" }},
			{"automountServiceAccountToken unset", refusedToken, func(d *appsv1.Deployment) { pod(d).AutomountServiceAccountToken = nil }},
			{"automountServiceAccountToken true", refusedToken, func(d *appsv1.Deployment) { pod(d).AutomountServiceAccountToken = new(true) }},
			{"hostNetwork", refusedHostNamespace, func(d *appsv1.Deployment) {
				// (the namespaced sysctl is refused with the node's network)
				pod(d).HostNetwork, pod(d).SecurityContext.Sysctls = true, nil
			}},
			{"hostPID", refusedHostNamespace, func(d *appsv1.Deployment) { pod(d).HostPID = true }},
			{"hostIPC", refusedHostNamespace, func(d *appsv1.Deployment) { pod(d).HostIPC = true }},
			{"a privileged Envoy", refusedPrivileged, func(d *appsv1.Deployment) {
				sc := pod(d).Containers[0].SecurityContext
				sc.Privileged, sc.AllowPrivilegeEscalation = new(true), nil
			}},
			{"a sidecar adding a capability", refusedPrivileged, func(d *appsv1.Deployment) {
				pod(d).InitContainers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"SYS_ADMIN"}
			}},
			{"a hostPath volume", fmt.Sprintf(refusedVolumesPattern, "host"), volume("host", corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}})},
			{"another Secret's volume", fmt.Sprintf(refusedVolumesPattern, "stolen"), volume("stolen", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "someone-elses"}})},
			{"another Gateway's certificate", fmt.Sprintf(refusedVolumesPattern, "xds-tls"), func(d *appsv1.Deployment) {
				for _, v := range pod(d).Volumes {
					if v.Secret != nil && v.Secret.SecretName == "gw-xds-tls" {
						v.Secret.SecretName = "other-xds-tls"
					}
				}
			}},
			{"a projected ServiceAccount token", fmt.Sprintf(refusedVolumesPattern, "token"), volume("token", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}})},
			{"a projected Secret", fmt.Sprintf(refusedVolumesPattern, "projected"), volume("projected", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "someone-elses"}}}}}})},
			{"another ConfigMap", fmt.Sprintf(refusedVolumesPattern, "config"), volume("config", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "someone-elses"}}})},
			{"a PersistentVolumeClaim", fmt.Sprintf(refusedVolumesPattern, "data"), volume("data", corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}})},
			{"an env var from another Secret", refusedSecretRefs, env(secretKey("someone-elses"))},
			{"envFrom another Secret", refusedSecretRefs, func(d *appsv1.Deployment) {
				pod(d).Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "someone-elses"}}}}
			}},
			{"an image pull Secret", refusedSecretRefs, func(d *appsv1.Deployment) {
				pod(d).ImagePullSecrets = []corev1.LocalObjectReference{{Name: "someone-elses"}}
			}},
		} {
			d := dep.DeepCopy()
			ch.edit(d)
			if err := check(ch.refused, c.Patch(ctx, d, client.MergeFrom(dep), client.DryRunAll)); err != nil {
				t.Errorf("%s: %v", ch.what, err)
			}
		}

		// Creating: another Deployment mounts its own Secrets and bootstrap, not gw's.
		if err := check(fmt.Sprintf(refusedVolumesPattern, "bootstrap, session-key, xds-tls"), c.Create(ctx, renamed(dep, "copy", mine), client.DryRunAll)); err != nil {
			t.Errorf("a Deployment mounting another data plane's Secrets: %v", err)
		}
		if err := c.Create(ctx, dataPlaneCopy(dep, "copy", mine), client.DryRunAll); err != nil {
			t.Errorf("a data plane Deployment mounting its own Secrets: %v", err)
		}
		inKubeSystem := dataPlaneCopy(dep, "copy", mine)
		inKubeSystem.Namespace = "kube-system"
		pod(inKubeSystem).ServiceAccountName = "kube-proxy"
		if err := check(refusedAccount, c.Create(ctx, inKubeSystem, client.DryRunAll)); err != nil {
			t.Errorf("a data plane Deployment in kube-system under its ServiceAccount kube-proxy: %v", err)
		}
	})

	mustKubectl(t, nil, "-n", ns, "delete", "gateway", "gw")
	// envtest runs no garbage collector: the controller deletes the data plane itself.
	eventually(t, "the controller deletes the data plane", func() error {
		for _, o := range dataPlane()[:3] {
			if err := testCluster.client.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s: %v", o, client.ObjectKeyFromObject(o), err)
			}
		}
		return nil
	})
}

// check is nil when err is an admission refusal saying refused, or when refused is "" and err is
// nil.
func check(refused string, err error) error {
	if refused == "" {
		return err
	}
	return refusedWith(refused, err)
}

// renamed returns a copy of dep to create as name in its namespace, with labels.
func renamed(dep *appsv1.Deployment, name string, labels map[string]string) *appsv1.Deployment {
	d := dep.DeepCopy()
	d.ObjectMeta = metav1.ObjectMeta{Namespace: dep.Namespace, Name: name, Labels: labels, Annotations: dep.Annotations}
	d.Status = appsv1.DeploymentStatus{}
	return d
}

// dataPlaneCopy returns renamed(dep, name, labels) mounting the ConfigMap and Secrets of its own
// name (NAME-bootstrap, NAME-session-key, NAME-xds-tls), as the data plane of Gateway name.
func dataPlaneCopy(dep *appsv1.Deployment, name string, labels map[string]string) *appsv1.Deployment {
	d := renamed(dep, name, labels)
	for _, v := range d.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			v.ConfigMap.Name = name + strings.TrimPrefix(v.ConfigMap.Name, dep.Name)
		case v.Secret != nil:
			v.Secret.SecretName = name + strings.TrimPrefix(v.Secret.SecretName, dep.Name)
		}
	}
	return d
}

// mergePatch is a JSON merge patch.
func mergePatch(p string) client.Patch {
	return client.RawPatch(types.MergePatchType, []byte(p))
}
