package double_test

// Tests of Envoy behaviours the double reproduces where an earlier version of the double was more
// lenient than Envoy; each names the Envoy source it follows.

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// TestContentLengthIsDecidedWhenTheHeadersArrive: Envoy removes content-length with the body mode
// in force when the headers reach the filter, after building the headers message
// (ext_proc.cc decodeHeaders/encodeHeaders). A mode_override to STREAMED does not remove it later,
// and a content-length set in that reply is ignored (applyHeaderMutations' remove_content_length).
func TestContentLengthIsDecidedWhenTheHeadersArrive(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetResponseHeaders() != nil {
			r := withCommon(m, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", "999", false)}}})
			r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
				ResponseBodyMode: extprocv3.ProcessingMode_STREAMED}
			return r
		}
		return nil
	}))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	streamedRequest := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND,
		RequestBodyMode: extprocv3.ProcessingMode_STREAMED, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"},
		prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())),
		prefixRoute("streamed", "/streamed", "up", perRoute(t, streamedRequest)))),
		staticCluster("up", up.addr))

	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{"a":1}`))
	if resp.StatusCode != 200 || body != `{"echo":{"a":1}}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp.ContentLength != int64(len(body)) {
		t.Errorf("content-length %d after a mode_override to STREAMED, want the upstream's %d (Envoy decided to keep it when the headers arrived)",
			resp.ContentLength, len(body))
	}

	resp, _ = do(t, "POST", e.url("/streamed"), strings.NewReader(`"abc"`))
	if resp.StatusCode != 200 {
		t.Fatalf("streamed: got %d", resp.StatusCode)
	}
	msgs := e.ext.streams(t, 2)[1].messages()
	if v, ok := header(msgs[0].GetRequestHeaders().GetHeaders(), "content-length"); !ok || v != "5" {
		t.Errorf("request_headers content-length %q %v: ext_proc sees it before Envoy removes it in STREAMED mode", v, ok)
	}
	if seen := up.last(); seen.contentLength != -1 || seen.header.Get("content-length") != "" {
		t.Errorf("upstream saw content-length %d %q in STREAMED mode", seen.contentLength, seen.header.Get("content-length"))
	}
}

// TestContinueAndReplaceWithoutBodyMutationKeepsTheBody: CONTINUE_AND_REPLACE stops body
// processing of that direction; only with a body_mutation does it replace the body
// (processor_state.cc handleHeadersResponse). Without one the original body goes on unprocessed.
func TestContinueAndReplaceWithoutBodyMutationKeepsTheBody(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetRequestHeaders() != nil {
			return withCommon(m, &extprocsvc.CommonResponse{Status: extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-mutated", "yes", false)}}})
		}
		return nil
	}))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`"keep me"`))
	if resp.StatusCode != 200 || body != `{"echo":"keep me"}` || resp.Header.Get("x-seen-mutated") != "yes" {
		t.Fatalf("got %d %q x-seen-mutated %q", resp.StatusCode, body, resp.Header.Get("x-seen-mutated"))
	}
	if seen := up.last(); seen.contentLength != int64(len(`"keep me"`)) {
		t.Errorf("upstream content-length %d, want the client's (kept without a body_mutation)", seen.contentLength)
	}
	st := e.ext.streams(t, 1)[0]
	st.ended(t)
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers,response_headers,response_body" {
		t.Errorf("messages %s: no request body after CONTINUE_AND_REPLACE", got)
	}
}
