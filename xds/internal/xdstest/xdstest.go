// Package xdstest holds what the tests of xds and its clients share: a server on loopback, a
// hand-built set of Envoy resources and policies for a gateway, and a log recorder.
package xdstest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mcpgate/mcpgate/contract"
	policyv1 "github.com/mcpgate/mcpgate/proto/policy/v1"
	"github.com/mcpgate/mcpgate/xds"
)

// Serve serves srv on a loopback port until the test ends and returns the address. opts are
// added to xds.GRPCServerOptions (xds.ServerTLS's, for one).
func Serve(t testing.TB, srv *xds.Server, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, lis, opts)
	return lis.Addr().String()
}

// ServeUnix is Serve on a Unix socket; it returns the address as "unix:///PATH".
func ServeUnix(t testing.TB, srv *xds.Server, opts ...grpc.ServerOption) string {
	t.Helper()
	// Not t.TempDir(): a socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "xds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lis, err := net.Listen("unix", filepath.Join(dir, "xds.sock"))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, lis, opts)
	return "unix://" + lis.Addr().String()
}

func serve(t testing.TB, srv *xds.Server, lis net.Listener, opts []grpc.ServerOption) {
	g := grpc.NewServer(append(xds.GRPCServerOptions(), opts...)...)
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
}

// Proxy is a TCP proxy in front of a server, whose connections can be made to fail silently, as
// those to a server on a vanished node or to a client that stopped reading do.
type Proxy struct {
	// Addr is where the proxy listens.
	Addr string

	mu     sync.Mutex
	conns  []net.Conn
	states []*atomic.Int32
	closed chan struct{}
}

// States of the connections in place when Proxy.Cut or Proxy.Stall is called.
const (
	passing int32 = iota
	dropping
	stalled
)

// NewProxy proxies to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: lis.Addr().String(), closed: make(chan struct{})}
	t.Cleanup(func() {
		lis.Close()
		close(p.closed)
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			state := &atomic.Int32{}
			p.mu.Lock()
			p.conns, p.states = append(p.conns, in, out), append(p.states, state)
			p.mu.Unlock()
			go p.pipe(in, out, state)
			go p.pipe(out, in, state)
		}
	}()
	return p
}

// pipe copies src to dst while state is passing; it drops what it reads while dropping, and
// reads nothing more while stalled.
func (p *Proxy) pipe(src, dst net.Conn, state *atomic.Int32) {
	buf := make([]byte, 32<<10)
	for {
		if state.Load() == stalled {
			<-p.closed
			return
		}
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if state.Load() != passing {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *Proxy) set(state int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.states {
		s.Store(state)
	}
}

// Cut makes the open connections swallow everything, in both directions, without closing;
// later connections pass.
func (p *Proxy) Cut() { p.set(dropping) }

// Stall makes the open connections stop reading, so that their senders block once the
// buffers are full; later connections pass.
func (p *Proxy) Stall() { p.set(stalled) }

// Names of the resources Gateway builds.
func ListenerName(gw string) string { return gw + "/8080" }

// ClusterName is the EDS cluster of the gateway's route.
func ClusterName(gw string) string { return "service/" + gw + "/80" }

// PolicyName is the name of the gateway's policy.
func PolicyName(gw string) string { return "EnterpriseAgentgatewayPolicy/" + gw }

// Gateway returns, by type URL, a listener on 8080 for gw whose HTTP connection manager takes its
// routes over ADS, its route configuration with one route per prefix (all to one EDS cluster),
// the cluster, its endpoints on 127.0.0.1:port, and a policy.
func Gateway(gw string, port uint32, prefixes ...string) map[string][]proto.Message {
	name := ListenerName(gw)
	cluster := ClusterName(gw)
	ads := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads, RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	lis := &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
		}}}},
	}
	var routes []*routev3.Route
	for i, p := range prefixes {
		routes = append(routes, &routev3.Route{
			Name:  fmt.Sprintf("httproute/%s/rule/%d/match/0", gw, i),
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			}},
		})
	}
	rc := &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: []*routev3.VirtualHost{{Name: gw + "/http/*", Domains: []string{"*"}, Routes: routes}},
	}
	cl := &clusterv3.Cluster{
		Name:                 cluster,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
	}
	cla := &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
				}}},
			}},
		}}}},
	}
	return map[string][]proto.Message{
		resourcev3.ListenerType: {lis},
		resourcev3.RouteType:    {rc},
		resourcev3.ClusterType:  {cl},
		resourcev3.EndpointType: {cla},
		contract.PolicyTypeURL:  {Policy(PolicyName(gw))},
	}
}

// Policy returns a policy named name with one MCP rule.
func Policy(name string) *policyv1.Policy {
	return &policyv1.Policy{
		Name:     name,
		Sources:  []string{name},
		McpRules: []*policyv1.Rule{{Action: policyv1.Rule_ALLOW, Expression: `mcp.tool.name == "fetch"`, Source: name + "#0"}},
	}
}

// Groups returns the node groups of gateways: one group per gateway plus "*" with every policy.
func Groups(gws map[string]map[string][]proto.Message) map[string]map[string][]proto.Message {
	out := map[string]map[string][]proto.Message{contract.AllGateways: {contract.PolicyTypeURL: nil}}
	for gw, res := range gws {
		out[gw] = res
		out[contract.AllGateways][contract.PolicyTypeURL] = append(out[contract.AllGateways][contract.PolicyTypeURL], res[contract.PolicyTypeURL]...)
	}
	return out
}

// EnvoyTypes returns the type URLs Envoy subscribes to, in the order ADS serves them.
func EnvoyTypes() []string {
	return []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// Logs records log records for tests to look at. Use Logger to get an slog.Logger writing to it.
type Logs struct {
	mu      sync.Mutex
	records []string
}

// Logger returns a logger at debug level that records into l.
func (l *Logs) Logger() *slog.Logger { return slog.New(&recorder{logs: l}) }

// Find returns the recorded lines that contain every one of parts.
func (l *Logs) Find(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(r, p) }) {
			out = append(out, r)
		}
	}
	return out
}

// Wait waits until a recorded line contains every one of parts, or ctx ends.
func (l *Logs) Wait(ctx context.Context, parts ...string) ([]string, error) {
	for {
		if found := l.Find(parts...); len(found) > 0 {
			return found, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no log line with %q: %w", parts, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type recorder struct {
	logs  *Logs
	attrs []slog.Attr
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.logs.mu.Lock()
	r.logs.records = append(r.logs.records, b.String())
	r.logs.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{logs: r.logs, attrs: append(slices.Clip(r.attrs), as...)}
}

func (r *recorder) WithGroup(string) slog.Handler { return r }
