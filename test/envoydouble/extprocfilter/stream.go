// Package extprocfilter reproduces Envoy's ext_proc HTTP filter (envoy.filters.http.ext_proc) on
// the client side of the envoy.service.ext_proc.v3.ExternalProcessor/Process stream: one gRPC
// stream per HTTP stream, opened lazily, messages in event order, one reply expected per message
// and matched to the state waiting for it, per-message timeouts, mutations applied with Envoy's
// rules, and the failure answers (500, 504, pass-through with failure_mode_allow).
//
// The behaviours follow Envoy's source/extensions/filters/http/ext_proc/{ext_proc.cc,
// processor_state.cc, mutation_utils.cc}; each is named where it is reproduced.
package extprocfilter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// Dir is a direction of the HTTP stream: the request (decoding) or the response (encoding).
type Dir int

// Directions.
const (
	Request Dir = iota
	Response
)

type kind int

const (
	kindHeaders kind = iota
	kindBody
	kindTrailers
)

// ConnFunc returns the gRPC connection of a cluster (envoy_grpc.cluster_name).
type ConnFunc func(cluster string) (grpc.ClientConnInterface, error)

// AttrFunc evaluates one request_attributes / response_attributes expression; ok=false omits it
// (Envoy omits attributes whose evaluation fails).
type AttrFunc func(expr string) (v *structpb.Value, ok bool)

// Metadata is the dynamic metadata of one HTTP stream (filter_metadata by namespace), shared with
// the access log. It is safe for concurrent use.
type Metadata struct {
	mu sync.Mutex
	ns map[string]*structpb.Struct
}

// Merge merges fields into a namespace, as Envoy's setDynamicMetadata does (top-level keys
// replaced).
func (m *Metadata) Merge(ns string, s *structpb.Struct) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ns == nil {
		m.ns = map[string]*structpb.Struct{}
	}
	cur, ok := m.ns[ns]
	if !ok {
		cur = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		m.ns[ns] = cur
	}
	for k, v := range s.GetFields() {
		cur.Fields[k] = v
	}
}

// Snapshot returns a deep copy of every namespace.
func (m *Metadata) Snapshot() map[string]*structpb.Struct {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*structpb.Struct, len(m.ns))
	for k, v := range m.ns {
		out[k] = proto.Clone(v).(*structpb.Struct)
	}
	return out
}

// Params configure one Stream: the filter config and what the route overrides.
type Params struct {
	// Filter is the HCM's ext_proc filter configuration.
	Filter   *xdsconf.ExtProc
	PerRoute *xdsconf.ExtProcPerRoute // the merged per-route config (xdsconf.MergePerRoute); nil = none
	// Conn opens the gRPC connection to the ext_proc server's cluster.
	Conn ConnFunc
	// Attrs evaluates the request_attributes and response_attributes.
	Attrs AttrFunc
	// Metadata is the stream's dynamic metadata: namespaces are forwarded from it and received
	// into it.
	Metadata *Metadata
}

// Stream is the ext_proc processing of one HTTP stream.
type Stream struct {
	cfg      *xdsconf.ExtProc
	mode     *extprocv3.ProcessingMode // effective mode, changed by mode_override
	failOpen bool
	target   xdsconf.GrpcTarget
	mdOpts   xdsconf.MetadataOptions
	conn     ConnFunc
	attrs    AttrFunc
	md       *Metadata

	ctx    context.Context
	cancel context.CancelFunc

	sendMu  sync.Mutex // orders pending registration with the send queue
	queue   chan *extprocsvc.ProcessingRequest
	started bool

	mu        sync.Mutex
	pending   [2][]*pending
	failure   *Failure // sticky stream failure
	complete  bool     // processing complete: everything passes through unmodified
	sentFirst bool     // protocol_config sent
	sentAttrs [2]bool
	dirDone   [2]bool
	// held: the headers of that direction were sent to ext_proc, so Envoy holds them (its
	// ProcessorState headers_) until a BUFFERED or BUFFERED_PARTIAL body's reply, whatever header
	// mode a mode_override leaves in force.
	held   [2]bool
	closed bool
	// async is closed when Envoy sends a local reply at once, whatever the HTTP stream is doing:
	// a failure when failing closed (onGrpcError, a spurious reply: handleErrorResponse), or an
	// immediate response that came while no reply was awaited. asyncRes is that reply; final is
	// the immediate response, which every later message gets too.
	async      chan struct{}
	asyncFired bool
	asyncRes   Result
	final      *Result
}

// Failure is an ext_proc failure: the local reply Envoy sends when failure_mode_allow is false.
type Failure struct {
	// Status is the local reply's HTTP status: status_on_error, or 504 when a message timed out.
	Status int
	// Details is %RESPONSE_CODE_DETAILS% (e.g. spurious_message, or the gRPC error).
	Details string
	// Fatal marks a reply Envoy could not apply (a rejected header mutation, a content-length that
	// does not match the mutated body): Envoy answers status_on_error even with
	// failure_mode_allow (ext_proc.cc onReceiveMessage: handleErrorResponse for every error other
	// than FailedPrecondition).
	Fatal bool
}

type pending struct {
	dir   Dir
	kind  kind
	orig  []byte // original body chunk, passed on unmodified when processing completes
	start time.Time
	ch    chan outcome
	ext   chan time.Duration
}

type outcome struct {
	resp        *extprocsvc.ProcessingResponse
	passthrough bool
	failure     *Failure
	final       *Result // the immediate response Envoy already sent
}

// New prepares a Stream. It opens nothing: Envoy opens the gRPC stream when the first message must
// be sent, and never when every mode is SKIP/NONE.
func New(p Params) *Stream {
	s := &Stream{cfg: p.Filter, failOpen: p.Filter.FailureModeAllow, target: p.Filter.Service,
		mdOpts: p.Filter.Metadata, conn: p.Conn, attrs: p.Attrs, md: p.Metadata,
		mode: proto.Clone(p.Filter.Mode).(*extprocv3.ProcessingMode), async: make(chan struct{})}
	if pr := p.PerRoute; pr != nil {
		// ExtProcOverrides.processing_mode replaces the whole mode.
		if pr.Mode != nil {
			s.mode = proto.Clone(pr.Mode).(*extprocv3.ProcessingMode)
		}
		if pr.Service != nil {
			s.target = *pr.Service
		}
		// grpc_initial_metadata merges into the service's initial_metadata: same key replaces.
		s.target.Metadata = xdsconf.MergeMetadata(s.target.Metadata, pr.InitialMetadata)
		if pr.FailureModeAllow != nil {
			s.failOpen = *pr.FailureModeAllow
		}
		// A per-route namespace list replaces the filter's list.
		if pr.ForwardingUntyped != nil {
			s.mdOpts.ForwardingUntyped = *pr.ForwardingUntyped
		}
		if pr.ReceivingUntyped != nil {
			s.mdOpts.ReceivingUntyped = *pr.ReceivingUntyped
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close ends the gRPC stream by cancelling it, Envoy's default closeStream()+resetStream(): the
// server sees codes.Canceled. A reply still awaited will not be applied: its wait ends
// (pass-through), as Envoy's onDestroy stops the timers and ignores what comes later.
func (s *Stream) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.finish(outcome{passthrough: true}, nil)
	s.cancel()
}

// send registers the expectation of a reply and queues the message; the gRPC stream is opened by
// the first send.
func (s *Stream) send(req *extprocsvc.ProcessingRequest, dir Dir, k kind, orig []byte) *pending {
	p := &pending{dir: dir, kind: k, orig: orig, start: time.Now(), ch: make(chan outcome, 1), ext: make(chan time.Duration, 1)}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	switch {
	case s.final != nil:
		p.ch <- outcome{final: s.final}
		s.mu.Unlock()
		return p
	case s.failure != nil:
		p.ch <- outcome{failure: s.failure}
		s.mu.Unlock()
		return p
	case s.complete || s.closed:
		p.ch <- outcome{passthrough: true}
		s.mu.Unlock()
		return p
	}
	s.decorate(req, dir)
	s.pending[dir] = append(s.pending[dir], p)
	if !s.started {
		s.started = true
		s.queue = make(chan *extprocsvc.ProcessingRequest, 64)
		go s.run()
	}
	s.mu.Unlock()
	select {
	case s.queue <- req:
	case <-s.ctx.Done():
	}
	return p
}

// decorate sets what every message carries: metadata_context always, attributes on the first
// message of each direction, protocol_config on the first message of the stream.
func (s *Stream) decorate(req *extprocsvc.ProcessingRequest, dir Dir) {
	req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	if s.md != nil && len(s.mdOpts.ForwardingUntyped) > 0 {
		all := s.md.Snapshot()
		for _, ns := range s.mdOpts.ForwardingUntyped {
			if v, ok := all[ns]; ok {
				req.MetadataContext.FilterMetadata[ns] = v
			}
		}
	}
	if !s.sentAttrs[dir] {
		s.sentAttrs[dir] = true
		exprs := s.cfg.RequestAttributes
		if dir == Response {
			exprs = s.cfg.ResponseAttributes
		}
		if len(exprs) > 0 && s.attrs != nil {
			st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
			for _, e := range exprs {
				if v, ok := s.attrs(e); ok {
					st.Fields[e] = v
				}
			}
			req.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": st}
		}
	}
	if !s.sentFirst {
		s.sentFirst = true
		req.ProtocolConfig = &extprocsvc.ProtocolConfiguration{
			RequestBodyMode:  s.mode.GetRequestBodyMode(),
			ResponseBodyMode: s.mode.GetResponseBodyMode(),
		}
	}
}

// run opens the gRPC stream, starts the receiver and sends the queued messages in order.
func (s *Stream) run() {
	// The gRPC stream outlives s.ctx by the messages queued before s.ctx ended: Envoy writes each
	// message to the stream when it sends it, so one sent before the stream is reset (a local
	// reply, the end of the HTTP stream) reaches ext_proc ahead of the reset.
	ctx, reset := context.WithCancel(context.WithoutCancel(s.ctx))
	defer reset()
	// A send blocked by flow control (ext_proc not reading) would hold the reset back: it comes a
	// second after s.ctx ended at the latest.
	defer context.AfterFunc(s.ctx, func() { time.AfterFunc(time.Second, reset) })()
	if len(s.target.Metadata) > 0 {
		kv := make([]string, 0, 2*len(s.target.Metadata))
		for _, m := range s.target.Metadata {
			kv = append(kv, m.Key, m.Value)
		}
		ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(kv...))
	}
	conn, err := s.conn(s.target.Cluster)
	if err != nil {
		s.fail(&Failure{Status: s.cfg.StatusOnError, Details: grpcDetails(14, err.Error())})
		return
	}
	st, err := extprocsvc.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		s.onGrpcError(err)
		return
	}
	go s.recv(st)
	for {
		select {
		case <-s.ctx.Done():
			for {
				select {
				case req := <-s.queue:
					if st.Send(req) != nil {
						return
					}
				default:
					return
				}
			}
		case req := <-s.queue:
			// A send error means the stream broke; its status arrives through Recv.
			if st.Send(req) != nil {
				return
			}
		}
	}
}

func (s *Stream) recv(st extprocsvc.ExternalProcessor_ProcessClient) {
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The server closed the stream with OK: processing is complete and the request
				// and response continue unmodified (Envoy's onGrpcClose).
				s.finish(outcome{passthrough: true}, nil)
				return
			}
			s.onGrpcError(err)
			return
		}
		s.handle(resp)
	}
}

// onGrpcError: a non-OK status gives status_on_error (500) with details
// ext_proc_error_gRPC_error_<code>{<message>} (Envoy's onGrpcError).
func (s *Stream) onGrpcError(err error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	st := status.Convert(err)
	s.fail(&Failure{Status: s.cfg.StatusOnError, Details: grpcDetails(int(st.Code()), st.Message())})
}

func grpcDetails(code int, msg string) string {
	return ResponseCodeDetails(fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", code, msg))
}

// ResponseCodeDetails is what Envoy makes of the details of a local reply (ext_proc's
// sendImmediateResponse, the router's upstream resets: StringUtil::replaceAllEmptySpace): each space, tab, form feed, vertical tab, newline and
// carriage return becomes one "_".
func ResponseCodeDetails(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(" \t\f\v\n\r", r) {
			return '_'
		}
		return r
	}, s)
}

// fail makes the stream fail: every waiting state and every later message gets f, and the gRPC
// stream is cancelled.
func (s *Stream) fail(f *Failure) { s.finish(outcome{failure: f}, f) }

func (s *Stream) finish(o outcome, f *Failure) {
	s.mu.Lock()
	if s.failure != nil || s.complete {
		s.mu.Unlock()
		return
	}
	if f != nil {
		s.failure = f
		if !s.failOpen || f.Fatal {
			s.fireAsync(Result{Local: &LocalReply{Status: f.Status, Details: f.Details, Failure: true}})
		}
	} else {
		s.complete = true
	}
	var all []*pending
	for d := range s.pending {
		all = append(all, s.pending[d]...)
		s.pending[d] = nil
	}
	s.mu.Unlock()
	for _, p := range all {
		p.ch <- o
	}
	s.cancel()
}

// fireAsync records the local reply Envoy sends at once and closes async (once); s.mu is held.
func (s *Stream) fireAsync(r Result) {
	if s.asyncFired {
		return
	}
	s.asyncFired, s.asyncRes = true, r
	close(s.async)
}

// Async is closed when Envoy would send a local reply at once, whatever the HTTP stream is doing
// (waiting for the upstream, between two chunks of a streamed response): a failure when failing
// closed, or an immediate response that came while no reply was awaited. AsyncResult is the
// reply.
func (s *Stream) Async() <-chan struct{} { return s.async }

// AsyncResult is the local reply announced by Async.
func (s *Stream) AsyncResult() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asyncRes
}

// handle matches a reply to the state waiting for it. Anything that does not fit the current
// state is spurious: status_on_error (500) with details "spurious_message" ("unhandled_message"
// for an empty reply), or pass-through with failure_mode_allow (Envoy's runtime guard
// ext_proc_fail_close_spurious_resp, on by default).
func (s *Stream) handle(resp *extprocsvc.ProcessingResponse) {
	s.mu.Lock()
	if s.over() {
		// Envoy's onReceiveMessage drops a message that comes once processing is complete (the
		// last reply, a timeout, a spurious reply, a gRPC error), its dynamic_metadata too.
		s.mu.Unlock()
		return
	}
	if d := resp.GetOverrideMessageTimeout(); d != nil {
		// Envoy: honoured only when max_message_timeout is set and 1 ms <= d <= max; the rest of
		// such a message is ignored.
		dur := d.AsDuration()
		if s.cfg.MaxMessageTimeout > 0 && dur >= time.Millisecond && dur <= s.cfg.MaxMessageTimeout {
			for dir := range s.pending {
				for _, p := range s.pending[dir] {
					select {
					case p.ext <- dur:
					default:
					}
				}
			}
		}
		s.mu.Unlock()
		return
	}
	var (
		p   *pending
		dir Dir
		k   kind
	)
	switch resp.GetResponse().(type) {
	case *extprocsvc.ProcessingResponse_ImmediateResponse:
		if s.cfg.DisableImmediateResponse {
			break
		}
		// An immediate response answers whichever state is waiting.
		for d := range s.pending {
			if len(s.pending[d]) > 0 {
				p = s.pending[d][0]
				s.pending[d] = s.pending[d][1:]
				break
			}
		}
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		dir, k = Request, kindHeaders
	case *extprocsvc.ProcessingResponse_RequestBody:
		dir, k = Request, kindBody
	case *extprocsvc.ProcessingResponse_RequestTrailers:
		dir, k = Request, kindTrailers
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		dir, k = Response, kindHeaders
	case *extprocsvc.ProcessingResponse_ResponseBody:
		dir, k = Response, kindBody
	case *extprocsvc.ProcessingResponse_ResponseTrailers:
		dir, k = Response, kindTrailers
	}
	if p == nil && resp.GetImmediateResponse() == nil && resp.GetResponse() != nil {
		if q := s.pending[dir]; len(q) > 0 && q[0].kind == k {
			p = q[0]
			s.pending[dir] = q[1:]
		}
	}
	s.mu.Unlock()
	if p == nil {
		// Envoy's handleErrorResponse: status_on_error, the error message as details.
		details := "spurious_message"
		switch {
		case resp.GetResponse() == nil:
			details = "unhandled_message"
		case resp.GetImmediateResponse() != nil && s.cfg.DisableImmediateResponse:
			details = "unhandled_immediate_response_due_to_config_disabled_it"
		case resp.GetImmediateResponse() != nil:
			// Envoy sends an immediate response whenever it comes (onReceiveMessage checks no
			// state), also while it awaits no reply: the upstream answering, say.
			s.receiveMetadata(resp.GetDynamicMetadata())
			r := s.immediateReply(resp.GetImmediateResponse())
			s.mu.Lock()
			s.final = &r
			s.dirDone = [2]bool{true, true}
			s.fireAsync(r)
			s.mu.Unlock()
			s.Close()
			return
		default:
			// A headers, body or trailers reply that does not fit the state waiting: Envoy
			// (onReceiveMessage) writes its dynamic_metadata before handle*Response finds it
			// spurious.
			s.receiveMetadata(resp.GetDynamicMetadata())
		}
		s.fail(&Failure{Status: s.cfg.StatusOnError, Details: details})
		return
	}
	s.receiveMetadata(resp.GetDynamicMetadata())
	p.ch <- outcome{resp: resp}
	if resp.GetImmediateResponse() != nil {
		// An immediate response ends processing and closes the stream.
		s.finish(outcome{passthrough: true}, nil)
	}
}

// receiveMetadata stores dynamic_metadata namespaces listed in
// metadata_options.receiving_namespaces.untyped; other namespaces are dropped.
func (s *Stream) receiveMetadata(dm *structpb.Struct) {
	if dm == nil || s.md == nil {
		return
	}
	for ns, v := range dm.GetFields() {
		allowed := false
		for _, r := range s.mdOpts.ReceivingUntyped {
			allowed = allowed || r == ns
		}
		if allowed && v.GetStructValue() != nil {
			s.md.Merge(ns, v.GetStructValue())
		}
	}
}

// wait waits for the reply to p, with Envoy's per-message timer (message_timeout, re-armed on
// each send): on expiry the stream fails with 504 ext_proc_error_per-message_timeout_exceeded.
func (s *Stream) wait(p *pending) outcome {
	t := time.NewTimer(time.Until(p.start.Add(s.cfg.MessageTimeout)))
	defer t.Stop()
	for {
		select {
		case o := <-p.ch:
			return o
		case d := <-p.ext:
			t.Reset(d)
		case <-t.C:
			s.fail(&Failure{Status: 504, Details: "ext_proc_error_per-message_timeout_exceeded"})
			return <-p.ch
		}
	}
}

// maybeClose closes the stream early once no further message can follow (Envoy's
// ext_proc_stream_close_optimization).
func (s *Stream) maybeClose() {
	s.mu.Lock()
	done := s.dirDone[Request] && (s.dirDone[Response] || s.responseSendsNothing())
	s.mu.Unlock()
	if done {
		s.Close()
	}
}

func (s *Stream) responseSendsNothing() bool {
	return s.mode.GetResponseHeaderMode() == extprocv3.ProcessingMode_SKIP &&
		s.mode.GetResponseBodyMode() == extprocv3.ProcessingMode_NONE &&
		s.mode.GetResponseTrailerMode() != extprocv3.ProcessingMode_SEND
}
