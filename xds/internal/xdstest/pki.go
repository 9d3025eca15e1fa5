package xdstest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// CA is a throwaway certificate authority for tests of mutual TLS: mcpgate's own (pki.CA).
type CA struct {
	ca *pki.CA
	// PEM is the CA certificate in PEM, what a ca.crt file holds.
	PEM []byte
	// Pool trusts the CA alone.
	Pool *x509.CertPool
}

// Cert is an issued certificate with its key.
type Cert struct {
	// TLS is the certificate and key as a tls.Config takes them.
	TLS tls.Certificate
	// CertPEM and KeyPEM are what tls.crt and tls.key hold.
	CertPEM, KeyPEM []byte
}

// NewCA returns a new CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &CA{ca: ca, PEM: ca.CertPEM, Pool: ca.Pool()}
}

// Server issues a server certificate for the DNS name dns.
func (ca *CA) Server(t testing.TB, dns string) Cert {
	t.Helper()
	c, k, err := ca.ca.IssueServer([]string{dns}, time.Now())
	return certOf(t, c, k, err)
}

// Client issues a client certificate whose only subject alt name is the URI uri.
func (ca *CA) Client(t testing.TB, uri string) Cert {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.ca.IssueClient(uri, u, time.Now())
	return certOf(t, c, k, err)
}

func certOf(t testing.TB, certPEM, keyPEM []byte, err error) Cert {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	c := Cert{CertPEM: certPEM, KeyPEM: keyPEM}
	if c.TLS, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return c
}

// Write writes c as tls.crt and tls.key, and the CA as ca.crt, in dir (the layout of a
// Kubernetes TLS Secret mounted as a volume) and returns their paths.
func (ca *CA) Write(t testing.TB, dir string, c Cert) (certFile, keyFile, caFile string) {
	t.Helper()
	certFile, keyFile, caFile = filepath.Join(dir, pki.CertFile), filepath.Join(dir, pki.KeyFile), filepath.Join(dir, pki.CAFile)
	for path, data := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM, caFile: ca.PEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

// groupURIPrefix starts the URI SAN that Identity reads.
const groupURIPrefix = "spiffe://mcpgate.test/group/"

// GroupURI is the URI SAN of a client certificate that Identity binds to group.
func GroupURI(group string) string { return groupURIPrefix + group }

// Identity is the tests' xds.Identity: the node group named by a URI SAN made by GroupURI.
func Identity(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if group, ok := strings.CutPrefix(u.String(), groupURIPrefix); ok && group != "" {
			return group, nil
		}
	}
	return "", fmt.Errorf("no URI SAN %s...", groupURIPrefix)
}
