// Package bootstrap writes the Envoy bootstrap of a gateway: its node, the static clusters of
// mcpgate's xDS, ext_proc and mux servers (the xDS one with mutual TLS when asked), the mux
// upstream listener (a Unix socket the mux reaches the targets of multiplexed MCP backends
// through), Delta ADS for everything else, and the admin listener.
package bootstrap

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamconnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/internal/accesslog"
	"github.com/mcpgate/mcpgate/internal/pki"
)

// Default addresses (standalone mode).
const (
	DefaultXDSAddr     = "127.0.0.1:18000"
	DefaultExtProcAddr = "127.0.0.1:18001"
	DefaultAdminAddr   = "127.0.0.1:15000"
	DefaultMuxAddr     = "127.0.0.1:18002"
)

// MuxUpstreamPath is the Unix socket of a Gateway's mux upstream listener
// (contract.MuxUpstreamListener) in dir (os.TempDir() when empty): one per Gateway, so that the
// Envoys of several Gateways on one host do not collide, and short enough for any dir a Unix
// socket path fits in.
func MuxUpstreamPath(dir, gateway string) string {
	if dir == "" {
		dir = os.TempDir()
	}
	sum := sha256.Sum256([]byte(gateway))
	return filepath.Join(dir, "mcpgate-up-"+hex.EncodeToString(sum[:6])+".sock")
}

// MuxUpstreamAddr is the address, "unix://" + MuxUpstreamPath(dir, gateway), of a Gateway's mux
// upstream listener in dir (os.TempDir() when empty: Options.MuxUpstream's default), where its
// Envoy binds it and the mux sends the Gateway's targets' requests.
func MuxUpstreamAddr(dir, gateway string) string {
	return "unix://" + MuxUpstreamPath(dir, gateway)
}

// MaxDownstreamConnections bounds the connections Envoy holds open on all its listeners together
// (the overload manager's envoy.resource_monitors.global_downstream_max_connections); past it,
// Envoy closes each new connection as it accepts it (downstream_global_cx_overflow). Without a
// bound Envoy warns at start, and a flood of connections takes its file descriptors and memory,
// failing every client rather than the new ones. 50,000 is the value of Envoy's edge best
// practices (configuration/best_practices/edge.rst) and of Envoy Gateway's bootstrap: each MCP
// stream holds one downstream connection (and one upstream), so one Envoy serves up to 50,000
// open sessions, with some 100,000 descriptors, well inside a container's usual open-files limit
// (1,048,576).
const MaxDownstreamConnections = 50000

// Envoy writes its access log files, stdout included, every 10 s by default: FileFlushFlag with
// FileFlushMillis, on the command line of every Envoy mcpgate starts (`mcpgate run`, a Gateway's
// Deployment), makes it every second, so that each request's line shows while one watches
// (`kubectl logs`, the run's output).
const (
	// FileFlushFlag is Envoy's flag of how often it writes its access log files.
	FileFlushFlag = "--file-flush-interval-msec"
	// FileFlushMillis is the value mcpgate gives it.
	FileFlushMillis = "1000"
)

// globalConnectionsMonitor is the resource monitor that bounds Envoy's downstream connections.
const globalConnectionsMonitor = "envoy.resource_monitors.global_downstream_max_connections"

// Options describe the Envoy of one gateway. Addresses are "HOST:PORT" (an IP, or a DNS name
// except for the admin) or "unix:///PATH".
type Options struct {
	// Gateway is "NS/NAME": the node's cluster, hence its xDS node group. Required.
	Gateway string
	// NodeID is the node's id; default Gateway (Kubernetes uses the pod name).
	NodeID string
	// XDSAddr is mcpgate's xDS server; default DefaultXDSAddr.
	XDSAddr string
	// ExtProcAddr is mcpgate's ext_proc server; default DefaultExtProcAddr.
	ExtProcAddr string
	// AdminAddr is Envoy's admin listener; default DefaultAdminAddr.
	AdminAddr string
	// XDSTLS, when set, makes Envoy speak mutual TLS to the xDS server; nil: plaintext.
	XDSTLS *TLSFiles
	// MuxAddr is mcpgate's mux server (contract.MuxCluster), which serves the routes of
	// multiplexed MCP backends; default DefaultMuxAddr.
	MuxAddr string
	// MuxUpstream is the Unix socket, "unix:///PATH", of the mux upstream listener
	// (contract.MuxUpstreamListener), through which the mux reaches the targets; default
	// "unix://" + MuxUpstreamPath("", Gateway).
	MuxUpstream string
}

// TLSFiles are the files of mutual TLS with the xDS server, as a Kubernetes TLS Secret mounted
// in the pod holds them (tls.crt, tls.key, ca.crt). Envoy reads them at start.
type TLSFiles struct {
	// CertFile and KeyFile are the client's certificate chain and private key (PEM), which
	// Envoy presents to the server: the server binds the node group to this certificate.
	CertFile, KeyFile string
	// CAFile holds the certificates (PEM) the server's certificate must chain to.
	CAFile string
	// ServerName is the DNS name (also the SNI) or IP address the server's certificate must
	// carry as a subject alt name.
	ServerName string
}

// TLSDir returns the TLSFiles of a certificate directory (pki.CertFile, pki.KeyFile, pki.CAFile:
// a mounted Kubernetes TLS Secret) for the xDS server at xdsAddr ("HOST:PORT"), whose host the
// server's certificate must name.
func TLSDir(dir, xdsAddr string) (*TLSFiles, error) {
	host, _, err := net.SplitHostPort(xdsAddr)
	if err == nil && strings.HasPrefix(xdsAddr, "unix:") {
		err = errors.New("a Unix socket has no host for the server's certificate to name")
	}
	if err != nil {
		return nil, fmt.Errorf("xDS TLS: the xDS address %q: %w", xdsAddr, err)
	}
	return &TLSFiles{CertFile: filepath.Join(dir, pki.CertFile), KeyFile: filepath.Join(dir, pki.KeyFile),
		CAFile: filepath.Join(dir, pki.CAFile), ServerName: host}, nil
}

// Generate returns the bootstrap as YAML.
func Generate(o Options) ([]byte, error) {
	b, err := Build(o)
	if err != nil {
		return nil, err
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding the bootstrap: %w", err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encoding the bootstrap: %w", err)
	}
	return y, nil
}

// Build returns the bootstrap, validated.
func Build(o Options) (*bootstrapv3.Bootstrap, error) {
	ns, name, ok := strings.Cut(o.Gateway, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("gateway %q: want NAMESPACE/NAME", o.Gateway)
	}
	if o.NodeID == "" {
		o.NodeID = o.Gateway
	}
	if o.XDSAddr == "" {
		o.XDSAddr = DefaultXDSAddr
	}
	if o.ExtProcAddr == "" {
		o.ExtProcAddr = DefaultExtProcAddr
	}
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	if o.MuxAddr == "" {
		o.MuxAddr = DefaultMuxAddr
	}
	if o.MuxUpstream == "" {
		o.MuxUpstream = MuxUpstreamAddr("", o.Gateway)
	}
	var errs []error
	xdsCluster, err := grpcCluster(contract.XDSCluster, o.XDSAddr)
	errs = append(errs, err)
	if o.XDSTLS != nil {
		ts, err := upstreamTLS(o.XDSTLS)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", contract.XDSCluster, err))
		} else if xdsCluster != nil {
			xdsCluster.TransportSocket = ts
		}
	}
	extProcCluster, err := grpcCluster(contract.ExtProcCluster, o.ExtProcAddr)
	errs = append(errs, err)
	if extProcCluster != nil {
		// Every request of a gateway is one ext_proc stream: Envoy's default of 1,024 requests
		// at once would refuse traffic under load, which fail-closed turns into errors.
		extProcCluster.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRequests:        wrapperspb.UInt32(1 << 20),
			MaxPendingRequests: wrapperspb.UInt32(1 << 20),
		}}}
	}
	muxCluster, err := muxCluster(o.MuxAddr)
	errs = append(errs, err)
	muxListener, err := muxUpstreamListener(o.MuxUpstream)
	errs = append(errs, err)
	overload, err := overloadManager()
	errs = append(errs, err)
	admin, isName, err := address(o.AdminAddr)
	if err == nil && isName {
		err = errors.New("an IP address or unix:// path is needed")
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("admin address %q: %w", o.AdminAddr, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ads := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: o.Gateway},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters:  []*clusterv3.Cluster{xdsCluster, extProcCluster, muxCluster},
			Listeners: []*listenerv3.Listener{muxListener},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: contract.XDSCluster},
				}}},
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		Admin:           &bootstrapv3.Admin{Address: admin},
		LayeredRuntime:  runtime(),
		OverloadManager: overload,
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap of %s: %w", o.Gateway, err)
	}
	return b, nil
}

// muxCluster is the static cluster of the mux server (contract.MuxCluster): HTTP/1.1, which the
// mux serves, and circuit breakers out of reach, since each request of a multiplexed backend's
// MCP session holds a request and a connection to it for as long as its stream lasts (the
// translator's MCP clusters have the same).
func muxCluster(addr string) (*clusterv3.Cluster, error) {
	a, isName, err := address(addr)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: address %q: %w", contract.MuxCluster, addr, err)
	}
	typ := clusterv3.Cluster_STATIC
	if isName {
		typ = clusterv3.Cluster_STRICT_DNS
	}
	h1, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", contract.MuxCluster, err)
	}
	return &clusterv3.Cluster{
		Name:                          contract.MuxCluster,
		ConnectTimeout:                durationpb.New(5 * time.Second),
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: typ},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h1},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections:     wrapperspb.UInt32(1 << 20),
			MaxPendingRequests: wrapperspb.UInt32(1 << 20),
			MaxRequests:        wrapperspb.UInt32(1 << 20),
		}}},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: contract.MuxCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: a}},
			}}}},
		},
	}, nil
}

// muxUpstreamListener is the listener the mux sends each target's requests to
// (contract.MuxUpstreamListener), on a Unix socket, which only the processes of the host (the
// pod) reach. Its routes come over ADS (contract.MuxUpstreamRoutes, from the translator): one per
// multiplexed target's cluster, chosen by contract.HeaderMuxCluster. No ext_proc: the front hop
// authorized the request, under the route the client reached. The stateful session filter does
// nothing unless a route turns the envelope on, as the routes to targets that pin sessions do;
// the access log is the Gateway listeners'. use_remote_address stays false: the downstream
// address is the last x-forwarded-for address the mux passes on (the client's, as the front hop
// appended it), which the routes' ring hash takes; a request without one has no address to hash.
// x-forwarded-client-cert passes as the mux sends it (ALWAYS_FORWARD_ONLY).
func muxUpstreamListener(addr string) (*listenerv3.Listener, error) {
	if !strings.HasPrefix(addr, "unix://") {
		return nil, fmt.Errorf("listener %s: address %q: want unix:///PATH (a Unix socket: only the mux may reach it)", contract.MuxUpstreamListener, addr)
	}
	a, _, err := address(addr)
	if err != nil {
		return nil, fmt.Errorf("listener %s: address %q: %w", contract.MuxUpstreamListener, addr, err)
	}
	filter := func(name string, m proto.Message) (*hcmv3.HttpFilter, error) {
		c, err := anypb.New(m)
		return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: c}}, err
	}
	session, err1 := filter("envoy.filters.http.stateful_session", &statefulv3.StatefulSession{})
	router, err2 := filter("envoy.filters.http.router", &routerv3.Router{})
	hcm, err3 := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: contract.MuxUpstreamListener,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			},
			RouteConfigName: contract.MuxUpstreamRoutes,
		}},
		HttpFilters: []*hcmv3.HttpFilter{session, router},
		AccessLog:   accesslog.Stdout(),
		// the x-forwarded-client-cert the mux passes on is the front hop's (set there from a
		// verified certificate, or removed: docs/design.md, Client certificates), so it reaches
		// the target as the front hop left it
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY,
	})
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("listener %s: %w", contract.MuxUpstreamListener, err)
	}
	return &listenerv3.Listener{
		Name:    contract.MuxUpstreamListener,
		Address: a,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}, nil
}

// overloadManager bounds the downstream connections (MaxDownstreamConnections). The monitor
// needs no action: the listeners refuse connections past it by themselves.
func overloadManager() (*overloadv3.OverloadManager, error) {
	cfg, err := anypb.New(&downstreamconnsv3.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: MaxDownstreamConnections})
	if err != nil {
		return nil, fmt.Errorf("overload manager: %w", err)
	}
	return &overloadv3.OverloadManager{ResourceMonitors: []*overloadv3.ResourceMonitor{{
		Name:       globalConnectionsMonitor,
		ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: cfg},
	}}}, nil
}

// runtime is the static runtime layer. Envoy refuses a regular expression whose RE2 program is
// larger than re2.max_program_size.error_level (default 100), and with it the whole
// RouteConfiguration that holds it: a Gateway API RegularExpression match, or the regex_rewrite
// of a PathPrefix of some 90 characters, would stop every route of the listener from updating.
// The translator checks every expression with Go's RE2 syntax; the size limit is lifted, as
// Envoy Gateway does.
func runtime() *bootstrapv3.LayeredRuntime {
	return &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{{
		Name: "mcpgate",
		LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: &structpb.Struct{Fields: map[string]*structpb.Value{
			"re2.max_program_size.error_level": structpb.NewNumberValue(math.MaxUint32),
		}}},
	}}}
}

// Parse reads a bootstrap in YAML or JSON, as Envoy's -c does.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// grpcCluster is a static cluster of one gRPC server: HTTP/2 with keepalive pings, so that a
// vanished server is noticed.
func grpcCluster(name, addr string) (*clusterv3.Cluster, error) {
	a, isName, err := address(addr)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: address %q: %w", name, addr, err)
	}
	typ := clusterv3.Cluster_STATIC
	if isName {
		typ = clusterv3.Cluster_STRICT_DNS
	}
	h2 := &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{ConnectionKeepalive: &corev3.KeepaliveSettings{
						Interval: durationpb.New(30 * time.Second),
						Timeout:  durationpb.New(5 * time.Second),
					}},
				},
			},
		},
	}
	if err := h2.ValidateAll(); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	opts, err := anypb.New(h2)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return &clusterv3.Cluster{
		Name:                          name,
		ConnectTimeout:                durationpb.New(5 * time.Second),
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: typ},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: a}},
			}}}},
		},
	}, nil
}

// upstreamTLS is the transport socket of mutual TLS with files f: the client certificate is
// presented, the server's must chain to the CA and carry ServerName as a DNS subject alt name
// (Envoy checks no name unless told to). ALPN is h2, which gRPC servers require (grpc-go
// refuses a TLS client that offers none); Envoy would offer it for an HTTP/2 cluster anyway.
func upstreamTLS(f *TLSFiles) (*corev3.TransportSocket, error) {
	var errs []error
	for _, field := range []struct{ name, value string }{
		{"CertFile", f.CertFile}, {"KeyFile", f.KeyFile}, {"CAFile", f.CAFile}, {"ServerName", f.ServerName},
	} {
		if field.value == "" {
			errs = append(errs, fmt.Errorf("TLS: no %s", field.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	file := func(name string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: name}}
	}
	// A server named by its IP address carries it as an IP SAN, which a DNS matcher never
	// matches, and gets no SNI (RFC 6066: SNI is a host name).
	sni, sanType := f.ServerName, tlsv3.SubjectAltNameMatcher_DNS
	if net.ParseIP(f.ServerName) != nil {
		sni, sanType = "", tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:   []string{"h2"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(f.CertFile), PrivateKey: file(f.KeyFile)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(f.CAFile),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: sanType,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: f.ServerName}},
				}},
			}},
		},
	}
	if err := ctx.ValidateAll(); err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	a, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// address parses "HOST:PORT" or "unix:///PATH" and tells whether HOST is a DNS name.
func address(addr string) (*corev3.Address, bool, error) {
	network, a, err := contract.SplitAddress(addr)
	if err != nil {
		return nil, false, err
	}
	if network == "unix" {
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: a}}}, false, nil
	}
	host, p, _ := net.SplitHostPort(a)
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return nil, false, fmt.Errorf("port %q: want 1 to 65535", p)
	}
	if host == "" {
		return nil, false, errors.New("no host")
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}, net.ParseIP(host) == nil, nil
}
