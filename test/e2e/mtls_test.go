package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// fileMTLS is testdata/e2e-mtls.yaml, a Gateway whose HTTPS listener requires client
// certificates (spec.tls.frontend).
const fileMTLS = "e2e-mtls.yaml"

// TestHTTPSClientCertificate: a go-sdk MCP client presenting a certificate issued by the CA of
// the Gateway's client validation (a ConfigMap) lists and calls server-everything's tools over
// HTTPS; the same client without a certificate, or with one issued by another CA, fails in the
// TLS handshake and reaches nothing.
func TestHTTPSClientCertificate(t *testing.T) {
	clientCA, otherCA := newCA(t), newCA(t)
	serverCA, endpoint := serveHTTPS(t, fileMTLS, map[string]string{"CLIENT_CA": indentPEM(clientCA.CertPEM)})

	client := func(cert *tls.Certificate) *http.Client { return mtlsClient(t, serverCA, cert, nil) }
	session := func(c *http.Client) error {
		return inSession(&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: c, MaxRetries: -1}, func(ctx context.Context, cs *mcp.ClientSession) error {
			return listAndEcho(ctx, cs, "over mutual TLS")
		})
	}
	clientCert := func(ca *pki.CA) *tls.Certificate { return issueClientCert(t, ca, "e2e client", "/client") }
	eventually(t, "tools/list and tools/call with the CA's client certificate", func() error {
		return session(client(clientCert(clientCA)))
	})

	// The listener serves now: the clients below fail for their certificate alone.
	for _, c := range []struct {
		what string
		cert *tls.Certificate
		want string // the TLS alert the gateway answers with
	}{
		{"without a client certificate", nil, "certificate required"},
		{"with another CA's client certificate", clientCert(otherCA), "unknown certificate authority"},
	} {
		if err := session(client(c.cert)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("go-sdk client %s: %v, want the handshake refused (%s)", c.what, err, c.want)
		}
		resp, err := client(c.cert).Get(endpoint)
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s %s: %d, want the handshake refused (%s)", endpoint, c.what, resp.StatusCode, c.want)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("GET %s %s: %v, want the handshake refused (%s)", endpoint, c.what, err, c.want)
		}
	}
}

// mtlsClient returns an HTTP client trusting serverCA's certificate for localhost that presents
// cert when asked for one (nil: none), whatever CAs the gateway names, and sends every request
// with the headers of extra (name, value pairs).
func mtlsClient(t *testing.T, serverCA *pki.CA, cert *tls.Certificate, extra []string) *http.Client {
	cfg := &tls.Config{RootCAs: serverCA.Pool(), ServerName: "localhost"}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: extraHeaders{next: tr, headers: extra}}
}

// extraHeaders adds headers (name, value pairs) to every request.
type extraHeaders struct {
	next    http.RoundTripper
	headers []string
}

func (x extraHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(x.headers) > 0 {
		r = r.Clone(r.Context())
		for i := 0; i+1 < len(x.headers); i += 2 {
			r.Header.Set(x.headers[i], x.headers[i+1])
		}
	}
	return x.next.RoundTrip(r)
}

// issueClientCert is a client certificate of ca for the subject CN=commonName and the URI SAN
// spiffe://e2e.test/PATH.
func issueClientCert(t *testing.T, ca *pki.CA, commonName, path string) *tls.Certificate {
	t.Helper()
	crt, key, err := ca.IssueClient(commonName, &url.URL{Scheme: "spiffe", Host: "e2e.test", Path: path}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}
