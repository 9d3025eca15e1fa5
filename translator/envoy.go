package translator

import (
	"strings"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	envelopev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/stateful_session/envelope/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/internal/accesslog"
	"github.com/mcpgate/mcpgate/internal/envoypath"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	connectTimeout = 5 * time.Second
	// streamLimit is the circuit breakers' limit of connections, pending and active requests of
	// an MCP or LLM cluster (Envoy's default: 1024 each). Each SSE stream (legacy or Streamable
	// HTTP) and each streamed completion holds a request and an HTTP/1.1 connection for as long
	// as it lasts (an MCP stream up to the route's idle timeout of an hour): past 1024 open
	// streams to one target, new ones would wait for a connection, then past 1024 waiting get
	// 503 UO. A threshold cannot be unset: this one is out of reach, like the bootstrap's for
	// the ext_proc cluster.
	streamLimit = 1 << 20
	// upstreamIdleTimeout closes an upstream connection that carried no request for this long
	// (Envoy's default: an hour). Servers close idle keep-alive connections themselves, Node's
	// http.Server (the TypeScript MCP SDK's Express and Hono servers) and uvicorn (the Python
	// SDK's) after 5 s: a request Envoy sends on a pooled connection just as the server closes
	// it gets 503 UC, and no retry policy recovers it (ENVOY.md, Retries). Closing first, with a
	// second of margin, leaves the server nothing to close.
	upstreamIdleTimeout = 4 * time.Second
	// httpProtocolOptionsKey is the typed_extension_protocol_options key of a cluster's upstream
	// HTTP options.
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	// invalidBackendCluster is a cluster that never exists: the weighted share of invalid
	// backendRefs goes there and gets 500 (cluster_not_found_response_code).
	invalidBackendCluster = "mcpgate_invalid_backend"
	hcmFilterName         = "envoy.filters.network.http_connection_manager"
	routerFilterName      = "envoy.filters.http.router"
	tlsSocketName         = "envoy.transport_sockets.tls"
	extProcPerRouteURL    = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
	// statefulSessionFilterName is the stateful session HTTP filter and its per-route config key.
	statefulSessionFilterName = "envoy.filters.http.stateful_session"
	// envelopeSessionStateName is the session state extension Envoy looks up by this name.
	envelopeSessionStateName = "envoy.http.stateful_session.envelope"
	// sessionHeader is the Streamable HTTP session header the envelope pins to its server.
	sessionHeader = "mcp-session-id"
)

// originalPathHeader is the header in which Envoy's router keeps the path a route rewrote.
// Envoy does not remove it from clients' requests (it is not among the x-envoy-* headers it
// sanitizes), so every route configuration names it in internal_only_headers: the connection
// manager removes it from every request that is not internal (none is: mcpgate sets no
// internal_address_config) before any filter runs (ConnectionManagerUtility::
// cleanInternalHeaders). Only the router's rewrite sets it then, so the access log and the
// upstreams only ever see Envoy's.
const originalPathHeader = "x-envoy-original-path"

// xdsCommon holds what every listener and cluster of a translation shares, built once.
type xdsCommon struct {
	opts     Options
	hcmChain []*hcmv3.HttpFilter
	// hcmChainPeer is hcmChain whose ext_proc filter also asks for the client certificate's
	// attributes (contract.PeerCertificateAttributes): the chain of HTTPS filter chains that
	// verify client certificates
	hcmChainPeer []*hcmv3.HttpFilter
	accessLog    []*accesslogv3.AccessLog
	tlsMu        sync.Mutex                         // backends are translated concurrently (forEach)
	tlsByKey     map[string]*corev3.TransportSocket // tlsSocket's, by upstreamTLS.key
	disabled     *anypb.Any
	// disabledFilters is the typed_per_filter_config of every route without ext_proc
	disabledFilters map[string]*anypb.Any
	// unlimitedFilters is disabledFilters plus a LocalRateLimit that limits nothing: the
	// typed_per_filter_config of the direct responses of a Gateway with a Gateway-level rate
	// limit, which its RouteConfiguration carries (directFilters)
	unlimitedFilters map[string]*anypb.Any
	// pinSessions is the StatefulSessionPerRoute that turns the envelope on for a route
	pinSessions *anypb.Any
	// shared by every route and cluster that uses them (never modified after creation)
	hashBySource                  []*routev3.RouteAction_HashPolicy
	noTimeout, mcpIdle            *durationpb.Duration
	connectTimeout                *durationpb.Duration
	staticType, dnsType, edsType  *clusterv3.Cluster_Type
	mcpModeBytes, headerModeBytes []byte // marshalled processing modes of per-route configs
	// streamBreakers are the circuit breakers of MCP and LLM clusters (streamLimit)
	streamBreakers *clusterv3.CircuitBreakers
	// upstreamHTTP is every backend cluster's typed_extension_protocol_options: HTTP/1.1 (what
	// Envoy speaks without them), with connections closed after upstreamIdleTimeout idle
	upstreamHTTP map[string]*anypb.Any
	// upstreamH2C is the same with HTTP/2 over cleartext (prior knowledge): the clusters of
	// Service ports with appProtocol kubernetes.io/h2c
	upstreamH2C map[string]*anypb.Any
	// certClusters and certSockets are the clusters and sockets with a Gateway's backend client
	// certificate (backendcert.go), under tlsMu
	certClusters map[certClusterKey]*clusterv3.Cluster
	certSockets  map[certSocketKey]*corev3.TransportSocket
}

// upstreamOptions is a backend cluster's typed_extension_protocol_options: HTTP/1.1, or HTTP/2
// with h2, both with connections closed after upstreamIdleTimeout idle.
func upstreamOptions(h2 bool) map[string]*anypb.Any {
	explicit := &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
	}
	if h2 {
		explicit.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(&upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(upstreamIdleTimeout)},
		UpstreamProtocolOptions:   &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
	})}
}

func newXDSCommon(opts Options) *xdsCommon {
	x := &xdsCommon{opts: opts, tlsByKey: map[string]*corev3.TransportSocket{},
		certClusters: map[certClusterKey]*clusterv3.Cluster{}, certSockets: map[certSocketKey]*corev3.TransportSocket{}}
	// The stateful session filter comes before ext_proc: it restores a request's Mcp-Session-Id before
	// ext_proc reads it and, encoders running in reverse, wraps the answer's after ext_proc read
	// it, so that ext_proc (audit, access log) only ever sees the server's own session id. Its
	// config here has no session state, which does nothing: routes that pin sessions turn the
	// envelope on (pinSessions).
	// The CORS filter comes before both: a preflight from an origin a route's CorsPolicy allows is
	// answered by Envoy, never authenticated by ext_proc (a browser sends no credentials with
	// it), and since encoders run in reverse it adds its headers to every answer last, ext_proc's
	// refusals (401, 403) included. Without a per-route CorsPolicy it does nothing.
	// The local rate limit filter comes right after CORS: a preflight the CORS filter answers is
	// not counted, and a 429 passes the CORS encoder (a browser can read it); before the stateful
	// session filter and ext_proc, so a flood is refused before any JWT or CEL work. Without a
	// per-route LocalRateLimit it does nothing. Every listener has the same chain, whatever its
	// routes use: a filter joining or leaving a listener's chain changes the Listener, which Envoy
	// drains, ending its open SSE streams; a route config change does not.
	x.hcmChain = []*hcmv3.HttpFilter{
		{Name: corsFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}},
		rateLimitFilter(),
		{Name: statefulSessionFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&statefulv3.StatefulSession{})}},
		{Name: ExtProcFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(x.extProcFilter(false))}},
		{Name: routerFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
	}
	x.hcmChainPeer = make([]*hcmv3.HttpFilter, len(x.hcmChain))
	for i, f := range x.hcmChain {
		x.hcmChainPeer[i] = f
		if f.Name == ExtProcFilterName {
			x.hcmChainPeer[i] = &hcmv3.HttpFilter{Name: ExtProcFilterName,
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(x.extProcFilter(true))}}
		}
	}
	x.accessLog = accesslog.Stdout() // the bootstrap's mux upstream listener writes the same
	x.disabled = mustAny(&extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Disabled{Disabled: true}})
	x.disabledFilters = map[string]*anypb.Any{ExtProcFilterName: x.disabled}
	x.unlimitedFilters = withFilter(x.disabledFilters, localRateLimitFilterName, notLimited())
	x.pinSessions = mustAny(&statefulv3.StatefulSessionPerRoute{Override: &statefulv3.StatefulSessionPerRoute_StatefulSession{
		StatefulSession: &statefulv3.StatefulSession{SessionState: &corev3.TypedExtensionConfig{
			Name: envelopeSessionStateName,
			TypedConfig: mustAny(&envelopev3.EnvelopeSessionState{
				Header: &envelopev3.EnvelopeSessionState_Header{Name: sessionHeader}}),
		}},
	}})
	x.staticType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	x.dnsType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
	x.edsType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	x.hashBySource = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
		ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}}
	x.noTimeout, x.mcpIdle, x.connectTimeout = durationpb.New(0), durationpb.New(mcpIdleTimeout), durationpb.New(connectTimeout)
	x.mcpModeBytes, x.headerModeBytes = mustMarshal(processingMode(true)), mustMarshal(processingMode(false))
	x.streamBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections:     wrapperspb.UInt32(streamLimit),
		MaxPendingRequests: wrapperspb.UInt32(streamLimit),
		MaxRequests:        wrapperspb.UInt32(streamLimit),
	}}}
	x.upstreamHTTP, x.upstreamH2C = upstreamOptions(false), upstreamOptions(true)
	return x
}

// mustMarshal marshals a message built here; marshalling a well-formed message cannot fail.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic("translator: marshal " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return b
}

// mustAny wraps a message built here; marshalling a well-formed message cannot fail. The
// encoding is deterministic (map entries sorted, e.g. the access log's JSON format Struct), so
// that the same input gives the same bytes and xDS does not push an unchanged resource again.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true})
	if err != nil {
		panic("translator: marshal " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return a
}

// extProcFilter is the HCM-level ext_proc filter: headers only unless a route overrides it. Its
// request_attributes are the source address, plus with peer the client certificate's subject,
// first URI and DNS SANs and digest (contract.PeerCertificateAttributes), for the filter chains
// that verify client certificates (AllowValidOnly): authorization rules read them
// (docs/design.md, Client certificates). Elsewhere Envoy evaluates and sends only the address.
func (x *xdsCommon) extProcFilter(peer bool) *extprocv3.ExternalProcessor {
	attrs := []string{contract.AttrSourceAddress}
	if peer {
		attrs = contract.PeerCertificateAttributes()
	}
	return &extprocv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: contract.ExtProcCluster}}},
		FailureModeAllow:  false,
		ProcessingMode:    processingMode(false),
		MessageTimeout:    durationpb.New(x.opts.MessageTimeout),
		AllowModeOverride: true,
		MetadataOptions: &extprocv3.MetadataOptions{
			ReceivingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{Untyped: []string{contract.MetadataNamespace}},
		},
		RequestAttributes: attrs,
		// No reply can make Envoy match the route again (clear_route_cache is ignored): a
		// request is routed once, before ext_proc authorizes it under that route's policy.
		RouteCacheAction: extprocv3.ExternalProcessor_RETAIN,
	}
}

// processingMode is what ext_proc gets: the request headers only, or for MCP also the request body
// BUFFERED and the response headers, whose reply chooses the response body's mode with
// mode_override (STREAMED for text/event-stream, BUFFERED or BUFFERED_PARTIAL for JSON, NONE for
// the rest). The response body mode here is NONE, not BUFFERED: while the reply to the response
// headers is awaited, Envoy holds the body arriving in the mode in force; under BUFFERED more than
// the buffer limit is a 500 (response_payload_too_large) before any mode_override applies, under
// NONE the body waits under flow control (ext_proc.cc onData).
func processingMode(mcp bool) *extprocv3.ProcessingMode {
	m := &extprocv3.ProcessingMode{
		RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocv3.ProcessingMode_SKIP,
		RequestBodyMode:     extprocv3.ProcessingMode_NONE,
		ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
	}
	if mcp {
		m.ResponseHeaderMode = extprocv3.ProcessingMode_SEND
		m.RequestBodyMode = extprocv3.ProcessingMode_BUFFERED
	}
	return m
}

// filterMetadata is the Metadata of a route or cluster: the contract.MetadataNamespace fields
// (name, value; two at most) that have a value, for the access log
// (%METADATA(ROUTE|CLUSTER:mcpgate:F)%); nil when none has one. Every route and cluster has one,
// so its messages are allocated together (metadataBlock).
func filterMetadata(fields [2][2]string) *corev3.Metadata {
	if fields[0][1] == "" && fields[1][1] == "" {
		return nil
	}
	return new(metadataBlock).fill(fields)
}

// metadataBlock holds the messages of one filterMetadata; a message that has a route or cluster
// allocated with it holds one too, and fills it.
type metadataBlock struct {
	md     corev3.Metadata
	s      structpb.Struct
	values [2]structpb.Value
	kinds  [2]structpb.Value_StringValue
}

// fill makes b the Metadata of filterMetadata(fields) and returns it, or nil (b unused).
func (b *metadataBlock) fill(fields [2][2]string) *corev3.Metadata {
	for i, f := range fields {
		if f[1] == "" {
			continue
		}
		if b.s.Fields == nil {
			b.s.Fields = make(map[string]*structpb.Value, len(fields))
			b.md.FilterMetadata = map[string]*structpb.Struct{contract.MetadataNamespace: &b.s}
		}
		b.kinds[i].StringValue = f[1]
		b.values[i].Kind = &b.kinds[i]
		b.s.Fields[f[0]] = &b.values[i]
	}
	if b.s.Fields == nil {
		return nil
	}
	return &b.md
}

// listenerPaths is how every listener normalizes request paths before routing them: dot segments
// resolved, slashes merged, escaped slashes unescaped and redirected to.
func listenerPaths() envoypath.Options {
	return envoypath.Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT}
}

// listener builds the Envoy listener of one Gateway port; its routes come over RDS (ADS), the
// RouteConfiguration of the listener's name.
func (x *xdsCommon) listener(name string, port int32) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:                          name,
		Address:                       socketAddress(x.opts.BindAddress, port),
		FilterChains:                  []*listenerv3.FilterChain{{Filters: x.hcmFilters(name, name, false)}},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(x.bufferLimit()),
	}
}

// hcmFilters is the network filter list of a filter chain of the listener name: the HTTP
// connection manager (statistics under the listener's name), routed by the RouteConfiguration
// routes over RDS (ADS). verified says that the chain's handshake verifies client certificates
// (AllowValidOnly): its ext_proc filter asks for the certificate's attributes (hcmChainPeer) and
// the connection manager sets x-forwarded-client-cert for the upstream (SANITIZE_SET: a
// client's own is replaced). Every other chain keeps Envoy's default, SANITIZE: a client's
// x-forwarded-client-cert is removed and none is set (under AllowInsecureFallback a certificate
// may not be verified, and Envoy's XFCC does not say so).
func (x *xdsCommon) hcmFilters(name, routes string, verified bool) []*listenerv3.Filter {
	paths := listenerPaths()
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix(name),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routes,
		}},
		HttpFilters: x.hcmChain,
		AccessLog:   x.accessLog,
		// The gateway is the edge. Without use_remote_address, Envoy takes the client's address
		// from the last X-Forwarded-For entry, which the client writes: source.address (traffic
		// rules' cidr(), the audit) and the ring-hash key would be whatever the client claims.
		UseRemoteAddress: wrapperspb.Bool(true),
		// Routes match, rules read (request.path) and upstreams get one path: without
		// normalization /public/../mcp matched /public (no policy) and //mcp or /public%2F..%2Fmcp
		// a catch-all, while many servers serve them as /mcp. Dot segments are resolved, slashes
		// merged, and a path with escaped slashes (%2F, %5C) is answered with a redirect to its
		// unescaped form (307), as Envoy Gateway does by default.
		NormalizePath:                wrapperspb.Bool(paths.NormalizePath),
		MergeSlashes:                 paths.MergeSlashes,
		PathWithEscapedSlashesAction: paths.EscapedSlashes,
		// Envoy's edge recommendations. Headers with "_" are dropped: rules read "x-user", and
		// servers that fold "_" into "-" (CGI, WSGI) would read an "x_user" the rules never saw.
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_DROP_HEADER,
		},
		// An HTTP/2 stream's buffer limit, up to which Envoy buffers a body for ext_proc, is its
		// initial stream window (the codec's per-stream limit), not the listener's
		// per_connection_buffer_limit_bytes: the window is that limit, so that an HTTP/2 client
		// gets the body limit an HTTP/1 client gets (with 64 KiB, Envoy's edge advice, a 100 KiB
		// MCP body was 413 and a 100 KiB answer 500 or cut short).
		Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
			MaxConcurrentStreams:        wrapperspb.UInt32(100),
			InitialStreamWindowSize:     wrapperspb.UInt32(x.bufferLimit()),
			InitialConnectionWindowSize: wrapperspb.UInt32(max(1<<20, x.bufferLimit())),
		},
	}
	if verified {
		hcm.HttpFilters = x.hcmChainPeer
		hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{
			Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
	}
	return []*listenerv3.Filter{{
		Name:       hcmFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
	}}
}

// bufferLimit is the buffer limit of a listener's streams: the MCP body limit and bufferSlack
// (at most math.MaxInt32: Options.MaxBodyBytes is at most LargestMaxBodyBytes).
func (x *xdsCommon) bufferLimit() uint32 { return uint32(x.opts.MaxBodyBytes + bufferSlack) }

// statPrefix turns a resource name into a stats-safe prefix ("." and "/" split stat names).
func statPrefix(name string) string {
	if !strings.ContainsAny(name, "/.") {
		return name
	}
	b := []byte(name)
	for i, c := range b {
		if c == '/' || c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(host string, port int32) *corev3.Address {
	return new(addressBlock).fill(host, port)
}

// addressBlock holds the messages of one socket address, allocated together (a cluster per
// backend has one).
type addressBlock struct {
	addr corev3.Address
	sock corev3.Address_SocketAddress
	sa   corev3.SocketAddress
	port corev3.SocketAddress_PortValue
}

func (b *addressBlock) fill(host string, port int32) *corev3.Address {
	b.port.PortValue = uint32(port)
	b.sa.Address, b.sa.PortSpecifier = host, &b.port
	b.sock.SocketAddress = &b.sa
	b.addr.Address = &b.sock
	return &b.addr
}

// addressTarget is a target whose cluster has one host: STATIC for an IP, STRICT_DNS for a name
// (whose addresses are its hosts); with tls (nil: plaintext), it connects over TLS (tlsSocket)
// and its routes rewrite the Host header to the target's (upstreamTLS.hostHeader). It balances
// per request (Envoy's default) unless setMCP makes it an MCP target. Its cluster's messages are
// allocated together (every static, AI and MCP target backend has one).
func (x *xdsCommon) addressTarget(name, host string, port int32, tls *upstreamTLS) *target {
	b := &hostClusterBlock{}
	c := &b.c
	c.Name = name
	c.ConnectTimeout = x.connectTimeout
	c.LoadAssignment = b.la.fill(name, hostPort{host: host, port: port})
	c.TypedExtensionProtocolOptions = x.upstreamHTTP
	if isIP(host) {
		c.ClusterDiscoveryType = x.staticType
	} else {
		c.ClusterDiscoveryType = x.dnsType
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	tg := &target{cluster: c, md: &b.md}
	x.withTLS(tg, tls)
	return tg
}

// hostClusterBlock holds the messages of an addressTarget's cluster. Not the target: the output
// must point to nothing of the translation's own state, which a target points to (its Gateways),
// or it would keep that state alive (TestOutputKeepsNoState).
type hostClusterBlock struct {
	c  clusterv3.Cluster
	la hostAssignment
	md metadataBlock
}

// edsCluster is a cluster whose endpoints come over EDS (ADS) under the cluster's name, without
// lb_policy (ROUND_ROBIN) until setMCP balances it by source.
func (x *xdsCommon) edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                          name,
		ConnectTimeout:                x.connectTimeout,
		ClusterDiscoveryType:          x.edsType,
		EdsClusterConfig:              &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		TypedExtensionProtocolOptions: x.upstreamHTTP,
	}
}

func buildLoadAssignment(name string, addrs []hostPort) *endpointv3.ClusterLoadAssignment {
	switch len(addrs) {
	case 0:
		return &endpointv3.ClusterLoadAssignment{ClusterName: name}
	case 1:
		return new(hostAssignment).fill(name, addrs[0])
	}
	// the messages of the assignment in one allocation, those of all endpoints in another
	la := &struct {
		cla  endpointv3.ClusterLoadAssignment
		loc  endpointv3.LocalityLbEndpoints
		locs [1]*endpointv3.LocalityLbEndpoints
	}{}
	blocks := make([]endpointBlock, len(addrs))
	eps := make([]*endpointv3.LbEndpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = blocks[i].fill(a)
	}
	la.loc.LbEndpoints = eps
	la.locs[0] = &la.loc
	la.cla.ClusterName, la.cla.Endpoints = name, la.locs[:]
	return &la.cla
}

// endpointBlock holds the messages of one endpoint of a load assignment.
type endpointBlock struct {
	lb   endpointv3.LbEndpoint
	host endpointv3.LbEndpoint_Endpoint
	ep   endpointv3.Endpoint
	addr addressBlock
}

func (b *endpointBlock) fill(a hostPort) *endpointv3.LbEndpoint {
	b.ep.Address = b.addr.fill(a.host, a.port)
	b.host.Endpoint = &b.ep
	b.lb.HostIdentifier = &b.host
	return &b.lb
}

// hostAssignment holds the messages of a load assignment of one endpoint, allocated together
// (a cluster per backend has one).
type hostAssignment struct {
	cla  endpointv3.ClusterLoadAssignment
	loc  endpointv3.LocalityLbEndpoints
	locs [1]*endpointv3.LocalityLbEndpoints
	eps  [1]*endpointv3.LbEndpoint
	ep   endpointBlock
}

func (b *hostAssignment) fill(name string, a hostPort) *endpointv3.ClusterLoadAssignment {
	b.eps[0] = b.ep.fill(a)
	b.loc.LbEndpoints = b.eps[:]
	b.locs[0] = &b.loc
	b.cla.ClusterName, b.cla.Endpoints = name, b.locs[:]
	return &b.cla
}

// perFilter returns the typed_per_filter_config of a route (or weighted cluster) with the ext_proc
// config a (nil: none) and, with pin, the stateful session envelope.
func (x *xdsCommon) perFilter(a *anypb.Any, pin bool) map[string]*anypb.Any {
	switch {
	case a == x.disabled && !pin:
		return x.disabledFilters
	case a == nil && !pin:
		return nil
	}
	m := make(map[string]*anypb.Any, 2)
	if a != nil {
		m[ExtProcFilterName] = a
	}
	if pin {
		m[statefulSessionFilterName] = x.pinSessions
	}
	return m
}

// extProcRoute is the per-route ext_proc config of a route: what it sends and the gRPC initial
// metadata naming its gateway, route, policy, backend and MCP target.
type extProcRoute struct {
	mcp                                     string // transport; "" = not MCP
	gateway, route, policy, backend, target string
	targets                                 string // a multiplexed backend's target names, comma-joined
	mux                                     string // contract.MetadataMux: prefixMode Never only
	bridge                                  string // contract.MetadataBridge: a bridged target's transport
	passthrough                             bool   // contract.MetadataPassthrough: backend auth passthrough
}

// perRouteConfig returns the ExtProcPerRoute of e: disabled when the route is neither MCP nor
// under a policy, else overrides with the processing mode and the metadata, in into (a new Any
// when nil).
func (t *translation) perRouteConfig(into *anypb.Any, e extProcRoute) *anypb.Any {
	if e.mcp == "" && e.policy == "" {
		return t.xds.disabled
	}
	mode := t.xds.headerModeBytes
	if e.mcp != "" {
		mode = t.xds.mcpModeBytes
	}
	passthrough := ""
	if e.passthrough {
		passthrough = contract.PassthroughOn
	}
	md := [10][2]string{{contract.MetadataGateway, e.gateway}, {contract.MetadataRoute, e.route}, {contract.MetadataPolicy, e.policy},
		{contract.MetadataMCP, e.mcp}, {contract.MetadataBackend, e.backend}, {contract.MetadataTarget, e.target},
		{contract.MetadataTargets, e.targets}, {contract.MetadataMux, e.mux}, {contract.MetadataBridge, e.bridge},
		{contract.MetadataPassthrough, passthrough}}
	if into == nil {
		into = &anypb.Any{}
	}
	into.TypeUrl, into.Value = extProcPerRouteURL, encodePerRoute(mode, md[:])
	return into
}

// encodePerRoute encodes ExtProcPerRoute{overrides: {processing_mode, grpc_initial_metadata}}
// exactly as proto.Marshal does (fields in number order; metadata with an empty value left
// out), in one allocation: it runs once per route, where proto.Marshal's reflection showed in
// the profile (docs/benchmarks.md).
func encodePerRoute(mode []byte, md [][2]string) []byte {
	const (
		perRouteOverrides  = 2 // ExtProcPerRoute.overrides
		overridesMode      = 1 // ExtProcOverrides.processing_mode
		overridesMetadata  = 7 // ExtProcOverrides.grpc_initial_metadata
		headerKey, headerV = 1, 2
	)
	hvSize := func(kv [2]string) int {
		return protowire.SizeTag(headerKey) + protowire.SizeBytes(len(kv[0])) + protowire.SizeTag(headerV) + protowire.SizeBytes(len(kv[1]))
	}
	ov := protowire.SizeTag(overridesMode) + protowire.SizeBytes(len(mode))
	for _, kv := range md {
		if kv[1] != "" {
			ov += protowire.SizeTag(overridesMetadata) + protowire.SizeBytes(hvSize(kv))
		}
	}
	b := make([]byte, 0, protowire.SizeTag(perRouteOverrides)+protowire.SizeBytes(ov))
	b = protowire.AppendTag(b, perRouteOverrides, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ov))
	b = protowire.AppendTag(b, overridesMode, protowire.BytesType)
	b = protowire.AppendBytes(b, mode)
	for _, kv := range md {
		if kv[1] == "" {
			continue
		}
		b = protowire.AppendTag(b, overridesMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(hvSize(kv)))
		b = protowire.AppendTag(b, headerKey, protowire.BytesType)
		b = protowire.AppendString(b, kv[0])
		b = protowire.AppendTag(b, headerV, protowire.BytesType)
		b = protowire.AppendString(b, kv[1])
	}
	return b
}
