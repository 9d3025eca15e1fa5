// Package extproctest plays Envoy's side of an ext_proc stream, for protocol tests and
// benchmarks: it sends the messages Envoy's ext_proc filter sends, in its order and with its
// conventions (protocol_config on the first message of the stream, attributes on the first
// message of each direction, metadata_context on every message, headers in raw_value), and
// checks that every reply is of the kind the message asks for, as Envoy does (any other reply is
// "spurious" and fails the request with a 500).
package extproctest

import (
	"context"
	"errors"
	"fmt"
	"io"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
)

// Route is the per-route gRPC initial metadata (docs/design.md); empty fields are left out.
type Route struct {
	// Gateway, Route, Policy, MCP, Backend and Target are the values of the metadata keys
	// x-mcpgate-gateway ("NS/NAME"), x-mcpgate-route ("NS/NAME/rule/I"), x-mcpgate-policy (the
	// Policy resource's name), x-mcpgate-mcp (contract.TransportSSE or TransportStreamableHTTP),
	// x-mcpgate-backend ("NS/NAME") and x-mcpgate-target (the MCP target's name).
	Gateway, Route, Policy, MCP, Backend, Target string
	// Targets is the value of x-mcpgate-targets: a multiplexed backend's target names joined by
	// commas.
	Targets string
	// Mux is the value of x-mcpgate-mux (contract.MetadataMux): a multiplexed backend's
	// contract.Mux as JSON, on its routes under prefixMode Never.
	Mux string
	// Bridge is the value of x-mcpgate-bridge (contract.MetadataBridge): the transport of the
	// single target a route bridges a Streamable HTTP client to through the mux.
	Bridge string
	// Passthrough is the value of x-mcpgate-passthrough (contract.MetadataPassthrough): "true"
	// on a route whose backend auth is passthrough.
	Passthrough string
}

// MD returns the gRPC metadata Envoy sends for the route.
func (r Route) MD() metadata.MD {
	md := metadata.MD{}
	for k, v := range map[string]string{
		"x-mcpgate-gateway": r.Gateway, "x-mcpgate-route": r.Route, "x-mcpgate-policy": r.Policy,
		"x-mcpgate-mcp": r.MCP, "x-mcpgate-backend": r.Backend, "x-mcpgate-target": r.Target,
		"x-mcpgate-targets": r.Targets, "x-mcpgate-mux": r.Mux, "x-mcpgate-bridge": r.Bridge,
		"x-mcpgate-passthrough": r.Passthrough,
	} {
		if v != "" {
			md.Set(k, v)
		}
	}
	return md
}

// Header is one header as Envoy sends it: lower-case name, pseudo-headers included.
type Header struct {
	// Name is the header's lower-case name (":path" for a pseudo-header); Value its value.
	Name, Value string
}

// Stream is one ext_proc stream, that is one HTTP request.
type Stream struct {
	ps     extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
	// SourceAddress is the source.address request attribute.
	SourceAddress string
	// Peer are the client certificate attributes of a filter chain that verifies client
	// certificates (contract.PeerCertificateAttributes), by expression; nil on other chains,
	// where Envoy is not asked for them. As Envoy sends them: strings, and a URI or DNS SAN the
	// certificate lacks is left out.
	Peer map[string]string
	// RequestBodyMode and ResponseBodyMode go in protocol_config (the route's modes).
	RequestBodyMode, ResponseBodyMode extprocfilterv3.ProcessingMode_BodySendMode
	sent                              int
	requestAttrs, responseAttrs       bool
	// inflight holds the kinds of sent messages awaiting replies, oldest first.
	inflight []string
}

// Open starts a stream with the route's metadata, as Envoy does when the first message must go.
func Open(ctx context.Context, c extprocv3.ExternalProcessorClient, r Route) (*Stream, error) {
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, r.MD()))
	ps, err := c.Process(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open ext_proc stream: %w", err)
	}
	return &Stream{
		ps: ps, cancel: cancel, SourceAddress: "127.0.0.1:50000",
		RequestBodyMode:  extprocfilterv3.ProcessingMode_BUFFERED,
		ResponseBodyMode: extprocfilterv3.ProcessingMode_NONE, // the translator's MCP route: ext_proc chooses with mode_override
	}, nil
}

// HeaderMap encodes headers the way Envoy does: the value in raw_value only.
func HeaderMap(hs []Header) *corev3.HeaderMap {
	m := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(hs))}
	for _, h := range hs {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: h.Name, RawValue: []byte(h.Value)})
	}
	return m
}

// kindOf names the oneof kind of a request or of the reply it needs.
func kindOf(r any) string {
	switch r.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders, *extprocv3.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingRequest_RequestBody, *extprocv3.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers, *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders, *extprocv3.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody, *extprocv3.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers, *extprocv3.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	}
	return fmt.Sprintf("%T", r)
}

// Send sends one message (without waiting for its reply), adding what Envoy adds.
func (s *Stream) Send(req *extprocv3.ProcessingRequest) error {
	r := req.GetRequest()
	req.MetadataContext = &corev3.Metadata{}
	if s.sent == 0 {
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode: s.RequestBodyMode, ResponseBodyMode: s.ResponseBodyMode,
		}
	}
	switch r.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders, *extprocv3.ProcessingRequest_RequestBody, *extprocv3.ProcessingRequest_RequestTrailers:
		if !s.requestAttrs {
			s.requestAttrs = true
			fields := map[string]*structpb.Value{"source.address": structpb.NewStringValue(s.SourceAddress)}
			for k, v := range s.Peer {
				fields[k] = structpb.NewStringValue(v)
			}
			req.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: fields}}
		}
	default:
		// No response_attributes are configured: Envoy sends none.
		s.responseAttrs = true
	}
	s.sent++
	s.inflight = append(s.inflight, kindOf(r))
	if err := s.ps.Send(req); err != nil {
		return fmt.Errorf("send %s: %w", kindOf(r), err)
	}
	return nil
}

// ErrSpurious is wrapped by Recv when a reply does not match the oldest message awaiting one.
var ErrSpurious = errors.New("spurious ext_proc reply")

// Recv receives the reply to the oldest message awaiting one and checks it as Envoy does: it must
// be of the message's kind or an immediate response; header mutations must carry raw_value only.
func (s *Stream) Recv() (*extprocv3.ProcessingResponse, error) {
	resp, err := s.ps.Recv()
	if err != nil {
		return nil, err
	}
	if len(s.inflight) == 0 {
		return resp, fmt.Errorf("%w: %s with no message awaiting a reply", ErrSpurious, kindOf(resp.GetResponse()))
	}
	want := s.inflight[0]
	s.inflight = s.inflight[1:]
	return resp, checkReply(want, resp)
}

// CheckReply checks resp as Envoy checks the reply to req: it must be of req's kind or an
// immediate response, and its header mutations must carry raw_value only.
func CheckReply(req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) error {
	return checkReply(kindOf(req.GetRequest()), resp)
}

// checkReply checks resp as the reply to a message of kind want.
func checkReply(want string, resp *extprocv3.ProcessingResponse) error {
	if got := kindOf(resp.GetResponse()); got != want && got != "immediate_response" {
		return fmt.Errorf("%w: %s in reply to %s", ErrSpurious, got, want)
	}
	return checkMutations(resp)
}

func checkMutations(resp *extprocv3.ProcessingResponse) error {
	var muts []*extprocv3.HeaderMutation
	switch r := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		muts = append(muts, r.RequestHeaders.GetResponse().GetHeaderMutation())
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		muts = append(muts, r.ResponseHeaders.GetResponse().GetHeaderMutation())
	case *extprocv3.ProcessingResponse_RequestBody:
		muts = append(muts, r.RequestBody.GetResponse().GetHeaderMutation())
	case *extprocv3.ProcessingResponse_ResponseBody:
		muts = append(muts, r.ResponseBody.GetResponse().GetHeaderMutation())
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		muts = append(muts, r.ImmediateResponse.GetHeaders())
	}
	for _, m := range muts {
		for _, o := range m.GetSetHeaders() {
			if o.GetHeader().GetValue() != "" {
				return fmt.Errorf("header %s set in value, not raw_value (Envoy answers 500)", o.GetHeader().GetKey())
			}
		}
	}
	return nil
}

// Do sends one message and returns its reply.
func (s *Stream) Do(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if err := s.Send(req); err != nil {
		return nil, err
	}
	return s.Recv()
}

// RequestHeaders sends the request headers; eos means the request has no body.
func (s *Stream) RequestHeaders(hs []Header, eos bool) (*extprocv3.ProcessingResponse, error) {
	return s.Do(RequestHeadersMsg(hs, eos))
}

// RequestBody sends (the last piece of) the request body.
func (s *Stream) RequestBody(body []byte, eos bool) (*extprocv3.ProcessingResponse, error) {
	return s.Do(RequestBodyMsg(body, eos))
}

// ResponseHeaders sends the response headers; eos means the response has no body.
func (s *Stream) ResponseHeaders(hs []Header, eos bool) (*extprocv3.ProcessingResponse, error) {
	return s.Do(ResponseHeadersMsg(hs, eos))
}

// ResponseBody sends a response body (BUFFERED) or one chunk (STREAMED).
func (s *Stream) ResponseBody(body []byte, eos bool) (*extprocv3.ProcessingResponse, error) {
	return s.Do(ResponseBodyMsg(body, eos))
}

// RequestHeadersMsg is a request headers message for Send.
func RequestHeadersMsg(hs []Header, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(hs), EndOfStream: eos}}}
}

// RequestBodyMsg is a request body message for Send.
func RequestBodyMsg(body []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: eos}}}
}

// ResponseHeadersMsg is a response headers message for Send.
func ResponseHeadersMsg(hs []Header, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: HeaderMap(hs), EndOfStream: eos}}}
}

// ResponseBodyMsg is a response body message (BUFFERED) or chunk (STREAMED) for Send.
func ResponseBodyMsg(body []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: eos}}}
}

// Close ends the stream as Envoy does by default: it resets it (the server sees Canceled).
func (s *Stream) Close() { s.cancel() }

// CloseSend half-closes the stream, as Envoy does with ext_proc_graceful_grpc_close (the server
// sees EOF), and waits for the server to end it.
func (s *Stream) CloseSend() error {
	defer s.cancel()
	if err := s.ps.CloseSend(); err != nil {
		return err
	}
	_, err := s.ps.Recv()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("stream end after half-close: %w", err)
	}
	return errors.New("reply after half-close")
}

// Common returns the CommonResponse of a headers or body reply; nil for other replies.
func Common(resp *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
	switch r := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return r.RequestHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return r.ResponseHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_RequestBody:
		return r.RequestBody.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseBody:
		return r.ResponseBody.GetResponse()
	}
	return nil
}

// Metadata returns the fields of the reply's "mcpgate" dynamic metadata as strings (numbers in
// decimal).
func Metadata(resp *extprocv3.ProcessingResponse) map[string]string {
	out := map[string]string{}
	for k, v := range resp.GetDynamicMetadata().GetFields()["mcpgate"].GetStructValue().GetFields() {
		if _, ok := v.GetKind().(*structpb.Value_NumberValue); ok {
			out[k] = fmt.Sprint(v.GetNumberValue())
		} else {
			out[k] = v.GetStringValue()
		}
	}
	return out
}

// BodyAfter returns what a body reply makes of body: the replacement, or body itself.
func BodyAfter(resp *extprocv3.ProcessingResponse, body []byte) []byte {
	switch m := Common(resp).GetBodyMutation().GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return m.Body
	case *extprocv3.BodyMutation_ClearBody:
		return nil
	}
	return body
}
