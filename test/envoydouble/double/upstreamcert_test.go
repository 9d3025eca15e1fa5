package double_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/mcpgate/mcpgate/internal/pki"
)

// clientSecret is an SDS Secret with a client certificate named cn, issued by ca.
func clientSecret(t *testing.T, ca *pki.CA, name, cn string) *tlsv3.Secret {
	t.Helper()
	crt, key, err := ca.IssueGateway("ns/"+cn, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: crt}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}
}

// certCluster is a STATIC cluster to addr over TLS (SNI localhost, verified against ca) whose
// client certificate is the SDS Secret secret, as the translator emits a Gateway's backend client
// certificate (spec.tls.backend.clientCertificateRef).
func certCluster(t *testing.T, name, addr string, ca *pki.CA, ctx func(*tlsv3.CommonTlsContext)) *clusterv3.Cluster {
	t.Helper()
	c := staticCluster(name, addr)
	common := &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca.CertPEM}}}}}
	ctx(common)
	c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: any_(t, &tlsv3.UpstreamTlsContext{Sni: "localhost", CommonTlsContext: common})}}
	return c
}

// sdsCert names the SDS Secret secret (over ADS) as the context's client certificate.
func sdsCert(secret string) func(*tlsv3.CommonTlsContext) {
	return func(c *tlsv3.CommonTlsContext) {
		c.TlsCertificateSdsSecretConfigs = append(c.TlsCertificateSdsSecretConfigs, &tlsv3.SdsSecretConfig{Name: secret, SdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}})
	}
}

// TestUpstreamClientCertificateSDS: a cluster whose UpstreamTlsContext names its client
// certificate by SDS (tls_certificate_sds_secret_configs over ADS) presents the Secret to an
// upstream that requires and verifies client certificates. As Envoy's ClientSslSocketFactory:
// while the Secret is not there, each connection fails before it is opened (NotReadySslSocket:
// 503, the upstream sees no connection); a Secret update is presented on the connections opened
// after it.
func TestUpstreamClientCertificateSDS(t *testing.T) {
	e := newEnv(t, answer(nil))
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.IssueServer([]string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-client", r.TLS.PeerCertificates[0].Subject.CommonName)
		w.Header().Set("Connection", "close") // every request on a connection of its own
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.StartTLS()
	t.Cleanup(up.Close)

	l := listener(t, e.listen, nil, nil)
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("up", "/", "up", nil)))
	c := certCluster(t, "up", up.Listener.Addr().String(), ca, sdsCert("secret/ns/client"))
	e.push(l, rc, c)
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	if resp, body := do(t, "GET", e.url("/"), nil); resp.StatusCode != http.StatusServiceUnavailable || conns.Load() != 0 {
		t.Errorf("without the Secret: %d %q, %d connections to the upstream; want 503 and none", resp.StatusCode, body, conns.Load())
	}

	e.push(l, rc, c, clientSecret(t, ca, "secret/ns/client", "first"))
	if resp, body := do(t, "GET", e.url("/"), nil); resp.StatusCode != http.StatusOK || resp.Header.Get("x-client") != "ns/first" {
		t.Errorf("with the Secret: %d %q, client %q; want 200 from ns/first", resp.StatusCode, body, resp.Header.Get("x-client"))
	}
	e.push(l, rc, c, clientSecret(t, ca, "secret/ns/client", "renewed"))
	if resp, body := do(t, "GET", e.url("/"), nil); resp.StatusCode != http.StatusOK || resp.Header.Get("x-client") != "ns/renewed" {
		t.Errorf("after the Secret's update: %d %q, client %q; want 200 from ns/renewed", resp.StatusCode, body, resp.Header.Get("x-client"))
	}

	// Without a client certificate the upstream refuses the handshake: 503 too.
	e.push(l, rc, certCluster(t, "up", up.Listener.Addr().String(), ca, func(*tlsv3.CommonTlsContext) {}))
	if resp, body := do(t, "GET", e.url("/"), nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("without a client certificate: %d %q, want 503", resp.StatusCode, body)
	}
}

// TestUpstreamClientCertificateRefused: what Envoy refuses, or the double does not reproduce, of
// an upstream context's SDS certificate is NACKed naming the field: a certificate by SDS beside
// an inline one (Envoy: "Multiple TLS certificates are not supported for client contexts"), two
// by SDS, and an SDS source other than ADS.
func TestUpstreamClientCertificateRefused(t *testing.T) {
	e := newEnv(t, answer(nil))
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	inline := clientSecret(t, ca, "inline", "inline").GetTlsCertificate()
	l := listener(t, e.listen, nil, nil)
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("up", "/", "up", nil)))
	for name, tc := range map[string]struct {
		ctx  func(*tlsv3.CommonTlsContext)
		want string
	}{
		"SDS and inline": {func(c *tlsv3.CommonTlsContext) {
			sdsCert("secret/ns/a")(c)
			c.TlsCertificates = []*tlsv3.TlsCertificate{inline}
		}, "tls_certificate_sds_secret_configs: 2 certificates counting tls_certificates"},
		"two by SDS": {func(c *tlsv3.CommonTlsContext) {
			sdsCert("secret/ns/a")(c)
			sdsCert("secret/ns/b")(c)
		}, "tls_certificate_sds_secret_configs: 2 certificates"},
		"not ADS": {func(c *tlsv3.CommonTlsContext) {
			c.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: "secret/ns/a", SdsConfig: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: "/etc/sds.yaml"}}}}}
		}, "tls_certificate_sds_secret_configs[0].sds_config"},
	} {
		e.push(l, rc, certCluster(t, "up", "127.0.0.1:1", ca, tc.ctx))
		if n := e.lastNACK(); !strings.Contains(n, `cluster "up"`) || !strings.Contains(n, tc.want) {
			t.Errorf("%s: NACK %q, want one naming cluster up and %q", name, n, tc.want)
		}
	}
}
