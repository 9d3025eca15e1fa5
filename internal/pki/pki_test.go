package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// TestMutualTLS: a server certificate and a Gateway's client certificate from one CA complete a
// real TLS handshake in which each side verifies the other, and the server reads the Gateway
// from the client's certificate.
func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := pki.ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("ParseCA: %v", err)
	}
	srvCert, srvKey, err := ca.IssueServer([]string{"mcpgate-controller.mcpgate-system.svc"}, now)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ca.IssueGateway("team-a/gw", now)
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cliPair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	server := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{srvPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	client := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{cliPair}, RootCAs: ca.Pool(), ServerName: "mcpgate-controller.mcpgate-system.svc"})
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	peer := server.ConnectionState().PeerCertificates[0]
	if gw, err := pki.GatewayOf(peer); err != nil || gw != "team-a/gw" {
		t.Errorf("GatewayOf = %q, %v", gw, err)
	}
	// (the pipe, not the TLS connections: their close_notify would wait for a reader)
	a.Close()
	b.Close()

	// a server certificate is no client identity
	parsed, _ := x509.ParseCertificate(srvPair.Certificate[0])
	if gw, err := pki.GatewayOf(parsed); err == nil {
		t.Errorf("GatewayOf(server certificate) = %q", gw)
	}
}

func TestCurrent(t *testing.T) {
	now := time.Now()
	ca, _ := pki.NewCA(now)
	other, _ := pki.NewCA(now)
	cert, _, err := ca.IssueGateway("ns/gw", now)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, _ := other.IssueGateway("ns/gw", now)
	for _, c := range []struct {
		name string
		pem  []byte
		at   time.Time
		want bool
	}{
		{"new", cert, now, true},
		{"half its life", cert, now.Add(pki.CertLifetime / 2), true},
		{"a third left", cert, now.Add(pki.CertLifetime * 2 / 3), false},
		{"expired", cert, now.Add(pki.CertLifetime + time.Hour), false},
		{"another CA's", foreign, now, false},
		{"not PEM", []byte("garbage"), now, false},
		{"empty", nil, now, false},
	} {
		if got := ca.Current(c.pem, c.at); got != c.want {
			t.Errorf("%s: Current = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestGatewayURI(t *testing.T) {
	u, err := pki.GatewayURI("agentgateway-system/agentgateway")
	if err != nil || u.String() != "spiffe://mcpgate.dev/ns/agentgateway-system/gateway/agentgateway" {
		t.Errorf("GatewayURI = %v, %v", u, err)
	}
	for _, bad := range []string{"", "gw", "/gw", "ns/", "ns/gw/x"} {
		if _, err := pki.GatewayURI(bad); err == nil {
			t.Errorf("GatewayURI(%q) accepted", bad)
		}
	}
	if _, err := pki.ParseCA([]byte("x"), []byte("y")); err == nil {
		t.Error("ParseCA accepted garbage")
	}
}

// TestCurrentGateway: a Gateway's Secret is reused only when it holds that Gateway's client
// certificate with its own key.
func TestCurrentGateway(t *testing.T) {
	now := time.Now()
	ca, _ := pki.NewCA(now)
	cert, key, _ := ca.IssueGateway("ns/gw", now)
	otherCert, otherKey, _ := ca.IssueGateway("ns/other", now)
	srvCert, srvKey, _ := ca.IssueServer([]string{"ns-gw"}, now)
	for _, c := range []struct {
		name      string
		cert, key []byte
		want      bool
	}{
		{"its own", cert, key, true},
		{"another Gateway's", otherCert, otherKey, false},
		{"its certificate, another key", cert, otherKey, false},
		{"a server certificate", srvCert, srvKey, false},
		{"no key", cert, nil, false},
	} {
		if got := ca.CurrentGateway(c.cert, c.key, "ns/gw", now); got != c.want {
			t.Errorf("%s: CurrentGateway = %v, want %v", c.name, got, c.want)
		}
	}
	if ca.CurrentGateway(cert, key, "ns/gw", now.Add(pki.CertLifetime)) {
		t.Error("an old certificate is current")
	}
}
