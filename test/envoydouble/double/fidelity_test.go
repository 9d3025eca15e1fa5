package double_test

// Tests of Envoy behaviours found missing by an audit of the double's ext_proc filter against
// Envoy's source (ext_proc.cc, processor_state.cc, mutation_utils.cc, mutation_rules.cc,
// filter_manager.cc); each names the Envoy source it follows.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// TestResponseBodyArrivingBeforeTheHeadersReply: the upstream's body does not wait for ext_proc's
// reply to the response headers. ext_proc.cc onData holds it meanwhile: with the body mode in force
// BUFFERED it returns StopIterationAndBuffer, and the filter manager answers 500 as soon as it
// holds more than the buffer limit (ActiveStreamEncoderFilter::responseDataTooLarge), whatever
// the reply would have said (a mode_override to BUFFERED_PARTIAL or NONE comes too late). In other
// modes it returns StopIterationAndWatermark: the body waits, whole.
func TestResponseBodyArrivingBeforeTheHeadersReply(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 4096)
	wrote := make(chan struct{}, 4)
	e := newEnv(t, func(s *extStream) error {
		for {
			m, err := s.recv()
			if err != nil {
				return nil
			}
			r := continueFor(m)
			if m.GetResponseHeaders() != nil {
				// Reply once the upstream wrote its whole body (or not at all, if the stream ends
				// first): the double has read what Envoy would have.
				select {
				case <-wrote:
				case <-s.srv.Context().Done():
					return nil
				}
				time.Sleep(50 * time.Millisecond)
				r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
					ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_NONE}
			}
			if err := s.srv.Send(r); err != nil {
				return nil
			}
		}
	})
	const limit = 1024
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		switch r.URL.Path {
		case "/mcp/at-limit":
			w.Write(big[:limit])
		case "/mcp/over-limit":
			w.Write(big[:limit+1])
		default:
			w.Write(big)
		}
		w.(http.Flusher).Flush()
		wrote <- struct{}{}
	})
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	l.PerConnectionBufferLimitBytes.Value = limit
	streamed := mcpMode()
	streamed.ResponseBodyMode = extprocv3.ProcessingMode_STREAMED
	// The translator's MCP routes: response body NONE until ext_proc's mode_override.
	none := mcpMode()
	none.ResponseBodyMode = extprocv3.ProcessingMode_NONE
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"},
		prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())),
		prefixRoute("streamed", "/streamed", "up", perRoute(t, streamed)),
		prefixRoute("none", "/none", "up", perRoute(t, none)))),
		staticCluster("up", up.addr))

	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	if resp.StatusCode != 500 || body != "Internal Server Error" {
		t.Errorf("BUFFERED: got %d %q, want Envoy's 500 once more than the buffer limit arrived before the headers reply", resp.StatusCode, body)
	}
	logs := e.logs(1)
	if d := logs[0]["details"]; d != "response_payload_too_large" {
		t.Errorf("details %v", d)
	}
	st := e.ext.streams(t, 1)[0]
	st.ended(t) // with the HTTP stream, its reply to the headers never applied
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers,request_body,response_headers" {
		t.Errorf("messages %s", got)
	}

	// The limit itself is held; one byte more is the 500.
	resp, body = do(t, "POST", e.url("/mcp/at-limit"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || len(body) != limit {
		t.Errorf("BUFFERED, body of the buffer limit: got %d, %d bytes; want it whole", resp.StatusCode, len(body))
	}
	resp, _ = do(t, "POST", e.url("/mcp/over-limit"), strings.NewReader(`{}`))
	if resp.StatusCode != 500 {
		t.Errorf("BUFFERED, body one byte over the buffer limit: got %d, want 500", resp.StatusCode)
	}

	resp, body = do(t, "POST", e.url("/streamed"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != string(big) {
		t.Errorf("STREAMED: got %d, %d bytes; the body waits (watermark) for the headers reply", resp.StatusCode, len(body))
	}
	resp, body = do(t, "POST", e.url("/none"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != string(big) {
		t.Errorf("NONE: got %d, %d bytes; the body waits (watermark) for the headers reply", resp.StatusCode, len(body))
	}
}

// TestHeaderMutationChecks: MutationUtils::applyHeaderMutations (mutation_utils.cc) skips an
// option without a header and, when content-length is removed in the mode in force, a
// content-length before any other check; it refuses a value with a control character
// (headerValueIsValid) and more than max_headers_count sets with status_on_error; a :status below
// 200 or not a number is not a valid value for the rules (Checker::isValidValue), so it is
// dropped, not an error, as is an append to a pseudo-header (one value); a name with upper-case
// letters is valid (HTTP/1 token) and set lower-case; a header map over the count or size limit
// afterwards is an error (headerMutationResultCheck). The access log's response code is the one
// the client got.
func TestHeaderMutationChecks(t *testing.T) {
	many := make([]*corev3.HeaderValueOption, 101)
	for i := range many {
		many[i] = setHeader(fmt.Sprintf("x-h%d", i), "v", false)
	}
	e := newEnv(t, byPath(func(path string, m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		r := continueFor(m)
		if m.GetResponseHeaders() != nil {
			var set []*corev3.HeaderValueOption
			switch path {
			case "/mcp/status":
				set = []*corev3.HeaderValueOption{setHeader(":status", "abc", false), setHeader("x-after", "yes", false)}
			case "/mcp/control":
				set = []*corev3.HeaderValueOption{setHeader("x-ctl", "a\x01b", false)}
			case "/mcp/nil":
				set = []*corev3.HeaderValueOption{{}, setHeader("X-After", "yes", false)}
			case "/mcp/streamed":
				r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
					ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
				set = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-length", Value: "3", RawValue: []byte("3")}},
					setHeader("x-after", "yes", false)}
			case "/mcp/streamed-upper":
				r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
					ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
				set = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "Content-Length", Value: "3", RawValue: []byte("3")}},
					setHeader("x-after", "yes", false)}
			case "/mcp/status-1xx":
				set = []*corev3.HeaderValueOption{setHeader(":status", "150", false), setHeader("x-after", "yes", false)}
			case "/mcp/count":
				set = many[:100] // at the set limit, but the map then holds more than 100 headers
			case "/mcp/many":
				set = many
			case "/mcp/crlf":
				set = []*corev3.HeaderValueOption{setHeader("x-ctl", "a\r\nx-injected: 1", false)}
			case "/mcp/del":
				set = []*corev3.HeaderValueOption{setHeader("x-ctl", "a\x7fb", false)}
			case "/mcp/append-status":
				set = []*corev3.HeaderValueOption{setHeader(":status", "404", true), setHeader("x-after", "yes", false)}
			case "/mcp/huge":
				set = []*corev3.HeaderValueOption{setHeader("x-huge", strings.Repeat("h", 61<<10), false)}
			}
			r.GetResponseHeaders().Response.HeaderMutation = &extprocsvc.HeaderMutation{SetHeaders: set}
		}
		return r
	}, nil))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	n := 0 // access log lines
	for _, c := range []struct {
		path    string
		code    int
		after   bool
		details string
	}{
		{"/mcp/status", 200, true, "via_upstream"},
		{"/mcp/control", 500, false, "Invalid_character_in_set_headers_mutation."},
		{"/mcp/nil", 200, true, "via_upstream"},
		{"/mcp/streamed", 200, true, "via_upstream"},
		{"/mcp/streamed-upper", 200, true, "via_upstream"}, // the name in any case
		{"/mcp/status-1xx", 200, true, "via_upstream"},
		{"/mcp/count", 500, false, "Header_mutation_causes_end_result_header_count_*"},
		{"/mcp/many", 500, false, "Header_mutation_remove_header_count_0_or_set_header_count_101_exceed_the_HCM_header_countlimit_100"},
		{"/mcp/crlf", 500, false, "Invalid_character_in_set_headers_mutation."},
		{"/mcp/del", 500, false, "Invalid_character_in_set_headers_mutation."},
		{"/mcp/append-status", 200, true, "via_upstream"},
		{"/mcp/huge", 500, false, "Header_mutation_causes_end_result_header_count_*"}, // the numbers depend on the upstream's headers
	} {
		resp, _ := do(t, "POST", e.url(c.path), strings.NewReader(`{}`))
		n++
		if resp.StatusCode != c.code || (resp.Header.Get("x-after") == "yes") != c.after {
			t.Errorf("%s: got %d x-after %q, want %d (x-after set: %v)", c.path, resp.StatusCode, resp.Header.Get("x-after"), c.code, c.after)
		}
		l := e.logs(n)[n-1]
		details, _ := l["details"].(string)
		if prefix, ok := strings.CutSuffix(c.details, "*"); details != c.details && !(ok && strings.HasPrefix(details, prefix)) {
			t.Errorf("%s: details %v, want %s", c.path, details, c.details)
		}
		if rc, _ := l["response_code"].(float64); int(rc) != c.code {
			t.Errorf("%s: access log response_code %v, want %d", c.path, l["response_code"], c.code)
		}
	}
}

// TestMutationRulesOrder: Checker::isAllowed (mutation_rules.cc) tests disallow_expression, then
// allow_expression (which wins over disallow_all and the routing headers), then disallow_all, the
// routing headers (host, :authority, :method, :scheme unless allow_all_routing), then
// disallow_system.
func TestMutationRulesOrder(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return withCommon(m, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("x-mutated", "yes", false), setHeader("x-other", "no", false),
				setHeader(":authority", "rewritten.example", false), setHeader(":path", "/mcp/rewritten", false)}}})
		}
		return nil
	}))
	up := jsonUpstream(t)
	ep := extProcFilter(5 * time.Second)
	ep.MutationRules = &mutationv3.HeaderMutationRules{DisallowAll: wrapperspb.Bool(true),
		AllowExpression: &matcherv3.RegexMatcher{Regex: "x-mutated|:authority"}}
	mcpSetup(t, e, up.addr, ep)
	resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	seen := up.last()
	if resp.StatusCode != 200 || seen.header.Get("x-mutated") != "yes" || seen.header.Get("x-other") != "" || seen.host != "rewritten.example" || seen.path != "/mcp" {
		t.Errorf("disallow_all with allow_expression: got %d, upstream x-mutated %q x-other %q host %q path %q; want only the allowed x-mutated and :authority",
			resp.StatusCode, seen.header.Get("x-mutated"), seen.header.Get("x-other"), seen.host, seen.path)
	}
}

// TestDetailsAndSpuriousMetadata: sendImmediateResponse turns each white space character of the
// details into one "_" (StringUtil::replaceAllEmptySpace), neither collapsing nor trimming them,
// for the server's immediate responses and for gRPC errors alike. A reply that does not fit the
// state waiting is spurious (500), but onReceiveMessage writes its dynamic_metadata first.
func TestDetailsAndSpuriousMetadata(t *testing.T) {
	e := newEnv(t, func(s *extStream) error {
		m, err := s.recv()
		if err != nil {
			return nil
		}
		path, _ := header(m.GetRequestHeaders().GetHeaders(), ":path")
		switch path {
		case "/mcp/immediate":
			return s.srv.Send(&extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{
				ImmediateResponse: &extprocsvc.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Details: " no  way\tout\v\f\r\n "}}})
		case "/mcp/grpc":
			return status.Error(codes.Internal, "two  spaces\tand a tab")
		}
		md, _ := structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"method": "from-a-spurious-reply"}})
		return s.srv.Send(&extprocsvc.ProcessingResponse{DynamicMetadata: md,
			Response: &extprocsvc.ProcessingResponse_ResponseBody{ResponseBody: &extprocsvc.BodyResponse{}}})
	})
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	for i, c := range []struct {
		path, details string
		method        any // nil: none written
		code          int
	}{
		{"/mcp/immediate", "_no__way_out_____", nil, 403},
		{"/mcp/grpc", "ext_proc_error_gRPC_error_13{two__spaces_and_a_tab}", nil, 500},
		{"/mcp/spurious", "spurious_message", "from-a-spurious-reply", 500},
	} {
		resp, _ := do(t, "POST", e.url(c.path), strings.NewReader(`{}`))
		l := e.logs(i + 1)[i]
		if resp.StatusCode != c.code || l["details"] != c.details || l["mcp_method"] != c.method {
			t.Errorf("%s: got %d details %v mcp_method %v, want %d %s %v", c.path, resp.StatusCode, l["details"], l["mcp_method"], c.code, c.details, c.method)
		}
	}
}

// TestLocalReplyToHead: Utility::prepareLocalReply gives a reply to a HEAD request no body, no
// content-length and no content-type, and the HTTP/1 codec adds no content-length: 0 to it
// (encodeHeadersBase, is_response_to_head_request_): an ext_proc immediate response to HEAD
// carries only its status and headers.
func TestLocalReplyToHead(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}, Body: []byte("Jwt is missing"), Details: "refused",
			Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("www-authenticate", "Bearer", false)}}}}}
	}))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	resp, _ := do(t, "HEAD", e.url("/mcp"), nil)
	if resp.StatusCode != 401 || resp.Header.Get("www-authenticate") != "Bearer" || resp.Header.Get("content-type") != "" || resp.Header.Get("content-length") != "" {
		t.Errorf("HEAD: got %d %v, want 401 with www-authenticate and neither content-type nor content-length", resp.StatusCode, resp.Header)
	}
	resp, body := do(t, "GET", e.url("/mcp"), nil)
	if resp.StatusCode != 401 || body != "Jwt is missing" || resp.Header.Get("content-type") != "text/plain" {
		t.Errorf("GET: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// TestWholeBodyBeforeTheHeadersReply: a body that arrived whole while ext_proc's reply to the
// headers was awaited is sent as one message with end_of_stream, handled as a BUFFERED body
// whatever the mode the reply set (processor_state.cc handleHeadersResponse: complete body
// available, BufferedBodyCallback): in STREAMED mode too the headers stay held, so the body
// reply's header mutation applies, and its body must match a content-length still in them
// (validateContentLength).
func TestWholeBodyBeforeTheHeadersReply(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case m.GetResponseHeaders() != nil:
			time.Sleep(200 * time.Millisecond) // the upstream's short event stream has ended meanwhile
			r := continueFor(m)
			r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
				ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
			return r
		case m.GetResponseBody() != nil:
			return withCommon(m, &extprocsvc.CommonResponse{
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-body-reply", "yes", false)}},
				BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("data: b\n\n")}}})
		}
		return nil
	}))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/event-stream")
		if r.URL.Path == "/mcp/chunked" {
			w.(http.Flusher).Flush()
		}
		w.Write([]byte("data: a1\n\n")) // Go gives it a content-length when it is not flushed first
	})
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	resp, body := do(t, "POST", e.url("/mcp/chunked"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != "data: b\n\n" || resp.Header.Get("x-body-reply") != "yes" {
		t.Errorf("chunked: got %d %q x-body-reply %q, want the replaced body and the body reply's header", resp.StatusCode, body, resp.Header.Get("x-body-reply"))
	}
	msgs := e.ext.streams(t, 1)[0].messages()
	if got := strings.Join(kinds(msgs), ","); got != "request_headers,request_body,response_headers,response_body" {
		t.Fatalf("messages %s", got)
	}
	if b := msgs[3].GetResponseBody(); string(b.GetBody()) != "data: a1\n\n" || !b.GetEndOfStream() {
		t.Errorf("response_body %q end_of_stream %v, want the whole body in one message", b.GetBody(), b.GetEndOfStream())
	}

	resp, _ = do(t, "POST", e.url("/mcp/sized"), strings.NewReader(`{}`))
	if l := e.logs(2)[1]; resp.StatusCode != 500 || l["details"] != "mismatch_between_content_length_and_the_length_of_the_mutated_body" {
		t.Errorf("with a content-length: got %d %v, want Envoy's 500 (the content-length the headers kept does not match the new body)", resp.StatusCode, l["details"])
	}
}

// TestExtProcAnswersWhileTheUpstreamDoes: Envoy's ext_proc filter sends a local reply at once,
// whatever the HTTP stream is doing: on a gRPC error of its stream while it fails closed
// (onGrpcError), or on an immediate response, which onReceiveMessage applies in any state. While
// the upstream is still to answer, the upstream request is reset and the reply goes through the
// encoder filters (no response headers exist yet); once a streamed response has begun, the
// downstream stream is reset.
func TestExtProcAnswersWhileTheUpstreamDoes(t *testing.T) {
	e := newEnv(t, byPath(func(path string, m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		r := continueFor(m)
		if m.GetResponseHeaders() != nil {
			r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
				ResponseHeaderMode: extprocv3.ProcessingMode_SEND, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
		}
		return r
	}, func(s *extStream, path string, m *extprocsvc.ProcessingRequest) (bool, error) {
		switch {
		case m.GetRequestBody() != nil && path == "/mcp/error":
			time.Sleep(100 * time.Millisecond) // the upstream has the request
			return true, status.Error(codes.Unavailable, "going away")
		case m.GetRequestBody() != nil && path == "/mcp/immediate":
			time.Sleep(100 * time.Millisecond)
			return true, s.srv.Send(&extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{
				ImmediateResponse: &extprocsvc.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
					Body: []byte("later"), Details: "not now"}}})
		case m.GetResponseBody() != nil && path == "/mcp/streamed":
			return true, status.Error(codes.Unavailable, "going away")
		}
		return false, nil
	}))
	outcome := make(chan string, 3)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mcp/streamed" {
			w.Header().Set("content-type", "text/event-stream")
			w.Write([]byte("data: 1\n\n"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
			outcome <- "reset"
		case <-time.After(3 * time.Second):
			outcome <- "answered"
			w.Write([]byte(`{}`))
		}
	})
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	for i, c := range []struct {
		path, body, details string
		code                int
	}{
		{"/mcp/error", "", "ext_proc_error_gRPC_error_14{going_away}", 500},
		{"/mcp/immediate", "later", "not_now", 503},
	} {
		resp, body := do(t, "POST", e.url(c.path), strings.NewReader(`{}`))
		if got := <-outcome; got != "reset" {
			t.Errorf("%s: the upstream request was %s, want reset when ext_proc answered", c.path, got)
		}
		if l := e.logs(i + 1)[i]; resp.StatusCode != c.code || body != c.body || l["details"] != c.details {
			t.Errorf("%s: got %d %q details %v, want %d %q %s", c.path, resp.StatusCode, body, l["details"], c.code, c.body, c.details)
		}
	}

	resp, err := http.Post(e.url("/mcp/streamed"), "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	if got := <-outcome; resp.StatusCode != 200 || err == nil || got != "reset" {
		t.Errorf("streamed: got %d, read error %v, upstream request %s; want the downstream reset at once", resp.StatusCode, err, got)
	}
}

// byPath is a script that answers each message with reply(path, m), path being the request's
// :path, until the stream ends; after sending it, then(path, m) may end the stream with a status
// (done true).
func byPath(reply func(path string, m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse,
	then func(s *extStream, path string, m *extprocsvc.ProcessingRequest) (done bool, err error)) func(*extStream) error {
	return func(s *extStream) error {
		var path string
		for {
			m, err := s.recv()
			if err != nil {
				return nil
			}
			if h := m.GetRequestHeaders(); h != nil {
				path, _ = header(h.GetHeaders(), ":path")
			}
			if err := s.srv.Send(reply(path, m)); err != nil {
				return nil
			}
			if then != nil {
				if done, err := then(s, path, m); done {
					return err
				}
			}
		}
	}
}

// TestBodiesPassOnceProcessingIsComplete: once ext_proc processing is complete (the server closed
// its stream with OK), ext_proc.cc onData continues every data callback (processing_complete_)
// and encodeHeaders sends nothing: a body the route's BUFFERED mode would have buffered passes
// unbuffered, past the buffer limit too, request and response alike.
func TestBodiesPassOnceProcessingIsComplete(t *testing.T) {
	e := newEnv(t, func(s *extStream) error {
		m, err := s.recv()
		if err != nil {
			return nil
		}
		if err := s.srv.Send(continueFor(m)); err != nil {
			return nil
		}
		return nil // closed with OK: the request and response go on unprocessed
	})
	big := strings.Repeat("x", 4096)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("content-type", "application/json")
		w.Write([]byte(big + string(b)))
	})
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	l.PerConnectionBufferLimitBytes.Value = 1024
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())))),
		staticCluster("up", up.addr))
	// The request body waits for the headers' reply in the route's BUFFERED mode (within the limit),
	// then passes; the response body, over the limit, is never buffered.
	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{"a":1}`))
	if resp.StatusCode != 200 || body != big+`{"a":1}` {
		t.Errorf("got %d, %d bytes; want the upstream's 200 and whole body", resp.StatusCode, len(body))
	}
	if got := strings.Join(kinds(e.ext.streams(t, 1)[0].messages()), ","); got != "request_headers" {
		t.Errorf("messages %s", got)
	}
}
