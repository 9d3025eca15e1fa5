package xds_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/test/envoydouble/double"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
	"github.com/mcpgate/mcpgate/xds/client"
	"github.com/mcpgate/mcpgate/xds/internal/xdstest"

	"github.com/mcpgate/mcpgate/internal/freeport"
)

// freeAddr returns an address free on 127.0.0.1 for a server the test starts (freeport).
func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func splitPort(t *testing.T, addr string) (string, uint32) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return host, uint32(port)
}

// startDouble starts the Envoy test double from the bootstrap that xds/bootstrap writes for
// gateway gw with node id node, speaking mutual TLS with the certificate files of cert.
func startDouble(t *testing.T, m *mtls, node string, cert xdstest.Cert) *double.Double {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, caFile := m.ca.Write(t, dir, cert)
	sockets, err := os.MkdirTemp("", "up") // the default socket, in os.TempDir(), is every test's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockets) })
	y, err := bootstrap.Generate(bootstrap.Options{Gateway: gw, NodeID: node, XDSAddr: m.addr, AdminAddr: freeAddr(t),
		XDSTLS:      &bootstrap.TLSFiles{CertFile: certFile, KeyFile: keyFile, CAFile: caFile, ServerName: serverName},
		MuxUpstream: "unix://" + filepath.Join(sockets, "up.sock")})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "bootstrap.yaml")
	if err := os.WriteFile(file, y, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := double.Start(context.Background(), double.Options{Bootstrap: file, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestEnvoyDoubleOverMutualTLS: the Envoy test double, started from the bootstrap that
// xds/bootstrap writes with XDSTLS, presents its certificate to a server that binds node groups
// to certificates, goes LIVE and binds its gateway's listener. A double whose certificate is
// another gateway's is refused and gets no listener.
func TestEnvoyDoubleOverMutualTLS(t *testing.T) {
	m := startMTLS(t)
	// The gateway's listener on a free loopback port, for the double to bind.
	g := xdstest.Gateway(gw, 9000, "/")
	host, port := splitPort(t, freeAddr(t))
	g[lds][0].(*listenerv3.Listener).Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
	// the bootstrap's mux upstream listener waits for its routes, which the translator always sends
	g[rds] = append(g[rds], &routev3.RouteConfiguration{Name: contract.MuxUpstreamRoutes})
	update(t, m.srv, gateways(g, xdstest.Gateway(other, 9001, "/")))

	d := startDouble(t, m, "envoy-1", m.ca.Client(t, xdstest.GroupURI(gw)))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	// LIVE before the initial fetch timeout (15 s), with the listener: the configuration came.
	for !d.Live() || d.Listening()[xdstest.ListenerName(gw)] == "" {
		select {
		case <-ctx.Done():
			t.Fatalf("double not LIVE with its listener: live %v, listening %v", d.Live(), d.Listening())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := m.logs.Wait(ctx, "INFO xDS client connected", "api=delta", "node=envoy-1", "group=ns/gw"); err != nil {
		t.Error(err)
	}

	thief := startDouble(t, m, "thief", m.ca.Client(t, xdstest.GroupURI(other)))
	if _, err := m.logs.Wait(ctx, "WARN xDS client refused", "node=thief", "group=ns/gw", "identity=ns/other"); err != nil {
		t.Fatal(err)
	}
	// the bootstrap's static listener only: nothing came over xDS
	if got := slices.Sorted(maps.Keys(thief.Snapshot().Listeners)); !slices.Equal(got, []string{contract.MuxUpstreamListener}) {
		t.Errorf("refused double has listeners %v, want its bootstrap's only", got)
	}
}

// TestEnvoyDoubleInlineClientCertificate: the double presents a client certificate given
// inline (inline_string) as well as by file.
func TestEnvoyDoubleInlineClientCertificate(t *testing.T) {
	m := startMTLS(t)
	cert := m.ca.Client(t, xdstest.GroupURI(gw))
	b, err := bootstrap.Build(bootstrap.Options{Gateway: gw, XDSAddr: m.addr,
		XDSTLS: &bootstrap.TLSFiles{CertFile: "unused", KeyFile: "unused", CAFile: "unused", ServerName: serverName}})
	if err != nil {
		t.Fatal(err)
	}
	cl := b.GetStaticResources().GetClusters()[0]
	var utc tlsv3.UpstreamTlsContext
	if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(&utc); err != nil {
		t.Fatal(err)
	}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(b)}}
	}
	ctc := utc.GetCommonTlsContext()
	ctc.TlsCertificates[0].CertificateChain, ctc.TlsCertificates[0].PrivateKey = inline(cert.CertPEM), inline(cert.KeyPEM)
	ctc.GetValidationContext().TrustedCa = inline(m.ca.PEM)
	a, err := anypb.New(&utc)
	if err != nil {
		t.Fatal(err)
	}
	cl.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
	compiled, err := xdsconf.CompileCluster(cl)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	go func() {
		_ = client.Run(ctx, client.Config{Addr: m.addr, Node: &corev3.Node{Id: "envoy-1", Cluster: gw}, TypeURLs: []string{lds}, TLS: compiled.TLS,
			Handler: func(_ string, res map[string]*anypb.Any) error {
				select {
				case got <- slices.Sorted(maps.Keys(res)):
				default:
				}
				return nil
			}})
	}()
	select {
	case names := <-got:
		equal(t, "listeners", names, []string{xdstest.ListenerName(gw)})
	case <-ctx.Done():
		t.Fatal("no listeners over the inline certificate")
	}
	// The certificate given is the one presented.
	c, err := compiled.TLS.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || string(c.Certificate[0]) != string(cert.TLS.Certificate[0]) {
		t.Errorf("client certificate %v, %v", c, err)
	}
}
