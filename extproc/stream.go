package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/extproc/authz"
	"github.com/mcpgate/mcpgate/extproc/bind"
	"github.com/mcpgate/mcpgate/extproc/jwt"
	"github.com/mcpgate/mcpgate/extproc/mcp"
	"github.com/mcpgate/mcpgate/extproc/mux"
	"github.com/mcpgate/mcpgate/extproc/telemetry"
)

// routeInfo is what the route tells ext_proc about a request: the gRPC initial metadata of its
// ExtProcPerRoute (contract.Metadata*, see docs/design.md).
type routeInfo struct {
	gateway, route, policy, backend, target string
	// targets, on a route to a multiplexed backend (the mux), are its targets' names joined by
	// commas (contract.MetadataTargets): the items its requests name are prefixed with their
	// target (itemTarget). target is then "".
	targets string
	// mux, on a route to a multiplexed backend under prefixMode Never, is its contract.Mux as
	// JSON (contract.MetadataMux): its tool and prompt names are bare, and ext_proc resolves a
	// call's target (Config.MuxResolver) before it judges it (stream.resolveTarget).
	mux string
	// bridge, on a route that bridges a Streamable HTTP client to a single target of another
	// transport through the mux, is that target's transport (contract.MetadataBridge): the
	// request goes to the mux as on a multiplexed route (viaMux), its names are the target's own
	// (target, not targets).
	bridge string
	// mcp: the route leads to an MCP target. The transport the target declares is not used: the
	// server may serve both, and each request says which one it speaks (mcp.ClassifyRequest).
	mcp bool
	// passthrough: the route's backend auth is passthrough (contract.MetadataPassthrough): a
	// validated token stays in the request, for the backend to read the caller's identity.
	passthrough bool
}

// scope is the route's scope in the session table: its backend and target.
func (ri routeInfo) scope() string { return ri.backend + "/" + ri.target }

// routeKey is the context key of the routeInfo that ServerOptions' tap (tapRoute) reads from a
// stream's metadata.
type routeKey struct{}

// tapRoute reads the stream's routeInfo from its metadata as gRPC received it, before the
// handler's context is made: once, where reading the incoming metadata copies a value per field (routeOf).
func tapRoute(ctx context.Context, info *tap.Info) (context.Context, error) {
	ri := readRouteInfo(func(k string) string {
		if v := info.Header[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	})
	return context.WithValue(ctx, routeKey{}, &ri), nil
}

// routeOf returns the routeInfo of a stream's context: tapRoute's, or read from the incoming
// metadata on a server without the tap (the service registered on a server of its caller's).
func routeOf(ctx context.Context) routeInfo {
	if ri, ok := ctx.Value(routeKey{}).(*routeInfo); ok {
		return *ri
	}
	return readRouteInfo(func(k string) string {
		if v := grpcmd.ValueFromIncomingContext(ctx, k); len(v) > 0 {
			return v[0]
		}
		return ""
	})
}

// readRouteInfo reads the routeInfo of the metadata values get returns ("" when absent).
func readRouteInfo(get func(key string) string) routeInfo {
	return routeInfo{
		gateway: get(contract.MetadataGateway),
		route:   get(contract.MetadataRoute),
		policy:  get(contract.MetadataPolicy),
		mcp:     get(contract.MetadataMCP) != "",
		backend: get(contract.MetadataBackend),
		target:  get(contract.MetadataTarget),
		targets: get(contract.MetadataTargets),
		mux:     get(contract.MetadataMux),
		bridge:  get(contract.MetadataBridge),
		// passthrough: backend auth passthrough (contract.MetadataPassthrough)
		passthrough: get(contract.MetadataPassthrough) == contract.PassthroughOn,
	}
}

// viaMux reports whether the route's requests go to the mux: a multiplexed backend's (targets)
// or a bridged target's (bridge).
func (ri *routeInfo) viaMux() bool { return ri.targets != "" || ri.bridge != "" }

// bare reports whether the route names the items it bare, without a target prefix: tools and
// prompts of a multiplexed backend under prefixMode Never (resource URIs keep theirs).
func (ri *routeInfo) bare(it mcp.Item) bool {
	return ri.mux != "" && ri.targets != "" && (it == mcp.Tool || it == mcp.Prompt)
}

// itemTarget returns the target serving the item it named name and the target's own name for
// it: on a multiplexed route the target its prefix names ("" for a prefix that names none) and
// the name without the prefix (mcp.SplitTarget), elsewhere the route's target and the name. A
// bare name (prefixMode Never) has target "" here.
func (ri *routeInfo) itemTarget(it mcp.Item, name string) (target, own string) {
	if ri.targets == "" {
		return ri.target, name
	}
	if ri.bare(it) {
		// Known once resolved (a call: stream.resolveTarget) or from the item (a list: itemFilter).
		return "", name
	}
	target, own, _ = mcp.SplitTarget(it, name, ri.targets)
	return target, own
}

// isTarget reports whether t is one of the targets of the route's multiplexed backend.
func (ri *routeInfo) isTarget(t string) bool {
	for targets, more := ri.targets, true; more && t != ""; {
		var name string
		name, targets, more = strings.Cut(targets, ",")
		if name == t {
			return true
		}
	}
	return false
}

// muxMetadata adds to md, on a route to the mux (viaMux), the fields that its cluster, the
// bootstrap's mux, holds none of for the access log (contract.Field.Fallback): the backend, and
// the target: on a multiplexed backend's front hop (targets) target, the target of the request's
// item ("" for none), as the audit line has them; on a bridged target's, that target.
func (ri *routeInfo) muxMetadata(md *metadata, target string) {
	if !ri.viaMux() {
		return
	}
	if ri.bridge != "" {
		target = ri.target
	}
	md.str(contract.FieldBackend, ri.backend)
	md.str(contract.FieldTarget, target)
}

// Process implements the ExternalProcessor service: one call per HTTP request, one reply per
// message.
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) (err error) {
	ctx := ps.Context()
	st := s.newStream(ctx)
	route := st.ri.route
	// Deferred before st.end, so that it also catches a panic in st.end (which recycles st).
	defer func() {
		// A bug must fail this request (Envoy answers 500), not the process and every request.
		if r := recover(); r != nil {
			s.log.Error("ext_proc stream panicked", "route", route, "panic", r, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "ext_proc internal error")
		}
	}()
	defer st.end()
	for {
		req, err := ps.Recv()
		if err != nil {
			if normalEnd(ctx, err) {
				return nil
			}
			return err
		}
		resp, err := st.handle(req)
		if err != nil {
			if normalEnd(ctx, err) {
				return nil
			}
			s.log.Warn("ext_proc stream refused a message", "route", st.ri.route, "error", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if err := ps.Send(resp); err != nil {
			if normalEnd(ctx, err) {
				return nil
			}
			return err
		}
	}
}

// normalEnd reports whether a stream error is how Envoy ends streams: a half-close (EOF) or a
// reset (Canceled), or the stream's context ending.
func normalEnd(ctx context.Context, err error) bool {
	return errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil
}

// stream is the state of one ext_proc stream, that is of one HTTP request and its response.
type stream struct {
	s   *Server
	ctx context.Context
	ri  routeInfo
	set *policySet
	pol *policy

	// From the request headers. in holds what the rules see (method, path, host, source, claims).
	// kind is what the request is on an MCP route (decided once, here); session the MCP session
	// it belongs to, as soon as it is known.
	headers headerList
	kind    mcp.RequestKind
	session string
	// sealed is the session id as the client sent it, once opened (package bind).
	sealed string
	// scope is the route's scope in the session table (routeInfo.scope), made on first use.
	scope string
	auth  jwt.Result
	authn string
	in    authz.Input
	// trafficDeferred: the traffic rules read mcp.*, so they run on the body's messages.
	trafficDeferred bool
	// noRequestBody: Envoy's protocol_config says the route's request body mode is NONE, so no
	// request body will reach ext_proc.
	noRequestBody bool
	// trafficRule is the source of the traffic rule that allowed the request ("" by default).
	trafficRule string
	// reqHeadersSeen: the request headers came (the first message Envoy sends); answered: an
	// immediate response answered the request (the last message Envoy gets).
	reqHeadersSeen, answered bool
	reqBodySeen              bool
	// headersMD is the request headers' metadata, sent with the request body's reply when a body
	// follows (one metadata struct per request instead of two).
	headersMD metadata
	rep       replies
	// mdFields is the storage of the request's metadata; msgIn the input of the rules on the
	// request's message at hand. Both are the stream's so as not to be allocated per request.
	mdFields [contractFields]mdField
	msgIn    authz.Input
	// msgs is the storage of a body's message (mcp.ParseInto), the request's then the response's;
	// reqHeaders and respHeaders of the headers (readHeaders), answerFields of a response body's
	// reply's metadata (answerMetadata).
	msgs         [1]mcp.Message
	reqHeaders   [16]header
	respHeaders  [12]header
	answerFields [4]mdField
	// firstEx is the storage of the stream's first exchange (newExchange), once firstExUsed.
	firstEx     exchange
	firstExUsed bool

	// MCP exchanges awaiting their answer: pending by IDKey (answers in this stream's response),
	// waiting (notifications, and requests whose answer cannot be correlated) until the response
	// headers, posted (legacy SSE: in the session table, answered on the GET stream).
	pending pendingSet
	waiting []*exchange
	posted  []postedExchange
	// filter is the stream's list filter (see itemFilter).
	filter *itemFilter

	// From the response.
	status int
	sse    *mcp.SSEStream
	// eventSeen: the response stream's first event was seen (an endpoint event of a GET stream
	// names a legacy SSE session).
	eventSeen bool
	// muxCaller is the caller named to the mux on a route to it (contract.HeaderMuxCaller).
	muxCaller    string
	respBodySeen bool
	// replaceUnreadable: a response body that cannot be read is replaced by errors, not passed
	// (an answer awaited here must be rewritten, or the body is encoded under tool rules).
	replaceUnreadable bool
	// clearRest: the first piece of a response body was replaced before its end, so the pieces
	// after it are cleared.
	clearRest bool
	// muxTarget is the target a call's bare name resolved to (prefixMode Never), which the
	// request body's reply tells the mux (contract.HeaderMuxTarget).
	muxTarget string
	// partial: the response body was asked for in BUFFERED_PARTIAL mode (it has no
	// content-length); a first piece without end_of_stream stopped at Envoy's buffer limit, and the
	// rest passes without ext_proc.
	partial bool
}

func (s *Server) newStream(ctx context.Context) *stream {
	st, _ := s.streams.Get().(*stream)
	if st == nil {
		st = new(stream)
	}
	st.s, st.ctx, st.ri, st.authn = s, ctx, routeOf(ctx), "none"
	st.set = s.policies.acquire()
	if st.ri.policy != "" {
		st.pol = st.set.byName[st.ri.policy]
	}
	s.tel.StreamStarted()
	return st
}

// end finishes the exchanges still awaiting an answer in this stream, releases the policies and
// recycles st for a later stream: st must not be used after.
func (st *stream) end() {
	// Even when recording an exchange fails: the stream ends, its policies are released and its
	// memory recycled.
	s := st.s
	defer s.recycle(st)
	defer s.tel.StreamEnded()
	defer s.policies.release(st.set)
	// A legacy SSE POST's stream that ends before its response headers (the client gone, the
	// stream reset, an error): its requests' records wait no longer for its status, which stays 0.
	for _, p := range st.posted {
		s.postDone(p.ex, 0)
	}
	if st.pending.len() == 0 && len(st.waiting) == 0 {
		return
	}
	now := time.Now()
	for _, ex := range st.pending.all() {
		st.s.finish(ex, telemetry.OutcomeNoAnswer, now)
	}
	for _, ex := range st.waiting {
		st.s.finish(ex, outcomeWithoutAnswer(ex), now)
	}
}

// maxRecycledRaw bounds the metadata encoding storage a recycled stream keeps.
const maxRecycledRaw = 4 << 10

// recycle clears st and keeps it for a later stream (newStream). Nothing of st's request stays:
// only the storage of its metadata encoding, whose bytes the next reply overwrites. What outlives
// a stream (its exchanges, its tools/list filter and the headers the filter reads) is allocated
// apart from it.
func (s *Server) recycle(st *stream) {
	raw := st.rep.raw[:0]
	*st = stream{}
	if cap(raw) <= maxRecycledRaw {
		st.rep.raw = raw
	}
	s.streams.Put(st)
}

// handle answers one message. The reply always matches the message's kind.
func (st *stream) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if st.answered {
		// Envoy sends nothing after an immediate response (it has answered the request).
		return nil, errors.New("a message after the immediate response that answered the request")
	}
	resp, err := st.dispatch(req)
	st.answered = resp.GetImmediateResponse() != nil
	return resp, err
}

// dispatch answers one message of the stream.
func (st *stream) dispatch(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if pc := req.GetProtocolConfig(); pc != nil {
		// On the stream's first message only.
		st.noRequestBody = pc.GetRequestBodyMode() == extprocfilterv3.ProcessingMode_NONE
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		// A stream that ends while its request waits for the policy gets no reply and records
		// nothing: Envoy answered the request already, or the client went away.
		if err := st.awaitPolicy(); err != nil {
			return nil, err
		}
		st.reqHeadersSeen = true
		return st.requestHeaders(r.RequestHeaders, req.GetAttributes()), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		if !st.reqHeadersSeen {
			return st.headersNotSent(), nil
		}
		return st.requestBody(r.RequestBody), nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if !st.reqHeadersSeen {
			return st.headersNotSent(), nil
		}
		return trailersReply(true), nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return st.responseHeaders(r.ResponseHeaders), nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return st.responseBody(r.ResponseBody), nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return trailersReply(false), nil
	default:
		return nil, fmt.Errorf("ProcessingRequest without a request, response or trailers message (%T)", r)
	}
}

// headersNotSent refuses a request whose body or trailers came without its headers: it was neither
// authenticated nor judged, its route's request header mode not being SEND (mcpgate never
// configures that). Fail closed. (A response without request headers is a local reply of a filter
// before ext_proc, such as Envoy's CORS filter answering a preflight, passing through the encoder
// filters: it passes.)
func (st *stream) headersNotSent() *extprocv3.ProcessingResponse {
	return st.refuse(configError("mcpgate_headers_not_sent",
		fmt.Sprintf("route %s sends ext_proc no request headers, so its requests cannot be authenticated; it needs request header mode SEND", st.ri.route)), "", metadata{}, nil)
}

// refuse answers the request with a, writes its audit record and returns the reply.
func (st *stream) refuse(a answer, rule string, md metadata, rec *telemetry.Record) *extprocv3.ProcessingResponse {
	if rec == nil {
		r := st.newRecord(time.Now())
		rec = &r
	}
	md.str(contract.FieldMethod, rec.Method)
	md.str(contract.FieldTool, rec.Tool)
	if rec.ID != nil {
		md.str(contract.FieldJSONRPCID, string(rec.ID))
	}
	st.ri.muxMetadata(&md, rec.Target)
	rec.Decision, rec.Rule = telemetry.DecisionDeny, rule
	rec.HTTPStatus, rec.Outcome = a.status, telemetry.OutcomeRefused
	st.s.tel.Finish(rec, time.Now())
	md.str(contract.FieldDecision, telemetry.DecisionDeny)
	md.replace(contract.FieldRule, rule)
	md.str(contract.FieldOutcome, telemetry.OutcomeRefused)
	return immediateReply(a, md)
}

// newRecord starts an audit record of this request.
func (st *stream) newRecord(now time.Time) telemetry.Record {
	r := telemetry.Record{
		Time: now, Gateway: st.ri.gateway, Route: st.ri.route, Backend: st.ri.backend, Target: st.ri.target,
		Session: st.session, Subject: st.auth.Subject, Authn: st.authn,
	}
	if st.pol != nil && len(st.pol.claims) > 0 {
		// The audit line writes the claims the policy's rules read.
		r.Claims, r.ClaimNames = st.auth.Claims, st.pol.claims
	}
	return r
}

// messageRecord starts an audit record of the request's message m.
func (st *stream) messageRecord(m *mcp.Message, now time.Time) telemetry.Record {
	rec := st.newRecord(now)
	rec.Method, rec.ID = m.Method, m.ID
	return rec
}

// evaluate applies rules and logs the rules that failed at run time (they fail closed:
// authz.RuleSet.Evaluate): the rule and its error without the request's values the error may
// quote (arguments, claims, headers: the log is not redacted as the audit line is).
func (st *stream) evaluate(rules *authz.RuleSet, in *authz.Input) authz.Decision {
	d := rules.Evaluate(st.ctx, in)
	for _, err := range d.Errors {
		rule, msg := "", "(not shown)"
		if re, ok := errors.AsType[*authz.RuleError](err); ok {
			rule, msg = re.Rule, re.ValueFree()
		}
		st.s.log.Warn("authorization rule failed at run time; it fails closed (a DENY rule denies, REQUIRE and ALLOW rules do not hold)",
			"policy", st.pol.name, "route", st.ri.route, "rule", rule, "error", msg)
	}
	return d
}

func (st *stream) requestHeaders(h *extprocv3.HttpHeaders, attrs map[string]*structpb.Struct) *extprocv3.ProcessingResponse {
	st.headers = readHeaders(st.reqHeaders[:0], h.GetHeaders())
	st.in = authz.Input{
		Method: st.headers.first(":method"), Path: st.headers.first(":path"), Host: st.headers.first(":authority"),
		// The stream's: a list filter, which may outlive it, reads a copy (itemFilter).
		Headers: &st.headers, SourceAddress: sourceAddress(attrs), Peer: peerCertificate(attrs), Target: st.ri.target,
	}
	if st.in.Host == "" {
		st.in.Host = st.headers.first("host")
	}
	if st.pol != nil && st.pol.oauth != nil && st.in.Method == http.MethodGet {
		// MCP authorization: the metadata that names the authorization server is public, so it
		// is answered before the session, authentication and rules.
		if suffix, ok := wellKnownSuffix(st.in.Path); ok {
			if a, ok := st.serveResourceMetadata(suffix); ok {
				return st.metadataAnswer(a)
			}
		}
	}
	if st.ri.mcp {
		// Before the session is known, so that neither the audit nor the access log ever records
		// the bytes (CR, LF, NUL) a client chose: the stateful session envelope decodes a
		// client's base64 into the header unchecked. One value only: the session opened is the
		// first, and a server reading another (or all) would serve a session never checked.
		sessionID, n := st.headers.only(mcp.SessionHeader)
		switch {
		case n > 1:
			return st.refuse(jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
				"Mcp-Session-Id must be sent once", "mcpgate_ambiguous_session"), "", metadata{}, nil)
		case n == 1 && !mcp.ValidSessionID(sessionID):
			return st.refuse(jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
				"Mcp-Session-Id must be one or more visible ASCII characters (0x21 to 0x7E)", "mcpgate_invalid_session_id"), "", metadata{}, nil)
		}
		// A request with a body, whatever its method, is judged as a POST: a legacy SSE server
		// may run it as a message of its query's session (the Python SDK's handler reads any
		// method), so that session is opened as a POST's.
		if mcp.JudgedAsPost(st.in.Method, !h.GetEndOfStream()) {
			if problem := mcp.AmbiguousSession(st.in.Path, sessionID); problem != "" {
				// Before the session is known, as above: the request names two.
				return st.refuse(jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest, problem, "mcpgate_ambiguous_session"), "", metadata{}, nil)
			}
		}
		st.kind, st.session = mcp.ClassifyRequest(st.in.Method, st.in.Path, sessionID, !h.GetEndOfStream())
		if st.noRequestBody {
			st.s.warnOnce("body_not_sent", st.ri.route, "MCP route's request body mode is NONE: ext_proc cannot read its requests, "+
				"so those that rules judge by their messages are refused; the route needs request body mode BUFFERED")
		}
	}
	// bodyFollows: a request body will reach ext_proc.
	bodyFollows := st.ri.mcp && !h.GetEndOfStream() && !st.noRequestBody
	// The route's and cluster's fields (gateway, route, backend, target) are in Envoy's route
	// and cluster metadata, where the access log reads them (contract.FromRoute, FromCluster):
	// only what varies per request goes back, and what a multiplexed backend's cluster lacks
	// (muxMetadata). (Envoy sends the request headers once per stream: the stream's storage is
	// free.)
	md := metadata{fields: st.mdFields[:0]}
	st.ri.muxMetadata(&md, "")
	// The session the client names is its own only once opened for its caller (below): until
	// then the audit and the access log name none.
	sealed := st.session
	st.session = ""

	if st.ri.policy != "" && st.pol == nil {
		md.str(contract.FieldAuthn, st.authn)
		if st.set.rejected[st.ri.policy] {
			return st.refuse(configError("mcpgate_rejected_policy",
				fmt.Sprintf("route %s names policy %q, which ext_proc rejected (its log says why)", st.ri.route, st.ri.policy)),
				"", md, nil)
		}
		return st.refuse(configError("mcpgate_unknown_policy",
			fmt.Sprintf("route %s names policy %q, which ext_proc has not received from the control plane", st.ri.route, st.ri.policy)),
			"", md, nil)
	}

	mut, refusal := st.authenticate()
	md.str(contract.FieldAuthn, st.authn)
	if refusal != nil {
		return st.refuse(*refusal, "jwt", md, nil)
	}
	if sealed != "" {
		id, ok := st.s.bind.Open(sealed, st.caller())
		if !ok {
			return st.refuse(sessionNotFound(), "session", md, nil)
		}
		st.session, st.sealed = id, sealed
		mut = st.unseal(mut, id)
	}
	md.str(contract.FieldSession, st.session)
	if st.ri.mcp && st.headers.first("accept-encoding") != "" {
		// ext_proc reads MCP answers (to audit, filter and rewrite them): ask for them plain.
		mut = st.rep.removeHeaders(mut, "accept-encoding")
	}
	if st.ri.viaMux() {
		// The mux serves only requests with the secret, so that only what passed here reaches
		// the targets; a client's own value never survives (docs/design.md, Multiplexing).
		if st.s.cfg.MuxSecret != "" {
			mut = st.rep.setHeaders(mut, contract.HeaderMuxAuth, st.s.cfg.MuxSecret)
		} else {
			mut = st.rep.removeHeaders(mut, contract.HeaderMuxAuth)
		}
		// Only ext_proc names a call's target to the mux (prefixMode Never, the body's reply).
		mut = st.rep.removeHeaders(mut, contract.HeaderMuxTarget)
		// The caller the mux bounds the sessions of (mux.Options.MaxSSESessionsPerCaller),
		// overwriting a client's value.
		st.muxCaller = st.s.bind.CallerID(st.caller(), callerSource(st.in.SourceAddress))
		mut = st.rep.setHeaders(mut, contract.HeaderMuxCaller, st.muxCaller)
	} else if _, n := st.headers.only(contract.HeaderMuxCaller); n > 0 {
		// Only ext_proc names a caller; no other route's upstream reads it.
		mut = st.rep.removeHeaders(mut, contract.HeaderMuxCaller)
	}
	md.str(contract.FieldSubject, st.auth.Subject)

	st.in.Claims = st.auth.Claims
	if st.pol != nil && st.pol.traffic != nil {
		// Rules that read mcp.* judge the body's messages, whatever the method: a server may run
		// the body of any method (ClassifyRequest). A request of any method but POST is judged
		// at its headers too: a GET or DELETE acts without a body (opens a stream, ends a
		// session), and one without END_STREAM may still bring no body message (an HTTP/2
		// request ending with trailers), which would leave it judged by no rule; MCP sends its
		// messages with POST, so a request of another method that the rules refuse without a
		// message is refused.
		st.trafficDeferred = st.pol.traffic.NeedsMCP() && bodyFollows
		if !st.trafficDeferred || st.in.Method != http.MethodPost {
			d := st.evaluate(st.pol.traffic, &st.in)
			if !d.Allowed {
				return st.refuse(rbacDenied(), d.Rule, md, nil)
			}
			st.trafficRule = d.Rule
			md.str(contract.FieldRule, d.Rule)
		}
	}
	if st.ri.mcp && !h.GetEndOfStream() && !bodyFollows && st.pol.readsMessages() &&
		st.kind != mcp.RequestGet && st.kind != mcp.RequestDelete {
		// The rules judge this request by its messages, which will not come: fail closed.
		return st.refuse(configError("mcpgate_body_not_sent",
			fmt.Sprintf("route %s enforces rules on its request bodies, which its request body mode NONE keeps from ext_proc; it needs request body mode BUFFERED", st.ri.route)),
			"", md, nil)
	}
	if st.pol != nil {
		md.str(contract.FieldDecision, telemetry.DecisionAllow)
	}
	if bodyFollows {
		st.headersMD = md
		return st.rep.headersReply(true, mut, metadata{})
	}
	return st.rep.headersReply(true, mut, md)
}

// awaitPolicy waits, when the route names a policy the stream's set lacks, for a set that has
// it: up to Config.PolicyWait, woken by each newer set, and no longer than the stream. The stream
// then holds the newest set it saw. The error is the stream's end (its context's cause).
func (st *stream) awaitPolicy() error {
	if st.pol != nil || st.ri.policy == "" || st.s.cfg.PolicyWait <= 0 || st.set.rejected[st.ri.policy] {
		return nil
	}
	st.s.log.Debug("waiting for the policy the route names", "route", st.ri.route, "policy", st.ri.policy, "bound", st.s.cfg.PolicyWait)
	timer := time.NewTimer(st.s.cfg.PolicyWait)
	defer timer.Stop()
	for {
		select {
		case <-st.set.replaced:
		case <-timer.C:
			st.s.tel.PolicyWait(telemetry.PolicyTimeout)
			return nil
		case <-st.ctx.Done():
			st.s.tel.PolicyWait(telemetry.PolicyCancelled)
			return fmt.Errorf("route %s: the stream ended while the request waited for policy %q: %w", st.ri.route, st.ri.policy, context.Cause(st.ctx))
		}
		next := st.s.policies.acquire()
		st.s.policies.release(st.set)
		st.set = next
		if st.pol = next.byName[st.ri.policy]; st.pol != nil || next.rejected[st.ri.policy] {
			st.s.tel.PolicyWait(telemetry.PolicyReceived)
			return nil
		}
		st.s.log.Debug("a policy version without the route's policy came; still waiting", "route", st.ri.route, "policy", st.ri.policy)
	}
}

// authenticate applies the policy's JWT authentication (if any) to the request headers. mut
// removes a validated token from the request; refusal is the answer when the mode refuses the
// request.
func (st *stream) authenticate() (mut *extprocv3.HeaderMutation, refusal *answer) {
	if st.pol == nil || st.pol.auth == nil {
		return nil, nil
	}
	st.auth = st.pol.auth.Authenticate(st.ctx, st.headers.first("authorization"))
	switch st.auth.Status {
	case jwt.OK:
		st.authn = "ok"
		// As Envoy's jwt_authn with forward: false: the upstream does not see the token, unless
		// the route's backend auth is passthrough (agentgateway's: the validated token is added
		// back), which forwards the caller's token to the backend.
		if !st.ri.passthrough {
			mut = st.rep.removeHeaders(nil, "authorization")
		}
	case jwt.Missing:
		st.authn = "missing"
	default:
		st.authn = "invalid: " + st.auth.Reason
	}
	ans, reject := st.pol.auth.Decide(st.auth)
	if st.auth.Status == jwt.Invalid || reject {
		reason := st.auth.Reason
		if st.auth.Status == jwt.Missing {
			reason = jwt.ReasonMissing
		}
		st.s.tel.AuthnFailure(reason)
	}
	if !reject {
		return mut, nil
	}
	a := answer{status: ans.Status, body: []byte(ans.Body), details: "mcpgate_jwt_" + st.auth.Status.String()}
	for _, hd := range ans.Headers {
		a.headers = append(a.headers, header{hd.Name, hd.Value})
	}
	if st.pol.oauth != nil {
		// MCP authorization: the challenge names the metadata that names the authorization
		// server.
		a.headers = st.withResourceMetadata(a.headers)
	}
	return nil, &a
}

// caller is who the request comes from, for its session: its verified token's issuer and
// subject, or no one.
func (st *stream) caller() bind.Caller {
	if st.auth.Status != jwt.OK {
		return bind.Caller{}
	}
	return bind.Caller{Verified: true, Issuer: st.auth.Issuer, Subject: st.auth.Subject}
}

// callerSource returns what tells a caller without a verified token apart for the mux's bound of
// sessions per caller (contract.HeaderMuxCaller), from the source address Envoy reports ("ip:port"
// or "ip"): the IP, or for an IPv6 address its /64 (a host usually has a whole /64 to pick
// addresses from, so an address each would not bound it). An address that does not parse is
// taken as it is ("" when Envoy sent none: all such callers are one).
func callerSource(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return addr
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// unseal adds to mut what gives the server its own session id back: the Mcp-Session-Id, or a
// legacy POST's session query parameter. The rules read the request as the server will.
func (st *stream) unseal(mut *extprocv3.HeaderMutation, id string) *extprocv3.HeaderMutation {
	name, value := mcp.SessionHeader, id
	if st.kind == mcp.RequestLegacyPost {
		name, value = ":path", mcp.WithSession(st.in.Path, id)
		st.in.Path = value
	}
	for i := range st.headers {
		if st.headers[i].name == name {
			st.headers[i].value = value
		}
	}
	return st.rep.setHeaders(mut, name, value)
}

// sessionNotFound refuses a request naming a session that is not its caller's (another caller's,
// or not one the gateway sealed) as a server refuses an unknown session: the client starts a
// new one (MCP Streamable HTTP: 404 to a request with an unknown session id). The code is the
// MCP SDKs' for it.
func sessionNotFound() answer {
	return jsonRPCRefusal(http.StatusNotFound, nil, mcp.CodeSessionNotFound, "Session not found", "mcpgate_session_not_found")
}

// configError is the 500 that refuses a request the gateway's configuration cannot serve safely.
func configError(details, msg string) answer {
	return answer{status: http.StatusInternalServerError, contentType: "text/plain", body: []byte("mcpgate: " + msg + "\n"), details: details}
}

func rbacDenied() answer {
	return answer{status: http.StatusForbidden, contentType: "text/plain", body: []byte("RBAC: access denied"), details: "mcpgate_rbac_access_denied"}
}

// jsonRPCRefusal is an HTTP error whose body is a JSON-RPC error with the raw id (null when nil).
func jsonRPCRefusal(httpStatus int, id json.RawMessage, code int, msg, details string) answer {
	return answer{status: httpStatus, contentType: "application/json", body: mcp.ErrorResponse(id, code, msg), details: details}
}

func (st *stream) requestBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	// strict: authorization depends on reading the body, so a body the gateway cannot read as
	// JSON-RPC is refused instead of passed. On every MCP route, whatever its policy, a body the
	// server reads otherwise than the gateway (compressed, another charset, member names that
	// repeat or differ only in case) is refused: every message the server runs is audited as it
	// runs it.
	strict := st.pol.readsMessages()
	body := b.GetBody()
	if !st.ri.mcp || (st.reqBodySeen && (!strict || len(body) == 0)) {
		return st.rep.bodyReply(true, nil, false, false, metadata{})
	}
	if st.reqBodySeen {
		// Only the first piece was read: the route's request body mode is not BUFFERED.
		return st.refuse(configError("mcpgate_body_in_pieces",
			fmt.Sprintf("route %s enforces rules on its request body, which reaches ext_proc in pieces; it needs request body mode BUFFERED", st.ri.route)),
			"", metadata{}, nil)
	}
	st.reqBodySeen = true
	md := st.headersMD
	if len(body) > st.s.cfg.MaxBodyBytes {
		return st.refuse(jsonRPCRefusal(http.StatusRequestEntityTooLarge, nil, mcp.CodeInvalidRequest,
			fmt.Sprintf("request body of %d bytes exceeds the gateway's limit of %d bytes", len(body), st.s.cfg.MaxBodyBytes),
			"mcpgate_body_too_large"), "limit", md, nil)
	}
	msgs, batch, err := mcp.ParseInto(st.msgs[:0], body)
	if err == nil && len(msgs) > MaxBatchMessages {
		return st.refuse(jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			fmt.Sprintf("batch of %d messages exceeds the gateway's limit of %d", len(msgs), MaxBatchMessages),
			"mcpgate_batch_too_large"), "limit", md, nil)
	}
	// The server decodes the body first: these bytes are not what it reads.
	unreadable := true
	switch {
	case encoded(st.headers.first("content-encoding")):
		err = fmt.Errorf("content-encoding %s", st.headers.first("content-encoding"))
	case !utf8Charset(st.headers.first("content-type")):
		err = errors.New("charset other than UTF-8")
	default:
		unreadable = false
	}
	if err != nil {
		st.s.tel.NonJSONRPC("request")
		if strict || unreadable {
			return st.refuse(jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeParseError,
				"mcpgate reads the MCP messages of this route and cannot read the body as JSON-RPC: "+err.Error(),
				"mcpgate_not_jsonrpc"), "", md, nil)
		}
		return st.rep.bodyReply(true, nil, false, false, md)
	}

	now := time.Now()
	// Protocol checks, under a policy or none: before the rules, and before the upstream or any
	// intermediary after the gateway acts on headers the body contradicts, or on an id that
	// names two requests.
	if problem := mirrorMismatch(st.headers, msgs, batch); problem != "" {
		rec, id := st.bodyRecord(msgs, batch, now)
		return st.refuse(jsonRPCRefusal(http.StatusBadRequest, id, mcp.CodeHeaderMismatch, problem, "mcpgate_header_mismatch"), "", md, rec)
	}
	if id := st.repeatedID(msgs, batch, now); id != nil {
		rec, rid := st.bodyRecord(msgs, batch, now)
		return st.refuse(jsonRPCRefusal(http.StatusBadRequest, rid, mcp.CodeInvalidRequest,
			fmt.Sprintf("request id %s is already in flight in this session: a requester must not reuse a request id within a session (MCP)", clip(string(id))),
			"mcpgate_repeated_id"), "", md, rec)
	}
	exOf := make([]*exchange, len(msgs))
	var first, firstDenied *exchange
	denied := 0
	if st.trafficDeferred && !hasRequest(msgs) {
		// Only responses (or objects that are neither): the traffic rules still apply, without
		// an MCP method.
		if d := st.evaluate(st.pol.traffic, &st.in); !d.Allowed {
			return st.refuse(rbacDenied(), d.Rule, md, nil)
		}
	}
	for i := range msgs {
		m := &msgs[i]
		// Checked whatever the kind and the route's rules: a server that folds case may read a
		// request where the gateway sees a response or no message at all ({"METHOD":"tools/call"}),
		// or another method than the audit would record.
		if m.Ambiguous {
			rec := st.messageRecord(m, now)
			return st.refuse(ambiguousRefusal(), "", md, &rec)
		}
		if m.Kind != mcp.KindRequest && m.Kind != mcp.KindNotification {
			continue
		}
		ex := st.newExchange()
		ex.rec = st.messageRecord(m, now)
		var listenURIs []string
		in := &st.msgIn
		*in = st.in
		in.MCPMethod = m.Method
		switch ex.item = mcp.ItemOf(m.Method); ex.item {
		case mcp.Tool:
			tc, ok := m.ToolCall()
			ex.name, ex.rec.Tool, ex.rec.Arguments = tc.Name, tc.Name, tc.Arguments
			in.ToolArguments = tc.Arguments
			in.Target, in.ToolName = st.ri.itemTarget(ex.item, tc.Name)
			switch {
			case tc.Ambiguous || (strict && st.pol.readsArguments(st.trafficDeferred) && mcp.AmbiguousMembers(tc.Arguments)):
				// The tool's name on every route: the audit records the tool the server runs.
				return st.refuse(ambiguousRefusal(), "", md, &ex.rec)
			case !strict:
			case !ok:
				// Judged as a call of the tool "", it would pass rules that only deny.
				return st.refuse(unnamedRefusal(m.Method, ex.item), "", md, &ex.rec)
			}
		case mcp.Prompt, mcp.Resource, mcp.NoItem:
			var name string
			var ok, ambiguous bool
			switch {
			case ex.item != mcp.NoItem:
				name, ok, ambiguous = mcp.StringParam(m.Params, mcp.NameMember(m.Method))
				st.judgeItem(ex, in, name)
			case m.Method == mcp.MethodListen:
				listenURIs, ok, ambiguous = mcp.ListenResources(m.Params)
			case m.Method == mcp.MethodComplete:
				// Judged as the prompt or resource it completes an argument of (the mux routes
				// it by the same ref): a completion is no way around a rule on the item.
				var it mcp.Item
				if it, name, ok, ambiguous = mcp.CompletionRef(m.Params); ok {
					ex.item = it
					st.judgeItem(ex, in, name)
				}
			default:
				ok = true
			}
			switch {
			case ambiguous:
				return st.refuse(ambiguousRefusal(), "", md, &ex.rec)
			case !strict:
			case !ok && m.Method == mcp.MethodComplete:
				return st.refuse(completionRefusal(), "", md, &ex.rec)
			case !ok && m.Method == mcp.MethodListen:
				return st.refuse(listenRefusal(), "", md, &ex.rec)
			case !ok:
				return st.refuse(unnamedRefusal(m.Method, ex.item), "", md, &ex.rec)
			}
		}
		if st.ri.bare(ex.item) && ex.name != "" {
			// prefixMode Never: the bare name's target, found by listing the session's targets.
			target, refusal := st.resolveTarget(m, ex, batch)
			if refusal != nil {
				return st.refuse(*refusal, "", md, &ex.rec)
			}
			in.Target, st.muxTarget = target, target
		}
		// The item's target on a multiplexed route; the route's elsewhere.
		ex.rec.Target = in.Target
		if st.trafficDeferred {
			d := st.evaluate(st.pol.traffic, in)
			if !d.Allowed {
				return st.refuse(rbacDenied(), d.Rule, md, &ex.rec)
			}
			st.trafficRule = d.Rule
		}
		// the traffic rule that allowed the request decided, unless a tool rule decides below
		ex.rec.Decision, ex.rec.Rule = telemetry.DecisionAllow, st.trafficRule
		if st.pol != nil && st.pol.tools != nil {
			switch {
			case ex.item != mcp.NoItem:
				d := st.evaluate(st.pol.tools, in)
				if d.Rule != "" {
					ex.rec.Rule = d.Rule
				}
				if !d.Allowed {
					ex.rec.Decision, ex.denied = telemetry.DecisionDeny, true
					denied++
					if firstDenied == nil {
						firstDenied = ex
					}
				}
			case mcp.Lists(m.Method):
				ex.filter = st.itemFilter()
			case len(listenURIs) > 0:
				// A subscriptions/listen subscribes to resources as resources/subscribe did:
				// each URI is judged as a subscription to it, and one refused refuses the
				// listen (Unknown resource, as the mux answers a URI of no target).
				for _, uri := range listenURIs {
					ex.item = mcp.Resource
					st.judgeItem(ex, in, uri)
					if d := st.evaluate(st.pol.tools, in); !d.Allowed {
						ex.rec.Rule, ex.rec.Decision, ex.denied = d.Rule, telemetry.DecisionDeny, true
						denied++
						if firstDenied == nil {
							firstDenied = ex
						}
						break
					}
				}
				if !ex.denied {
					// allowed: the listen concerns no one resource
					ex.item, ex.name, ex.rec.Resource = mcp.NoItem, "", ""
				}
			}
		}
		// After both rule sets have decided: only arguments a rule decoded can have decided.
		if strict && m.Method == mcp.MethodToolsCall {
			if member, found := st.pol.argumentInOtherCase(in, st.trafficDeferred); found {
				return st.refuse(argumentCaseRefusal(member), "", md, &ex.rec)
			}
		}
		if st.s.tel.Tracing() {
			st.s.tel.StartSpan(carrier(st.headers), &ex.rec, st.in.SourceAddress)
		}
		exOf[i] = ex
		if first == nil {
			first = ex
		}
	}
	if firstDenied != nil {
		first = firstDenied
	}
	st.exchangeMetadata(&md, first)

	if denied == 0 {
		st.register(exOf, now)
		r := st.rep.bodyReply(true, nil, false, false, md)
		if st.muxTarget != "" {
			// Envoy applies a request body reply's header mutation while it holds the headers
			// (BUFFERED), after the headers reply's, which removed a client's value.
			st.rep.common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader(contract.HeaderMuxTarget, st.muxTarget)}}
		}
		return r
	}
	if st.kind != mcp.RequestLegacyPost && !batch {
		// One refused call, whose answer belongs in this request's response: answer it here; the
		// server never sees it.
		ex := exOf[0]
		if ex.rec.ID == nil {
			ex.rec.HTTPStatus = http.StatusAccepted
			st.s.finish(ex, telemetry.OutcomeNotification, time.Now())
			return immediateReply(answer{status: http.StatusAccepted, details: deniedDetails(ex.item)}, md)
		}
		ex.rec.HTTPStatus, ex.rec.HasError, ex.rec.ErrorCode = http.StatusOK, true, mcp.CodeInvalidParams
		st.settle(ex, telemetry.OutcomeError, &md, time.Now())
		return immediateReply(answer{status: http.StatusOK, contentType: "application/json",
			body: mcp.Unknown(ex.rec.ID, ex.item, ex.name), details: deniedDetails(ex.item)}, md)
	}
	// A batch, or a legacy SSE POST (whose answers arrive on the GET stream): refused calls become
	// pings whose id says which call they stand in for (mcp.RefusedID), and their answers, on any
	// replica, become the error; refused notifications are dropped.
	elems := make([][]byte, 0, len(msgs))
	for i := range msgs {
		switch ex := exOf[i]; {
		case ex == nil || !ex.denied:
			elems = append(elems, msgs[i].Raw)
		case ex.rec.ID != nil:
			ex.standIn = mcp.RefusedID(ex.rec.ID, ex.item, ex.name)
			elems = append(elems, mcp.Ping(ex.standIn))
		}
	}
	st.register(exOf, now)
	if len(elems) == 0 {
		return immediateReply(answer{status: http.StatusAccepted, details: deniedDetails(firstDenied.item)}, md)
	}
	out := elems[0]
	if batch {
		out = mcp.EncodeBatch(elems)
	}
	return st.rep.bodyReply(true, out, true, true, md)
}

// resolveTarget returns the target of the call m (ex: its tools/call, prompts/get or
// completion/complete of a prompt) of a bare name on a route under prefixMode Never: the one
// target of the session that lists it (Config.MuxResolver, the mux's Resolve). refusal is the
// answer when there is none: Unknown tool (as the mux and the rules answer), served by several
// targets, a target's failure (FailClosed), no session, no resolver (500, fail closed), or a
// batch (one header cannot name each call's target; the mux refuses batches anyway).
func (st *stream) resolveTarget(m *mcp.Message, ex *exchange, batch bool) (target string, refusal *answer) {
	details := "mcpgate_" + ex.item.String()
	switch {
	case batch:
		a := jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
			"JSON-RPC batches are not supported on a multiplexed backend (MCP 2025-06-18 removed them); send one message per request", "mcpgate_mux_batch")
		return "", &a
	case st.s.cfg.MuxResolver == nil:
		a := configError("mcpgate_mux_no_resolver", fmt.Sprintf(
			"route %s leads to a multiplexed backend under prefixMode Never, whose calls ext_proc resolves with the mux of its process, and this ext_proc has none (mcpgate extproc --mux-listen)", st.ri.route))
		return "", &a
	}
	h := make(http.Header, len(st.headers))
	for _, hd := range st.headers {
		switch {
		case strings.HasPrefix(hd.name, ":"), hd.name == "accept-encoding", hd.name == contract.HeaderMuxCaller,
			hd.name == "authorization" && st.auth.Status == jwt.OK && !st.ri.passthrough:
			// what ext_proc removes or overwrites, or Envoy does not pass as a header
		default:
			h.Add(hd.name, hd.value)
		}
	}
	target, err := st.s.cfg.MuxResolver.Resolve(st.ctx, mux.Query{Mux: st.ri.mux, Session: st.session, Header: h, Host: st.in.Host,
		Caller: st.muxCaller, ID: m.ID, Item: ex.item, Name: ex.name})
	if err == nil {
		return target, nil
	}
	var re *mux.ResolveError
	if !errors.As(err, &re) {
		re = &mux.ResolveError{Kind: mux.ResolveFailed, Status: http.StatusInternalServerError, Code: mcp.CodeInternalError, Message: "mcpgate: " + err.Error()}
	}
	if re.Kind == mux.ResolveFailed {
		st.s.log.Warn("call's target not resolved", "route", st.ri.route, "method", m.Method, ex.item.String(), ex.name, "error", re.Message)
	}
	a := answer{status: re.Status, contentType: "application/json", body: re.Answer(m.ID), details: details + "_" + re.Kind}
	return "", &a
}

// judgeItem sets what the rules and the audit see of the prompt or resource (ex.item) named
// name: on a multiplexed route its target and own name (the name without the prefix).
func (st *stream) judgeItem(ex *exchange, in *authz.Input, name string) {
	var own string
	in.Target, own = st.ri.itemTarget(ex.item, name)
	in.Item = ex.item
	if ex.item == mcp.Prompt {
		in.PromptName, ex.rec.Prompt = own, name
	} else {
		in.ResourceName, ex.rec.Resource = own, name
	}
	ex.name = name
}

// completionRefusal answers a completion/complete whose params.ref names no prompt or resource:
// the rules could not judge it as the item it completes.
func completionRefusal() answer {
	return jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidParams,
		mcp.MethodComplete+` params.ref must be an object with "type":"ref/prompt" and a string name, or "type":"ref/resource" and a string uri`,
		"mcpgate_completion_unnamed")
}

// listenRefusal answers a subscriptions/listen whose params.notifications.resourceSubscriptions
// is not a list of URIs: the rules could not judge its subscriptions.
func listenRefusal() answer {
	return jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidParams,
		mcp.MethodListen+" params.notifications.resourceSubscriptions must be a list of strings", "mcpgate_listen_unnamed")
}

// unnamedRefusal answers a request for an item (tools/call, prompts/get, resources/read...) whose
// params do not name one: judged as a request for the item "", it would pass rules that only
// deny.
func unnamedRefusal(method string, it mcp.Item) answer {
	return jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidParams,
		fmt.Sprintf("%s params must be an object with a string %s", method, mcp.NameMember(method)),
		"mcpgate_"+it.String()+"_unnamed")
}

// deniedDetails is the response code details of a request for an item that MCP rules refused:
// mcpgate_tool_denied, mcpgate_prompt_denied or mcpgate_resource_denied.
func deniedDetails(it mcp.Item) string { return "mcpgate_" + it.String() + "_denied" }

// ambiguousRefusal answers a body whose member names servers read differently.
func ambiguousRefusal() answer {
	return jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
		"member names that repeat, or differ from another only in letter case, are refused on MCP routes: servers read them differently", "mcpgate_ambiguous_jsonrpc")
}

// bodyRecord starts the audit record of a request body the gateway refuses as a whole: its
// message's, with its id, unless it is a batch (nil record and id: the request's).
func (st *stream) bodyRecord(msgs []mcp.Message, batch bool, now time.Time) (*telemetry.Record, json.RawMessage) {
	if batch {
		return nil, nil
	}
	m := &msgs[0]
	r := st.messageRecord(m, now)
	switch mcp.ItemOf(m.Method) {
	case mcp.Tool:
		tc, _ := m.ToolCall()
		r.Tool = tc.Name
	case mcp.NoItem:
		if it, name, ok, _ := mcp.CompletionRef(m.Params); ok && m.Method == mcp.MethodComplete {
			if it == mcp.Prompt {
				r.Prompt = name
			} else {
				r.Resource = name
			}
		}
	case mcp.Prompt:
		r.Prompt, _, _ = mcp.StringParam(m.Params, "name")
	case mcp.Resource:
		r.Resource, _, _ = mcp.StringParam(m.Params, "uri")
	}
	return &r, m.ID
}

// repeatedID returns the raw id of a request of msgs whose id is in flight in its session (nil
// when none is): an earlier request's of the same body, or, for a legacy SSE POST, a request's
// of the session that awaits its answer in the session table (another replica's table is not
// known here). MCP forbids a requester to reuse an id within a session, and the gateway would
// match answers with the wrong requests. The Streamable HTTP POSTs of a session are not compared
// with each other or with the table: their answers usually come in their own response, and the
// requests of a POST whose event stream ended before its answers are parked unchecked
// (endEventStream), a later one with the same key pushing the earlier out as no_answer.
func (st *stream) repeatedID(msgs []mcp.Message, batch bool, now time.Time) json.RawMessage {
	legacy := st.kind == mcp.RequestLegacyPost && st.session != ""
	if !batch && !legacy {
		return nil
	}
	var seen map[string]struct{}
	if batch {
		seen = make(map[string]struct{}, len(msgs))
	}
	for i := range msgs {
		m := &msgs[i]
		key := mcp.IDKey(m.ID)
		if m.Kind != mcp.KindRequest || key == "" {
			continue
		}
		if legacy && st.s.sessions.Has(now, st.sessionKey(key)) {
			return m.ID
		}
		if batch {
			if _, dup := seen[key]; dup {
				return m.ID
			}
			seen[key] = struct{}{}
		}
	}
	return nil
}

// argumentCaseRefusal answers a tools/call with an argument member that only letter case tells
// from one the rules read (see authz.RuleSet.ArgumentInOtherCase).
func argumentCaseRefusal(member string) answer {
	return jsonRPCRefusal(http.StatusBadRequest, nil, mcp.CodeInvalidRequest,
		fmt.Sprintf("tools/call argument %q differs only in letter case from a member the gateway's rules read: servers read it differently", member),
		"mcpgate_ambiguous_jsonrpc")
}

// hasRequest reports whether msgs hold a request or notification.
func hasRequest(msgs []mcp.Message) bool {
	for i := range msgs {
		if msgs[i].Kind == mcp.KindRequest || msgs[i].Kind == mcp.KindNotification {
			return true
		}
	}
	return false
}

// mayHoldJSONRPC reports whether a client may read a response of this content-type as JSON-RPC:
// it names JSON or an event stream anywhere, in any letter case (clients match loosely: the
// TypeScript SDK accepts any content-type that includes "application/json"). MCP clients refuse
// an answer without a content-type.
func mayHoldJSONRPC(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.Contains(ct, "json") || strings.Contains(ct, "event-stream")
}

// admitListedTools makes the tools the server lists in the tools/list answer m values of the
// metrics' tool label (telemetry.AdmitTool). They are the server's names, not a client's: those the
// rules hide from the client are admitted too, so that refused calls of them count under their
// names. Under MCP rules, filterLists admits them as it reads them.
func (st *stream) admitListedTools(m *mcp.Message) {
	_ = mcp.ToolNames(m.Raw, st.s.tel.AdmitTool)
}

// utf8Charset reports whether a content-type has no charset or the UTF-8 one.
func utf8Charset(ct string) bool {
	_, params, found := strings.Cut(ct, ";")
	if !found {
		return true
	}
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "charset") {
			v = strings.Trim(strings.TrimSpace(v), `"`)
			return strings.EqualFold(v, "utf-8") || strings.EqualFold(v, "utf8")
		}
	}
	return true
}

func (st *stream) responseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	hs := readHeaders(st.respHeaders[:0], h.GetHeaders())
	st.status, _ = strconv.Atoi(hs.first(":status"))
	var md metadata
	var mut *extprocv3.HeaderMutation
	if sid := hs.first(mcp.SessionHeader); sid != "" {
		if st.session == "" {
			// Streamable HTTP's initialize: the server names the session in its answer.
			st.session = sid
			for _, ex := range st.pending.all() {
				ex.rec.Session = sid
			}
			md.str(contract.FieldSession, sid)
		}
		if st.ri.mcp {
			// The client gets it sealed for the caller (package bind): as it sent it, when the
			// server names the session the request did (Seal is deterministic).
			v := st.sealed
			if sid != st.session || v == "" {
				v = st.s.bind.Seal(sid, st.caller())
			}
			mut = st.rep.setHeaders(nil, mcp.SessionHeader, v)
		}
	}
	// The clock is read only when an exchange is finished here (most responses finish none).
	var now time.Time
	clock := func() time.Time {
		if now.IsZero() {
			now = time.Now()
		}
		return now
	}
	for _, p := range st.posted {
		// p.ex's record, when its answer came first, is finished here.
		st.s.postDone(p.ex, st.status)
		if st.status >= 300 {
			// The server refused the POST: no answer will come on the stream.
			if ex, ok := st.s.sessions.Take(p.key); ok {
				st.s.finish(ex, telemetry.OutcomeNoAnswer, clock())
			}
		}
	}
	st.posted = nil
	for _, ex := range st.waiting {
		ex.rec.HTTPStatus = st.status
		st.s.finish(ex, outcomeWithoutAnswer(ex), clock())
	}
	st.waiting = nil
	for _, ex := range st.pending.all() {
		ex.rec.HTTPStatus = st.status
	}
	if !st.ri.mcp || h.GetEndOfStream() {
		st.finishPending(clock())
		return st.rep.headersReply(false, mut, md)
	}
	// Under tool rules every answer a client may read as JSON-RPC is read, and one awaited here
	// that must be rewritten whatever its type: unseen, it would show the tools the rules hide.
	// What the gateway knows of the requests does not decide it (see stream.replaceUnreadable).
	ct, enc := hs.first("content-type"), encoded(hs.first("content-encoding"))
	var read bool
	if st.hasMCPRules() {
		pending := st.rewritePending()
		read = pending || mayHoldJSONRPC(ct)
		st.replaceUnreadable = pending || enc
	}
	// An answer over the body limit that need not be read is not sent to ext_proc at all: buffered,
	// it would overflow Envoy's buffer (sized for the limit) and the client would get a 500. An
	// event stream is read event by event, whatever its length.
	mt := mediaType(ct)
	cl := hs.first("content-length")
	length, sized := contentLength(cl)
	tooLarge := mt != "text/event-stream" && sized && length > int64(st.s.cfg.MaxBodyBytes)
	if read && tooLarge {
		// One that must be read is replaced now, at its headers (CONTINUE_AND_REPLACE: Envoy
		// drops the upstream's body), as any answer the gateway cannot read: the client gets the
		// JSON-RPC error, not the 500 of an overflowing buffer.
		body := st.unreadableAnswers()
		mut = st.rep.setHeaders(mut, "content-type", "application/json")
		mut = st.rep.removeHeaders(mut, "content-encoding")
		r := st.rep.headersReply(false, st.rep.removeHeaders(mut, "content-length"), md)
		st.rep.common.Status = extprocv3.CommonResponse_CONTINUE_AND_REPLACE
		st.rep.common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}}
		return r
	}
	mode := responseBodyMode(&st.rep.mode, mt, enc || tooLarge, read, sized)
	switch mode.GetResponseBodyMode() {
	case extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		st.partial = true
	case extprocfilterv3.ProcessingMode_STREAMED:
		st.sse = mcp.NewSSEStream(st.s.cfg.MaxBodyBytes)
		if cl != "" {
			// Envoy decided to keep it with the route's mode (NONE) when the headers reached the
			// filter, and mode_override does not revisit that; the events ext_proc rewrites change
			// the length.
			mut = st.rep.removeHeaders(mut, "content-length")
		}
	case extprocfilterv3.ProcessingMode_NONE:
		// The body will not be seen.
		st.finishPending(clock())
	}
	r := st.rep.headersReply(false, mut, md)
	r.ModeOverride = mode
	return r
}

func (st *stream) responseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if st.sse != nil {
		return st.sseChunk(b)
	}
	body := b.GetBody()
	if st.respBodySeen || !st.ri.mcp {
		// After a first piece that was replaced, the rest of the answer goes too.
		return st.rep.bodyReply(false, nil, st.clearRest && len(body) > 0, false, metadata{})
	}
	st.respBodySeen = true
	now := time.Now() // one clock read for the answers and for what is left unanswered
	defer st.finishPending(now)
	// A replaced first piece takes the rest of the answer with it. Only a body in pieces (the
	// route's response mode is not BUFFERED) or cut at Envoy's buffer limit (BUFFERED_PARTIAL) has
	// more after this one (or trailers, which ext_proc does not get).
	more := !b.GetEndOfStream()
	var msgs []mcp.Message
	batch, err := false, errTooLarge
	// Under BUFFERED_PARTIAL a piece with more to come is the answer cut at Envoy's buffer limit,
	// which may be below MaxBodyBytes (an HTTP/2 stream's limit is its window; a route may set
	// its own): too large to be read, whatever its length, not JSON that fails to parse.
	if len(body) <= st.s.cfg.MaxBodyBytes && !(st.partial && more) {
		msgs, batch, err = mcp.ParseInto(st.msgs[:0], body)
	}
	if err != nil {
		st.s.tel.NonJSONRPC("response")
		if !st.replaceUnreadable && (err != errTooLarge || !st.hasMCPRules()) {
			return st.rep.bodyReply(false, nil, false, false, metadata{})
		}
		// An answer that must be rewritten, that the client decodes and the gateway cannot, or,
		// under tool rules, too large to be read: replace it rather than pass it, as plain JSON.
		if st.partial && more {
			// Envoy stopped at its buffer limit and lets the rest of the body pass after this
			// piece, whatever replaces it: the whole response is replaced instead, by a local
			// reply, which Envoy can still send since it holds the response headers until this
			// reply (BUFFERED_PARTIAL).
			return immediateReply(answer{status: st.status, contentType: "application/json",
				body: st.unreadableAnswers(), details: "mcpgate_answer_too_large"}, metadata{})
		}
		st.clearRest = more
		r := st.rep.bodyReply(false, st.unreadableAnswers(), true, true, metadata{})
		mut := st.rep.common.HeaderMutation
		mut.SetHeaders = append(mut.SetHeaders, setHeader("content-type", "application/json"))
		mut.RemoveHeaders = append(mut.RemoveHeaders, "content-encoding")
		return r
	}
	md := answerMetadata().in(st.answerFields[:])
	out, changed := st.answers(msgs, batch, &md, now)
	if !changed {
		return st.rep.bodyReply(false, nil, false, false, md)
	}
	st.clearRest = more
	return st.rep.bodyReply(false, out, true, true, md)
}

// contentLength is the length a content-length header value announces; ok is false when there is
// none (a chunked body) or it is not a number. An absent header is checked first: ParseInt's
// error for "" would allocate on every chunked answer.
func contentLength(v string) (n int64, ok bool) {
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n >= 0
}

// errTooLarge stands for the parse error of a body over the limit, which is not parsed.
var errTooLarge = errors.New("body over the limit")

func (st *stream) sseChunk(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	// Under MCP rules, hold back every unfinished event: any may be a tools/list result (or a
	// refused call's stand-in answer), known only once whole, whatever the gateway knows of the
	// requests. A legacy SSE session's POSTs may pass another replica, whose requests this one
	// never sees.
	// Also the first event of a GET stream that names no session until it is whole: a legacy SSE
	// stream's endpoint event is sealed. (A Streamable HTTP GET names its session: its events
	// pass as they come, as any other response's on a route without rules.)
	hold := st.hasMCPRules() || (st.kind == mcp.RequestGet && !st.eventSeen && st.session == "")
	md := answerMetadata().in(st.answerFields[:])
	visit := func(ev *mcp.Event, rewritable bool) []byte {
		return st.visitEvent(ev, rewritable, &md)
	}
	out, changed, err := st.sse.Next(b.GetBody(), b.GetEndOfStream(), hold, visit)
	if err != nil {
		// The response has begun: Envoy resets the stream, which is all that can be done.
		st.s.log.Error("server-sent event that must be rewritten is too large; resetting the response",
			"route", st.ri.route, "limit", st.s.cfg.MaxBodyBytes)
		return immediateReply(answer{status: http.StatusBadGateway, details: "mcpgate_event_too_large"}, md)
	}
	if b.GetEndOfStream() {
		st.endEventStream(time.Now())
	}
	return st.rep.bodyReply(false, out, changed, false, md)
}

func (st *stream) visitEvent(ev *mcp.Event, rewritable bool, md *metadata) []byte {
	if len(bytes.TrimSpace(ev.Data)) == 0 {
		// A priming event (an id), a retry delay: no message, and not the endpoint event a
		// legacy SSE stream begins with.
		return nil
	}
	if !st.eventSeen {
		st.eventSeen = true
		if st.kind == mcp.RequestGet && ev.Type == "endpoint" {
			st.session = mcp.SessionFromURL(string(ev.Data))
			md.str(contract.FieldSession, st.session)
			if st.session == "" {
				return nil
			}
			// The client gets the session sealed for the caller (package bind), as the
			// Mcp-Session-Id of Streamable HTTP. sseChunk holds the first event back for it.
			sealed := st.s.bind.Seal(st.session, st.caller())
			return appendWithData(ev, []byte(mcp.WithSession(string(ev.Data), sealed)))
		}
	}
	if !ev.IsMessage() {
		return nil
	}
	msgs, batch, err := mcp.Parse(ev.Data)
	if err != nil {
		st.s.tel.NonJSONRPC("response")
		return nil
	}
	data, changed := st.answers(msgs, batch, md, time.Now())
	if !changed {
		return nil
	}
	if !rewritable {
		st.s.log.Error("an answer that must be rewritten began in bytes already passed on; passed unchanged", "route", st.ri.route)
		return nil
	}
	return appendWithData(ev, data)
}

// appendWithData encodes ev with data instead of its own, every other field (type, id, retry)
// kept: the event as the client gets it.
func appendWithData(ev *mcp.Event, data []byte) []byte {
	out := *ev
	out.Data = data
	return mcp.AppendEvent(nil, &out)
}
