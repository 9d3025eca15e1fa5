package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// fileBackendTLS is testdata/e2e-btls.yaml, a Gateway of its own beside the lab's.
const fileBackendTLS = "e2e-btls.yaml"

// TestBackendTLSPolicy: a go-sdk MCP server served over HTTPS behind a Service and its
// EndpointSlice, with a certificate for mcp.backend.example from a CA only a ConfigMap holds, is
// reached through the gateway only as a BackendTLSPolicy says: with the policy naming the
// ConfigMap and the hostname, a go-sdk client lists its tools and the server sees the SNI
// mcp.backend.example; with a policy wanting another hostname the data plane refuses the
// certificate (503, a failed handshake on the server); without a policy the gateway speaks
// plaintext to the TLS server, which serves nothing; with a policy whose ConfigMap is missing the
// route answers 500 and the server is not reached. A static MCP target naming an ExternalName
// Service (externalName localhost) that a policy targets is reached over TLS as it says, with the
// hostname as SNI.
func TestBackendTLSPolicy(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"mcp.backend.example"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	up := startHTTPSServerWith(t, func(c *tls.Config) { c.Certificates = []tls.Certificate{cert} })
	free, err := freePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	serveTestdata(t, fileBackendTLS, map[string]string{
		"GATEWAY_PORT": strconv.Itoa(free[0]), "WRONG_NAME_PORT": strconv.Itoa(free[1]), "PLAIN_PORT": strconv.Itoa(free[2]),
		"MISSING_PORT": strconv.Itoa(free[3]), "EXTERNAL_PORT": strconv.Itoa(free[4]), "SERVER_PORT": portOf(up.srv), "CA_PEM": indentPEM(ca.CertPEM),
	})

	url := "http://" + addr(free[0]) + "/mcp"
	expectSecureEcho(t, "tools/list through the BackendTLSPolicy's Service", url)
	seen := up.requests()
	if len(seen) == 0 {
		t.Fatal("the server served no request")
	}
	for i, r := range seen {
		if r.sni != "mcp.backend.example" {
			t.Errorf("request %d (%s) reached the server with SNI %q, want mcp.backend.example (validation.hostname)", i, r.path, r.sni)
		}
	}

	// A static MCP target naming the ExternalName Service partner: TLS to its externalName.
	before := len(up.requests())
	expectSecureEcho(t, "tools/list through a static target naming an ExternalName Service with a BackendTLSPolicy", "http://"+addr(free[4])+"/mcp")
	seen = up.requests()[before:]
	if len(seen) == 0 {
		t.Fatal("the server served no request through the ExternalName Service")
	}
	for i, r := range seen {
		if r.sni != "mcp.backend.example" {
			t.Errorf("request %d (%s) through the ExternalName Service reached the server with SNI %q, want mcp.backend.example", i, r.path, r.sni)
		}
	}

	// validation.hostname other.example: the certificate lacks the name.
	up.expectRefused(t, addr(free[1]), "/wrong-name/mcp", "the wrong-hostname policy's Service")

	// No policy: plaintext to the TLS server, which serves no request: Go's TLS server answers
	// a plaintext request 400 ("Client sent an HTTP request to an HTTPS server"), which the
	// gateway passes on; the path is never served.
	eventually(t, "the Service without a policy is not served", func() error {
		a, err := env.request(http.MethodPost, "http://"+addr(free[2])+"/no-policy/mcp", "", initializeBody)
		if err != nil {
			return err
		}
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, "HTTPS server") {
			return fmt.Errorf("initialize without a BackendTLSPolicy: %d %q, want the TLS server's 400 to a plaintext request", a.status, a.body)
		}
		return nil
	})

	// The policy's ConfigMap is missing: 500, never plaintext.
	eventually(t, "the missing CA policy's Service answers 500", func() error {
		a, err := env.request(http.MethodPost, "http://"+addr(free[3])+"/missing-ca/mcp", "", initializeBody)
		if err != nil {
			return err
		}
		if a.status != http.StatusInternalServerError {
			return fmt.Errorf("initialize through the policy without CA: %d %q, want 500", a.status, a.body)
		}
		return nil
	})
	for _, r := range up.requests() {
		if r.path == "/no-policy/mcp" || r.path == "/missing-ca/mcp" {
			t.Errorf("the server served a request it should not have: %+v", r)
		}
	}
}
