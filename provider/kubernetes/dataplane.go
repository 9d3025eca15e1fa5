package kubernetes

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyac "k8s.io/client-go/applyconfigurations/policy/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/internal/drain"
	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/translator"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

// Labels and annotations on the data plane objects the controller creates for a Gateway.
const (
	// LabelManagedBy marks every object the controller creates; only those are watched, updated
	// and deleted.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "mcpgate"
	// LabelGatewayName names the Gateway (in the object's namespace) a data plane object belongs
	// to. A Service with this label gives the Gateway its addresses, whoever created it.
	LabelGatewayName = "gateway.networking.k8s.io/gateway-name"
	// LabelName is the app name of every data plane pod.
	LabelName = "app.kubernetes.io/name"
	// DataPlaneName is the value of LabelName on the data plane objects.
	DataPlaneName = "mcpgate-gateway"
	// AnnotationController names the controllerName of the controller that made a data plane
	// object: a controller deletes only its own, when their Gateway is no longer served.
	AnnotationController = "mcpgate.dev/controller-name"
	// AnnotationBootstrapHash on the pod template rolls the pods when the bootstrap changes.
	AnnotationBootstrapHash = "mcpgate.dev/bootstrap-hash"
	// BootstrapKey is the key of the bootstrap in the ConfigMap.
	BootstrapKey = "bootstrap.yaml"
	// ExtProcSocket is the Unix socket Envoy reaches the extproc sidecar on (shared emptyDir).
	ExtProcSocket = "/var/run/mcpgate/extproc.sock"
	// MuxSocket is the Unix socket Envoy reaches the extproc sidecar's mux on (the bootstrap's
	// mcpgate_mux cluster), for the routes of multiplexed MCP backends.
	MuxSocket = "/var/run/mcpgate/mux.sock"
	// MuxUpstreamSocket is the Unix socket of Envoy's mux upstream listener, through which the
	// sidecar's mux reaches the targets.
	MuxUpstreamSocket = "/var/run/mcpgate/upstream.sock"
	// XDSTLSDir is where data plane pods mount their xDS client certificate Secret: tls.crt,
	// tls.key (the Gateway's certificate, see pki.IssueGateway) and ca.crt (the xDS CA).
	XDSTLSDir = "/etc/mcpgate/xds-tls"
	// SessionKeyDir is where the extproc sidecar mounts its Gateway's session key Secret (key
	// SessionKeyFile): the key sealing MCP session ids to their caller (package extproc/bind),
	// the same in every replica, so that any of them serves any session.
	SessionKeyDir = "/etc/mcpgate/session"
	// SessionKeyFile is the session key's file in SessionKeyDir and its key in the Secret.
	SessionKeyFile = "key"
	// AnnotationSessionKeyHash on the pod template rolls the pods when their session key changes
	// (a replaced Secret): the sidecar reads it once, at start, and every replica needs the same.
	AnnotationSessionKeyHash = "mcpgate.dev/session-key-hash"
	// AnnotationXDSCertHash on the pod template rolls the pods when their certificate is renewed
	// (Envoy reads the bootstrap's certificate files once, at start).
	AnnotationXDSCertHash = "mcpgate.dev/xds-cert-hash"
	// FieldOwner is the server-side apply field manager of the controller's data plane objects.
	// Status is written under the controller's own name (statusManager), so that two mcpgate
	// controllers tell their status writes apart.
	FieldOwner = "mcpgate-controller"
)

// Defaults of DataPlane.
const (
	DefaultEnvoyImage  = "envoyproxy/envoy:distroless-v1.38.1"
	DefaultServiceType = corev1.ServiceTypeLoadBalancer
	// extProcAdminPort serves the extproc sidecar's /healthz, /readyz and /metrics.
	extProcAdminPort = 19001
	// envoyAdminAddr is Envoy's admin listener in the data plane pod (the bootstrap's): on the
	// pod's loopback, where only the pod's containers reach it, the extproc sidecar reading its
	// statistics (envoyStatsURL) for its /metrics.
	envoyAdminAddr = bootstrap.DefaultAdminAddr
	envoyStatsURL  = "http://" + envoyAdminAddr + "/stats/prometheus"
	// envoyDrainTimeSeconds is Envoy's --drain-time-s: once drained (drain.Handler), its
	// listeners take new connections this long, longer than the drain waits (drain.DefaultMax),
	// so that a client a stale endpoint list still sends there is served (and asked to close).
	envoyDrainTimeSeconds = 60
	// terminationGraceSeconds is the pod's terminationGracePeriodSeconds: the drain's wait
	// (drain.DefaultMax) and Envoy's and the sidecar's exit after SIGTERM.
	terminationGraceSeconds = 45
)

// drainRestartAfter is when the sidecar tells an Envoy still up after a drain to quit: after
// the pod's grace period and Envoy's --drain-time-s.
const drainRestartAfter = time.Duration(max(terminationGraceSeconds, envoyDrainTimeSeconds)+30) * time.Second

// drainMin is how long a data plane pod's drain lasts at least: behind a cloud load balancer
// (LoadBalancer, NodePort) until its health checks of the node fail (interval times threshold,
// often 10 to 30 s), else until kube-proxy drops the endpoint (drain.DefaultMin).
func drainMin(t corev1.ServiceType) time.Duration {
	if t == corev1.ServiceTypeLoadBalancer || t == corev1.ServiceTypeNodePort {
		return 20 * time.Second
	}
	return drain.DefaultMin
}

// DataPlane says how the controller deploys the data plane of each Gateway it serves: a
// Deployment running Envoy with `mcpgate extproc` as a native sidecar (the two talk over a Unix
// socket in a shared emptyDir), a Service exposing the Gateway's listener ports, a ConfigMap
// holding Envoy's bootstrap, a PodDisruptionBudget letting one pod at a time be evicted, a Secret
// holding the extproc sidecars' session key and, with XDSCA, a Secret holding the xDS client
// certificate. They are named like the Gateway (the ConfigMap gets a -bootstrap suffix, the
// Secrets -session-key and -xds-tls) and live in its namespace; the Gateway owns the Deployment,
// the Service and the ConfigMap, the Deployment the PodDisruptionBudget and the Secrets. The
// Secrets are stored before the Deployment whose pod template names them (by their hashes), so
// that a pod never waits for a Secret that is not there (see applyDataPlane).
type DataPlane struct {
	// XDSAddress is HOST:PORT of the controller's xDS Service, for Envoy's bootstrap and the
	// extproc sidecar. Required.
	XDSAddress string
	// EnvoyImage is the Envoy image (default DefaultEnvoyImage).
	EnvoyImage string
	// ExtProcImage is the mcpgate image that runs `mcpgate extproc`. Required.
	ExtProcImage string
	// ServiceType is the type of each Gateway's Service (default LoadBalancer).
	ServiceType corev1.ServiceType
	// XDSCA, when set, turns on mutual TLS to the controller's xDS: each Gateway gets a Secret
	// (xdsSecretName) with a client certificate naming it, issued by XDSCA and mounted at
	// XDSTLSDir, which Envoy's bootstrap and the extproc sidecar use. The xDS server then serves a
	// data plane only its own Gateway's configuration.
	XDSCA *pki.CA
}

// xdsSecretName is the name of a Gateway's xDS client certificate Secret.
func xdsSecretName(gateway string) string { return gateway + "-xds-tls" }

// sessionKeySecretName is the name of a Gateway's session key Secret.
func sessionKeySecretName(gateway string) string { return gateway + "-session-key" }

// xdsCert is a Gateway's xDS client certificate, as its Secret holds it.
type xdsCert struct{ cert, key, ca []byte }

func (d DataPlane) withDefaults() DataPlane {
	if d.EnvoyImage == "" {
		d.EnvoyImage = DefaultEnvoyImage
	}
	if d.ServiceType == "" {
		d.ServiceType = DefaultServiceType
	}
	return d
}

// dataPlaneObjects is what the controller applies for one Gateway.
type dataPlaneObjects struct {
	configMap  *coreac.ConfigMapApplyConfiguration
	deployment *appsac.DeploymentApplyConfiguration
	service    *coreac.ServiceApplyConfiguration
	// gatewayOwner is the owner reference to the Gateway, of the ConfigMap, the Service and the
	// Deployment (and of the Secrets until the Deployment exists: see applyDataPlane).
	gatewayOwner *metaac.OwnerReferenceApplyConfiguration
	// secrets returns the Secrets the pods mount, owned by owner: the session key's and, with xDS
	// TLS, the client certificate's. They are new on each call: Apply writes the API server's
	// answer into what it applies, and applyDataPlane may apply them twice in a pass.
	secrets func(owner *metaac.OwnerReferenceApplyConfiguration) []*coreac.SecretApplyConfiguration
	// pdb is the Deployment's PodDisruptionBudget, without its owner (see deploymentOwner).
	pdb *policyac.PodDisruptionBudgetApplyConfiguration
}

// deploymentOwner is the owner reference to o's Deployment, the live one of UID uid, of the
// objects it owns (the Secrets, the PodDisruptionBudget). The garbage collector deletes them with
// the Deployment, so the controller needs no right to list or delete them. The reference is set as
// the Deployment's own to its Gateway: controller, without blockOwnerDeletion (which would need the
// right to update deployments/finalizers). The Secrets need the Deployment's UID, yet are stored
// before the Deployment is first applied: until then the Gateway owns them (applyDataPlane).
func (o dataPlaneObjects) deploymentOwner(uid types.UID) *metaac.OwnerReferenceApplyConfiguration {
	return metaac.OwnerReference().
		WithAPIVersion(appsv1.SchemeGroupVersion.String()).WithKind("Deployment").
		WithName(*o.deployment.Name).WithUID(uid).WithController(true)
}

// bootstrapName is the name of a Gateway's bootstrap ConfigMap.
func bootstrapName(gateway string) string { return gateway + "-bootstrap" }

// servedPorts returns the ports Envoy listens on for a Gateway, sorted: those of its Envoy
// listeners, one per distinct port of the listeners the translator accepted (a refused listener,
// say TCP, gets none). cfg is the Gateway's translated configuration (nil: none).
func servedPorts(cfg *translator.GatewayConfig) []int32 {
	if cfg == nil {
		return nil
	}
	seen := map[int32]bool{}
	for _, l := range cfg.Listeners {
		if p := l.GetAddress().GetSocketAddress().GetPortValue(); p > 0 {
			seen[int32(p)] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// buildDataPlane returns the objects of gw's data plane, made by the controller of
// controllerName; ports are the ports Envoy listens on (servedPorts: the Service's, the
// container's, the readiness probe's); bootYAML is Envoy's bootstrap; sessionKey the extproc
// sidecars' session key; cert, with xDS TLS, the Gateway's client certificate (nil without).
func (d DataPlane) buildDataPlane(gw *gwv1.Gateway, ports []int32, controllerName string, bootYAML, sessionKey []byte, cert *xdsCert) (dataPlaneObjects, error) {
	ns, name := gw.Namespace, gw.Name
	gateway := ns + "/" + name
	selector := map[string]string{LabelName: DataPlaneName, LabelGatewayName: name}
	labels := map[string]string{}
	annotations := map[string]string{}
	if infra := gw.Spec.Infrastructure; infra != nil {
		for k, v := range infra.Labels {
			labels[string(k)] = string(v)
		}
		for k, v := range infra.Annotations {
			annotations[string(k)] = string(v)
		}
	}
	// The controller's labels win over the infrastructure's: managed-by marks what the controller
	// may update and delete (and which pods deploy/'s NetworkPolicy lets reach xDS), the selector
	// which pods the Deployment and Service own.
	maps.Copy(labels, selector)
	labels[LabelManagedBy] = ManagedByValue
	// The objects' own annotations; the pod template gets the infrastructure's only.
	objAnnotations := maps.Clone(annotations)
	objAnnotations[AnnotationController] = controllerName
	owner := metaac.OwnerReference().
		WithAPIVersion(gwv1.GroupVersion.String()).WithKind("Gateway").
		WithName(name).WithUID(gw.UID).WithController(true)

	cm := coreac.ConfigMap(bootstrapName(name), ns).
		WithLabels(labels).WithAnnotations(objAnnotations).WithOwnerReferences(owner).
		WithData(map[string]string{BootstrapKey: string(bootYAML)})

	if len(ports) == 0 {
		// Nothing to serve, expose or probe: the objects are not built (an existing data plane is
		// left as it is, keeping its Service's address), and the Gateway is not Programmed.
		return dataPlaneObjects{}, fmt.Errorf("gateway %s has no accepted listener", gateway)
	}
	var containerPorts []*coreac.ContainerPortApplyConfiguration
	var servicePorts []*coreac.ServicePortApplyConfiguration
	for _, p := range ports {
		pn := "port-" + strconv.Itoa(int(p))
		containerPorts = append(containerPorts, coreac.ContainerPort().WithName(pn).WithContainerPort(p).WithProtocol(corev1.ProtocolTCP))
		servicePorts = append(servicePorts, coreac.ServicePort().WithName(pn).WithPort(p).
			WithTargetPort(intstr.FromInt32(p)).WithProtocol(corev1.ProtocolTCP))
	}

	sum := sha256.Sum256(bootYAML)
	restricted := func() *coreac.SecurityContextApplyConfiguration {
		return coreac.SecurityContext().WithAllowPrivilegeEscalation(false).WithReadOnlyRootFilesystem(true).
			WithCapabilities(coreac.Capabilities().WithDrop("ALL"))
	}
	socketDir := "/var/run/mcpgate"
	extprocArgs := []string{"extproc",
		// Only the Unix socket: Envoy is the sole client, in the same pod.
		"--listen=unix://" + ExtProcSocket,
		"--xds-addr=" + d.XDSAddress,
		"--gateway=" + gateway,
		"--admin-addr=:" + strconv.Itoa(extProcAdminPort),
		// Prometheus scrapes the sidecar's /metrics (the pod's annotations): it serves Envoy's
		// statistics too, read from Envoy's admin listener, which stays on the pod's loopback.
		"--envoy-stats-url=" + envoyStatsURL,
		"--session-key-file=" + SessionKeyDir + "/" + SessionKeyFile,
		// The mux of multiplexed MCP backends: Envoy sends their routes to it, it sends each
		// target's requests back through Envoy's mux upstream listener.
		"--mux-listen=unix://" + MuxSocket,
		"--mux-upstream=unix://" + MuxUpstreamSocket,
		// /drain, the Envoy container's preStop hook (drain.Handler).
		"--drain-envoy-admin=" + envoyAdminAddr,
		"--drain-min=" + drainMin(d.ServiceType).String(),
		// A drain its pod's termination did not follow (the drain token is in the pod spec,
		// which whoever may read pods sees) would leave Envoy's listeners stopped: the sidecar
		// then tells Envoy to quit, and the kubelet starts it again.
		"--drain-restart-after=" + drainRestartAfter.String()}
	mounts := []*coreac.VolumeMountApplyConfiguration{coreac.VolumeMount().WithName("sockets").WithMountPath(socketDir)}
	volumes := []*coreac.VolumeApplyConfiguration{
		coreac.Volume().WithName("bootstrap").WithConfigMap(coreac.ConfigMapVolumeSource().WithName(bootstrapName(name))),
		coreac.Volume().WithName("sockets").WithEmptyDir(coreac.EmptyDirVolumeSource().WithMedium(corev1.StorageMediumMemory)),
		coreac.Volume().WithName("session-key").WithSecret(
			coreac.SecretVolumeSource().WithSecretName(sessionKeySecretName(name)).WithDefaultMode(0o440)),
	}
	// Only the sidecar reads the session key.
	sessionMount := coreac.VolumeMount().WithName("session-key").WithMountPath(SessionKeyDir).WithReadOnly(true)
	secrets := func(owner *metaac.OwnerReferenceApplyConfiguration) []*coreac.SecretApplyConfiguration {
		s := []*coreac.SecretApplyConfiguration{coreac.Secret(sessionKeySecretName(name), ns).
			WithLabels(labels).WithAnnotations(objAnnotations).WithOwnerReferences(owner).
			WithType(corev1.SecretTypeOpaque).
			WithData(map[string][]byte{SessionKeyFile: sessionKey})}
		if cert != nil {
			s = append(s, coreac.Secret(xdsSecretName(name), ns).
				WithLabels(labels).WithAnnotations(objAnnotations).WithOwnerReferences(owner).
				WithType(corev1.SecretTypeTLS).
				WithData(map[string][]byte{pki.CertFile: cert.cert, pki.KeyFile: cert.key, pki.CAFile: cert.ca}))
		}
		return s
	}
	var certHash string
	if cert != nil {
		extprocArgs = append(extprocArgs, "--xds-tls-dir="+XDSTLSDir)
		mounts = append(mounts, coreac.VolumeMount().WithName("xds-tls").WithMountPath(XDSTLSDir).WithReadOnly(true))
		volumes = append(volumes, coreac.Volume().WithName("xds-tls").WithSecret(
			coreac.SecretVolumeSource().WithSecretName(xdsSecretName(name)).WithDefaultMode(0o440)))
		h := sha256.Sum256(cert.cert)
		certHash = hex.EncodeToString(h[:8])
	}
	extproc := coreac.Container().WithName("extproc").WithImage(d.ExtProcImage).
		// A native sidecar: it starts, and becomes ready, before Envoy, and stops after it.
		WithRestartPolicy(corev1.ContainerRestartPolicyAlways).
		WithArgs(extprocArgs...).
		WithPorts(coreac.ContainerPort().WithName("extproc-admin").WithContainerPort(extProcAdminPort)).
		WithStartupProbe(httpProbe("/readyz", extProcAdminPort).WithPeriodSeconds(1).WithFailureThreshold(60)).
		WithReadinessProbe(httpProbe("/readyz", extProcAdminPort).WithPeriodSeconds(5)).
		WithLivenessProbe(httpProbe("/healthz", extProcAdminPort).WithPeriodSeconds(10).WithFailureThreshold(6)).
		WithResources(resources("100m", "128Mi", "512Mi")).
		WithEnv(goMemLimit("extproc")).
		WithSecurityContext(restricted()).
		WithVolumeMounts(append(slices.Clone(mounts), sessionMount)...)
	envoy := coreac.Container().WithName("envoy").WithImage(d.EnvoyImage).
		WithArgs("-c", "/etc/envoy/"+BootstrapKey,
			"--service-cluster", gateway,
			"--service-node", "$(POD_NAME)",
			"--disable-hot-restart",
			"--log-level", "info",
			"--drain-time-s", strconv.Itoa(envoyDrainTimeSeconds),
			// Every response asks its client to close the connection as soon as the drain
			// begins (the default, gradual, would spread that over --drain-time-s).
			"--drain-strategy", "immediate",
			bootstrap.FileFlushFlag, bootstrap.FileFlushMillis).
		WithEnv(coreac.EnvVar().WithName("POD_NAME").WithValueFrom(
			// (apiVersion as the API server defaults it: the selector is atomic, so a value that
			// differs from the applied one would read as a change on every pass)
			coreac.EnvVarSource().WithFieldRef(coreac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.name")))).
		WithPorts(containerPorts...).
		// Envoy binds a listener port only once it has its listeners from xDS (the lowest port it
		// serves: a refused listener's port is never bound).
		WithReadinessProbe(coreac.Probe().WithPeriodSeconds(5).
			WithTCPSocket(coreac.TCPSocketAction().WithPort(intstr.FromInt32(ports[0])))).
		WithResources(resources("100m", "128Mi", "1Gi")).
		// When the pod terminates, its endpoint leaves the Service while Envoy still serves: the
		// sidecar drains Envoy (drain.Handler: the listeners ask clients to close, requests in
		// flight finish) for at least drain.DefaultMin, while load balancers and kube-proxy stop
		// sending it connections, and until its connections are gone or drain.DefaultMax; only
		// then Envoy gets SIGTERM, on which it stops at once. (An HTTP hook: the distroless
		// image has no shell.)
		WithLifecycle(coreac.Lifecycle().WithPreStop(coreac.LifecycleHandler().WithHTTPGet(coreac.HTTPGetAction().
			WithPath(drain.Path).WithPort(intstr.FromInt32(extProcAdminPort)).
			WithHTTPHeaders(coreac.HTTPHeader().WithName(drain.TokenHeader).WithValue(drain.Token(sessionKey)))))).
		WithSecurityContext(restricted()).
		WithVolumeMounts(append([]*coreac.VolumeMountApplyConfiguration{
			coreac.VolumeMount().WithName("bootstrap").WithMountPath("/etc/envoy").WithReadOnly(true)}, mounts...)...)

	pod := coreac.PodSpec().
		// Neither container calls the Kubernetes API.
		WithAutomountServiceAccountToken(false).
		WithTerminationGracePeriodSeconds(terminationGraceSeconds).
		// Replicas of a data plane on different nodes where the scheduler can: a node's loss or
		// drain then takes one of them, not the Gateway (preferred, so that a one-node cluster
		// still runs them all).
		WithAffinity(coreac.Affinity().WithPodAntiAffinity(coreac.PodAntiAffinity().WithPreferredDuringSchedulingIgnoredDuringExecution(
			coreac.WeightedPodAffinityTerm().WithWeight(100).WithPodAffinityTerm(coreac.PodAffinityTerm().
				WithTopologyKey(corev1.LabelHostname).WithLabelSelector(metaac.LabelSelector().WithMatchLabels(selector)))))).
		WithSecurityContext(coreac.PodSecurityContext().
			WithRunAsNonRoot(true).WithRunAsUser(65532).WithRunAsGroup(65532).WithFSGroup(65532).
			WithSeccompProfile(coreac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)).
			// Listener ports below 1024 without a capability (a safe, namespaced sysctl).
			WithSysctls(coreac.Sysctl().WithName("net.ipv4.ip_unprivileged_port_start").WithValue("0"))).
		WithInitContainers(extproc).
		WithContainers(envoy).
		WithVolumes(volumes...)

	keySum := sha256.Sum256(sessionKey)
	podAnnotations := map[string]string{
		AnnotationBootstrapHash:  hex.EncodeToString(sum[:8]),
		AnnotationSessionKeyHash: hex.EncodeToString(keySum[:8]),
		// `kubectl logs deploy/NAME` shows Envoy's access log (the lab's step 5).
		"kubectl.kubernetes.io/default-container": "envoy",
		"prometheus.io/scrape":                    "true",
		"prometheus.io/port":                      strconv.Itoa(extProcAdminPort),
		"prometheus.io/path":                      "/metrics",
	}
	if certHash != "" {
		podAnnotations[AnnotationXDSCertHash] = certHash
	}
	maps.Copy(podAnnotations, annotations)
	// Replicas are left out: the Deployment starts with one and is scaled with kubectl scale or
	// an autoscaler, which the controller does not undo.
	dep := appsac.Deployment(name, ns).
		WithLabels(labels).WithAnnotations(objAnnotations).WithOwnerReferences(owner).
		WithSpec(appsac.DeploymentSpec().
			WithSelector(metaac.LabelSelector().WithMatchLabels(selector)).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(labels).WithAnnotations(podAnnotations).WithSpec(pod)))

	spec := coreac.ServiceSpec().WithType(d.ServiceType).WithSelector(selector).WithPorts(servicePorts...)
	if d.ServiceType == corev1.ServiceTypeLoadBalancer || d.ServiceType == corev1.ServiceTypeNodePort {
		// As Envoy Gateway's: the client's address reaches Envoy (kube-proxy does not replace it
		// with a node's), for the access log, source.address in rules and the ring hash that keeps
		// a legacy SSE session's requests on its server.
		spec = spec.WithExternalTrafficPolicy(corev1.ServiceExternalTrafficPolicyLocal)
	}
	svc := coreac.Service(name, ns).
		WithLabels(labels).WithAnnotations(objAnnotations).WithOwnerReferences(owner).
		WithSpec(spec)

	// Voluntary disruptions (a node drain, a cluster upgrade) evict one data plane pod at a time,
	// so a Gateway scaled to several replicas keeps serving; a Gateway with one replica may still
	// lose it (a budget that forbids that would block the drain for good). A pod that is not ready
	// serves nothing and may always be evicted.
	pdb := policyac.PodDisruptionBudget(name, ns).
		WithLabels(labels).WithAnnotations(objAnnotations).
		WithSpec(policyac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metaac.LabelSelector().WithMatchLabels(selector)).
			WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow))

	return dataPlaneObjects{configMap: cm, deployment: dep, service: svc, gatewayOwner: owner, secrets: secrets, pdb: pdb}, nil
}

func httpProbe(path string, port int) *coreac.ProbeApplyConfiguration {
	return coreac.Probe().WithHTTPGet(coreac.HTTPGetAction().WithPath(path).WithPort(intstr.FromInt(port)))
}

// goMemLimit is the GOMEMLIMIT of a Go container: its memory limit, so that the Go runtime
// collects harder as its memory nears the limit instead of growing the heap into the OOM kill (Go
// reads no cgroup memory limit by itself). It is the whole limit (a resourceFieldRef cannot take
// a share of it), and GOMEMLIMIT is soft: it bounds what the runtime manages, not the process. Container name and divisor are given as the API server would fill them in:
// the selector is atomic, and a difference would read as a change on every pass.
func goMemLimit(container string) *coreac.EnvVarApplyConfiguration {
	return coreac.EnvVar().WithName("GOMEMLIMIT").WithValueFrom(coreac.EnvVarSource().WithResourceFieldRef(
		coreac.ResourceFieldSelector().WithContainerName(container).WithResource("limits.memory").WithDivisor(resource.MustParse("1"))))
}

func resources(cpu, memory, memoryLimit string) *coreac.ResourceRequirementsApplyConfiguration {
	return coreac.ResourceRequirements().
		WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)}).
		WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memoryLimit)})
}

// dataPlaneState is how a served Gateway's data plane stands after a pass.
type dataPlaneState struct {
	// err says why it is not applied as it should be (nil: applied and current).
	err error
	// unavailable says why its Deployment has no available replica to serve ("": it has one).
	unavailable string
}

// reconcileDataPlanes applies the data plane of every served Gateway whose objects differ from
// what was last applied, and deletes the data plane objects of Gateways no longer served. It
// returns each served Gateway's state.
func (p *Provider) reconcileDataPlanes(ctx context.Context, snap *snapshot, out *translator.Output) map[gatewayKey]dataPlaneState {
	d := *p.opts.DataPlane
	result := map[gatewayKey]dataPlaneState{}
	services := map[gatewayKey]*corev1.Service{}
	for _, s := range snap.resources.Services {
		services[client.ObjectKeyFromObject(s)] = s
	}
	for _, gw := range snap.resources.Gateways {
		key := client.ObjectKeyFromObject(gw)
		if _, served := out.Status.Gateways[key]; !served || gw.DeletionTimestamp != nil {
			continue
		}
		st := dataPlaneState{err: p.applyDataPlane(ctx, d, gw, servedPorts(out.Gateways[key.String()]), services)}
		if st.err == nil {
			st.unavailable = p.unavailable(ctx, key)
		}
		result[key] = st
	}
	p.deleteStaleDataPlanes(ctx, snap.resources.Services, result)
	p.forgetRemembered(false, result)
	return result
}

// unavailable says why the data plane Deployment key (as cached: its status changes cause a pass)
// has no available replica, or "" when it has one. Envoy Gateway reports the same as
// Programmed False, reason NoResources.
func (p *Provider) unavailable(ctx context.Context, key types.NamespacedName) string {
	var dep appsv1.Deployment
	switch err := p.client.Get(ctx, key, &dep); {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("Deployment %s has no available replica yet", key)
	case err != nil:
		return fmt.Sprintf("Deployment %s: %v", key, err)
	case dep.Status.AvailableReplicas > 0:
		return ""
	case dep.Spec.Replicas != nil && *dep.Spec.Replicas == 0:
		return fmt.Sprintf("Deployment %s is scaled to zero replicas", key)
	}
	return fmt.Sprintf("Deployment %s has no available replica yet", key)
}

// applyDataPlane applies one Gateway's data plane; ports are those Envoy listens on
// (servedPorts). In order: the ConfigMap and the Service; the Secrets (the session key's and, with
// xDS TLS, the client certificate's); the Deployment, whose pods mount the ConfigMap and the
// Secrets and whose pod template carries the hashes of the key and the certificate; then the
// PodDisruptionBudget. The Secrets come first so that a pod template never names a key or
// certificate that is not stored: when the ConfigMap or a Secret cannot be applied, the
// Deployment is not applied either (else each pass would draw a new key or certificate and roll
// the pods again, to pods that cannot mount the missing Secret). The Deployment owns the Secrets
// (deploymentOwner): when it exists they are applied owned by it; when it does not yet, owned by
// the Gateway, and again owned by the Deployment once it is applied (either way the garbage
// collector deletes them, which the controller may not). An object of the same name that the
// controller did not create is left alone and reported. The Secrets and the PodDisruptionBudget
// are read from the API server unless a pass since the last full one found them current under
// the same Deployment (remembered).
func (p *Provider) applyDataPlane(ctx context.Context, d DataPlane, gw *gwv1.Gateway, ports []int32, services map[gatewayKey]*corev1.Service) error {
	key := client.ObjectKeyFromObject(gw)
	// The Deployment (named like the Gateway) as cached, and its UID when it is mcpgate's: the
	// Secrets and PodDisruptionBudget remembered under it are still the ones it owns.
	depKey := key
	dep := &appsv1.Deployment{}
	depFound, depErr := p.readCached(ctx, "Deployment", depKey, dep)
	var depUID types.UID
	if depErr == nil && depFound && notManaged("Deployment", depKey, dep) == nil {
		depUID = dep.UID
	}
	// The same bootstrap as `mcpgate bootstrap --gateway NS/NAME --xds-addr XDSAddress
	// --extproc-addr unix://ExtProcSocket --mux-addr unix://MuxSocket --mux-upstream
	// unix://MuxUpstreamSocket` (its default --envoy-admin-addr, envoyAdminAddr; with --xds-tls-dir
	// XDSTLSDir under xDS TLS).
	opts := bootstrap.Options{Gateway: key.String(), XDSAddr: d.XDSAddress, ExtProcAddr: "unix://" + ExtProcSocket,
		MuxAddr: "unix://" + MuxSocket, MuxUpstream: "unix://" + MuxUpstreamSocket, AdminAddr: envoyAdminAddr}
	// The Secrets as read (nil: none), by name.
	current := map[string]*corev1.Secret{}
	sessionKey, cur, err := p.sessionKey(ctx, key, depUID)
	if err != nil {
		return fmt.Errorf("session key: %w", err)
	}
	current[sessionKeySecretName(key.Name)] = cur
	var cert *xdsCert
	if d.XDSCA != nil {
		if cert, cur, err = p.gatewayCert(ctx, d.XDSCA, key, depUID); err != nil {
			return fmt.Errorf("xDS client certificate: %w", err)
		}
		current[xdsSecretName(key.Name)] = cur
		if opts.XDSTLS, err = bootstrap.TLSDir(XDSTLSDir, d.XDSAddress); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	boot, err := bootstrap.Generate(opts)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	objs, err := d.buildDataPlane(gw, ports, p.opts.ControllerName, boot, sessionKey, cert)
	if err != nil {
		return fmt.Errorf("data plane objects: %w", err)
	}
	in := func(name string) types.NamespacedName {
		return types.NamespacedName{Namespace: key.Namespace, Name: name}
	}
	// uid is the Deployment that owns the Secrets applied (empty: not it, or a new one): a Secret
	// found current under it is remembered.
	applySecrets := func(owner *metaac.OwnerReferenceApplyConfiguration, uid types.UID) error {
		var errs []error
		for _, sec := range objs.secrets(owner) {
			applied, err := p.applyIfChanged(ctx, "Secret", in(*sec.Name), current[*sec.Name], sec)
			p.remember(key, "Secret", in(*sec.Name), current[*sec.Name], uid, err == nil && !applied)
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	notApplied := func(kind string) error {
		return fmt.Errorf("Deployment %s is not applied: its pods would mount the %s not applied above", depKey, kind)
	}
	var errs []error
	// A ConfigMap or Secret of the pods' names made by someone else (to run Envoy with their
	// bootstrap, or to have the Gateway's certificate or session key) is refused by applyIfChanged,
	// and keeps the Deployment from being applied (fail closed).
	_, cmErr := p.applyIfChanged(ctx, "ConfigMap", in(*objs.configMap.Name), &corev1.ConfigMap{}, objs.configMap)
	if _, err := p.applyIfChanged(ctx, "Service", in(*objs.service.Name), services[in(*objs.service.Name)], objs.service); err != nil {
		errs = append(errs, err)
	}
	if cmErr != nil {
		return errors.Join(append(errs, cmErr, notApplied("ConfigMap"))...)
	}
	// The Secrets before the Deployment: owned by it when it exists, else by the Gateway until it
	// does.
	owner := objs.gatewayOwner
	switch {
	case depErr != nil:
		return errors.Join(append(errs, depErr)...)
	case !depFound:
		dep = nil
	default:
		// (one the controller did not create is refused before its UID owns the Secrets)
		if err := notManaged("Deployment", depKey, dep); err != nil {
			return errors.Join(append(errs, err)...)
		}
		owner = objs.deploymentOwner(dep.UID)
	}
	if err := applySecrets(owner, depUID); err != nil {
		return errors.Join(append(errs, err, notApplied("Secret"))...)
	}
	if _, err := p.applyIfChanged(ctx, "Deployment", depKey, dep, objs.deployment); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if dep == nil {
		// The Deployment is new, and owns its Secrets from now on (Apply wrote the API server's
		// answer, with the UID, into the apply configuration).
		if objs.deployment.UID == nil {
			return errors.Join(append(errs, fmt.Errorf("its Secrets and PodDisruptionBudget are not owned by it: Deployment %s was applied without a UID", depKey))...)
		}
		owner = objs.deploymentOwner(*objs.deployment.UID)
		errs = append(errs, applySecrets(owner, ""))
	}
	pdbKey := in(*objs.pdb.Name)
	var pdb *policyv1.PodDisruptionBudget
	read, err := p.readRemembered(ctx, "PodDisruptionBudget", pdbKey, depUID, &policyv1.PodDisruptionBudget{})
	if read != nil {
		pdb = read.(*policyv1.PodDisruptionBudget)
	}
	switch {
	case err != nil:
		errs = append(errs, err)
	case pdb != nil && notManaged("PodDisruptionBudget", pdbKey, pdb) != nil:
		// Someone budgets the Gateway's disruptions themselves: theirs stays, and is no error
		// (unlike an object the pods would mount, it changes nothing they run).
		p.log.Info("data plane PodDisruptionBudget left alone: not managed by mcpgate", "object", pdbKey.String())
		p.remember(key, "PodDisruptionBudget", pdbKey, pdb, depUID, true)
	default:
		applied, err := p.applyIfChanged(ctx, "PodDisruptionBudget", pdbKey, pdb, objs.pdb.WithOwnerReferences(owner))
		p.remember(key, "PodDisruptionBudget", pdbKey, pdb, depUID, err == nil && !applied)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sessionKey returns the session key of gw: the one its Secret holds when mcpgate made it, else
// a new random one; and the Secret as read (nil: none; see readSecret for deployment).
func (p *Provider) sessionKey(ctx context.Context, gw gatewayKey, deployment types.UID) ([]byte, *corev1.Secret, error) {
	cur, err := p.readSecret(ctx, types.NamespacedName{Namespace: gw.Namespace, Name: sessionKeySecretName(gw.Name)}, deployment)
	switch {
	case err != nil:
		return nil, nil, err
	case cur != nil && cur.Labels[LabelManagedBy] == ManagedByValue && len(cur.Data[SessionKeyFile]) >= bind.KeySize:
		return cur.Data[SessionKeyFile], cur, nil
	}
	// (a Secret of that name that mcpgate did not make is refused by applyDataPlane)
	k := make([]byte, bind.KeySize)
	rand.Read(k)
	return k, cur, nil
}

// readSecret reads the data plane Secret key (readRemembered, with the UID of the data plane's
// Deployment); nil when there is none.
func (p *Provider) readSecret(ctx context.Context, key types.NamespacedName, deployment types.UID) (*corev1.Secret, error) {
	sec, err := p.readRemembered(ctx, "Secret", key, deployment, &corev1.Secret{})
	if sec == nil {
		return nil, err
	}
	return sec.(*corev1.Secret), nil
}

// readUncached reads obj, of kind kind, by key from the API server: the kinds the controller
// gets by name and does not cache (Secrets, PodDisruptionBudgets), so that it needs no right to
// list or watch them. It reports false when there is none.
func (p *Provider) readUncached(ctx context.Context, kind string, key types.NamespacedName, obj client.Object) (bool, error) {
	switch err := p.reader.Get(ctx, key, obj); {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s %s: %w", kind, key, err)
	}
	return true, nil
}

// readCached reads obj, of kind kind, by key: from the cache, which holds only the objects
// labelled as the controller's, else (an object of the same name without the label) from the API
// server. It reports false when there is none.
func (p *Provider) readCached(ctx context.Context, kind string, key types.NamespacedName, obj client.Object) (bool, error) {
	err := p.client.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		err = p.reader.Get(ctx, key, obj)
	}
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read %s %s: %w", kind, key, err)
	}
	return true, nil
}

// gatewayCert returns the xDS client certificate of gw: the one its Secret holds while ca signed
// it for gw and a third of its life is left, else a new one; and the Secret as read (nil: none;
// see readSecret for deployment).
func (p *Provider) gatewayCert(ctx context.Context, ca *pki.CA, gw gatewayKey, deployment types.UID) (*xdsCert, *corev1.Secret, error) {
	cur, err := p.readSecret(ctx, types.NamespacedName{Namespace: gw.Namespace, Name: xdsSecretName(gw.Name)}, deployment)
	switch {
	case err != nil:
		return nil, nil, err
	case cur != nil && cur.Labels[LabelManagedBy] == ManagedByValue && bytes.Equal(cur.Data[pki.CAFile], ca.CertPEM) &&
		ca.CurrentGateway(cur.Data[pki.CertFile], cur.Data[pki.KeyFile], gw.String(), time.Now()):
		return &xdsCert{cert: cur.Data[pki.CertFile], key: cur.Data[pki.KeyFile], ca: ca.CertPEM}, cur, nil
	}
	// (a Secret of that name that mcpgate did not make is refused by applyIfChanged)
	c, k, err := ca.IssueGateway(gw.String(), time.Now())
	if err != nil {
		return nil, nil, err
	}
	return &xdsCert{cert: c, key: k, ca: ca.CertPEM}, cur, nil
}

// applyIfChanged applies an object (server-side, forcing the controller's ownership) unless the
// current one already holds it: the fields the controller's field manager owns there are exactly
// apply's. A field someone else changed (kubectl edit, patch, apply) passed to them, so the
// object is applied again, which restores it; fields the controller does not set (replicas,
// which kubectl scale and autoscalers own, a label someone added) are theirs and stay. An
// unchanged object costs no request. current is the object as already read (the cached Service,
// a Secret or PodDisruptionBudget readRemembered read, a Deployment readCached read; nil: none),
// or an empty object to read a ConfigMap into; it must carry its managedFields (the cache keeps
// those of the controller's objects). It reports whether it applied the object.
func (p *Provider) applyIfChanged(ctx context.Context, kind string, key types.NamespacedName, current client.Object, apply runtime.ApplyConfiguration) (bool, error) {
	var exists bool
	switch current.(type) {
	case *corev1.Service, *corev1.Secret, *appsv1.Deployment, *policyv1.PodDisruptionBudget:
		exists = !reflect.ValueOf(current).IsNil()
	default:
		var err error
		if exists, err = p.readCached(ctx, kind, key, current); err != nil {
			return false, err
		}
	}
	if exists {
		if err := notManaged(kind, key, current); err != nil {
			return false, err
		}
		same, err := holds(current, apply)
		if err != nil {
			p.log.Warn("data plane object compared by applying it", "kind", kind, "object", key.String(), "error", err)
		}
		if same {
			return false, nil
		}
	}
	if err := p.client.Apply(ctx, apply, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply %s %s: %w", kind, key, err)
	}
	p.log.Info("data plane object applied", "kind", kind, "object", key.String())
	return true, nil
}

// holds reports whether obj holds apply as the fields the controller's field manager owns (its
// last apply, less what others changed since).
func holds(obj client.Object, apply runtime.ApplyConfiguration) (bool, error) {
	var owned any
	var err error
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		owned, err = coreac.ExtractConfigMap(o, FieldOwner)
	case *corev1.Service:
		owned, err = coreac.ExtractService(o, FieldOwner)
	case *corev1.Secret:
		owned, err = coreac.ExtractSecret(o, FieldOwner)
	case *appsv1.Deployment:
		owned, err = appsac.ExtractDeployment(o, FieldOwner)
	case *policyv1.PodDisruptionBudget:
		owned, err = policyac.ExtractPodDisruptionBudget(o, FieldOwner)
	default:
		err = errors.New("no apply configuration of this kind")
	}
	if err != nil {
		return false, fmt.Errorf("fields owned by %s in %T: %w", FieldOwner, obj, err)
	}
	have, err1 := json.Marshal(owned)
	want, err2 := json.Marshal(apply)
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("encode apply configuration: %w", err)
	}
	return bytes.Equal(have, want), nil
}

// notManaged is an error unless obj (kind key) carries the label of the objects mcpgate made.
func notManaged(kind string, key types.NamespacedName, obj client.Object) error {
	if obj.GetLabels()[LabelManagedBy] != ManagedByValue {
		return fmt.Errorf("%s %s exists and is not managed by mcpgate (label %s=%s): rename the Gateway or remove it", kind, key, LabelManagedBy, ManagedByValue)
	}
	return nil
}

// deleteStaleDataPlanes deletes the data plane objects whose Gateway is not served any more (it
// was deleted, or its class is not ours). Owner references make the garbage collector do the
// same when a Gateway is deleted; this also covers a Gateway that changed class. Objects that
// another mcpgate controller made (another controllerName) are left to it. The Secrets are owned
// by the Deployment (by the Gateway until the Deployment is applied): the garbage collector
// deletes them with it (the controller may get Secrets by name, never list or delete them).
func (p *Provider) deleteStaleDataPlanes(ctx context.Context, services []*corev1.Service, served map[gatewayKey]dataPlaneState) {
	var deps appsv1.DeploymentList
	var cms corev1.ConfigMapList
	managed := client.MatchingLabels{LabelManagedBy: ManagedByValue}
	var objs []client.Object
	if err := p.client.List(ctx, &deps, managed); err != nil {
		p.log.Error("list data plane Deployments", "error", err)
	}
	if err := p.client.List(ctx, &cms, managed); err != nil {
		p.log.Error("list data plane ConfigMaps", "error", err)
	}
	for i := range deps.Items {
		objs = append(objs, &deps.Items[i])
	}
	for i := range cms.Items {
		objs = append(objs, &cms.Items[i])
	}
	for _, s := range services {
		if s.Labels[LabelManagedBy] == ManagedByValue {
			objs = append(objs, s)
		}
	}
	for _, o := range objs {
		gw, ok := o.GetLabels()[LabelGatewayName]
		if !ok || o.GetDeletionTimestamp() != nil {
			continue
		}
		if c, set := o.GetAnnotations()[AnnotationController]; set && c != p.opts.ControllerName {
			continue
		}
		if _, keep := served[gatewayKey{Namespace: o.GetNamespace(), Name: gw}]; keep {
			continue
		}
		if err := p.client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			p.log.Error("delete data plane object", "object", client.ObjectKeyFromObject(o).String(), "error", err)
			continue
		}
		p.log.Info("data plane object deleted", "kind", fmt.Sprintf("%T", o), "object", client.ObjectKeyFromObject(o).String(), "gateway", o.GetNamespace()+"/"+gw)
	}
}
