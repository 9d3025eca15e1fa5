// Package pki issues the certificates of mcpgate's xDS mutual TLS in Kubernetes: a CA kept in a
// Secret of the controller's namespace, a server certificate per controller replica (made at
// start, never stored), and a client certificate per Gateway whose URI SAN names the Gateway, so
// that the xDS server serves a client only its own Gateway's configuration.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Lifetimes of the certificates. A certificate is renewed once a third of its life is left
// (NeedsRenewal).
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	CertLifetime = 365 * 24 * time.Hour
)

// identityScheme and identityHost start a Gateway's identity:
// spiffe://mcpgate.dev/ns/NAMESPACE/gateway/NAME.
const (
	identityScheme = "spiffe"
	identityHost   = "mcpgate.dev"
)

// CA is a certificate authority: its certificate and key, parsed and as PEM.
type CA struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key (ECDSA P-256 when NewCA made it).
	Key crypto.Signer
	// CertPEM is the certificate as a PEM "CERTIFICATE" block.
	CertPEM []byte
	// KeyPEM is the key as PEM (NewCA: a PKCS #8 "PRIVATE KEY" block).
	KeyPEM []byte
}

// NewCA makes a CA valid from now (less a minute, for clocks behind) for CALifetime.
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "mcpgate xDS CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	certPEM, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return ParseCA(certPEM, keyPEM)
}

// ParseCA reads a CA from its PEM certificate and key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("CA: the certificate is not a CA")
	}
	if now := time.Now(); now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("CA: valid from %s to %s, not now", cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA: the key cannot sign")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueServer issues a server certificate for names (DNS names or IP addresses), valid from now
// for CertLifetime.
func (ca *CA) IssueServer(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("server certificate: no name")
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: names[0]}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.issue(tmpl, now)
}

// IssueGateway issues the client certificate of gateway ("NAMESPACE/NAME"): its URI SAN is
// GatewayURI(gateway).
func (ca *CA) IssueGateway(gateway string, now time.Time) (certPEM, keyPEM []byte, err error) {
	u, err := GatewayURI(gateway)
	if err != nil {
		return nil, nil, err
	}
	return ca.IssueClient(gateway, u, now)
}

// IssueClient issues a client certificate named commonName whose one subject alt name is uri,
// valid from now for CertLifetime.
func (ca *CA) IssueClient(commonName string, uri *url.URL, now time.Time) (certPEM, keyPEM []byte, err error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		URIs:        []*url.URL{uri},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, now)
}

func (ca *CA) issue(tmpl *x509.Certificate, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate key: %w", err)
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Minute), now.Add(CertLifetime)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if certPEM, err = sign(tmpl, ca.Cert, key.Public(), ca.Key); err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// Current reports whether certPEM is a certificate this CA signed that has more than a third of
// its life left at now: else it is to be issued anew.
func (ca *CA) Current(certPEM []byte, now time.Time) bool {
	cert, err := parseCert(certPEM)
	if err != nil {
		return false
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return false
	}
	return now.Before(cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 3))
}

// CurrentGateway reports whether certPEM and keyPEM are gateway's client certificate and its key,
// as IssueGateway makes them, and Current: else they are to be issued anew. A Secret holding
// another Gateway's certificate, a certificate of another use or a key of another certificate
// is not reused.
func (ca *CA) CurrentGateway(certPEM, keyPEM []byte, gateway string, now time.Time) bool {
	if !ca.Current(certPEM, now) {
		return false
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return false
	}
	cert, err := parseCert(certPEM)
	if err != nil || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return false
	}
	gw, err := GatewayOf(cert)
	return err == nil && gw == gateway
}

// GatewayURI returns the identity of gateway ("NAMESPACE/NAME") in client certificates.
func GatewayURI(gateway string) (*url.URL, error) {
	ns, name, ok := strings.Cut(gateway, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("gateway %q: want NAMESPACE/NAME", gateway)
	}
	return &url.URL{Scheme: identityScheme, Host: identityHost, Path: "/ns/" + ns + "/gateway/" + name}, nil
}

// GatewayOf returns the Gateway ("NAMESPACE/NAME") a client certificate names in its URI SAN.
func GatewayOf(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if u.Scheme != identityScheme || u.Host != identityHost {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) == 4 && parts[0] == "ns" && parts[2] == "gateway" && parts[1] != "" && parts[3] != "" {
			return parts[1] + "/" + parts[3], nil
		}
	}
	return "", fmt.Errorf("certificate %q names no Gateway (a URI SAN %s://%s/ns/NAMESPACE/gateway/NAME)", cert.Subject.CommonName, identityScheme, identityHost)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// Files of a certificate directory: a Kubernetes TLS Secret mounted in a pod, plus the CA.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// ClientTLS returns the TLS configuration of an xDS client from dir (CertFile, KeyFile, CAFile):
// it presents the certificate and accepts a server whose certificate chains to the CA and names
// serverName.
func ClientTLS(dir, serverName string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("xDS client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("xDS CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("xDS CA: %s holds no PEM certificate", filepath.Join(dir, CAFile))
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}

// ServerConfig returns the TLS configuration of the xDS server: a certificate for the host of
// xdsAddress (HOST:PORT, the address data planes dial) issued by ca, made at the first handshake
// and again once a third of its life is left, and client certificates required and verified
// against ca.
func (ca *CA) ServerConfig(xdsAddress string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(xdsAddress)
	if err != nil {
		return nil, fmt.Errorf("xDS address %q: %w", xdsAddress, err)
	}
	var mu sync.Mutex
	var certPEM []byte
	var cert *tls.Certificate
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  ca.Pool(),
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			if cert != nil && ca.Current(certPEM, now) {
				return cert, nil
			}
			c, k, err := ca.IssueServer([]string{host}, now)
			if err != nil {
				return nil, err
			}
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				return nil, err
			}
			certPEM, cert = c, &pair
			return cert, nil
		},
	}, nil
}
