package xdsconf

//lint:file-ignore SA1019 Envoy still accepts deprecated fields (file access log json_format); the double reads them as Envoy does

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	reqwithoutqueryv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/req_without_query/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/internal/envoypath"
	"github.com/mcpgate/mcpgate/test/envoydouble/accesslog"
)

// Listener is a Listener with one HTTP connection manager.
type Listener struct {
	// Name is the listener's name (a Gateway listener's, for mcpgate).
	Name string
	// Address is the address the listener binds: a socket_address (tcp), or a pipe (unix), a
	// Unix socket only processes of the host reach (the bootstrap's mux upstream listener).
	Address Endpoint
	// BufferLimit is per_connection_buffer_limit_bytes (Envoy's default 1 MiB): the most a
	// BUFFERED ext_proc body may hold; over it the request gets 413 (the response 500). A
	// BUFFERED_PARTIAL response body is sent to ext_proc once its queue holds more.
	BufferLimit uint32
	// HCM is the filter chain's one HTTP connection manager (every TLS chain's, each with its
	// own RDSName: TLS.Chains[i].RDSName, which routes the chain's requests).
	HCM *HCM
	// TLS is the listener's TLS termination (filter chains chosen by SNI), nil for plaintext.
	TLS *ListenerTLS
}

// Warm reports whether the listener can serve with snap: its RouteConfigurations are known
// (RDS: every TLS chain's) and so is every Secret its TLS chains name (SDS), as Envoy warms a
// listener on both.
func (l *Listener) Warm(snap *Snapshot) bool {
	if l.HCM.RouteConfig == nil && snap.Routes[l.HCM.RDSName] == nil {
		return false
	}
	for _, n := range l.TLS.RDSNames() {
		if snap.Routes[n] == nil {
			return false
		}
	}
	return len(l.TLS.MissingSecrets(snap.Secrets)) == 0
}

// HCM is the HttpConnectionManager.
type HCM struct {
	// StatPrefix is stat_prefix: its statistics are http.<StatPrefix>.*.
	StatPrefix string
	// XFCC is forward_client_cert_details and set_current_client_cert_details: what the
	// connection manager does with x-forwarded-client-cert.
	XFCC XFCC
	// RDSName is rds.route_config_name; empty when the route configuration is inline.
	RDSName string
	// RouteConfig is the inline route_config; nil when RDSName names one.
	RouteConfig *RouteConfig
	// ExtProcs are the ext_proc filters in chain order (the router comes last).
	ExtProcs []*ExtProc
	// StatefulSession is the envoy.filters.http.stateful_session filter, nil when the chain has
	// none; its place relative to ext_proc is StatefulSession.BeforeExtProc.
	StatefulSession *StatefulSessionFilter
	// Cors is the envoy.filters.http.cors filter, nil when the chain has none. The double
	// implements it first in the chain only: it decodes before, and encodes after, every other
	// filter.
	Cors *CorsFilter
	// RateLimit is the envoy.filters.http.local_ratelimit filter, nil when the chain has none.
	// The double implements it right after the CORS filter (or first): it decodes before the
	// stateful session filter and ext_proc, and a 429 it sends passes every encoder.
	RateLimit *RateLimitFilter
	// AccessLogs are access_log, each written when a stream ends.
	AccessLogs []*AccessLog
	// DropUnderscoreHeaders is common_http_protocol_options.headers_with_underscores_action
	// DROP_HEADER: the codec drops request headers whose name has an underscore.
	DropUnderscoreHeaders bool
	// StreamIdleTimeout is stream_idle_timeout; Envoy's default is 5 minutes, 0 disables it.
	StreamIdleTimeout time.Duration
	// StripAnyHostPort is strip_any_host_port: the port is removed from every :authority.
	StripAnyHostPort bool
	// StripMatchingHostPort is strip_matching_host_port: the port is removed from :authority
	// when it is the listener's.
	StripMatchingHostPort bool
	// UseRemoteAddress, XFFTrustedHops and SkipXFFAppend decide the request's downstream remote
	// address (source.address, %DOWNSTREAM_REMOTE_ADDRESS%, hash_policy source_ip) and
	// x-forwarded-for / x-forwarded-proto, as ConnectionManagerUtility::mutateRequestHeaders does.
	// UseRemoteAddress is use_remote_address: the connection's peer is the remote address.
	UseRemoteAddress bool
	// XFFTrustedHops is xff_num_trusted_hops: how many x-forwarded-for addresses from the right
	// are trusted proxies.
	XFFTrustedHops uint32
	// SkipXFFAppend is skip_xff_append: with UseRemoteAddress, the peer is not appended to
	// x-forwarded-for.
	SkipXFFAppend bool
	// GenerateRequestID is generate_request_id (default true): x-request-id is set when absent,
	// and replaced on an edge request unless PreserveExternalRequestID.
	GenerateRequestID bool
	// PreserveExternalRequestID is preserve_external_request_id: an edge request keeps its
	// x-request-id.
	PreserveExternalRequestID bool
	// InternalCIDRs is internal_address_config.cidr_ranges: the downstream addresses Envoy treats
	// as internal. Without it no address is (Envoy 1.36 removed the explicit_internal_address_config
	// guard that could restore RFC 1918 addresses as internal).
	InternalCIDRs []netip.Prefix
	// AlwaysSetRequestIDInReply is always_set_request_id_in_response: the request's
	// x-request-id is copied to the response.
	AlwaysSetRequestIDInReply bool
	// ServerName is server_name (default "envoy"), written as the server header.
	ServerName string
	// ServerHeaderPassThrough is server_header_transformation PASS_THROUGH: the server header
	// is left as the upstream sent it (none added).
	ServerHeaderPassThrough bool
	// ServerHeaderAppend is server_header_transformation APPEND_IF_ABSENT: ServerName is added
	// when the response has no server header. With neither set (OVERWRITE), it replaces it.
	ServerHeaderAppend bool
	// Paths are normalize_path, merge_slashes and path_with_escaped_slashes_action, applied by
	// envoypath.Normalize before the route match.
	Paths envoypath.Options
}

// AccessLog is an access logger: stdout, or a file path.
type AccessLog struct {
	Path string // "" = stdout
	// Format is the compiled json_format, with the command operators of its formatters.
	Format *accesslog.Format
}

const (
	hcmName    = "envoy.filters.network.http_connection_manager"
	routerType = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

// CompileListener checks and compiles a Listener.
func CompileListener(l *listenerv3.Listener) (*Listener, error) {
	path := fmt.Sprintf("listener %q", l.GetName())
	if err := validate(l, path); err != nil {
		return nil, err
	}
	// Ignored on purpose: stat_prefix; traffic_direction (tracing only); drain_type.
	if err := checkFields(l, path, "name", "address", "filter_chains", "per_connection_buffer_limit_bytes",
		"stat_prefix", "traffic_direction", "drain_type", "metadata", "listener_filters"); err != nil {
		return nil, err
	}
	addr, err := compileAddress(l.GetAddress(), path+".address")
	if err != nil {
		return nil, err
	}
	if addr.Network == "unix" && (strings.HasPrefix(addr.Path, "@") || l.GetAddress().GetPipe().GetMode() != 0) {
		return nil, fmt.Errorf("%s.address.pipe: an abstract socket or a mode is not implemented by envoydouble for listeners", path)
	}
	out := &Listener{Name: l.GetName(), Address: addr, BufferLimit: 1 << 20}
	if b := l.GetPerConnectionBufferLimitBytes(); b != nil {
		out.BufferLimit = b.GetValue()
	}
	if out.TLS, err = compileListenerTLS(l, path); err != nil {
		return nil, err
	}
	if out.TLS == nil && len(l.GetFilterChains()) != 1 {
		return nil, fmt.Errorf("%s.filter_chains: exactly one filter chain is implemented by envoydouble for a plaintext listener, got %d", path, len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	fp := path + ".filter_chains[0]"
	if err := checkFields(fc, fp, "filters", "name", "metadata", "filter_chain_match", "transport_socket"); err != nil {
		return nil, err // the TLS ones checked by compileListenerTLS
	}
	if len(fc.GetFilters()) != 1 || fc.GetFilters()[0].GetName() != hcmName {
		return nil, fmt.Errorf("%s.filters: exactly one %s is implemented by envoydouble", fp, hcmName)
	}
	var hcm hcmv3.HttpConnectionManager
	hp := fp + ".filters[0].typed_config"
	if err := unpack(fc.GetFilters()[0].GetTypedConfig(), &hcm, hp); err != nil {
		return nil, err
	}
	if out.HCM, err = compileHCM(&hcm, hp); err != nil {
		return nil, err
	}
	return out, nil
}

func compileHCM(h *hcmv3.HttpConnectionManager, path string) (*HCM, error) {
	if err := validate(h, path); err != nil {
		return nil, err
	}
	// Ignored on purpose (no effect on answers at test volumes, or connection-level only):
	// codec_type AUTO/HTTP1 (checked below), http2_protocol_options (the double
	// serves HTTP/1.1 only), max_request_headers_kb,
	// request_headers_timeout, drain_timeout, delayed_close_timeout.
	if err := checkFields(h, path, "codec_type", "stat_prefix", "rds", "route_config", "http_filters",
		"access_log", "stream_idle_timeout", "use_remote_address", "xff_num_trusted_hops", "skip_xff_append",
		"strip_matching_host_port", "strip_any_host_port", "generate_request_id", "preserve_external_request_id",
		"always_set_request_id_in_response", "server_name", "server_header_transformation",
		"common_http_protocol_options", "http_protocol_options", "http2_protocol_options",
		"max_request_headers_kb", "request_headers_timeout", "drain_timeout", "delayed_close_timeout",
		"internal_address_config", "normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
		"forward_client_cert_details", "set_current_client_cert_details"); err != nil {
		return nil, err
	}
	xfcc, err := compileXFCC(h, path)
	if err != nil {
		return nil, err
	}
	paths, err := compilePaths(h, path)
	if err != nil {
		return nil, err
	}
	if cp := h.GetCommonHttpProtocolOptions(); cp != nil {
		// idle_timeout only closes idle connections.
		p := path + ".common_http_protocol_options"
		if err := checkFields(cp, p, "idle_timeout", "headers_with_underscores_action"); err != nil {
			return nil, err
		}
		switch cp.GetHeadersWithUnderscoresAction() {
		case corev3.HttpProtocolOptions_ALLOW, corev3.HttpProtocolOptions_DROP_HEADER:
		default:
			return nil, fmt.Errorf("%s.headers_with_underscores_action: %s not implemented by envoydouble (ALLOW, DROP_HEADER)", p, cp.GetHeadersWithUnderscoresAction())
		}
	}
	if err := checkFields(h.GetHttpProtocolOptions(), path+".http_protocol_options"); err != nil {
		return nil, err
	}
	var internal []netip.Prefix
	if ia := h.GetInternalAddressConfig(); ia != nil {
		p := path + ".internal_address_config"
		// unix_sockets: the double's listeners are TCP only.
		if err := checkFields(ia, p, "unix_sockets", "cidr_ranges"); err != nil {
			return nil, err
		}
		for i, c := range ia.GetCidrRanges() {
			pfx, err := netip.ParseAddr(c.GetAddressPrefix())
			if err != nil {
				return nil, fmt.Errorf("%s.cidr_ranges[%d].address_prefix: %w", p, i, err)
			}
			n, err := pfx.Prefix(int(c.GetPrefixLen().GetValue()))
			if err != nil {
				return nil, fmt.Errorf("%s.cidr_ranges[%d].prefix_len: %w", p, i, err)
			}
			internal = append(internal, n)
		}
	}
	switch h.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP1:
	default:
		return nil, fmt.Errorf("%s.codec_type: %s not implemented by envoydouble (AUTO serves HTTP/1.1)", path, h.GetCodecType())
	}
	out := &HCM{StatPrefix: h.GetStatPrefix(), StreamIdleTimeout: 5 * time.Minute, GenerateRequestID: true, ServerName: "envoy",
		StripAnyHostPort: h.GetStripAnyHostPort(), StripMatchingHostPort: h.GetStripMatchingHostPort(),
		UseRemoteAddress: h.GetUseRemoteAddress().GetValue(), SkipXFFAppend: h.GetSkipXffAppend(), XFFTrustedHops: h.GetXffNumTrustedHops(),
		AlwaysSetRequestIDInReply: h.GetAlwaysSetRequestIdInResponse(), PreserveExternalRequestID: h.GetPreserveExternalRequestId(),
		InternalCIDRs: internal, Paths: paths, XFCC: xfcc,
		DropUnderscoreHeaders: h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() == corev3.HttpProtocolOptions_DROP_HEADER}
	if t := h.GetStreamIdleTimeout(); t != nil {
		out.StreamIdleTimeout = t.AsDuration()
	}
	if g := h.GetGenerateRequestId(); g != nil {
		out.GenerateRequestID = g.GetValue()
	}
	if h.GetServerName() != "" {
		out.ServerName = h.GetServerName()
	}
	switch h.GetServerHeaderTransformation() {
	case hcmv3.HttpConnectionManager_PASS_THROUGH:
		out.ServerHeaderPassThrough = true
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		out.ServerHeaderAppend = true
	}
	switch {
	case h.GetRds() != nil:
		rds := h.GetRds()
		if err := checkFields(rds, path+".rds", "config_source", "route_config_name"); err != nil {
			return nil, err
		}
		if rds.GetConfigSource().GetAds() == nil {
			return nil, fmt.Errorf("%s.rds.config_source: only ads is implemented by envoydouble", path)
		}
		out.RDSName = rds.GetRouteConfigName()
	case h.GetRouteConfig() != nil:
		rc, err := compileRouteConfig(h.GetRouteConfig(), path+".route_config")
		if err != nil {
			return nil, err
		}
		out.RouteConfig = rc
	default:
		return nil, fmt.Errorf("%s: rds or route_config is required (scoped_routes is not implemented by envoydouble)", path)
	}
	filters := h.GetHttpFilters()
	for i, f := range filters {
		fp := fmt.Sprintf("%s.http_filters[%d](%s)", path, i, f.GetName())
		if err := checkFields(f, fp, "name", "typed_config"); err != nil {
			return nil, err
		}
		switch f.GetTypedConfig().GetTypeUrl() {
		case ExtProcFilterType:
			var cfg extprocv3.ExternalProcessor
			if err := unpack(f.GetTypedConfig(), &cfg, fp+".typed_config"); err != nil {
				return nil, err
			}
			ep, err := CompileExtProc(f.GetName(), &cfg, fp+".typed_config")
			if err != nil {
				return nil, err
			}
			if len(out.ExtProcs) > 0 {
				return nil, fmt.Errorf("%s: a second ext_proc filter is not implemented by envoydouble", fp)
			}
			out.ExtProcs = append(out.ExtProcs, ep)
		case StatefulSessionFilterType:
			ss, err := CompileStatefulSession(f.GetName(), f.GetTypedConfig(), fp+".typed_config")
			if err != nil {
				return nil, err
			}
			if out.StatefulSession != nil {
				return nil, fmt.Errorf("%s: a second stateful_session filter is not implemented by envoydouble", fp)
			}
			ss.BeforeExtProc = len(out.ExtProcs) == 0
			out.StatefulSession = ss
		case CorsFilterType:
			if i != 0 {
				return nil, fmt.Errorf("%s: a cors filter after other filters is not implemented by envoydouble (first in the chain only)", fp)
			}
			if out.Cors, err = CompileCors(f.GetName(), f.GetTypedConfig(), fp+".typed_config"); err != nil {
				return nil, err
			}
		case LocalRateLimitFilterType:
			if i != 0 && (i != 1 || out.Cors == nil) {
				return nil, fmt.Errorf("%s: a local_ratelimit filter elsewhere than first or right after cors is not implemented by envoydouble", fp)
			}
			if out.RateLimit, err = CompileRateLimitFilter(f.GetName(), f.GetTypedConfig(), fp+".typed_config"); err != nil {
				return nil, err
			}
		case routerType:
			if i != len(filters)-1 {
				return nil, fmt.Errorf("%s: the router must be the last filter", fp)
			}
			var r routerv3.Router
			if err := unpack(f.GetTypedConfig(), &r, fp+".typed_config"); err != nil {
				return nil, err
			}
			// Router options (suppress_envoy_headers, upstream logs, ...) are refused.
			if err := checkFields(&r, fp+".typed_config"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s.typed_config: filter type %s not implemented by envoydouble (cors, local_ratelimit, ext_proc, stateful_session, router)", fp, f.GetTypedConfig().GetTypeUrl())
		}
	}
	if len(filters) == 0 || filters[len(filters)-1].GetTypedConfig().GetTypeUrl() != routerType {
		return nil, fmt.Errorf("%s.http_filters: the last filter must be envoy.filters.http.router", path)
	}
	for i, al := range h.GetAccessLog() {
		a, err := compileAccessLog(al, fmt.Sprintf("%s.access_log[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out.AccessLogs = append(out.AccessLogs, a)
	}
	return out, nil
}

const (
	stdoutLogType = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
	fileLogType   = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
)

// reqWithoutQueryType is the formatter extension envoy.formatter.req_without_query, which adds the
// %REQ_WITHOUT_QUERY(...)% command operator to a format that lists it in its formatters.
const reqWithoutQueryType = "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"

// formatterCommands returns the command operators the formatter extensions of a
// SubstitutionFormatString add. Envoy instantiates each by its type (an unknown one is a NACK);
// the double knows req_without_query only.
func formatterCommands(fs []*corev3.TypedExtensionConfig, path string) ([]string, error) {
	var out []string
	for i, f := range fs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := checkFields(f, p, "name", "typed_config"); err != nil {
			return nil, err
		}
		if f.GetTypedConfig().GetTypeUrl() != reqWithoutQueryType {
			return nil, fmt.Errorf("%s: formatter %s not implemented by envoydouble (req_without_query)", p, f.GetTypedConfig().GetTypeUrl())
		}
		var c reqwithoutqueryv3.ReqWithoutQuery
		if err := unpack(f.GetTypedConfig(), &c, p+".typed_config"); err != nil {
			return nil, err
		}
		out = append(out, accesslog.ReqWithoutQuery)
	}
	return out, nil
}

func compileAccessLog(al *accesslogv3.AccessLog, path string) (*AccessLog, error) {
	if err := checkFields(al, path, "name", "typed_config"); err != nil {
		return nil, err
	}
	tp := path + ".typed_config"
	out := &AccessLog{}
	var js *structpb.Struct
	var commands []string
	var err error
	switch al.GetTypedConfig().GetTypeUrl() {
	case stdoutLogType:
		var s streamv3.StdoutAccessLog
		if err := unpack(al.GetTypedConfig(), &s, tp); err != nil {
			return nil, err
		}
		if err := checkFields(&s, tp, "log_format"); err != nil {
			return nil, err
		}
		lf := s.GetLogFormat()
		if err := checkFields(lf, tp+".log_format", "json_format", "formatters"); err != nil {
			return nil, err
		}
		js = lf.GetJsonFormat()
		if commands, err = formatterCommands(lf.GetFormatters(), tp+".log_format.formatters"); err != nil {
			return nil, err
		}
	case fileLogType:
		var f filev3.FileAccessLog
		if err := unpack(al.GetTypedConfig(), &f, tp); err != nil {
			return nil, err
		}
		if err := checkFields(&f, tp, "path", "json_format", "log_format"); err != nil {
			return nil, err
		}
		out.Path = f.GetPath()
		js = f.GetJsonFormat()
		if lf := f.GetLogFormat(); lf != nil {
			if err := checkFields(lf, tp+".log_format", "json_format", "formatters"); err != nil {
				return nil, err
			}
			js = lf.GetJsonFormat()
			if commands, err = formatterCommands(lf.GetFormatters(), tp+".log_format.formatters"); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%s: access logger type %s not implemented by envoydouble (stdout, file)", tp, al.GetTypedConfig().GetTypeUrl())
	}
	if js == nil {
		return nil, fmt.Errorf("%s: only json_format is implemented by envoydouble", tp)
	}
	f, err := accesslog.Compile(js, tp+".json_format", commands...)
	if err != nil {
		return nil, err
	}
	out.Format = f
	return out, nil
}

// Internal reports whether a downstream address is internal (InternalAddressConfig).
func (h *HCM) Internal(ip netip.Addr) bool {
	for _, p := range h.InternalCIDRs {
		if p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// XFCC is how a connection manager treats x-forwarded-client-cert (forward_client_cert_details).
// The double implements SANITIZE (Envoy's default: the header is removed) and SANITIZE_SET (it is
// replaced by the connection's client certificate, or removed when none was presented), with
// set_current_client_cert_details subject, uri and dns.
type XFCC struct {
	// Set is SANITIZE_SET.
	Set bool
	// Forward is ALWAYS_FORWARD_ONLY: the header passes as it comes.
	Forward bool
	// Subject, URI and DNS are set_current_client_cert_details' fields.
	Subject, URI, DNS bool
}

// compileXFCC reads forward_client_cert_details and set_current_client_cert_details, refusing
// what the double does not implement (FORWARD_ONLY, APPEND_FORWARD; cert and chain).
func compileXFCC(h *hcmv3.HttpConnectionManager, path string) (XFCC, error) {
	var x XFCC
	switch h.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE:
	case hcmv3.HttpConnectionManager_SANITIZE_SET:
		x.Set = true
	case hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY:
		x.Forward = true
	default:
		return x, fmt.Errorf("%s.forward_client_cert_details: %s not implemented by envoydouble (SANITIZE, SANITIZE_SET, ALWAYS_FORWARD_ONLY)", path, h.GetForwardClientCertDetails())
	}
	d := h.GetSetCurrentClientCertDetails()
	if d == nil {
		return x, nil
	}
	p := path + ".set_current_client_cert_details"
	if err := checkFields(d, p, "subject", "uri", "dns"); err != nil {
		return x, err
	}
	x.Subject, x.URI, x.DNS = d.GetSubject().GetValue(), d.GetUri(), d.GetDns()
	return x, nil
}
