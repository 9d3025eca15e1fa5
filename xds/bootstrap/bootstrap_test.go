package bootstrap_test

import (
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamconnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestGolden(t *testing.T) {
	t.Setenv("TMPDIR", "/tmp") // the default mux upstream socket is in os.TempDir()
	for name, o := range map[string]bootstrap.Options{
		"defaults": {Gateway: "agentgateway-system/agentgateway-proxy"},
		"unix": {Gateway: "ns/gw", NodeID: "envoy-0", ExtProcAddr: "unix:///run/mcpgate/extproc.sock", AdminAddr: "127.0.0.1:15001",
			MuxAddr: "unix:///run/mcpgate/mux.sock", MuxUpstream: "unix:///run/mcpgate/upstream.sock"},
		"dns":  {Gateway: "ns/gw", NodeID: "gw-7d9f-abcde", XDSAddr: "mcpgate.mcpgate-system.svc:18000", ExtProcAddr: "[::1]:18001", AdminAddr: "0.0.0.0:15000"},
		"mtls": {Gateway: "ns/gw", XDSAddr: "mcpgate-controller.mcpgate-system.svc:18000", XDSTLS: mtls()},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := bootstrap.Generate(o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs (go test -update to rewrite):\n%s", path, got)
			}
			// What Envoy would read is what was built.
			parsed, err := bootstrap.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			built, _ := bootstrap.Build(o)
			if !proto.Equal(parsed, built) {
				t.Errorf("parsed bootstrap differs from the built one")
			}
		})
	}
}

func mtls() *bootstrap.TLSFiles {
	return &bootstrap.TLSFiles{
		CertFile: "/etc/mcpgate/xds-tls/tls.crt", KeyFile: "/etc/mcpgate/xds-tls/tls.key", CAFile: "/etc/mcpgate/xds-tls/ca.crt",
		ServerName: "mcpgate-controller.mcpgate-system.svc",
	}
}

// TestXDSTLS checks the xDS cluster's mutual TLS field by field: the client certificate, the CA,
// the server's DNS name both as SNI and as the subject alt name required, HTTP/2 kept, and the
// ext_proc cluster left alone.
func TestXDSTLS(t *testing.T) {
	f := mtls()
	b, err := bootstrap.Build(bootstrap.Options{Gateway: "ns/gw", XDSTLS: f})
	if err != nil {
		t.Fatal(err)
	}
	xds, extproc := b.GetStaticResources().GetClusters()[0], b.GetStaticResources().GetClusters()[1]
	if extproc.GetTransportSocket() != nil {
		t.Errorf("ext_proc cluster has a transport socket: %v", extproc.GetTransportSocket())
	}
	if _, ok := xds.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
		t.Errorf("xDS cluster lost HTTP/2")
	}
	ts := xds.GetTransportSocket()
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Fatalf("xDS cluster transport socket %v", ts)
	}
	var utc tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&utc); err != nil {
		t.Fatal(err)
	}
	ctc := utc.GetCommonTlsContext()
	certs := ctc.GetTlsCertificates()
	vc := ctc.GetValidationContext()
	sans := vc.GetMatchTypedSubjectAltNames()
	switch {
	case utc.GetSni() != f.ServerName:
		t.Errorf("sni %q", utc.GetSni())
	case len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() != f.CertFile || certs[0].GetPrivateKey().GetFilename() != f.KeyFile:
		t.Errorf("tls_certificates %v", certs)
	case vc.GetTrustedCa().GetFilename() != f.CAFile:
		t.Errorf("trusted_ca %v", vc.GetTrustedCa())
	case len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || sans[0].GetMatcher().GetExact() != f.ServerName:
		t.Errorf("match_typed_subject_alt_names %v", sans)
	case !slices.Equal(ctc.GetAlpnProtocols(), []string{"h2"}):
		t.Errorf("alpn_protocols %q", ctc.GetAlpnProtocols())
	}
	plain, err := bootstrap.Build(bootstrap.Options{Gateway: "ns/gw"})
	if err != nil {
		t.Fatal(err)
	}
	if ts := plain.GetStaticResources().GetClusters()[0].GetTransportSocket(); ts != nil {
		t.Errorf("plaintext xDS cluster has a transport socket: %v", ts)
	}

	// A server named by its IP address: an IP_ADDRESS matcher (a DNS one never matches an IP
	// SAN) and no SNI.
	byIP, err := bootstrap.TLSDir("/etc/mcpgate/xds-tls", "10.96.0.10:18000")
	if err != nil {
		t.Fatal(err)
	}
	b, err = bootstrap.Build(bootstrap.Options{Gateway: "ns/gw", XDSAddr: "10.96.0.10:18000", XDSTLS: byIP})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.GetStaticResources().GetClusters()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&utc); err != nil {
		t.Fatal(err)
	}
	sans = utc.GetCommonTlsContext().GetValidationContext().GetMatchTypedSubjectAltNames()
	if utc.GetSni() != "" || len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_IP_ADDRESS || sans[0].GetMatcher().GetExact() != "10.96.0.10" {
		t.Errorf("by IP: sni %q, match_typed_subject_alt_names %v", utc.GetSni(), sans)
	}
	if utc.GetCommonTlsContext().GetTlsCertificates()[0].GetCertificateChain().GetFilename() != "/etc/mcpgate/xds-tls/tls.crt" {
		t.Errorf("TLSDir: %v", utc.GetCommonTlsContext().GetTlsCertificates())
	}
}

func TestContent(t *testing.T) {
	b, err := bootstrap.Build(bootstrap.Options{Gateway: "ns/gw", ExtProcAddr: "unix:///tmp/x.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if b.GetNode().GetId() != "ns/gw" || b.GetNode().GetCluster() != "ns/gw" {
		t.Errorf("node %v", b.GetNode())
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 ||
		ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != contract.XDSCluster {
		t.Errorf("ads_config %v", ads)
	}
	for _, cs := range []*corev3.ConfigSource{b.GetDynamicResources().GetLdsConfig(), b.GetDynamicResources().GetCdsConfig()} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("config source %v", cs)
		}
	}
	clusters := b.GetStaticResources().GetClusters()
	if len(clusters) != 3 || clusters[0].GetName() != contract.XDSCluster || clusters[1].GetName() != contract.ExtProcCluster ||
		clusters[2].GetName() != contract.MuxCluster {
		t.Fatalf("clusters %v", clusters)
	}
	// the mux: HTTP/1.1 at DefaultMuxAddr
	mux := clusters[2]
	var h1 upstreamhttpv3.HttpProtocolOptions
	if err := mux.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&h1); err != nil ||
		h1.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil {
		t.Errorf("cluster %s: protocol options %v, want explicit HTTP/1.1", mux.GetName(), &h1)
	}
	sa := mux.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if got := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))); got != bootstrap.DefaultMuxAddr {
		t.Errorf("cluster %s at %s, want %s", mux.GetName(), got, bootstrap.DefaultMuxAddr)
	}
	// the mux upstream listener: on the Gateway's socket, its routes over ADS, no ext_proc
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || listeners[0].GetName() != contract.MuxUpstreamListener {
		t.Fatalf("listeners %v, want %s", listeners, contract.MuxUpstreamListener)
	}
	if p := listeners[0].GetAddress().GetPipe().GetPath(); p != bootstrap.MuxUpstreamPath("", "ns/gw") {
		t.Errorf("listener %s on %q, want %q", contract.MuxUpstreamListener, p, bootstrap.MuxUpstreamPath("", "ns/gw"))
	}
	var hcm hcmv3.HttpConnectionManager
	if err := listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, f := range hcm.GetHttpFilters() {
		filters = append(filters, f.GetName())
	}
	if hcm.GetRds().GetRouteConfigName() != contract.MuxUpstreamRoutes || hcm.GetRds().GetConfigSource().GetAds() == nil ||
		!slices.Equal(filters, []string{"envoy.filters.http.stateful_session", "envoy.filters.http.router"}) || len(hcm.GetAccessLog()) != 1 {
		t.Errorf("listener %s: rds %v, filters %v, access log %v", contract.MuxUpstreamListener, hcm.GetRds(), filters, hcm.GetAccessLog())
	}
	pipe := clusters[1].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe()
	if pipe.GetPath() != "/tmp/x.sock" {
		t.Errorf("ext_proc address %v", clusters[1].GetLoadAssignment())
	}
	for _, c := range clusters {
		if _, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
			t.Errorf("cluster %s has no explicit HTTP protocol", c.GetName())
		}
	}
	if b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue() != 15000 {
		t.Errorf("admin %v", b.GetAdmin())
	}
	// Envoy's default RE2 program size limit (100) would refuse a route configuration with a
	// longer regular expression; the runtime value is read as a uint32.
	layers := b.GetLayeredRuntime().GetLayers()
	if len(layers) != 1 || layers[0].GetStaticLayer().GetFields()["re2.max_program_size.error_level"].GetNumberValue() != 1<<32-1 {
		t.Errorf("layered_runtime %v: want re2.max_program_size.error_level 4294967295", b.GetLayeredRuntime())
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		o    bootstrap.Options
		want []string
	}{
		{bootstrap.Options{}, []string{`gateway "": want NAMESPACE/NAME`}},
		{bootstrap.Options{Gateway: "gw"}, []string{`gateway "gw"`}},
		{bootstrap.Options{Gateway: "a/b/c"}, []string{`gateway "a/b/c"`}},
		{bootstrap.Options{Gateway: "ns/gw", XDSAddr: "127.0.0.1", ExtProcAddr: "unix://relative.sock", AdminAddr: "localhost:15000"}, []string{
			`cluster mcpgate_xds: address "127.0.0.1": want HOST:PORT or unix:///PATH`,
			`cluster mcpgate_extproc: address "unix://relative.sock": want unix:///ABSOLUTE/PATH`,
			`admin address "localhost:15000": an IP address or unix:// path is needed`,
		}},
		{bootstrap.Options{Gateway: "ns/gw", XDSAddr: "127.0.0.1:70000", ExtProcAddr: ":18001"}, []string{`port "70000"`, `address ":18001": no host`}},
		{bootstrap.Options{Gateway: "ns/gw", MuxAddr: "mux", MuxUpstream: "127.0.0.1:18003"}, []string{
			`cluster mcpgate_mux: address "mux": want HOST:PORT or unix:///PATH`,
			`listener mcpgate_mux_upstream: address "127.0.0.1:18003": want unix:///PATH`,
		}},
		{bootstrap.Options{Gateway: "ns/gw", MuxUpstream: "unix://up.sock"}, []string{`listener mcpgate_mux_upstream: address "unix://up.sock": want unix:///ABSOLUTE/PATH`}},
		{bootstrap.Options{Gateway: "ns/gw", XDSTLS: &bootstrap.TLSFiles{CertFile: "c"}}, []string{
			`cluster mcpgate_xds: TLS: no KeyFile`, `TLS: no CAFile`, `TLS: no ServerName`,
		}},
		{bootstrap.Options{Gateway: "ns/gw", XDSTLS: &bootstrap.TLSFiles{CertFile: "c", KeyFile: "k", CAFile: "ca", ServerName: strings.Repeat("x", 256)}}, []string{
			`cluster mcpgate_xds: TLS: invalid UpstreamTlsContext.Sni`,
		}},
	} {
		_, err := bootstrap.Generate(tc.o)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %v lacks %q", tc.o, err, w)
			}
		}
	}
	if _, err := bootstrap.Parse([]byte("node: {id: x}\nadmin: {address: {socket_address: {address: 127.0.0.1, port_value: 99999}}}\n")); err == nil {
		t.Errorf("Parse accepted a port out of range")
	}
}

// TestDownstreamConnectionsBounded: the overload manager bounds Envoy's downstream connections
// with the global_downstream_max_connections monitor alone (the listeners enforce it; no action).
func TestDownstreamConnectionsBounded(t *testing.T) {
	b, err := bootstrap.Build(bootstrap.Options{Gateway: "ns/gw"})
	if err != nil {
		t.Fatal(err)
	}
	om := b.GetOverloadManager()
	if len(om.GetResourceMonitors()) != 1 || len(om.GetActions()) != 0 || len(om.GetLoadshedPoints()) != 0 {
		t.Fatalf("overload manager %v, want the one connections monitor and no action", om)
	}
	m := om.GetResourceMonitors()[0]
	cfg := &downstreamconnsv3.DownstreamConnectionsConfig{}
	if m.GetName() != "envoy.resource_monitors.global_downstream_max_connections" || m.GetTypedConfig().UnmarshalTo(cfg) != nil {
		t.Fatalf("resource monitor %v", m)
	}
	if cfg.GetMaxActiveDownstreamConnections() != bootstrap.MaxDownstreamConnections || bootstrap.MaxDownstreamConnections <= 0 {
		t.Errorf("max_active_downstream_connections %d, want %d", cfg.GetMaxActiveDownstreamConnections(), bootstrap.MaxDownstreamConnections)
	}
}

func TestMuxUpstreamPath(t *testing.T) {
	a, b := bootstrap.MuxUpstreamPath("/run/x", "default/a"), bootstrap.MuxUpstreamPath("/run/x", "default/b")
	if a == b || a != bootstrap.MuxUpstreamPath("/run/x", "default/a") {
		t.Fatalf("want one stable path per Gateway, got %q and %q", a, b)
	}
	if filepath.Dir(a) != "/run/x" || !strings.HasSuffix(a, ".sock") {
		t.Errorf("path %q: want a .sock file in /run/x", a)
	}
	if got := bootstrap.MuxUpstreamPath("", "default/a"); filepath.Dir(got) != os.TempDir() {
		t.Errorf("empty dir: got %q, want a file in %s", got, os.TempDir())
	}
}
