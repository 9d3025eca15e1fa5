package kubernetes_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mcpgate/mcpgate/internal/pki"
	"github.com/mcpgate/mcpgate/provider/kubernetes"
)

// TestGatewayCertificateSecret: an HTTPS listener's certificate comes from the kubernetes.io/tls
// Secret its certificateRefs name, read by name with deploy/'s RBAC (get, no list or watch),
// served to the Gateway's data plane as an SDS Secret; a renewed certificate is served after the
// next full pass.
func TestGatewayCertificateSecret(t *testing.T) {
	const ctrlName, ns = "test.mcpgate.dev/certificates", "certificates"
	classAndNamespace(t, ns, ctrlName)
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret := func(host string) []byte { return applyServerSecret(t, ns, "mcp-cert", ca, host) }
	first := secret("mcp.example")
	mustKubectl(t, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: `+ns+`}
spec:
  gatewayClassName: `+ns+`
  listeners:
  - name: https
    port: 8443
    protocol: HTTPS
    tls:
      certificateRefs: [{name: mcp-cert}]
`), "apply", "-f", "-")
	installDeploy(t, false)
	ctrl := startController(t, t, controllerConfig(), kubernetes.Options{ControllerName: ctrlName, ResyncPeriod: 200 * time.Millisecond})
	ads := watchADS(t, ctrl, ns+"/gw")
	served := func(want []byte) func() error {
		return func() error {
			m, ok := ads.get(resourcev3.SecretType, "secret/"+ns+"/mcp-cert")
			if !ok {
				return fmt.Errorf("no Secret secret/%s/mcp-cert served: %q", ns, ads.names(resourcev3.SecretType))
			}
			got := m.(*tlsv3.Secret).GetTlsCertificate().GetCertificateChain().GetInlineString()
			if string(got) != string(want) {
				return fmt.Errorf("served certificate:\n%s\nwant:\n%s", got, want)
			}
			if len(ads.names(resourcev3.ListenerType)) != 1 {
				return fmt.Errorf("listeners %q, want the HTTPS one", ads.names(resourcev3.ListenerType))
			}
			return nil
		}
	}
	eventually(t, "the certificate served", served(first))
	renewed := secret("mcp.example")
	eventually(t, "the renewed certificate served", served(renewed))
}

// applyServerSecret applies the kubernetes.io/tls Secret ns/name holding a certificate for host
// that ca issues (applyTLSSecret), and returns the certificate.
func applyServerSecret(t *testing.T, ns, name string, ca *pki.CA, host string) []byte {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServer([]string{host}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	applyTLSSecret(t, ns, name, certPEM, keyPEM)
	return certPEM
}

// applyTLSSecret creates or replaces the kubernetes.io/tls Secret ns/name with certPEM and keyPEM,
// as `kubectl create secret tls` writes it.
func applyTLSSecret(t *testing.T, ns, name string, certPEM, keyPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(crt, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	manifest := mustKubectl(t, nil, "-n", ns, "create", "secret", "tls", name, "--cert", crt, "--key", key, "--dry-run=client", "-o", "yaml")
	mustKubectl(t, []byte(manifest), "apply", "-f", "-")
}
