package extprocfilter

import (
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

// Result tells the data plane what to do after an event.
type Result struct {
	// Local, when set, replaces the answer with a local reply: an immediate response, or a failure
	// (Failure set) when failure_mode_allow is false.
	Local *LocalReply
	// ClearRouteCache asks for the route to be matched again (request direction only).
	ClearRouteCache bool
	// Replaced is set by CONTINUE_AND_REPLACE in a headers reply: the body of that direction is
	// replaced by Body (possibly empty) and its original body is dropped.
	Replaced bool
	// Body is the replacement body when Replaced.
	Body []byte
}

// LocalReply is a reply Envoy makes itself (sendLocalReply).
type LocalReply struct {
	// Status is the reply's HTTP status.
	Status int
	// Headers are an immediate response's headers (nil for a failure).
	Headers *headers.Map
	// Body is an immediate response's body (nil for a failure).
	Body []byte
	// Details is %RESPONSE_CODE_DETAILS%: the immediate response's details (spaces as "_"), or
	// the failure's.
	Details string
	// Failure marks an ext_proc failure (as opposed to an ImmediateResponse): once response
	// headers have gone downstream, Envoy resets the stream instead.
	Failure bool
}

// HeaderSent reports whether headers of d will be sent to ext_proc: their mode is not SKIP
// (DEFAULT means SEND) and processing goes on (ext_proc.cc encodeHeaders: !processing_complete_).
func (s *Stream) HeaderSent(d Dir) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headerMode(d) != extprocv3.ProcessingMode_SKIP && !s.over()
}

// over reports whether processing is over: complete (an OK close, fail-open), failed or closed
// (Envoy's processing_complete_); s.mu is held.
func (s *Stream) over() bool { return s.complete || s.failure != nil || s.closed }

// Held reports whether the headers of d were sent to ext_proc, so that Envoy holds them until
// a BUFFERED or BUFFERED_PARTIAL body's reply.
func (s *Stream) Held(d Dir) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[d]
}

// BodyMode is how the body of d is handled now: its mode (mode_override may change it), NONE
// once processing is over (ext_proc.cc onData continues every data callback once
// processing_complete_).
func (s *Stream) BodyMode(d Dir) extprocv3.ProcessingMode_BodySendMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over() {
		return extprocv3.ProcessingMode_NONE
	}
	return s.bodyMode(d)
}

func (s *Stream) headerMode(d Dir) extprocv3.ProcessingMode_HeaderSendMode {
	if d == Request {
		return s.mode.GetRequestHeaderMode()
	}
	return s.mode.GetResponseHeaderMode()
}

func (s *Stream) bodyMode(d Dir) extprocv3.ProcessingMode_BodySendMode {
	if d == Request {
		return s.mode.GetRequestBodyMode()
	}
	return s.mode.GetResponseBodyMode()
}

func (s *Stream) trailerMode(d Dir) extprocv3.ProcessingMode_HeaderSendMode {
	if d == Request {
		return s.mode.GetRequestTrailerMode()
	}
	return s.mode.GetResponseTrailerMode()
}

// dropsContentLength: Envoy removes content-length (and ignores a server setting it) when the
// body mode is STREAMED or BUFFERED_PARTIAL, or BUFFERED with that direction's headers not sent,
// unless allow_content_length_header is set (processor_state.h shouldRemoveContentLength).
func (s *Stream) dropsContentLength(d Dir) bool {
	if s.cfg.AllowContentLength {
		return false
	}
	bm := s.bodyMode(d)
	return bm == extprocv3.ProcessingMode_STREAMED || bm == extprocv3.ProcessingMode_BUFFERED_PARTIAL ||
		(bm == extprocv3.ProcessingMode_BUFFERED && s.headerMode(d) == extprocv3.ProcessingMode_SKIP)
}

// RequestHeaders processes the request headers (h is changed in place). eos is true when the
// request has no body.
func (s *Stream) RequestHeaders(h *headers.Map, eos bool) Result { return s.headers(Request, h, eos) }

// ResponseHeaders processes the response headers (h is changed in place). eos is true when the
// response has no body.
func (s *Stream) ResponseHeaders(h *headers.Map, eos bool) Result { return s.headers(Response, h, eos) }

// StartResponseHeaders sends the response headers to ext_proc (eos false: a body follows) and
// returns what waits for the reply and applies it, as ResponseHeaders does: the message is on
// the stream, as Envoy's is once encodeHeaders returns, whatever happens before the reply.
func (s *Stream) StartResponseHeaders(h *headers.Map) (reply func() Result) {
	return s.startHeaders(Response, h, false)
}

func (s *Stream) headers(d Dir, h *headers.Map, eos bool) Result { return s.startHeaders(d, h, eos)() }

func (s *Stream) startHeaders(d Dir, h *headers.Map, eos bool) func() Result {
	s.mu.Lock()
	// Envoy decides on content-length once, with the mode in force when the headers reach the
	// filter, and removes it after the headers message was built, so ext_proc still sees it
	// (ext_proc.cc decodeHeaders/encodeHeaders: `if (!processing_complete_ &&
	// state.shouldRemoveContentLength()) headers.removeContentLength()` after onHeaders). A later
	// mode_override does not revisit the decision: a response switched from BUFFERED to STREAMED
	// keeps the upstream's content-length.
	dropCL := s.dropsContentLength(d) && !s.over()
	if s.headerMode(d) == extprocv3.ProcessingMode_SKIP {
		if dropCL {
			h.Del("content-length")
		}
		s.markDoneIfNoBody(d, eos)
		s.mu.Unlock()
		s.maybeClose()
		return func() Result { return Result{} }
	}
	s.held[d] = true
	s.mu.Unlock()
	hh := &extprocsvc.HttpHeaders{Headers: s.headerMap(h), EndOfStream: eos}
	req := &extprocsvc.ProcessingRequest{}
	if d == Request {
		req.Request = &extprocsvc.ProcessingRequest_RequestHeaders{RequestHeaders: hh}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseHeaders{ResponseHeaders: hh}
	}
	p := s.send(req, d, kindHeaders, nil)
	if dropCL {
		h.Del("content-length")
	}
	return func() Result { return s.headersReply(d, h, eos, p) }
}

// headersReply waits for the reply to the headers message p and applies it.
func (s *Stream) headersReply(d Dir, h *headers.Map, eos bool, p *pending) Result {
	o := s.wait(p)
	if r, settled := s.settle(o); settled {
		return r
	}
	cr := o.resp.GetRequestHeaders().GetResponse()
	if d == Response {
		cr = o.resp.GetResponseHeaders().GetResponse()
	}
	// Envoy applies mode_override before it handles the reply (ext_proc.cc onReceiveMessage), so
	// the reply's header mutation already sees the new mode: a content-length it sets is ignored
	// when the new body mode is one that drops content-length.
	s.mu.Lock()
	f := s.applyModeOverride(o.resp.GetModeOverride())
	noCL := s.dropsContentLength(d)
	s.mu.Unlock()
	if f != nil {
		return s.failed(f)
	}
	var res Result
	replace := cr.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE
	if f := s.mutate(h, cr.GetHeaderMutation(), replace, noCL); f != nil {
		return s.failed(f)
	}
	s.mu.Lock()
	if replace {
		// CONTINUE_AND_REPLACE (honoured in headers replies only; processor_state.cc
		// handleHeadersResponse): with a body_mutation, content-length is removed and the body
		// becomes the mutation's (the original one is dropped); with or without one, that
		// direction sends no body or trailers to ext_proc any more (without a body_mutation the
		// original body passes on unprocessed).
		if cr.GetBodyMutation() != nil {
			h.Del("content-length")
			res.Replaced = true
			switch m := cr.GetBodyMutation().GetMutation().(type) {
			case *extprocsvc.BodyMutation_Body:
				res.Body = m.Body
			}
		}
		if d == Request {
			s.mode.RequestBodyMode, s.mode.RequestTrailerMode = extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_SKIP
		} else {
			s.mode.ResponseBodyMode, s.mode.ResponseTrailerMode = extprocv3.ProcessingMode_NONE, extprocv3.ProcessingMode_SKIP
		}
	}
	if d == Request {
		res.ClearRouteCache = s.clearsRouteCache(cr)
	}
	s.markDoneIfNoBody(d, eos || res.Replaced)
	s.mu.Unlock()
	s.maybeClose()
	return res
}

func (s *Stream) markDoneIfNoBody(d Dir, eos bool) {
	if eos || (s.bodyMode(d) == extprocv3.ProcessingMode_NONE && s.trailerMode(d) != extprocv3.ProcessingMode_SEND) {
		s.dirDone[d] = true
	}
}

// clearsRouteCache: route_cache_action DEFAULT obeys clear_route_cache, which counts only with a
// header_mutation; CLEAR always clears; RETAIN never does.
func (s *Stream) clearsRouteCache(cr *extprocsvc.CommonResponse) bool {
	switch s.cfg.RouteCacheAction {
	case extprocv3.ExternalProcessor_CLEAR:
		return true
	case extprocv3.ExternalProcessor_RETAIN:
		return false
	}
	return cr.GetClearRouteCache() && cr.GetHeaderMutation() != nil
}

// applyModeOverride applies mode_override from a headers reply when allow_mode_override is set
// (ext_proc.cc onReceiveMessage). The effective mode takes DEFAULT header and trailer modes from
// the filter-level processing_mode and the body modes literally (effectiveModeOverride); with
// allowed_override_modes set, that effective mode must equal one of them, request_header_mode
// aside.
func (s *Stream) applyModeOverride(mo *extprocv3.ProcessingMode) *Failure {
	if mo == nil || !s.cfg.AllowModeOverride {
		return nil
	}
	n := proto.Clone(mo).(*extprocv3.ProcessingMode)
	filter := s.cfg.Mode
	if n.RequestHeaderMode == extprocv3.ProcessingMode_DEFAULT {
		n.RequestHeaderMode = filter.GetRequestHeaderMode()
	}
	if n.ResponseHeaderMode == extprocv3.ProcessingMode_DEFAULT {
		n.ResponseHeaderMode = filter.GetResponseHeaderMode()
	}
	if n.RequestTrailerMode == extprocv3.ProcessingMode_DEFAULT {
		n.RequestTrailerMode = filter.GetRequestTrailerMode()
	}
	if n.ResponseTrailerMode == extprocv3.ProcessingMode_DEFAULT {
		n.ResponseTrailerMode = filter.GetResponseTrailerMode()
	}
	if len(s.cfg.AllowedOverrideModes) > 0 {
		ok := false
		for _, m := range s.cfg.AllowedOverrideModes {
			ok = ok || (n.RequestBodyMode == m.GetRequestBodyMode() && n.RequestTrailerMode == m.GetRequestTrailerMode() &&
				n.ResponseHeaderMode == m.GetResponseHeaderMode() && n.ResponseBodyMode == m.GetResponseBodyMode() &&
				n.ResponseTrailerMode == m.GetResponseTrailerMode())
		}
		if !ok {
			return nil
		}
	}
	for i, bm := range []extprocv3.ProcessingMode_BodySendMode{n.GetRequestBodyMode(), n.GetResponseBodyMode()} {
		if !xdsconf.BodyModeImplemented(bm, i == 1) {
			return &Failure{Status: s.cfg.StatusOnError, Details: "envoydouble_mode_override_" + bm.String() + "_not_implemented"}
		}
	}
	s.mode = n
	return nil
}

// BufferedBody processes a BUFFERED body: the whole body in one message with end_of_stream=true.
// The headers of that direction are still held when they were sent to ext_proc, so the reply's
// header_mutation applies to h, and its body_mutation must match their content-length.
func (s *Stream) BufferedBody(d Dir, h *headers.Map, body []byte) ([]byte, Result) {
	o := s.wait(s.send(bodyRequest(d, body, true), d, kindBody, body))
	if r, settled := s.settle(o); settled {
		return body, r
	}
	return s.applyBodyReply(d, h, body, bodyReply(o.resp, d), true)
}

// PartialBody processes a BUFFERED_PARTIAL body (ext_proc.cc onData, sendStreamChunk;
// processor_state.cc handleBufferedPartialBodyCallback). The chunks next reads are queued, none
// passing on, until the end of the stream or until the queue holds more than limit bytes
// (queueOverHighLimit, per_connection_buffer_limit_bytes); then all of it goes to ext_proc in one
// message, whose end_of_stream says whether the end was reached. The headers of that direction
// are still held when they were sent to ext_proc (Envoy continues them only after this reply), so
// the reply's header_mutation applies to h, a content-length it sets ignored (BUFFERED_PARTIAL
// removes it); unlike BUFFERED no content-length is checked against the mutated body. It returns
// what goes on of the piece and eos; when eos is false the rest of the body is the caller's to
// pass on unprocessed (partial_body_processed: no more messages for it). A read error is
// returned as err; a failure or an immediate response as the Result, while the headers are still
// held.
func (s *Stream) PartialBody(d Dir, h *headers.Map, limit uint32, next func() ([]byte, bool, error)) (out []byte, eos bool, res Result, err error) {
	var queue []byte
	for !eos && len(queue) <= int(limit) {
		var data []byte
		if data, eos, err = next(); err != nil {
			return nil, false, Result{}, err
		}
		queue = append(queue, data...)
	}
	o := s.wait(s.send(bodyRequest(d, queue, eos), d, kindBody, queue))
	if r, settled := s.settle(o); settled {
		return queue, eos, r, nil
	}
	out, res = s.applyBodyReply(d, h, queue, bodyReply(o.resp, d), false)
	return out, eos, res, nil
}

// applyBodyReply applies the reply cr to a body of d that Envoy held for it, whole (BUFFERED) or
// its first piece (BUFFERED_PARTIAL), and returns what goes on (processor_state.cc
// handleBufferedBodyCallback, handleBufferedPartialBodyCallback). The header mutation applies
// only while the headers are held (they were sent to ext_proc: headers_ is set, even when a
// mode_override left the filter-level header mode SKIP in force), a content-length it sets
// ignored when the mode in force removes it (shouldRemoveContentLength). With checkLength
// (BUFFERED) a body_mutation, whatever it holds, must match a content-length still in those
// headers (validateContentLength; body().size(): 0 for clear_body, for an empty mutation and for
// streamed_response). Its body or clear_body replaces the body; streamed_response is ignored
// (mutation_utils.cc applyBodyMutations).
func (s *Stream) applyBodyReply(d Dir, h *headers.Map, body []byte, cr *extprocsvc.CommonResponse, checkLength bool) ([]byte, Result) {
	s.mu.Lock()
	noCL := s.dropsContentLength(d)
	held := s.held[d]
	s.mu.Unlock()
	if held {
		if f := s.mutate(h, cr.GetHeaderMutation(), false, noCL); f != nil {
			return body, s.failed(f)
		}
	}
	out := body
	if bm := cr.GetBodyMutation(); bm != nil {
		if cl, err := strconv.Atoi(h.Value("content-length")); checkLength && held && err == nil && cl != len(bm.GetBody()) {
			return body, s.failed(&Failure{Status: s.cfg.StatusOnError, Details: "mismatch_between_content_length_and_the_length_of_the_mutated_body", Fatal: true})
		}
		switch m := bm.GetMutation().(type) {
		case *extprocsvc.BodyMutation_Body:
			out = m.Body
		case *extprocsvc.BodyMutation_ClearBody:
			if m.ClearBody {
				out = nil
			}
		}
	}
	var res Result
	s.mu.Lock()
	if d == Request {
		res.ClearRouteCache = s.clearsRouteCache(cr)
	}
	s.dirDone[d] = true
	s.mu.Unlock()
	s.maybeClose()
	return out, res
}

// settle answers an outcome that carries no reply to apply: a failure, pass-through (processing
// complete) or an immediate response. settled is false when o holds a reply.
func (s *Stream) settle(o outcome) (r Result, settled bool) {
	switch {
	case o.final != nil:
		return *o.final, true
	case o.failure != nil:
		return s.failed(o.failure), true
	case o.passthrough:
		return Result{}, true
	case o.resp.GetImmediateResponse() != nil:
		return s.immediate(o.resp.GetImmediateResponse()), true
	}
	return Result{}, false
}

// bodyRequest is the request_body or response_body message.
func bodyRequest(d Dir, data []byte, eos bool) *extprocsvc.ProcessingRequest {
	hb := &extprocsvc.HttpBody{Body: data, EndOfStream: eos}
	if d == Request {
		return &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestBody{RequestBody: hb}}
	}
	return &extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{ResponseBody: hb}}
}

func bodyReply(r *extprocsvc.ProcessingResponse, d Dir) *extprocsvc.CommonResponse {
	if d == Request {
		return r.GetRequestBody().GetResponse()
	}
	return r.GetResponseBody().GetResponse()
}

// StreamBody processes a STREAMED body: one message per read of next (end_of_stream on the last),
// sent as the data arrives without waiting for earlier replies (Envoy pipelines), and exactly one
// reply per chunk, in order, whose body or clear_body replaces that chunk before emit writes it
// on. header_mutation is ignored in this mode; streamed_response is spurious. A read or emit error
// is returned as err; a failure or immediate response as the Result.
func (s *Stream) StreamBody(d Dir, next func() ([]byte, bool, error), emit func([]byte) error) (Result, error) {
	stop := make(chan struct{})
	defer close(stop)
	queue := make(chan *pending, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(queue)
		for {
			data, eos, err := next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case queue <- s.send(bodyRequest(d, data, eos), d, kindBody, data):
			case <-stop:
				return
			}
			if eos {
				return
			}
		}
	}()
	for {
		var p *pending
		select {
		case p = <-queue:
		case <-s.async:
			// Envoy answered at once while no chunk's reply was awaited (a gRPC error, an
			// immediate response): the response has begun, so it resets the stream.
			return s.AsyncResult(), nil
		}
		if p == nil {
			break
		}
		o := s.wait(p)
		out := p.orig
		switch {
		case o.final != nil:
			return *o.final, nil
		case o.failure != nil:
			if r := s.failed(o.failure); r.Local != nil {
				return r, nil
			}
		case o.passthrough:
		case o.resp.GetImmediateResponse() != nil:
			return s.immediate(o.resp.GetImmediateResponse()), nil
		default:
			switch m := bodyReply(o.resp, d).GetBodyMutation().GetMutation().(type) {
			case *extprocsvc.BodyMutation_Body:
				out = m.Body
			case *extprocsvc.BodyMutation_ClearBody:
				if m.ClearBody {
					out = nil
				}
			case *extprocsvc.BodyMutation_StreamedResponse:
				// processor_state.cc handleStreamedBodyCallback: a FailedPrecondition, spurious.
				if r := s.failed(&Failure{Status: s.cfg.StatusOnError,
					Details: "spurious_message:_streamed_response_is_received_while_body_mode__is_not_FULL_DUPLEX_STREAMED"}); r.Local != nil {
					return r, nil
				}
			}
		}
		if len(out) > 0 {
			if err := emit(out); err != nil {
				return Result{}, err
			}
		}
	}
	select {
	case err := <-errc:
		return Result{}, err
	default:
	}
	s.mu.Lock()
	s.dirDone[d] = true
	s.mu.Unlock()
	s.maybeClose()
	return Result{}, nil
}

// failed turns a failure into the local reply (fail closed), or into pass-through when
// failure_mode_allow is set: processing stops and traffic continues unmodified.
func (s *Stream) failed(f *Failure) Result {
	s.fail(f)
	if s.failOpen && !f.Fatal {
		return Result{}
	}
	return Result{Local: &LocalReply{Status: f.Status, Details: f.Details, Failure: true}}
}

// immediate turns an ImmediateResponse into a local reply: status 200 when missing or below 200,
// headers checked against mutation_rules, the body (text/plain unless the headers set a
// content-type, added by the data plane), details with each white space replaced by "_".
func (s *Stream) immediate(im *extprocsvc.ImmediateResponse) Result {
	r := s.immediateReply(im)
	s.mu.Lock()
	s.dirDone = [2]bool{true, true}
	s.mu.Unlock()
	s.Close()
	return r
}

func (s *Stream) immediateReply(im *extprocsvc.ImmediateResponse) Result {
	code := int(im.GetStatus().GetCode())
	if code < 200 {
		code = 200
	}
	h := &headers.Map{}
	// Envoy logs a mutation of the immediate response's headers that fails and sends the reply
	// anyway (ext_proc.cc sendImmediateResponse). grpc_status only shapes the reply to a gRPC
	// request (Utility::prepareLocalReply), which the double does not serve.
	_ = s.mutate(h, im.GetHeaders(), false, false)
	return Result{Local: &LocalReply{Status: code, Headers: h, Body: im.GetBody(),
		Details: ResponseCodeDetails(im.GetDetails())}}
}
