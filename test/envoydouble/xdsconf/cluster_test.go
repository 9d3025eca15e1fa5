package xdsconf_test

import (
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// TestClientCertificateRefusals: a client certificate the double cannot present as Envoy would
// is refused with the field named. (Certificates presented for real: xds's mutual TLS tests.)
func TestClientCertificateRefusals(t *testing.T) {
	inline := func(s string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	missing := filepath.Join(t.TempDir(), "tls.crt")
	const field = `cluster "xds".transport_socket.typed_config.common_tls_context.tls_certificates[0]`
	for _, tc := range []struct {
		name  string
		certs []*tlsv3.TlsCertificate
		want  string
	}{
		{"two certificates", []*tlsv3.TlsCertificate{{}, {}}, "tls_certificates: 2 certificates; Envoy accepts one"},
		{"no private key", []*tlsv3.TlsCertificate{{CertificateChain: inline("x")}}, field + ": certificate_chain and private_key are both required"},
		{"password", []*tlsv3.TlsCertificate{{CertificateChain: inline("x"), PrivateKey: inline("y"), Password: inline("z")}}, field + ".password"},
		{"missing file", []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: missing}}, PrivateKey: inline("y"),
		}}, field + ".certificate_chain.filename: open " + missing},
		{"not PEM", []*tlsv3.TlsCertificate{{CertificateChain: inline("x"), PrivateKey: inline("y")}}, field + ": tls: failed to find any PEM data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			utc, err := anypb.New(&tlsv3.UpstreamTlsContext{Sni: "xds.test", CommonTlsContext: &tlsv3.CommonTlsContext{TlsCertificates: tc.certs}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = xdsconf.CompileCluster(&clusterv3.Cluster{
				Name: "xds", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: utc}},
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
