package dataplane

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/internal/envoypath"
	"github.com/mcpgate/mcpgate/test/envoydouble/accesslog"
	"github.com/mcpgate/mcpgate/test/envoydouble/extprocfilter"
	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// Envoy's response flags (%RESPONSE_FLAGS%) used by the double.
const (
	flagNoRoute           = "NR"
	flagNoHealthyUpstream = "UH"
	flagConnectFailure    = "UF"
	flagUpstreamTimeout   = "UT"
	flagNoCluster         = "NC"
	flagDownstreamTerm    = "DC"
	flagUpstreamTerm      = "UC"
	flagUpstreamOverflow  = "UO"
	flagStreamIdleTimeout = "SI"
)

// errIdle is the cause of a stream idle timeout (stream_idle_timeout / route idle_timeout).
var errIdle = errors.New("stream idle timeout")

// stream is one HTTP request/response through the connection manager.
type stream struct {
	srv  *Server
	snap *xdsconf.Snapshot
	lis  *xdsconf.Listener
	w    http.ResponseWriter
	r    *http.Request
	rc   *http.ResponseController

	req *headers.Map
	// remote is the stream's downstream remote address (see buildRequestHeaders).
	remote string
	resp   *headers.Map
	rcfg   *xdsconf.RouteConfig
	vh     *xdsconf.VirtualHost
	route  *xdsconf.Route
	wc     *xdsconf.WeightedCluster // the cluster picked when the route matched

	// streamID is Envoy's stream_id_, a random value drawn once per stream: the random value of
	// weighted cluster picks.
	streamID uint64

	ep *extprocfilter.Stream
	md *extprocfilter.Metadata

	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   *time.Timer
	idleD  time.Duration

	body *downstreamBody
	// reqPipe carries a STREAMED request body to the upstream; closed when the stream ends.
	reqPipe *io.PipeReader

	start       time.Time
	code        int
	flags       []string
	details     string
	upstream    string
	cluster     string
	headersSent bool
	bytesIn     atomic.Int64
	bytesOut    int64

	// pendingLocal is a local reply decided while the request body streams (STREAMED mode).
	pendingMu    sync.Mutex
	pendingLocal *extprocfilter.LocalReply

	// sessionHeader is the stateful session filter's envelope header when the filter is active
	// on the stream; overrideHost the upstream address the request's envelope named (see
	// stateful.go).
	sessionHeader string
	overrideHost  string

	// cors is the CORS filter's state (see cors.go).
	cors corsState
}

// serve handles one request on listener l.
func (s *Server) serve(l *xdsconf.Listener, w http.ResponseWriter, r *http.Request) {
	st := &stream{srv: s, snap: s.Snapshot(), lis: l, w: w, r: r, rc: http.NewResponseController(w),
		md: &extprocfilter.Metadata{}, start: time.Now(), streamID: rand.Uint64()}
	// The request body may still stream while the response is written (SSE, STREAMED bodies).
	_ = st.rc.EnableFullDuplex()
	st.ctx, st.cancel = context.WithCancelCause(r.Context())
	defer st.cancel(nil)
	defer st.finish()
	s.stats.DownstreamRequest(l.HCM.StatPrefix)
	st.run()
}

func (st *stream) run() {
	if !st.buildRequestHeaders() {
		return
	}
	st.rcfg = st.routeConfig()
	st.armIdle(st.lis.HCM.StreamIdleTimeout) // a route's idle_timeout replaces it when the route matches
	st.matchRoute()
	st.setupExtProc()
	// The body exists before any decoder answers: one that answers early leaves it to finish's
	// release, which drains it so that the connection serves the next request.
	hasBody := st.r.ContentLength != 0 || len(st.r.TransferEncoding) > 0
	st.body = &downstreamBody{r: st.r.Body, n: &st.bytesIn, touch: st.touch, empty: !hasBody}
	if st.corsDecode() { // first in the chain: a preflight it answers reaches no other decoder
		return
	}
	if st.rateLimitDecode() { // right after CORS: a refused request reaches no other decoder
		return
	}
	if st.sessionBeforeExtProc() {
		st.sessionDecode()
	}

	var body io.Reader = st.body
	if st.ep != nil {
		res := st.ep.RequestHeaders(st.req, !hasBody)
		if st.decodeResult(res) {
			return
		}
		if res.Replaced {
			body, hasBody = bytes.NewReader(res.Body), len(res.Body) > 0
		}
	}
	upBody, ok := st.requestBody(body, hasBody)
	if !ok {
		return
	}
	if !st.sessionBeforeExtProc() {
		st.sessionDecode() // placed after ext_proc: it sees the request once ext_proc let it go
	}
	st.dispatch(upBody)
}

// decodeResult applies an ext_proc result on the request path; true when the stream is answered.
func (st *stream) decodeResult(res extprocfilter.Result) bool {
	if res.Local != nil {
		st.filterLocalReply(res.Local)
		return true
	}
	if res.ClearRouteCache {
		st.matchRoute() // clear_route_cache: the route is matched again on the mutated headers
	}
	return false
}

// requestBody returns what goes upstream, by the request body mode of ext_proc.
func (st *stream) requestBody(body io.Reader, hasBody bool) (io.Reader, bool) {
	if !hasBody {
		return nil, true
	}
	mode := extprocv3.ProcessingMode_NONE
	if st.ep != nil {
		mode = st.ep.BodyMode(extprocfilter.Request)
	}
	switch mode {
	case extprocv3.ProcessingMode_BUFFERED:
		data, err := readLimited(body, st.lis.BufferLimit)
		if errors.Is(err, errTooLarge) {
			// Envoy: a buffered request body over per_connection_buffer_limit_bytes is a 413
			// (ActiveStreamDecoderFilter::requestDataTooLarge). It is the connection manager's
			// local reply, sent through the encoder filters: ext_proc, still processing, gets its
			// response headers and body when the route's mode sends them.
			st.localReply(413, []byte("Payload Too Large"), "request_payload_too_large", "", false)
			return nil, false
		}
		if err != nil {
			st.downstreamGone()
			return nil, false
		}
		data, res := st.ep.BufferedBody(extprocfilter.Request, st.req, data)
		if st.decodeResult(res) {
			return nil, false
		}
		return bytes.NewReader(data), true
	case extprocv3.ProcessingMode_STREAMED:
		pr, pw := io.Pipe()
		st.reqPipe = pr
		go func() {
			res, err := st.ep.StreamBody(extprocfilter.Request, chunks(body), func(b []byte) error {
				_, err := pw.Write(b)
				return err
			})
			if res.Local != nil {
				st.pendingMu.Lock()
				st.pendingLocal = res.Local
				st.pendingMu.Unlock()
				err = errors.New("ext_proc ended the request")
			}
			pw.CloseWithError(err)
		}()
		return pr, true
	}
	return body, true
}

// buildRequestHeaders builds the header map as Envoy's HTTP/1 codec and connection manager do:
// pseudo-headers, lower-case names, hop-by-hop headers removed, expect: 100-continue answered and
// removed, then the path normalized (normalizePath), the host port stripped when configured, and
// the HCM's own headers (x-forwarded-proto when absent, x-request-id when absent and
// generate_request_id, x-forwarded-for with use_remote_address). It returns false when the
// stream was answered (path normalization).
func (st *stream) buildRequestHeaders() bool {
	h := &headers.Map{}
	hcm := st.lis.HCM
	h.Add(":authority", st.r.Host)
	h.Add(":path", st.r.RequestURI)
	h.Add(":method", st.r.Method)
	// Envoy's :scheme and x-forwarded-proto of an edge request are the connection's: https
	// over TLS (ConnectionManagerUtility::mutateRequestHeaders, connection.ssl()).
	scheme := "http"
	if st.r.TLS != nil {
		scheme = "https"
	}
	h.Add(":scheme", scheme)
	keys := make([]string, 0, len(st.r.Header))
	for k := range st.r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop(lk, st.r.Header.Get(k)) {
			continue
		}
		if hcm.DropUnderscoreHeaders && strings.Contains(lk, "_") {
			continue // headers_with_underscores_action DROP_HEADER: the codec drops it
		}
		for _, v := range st.r.Header[k] {
			h.Add(lk, v)
		}
	}
	if v, ok := h.Get("expect"); ok && strings.EqualFold(v, "100-continue") {
		// Envoy answers 100 Continue itself and removes expect before the filters see the request
		// (ActiveStream::decodeHeaders without proxy_100_continue).
		h.Del("expect")
		st.w.WriteHeader(http.StatusContinue)
	}
	st.req, st.remote = h, st.r.RemoteAddr
	if !st.normalizePath() {
		return false
	}
	// ConnectionManagerUtility::maybeNormalizeHost, after the path.
	if hcm.StripAnyHostPort {
		h.Set(":authority", xdsconf.StripPort(h.Value(":authority")))
	} else if hcm.StripMatchingHostPort {
		if _, p, err := net.SplitHostPort(h.Value(":authority")); err == nil && p == strconv.Itoa(int(st.lis.Address.Port)) {
			h.Set(":authority", xdsconf.StripPort(h.Value(":authority")))
		}
	}
	// ConnectionManagerUtility::mutateRequestHeaders: without use_remote_address the stream's
	// downstream remote address is the last x-forwarded-for address (past xff_num_trusted_hops)
	// when there is one, a value the client may have set; with it, the connection's peer unless
	// trusted hops name another, and the peer is appended to x-forwarded-for (Envoy appends its
	// own local address for a loopback peer; the double appends the peer) and x-forwarded-proto
	// is overwritten unless a trusted hop set it.
	if hcm.UseRemoteAddress {
		if ip, ok := lastXFF(h, int(hcm.XFFTrustedHops)-1); ok && hcm.XFFTrustedHops > 0 {
			st.remote = net.JoinHostPort(ip, "0")
		}
		if !hcm.SkipXFFAppend {
			ip, _, _ := net.SplitHostPort(st.r.RemoteAddr)
			if xff, ok := h.Joined("x-forwarded-for"); ok {
				h.Set("x-forwarded-for", xff+","+ip)
			} else {
				h.Add("x-forwarded-for", ip)
			}
		}
		if hcm.XFFTrustedHops == 0 {
			h.Set("x-forwarded-proto", scheme)
		}
	} else if ip, ok := lastXFF(h, int(hcm.XFFTrustedHops)); ok {
		st.remote = net.JoinHostPort(ip, "0")
	}
	if !h.Has("x-forwarded-proto") {
		h.Add("x-forwarded-proto", scheme)
	}
	st.edgeHeaders(h)
	return true
}

// normalizePath applies the HCM's path normalization (envoypath.Normalize) to :path, as
// ActiveStream::decodeHeaders does before anything else reads the path: before the host port is
// stripped, before mutateRequestHeaders (x-forwarded-for, x-request-id), the route match and the
// filter chain. A rejected path is a 400 and a redirect a 307 to the normalized path (400 for a
// gRPC request), both local replies without body, details path_normalization_failed, sent before
// the filter chain exists (ext_proc never sees them). It returns false when the stream was
// answered.
func (st *stream) normalizePath() bool {
	path, action, _ := envoypath.Normalize(st.req.Value(":path"), st.lis.HCM.Paths)
	st.req.Set(":path", path)
	if action == envoypath.Redirect && isGRPC(st.req.Value("content-type")) {
		action = envoypath.Reject
	}
	switch action {
	case envoypath.Reject:
		st.localReply(http.StatusBadRequest, nil, "path_normalization_failed", "", false)
		return false
	case envoypath.Redirect:
		h := &headers.Map{}
		h.Add("location", path)
		st.localReplyWith(http.StatusTemporaryRedirect, nil, "path_normalization_failed", "", h, false)
		return false
	}
	return true
}

// isGRPC is Envoy's Grpc::Common::hasGrpcContentType: application/grpc, alone or followed by '+'
// or ';'.
func isGRPC(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// envoyInternalHeaders are the x-envoy-* request headers Envoy removes from every request that is
// not internal (ConnectionManagerUtility::cleanInternalHeaders), so that clients cannot set them.
var envoyInternalHeaders = []string{"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
	"x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms", "x-envoy-force-trace",
	"x-envoy-ip-tags", "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout", "x-envoy-internal"}

// edgeHeaders applies what ConnectionManagerUtility::mutateRequestHeaders does by whether the
// request is internal (its downstream address in internal_address_config; with
// use_remote_address unset, only a single x-forwarded-for address counts) or an edge request
// (not internal, with use_remote_address): x-envoy-internal for an internal request, else the
// internal x-envoy-* headers and the route configuration's internal_only_headers removed
// (cleanInternalHeaders; and x-envoy-decorator-operation and the downstream service headers at
// the edge); x-envoy-external-address at the edge; x-request-id generated when absent and
// replaced at the edge unless preserve_external_request_id. All of it before any filter runs.
func (st *stream) edgeHeaders(h *headers.Map) {
	hcm := st.lis.HCM
	internal := false
	host, _, _ := net.SplitHostPort(st.remote)
	ip, err := netip.ParseAddr(host)
	if err == nil {
		xff := h.Values("x-forwarded-for")
		single := len(xff) == 1 && !strings.Contains(xff[0], ",")
		internal = hcm.Internal(ip) && (hcm.UseRemoteAddress || single)
	}
	edge := !internal && hcm.UseRemoteAddress
	if internal {
		h.Set("x-envoy-internal", "true")
	} else {
		if edge {
			for _, k := range []string{"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node"} {
				h.Del(k)
			}
		}
		for _, k := range envoyInternalHeaders {
			h.Del(k)
		}
		if rc := st.routeConfig(); rc != nil {
			for _, k := range rc.InternalOnlyHeaders {
				h.Del(k)
			}
		}
	}
	if edge && err == nil {
		h.Set("x-envoy-external-address", ip.String())
	}
	if hcm.GenerateRequestID && (!h.Has("x-request-id") || (edge && !hcm.PreserveExternalRequestID)) {
		h.Set("x-request-id", uuid4())
	}
	setXFCC(h, hcm.XFCC, st.r.TLS)
}

// lastXFF is Envoy's Utility::getLastAddressFromXFF: the x-forwarded-for address before the last
// skip ones, if it is an IP address.
func lastXFF(h *headers.Map, skip int) (string, bool) {
	xff, ok := h.Joined("x-forwarded-for")
	if !ok {
		return "", false
	}
	for ; skip > 0; skip-- {
		i := strings.LastIndexByte(xff, ',')
		if i < 0 {
			return "", false
		}
		xff = xff[:i]
	}
	if i := strings.LastIndexByte(xff, ','); i >= 0 {
		xff = xff[i+1:]
	}
	ip := net.ParseIP(strings.TrimSpace(xff))
	if ip == nil {
		return "", false
	}
	return ip.String(), true
}

func hopByHop(k, v string) bool {
	switch k {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return v != "trailers"
	}
	return false
}

func uuid4() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// routeConfig is the route configuration of the request's filter chain: on a TLS listener the
// chain its connection's handshake selected (each chain has its own rds.route_config_name, kept
// for the connection's life as Envoy keeps it), else the listener's one.
func (st *stream) routeConfig() *xdsconf.RouteConfig {
	if st.lis.HCM.RouteConfig != nil {
		return st.lis.HCM.RouteConfig
	}
	if c := chainOf(st.r); c != nil && c.RDSName != "" {
		return st.snap.Routes[c.RDSName]
	}
	return st.snap.Routes[st.lis.HCM.RDSName]
}

// matchRoute selects the virtual host by :authority and the first matching route.
func (st *stream) matchRoute() {
	st.vh, st.route, st.wc, st.cluster = nil, nil, nil, ""
	if st.rcfg == nil {
		return
	}
	st.vh = st.rcfg.FindVirtualHost(st.req.Value(":authority"))
	if st.vh != nil {
		st.route = st.vh.FindRoute(st.req)
	}
	if st.route != nil && st.route.Forward != nil {
		f := st.route.Forward
		// weighted_clusters: Envoy picks the cluster when the route matches, with the stream id as
		// random value or the hash_policy's hash (use_hash_policy).
		st.wc = f.PickCluster(st.streamID, st.hashKey(f))
		st.cluster = st.wc.Name
	}
	if st.route != nil && st.route.Forward != nil && st.route.Forward.IdleTimeout != nil {
		st.armIdle(*st.route.Forward.IdleTimeout)
	}
}

// upstreamCluster is Envoy's upstreamClusterInfo, which the connection manager sets when it picks
// the route (ActiveStream::setRoute): the cluster of the route entry (the picked weighted cluster)
// if the cluster manager has it, else none; a redirect or direct response has no route entry.
// %UPSTREAM_CLUSTER%, %METADATA(CLUSTER:...)% and the xds.cluster_name attribute read it. The
// double's snapshot is the stream's, as Envoy keeps the ClusterInfo it took.
func (st *stream) upstreamCluster() *xdsconf.Cluster {
	if st.route == nil || st.route.Forward == nil {
		return nil
	}
	return st.snap.Clusters[st.cluster]
}

// setupExtProc creates the ext_proc filter stream with the per-route configs of the route
// configuration, virtual host, route and weighted cluster merged as Envoy merges them
// (Filter::mergePerRouteConfig). A merged config that is disabled skips the filter.
func (st *stream) setupExtProc() {
	if len(st.lis.HCM.ExtProcs) == 0 {
		return
	}
	f := st.lis.HCM.ExtProcs[0]
	var levels []*xdsconf.ExtProcPerRoute
	for _, l := range st.perFilterLevels() {
		levels = append(levels, l.ExtProc[f.Name])
	}
	pr := xdsconf.MergePerRoute(levels...)
	if pr != nil && pr.Disabled {
		return
	}
	st.ep = extprocfilter.New(extprocfilter.Params{Filter: f, PerRoute: pr, Conn: st.srv.grpcs.conn,
		Attrs: st.attribute, Metadata: st.md})
}

// perFilterLevels are the typed_per_filter_configs of the stream's route, least specific first:
// route configuration, virtual host, route, weighted cluster (levels that do not exist left out).
func (st *stream) perFilterLevels() []xdsconf.PerFilter {
	var levels []xdsconf.PerFilter
	if st.rcfg != nil {
		levels = append(levels, st.rcfg.PerFilter)
	}
	if st.vh != nil {
		levels = append(levels, st.vh.PerFilter)
	}
	if st.route != nil {
		levels = append(levels, st.route.PerFilter)
	}
	if st.wc != nil {
		levels = append(levels, st.wc.PerFilter)
	}
	return levels
}

// attribute evaluates the attribute expressions the double implements (see xdsconf).
func (st *stream) attribute(expr string) (*structpb.Value, bool) {
	str := func(s string) (*structpb.Value, bool) { return structpb.NewStringValue(s), true }
	path := st.req.Value(":path")
	switch expr {
	case "source.address":
		return str(st.remote)
	case "source.port":
		_, p, _ := net.SplitHostPort(st.remote)
		n, _ := strconv.Atoi(p)
		return structpb.NewNumberValue(float64(n)), true
	case "destination.address", "destination.port":
		la, ok := st.r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !ok {
			return nil, false
		}
		if expr == "destination.address" {
			return str(la.String())
		}
		_, p, _ := net.SplitHostPort(la.String())
		n, _ := strconv.Atoi(p)
		return structpb.NewNumberValue(float64(n)), true
	case "request.path":
		return str(path)
	case "request.url_path":
		p, _, _ := strings.Cut(path, "?")
		return str(p)
	case "request.query":
		_, q, _ := strings.Cut(path, "?")
		return str(q)
	case "request.host":
		return str(st.req.Value(":authority"))
	case "request.scheme":
		return str(st.req.Value(":scheme"))
	case "request.method":
		return str(st.req.Value(":method"))
	case "request.id":
		return str(st.req.Value("x-request-id"))
	case "request.protocol":
		return str(st.r.Proto)
	case "connection.mtls", "connection.subject_peer_certificate", "connection.uri_san_peer_certificate",
		"connection.dns_san_peer_certificate", "connection.sha256_peer_certificate_digest":
		return peerAttribute(st.r.TLS, expr)
	case "xds.route_name":
		if st.route == nil {
			return nil, false
		}
		return str(st.route.Name)
	case "xds.virtual_host_name":
		if st.vh == nil {
			return nil, false
		}
		return str(st.vh.Name)
	case "xds.cluster_name":
		if c := st.upstreamCluster(); c != nil {
			return str(c.Name)
		}
		return nil, false
	case "response.code":
		if st.resp == nil {
			return nil, false
		}
		n, _ := strconv.Atoi(st.resp.Value(":status"))
		return structpb.NewNumberValue(float64(n)), true
	}
	if dir, name, ok := xdsconf.HeaderAttribute(expr); ok {
		h := st.req
		if dir == "response" {
			h = st.resp
		}
		if h == nil {
			return nil, false
		}
		if v, ok := h.Joined(name); ok {
			return str(v)
		}
	}
	return nil, false
}

// dispatch runs the router: the route's action, or 404 when no route matches.
func (st *stream) dispatch(upBody io.Reader) {
	r := st.route
	switch {
	case r == nil:
		st.localReply(404, nil, "route_not_found", flagNoRoute, true)
	case r.Direct != nil:
		st.localReply(r.Direct.Status, r.Direct.Body, "direct_response", "", true)
	case r.Redirect != nil:
		st.redirect(r.Redirect)
	default:
		st.forward(r.Forward, upBody)
	}
}

func (st *stream) redirect(rd *xdsconf.Redirect) {
	path := st.req.Value(":path")
	scheme := st.req.Value("x-forwarded-proto")
	newScheme := scheme
	if rd.Scheme != "" {
		newScheme = rd.Scheme
	}
	host := st.req.Value(":authority")
	hostOnly, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		hostOnly, port = h, p
	}
	if rd.Host != "" {
		hostOnly = rd.Host
	}
	switch {
	case rd.Port != 0:
		port = strconv.Itoa(int(rd.Port))
	case newScheme != scheme && (port == "80" || port == "443"):
		port = "" // a scheme change drops the old scheme's default port
	}
	if (newScheme == "http" && port == "80") || (newScheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		hostOnly = net.JoinHostPort(hostOnly, port)
	}
	p, q, _ := strings.Cut(path, "?")
	hadQuery := strings.Contains(path, "?")
	switch {
	case rd.Path != nil:
		p = *rd.Path
		if np, nq, ok := strings.Cut(p, "?"); ok {
			p, q, hadQuery = np, nq, true
		}
	case rd.PrefixRewrite != nil:
		p = xdsconf.RewritePath(p, &st.route.Match, rd.PrefixRewrite, nil, "")
	case rd.RegexRewrite != nil:
		p = rd.RegexRewrite.ReplaceAllString(p, rd.RegexSubst)
	}
	loc := newScheme + "://" + hostOnly + p
	if hadQuery && !rd.StripQuery {
		loc += "?" + q
	}
	h := &headers.Map{}
	h.Add("location", loc)
	st.localReplyWith(rd.Code, nil, "", "", h, true)
}

// forward proxies to the route's cluster as Envoy's router does.
func (st *stream) forward(f *xdsconf.Forward, upBody io.Reader) {
	c := st.snap.Clusters[st.cluster]
	if c == nil {
		st.localReply(f.ClusterNotFoundCode, nil, "cluster_not_found", flagNoCluster, true)
		return
	}
	uc := st.srv.ups.get(c)
	eps := st.srv.ups.endpoints(st.ctx, uc, st.snap)
	ep, ok := overrideEndpoint(eps, st.overrideHost) // the stateful session's host first
	if !ok {
		ep, ok = uc.pick(eps, st.hashKey(f))
	}
	if !ok {
		st.localReply(503, []byte("no healthy upstream"), "no_healthy_upstream", flagNoHealthyUpstream, true)
		return
	}

	// The router changes the stream's request headers in place (finalizeRequestHeaders, the
	// rewrites, x-envoy-expected-rq-timeout-ms): the access log's %REQ(...)% sees the forwarded
	// request, while the HTTP filters before the router (ext_proc) never see the route's header
	// operations: a route's request_headers_to_add (mcpgate's x-mcpgate-mux for the mux,
	// OVERWRITE_IF_EXISTS_OR_ADD replacing a client's) and request_headers_to_remove (the mux
	// upstream routes' x-mcpgate-cluster) reach the upstream only. Envoy's order (WeightedClusterEntry:: and RouteEntryImplBase::
	// finalizeRequestHeaders): the header operations (which cannot touch :path or host), then
	// the host rewrites, then the path rewrite, which sets x-envoy-original-path, so a route
	// that removes that header removes only a client's.
	h := st.req
	st.finalizeRequestHeaders(h)
	// The weighted cluster's host_rewrite_literal, then the route's, then auto_host_rewrite
	// when the upstream connection is ready, if the host has a hostname.
	if st.wc.HostRewrite != "" {
		h.Set(":authority", st.wc.HostRewrite)
	}
	switch {
	case f.HostRewrite != "":
		h.Set(":authority", f.HostRewrite)
	case f.AutoHostRewrite && ep.hostname != "":
		h.Set(":authority", ep.hostname)
	}
	path := h.Value(":path")
	if np := xdsconf.RewritePath(path, &st.route.Match, f.PrefixRewrite, f.RegexRewrite, f.RegexSubstitution); np != path {
		h.Set(":path", np)
		h.Set("x-envoy-original-path", path)
	}
	ctx := st.ctx
	if f.Timeout > 0 {
		h.Set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(f.Timeout.Milliseconds(), 10))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, f.Timeout, context.DeadlineExceeded)
		defer cancel()
	}
	release, err := uc.admit(ctx)
	var overflow *errOverflow
	if !errors.As(err, &overflow) || !overflow.pending {
		// A request refused when it would attach to a connection names the connection's host;
		// one refused before waiting for a connection has none.
		st.upstream = ep.Addr()
	}
	switch {
	case overflow != nil:
		h := &headers.Map{}
		h.Add("x-envoy-overloaded", "true") // the router's, for a request the pool dropped
		st.upstreamReset("overflow", "", flagUpstreamOverflow, h)
		return
	case err != nil: // ended while waiting for a connection
		st.upstreamFailed(ctx, err)
		return
	}
	defer release()
	rctx, answered := st.extProcAnswersMeanwhile(ctx)
	out := st.upstreamRequest(rctx, h, ep, c, upBody)
	// upstream_rq_total: counted once the request has a connection, as Envoy's pool counts it
	// when it attaches the request to one (not a request whose connection failed).
	out = out.WithContext(httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { st.srv.stats.upstreamRequest(c.StatName) }}))
	sent := time.Now()
	resp, err := uc.transport(ep).RoundTrip(out)
	if lr := answered(); lr != nil {
		// ext_proc's local reply went first: the upstream request is reset.
		if err == nil {
			resp.Body.Close()
		}
		st.filterLocalReply(lr)
		return
	}
	if err != nil {
		st.upstreamFailed(ctx, err)
		return
	}
	defer resp.Body.Close()
	st.touch()
	rh := &headers.Map{}
	rh.Add(":status", strconv.Itoa(resp.StatusCode))
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop(lk, "") {
			continue
		}
		for _, v := range resp.Header[k] {
			rh.Add(lk, v)
		}
	}
	// The router's x-envoy-upstream-service-time: milliseconds until the upstream's headers.
	rh.Set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(sent).Milliseconds(), 10))
	st.finalizeResponseHeaders(rh)
	noBody := resp.ContentLength == 0 || st.r.Method == http.MethodHead || resp.StatusCode == 204 || resp.StatusCode == 304
	st.details = "via_upstream"
	st.encode(rh, &countingReader{r: resp.Body, touch: st.touch}, noBody, ctx)
}

// extProcAnswersMeanwhile watches, while the upstream's response headers are awaited, for a local
// reply Envoy's ext_proc filter sends at once whatever the stream is doing (a gRPC error of its
// stream when failing closed, an immediate response that came while no reply was awaited:
// ext_proc.cc onGrpcError, onReceiveMessage). It returns the context of the upstream request,
// cancelled by such a reply, and answered, to call once the response headers are in (or the
// request failed): the reply if one came first, else nil, after which none interrupts the
// upstream request any more.
func (st *stream) extProcAnswersMeanwhile(ctx context.Context) (context.Context, func() *extprocfilter.LocalReply) {
	if st.ep == nil {
		return ctx, func() *extprocfilter.LocalReply { return nil }
	}
	rctx, cancel := context.WithCancel(ctx)
	var (
		mu    sync.Mutex
		over  bool
		reply *extprocfilter.LocalReply
	)
	stop := make(chan struct{})
	go func() {
		select {
		case <-st.ep.Async():
			mu.Lock()
			if !over {
				reply = st.ep.AsyncResult().Local
				cancel()
			}
			mu.Unlock()
		case <-stop:
		}
	}()
	return rctx, func() *extprocfilter.LocalReply {
		mu.Lock()
		defer mu.Unlock()
		if !over {
			over = true
			close(stop)
		}
		return reply
	}
}

func (st *stream) upstreamRequest(ctx context.Context, h *headers.Map, ep endpoint, c *xdsconf.Cluster, body io.Reader) *http.Request {
	scheme := "http"
	if c.TLS != nil {
		scheme = "https"
	}
	p, q, _ := strings.Cut(h.Value(":path"), "?")
	u := &url.URL{Scheme: scheme, Host: ep.Addr(), Opaque: p, RawQuery: q}
	if ep.Network == "unix" {
		u.Host = "localhost"
	}
	out := (&http.Request{Method: h.Value(":method"), URL: u, Host: h.Value(":authority"), Header: http.Header{},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
	for _, e := range h.All() {
		if strings.HasPrefix(e.Key, ":") || e.Key == "content-length" {
			continue
		}
		out.Header[http.CanonicalHeaderKey(e.Key)] = append(out.Header[http.CanonicalHeaderKey(e.Key)], e.Value)
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default User-Agent: Envoy adds none
	}
	out.Body = io.NopCloser(body)
	out.ContentLength = -1
	if cl, err := strconv.ParseInt(h.Value("content-length"), 10, 64); err == nil {
		out.ContentLength = cl
	}
	if body == nil || out.ContentLength == 0 {
		out.Body, out.ContentLength = http.NoBody, 0
		if !c.HTTP2 {
			out.Body = emptyBody(out.Method)
		}
	}
	return out
}

// upstreamFailed answers a request that got no upstream response headers.
func (st *stream) upstreamFailed(ctx context.Context, err error) {
	st.pendingMu.Lock()
	pl := st.pendingLocal
	st.pendingMu.Unlock()
	switch {
	case pl != nil:
		st.filterLocalReply(pl)
	case errors.Is(context.Cause(st.ctx), errIdle):
		st.localReply(st.idleTimeoutCode(), []byte("stream timeout"), "stream_idle_timeout", flagStreamIdleTimeout, false)
	case st.r.Context().Err() != nil:
		st.downstreamGone()
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		st.localReply(504, []byte("upstream request timeout"), "response_timeout", flagUpstreamTimeout, true)
	case isConnectError(err):
		st.srv.log.Debug("upstream connect failure", "upstream", st.upstream, "err", err)
		reason, transport := connectFailure(err)
		st.upstreamReset(reason, transport, flagConnectFailure, nil)
	default:
		st.srv.log.Debug("upstream reset", "upstream", st.upstream, "err", err)
		st.upstreamReset("connection termination", "", flagUpstreamTerm, nil)
	}
}

// upstreamReset is the router's 503 for an upstream reset before response headers
// (Router::Filter::onUpstreamReset), also for a request its connection pool failed (overflow):
// the body names the reset reason and the transport failure reason, the details join them with
// "|", spaces turned into "_"; extra are the router's headers on the reply (nil: none).
func (st *stream) upstreamReset(reason, transport, flag string, extra *headers.Map) {
	body, details := "upstream connect error or disconnect/reset before headers. reset reason: "+reason, reason
	if transport != "" {
		body += ", transport failure reason: " + transport
		details += "|" + transport
	}
	st.localReplyWith(503, []byte(body), "upstream_reset_before_response_started{"+extprocfilter.ResponseCodeDetails(details)+"}", flag, extra, true)
}

// connectFailure names a failure to connect as Envoy does (Http::Utility::resetReasonToString and
// the connection's transport failure reason): a refused connection is "remote connection failure"
// with "delayed connect error: Connection refused", a connect timeout "connection timeout". Other
// failures (a TLS handshake) are "remote connection failure" without the OpenSSL text, which the
// double cannot reproduce.
func connectFailure(err error) (reason, transport string) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "remote connection failure", "delayed connect error: Connection refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "connection timeout", ""
	}
	return "remote connection failure", ""
}

// hashKey computes the request hash of hash_policy (Envoy's HashPolicyImpl::generateHash) for
// RING_HASH clusters and weighted_clusters with use_hash_policy (nil = no hash).
func (st *stream) hashKey(f *xdsconf.Forward) *uint64 {
	var h *uint64
	for _, p := range f.HashPolicy {
		var v string
		var ok bool
		switch {
		case p.Header != "":
			v, ok = st.req.Joined(p.Header)
		case p.SourceIP:
			v, _, _ = net.SplitHostPort(st.remote)
			ok = v != ""
		case p.Query != "":
			v, ok = xdsconf.QueryParam(st.req.Value(":path"), p.Query)
		}
		if !ok {
			continue
		}
		k := hash64(v)
		if h != nil {
			k = (*h<<1 | *h>>63) ^ k // Envoy combines hashes by rotate-and-xor
		}
		h = &k
		if p.Terminal {
			break
		}
	}
	return h
}

// headerOpsOrder is the order of request/response header operations, later ones winning: the
// weighted cluster's first (WeightedClusterEntry::finalizeRequestHeaders evaluates them before
// calling the route's, whatever most_specific_header_mutations_wins says: the route, virtual host
// and route configuration, even the least specific, override the weighted cluster), then route,
// virtual host, route configuration (RouteEntryImplBase::getHeaderParsers: the least specific
// applied last wins), or route configuration, virtual host, route with
// most_specific_header_mutations_wins.
func (st *stream) headerOpsOrder() []xdsconf.HeaderOps {
	var ops []xdsconf.HeaderOps
	if st.route != nil {
		ops = append(ops, st.route.Headers)
	}
	if st.vh != nil {
		ops = append(ops, st.vh.Headers)
	}
	if st.rcfg != nil {
		ops = append(ops, st.rcfg.Headers)
		if st.rcfg.MostSpecificWins {
			for i, j := 0, len(ops)-1; i < j; i, j = i+1, j-1 {
				ops[i], ops[j] = ops[j], ops[i]
			}
		}
	}
	if st.wc != nil {
		ops = append([]xdsconf.HeaderOps{st.wc.Headers}, ops...)
	}
	return ops
}

func (st *stream) finalizeRequestHeaders(h *headers.Map) {
	for _, o := range st.headerOpsOrder() {
		o.ApplyRequest(h)
	}
}

func (st *stream) finalizeResponseHeaders(h *headers.Map) {
	for _, o := range st.headerOpsOrder() {
		o.ApplyResponse(h)
	}
}

// localReply is a local reply sent before any response headers exist, by the router (404 NR,
// 503, 504, a direct response, a redirect: byRouter) or by the connection manager (413, stream
// idle timeout). Like Envoy's FilterManager::sendLocalReplyViaFilterChain it passes through the
// encoder filters, so ext_proc sees its response headers (and body) when its mode says so.
func (st *stream) localReply(code int, body []byte, details, flag string, byRouter bool) {
	st.localReplyWith(code, body, details, flag, nil, byRouter)
}

func (st *stream) localReplyWith(code int, body []byte, details, flag string, extra *headers.Map, byRouter bool) {
	if flag != "" {
		st.flags = append(st.flags, flag)
	}
	st.details = details
	if st.r.Method == http.MethodHead {
		body = nil // Utility::prepareLocalReply: no body in a reply to HEAD
	}
	h := st.localHeaders(code, body, extra, byRouter)
	st.encode(h, bytes.NewReader(body), len(body) == 0, st.ctx)
}

// localHeaders prepares a local reply's headers as Envoy's Utility::prepareLocalReply does:
//   - the route's response header operations first: FilterManager::sendLocalReply applies the
//     route entry's finalizeResponseHeaders to every local reply (envoy#13204), so ext_proc's
//     immediate responses and failures carry them too; a direct response or redirect route has no
//     route entry, and only the router's own reply applies its headers (byRouter);
//   - then the replying filter's headers (modify_headers; a name it sets replaces the route's);
//   - then, for a body, content-length and a text/plain content-type unless one is set; a reply
//     without body (a reply to HEAD has none) has neither (writeHeaders adds the codec's
//     content-length: 0 on the wire, except to HEAD).
func (st *stream) localHeaders(code int, body []byte, modify *headers.Map, byRouter bool) *headers.Map {
	h := &headers.Map{}
	h.Add(":status", strconv.Itoa(code))
	if st.route != nil && (byRouter || st.route.Forward != nil) {
		st.finalizeResponseHeaders(h)
	}
	if modify != nil {
		for _, e := range modify.All() {
			h.Del(e.Key)
		}
		for _, e := range modify.All() {
			h.Add(e.Key, e.Value)
		}
	}
	if len(body) > 0 {
		h.Set("content-length", strconv.Itoa(len(body)))
		if !h.Has("content-type") {
			h.Add("content-type", "text/plain")
		}
	} else {
		h.Del("content-length")
		h.Del("content-type")
	}
	return h
}

// filterLocalReply sends a local reply made by the ext_proc filter (immediate response, failure)
// or by the connection manager once the upstream's response headers exist (response body over
// the buffer limit): it does not go back through ext_proc (processing is complete, or Envoy's
// sendDirectLocalReply bypasses the filters). Once response headers are downstream, Envoy resets
// the stream instead.
func (st *stream) filterLocalReply(lr *extprocfilter.LocalReply) {
	st.details = lr.Details
	if st.headersSent {
		st.reset("")
		return
	}
	body := lr.Body
	if st.r.Method == http.MethodHead {
		body = nil // Utility::prepareLocalReply: no body in a reply to HEAD
	}
	h := st.localHeaders(lr.Status, body, lr.Headers, false)
	if st.resp == nil {
		// No response headers entered the encoder path yet: Envoy sends this reply through the
		// encoder filters (sendLocalReplyViaFilterChain), the stateful session and CORS filters
		// included.
		st.sessionEncode(h)
		st.corsEncode(h)
	}
	st.writeHeaders(h, len(body) == 0)
	st.write(body)
}

// encode runs the encoder path, the HCM's filters in reverse order: ext_proc's response
// processing and the stateful session filter (on the side of ext_proc where the chain places it),
// then the downstream write.
func (st *stream) encode(h *headers.Map, body io.Reader, noBody bool, ctx context.Context) {
	st.resp = h
	if st.sessionEncodes(false) {
		st.sessionEncode(h)
	}
	asBuffered := false // the whole body came before ext_proc's reply to the headers
	if st.ep != nil {
		var res extprocfilter.Result
		if noBody || !st.ep.HeaderSent(extprocfilter.Response) {
			res = st.ep.ResponseHeaders(h, noBody)
		} else {
			var over bool
			if res, body, asBuffered, over = st.responseHeadersHoldingBody(h, body); over {
				st.filterLocalReply(&extprocfilter.LocalReply{Status: 500, Body: []byte("Internal Server Error"), Details: "response_payload_too_large"})
				return
			}
		}
		if res.Local != nil {
			st.filterLocalReply(res.Local)
			return
		}
		if res.Replaced {
			body, noBody = bytes.NewReader(res.Body), len(res.Body) == 0
		}
	}
	mode := extprocv3.ProcessingMode_NONE
	if st.ep != nil {
		mode = st.ep.BodyMode(extprocfilter.Response)
	}
	switch {
	case noBody || mode == extprocv3.ProcessingMode_NONE:
		st.encodeTail(h, noBody)
		if !noBody {
			st.copyBody(body, ctx)
		}
	case mode == extprocv3.ProcessingMode_BUFFERED || asBuffered: // NONE (CONTINUE_AND_REPLACE included) is above
		data, err := readLimited(body, st.lis.BufferLimit)
		if errors.Is(err, errTooLarge) {
			// Envoy: a buffered response over the buffer limit is a 500 "Internal Server Error"
			// (ActiveStreamEncoderFilter::responseDataTooLarge), sent directly to the codec since
			// the upstream's response headers exist.
			st.filterLocalReply(&extprocfilter.LocalReply{Status: 500, Body: []byte("Internal Server Error"), Details: "response_payload_too_large"})
			return
		}
		if err != nil {
			st.upstreamReadFailed(ctx, err)
			return
		}
		data, res := st.ep.BufferedBody(extprocfilter.Response, h, data)
		if res.Local != nil {
			st.filterLocalReply(res.Local)
			return
		}
		st.encodeTail(h, false)
		st.write(data)
	case mode == extprocv3.ProcessingMode_BUFFERED_PARTIAL:
		// Envoy holds the response headers (when ext_proc got them) until the reply to the piece
		// it sends at the end of the body or its buffer limit; a local reply meanwhile replaces
		// the response (sendDirectLocalReply), and the rest of the body passes unprocessed.
		held := st.ep.Held(extprocfilter.Response)
		if !held {
			st.encodeTail(h, false)
		}
		next := chunks(body)
		piece, eos, res, err := st.ep.PartialBody(extprocfilter.Response, h, st.lis.BufferLimit, next)
		switch {
		case err != nil:
			st.upstreamReadFailed(ctx, err)
			return
		case res.Local != nil:
			st.filterLocalReply(res.Local)
			return
		}
		if held {
			st.encodeTail(h, false)
		}
		st.write(piece)
		if !eos {
			st.copyBody(body, ctx)
		}
	case mode == extprocv3.ProcessingMode_STREAMED:
		st.encodeTail(h, false)
		res, err := st.ep.StreamBody(extprocfilter.Response, chunks(body), func(b []byte) error { return st.writeFlush(b) })
		switch {
		case res.Local != nil:
			st.filterLocalReply(res.Local)
		case err != nil:
			st.upstreamReadFailed(ctx, err)
		}
	}
}

// encodeTail runs the encoders after ext_proc (a stateful session filter placed before it in the
// chain, then the CORS filter, first in the chain) on the response headers and sends them
// downstream.
func (st *stream) encodeTail(h *headers.Map, end bool) {
	if st.sessionEncodes(true) {
		st.sessionEncode(h)
	}
	st.corsEncode(h)
	st.writeHeaders(h, end)
}

// writeHeaders sends the response headers downstream (HTTP/1.1). Like Envoy, the server header is
// overwritten with server_name unless server_header_transformation says otherwise. end says the
// response has no body: Envoy's HTTP/1 codec then writes content-length: 0 when the headers have
// none (on the wire only), unless it answers a HEAD request (encodeHeadersBase).
func (st *stream) writeHeaders(h *headers.Map, end bool) {
	if st.headersSent {
		return
	}
	hcm := st.lis.HCM
	switch {
	case hcm.ServerHeaderPassThrough:
	case hcm.ServerHeaderAppend:
		if !h.Has("server") {
			h.Add("server", hcm.ServerName)
		}
	default:
		h.Set("server", hcm.ServerName)
	}
	if hcm.AlwaysSetRequestIDInReply && st.req.Has("x-request-id") {
		h.Set("x-request-id", st.req.Value("x-request-id"))
	}
	st.resp = h
	code, _ := strconv.Atoi(h.Value(":status"))
	st.code = code
	wh := st.w.Header()
	for _, e := range h.All() {
		if strings.HasPrefix(e.Key, ":") {
			continue
		}
		wh.Add(e.Key, e.Value)
	}
	if end && !h.Has("content-length") && code >= 200 && code != 204 && code != 304 && st.r.Method != http.MethodHead {
		wh.Set("Content-Length", "0")
	}
	if st.srv.drained.Load() && st.r.ProtoMajor == 1 {
		// a draining connection manager asks the client to close (Envoy's drainClose); the
		// connection closes after this response
		wh.Set("Connection", "close")
	}
	st.w.WriteHeader(code)
	st.srv.stats.DownstreamResponse(st.lis.HCM.StatPrefix, code)
	// Envoy's codec writes encoded headers to the connection at once, without waiting for body
	// bytes: a client of a stream whose first event comes later sees the headers now.
	_ = st.rc.Flush() // a failed flush shows again on the next write
	st.headersSent = true
}

func (st *stream) write(b []byte) {
	if err := st.writeFlush(b); err != nil {
		st.downstreamGone()
	}
}

// writeFlush writes and flushes at once: streamed bodies (SSE) reach the client chunk by chunk.
func (st *stream) writeFlush(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := st.w.Write(b)
	st.bytesOut += int64(n)
	if err == nil {
		err = st.rc.Flush()
	}
	st.touch()
	return err
}

// copyBody streams an unprocessed body downstream, flushing after every read.
func (st *stream) copyBody(body io.Reader, ctx context.Context) {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if werr := st.writeFlush(buf[:n]); werr != nil {
				st.downstreamGone()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			st.upstreamReadFailed(ctx, err)
			return
		}
	}
}

// upstreamReadFailed handles a response body that broke after the headers went downstream.
func (st *stream) upstreamReadFailed(ctx context.Context, err error) {
	switch {
	case st.r.Context().Err() != nil:
		st.downstreamGone()
	case errors.Is(context.Cause(st.ctx), errIdle):
		st.resetOrReply(st.idleTimeoutCode(), "stream timeout", "stream_idle_timeout", flagStreamIdleTimeout)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		st.resetOrReply(504, "upstream request timeout", "response_timeout", flagUpstreamTimeout)
	default:
		st.srv.log.Debug("upstream body", "err", err)
		st.details = "upstream_reset_after_response_started{connection_termination}"
		st.reset(flagUpstreamTerm)
	}
}

func (st *stream) resetOrReply(code int, body, details, flag string) {
	st.details = details
	if st.headersSent {
		st.reset(flag)
		return
	}
	st.flags = append(st.flags, flag)
	st.filterLocalReply(&extprocfilter.LocalReply{Status: code, Body: []byte(body), Details: details})
}

// reset resets the downstream stream (HTTP/1.1: the connection is closed without completing the
// response), as Envoy does when an error comes after the response started.
func (st *stream) reset(flag string) {
	if flag != "" {
		st.flags = append(st.flags, flag)
	}
	panic(http.ErrAbortHandler)
}

func (st *stream) downstreamGone() {
	st.flags = append(st.flags, flagDownstreamTerm)
	st.details = "downstream_remote_disconnect"
	panic(http.ErrAbortHandler)
}

// idleTimeoutCode is Envoy's Utility::maybeRequestTimeoutCode: 504 once the whole request was
// received, 408 while it was still arriving.
func (st *stream) idleTimeoutCode() int {
	if st.body == nil || st.body.complete() {
		return 504
	}
	return 408
}

// armIdle (re)arms the stream idle timer with d (0 disables it).
func (st *stream) armIdle(d time.Duration) {
	if st.idle != nil {
		st.idle.Stop()
		st.idle = nil
	}
	st.idleD = d
	if d > 0 {
		st.idle = time.AfterFunc(d, func() { st.cancel(errIdle) })
	}
}

// touch records activity on the stream: the idle timer starts again.
func (st *stream) touch() {
	if st.idle != nil {
		st.idle.Reset(st.idleD)
	}
}

// finish ends the stream: ext_proc stream closed, one access log line per logger.
func (st *stream) finish() {
	rec := recover()
	st.cancel(nil)
	if st.reqPipe != nil {
		st.reqPipe.CloseWithError(errStreamEnded) // unblocks the STREAMED request body writer
	}
	if st.body != nil {
		st.body.release(st.rc)
	}
	if st.idle != nil {
		st.idle.Stop()
	}
	if st.ep != nil {
		st.ep.Close()
	}
	if rec != nil && rec != http.ErrAbortHandler {
		st.srv.log.Error("envoydouble: panic while serving", "panic", rec)
	}
	info := &accesslog.Info{Start: st.start, Duration: time.Since(st.start), Request: st.req, Code: st.code,
		Flags: st.flags, Details: st.details, UpstreamHost: st.upstream,
		Metadata: st.md.Snapshot(), Protocol: st.r.Proto, BytesReceived: st.bytesIn.Load(), BytesSent: st.bytesOut,
		DownstreamRemote: st.remote}
	if st.headersSent {
		info.Response = st.resp
	}
	if st.route != nil {
		info.RouteName, info.RouteMetadata = st.route.Name, st.route.Metadata
	}
	if c := st.upstreamCluster(); c != nil {
		info.UpstreamCluster, info.ClusterMetadata = c.Name, c.Metadata
	}
	for _, a := range st.lis.HCM.AccessLogs {
		st.srv.writeAccessLog(a, a.Format.Render(info))
	}
	if rec != nil {
		panic(rec)
	}
}

var errTooLarge = errors.New("body over the buffer limit")

// readLimited reads a whole body, failing with errTooLarge past limit bytes.
func readLimited(r io.Reader, limit uint32) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > int(limit) {
		return nil, errTooLarge
	}
	return data, nil
}

// chunks turns a reader into the data callbacks of STREAMED mode: one chunk per read, the last
// one with end_of_stream (empty when the end comes in a read of its own).
func chunks(r io.Reader) func() ([]byte, bool, error) {
	done := false
	return func() ([]byte, bool, error) {
		if done {
			return nil, true, nil
		}
		buf := make([]byte, 32<<10)
		n, err := r.Read(buf)
		switch {
		case errors.Is(err, io.EOF):
			done = true
			return buf[:n], true, nil
		case err != nil:
			return nil, false, err
		}
		return buf[:n], false, nil
	}
}

// downstreamBody is the request body. Reads are serialized, and release ends them when the stream
// ends: whatever the proxy did not read is drained (briefly) so the connection can serve the next
// request, or the connection is closed after the response, as Envoy's HTTP/1 codec does when a
// response completes before its request.
type downstreamBody struct {
	mu     sync.Mutex
	r      io.Reader
	n      *atomic.Int64
	touch  func()
	eof    bool
	empty  bool // the request has no body
	closed bool
}

var errStreamEnded = errors.New("stream ended")

func (b *downstreamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errStreamEnded
	}
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	if n > 0 {
		b.touch()
	}
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// complete reports whether the whole request body was received.
func (b *downstreamBody) complete() bool {
	if !b.mu.TryLock() {
		return false // a read is in flight
	}
	defer b.mu.Unlock()
	return b.eof || b.empty
}

// release stops every reader of the body and drains what is left. It works around net/http's
// full-duplex mode, where a body first read to its end by the server after the handler returns
// starts a background read that races with the next request.
func (b *downstreamBody) release(rc *http.ResponseController) {
	if !b.mu.TryLock() {
		_ = rc.SetReadDeadline(time.Now()) // a read in flight elsewhere returns now
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(b.r, 256<<10))
}

// countingReader counts bytes read and records activity for the idle timer.
type countingReader struct {
	r     io.Reader
	n     *atomic.Int64
	touch func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n != nil {
		c.n.Add(int64(n))
	}
	if n > 0 && c.touch != nil {
		c.touch()
	}
	return n, err
}
