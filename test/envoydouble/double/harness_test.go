package double_test

//lint:file-ignore SA1019 the tests send the deprecated HeaderValueOption.append that Envoy still accepts

// The harness runs everything for real: a go-control-plane Delta ADS server, the double started
// from a bootstrap written by xds/bootstrap, a scripted ext_proc gRPC server that records what it
// receives, and httptest upstreams.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/internal/freeport"
	"github.com/mcpgate/mcpgate/internal/syncbuf"
	"github.com/mcpgate/mcpgate/test/envoydouble/double"
	"github.com/mcpgate/mcpgate/xds/bootstrap"
)

const gateway = "ns/gw"

// env is one double with its control plane, ext_proc server and listener address.
type env struct {
	t        *testing.T
	cache    cachev3.SnapshotCache
	version  int
	ext      *extProc
	d        *double.Double
	access   *syncbuf.Buffer
	listen   string // the listener's address
	nacksMu  sync.Mutex
	nacks    []string
	acks     map[string]int
	extAddr  string
	resource map[resource.Type][]types.Resource
	// muxUpstream is the Unix socket of the bootstrap's mux upstream listener
	muxUpstream string
}

// muxUpstreamSocket is a Unix socket path of the test's own for the bootstrap's mux upstream
// listener (the default, one per Gateway in os.TempDir(), would be every test's), short enough
// for a socket whatever the test's name.
func muxUpstreamSocket(t *testing.T) string {
	dir, err := os.MkdirTemp("", "up")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "up.sock")
}

// newEnv starts the control plane, the ext_proc server (answering with script) and the double,
// which uses Delta ADS.
func newEnv(t *testing.T, script func(*extStream) error) *env {
	t.Helper()
	return newEnvADS(t, script, false)
}

// newEnvADS is newEnv with State-of-the-World ADS when sotw is set (bootstrap api_type GRPC).
func newEnvADS(t *testing.T, script func(*extStream) error, sotw bool) *env {
	t.Helper()
	return newEnvBoot(t, script, func(y []byte) []byte {
		if sotw {
			y = bytes.Replace(y, []byte("api_type: DELTA_GRPC"), []byte("api_type: GRPC"), 1)
		}
		return y
	})
}

// newEnvBoot is newEnv with the bootstrap YAML that xds/bootstrap writes changed by edit.
func newEnvBoot(t *testing.T, script func(*extStream) error, edit func([]byte) []byte) *env {
	t.Helper()
	e := &env{t: t, access: &syncbuf.Buffer{}, acks: map[string]int{}}
	logs := testWriter{t: t, done: &atomic.Bool{}}
	t.Cleanup(func() { logs.done.Store(true) }) // runs last: nothing logs into a finished test
	e.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	// record counts ACKs per type and keeps NACK messages, for Delta and SotW requests alike.
	record := func(typeURL, nonce string, nack *status.Status) error {
		e.nacksMu.Lock()
		defer e.nacksMu.Unlock()
		if nack != nil {
			e.nacks = append(e.nacks, nack.GetMessage())
		} else if nonce != "" {
			e.acks[typeURL]++
		}
		return nil
	}
	cb := serverv3.CallbackFuncs{
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			return record(r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail())
		},
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			return record(r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail())
		},
	}
	xsrv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(xsrv, serverv3.NewServer(context.Background(), e.cache, cb))
	xln := listen(t)
	go func() { _ = xsrv.Serve(xln) }()
	t.Cleanup(xsrv.Stop)

	e.ext = startExtProc(t, script)
	e.extAddr = e.ext.addr
	addrs := freeAddrs(t, 2)
	admin := addrs[1]
	e.listen = addrs[0]
	e.muxUpstream = muxUpstreamSocket(t)
	y, err := bootstrap.Generate(bootstrap.Options{Gateway: gateway, XDSAddr: xln.Addr().String(), ExtProcAddr: e.ext.addr, AdminAddr: admin,
		MuxUpstream: "unix://" + e.muxUpstream})
	if err != nil {
		t.Fatal(err)
	}
	y = edit(y)
	file := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.d, err = double.Start(context.Background(), double.Options{Bootstrap: file, Log: log, AccessLog: e.access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.d.Close)
	return e
}

// push serves the resources as the next snapshot version and waits until the double has ACKed
// or NACKed every type. The bootstrap's mux upstream listener waits for its route configuration
// as Envoy does (the translator always sends one): an empty one is added unless res has one.
func (e *env) push(res ...types.Resource) {
	e.t.Helper()
	e.version++
	if !slices.ContainsFunc(res, func(r types.Resource) bool {
		rc, ok := r.(*routev3.RouteConfiguration)
		return ok && rc.GetName() == contract.MuxUpstreamRoutes
	}) {
		res = append(res, routeConfig(contract.MuxUpstreamRoutes, vhost(contract.MuxUpstreamRoutes, []string{"*"})))
	}
	byType := map[resource.Type][]types.Resource{}
	for _, r := range res {
		var tu string
		switch r.(type) {
		case *listenerv3.Listener:
			tu = resource.ListenerType
		case *routev3.RouteConfiguration:
			tu = resource.RouteType
		case *clusterv3.Cluster:
			tu = resource.ClusterType
		case *endpointv3.ClusterLoadAssignment:
			tu = resource.EndpointType
		case *tlsv3.Secret:
			tu = resource.SecretType
		}
		byType[tu] = append(byType[tu], r)
	}
	snap, err := cachev3.NewSnapshot(strconv.Itoa(e.version), byType)
	if err != nil {
		e.t.Fatal(err)
	}
	e.nacksMu.Lock()
	before := len(e.nacks)
	acks := map[string]int{}
	for k, v := range e.acks {
		acks[k] = v
	}
	e.nacksMu.Unlock()
	if err := e.cache.SetSnapshot(context.Background(), gateway, snap); err != nil {
		e.t.Fatal(err)
	}
	changed := map[string]bool{}
	for tu, rs := range byType {
		if !sameResources(e.resource[tu], rs) {
			changed[tu] = true
		}
	}
	for tu := range e.resource {
		if _, ok := byType[tu]; !ok {
			changed[tu] = true
		}
	}
	e.resource = byType
	waitFor(e.t, "the double to answer every changed type", func() bool {
		e.nacksMu.Lock()
		defer e.nacksMu.Unlock()
		answered := len(e.nacks) - before
		for tu := range changed {
			if e.acks[tu] > acks[tu] {
				answered++
			}
		}
		return answered >= len(changed)
	})
	if e.version == 1 {
		waitFor(e.t, "LIVE", e.d.Live)
	}
}

func sameResources(a, b []types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// lastNACK returns the latest NACK message ("" when none).
func (e *env) lastNACK() string {
	e.nacksMu.Lock()
	defer e.nacksMu.Unlock()
	if len(e.nacks) == 0 {
		return ""
	}
	return e.nacks[len(e.nacks)-1]
}

// url is the listener's URL for path.
func (e *env) url(path string) string { return "http://" + e.listen + path }

// logs returns the access log lines parsed as JSON, waiting for at least n.
func (e *env) logs(n int) []map[string]any {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d access log lines", n), func() bool { return len(e.access.Lines()) >= n })
	var out []map[string]any
	for _, l := range e.access.Lines() {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			e.t.Fatalf("access log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// ---- resources ----

func any_(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// extProcFilter is the ext_proc filter as docs/design.md describes it.
func extProcFilter(timeout time.Duration) *extprocv3.ExternalProcessor {
	return &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: contract.ExtProcCluster}},
			InitialMetadata: []*corev3.HeaderValue{{Key: "x-mcpgate-gateway", Value: "filter-level"}, {Key: "x-filter-only", Value: "kept"}},
		},
		MessageTimeout:    durationpb.New(timeout),
		AllowModeOverride: true,
		ProcessingMode: &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND,
			ResponseHeaderMode: extprocv3.ProcessingMode_SKIP, RequestTrailerMode: extprocv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP},
		MetadataOptions:   &extprocv3.MetadataOptions{ReceivingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: []string{"mcpgate"}}},
		RequestAttributes: []string{"source.address"},
	}
}

// mcpMode is the per-route mode of an MCP backend route (docs/design.md).
func mcpMode() *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND, RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
		ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_BUFFERED,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP}
}

func perRoute(t *testing.T, mode *extprocv3.ProcessingMode, md ...string) map[string]*anypb.Any {
	ov := &extprocv3.ExtProcOverrides{ProcessingMode: mode}
	for i := 0; i+1 < len(md); i += 2 {
		ov.GrpcInitialMetadata = append(ov.GrpcInitialMetadata, &corev3.HeaderValue{Key: md[i], Value: md[i+1]})
	}
	return map[string]*anypb.Any{"envoy.filters.http.ext_proc": any_(t, &extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Overrides{Overrides: ov}})}
}

func disabled(t *testing.T) map[string]*anypb.Any {
	return map[string]*anypb.Any{"envoy.filters.http.ext_proc": any_(t, &extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Disabled{Disabled: true}})}
}

// accessLogFormat is the translator's format (docs/design.md) plus the fields the tests read.
var accessLogFormat = map[string]any{
	"start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"authority": "%REQ(:AUTHORITY)%", "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
	"duration": "%DURATION%", "upstream_host": "%UPSTREAM_HOST%", "route_name": "%ROUTE_NAME%",
	"request_id": "%REQ(X-REQUEST-ID)%", "mcp_method": "%DYNAMIC_METADATA(mcpgate:method)%",
	"mcp_tool": "%DYNAMIC_METADATA(mcpgate:tool)%", "other_ns": "%DYNAMIC_METADATA(other:method)%",
	"details": "%RESPONSE_CODE_DETAILS%", "protocol": "%PROTOCOL%", "bytes_received": "%BYTES_RECEIVED%",
	"bytes_sent": "%BYTES_SENT%", "content_type": "%RESP(CONTENT-TYPE)%", "mixed": "code=%RESPONSE_CODE% host=%UPSTREAM_HOST%",
	"forwarded_path": "%REQ(:PATH)%", "route_added": "%REQ(X-ROUTE-ADDED)%", "downstream": "%DOWNSTREAM_REMOTE_ADDRESS%",
}

// listener is the gateway listener with an RDS route configuration of the same name.
func listener(t *testing.T, addr string, ep *extprocv3.ExternalProcessor, mod func(*hcmv3.HttpConnectionManager, *listenerv3.Listener)) *listenerv3.Listener {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	name := gateway + "/" + port
	fmtStruct, err := structpb.NewStruct(accessLogFormat)
	if err != nil {
		t.Fatal(err)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "gw",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: name,
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}}},
		AccessLog: []*accesslogv3.AccessLog{accessLogWith(t, fmtStruct)},
	}
	if ep != nil {
		hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.ext_proc", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, ep)}})
	}
	hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, &routerv3.Router{})}})
	l := &listenerv3.Listener{Name: name,
		Address:                       &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(4<<20 + 64<<10)}
	if mod != nil {
		mod(hcm, l)
	}
	l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: any_(t, hcm)}}}}}
	return l
}

// accessLogWith is a stdout access logger with a json_format.
func accessLogWith(t *testing.T, f *structpb.Struct) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{Name: "envoy.access_loggers.stdout", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: any_(t,
		&streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: f}}}})}}
}

func routeConfig(name string, vhs ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
}

func vhost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

func prefixRoute(name, prefix, cluster string, tpfc map[string]*anypb.Any) *routev3.Route {
	return &routev3.Route{Name: name, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action:               &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		TypedPerFilterConfig: tpfc}
}

// staticCluster points at addr ("IP:PORT").
func staticCluster(name, addr string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       assignment(name, addr)}
}

func assignment(name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		la.Endpoints[0].LbEndpoints = append(la.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}}})
	}
	return la
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3}}}
}

// ---- the ext_proc server ----

// extProc is a real ext_proc gRPC server whose answers a test scripts. It records every stream.
type extProc struct {
	extprocsvc.UnimplementedExternalProcessorServer
	addr   string
	srv    *grpc.Server
	script func(*extStream) error
	mu     sync.Mutex
	all    []*extStream
}

// extStream is one recorded Process stream.
type extStream struct {
	srv  extprocsvc.ExternalProcessor_ProcessServer
	md   metadata.MD
	mu   sync.Mutex
	msgs []*extprocsvc.ProcessingRequest
	end  error // what Recv returned at the end
	done chan struct{}
}

func startExtProc(t *testing.T, script func(*extStream) error) *extProc {
	ln := listen(t)
	e := &extProc{addr: ln.Addr().String(), srv: grpc.NewServer(), script: script}
	extprocsvc.RegisterExternalProcessorServer(e.srv, e)
	go func() { _ = e.srv.Serve(ln) }()
	t.Cleanup(e.srv.Stop)
	return e
}

func (e *extProc) Process(srv extprocsvc.ExternalProcessor_ProcessServer) error {
	md, _ := metadata.FromIncomingContext(srv.Context())
	st := &extStream{srv: srv, md: md, done: make(chan struct{})}
	e.mu.Lock()
	e.all = append(e.all, st)
	e.mu.Unlock()
	defer close(st.done)
	return e.script(st)
}

// streams waits for n streams and returns them.
func (e *extProc) streams(t *testing.T, n int) []*extStream {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d ext_proc streams", n), func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.all) >= n
	})
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*extStream(nil), e.all...)
}

// recv receives the next message and records it; the error is recorded as the stream's end.
func (s *extStream) recv() (*extprocsvc.ProcessingRequest, error) {
	m, err := s.srv.Recv()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.end = err
		return nil, err
	}
	s.msgs = append(s.msgs, m)
	return m, nil
}

func (s *extStream) messages() []*extprocsvc.ProcessingRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*extprocsvc.ProcessingRequest(nil), s.msgs...)
}

// ended waits for the stream's end and returns what Recv saw.
func (s *extStream) ended(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("ext_proc stream did not end")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// answer is a script answering every message with f (nil = CONTINUE with no change), until the
// stream ends.
func answer(f func(*extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse) func(*extStream) error {
	return func(s *extStream) error {
		for {
			m, err := s.recv()
			if err != nil {
				return nil
			}
			var r *extprocsvc.ProcessingResponse
			if f != nil {
				r = f(m)
			}
			if r == nil {
				r = continueFor(m)
			}
			if err := s.srv.Send(r); err != nil {
				return nil
			}
		}
	}
}

// continueFor is the plain CONTINUE reply to m.
func continueFor(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
	return withCommon(m, &extprocsvc.CommonResponse{})
}

// withCommon is the reply to m carrying cr.
func withCommon(m *extprocsvc.ProcessingRequest, cr *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	switch m.GetRequest().(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocsvc.HeadersResponse{Response: cr}}}
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{Response: cr}}}
	case *extprocsvc.ProcessingRequest_RequestBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{RequestBody: &extprocsvc.BodyResponse{Response: cr}}}
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseBody{ResponseBody: &extprocsvc.BodyResponse{Response: cr}}}
	}
	panic(fmt.Sprintf("unexpected message %T", m.GetRequest()))
}

func setHeader(k, v string, appendValue bool) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
	if appendValue {
		o.Append = wrapperspb.Bool(true)
	}
	return o
}

// kinds names the oneof of each message, e.g. "request_headers".
func kinds(ms []*extprocsvc.ProcessingRequest) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.ProtoReflect().WhichOneof(m.ProtoReflect().Descriptor().Oneofs().ByName("request")).Name()))
	}
	return out
}

func header(m *corev3.HeaderMap, k string) (string, bool) {
	for _, h := range m.GetHeaders() {
		if h.GetKey() == k {
			return string(h.GetRawValue()), true
		}
	}
	return "", false
}

// ---- small utilities ----

// doubleIP is the loopback address the double's listeners bind, and serverIP the one of the
// servers a test runs for it (xDS, ext_proc). freeAddr's port is free when it is picked, not when
// the double binds it: on 127.0.0.1 a server of another package, or on the same address one of
// this package's own listen(":0"), could take the port in between (the double then NACKs its
// listener, and the test's requests reach the other server). Linux routes all of 127/8 to lo;
// only this package uses these two addresses, and only the double binds doubleIP. Its ports are
// the kernel's (the ephemeral range), apart from the ports other packages pick below that range
// for the servers they start (internal/freeport), some of which bind every address.
const (
	doubleIP = "127.0.0.33"
	serverIP = "127.0.0.34"
)

// listen listens on a port the kernel picks on serverIP.
func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", serverIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// freeAddrs returns n distinct addresses free on doubleIP for the double to bind.
func freeAddrs(t *testing.T, n int) []string {
	ports, err := freeport.KernelPorts(doubleIP, n)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for i, p := range ports {
		out[i] = net.JoinHostPort(doubleIP, strconv.Itoa(p))
	}
	return out
}

// freeAddr returns an address free on doubleIP for the double to bind.
func freeAddr(t *testing.T) string { return freeAddrs(t, 1)[0] }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatal(err)
	}
	return resp, string(b)
}

// restartExtProc starts a new ext_proc server on the address of a stopped one.
func restartExtProc(t *testing.T, old *extProc) *extProc {
	var ln net.Listener
	waitFor(t, "the old ext_proc address to be free", func() bool {
		var err error
		ln, err = net.Listen("tcp", old.addr)
		return err == nil
	})
	e := &extProc{addr: old.addr, srv: grpc.NewServer(), script: old.script}
	extprocsvc.RegisterExternalProcessorServer(e.srv, e)
	go func() { _ = e.srv.Serve(ln) }()
	t.Cleanup(e.srv.Stop)
	return e
}
