package kubernetes_test

import (
	"fmt"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestBackendTLSPolicy: a BackendTLSPolicy applied with kubectl (the API server's CRD of Gateway
// API's standard channel) makes the EDS cluster of the Service port it targets connect over TLS,
// with the CA certificate of the ConfigMap it names (read by name with deploy/'s RBAC) and its
// hostname as SNI; its status, written by the controller, has the Gateway whose route reaches
// the Service as ancestor, Accepted and ResolvedRefs True. The ConfigMap edited is followed at
// once (its watch causes the pass); deleted, the policy is NoValidCACertificate and
// InvalidCACertificateRef, and the route's backendRef is refused (500): the cluster is not
// served, never in plaintext. With the route deleted no Gateway mcpgate serves reaches the
// policy: mcpgate's ancestor goes (Gateway API: only the ancestors it is responsible for; not
// the Service instead), another controller's stays.
func TestBackendTLSPolicy(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/backend-tls", "backend-tls"
	classAndNamespace(t, ns, ctrlName)
	first, second := mustCA(t), mustCA(t)
	configMap := func(ca *pki.CA) { applyCAConfigMap(t, ns, "backend-ca", ca) }
	configMap(first)
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: `+ns+`}
spec:
  gatewayClassName: `+ns+`
  listeners:
  - {name: http, port: 8080, protocol: HTTP}
---
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: `+ns+`}
spec:
  ports: [{name: https, port: 443, targetPort: 8443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: secure-a, namespace: `+ns+`, labels: {kubernetes.io/service-name: secure}}
addressType: IPv4
ports: [{name: https, port: 8443}]
endpoints: [{addresses: [10.9.0.1]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure, namespace: `+ns+`}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: secure, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: secure, namespace: `+ns+`}
spec:
  targetRefs: [{group: "", kind: Service, name: secure, sectionName: https}]
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: backend-ca}]
    hostname: secure.example.com
`), "apply", "-f", "-")
	installDeploy(t, false)
	ctrl := startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: time.Hour})
	ads := watchADS(t, ctrl, ns+"/gw")
	const cluster = "service/" + ns + "/secure/443"
	served := func(ca *pki.CA) func() error {
		return func() error {
			m, ok := ads.get(resourcev3.ClusterType, cluster)
			if !ok {
				return fmt.Errorf("no cluster %s served: %q", cluster, ads.names(resourcev3.ClusterType))
			}
			ctx := &tlsv3.UpstreamTlsContext{}
			if err := m.(*clusterv3.Cluster).GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
				return fmt.Errorf("cluster %s: no upstream TLS context: %v", cluster, err)
			}
			vc := ctx.GetCommonTlsContext().GetValidationContext()
			if ctx.GetSni() != "secure.example.com" || vc.GetTrustedCa().GetInlineString() != string(ca.CertPEM) ||
				len(vc.GetMatchTypedSubjectAltNames()) != 1 || vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "secure.example.com" {
				return fmt.Errorf("cluster %s: SNI %q, validation context %v; want SNI and SAN secure.example.com and the ConfigMap's CA", cluster, ctx.GetSni(), vc)
			}
			return nil
		}
	}
	status := func(accepted, resolved metav1.ConditionStatus, acceptedReason, resolvedReason string) func() error {
		return func() error {
			p := get(t, types.NamespacedName{Namespace: ns, Name: "secure"}, &gwv1.BackendTLSPolicy{})
			for _, a := range p.Status.Ancestors {
				if string(a.ControllerName) != ctrlName {
					continue
				}
				if string(a.AncestorRef.Name) != "gw" || a.AncestorRef.Kind == nil || *a.AncestorRef.Kind != "Gateway" {
					return fmt.Errorf("ancestor %+v, want Gateway gw", a.AncestorRef)
				}
				if err := condition(a.Conditions, "Accepted", accepted, acceptedReason, p.Generation); err != nil {
					return err
				}
				return condition(a.Conditions, "ResolvedRefs", resolved, resolvedReason, p.Generation)
			}
			return fmt.Errorf("no ancestor of %s in %+v", ctrlName, p.Status.Ancestors)
		}
	}
	eventually(t, "the policy's TLS served", served(first))
	eventually(t, "the policy Accepted and ResolvedRefs", status(metav1.ConditionTrue, metav1.ConditionTrue, "Accepted", "ResolvedRefs"))
	configMap(second)
	eventually(t, "the edited ConfigMap's CA certificate served", served(second))
	mustKubectl(t, nil, "-n", ns, "delete", "configmap", "backend-ca")
	eventually(t, "the policy without its ConfigMap refused", status(metav1.ConditionFalse, metav1.ConditionFalse, "NoValidCACertificate", "InvalidCACertificateRef"))
	// the route's backendRef is refused (its share answers 500): the cluster is served no more,
	// in plaintext or otherwise
	eventually(t, "the Service's cluster no longer served", func() error {
		if _, ok := ads.get(resourcev3.ClusterType, cluster); ok {
			return fmt.Errorf("cluster %s still served: %q", cluster, ads.names(resourcev3.ClusterType))
		}
		return nil
	})
	mustKubectl(t, nil, "-n", ns, "patch", "backendtlspolicy", "secure", "--subresource=status", "--type=json", "-p",
		`[{"op":"add","path":"/status/ancestors/-","value":{"ancestorRef":{"name":"theirs"},"controllerName":"example.com/elsewhere",`+
			`"conditions":[{"type":"Accepted","status":"True","reason":"Accepted","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}]`)
	mustKubectl(t, nil, "-n", ns, "delete", "httproute", "secure")
	eventually(t, "no ancestor of mcpgate once no served Gateway reaches the policy, the other controller's kept", func() error {
		a := get(t, types.NamespacedName{Namespace: ns, Name: "secure"}, &gwv1.BackendTLSPolicy{}).Status.Ancestors
		if len(a) != 1 || a[0].ControllerName != "example.com/elsewhere" || a[0].AncestorRef.Name != "theirs" {
			return fmt.Errorf("ancestors %+v, want only example.com/elsewhere's", a)
		}
		return nil
	})
}
