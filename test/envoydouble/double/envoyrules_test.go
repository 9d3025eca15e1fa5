package double_test

// Tests of Envoy behaviours the double reproduces where an earlier version of the double was more
// lenient than Envoy; each names the Envoy source it follows.

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
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

// TestConnectionManagerLocalRepliesPassThroughExtProc: the 413 of a buffered request body over
// the buffer limit is the connection manager's local reply, sent through the encoder filters
// (FilterManager::sendLocalReplyViaFilterChain): ext_proc gets its response headers and body. A
// buffered response over the limit is a 500 "Internal Server Error" sent directly to the codec.
func TestConnectionManagerLocalRepliesPassThroughExtProc(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.Write(bytes.Repeat([]byte("x"), 2048))
	})
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	l.PerConnectionBufferLimitBytes.Value = 1024
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())))),
		staticCluster("up", up.addr))

	resp, body := do(t, "POST", e.url("/mcp"), bytes.NewReader(make([]byte, 2048)))
	if resp.StatusCode != 413 || body != "Payload Too Large" || resp.Header.Get("content-type") != "text/plain" {
		t.Errorf("got %d %q %q", resp.StatusCode, body, resp.Header.Get("content-type"))
	}
	st := e.ext.streams(t, 1)[0]
	st.ended(t)
	msgs := st.messages()
	if got := strings.Join(kinds(msgs), ","); got != "request_headers,response_headers,response_body" {
		t.Fatalf("messages %s: the 413 goes through ext_proc's encoder path", got)
	}
	if v, _ := header(msgs[1].GetResponseHeaders().GetHeaders(), ":status"); v != "413" {
		t.Errorf("response_headers :status %q", v)
	}
	if b := msgs[2].GetResponseBody(); string(b.GetBody()) != "Payload Too Large" || !b.GetEndOfStream() {
		t.Errorf("response_body %v", b)
	}
	if up.count() != 0 {
		t.Errorf("the upstream saw %d requests", up.count())
	}

	resp, body = do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	if resp.StatusCode != 500 || body != "Internal Server Error" || resp.Header.Get("content-type") != "text/plain" {
		t.Errorf("response over the limit: got %d %q %q", resp.StatusCode, body, resp.Header.Get("content-type"))
	}
	// ext_proc saw the upstream's 200 headers, then nothing: the 500 went to the codec directly.
	st = e.ext.streams(t, 2)[1]
	st.ended(t)
	msgs = st.messages()
	if got := strings.Join(kinds(msgs), ","); got != "request_headers,request_body,response_headers" {
		t.Errorf("messages %s: the 500 of a response over the limit does not go through ext_proc", got)
	} else if v, _ := header(msgs[2].GetResponseHeaders().GetHeaders(), ":status"); v != "200" {
		t.Errorf("response_headers :status %q, want the upstream's 200", v)
	}
	waitFor(t, "both access log lines", func() bool { return len(e.access.Lines()) == 2 })
	for i, want := range []string{"request_payload_too_large", "response_payload_too_large"} {
		if d := e.logs(2)[i]["details"]; d != want {
			t.Errorf("log %d details %v, want %s", i, d, want)
		}
	}
}

// TestLocalRepliesCarryTheRouteResponseHeaders: Envoy applies the route's response header
// operations to every local reply of a stream with a route entry (FilterManager::sendLocalReply,
// envoy#13204), ext_proc's immediate responses included; a local reply without body has neither
// content-type nor content-length in its headers (Utility::prepareLocalReply), and the HTTP/1
// codec writes content-length: 0.
func TestLocalRepliesCarryTheRouteResponseHeaders(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetRequestHeaders() == nil {
			return nil
		}
		path, _ := header(m.GetRequestHeaders().GetHeaders(), ":path")
		im := &extprocsvc.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}, Body: []byte("Jwt is missing"),
			Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-overridden", "by ext_proc", false)}}}
		if path == "/mcp/empty" {
			im.Status.Code, im.Body = typev3.StatusCode_Accepted, nil
			im.Headers.SetHeaders = append(im.Headers.SetHeaders, setHeader("content-type", "application/json", false))
		}
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: im}}
	}))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	r := prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode()))
	r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "x-route-added", Value: "yes"}},
		{Header: &corev3.HeaderValue{Key: "x-overridden", Value: "by the route"}}}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, r)), staticCluster("up", up.addr))

	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	if resp.StatusCode != 401 || body != "Jwt is missing" || resp.Header.Get("x-route-added") != "yes" ||
		strings.Join(resp.Header.Values("x-overridden"), ",") != "by ext_proc" {
		t.Errorf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = do(t, "POST", e.url("/mcp/empty"), strings.NewReader(`{}`))
	if resp.StatusCode != 202 || body != "" || resp.Header.Get("content-type") != "" || resp.Header.Get("content-length") != "0" ||
		resp.Header.Get("x-route-added") != "yes" {
		t.Errorf("empty body: got %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// TestRepliesEnvoyCannotApplyFailEvenWhenFailOpen: a reply Envoy cannot apply (a rejected header
// mutation, a body_mutation that does not match content-length, an empty body_mutation included)
// is answered with status_on_error even with failure_mode_allow; only a spurious reply passes
// (ext_proc.cc onReceiveMessage). The details are Envoy's error messages.
func TestRepliesEnvoyCannotApplyFailEvenWhenFailOpen(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case m.GetRequestHeaders() != nil:
			path, _ := header(m.GetRequestHeaders().GetHeaders(), ":path")
			switch path {
			case "/mcp/both":
				return withCommon(m, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "x-a", Value: "v", RawValue: []byte("v")}}}}})
			case "/mcp/spurious":
				return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{}}}
			}
		case m.GetRequestBody() != nil:
			switch string(m.GetRequestBody().GetBody()) {
			case `"longer"`:
				return withCommon(m, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
					Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`"much longer"`)}}})
			case `"empty"`:
				return withCommon(m, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{}})
			}
		}
		return nil
	}))
	up := jsonUpstream(t)
	f := extProcFilter(5 * time.Second)
	f.FailureModeAllow = true
	mcpSetup(t, e, up.addr, f)
	lines := map[string]int{} // access-log lines expected so far, by path and details
	for _, c := range []struct {
		path, body string
		code       int
		details    string
	}{
		{"/mcp/both", `{}`, 500, "Only_one_of_value_or_raw_value_in_the_HeaderValue_message_should_be_set."},
		{"/mcp", `"longer"`, 500, "mismatch_between_content_length_and_the_length_of_the_mutated_body"},
		{"/mcp", `"empty"`, 500, "mismatch_between_content_length_and_the_length_of_the_mutated_body"},
		{"/mcp/spurious", `{}`, 200, "via_upstream"},
	} {
		resp, body := do(t, "POST", e.url(c.path), strings.NewReader(c.body))
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: got %d %q, want %d", c.path, c.body, resp.StatusCode, body, c.code)
		}
		// this request's own line: one more with its path and details than before it
		key := c.path + " " + c.details
		lines[key]++
		waitFor(t, "the access log line with "+c.details, func() bool {
			n := 0
			for _, l := range e.access.Lines() {
				if strings.Contains(l, `"details":"`+c.details+`"`) && strings.Contains(l, `"path":"`+c.path+`"`) {
					n++
				}
			}
			return n == lines[key]
		})
	}
}

// TestAllowedOverrideModesCompareTheEffectiveMode: Envoy fills a mode_override's DEFAULT header
// and trailer modes from the filter-level processing_mode before comparing it with
// allowed_override_modes (ext_proc.cc effectiveModeOverride).
func TestAllowedOverrideModesCompareTheEffectiveMode(t *testing.T) {
	override := &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED, ResponseBodyMode: extprocv3.ProcessingMode_NONE}
	effective := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		RequestBodyMode: extprocv3.ProcessingMode_BUFFERED, ResponseBodyMode: extprocv3.ProcessingMode_NONE}
	for _, c := range []struct {
		name    string
		allowed *extprocv3.ProcessingMode
		want    string
	}{
		{"the effective mode is allowed", effective, "request_headers,request_body,response_headers"},
		{"the override as sent is not", override, "request_headers,request_body,response_headers,response_body"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
				r := continueFor(m)
				if m.GetResponseHeaders() != nil {
					r.ModeOverride = override
				}
				return r
			}))
			up := jsonUpstream(t)
			f := extProcFilter(5 * time.Second)
			f.AllowedOverrideModes = []*extprocv3.ProcessingMode{c.allowed}
			mcpSetup(t, e, up.addr, f)
			if resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`)); resp.StatusCode != 200 {
				t.Fatalf("got %d", resp.StatusCode)
			}
			st := e.ext.streams(t, 1)[0]
			st.ended(t)
			if got := strings.Join(kinds(st.messages()), ","); got != c.want {
				t.Errorf("messages %s, want %s", got, c.want)
			}
		})
	}
}

// TestExpectContinueIsAnsweredByTheProxy: without proxy_100_continue, Envoy answers
// "Expect: 100-continue" itself and removes the header before the filters and the upstream see the
// request (ActiveStream::decodeHeaders).
func TestExpectContinueIsAnsweredByTheProxy(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	req, err := http.NewRequest("POST", e.url("/mcp"), strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Expect", "100-continue")
	var continued atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{Got100Continue: func() { continued.Store(true) }}))
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if !continued.Load() {
		t.Error("no 100 Continue came back (the client sent the body after its timeout)")
	}
	if v := up.last().header.Get("expect"); v != "" {
		t.Errorf("the upstream saw expect: %q", v)
	}
	if v, ok := header(e.ext.streams(t, 1)[0].messages()[0].GetRequestHeaders().GetHeaders(), "expect"); ok {
		t.Errorf("ext_proc saw expect: %q", v)
	}
}

// TestPerRouteConfigsMergeAcrossLevels: Envoy merges the ExtProcPerRoute of the route
// configuration, virtual host, route and weighted cluster (Filter::mergePerRouteConfig,
// FilterConfigPerRoute(less, more)): grpc_initial_metadata accumulates (a key set only at a less
// specific level stays), processing_mode comes from the most specific level that sets it, and a
// more specific override enables a filter a less specific level disabled.
func TestPerRouteConfigsMergeAcrossLevels(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	weighted := func(name, path string, routeLevel, clusterLevel map[string]*anypb.Any) *routev3.Route {
		return &routev3.Route{Name: name, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: path}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
				WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: "up", Weight: wrapperspb.UInt32(1), TypedPerFilterConfig: clusterLevel}}}}}},
			TypedPerFilterConfig: routeLevel}
	}
	headersOnly := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP}
	vh := vhost("vh", []string{"*"},
		weighted("merged", "/merged", perRoute(t, mcpMode(), "x-mcpgate-policy", "p", "x-mcpgate-mcp", "streamable-http"),
			perRoute(t, nil, "x-mcpgate-mcp", "sse", "x-mcpgate-target", "t")),
		weighted("enabled", "/enabled", disabled(t), perRoute(t, headersOnly, "x-mcpgate-route", "r")),
		weighted("specific", "/specific", perRoute(t, mcpMode(), "x-mcpgate-mcp", "streamable-http"), perRoute(t, headersOnly)),
		prefixRoute("inherits-disabled", "/", "up", nil))
	vh.TypedPerFilterConfig = disabled(t)
	e.push(l, routeConfig(l.Name, vh), staticCluster("up", up.addr))

	do(t, "POST", e.url("/merged"), strings.NewReader(`{}`))
	st := e.ext.streams(t, 1)[0]
	st.ended(t)
	for k, want := range map[string]string{"x-mcpgate-policy": "p", "x-mcpgate-mcp": "sse", "x-mcpgate-target": "t", "x-mcpgate-gateway": "filter-level"} {
		if got := st.md.Get(k); len(got) != 1 || got[0] != want {
			t.Errorf("merged: %s = %v, want %s", k, got, want)
		}
	}
	// processing_mode from the route level (the weighted cluster sets none): the bodies go too.
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers,request_body,response_headers,response_body" {
		t.Errorf("merged: messages %s", got)
	}

	do(t, "POST", e.url("/enabled"), strings.NewReader(`{}`))
	st = e.ext.streams(t, 2)[1]
	st.ended(t)
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers" || st.md.Get("x-mcpgate-route")[0] != "r" {
		t.Errorf("enabled again by the weighted cluster: messages %s, metadata %v", got, st.md)
	}

	// Both levels set a mode: the weighted cluster's (headers only) wins over the route's (bodies).
	do(t, "POST", e.url("/specific"), strings.NewReader(`{}`))
	st = e.ext.streams(t, 3)[2]
	st.ended(t)
	if got := strings.Join(kinds(st.messages()), ","); got != "request_headers" || st.md.Get("x-mcpgate-mcp")[0] != "streamable-http" {
		t.Errorf("specific: messages %s (want the weighted cluster's mode), metadata %v", got, st.md)
	}

	if resp, _ := do(t, "POST", e.url("/other"), strings.NewReader(`{}`)); resp.StatusCode != 200 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	time.Sleep(50 * time.Millisecond) // a stream would have been opened before the upstream was called
	if n := len(e.ext.streams(t, 3)); n != 3 {
		t.Errorf("%d streams: the virtual host's disabled applies to a route without a config", n)
	}
}

// TestDownstreamAddressComesFromXFFWithoutUseRemoteAddress: without use_remote_address Envoy takes
// the stream's downstream remote address (ext_proc's source.address) from the last
// x-forwarded-for address, which the client may have set; with it, from the connection, whose
// address is appended to x-forwarded-for, and x-forwarded-proto is overwritten
// (ConnectionManagerUtility::mutateRequestHeaders).
func TestDownstreamAddressComesFromXFFWithoutUseRemoteAddress(t *testing.T) {
	for _, useRemote := range []bool{false, true} {
		t.Run(map[bool]string{false: "use_remote_address unset", true: "use_remote_address"}[useRemote], func(t *testing.T) {
			e := newEnv(t, answer(nil))
			up := jsonUpstream(t)
			l := listener(t, e.listen, extProcFilter(5*time.Second), func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
				h.UseRemoteAddress = wrapperspb.Bool(useRemote)
			})
			e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())))),
				staticCluster("up", up.addr))
			for i, xff := range []string{"203.0.113.9, 10.1.2.3", "not-an-address"} {
				do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`), "x-forwarded-for", xff, "x-forwarded-proto", "https")
				st := e.ext.streams(t, i+1)[i]
				src := st.messages()[0].GetAttributes()["envoy.filters.http.ext_proc"].GetFields()["source.address"].GetStringValue()
				seen := up.last().header
				switch {
				case !useRemote && i == 0:
					if src != "10.1.2.3:0" || seen.Get("x-forwarded-for") != xff || seen.Get("x-forwarded-proto") != "https" {
						t.Errorf("source.address %q, upstream x-forwarded-for %q x-forwarded-proto %q", src, seen.Get("x-forwarded-for"), seen.Get("x-forwarded-proto"))
					}
				case useRemote:
					if !strings.HasPrefix(src, "127.0.0.1:") || seen.Get("x-forwarded-for") != xff+",127.0.0.1" || seen.Get("x-forwarded-proto") != "http" {
						t.Errorf("source.address %q, upstream x-forwarded-for %q x-forwarded-proto %q", src, seen.Get("x-forwarded-for"), seen.Get("x-forwarded-proto"))
					}
				default: // not an IP address: the connection's
					if !strings.HasPrefix(src, "127.0.0.1:") || strings.HasSuffix(src, ":0") {
						t.Errorf("%q: source.address %q", xff, src)
					}
				}
			}
			if l := e.logs(2)[0]; !useRemote && l["downstream"] != "10.1.2.3:0" {
				t.Errorf("%%DOWNSTREAM_REMOTE_ADDRESS%% = %v", l["downstream"])
			}
		})
	}
}

// TestHeadersWithUnderscoresAreDropped: with headers_with_underscores_action DROP_HEADER (what
// mcpgate's listeners set), Envoy's codec drops request headers whose name has an underscore
// before any filter sees them.
func TestHeadersWithUnderscoresAreDropped(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_DROP_HEADER}
	})
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())))),
		staticCluster("up", up.addr))
	do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`), "x_user", "admin", "x-user", "guest")
	seen := up.last().header
	if seen.Get("x_user") != "" || seen.Get("x-user") != "guest" {
		t.Errorf("upstream saw x_user %q x-user %q", seen.Get("x_user"), seen.Get("x-user"))
	}
	if v, ok := header(e.ext.streams(t, 1)[0].messages()[0].GetRequestHeaders().GetHeaders(), "x_user"); ok {
		t.Errorf("ext_proc saw x_user: %q", v)
	}
}

// TestEdgeRequestsAreSanitized: ConnectionManagerUtility::mutateRequestHeaders. A request that is
// not internal (no address is without internal_address_config) loses the x-envoy-* headers a
// client could use to steer Envoy and the route configuration's internal_only_headers, before
// ext_proc sees the request; an edge request (use_remote_address) also gets a new
// x-request-id and x-envoy-external-address; an internal one keeps its id and is marked
// x-envoy-internal.
func TestEdgeRequestsAreSanitized(t *testing.T) {
	for _, c := range []struct {
		name                string
		useRemote, internal bool
	}{{"edge", true, false}, {"internal by internal_address_config", true, true}, {"use_remote_address unset", false, false}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, answer(nil))
			up := jsonUpstream(t)
			l := listener(t, e.listen, extProcFilter(5*time.Second), func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
				h.UseRemoteAddress = wrapperspb.Bool(c.useRemote)
				if c.internal {
					h.InternalAddressConfig = &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{
						{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}}
				}
			})
			rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode()))))
			rc.InternalOnlyHeaders = []string{"X-Internal-Only"}
			e.push(l, rc, staticCluster("up", up.addr))
			do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`), "x-request-id", "client-id", "x-envoy-retry-on", "5xx",
				"x-envoy-internal", "true", "x-envoy-decorator-operation", "op", "x-internal-only", "forged")
			seen := up.last().header
			// all of it happens before the filters: ext_proc sees what the upstream sees
			extHeaders := e.ext.streams(t, 1)[0].messages()[0].GetRequestHeaders().GetHeaders()
			for _, k := range []string{"x-internal-only", "x-envoy-retry-on", "x-envoy-internal", "x-envoy-decorator-operation", "x-envoy-external-address"} {
				v, extSaw := header(extHeaders, k)
				if up := seen.Get(k); extSaw != (up != "") || (extSaw && v != up) {
					t.Errorf("%s: ext_proc saw %q (%t), the upstream got %q", k, v, extSaw, up)
				}
			}
			if (seen.Get("x-internal-only") != "") != c.internal {
				t.Errorf("internal_only_headers: upstream got %q", seen.Get("x-internal-only"))
			}
			edge := c.useRemote && !c.internal
			if (seen.Get("x-request-id") == "client-id") == edge {
				t.Errorf("x-request-id %q", seen.Get("x-request-id"))
			}
			if (seen.Get("x-envoy-retry-on") != "") != c.internal || (seen.Get("x-envoy-internal") == "true") != c.internal {
				t.Errorf("x-envoy-retry-on %q x-envoy-internal %q", seen.Get("x-envoy-retry-on"), seen.Get("x-envoy-internal"))
			}
			if (seen.Get("x-envoy-decorator-operation") == "") != edge || (seen.Get("x-envoy-external-address") == "127.0.0.1") != edge {
				t.Errorf("x-envoy-decorator-operation %q x-envoy-external-address %q", seen.Get("x-envoy-decorator-operation"), seen.Get("x-envoy-external-address"))
			}
		})
	}
}

// TestBufferedPartialResponse: a response body asked for in BUFFERED_PARTIAL mode (mode_override)
// is queued, none of it passing on, until its end or until the queue holds more than the buffer
// limit, then sent to ext_proc in one message, end_of_stream false when the limit was hit
// (ext_proc.cc onData, sendStreamChunk). The response headers are held until the reply to that
// piece, so its header mutation applies (a content-length it sets is ignored: shouldRemoveContentLength)
// and an immediate response replaces the whole response; the reply's body replaces the piece and
// the rest of the body passes unprocessed (processor_state.cc handleBufferedPartialBodyCallback).
func TestBufferedPartialResponse(t *testing.T) {
	const limit = 1024
	pieceSeen := make(chan struct{}, 3) // ext_proc got a response_body piece before the end
	// ext_proc answered the response headers: before that, Envoy holds the body as the route's
	// BUFFERED mode says, and more than the limit would be a 500 (TestResponseBodyArrivingBeforeTheHeadersReply).
	headersReplied := make(chan struct{}, 3)
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetResponseBody() != nil && !m.GetResponseBody().GetEndOfStream() {
			pieceSeen <- struct{}{}
		}
		switch {
		case m.GetResponseHeaders() != nil:
			return partialOverride(m, headersReplied)
		case m.GetResponseBody() != nil:
			b := m.GetResponseBody()
			if strings.HasPrefix(string(b.GetBody()), "refuse") {
				return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_OK}, Body: []byte(`{"error":"too large"}`), Details: "answer too large",
					Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-type", "application/json", false)}}}}}
			}
			return withCommon(m, &extprocsvc.CommonResponse{
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					setHeader("x-piece", fmt.Sprintf("%d %v", len(b.GetBody()), b.GetEndOfStream()), false), setHeader("content-length", "1", false)}},
				BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("[piece]")}}})
		}
		return nil
	}))
	// The upstream answers without content-length (chunked), in writes of 300 bytes; after the
	// first it waits until ext_proc answered the headers (and a little more, for the double to
	// apply the reply), and past 1200 bytes (over the limit) until ext_proc got the piece, so that
	// the piece is those 1200 bytes whatever the reads.
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("content-type", "application/json")
		w.Header().Set("x-upstream", "yes")
		body := []byte(r.URL.Query().Get("start") + strings.Repeat("x", n))
		for sent := 0; len(body) > 0; {
			if sent == 300 {
				select {
				case <-headersReplied:
					time.Sleep(50 * time.Millisecond)
				case <-r.Context().Done():
					return
				}
			}
			if sent == 1200 {
				select {
				case <-pieceSeen:
				case <-time.After(10 * time.Second): // a double that waits for the end fails below, not hangs
				case <-r.Context().Done():
					return
				}
			}
			k := min(300, len(body))
			w.Write(body[:k])
			w.(http.Flusher).Flush()
			body, sent = body[k:], sent+k
		}
	})
	pushLimited(t, e, up.addr, limit)

	// A body within the limit comes whole, end_of_stream true, and is replaced.
	resp, body := do(t, "POST", e.url("/mcp?n=500"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != "[piece]" || resp.Header.Get("x-piece") != "500 true" || resp.ContentLength != -1 {
		t.Errorf("within the limit: %d %q x-piece %q content-length %d, want 200 [piece] from one message of 500 bytes with end_of_stream, chunked",
			resp.StatusCode, body, resp.Header.Get("x-piece"), resp.ContentLength)
	}

	// Over the limit: the piece sent is what was queued when the queue first held more than the
	// limit (four writes of 300 bytes), end_of_stream false; the rest follows the replaced piece.
	resp, body = do(t, "POST", e.url("/mcp?n=3800"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || resp.Header.Get("x-piece") != "1200 false" || resp.Header.Get("x-upstream") != "yes" {
		t.Errorf("over the limit: %d x-piece %q x-upstream %q, want 200 and a piece of 1200 bytes without end_of_stream", resp.StatusCode, resp.Header.Get("x-piece"), resp.Header.Get("x-upstream"))
	}
	if want := "[piece]" + strings.Repeat("x", 3800-1200); body != want {
		t.Errorf("over the limit: the client got %d bytes, want the replaced piece and the %d bytes after it", len(body), 3800-1200)
	}
	msgs := e.ext.streams(t, 2)[1].messages()
	if got := strings.Join(kinds(msgs), ","); got != "request_headers,request_body,response_headers,response_body" {
		t.Errorf("over the limit: messages %s, want one response_body (the rest passes without ext_proc)", got)
	}

	// An immediate response to the piece replaces the whole response: the headers were held.
	resp, body = do(t, "POST", e.url("/mcp?n=3800&start=refuse"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != `{"error":"too large"}` || resp.Header.Get("x-upstream") != "" || resp.Header.Get("content-type") != "application/json" {
		t.Errorf("immediate response: %d %q %v, want only the immediate response", resp.StatusCode, body, resp.Header)
	}
	if l := e.logs(3)[2]; l["details"] != "answer_too_large" {
		t.Errorf("access log details %v, want the immediate response's", l["details"])
	}
}

// partialOverride answers response headers with a mode_override to a BUFFERED_PARTIAL response
// body, and says so on replied.
func partialOverride(m *extprocsvc.ProcessingRequest, replied chan<- struct{}) *extprocsvc.ProcessingResponse {
	r := continueFor(m)
	r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
		ResponseBodyMode: extprocv3.ProcessingMode_BUFFERED_PARTIAL}
	replied <- struct{}{}
	return r
}

// pushLimited serves an MCP route /mcp to the upstream at addr on a listener whose buffer limit
// is limit.
func pushLimited(t *testing.T, e *env, addr string, limit uint32) {
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	l.PerConnectionBufferLimitBytes.Value = limit
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())))),
		staticCluster("up", addr))
}

// TestBufferedPartialAtTheLimit: a BUFFERED_PARTIAL body is sent to ext_proc once its queue holds
// more than the buffer limit (processor_state.h queueOverHighLimit: bytesEnqueued() >
// bufferLimit()), not as soon as it holds the limit: a body that pauses at exactly the limit is
// sent with what comes after the pause.
func TestBufferedPartialAtTheLimit(t *testing.T) {
	const limit = 1024
	headersReplied := make(chan struct{}, 1)
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case m.GetResponseHeaders() != nil:
			return partialOverride(m, headersReplied)
		case m.GetResponseBody() != nil:
			return withCommon(m, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("x-piece", strconv.Itoa(len(m.GetResponseBody().GetBody())), false)}}})
		}
		return nil
	}))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.Write([]byte(strings.Repeat("x", 300)))
		w.(http.Flusher).Flush()
		select {
		case <-headersReplied:
			time.Sleep(50 * time.Millisecond) // for the double to apply the reply
		case <-r.Context().Done():
			return
		}
		w.Write([]byte(strings.Repeat("x", limit-300))) // the queue holds the limit
		w.(http.Flusher).Flush()
		time.Sleep(100 * time.Millisecond) // the rest in a read of its own
		w.Write([]byte(strings.Repeat("y", 100)))
	})
	pushLimited(t, e, up.addr, limit)
	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || resp.Header.Get("x-piece") != strconv.Itoa(limit+100) || len(body) != limit+100 {
		t.Errorf("got %d, %d bytes, x-piece %q; want the piece of %d bytes: the queue at the limit is not over it",
			resp.StatusCode, len(body), resp.Header.Get("x-piece"), limit+100)
	}
}

// TestBufferedHeadersStayHeldAfterModeOverride: the headers of a BUFFERED body stay held until the
// body's reply whatever header mode a mode_override leaves in force (processor_state.cc keeps
// headers_ set from onHeaders), so the reply's header mutation applies and its body must match a
// content-length still there (validateContentLength). A content-length the reply sets is ignored
// when the mode in force removes it: an override whose response_header_mode is DEFAULT takes the
// filter-level SKIP (effectiveModeOverride), and BUFFERED with headers SKIP removes content-length
// (shouldRemoveContentLength), so the upstream's stays and a body of another length fails; an
// override that says SEND keeps the content-length the reply sets.
func TestBufferedHeadersStayHeldAfterModeOverride(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case m.GetResponseHeaders() != nil:
			r := continueFor(m)
			r.ModeOverride = &extprocv3.ProcessingMode{RequestBodyMode: extprocv3.ProcessingMode_BUFFERED,
				ResponseBodyMode: extprocv3.ProcessingMode_BUFFERED}
			if path, _ := header(m.GetResponseHeaders().GetHeaders(), "x-seen-path"); path == "/mcp/send" {
				r.ModeOverride.ResponseHeaderMode = extprocv3.ProcessingMode_SEND
			}
			return r
		case m.GetResponseBody() != nil:
			return withCommon(m, &extprocsvc.CommonResponse{
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
					setHeader("x-mutated", "yes", false), setHeader("content-length", "5", false)}},
				BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte("[new]")}}})
		}
		return nil
	}))
	up := jsonUpstream(t) // answers with a content-length
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	resp, body := do(t, "POST", e.url("/mcp/send"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 || body != "[new]" || resp.Header.Get("x-mutated") != "yes" || resp.ContentLength != 5 {
		t.Errorf("override with SEND: %d %q x-mutated %q content-length %d, want 200 [new] with the reply's headers",
			resp.StatusCode, body, resp.Header.Get("x-mutated"), resp.ContentLength)
	}
	resp, body = do(t, "POST", e.url("/mcp/default"), strings.NewReader(`{}`))
	if resp.StatusCode != 500 {
		t.Errorf("override with DEFAULT: %d %q, want 500: the upstream's content-length stays and the new body does not match it", resp.StatusCode, body)
	}
	if l := e.logs(2)[1]; l["details"] != "mismatch_between_content_length_and_the_length_of_the_mutated_body" {
		t.Errorf("override with DEFAULT: details %v", l["details"])
	}
}
