package double_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// mcpSetup pushes a listener with the ext_proc filter, an MCP route (/mcp, BUFFERED both ways),
// a route under policy only (/api), a route with the filter disabled (/plain) and their clusters.
func mcpSetup(t *testing.T, e *env, upstream string, ep *extprocv3.ExternalProcessor) {
	t.Helper()
	l := listener(t, e.listen, ep, nil)
	headersOnly := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SEND, ResponseHeaderMode: extprocv3.ProcessingMode_SKIP}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"},
		prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode(), "x-mcpgate-gateway", gateway, "x-mcpgate-mcp", "streamable-http")),
		prefixRoute("sse", "/sse", "up", perRoute(t, mcpMode(), "x-mcpgate-mcp", "sse")),
		prefixRoute("api", "/api", "up", perRoute(t, headersOnly, "x-mcpgate-policy", "p")),
		prefixRoute("plain", "/plain", "up", disabled(t)),
		prefixRoute("other", "/other", "other", perRoute(t, mcpMode())),
	)), staticCluster("up", upstream), staticCluster("other", upstream))
}

// jsonUpstream answers every POST with a JSON body derived from the request body.
func jsonUpstream(t *testing.T) *httptestServer {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("content-type", "application/json")
		w.Header().Set("x-seen-content-length", r.Header.Get("content-length"))
		w.Header().Set("x-seen-mutated", r.Header.Get("x-mutated"))
		w.Header().Set("x-seen-authority", r.Host)
		w.Header().Set("x-seen-path", r.URL.RequestURI())
		w.Write([]byte(`{"echo":` + string(b) + `}`))
	})
}

func TestExtProcMessagesInOrderWithEnvoysFields(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), "content-type", "application/json")
	if resp.StatusCode != 200 || body != `{"echo":{"jsonrpc":"2.0","id":1,"method":"ping"}}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	st := e.ext.streams(t, 1)[0]
	// Envoy closes the stream by resetting it: the server sees CANCELED.
	if err := st.ended(t); status.Code(err) != codes.Canceled {
		t.Errorf("stream ended with %v, want Canceled", err)
	}
	msgs := st.messages()
	if got := strings.Join(kinds(msgs), ","); got != "request_headers,request_body,response_headers,response_body" {
		t.Fatalf("messages: %s", got)
	}
	rh := msgs[0].GetRequestHeaders()
	if rh.GetEndOfStream() {
		t.Error("request_headers end_of_stream with a body")
	}
	for k, want := range map[string]string{":method": "POST", ":path": "/mcp", ":authority": e.listen, ":scheme": "http", "content-type": "application/json", "x-forwarded-proto": "http"} {
		if v, ok := header(rh.GetHeaders(), k); !ok || v != want {
			t.Errorf("request header %s = %q, want %q", k, v, want)
		}
	}
	for _, h := range rh.GetHeaders().GetHeaders() {
		if h.GetValue() != "" {
			t.Errorf("header %s sent in value, Envoy sends raw_value only", h.GetKey())
		}
	}
	if b := msgs[1].GetRequestBody(); !b.GetEndOfStream() || string(b.GetBody()) != `{"jsonrpc":"2.0","id":1,"method":"ping"}` {
		t.Errorf("request_body: %v", b)
	}
	if v, _ := header(msgs[2].GetResponseHeaders().GetHeaders(), ":status"); v != "200" {
		t.Errorf("response :status %q", v)
	}
	if b := msgs[3].GetResponseBody(); !b.GetEndOfStream() || !strings.HasPrefix(string(b.GetBody()), `{"echo"`) {
		t.Errorf("response_body: %v", b)
	}
	for i, m := range msgs {
		if m.GetMetadataContext() == nil {
			t.Errorf("message %d: metadata_context not set", i)
		}
		if (m.GetProtocolConfig() != nil) != (i == 0) {
			t.Errorf("message %d: protocol_config %v (only on the first)", i, m.GetProtocolConfig())
		}
		// request_attributes go on the first request message only; no response_attributes here.
		if (m.GetAttributes() != nil) != (i == 0) {
			t.Errorf("message %d: attributes %v", i, m.GetAttributes())
		}
	}
	pc := msgs[0].GetProtocolConfig()
	if pc.GetRequestBodyMode() != extprocv3.ProcessingMode_BUFFERED || pc.GetResponseBodyMode() != extprocv3.ProcessingMode_BUFFERED {
		t.Errorf("protocol_config %v", pc)
	}
	src := msgs[0].GetAttributes()["envoy.filters.http.ext_proc"].GetFields()["source.address"].GetStringValue()
	if !strings.HasPrefix(src, "127.0.0.1:") {
		t.Errorf("source.address = %q", src)
	}
	// grpc_initial_metadata: the route's key replaces the filter's, new keys are appended.
	if got := st.md.Get("x-mcpgate-gateway"); len(got) != 1 || got[0] != gateway {
		t.Errorf("x-mcpgate-gateway = %v", got)
	}
	if got := st.md.Get("x-filter-only"); len(got) != 1 || got[0] != "kept" {
		t.Errorf("x-filter-only = %v", got)
	}
	if got := st.md.Get("x-mcpgate-mcp"); len(got) != 1 || got[0] != "streamable-http" {
		t.Errorf("x-mcpgate-mcp = %v", got)
	}
	if got := st.md.Get(":authority"); len(got) != 1 || got[0] != "mcpgate_extproc" {
		t.Errorf(":authority of the ext_proc call = %v, Envoy uses the cluster name", got)
	}

	t.Run("a GET without body: headers with end_of_stream, no body message", func(t *testing.T) {
		do(t, "GET", e.url("/mcp"), nil)
		st := e.ext.streams(t, 2)[1]
		st.ended(t)
		if got := strings.Join(kinds(st.messages()), ","); got != "request_headers,response_headers,response_body" {
			t.Fatalf("messages: %s", got)
		}
		if !st.messages()[0].GetRequestHeaders().GetEndOfStream() {
			t.Error("end_of_stream false on a request without body")
		}
	})
	t.Run("headers-only route: one message, stream closed after it", func(t *testing.T) {
		do(t, "POST", e.url("/api"), strings.NewReader(`x`))
		st := e.ext.streams(t, 3)[2]
		if err := st.ended(t); status.Code(err) != codes.Canceled {
			t.Errorf("ended with %v", err)
		}
		if got := strings.Join(kinds(st.messages()), ","); got != "request_headers" {
			t.Fatalf("messages: %s", got)
		}
		if st.md.Get("x-mcpgate-policy")[0] != "p" {
			t.Errorf("metadata %v", st.md)
		}
	})
	t.Run("disabled route: no stream", func(t *testing.T) {
		resp, _ := do(t, "POST", e.url("/plain"), strings.NewReader(`x`))
		if resp.StatusCode != 200 {
			t.Fatalf("got %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond) // a stream would have been opened before the upstream was called
		if n := len(e.ext.streams(t, 3)); n != 3 {
			t.Errorf("%d streams, want no new one", n)
		}
	})
}

func TestExtProcMutations(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		switch {
		case m.GetRequestHeaders() != nil:
			path, _ := header(m.GetRequestHeaders().GetHeaders(), ":path")
			cr := &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("x-mutated", "yes", false),
					setHeader("host", "evil.example", false), setHeader("x-envoy-blocked", "no", false)},
				RemoveHeaders: []string{"x-drop-me", ":authority"}}}
			if path == "/mcp/reroute" {
				// clear_route_cache with a header mutation: the route is matched again.
				cr.HeaderMutation.SetHeaders = append(cr.HeaderMutation.SetHeaders, setHeader(":path", "/other", false))
				cr.ClearRouteCache = true
			}
			return withCommon(m, cr)
		case m.GetRequestBody() != nil:
			body := string(m.GetRequestBody().GetBody())
			switch body {
			case "replace":
				return withCommon(m, &extprocsvc.CommonResponse{
					HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", "11", false)}},
					BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`"replaced!"`)}}})
			case "mismatch":
				return withCommon(m, &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`"longer than before"`)}}})
			}
		case m.GetResponseHeaders() != nil:
			return withCommon(m, &extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{setHeader("x-added", "one", false), setHeader("x-added", "two", true)}}})
		case m.GetResponseBody() != nil:
			return withCommon(m, &extprocsvc.CommonResponse{
				// The upstream's content-length must be fixed in the same reply (Envoy's rule).
				HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("x-from-body-reply", "held", false),
					setHeader("content-length", "18", false)}},
				BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`{"rewritten":true}`)}}})
		}
		return nil
	}))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`replace`), "x-drop-me", "1")
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, e.logs(1)[0]["details"])
	}
	// The response body was replaced in the BUFFERED response reply, whose header mutation
	// applies because the headers are still held.
	if body != `{"rewritten":true}` || resp.Header.Get("x-from-body-reply") != "held" {
		t.Errorf("response body %q, x-from-body-reply %q", body, resp.Header.Get("x-from-body-reply"))
	}
	if got := resp.Header.Values("x-added"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("x-added = %v, want overwrite then append", got)
	}
	// What the upstream saw: the mutated request.
	seen := up.last()
	if seen.body != `"replaced!"` || seen.header.Get("x-mutated") != "yes" || seen.header.Get("x-drop-me") != "" {
		t.Errorf("upstream saw body %q x-mutated %q x-drop-me %q", seen.body, seen.header.Get("x-mutated"), seen.header.Get("x-drop-me"))
	}
	if seen.host != e.listen || seen.header.Get("x-envoy-blocked") != "" {
		t.Errorf("blocked mutations applied: host %q x-envoy-blocked %q", seen.host, seen.header.Get("x-envoy-blocked"))
	}
	// The body reply set content-length to the new body's (BUFFERED with headers sent keeps it).
	if seen.contentLength != 11 {
		t.Errorf("upstream content-length %d, want 11", seen.contentLength)
	}

	t.Run("content-length mismatch after a BUFFERED body mutation is a 500", func(t *testing.T) {
		resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`mismatch`))
		if resp.StatusCode != 500 {
			t.Errorf("got %d", resp.StatusCode)
		}
	})
	t.Run("clear_route_cache matches the route again", func(t *testing.T) {
		before := up.count()
		resp, _ := do(t, "POST", e.url("/mcp/reroute"), strings.NewReader(`x`))
		if resp.StatusCode != 200 || up.count() != before+1 || up.last().path != "/other" {
			t.Errorf("got %d, upstream path %q", resp.StatusCode, up.last().path)
		}
		var found bool
		for _, l := range e.logs(3) {
			found = found || l["route_name"] == "other"
		}
		if !found {
			t.Error("no access log line with route_name other")
		}
	})
}

func TestImmediateResponse(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if m.GetRequestHeaders() == nil {
			return nil
		}
		path, _ := header(m.GetRequestHeaders().GetHeaders(), ":path")
		im := &extprocsvc.ImmediateResponse{Body: []byte("Jwt is missing"), Details: "jwt missing",
			Headers: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("www-authenticate", `Bearer realm="mcpgate"`, false)}}}
		switch path {
		case "/mcp/401":
			im.Status = &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}
		case "/mcp/json":
			im.Status = &typev3.HttpStatus{Code: typev3.StatusCode_OK}
			im.Body = []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: x"}}`)
			im.Headers.SetHeaders = append(im.Headers.SetHeaders, setHeader("content-type", "application/json", false))
		default: // no status: Envoy answers 200
		}
		dm, _ := structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"method": "tools/call", "tool": "x"}})
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: im}, DynamicMetadata: dm}
	}))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))

	resp, body := do(t, "POST", e.url("/mcp/401"), strings.NewReader(`{}`))
	if resp.StatusCode != 401 || body != "Jwt is missing" || resp.Header.Get("www-authenticate") != `Bearer realm="mcpgate"` ||
		resp.Header.Get("content-type") != "text/plain" {
		t.Errorf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = do(t, "POST", e.url("/mcp/nostatus"), strings.NewReader(`{}`))
	if resp.StatusCode != 200 {
		t.Errorf("no status: got %d, want 200", resp.StatusCode)
	}
	resp, body = do(t, "POST", e.url("/mcp/json"), strings.NewReader(`{}`))
	if resp.Header.Get("content-type") != "application/json" || !strings.Contains(body, "-32602") {
		t.Errorf("json: %q %q", resp.Header.Get("content-type"), body)
	}
	if up.count() != 0 {
		t.Errorf("the upstream saw %d requests", up.count())
	}
	l := e.logs(3)[0]
	if l["response_code"] != float64(401) || l["details"] != "jwt_missing" || l["mcp_method"] != "tools/call" || l["mcp_tool"] != "x" {
		t.Errorf("access log: %v", l)
	}
	// The local reply is not sent back to ext_proc: one message per stream.
	for _, st := range e.ext.streams(t, 3) {
		st.ended(t)
		if got := strings.Join(kinds(st.messages()), ","); got != "request_headers" {
			t.Errorf("messages %s", got)
		}
	}
}

func TestDynamicMetadataOnlyFromReceivingNamespaces(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		r := continueFor(m)
		if m.GetRequestBody() != nil {
			r.DynamicMetadata, _ = structpb.NewStruct(map[string]any{
				"mcpgate": map[string]any{"method": "tools/call"},
				"other":   map[string]any{"method": "dropped"}})
		}
		if m.GetResponseBody() != nil {
			r.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"tool": "fetch"}})
		}
		return r
	}))
	up := jsonUpstream(t)
	mcpSetup(t, e, up.addr, extProcFilter(5*time.Second))
	do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`))
	l := e.logs(1)[0]
	if l["mcp_method"] != "tools/call" || l["mcp_tool"] != "fetch" {
		t.Errorf("mcpgate metadata merged across replies: %v", l)
	}
	if _, ok := l["other_ns"]; !ok || l["other_ns"] != nil {
		t.Errorf("namespace other must be dropped and logged as null: %v", l["other_ns"])
	}
}

func TestBufferedRequestOverTheLimitIs413(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), nil)
	l.PerConnectionBufferLimitBytes.Value = 1024
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("mcp", "/mcp", "up", perRoute(t, mcpMode())))),
		staticCluster("up", up.addr))
	resp, _ := do(t, "POST", e.url("/mcp"), bytes.NewReader(make([]byte, 2048)))
	if resp.StatusCode != 413 {
		t.Errorf("got %d, want 413", resp.StatusCode)
	}
	resp, _ = do(t, "POST", e.url("/mcp"), bytes.NewReader(make([]byte, 1000)))
	if resp.StatusCode != 200 {
		t.Errorf("under the limit: got %d", resp.StatusCode)
	}
	if up.count() != 1 {
		t.Errorf("upstream saw %d requests", up.count())
	}
}

func TestRouteOrderUsesRDSUpdatesWithoutDroppingStreams(t *testing.T) {
	// A new version applies to new requests; the route configuration update does not drop a
	// request in flight.
	release := make(chan struct{})
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Write([]byte("v-" + r.URL.Path))
	})
	l := listener(t, e.listen, nil, nil)
	rc := routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", nil)))
	e.push(l, rc, staticCluster("up", up.addr))
	done := make(chan string)
	go func() {
		resp, err := http.Get(e.url("/slow"))
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	waitFor(t, "the slow request upstream", func() bool { return up.count() == 1 })
	rc2 := routeConfig(l.Name, vhost("vh", []string{"*"}, &routev3.Route{Name: "direct", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "v2"}}}}}))
	e.push(l, rc2, staticCluster("up", up.addr))
	if _, body := do(t, "GET", e.url("/new"), nil); body != "v2" {
		t.Errorf("new request got %q", body)
	}
	close(release)
	if got := <-done; got != "v-/slow" {
		t.Errorf("request in flight got %q", got)
	}
}
