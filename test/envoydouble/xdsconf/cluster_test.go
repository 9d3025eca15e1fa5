package xdsconf_test

import (
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

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

// TestCircuitBreakerLimits: the DEFAULT priority's thresholds apply, Envoy's 1024 where unset;
// what the double does not reproduce (retry budgets, per-host thresholds) is refused.
func TestCircuitBreakerLimits(t *testing.T) {
	cluster := func(cb *clusterv3.CircuitBreakers) *clusterv3.Cluster {
		return &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, CircuitBreakers: cb}
	}
	for _, tc := range []struct {
		name string
		cb   *clusterv3.CircuitBreakers
		want xdsconf.Limits
		err  string
	}{
		{"none: Envoy's defaults", nil, xdsconf.Limits{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024}, ""},
		{"the first DEFAULT entry, defaults for the rest", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
			{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(1)},
			{MaxRequests: wrapperspb.UInt32(1 << 20), MaxRetries: wrapperspb.UInt32(3), TrackRemaining: true},
			{MaxRequests: wrapperspb.UInt32(2)},
		}}, xdsconf.Limits{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1 << 20}, ""},
		{"retry budget", &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
			{RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}},
		}}, xdsconf.Limits{}, `cluster "c".circuit_breakers.thresholds[0].retry_budget`},
		{"per-host thresholds", &clusterv3.CircuitBreakers{PerHostThresholds: []*clusterv3.CircuitBreakers_Thresholds{{}}},
			xdsconf.Limits{}, `cluster "c".circuit_breakers.per_host_thresholds`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := xdsconf.CompileCluster(cluster(tc.cb))
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one naming %s", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case c.Limits != tc.want:
				t.Errorf("limits %+v, want %+v", c.Limits, tc.want)
			}
		})
	}
}
