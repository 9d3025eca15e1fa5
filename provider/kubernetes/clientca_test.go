package kubernetes_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
	"github.com/mcpgate/mcpgate/translator"
)

// TestGatewayClientCA: the CA certificates of an HTTPS listener's client certificate validation
// (spec.tls.frontend) come from the ConfigMaps its caCertificateRefs name, read by name with
// deploy/'s RBAC (one of another namespace where a ReferenceGrant there permits it, never one
// no grant permits), served to the data plane as the port's SDS validation context. A ConfigMap
// edited or deleted is followed at once: its watch causes the pass (the periodic one is an hour
// away).
func TestGatewayClientCA(t *testing.T) {
	const ctrlName, ns, partners, elsewhere = "test.mcpgate.dev/client-ca", "client-ca", "client-ca-partners", "client-ca-elsewhere"
	classAndNamespace(t, ns, ctrlName)
	mustKubectl(t, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: `+partners+`}
---
apiVersion: v1
kind: Namespace
metadata: {name: `+elsewhere+`}
`), "apply", "-f", "-")
	serverCA, first, second, partner, other := mustCA(t), mustCA(t), mustCA(t), mustCA(t), mustCA(t)
	applyServerSecret(t, ns, "mcp-cert", serverCA, "mcp.example")
	configMap := func(ns, name string, ca *pki.CA) { applyCAConfigMap(t, ns, name, ca) }
	configMap(ns, "client-ca", first)
	configMap(partners, "partner-ca", partner)
	configMap(elsewhere, "other-ca", other)
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: gateways, namespace: `+partners+`}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: `+ns+`}]
  to: [{group: "", kind: ConfigMap, name: partner-ca}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: `+ns+`}
spec:
  gatewayClassName: `+ns+`
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs:
          - {group: "", kind: ConfigMap, name: client-ca}
          - {group: "", kind: ConfigMap, name: partner-ca, namespace: `+partners+`}
          - {group: "", kind: ConfigMap, name: other-ca, namespace: `+elsewhere+`}
  listeners:
  - name: https
    port: 8443
    protocol: HTTPS
    tls:
      certificateRefs: [{name: mcp-cert}]
`), "apply", "-f", "-")
	installDeploy(t, false)
	// The controller's requests are told from the test's by their user agent.
	const userAgent = "mcpgate-tests/client-ca-controller"
	cfg := controllerConfig()
	cfg.UserAgent = userAgent
	ctrl := startController(t, t, cfg, kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: time.Hour})
	ads := watchADS(t, ctrl, ns+"/gw")
	caName := translator.ClientCASecretName(ns, "gw", 8443)
	served := func(want ...*pki.CA) func() error {
		return func() error {
			m, ok := ads.get(resourcev3.SecretType, caName)
			if !ok {
				return fmt.Errorf("no Secret %s served: %q", caName, ads.names(resourcev3.SecretType))
			}
			var pems []string
			for _, ca := range want {
				pems = append(pems, string(ca.CertPEM))
			}
			if got := m.(*tlsv3.Secret).GetValidationContext().GetTrustedCa().GetInlineString(); got != strings.Join(pems, "") {
				return fmt.Errorf("served CA certificates:\n%s\nwant:\n%s", got, strings.Join(pems, ""))
			}
			if len(ads.names(resourcev3.ListenerType)) != 1 {
				return fmt.Errorf("listeners %q, want the HTTPS one", ads.names(resourcev3.ListenerType))
			}
			return nil
		}
	}
	eventually(t, "the ConfigMaps' CA certificates served", served(first, partner))
	configMap(ns, "client-ca", second)
	eventually(t, "the edited ConfigMap's CA certificate served", served(second, partner))
	mustKubectl(t, nil, "-n", ns, "delete", "configmap", "client-ca")
	eventually(t, "the deleted ConfigMap's CA certificate no longer served", served(partner))
	if got := requestsIn(t, partners, userAgent, []string{"get", "watch"}, "configmaps"); len(got) == 0 {
		t.Errorf("no read of the granted ConfigMap %s/partner-ca by the controller (user agent %s) in the audit log", partners, userAgent)
	}
	if got := requestsIn(t, elsewhere, userAgent, []string{"get", "list", "watch"}, "configmaps"); len(got) != 0 {
		t.Errorf("ConfigMaps of %s, which no ReferenceGrant opens to the Gateway, were read: %q", elsewhere, got)
	}
}

// mustCA returns a new CA.
func mustCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// applyCAConfigMap creates or replaces the ConfigMap ns/name holding ca's certificate in key
// ca.crt, as `kubectl create configmap --from-file` writes it.
func applyCAConfigMap(t *testing.T, ns, name string, ca *pki.CA) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(p, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	m := mustKubectl(t, nil, "-n", ns, "create", "configmap", name, "--from-file=ca.crt="+p, "--dry-run=client", "-o", "yaml")
	mustKubectl(t, []byte(m), "apply", "-f", "-")
}
