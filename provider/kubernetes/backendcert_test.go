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

// TestBackendClientCertificate: a Gateway's spec.tls.backend.clientCertificateRef names a
// kubernetes.io/tls Secret of another namespace. Until a ReferenceGrant there permits it, the
// Gateway's ResolvedRefs is False RefNotPermitted and its TLS target's cluster fails closed (no
// endpoints, no TLS, no Secret served); with the grant (a watched kind: the next pass reads the
// Secret by name, with deploy/'s RBAC) the cluster presents the certificate over SDS, the Secret
// is served to the Gateway's data plane and ResolvedRefs is True; a renewed certificate is served
// after the next full pass (Secrets are read by name, not watched).
func TestBackendClientCertificate(t *testing.T) {
	const ctrlName, ns, certs = "test.mcpgate.dev/backend-cert", "backend-cert", "backend-cert-certs"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+certs+"}\n"), "apply", "-f", "-")
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret := func(cn string) []byte {
		t.Helper()
		certPEM, keyPEM, err := ca.IssueGateway(ns+"/"+cn, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		applyTLSSecret(t, certs, "client-cert", certPEM, keyPEM)
		return certPEM
	}
	first := secret("first")
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: `+ns+`}
spec:
  gatewayClassName: `+ns+`
  tls:
    backend:
      clientCertificateRef: {name: client-cert, namespace: `+certs+`}
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayBackend
metadata: {name: secure, namespace: `+ns+`}
spec:
  mcp:
    targets:
    - name: remote
      static:
        host: mcp.example.com
        port: 8443
        policies: {tls: {}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure, namespace: `+ns+`}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: secure, group: agentgateway.dev, kind: AgentgatewayBackend}]
`), "apply", "-f", "-")
	installDeploy(t, false)
	ctrl := startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: 200 * time.Millisecond})
	ads := watchADS(t, ctrl, ns+"/gw")
	const cluster, sds = "agentgatewaybackend/" + ns + "/secure/remote", "secret/" + certs + "/client-cert"
	resolved := func(status metav1.ConditionStatus, reason string) error {
		g := get(t, types.NamespacedName{Namespace: ns, Name: "gw"}, &gwv1.Gateway{})
		if err := condition(g.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted", g.Generation); err != nil {
			return err
		}
		return condition(g.Status.Conditions, "ResolvedRefs", status, reason, g.Generation)
	}
	eventually(t, "the client certificate refused, the TLS cluster failing closed", func() error {
		m, ok := ads.get(resourcev3.ClusterType, cluster)
		if !ok {
			return fmt.Errorf("no cluster %s: %q", cluster, ads.names(resourcev3.ClusterType))
		}
		c := m.(*clusterv3.Cluster)
		if c.GetType() != clusterv3.Cluster_STATIC || len(c.GetLoadAssignment().GetEndpoints()) != 0 || c.GetTransportSocket() != nil {
			return fmt.Errorf("cluster %s is %v with %d localities and transport socket %v, want STATIC without endpoints or TLS",
				cluster, c.GetType(), len(c.GetLoadAssignment().GetEndpoints()), c.GetTransportSocket())
		}
		return resolved(metav1.ConditionFalse, "RefNotPermitted")
	})
	if names := ads.names(resourcev3.SecretType); len(names) != 0 {
		t.Fatalf("Secrets served without a ReferenceGrant: %q", names)
	}

	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateway-client-cert, namespace: `+certs+`}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: `+ns+`}]
  to: [{group: "", kind: Secret, name: client-cert}]
`), "apply", "-f", "-")
	presented := func(want []byte) func() error {
		return func() error {
			m, ok := ads.get(resourcev3.ClusterType, cluster)
			if !ok {
				return fmt.Errorf("no cluster %s", cluster)
			}
			ctx := &tlsv3.UpstreamTlsContext{}
			if err := m.(*clusterv3.Cluster).GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
				return fmt.Errorf("cluster %s: transport socket: %w", cluster, err)
			}
			if got := ctx.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs(); len(got) != 1 || got[0].GetName() != sds {
				return fmt.Errorf("cluster %s presents %v, want the SDS Secret %s", cluster, got, sds)
			}
			s, ok := ads.get(resourcev3.SecretType, sds)
			if !ok {
				return fmt.Errorf("no Secret %s served: %q", sds, ads.names(resourcev3.SecretType))
			}
			if got := s.(*tlsv3.Secret).GetTlsCertificate().GetCertificateChain().GetInlineString(); got != string(want) {
				return fmt.Errorf("served certificate:\n%s\nwant:\n%s", got, want)
			}
			return resolved(metav1.ConditionTrue, "ResolvedRefs")
		}
	}
	eventually(t, "the granted client certificate presented", presented(first))
	renewed := secret("renewed")
	eventually(t, "the renewed client certificate presented", presented(renewed))
}
