package double_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// echo is an upstream that answers with what it received.
func echo(t *testing.T, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-upstream", name)
		w.Header().Set("x-seen-host", r.Host)
		w.Header().Set("x-seen-path", r.URL.RequestURI())
		for _, h := range []string{"x-request-id", "x-forwarded-proto", "x-route-added", "x-vhost-added", "x-removed", "x-envoy-original-path", "x-envoy-expected-rq-timeout-ms", "user-agent", "accept-encoding"} {
			w.Header().Set("x-seen-"+h, r.Header.Get(h))
		}
		w.Header().Set("x-upstream-removed", "present")
		w.Write([]byte("hello from " + name))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRoutingWithoutExtProc(t *testing.T) {
	e := newEnv(t, answer(nil))
	a, b := echo(t, "a"), echo(t, "b")
	name := listener(t, e.listen, nil, nil).Name
	rewrite := prefixRoute("rewrite", "/old/", "a", nil)
	rewrite.GetRoute().PrefixRewrite = "/new/"
	rewrite.GetRoute().HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "rewritten.example"}
	// The translator's way to drop a client's x-envoy-original-path: removed by the route's
	// header operations, which Envoy applies before the path rewrite that sets its own.
	strip := prefixRoute("strip", "/strip/", "a", nil)
	strip.GetRoute().PrefixRewrite = "/stripped/"
	strip.RequestHeadersToRemove = []string{"x-envoy-original-path"}
	headerRoute := prefixRoute("by-header", "/", "b", nil)
	headerRoute.Match.Headers = []*routev3.HeaderMatcher{{Name: "x-pick", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "b"}}}}}
	exact := &routev3.Route{Name: "exact", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "teapot"}}}}}
	withHeaders := prefixRoute("headers", "/hdr", "a", nil)
	withHeaders.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-route-added", Value: "route"}}}
	withHeaders.RequestHeadersToRemove = []string{"x-removed"}
	withHeaders.ResponseHeadersToRemove = []string{"x-upstream-removed"}
	withHeaders.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-resp-added", Value: "yes"}}}
	noTimeout := prefixRoute("sse", "/sse", "a", nil)
	noTimeout.GetRoute().Timeout = durationpb.New(0)
	vh := vhost("vh-star", []string{"*"}, exact, rewrite, strip, withHeaders, noTimeout, headerRoute, prefixRoute("to-missing", "/missing", "nope", nil),
		prefixRoute("eds-empty", "/empty", "eds", nil), prefixRoute("refused", "/refused", "dead", nil), prefixRoute("default", "/", "a", nil))
	vh.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-vhost-added", Value: "vh"}}}
	exampleVH := vhost("vh-example", []string{"*.example.com"}, prefixRoute("example", "/", "b", nil))
	dead := freeAddr(t) // nothing listens there
	e.push(listener(t, e.listen, nil, nil), routeConfig(name, vh, exampleVH),
		staticCluster("a", a.Listener.Addr().String()), staticCluster("b", b.Listener.Addr().String()),
		staticCluster("dead", dead), edsCluster("eds"), assignment("eds"))

	t.Run("proxies with Host, x-request-id and x-forwarded-proto as Envoy", func(t *testing.T) {
		resp, body := do(t, "GET", e.url("/anything?q=1"), nil, "user-agent", "test-agent", "accept-encoding", "identity")
		if resp.StatusCode != 200 || body != "hello from a" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("x-seen-host"); got != e.listen {
			t.Errorf("upstream Host = %q, want the client's %q", got, e.listen)
		}
		if got := resp.Header.Get("x-seen-path"); got != "/anything?q=1" {
			t.Errorf("upstream path = %q", got)
		}
		if len(resp.Header.Get("x-seen-x-request-id")) != 36 || resp.Header.Get("x-seen-x-forwarded-proto") != "http" {
			t.Errorf("x-request-id %q x-forwarded-proto %q", resp.Header.Get("x-seen-x-request-id"), resp.Header.Get("x-seen-x-forwarded-proto"))
		}
		if got := resp.Header.Get("x-seen-x-envoy-expected-rq-timeout-ms"); got != "15000" {
			t.Errorf("x-envoy-expected-rq-timeout-ms = %q, want the 15 s default", got)
		}
		if resp.Header.Get("x-seen-user-agent") != "test-agent" || resp.Header.Get("x-seen-accept-encoding") != "identity" {
			t.Errorf("user-agent %q / accept-encoding %q changed on the way", resp.Header.Get("x-seen-user-agent"), resp.Header.Get("x-seen-accept-encoding"))
		}
		if resp.Header.Get("server") != "envoy" {
			t.Errorf("server = %q", resp.Header.Get("server"))
		}
	})
	t.Run("route timeout 0 sends no expected timeout", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/sse"), nil)
		if got := resp.Header.Get("x-seen-x-envoy-expected-rq-timeout-ms"); got != "" {
			t.Errorf("x-envoy-expected-rq-timeout-ms = %q", got)
		}
	})
	t.Run("prefix_rewrite and host_rewrite_literal", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/old/x?y=2"), nil)
		if resp.Header.Get("x-seen-path") != "/new/x?y=2" || resp.Header.Get("x-seen-host") != "rewritten.example" ||
			resp.Header.Get("x-seen-x-envoy-original-path") != "/old/x?y=2" {
			t.Errorf("path %q host %q original %q", resp.Header.Get("x-seen-path"), resp.Header.Get("x-seen-host"), resp.Header.Get("x-seen-x-envoy-original-path"))
		}
	})
	t.Run("header operations run before the path rewrite sets x-envoy-original-path", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/strip/x"), nil, "x-envoy-original-path", "/forged")
		if resp.Header.Get("x-seen-path") != "/stripped/x" || resp.Header.Get("x-seen-x-envoy-original-path") != "/strip/x" {
			t.Errorf("path %q original %q, want /stripped/x and the router's own /strip/x", resp.Header.Get("x-seen-path"), resp.Header.Get("x-seen-x-envoy-original-path"))
		}
	})
	t.Run("header match and route order", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/z"), nil, "x-pick", "b")
		if resp.Header.Get("x-upstream") != "b" {
			t.Errorf("x-pick: b went to %q", resp.Header.Get("x-upstream"))
		}
		resp, _ = do(t, "GET", e.url("/z"), nil, "x-pick", "c")
		if resp.Header.Get("x-upstream") != "a" {
			t.Errorf("x-pick: c went to %q", resp.Header.Get("x-upstream"))
		}
	})
	t.Run("virtual host by suffix wildcard; the port counts unless ignored", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/"), nil, "host", "api.example.com")
		if resp.Header.Get("x-upstream") != "b" {
			t.Errorf("api.example.com went to %q", resp.Header.Get("x-upstream"))
		}
		resp, _ = do(t, "GET", e.url("/"), nil, "host", "api.example.com:8080")
		if resp.Header.Get("x-upstream") != "a" {
			t.Errorf("api.example.com:8080 went to %q, want the * virtual host (Envoy matches the port)", resp.Header.Get("x-upstream"))
		}
	})
	t.Run("request and response headers to add and remove", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/hdr"), nil, "x-removed", "gone")
		if resp.Header.Get("x-seen-x-route-added") != "route" || resp.Header.Get("x-seen-x-vhost-added") != "vh" || resp.Header.Get("x-seen-x-removed") != "" {
			t.Errorf("route %q vhost %q removed %q", resp.Header.Get("x-seen-x-route-added"), resp.Header.Get("x-seen-x-vhost-added"), resp.Header.Get("x-seen-x-removed"))
		}
		if resp.Header.Get("x-upstream-removed") != "" || resp.Header.Get("x-resp-added") != "yes" {
			t.Errorf("response headers: removed %q added %q", resp.Header.Get("x-upstream-removed"), resp.Header.Get("x-resp-added"))
		}
	})
	t.Run("direct_response", func(t *testing.T) {
		resp, body := do(t, "GET", e.url("/exact"), nil)
		if resp.StatusCode != 418 || body != "teapot" || resp.Header.Get("content-type") != "text/plain" {
			t.Errorf("got %d %q %q", resp.StatusCode, body, resp.Header.Get("content-type"))
		}
	})
	t.Run("cluster not found: 503 NC", func(t *testing.T) {
		resp, _ := do(t, "GET", e.url("/missing"), nil)
		if resp.StatusCode != 503 {
			t.Errorf("got %d", resp.StatusCode)
		}
	})
	t.Run("no healthy upstream: 503 UH", func(t *testing.T) {
		resp, body := do(t, "GET", e.url("/empty"), nil)
		if resp.StatusCode != 503 || body != "no healthy upstream" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("connection refused: 503 UF", func(t *testing.T) {
		resp, body := do(t, "GET", e.url("/refused"), nil)
		if resp.StatusCode != 503 || body != "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	// No route: a route configuration whose only virtual host does not match.
	logs := e.logs(13) // one line per request above: the last one may still be on its way
	byPath := map[string]map[string]any{}
	for _, l := range logs {
		byPath[l["path"].(string)] = l
	}
	if l := byPath["/empty"]; l["response_flags"] != "UH" || l["response_code"] != float64(503) || l["details"] != "no_healthy_upstream" {
		t.Errorf("/empty log: %v", l)
	}
	if l := byPath["/refused"]; l["response_flags"] != "UF" || l["upstream_host"] != dead ||
		l["details"] != "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}" {
		t.Errorf("/refused log: %v", l)
	}
	if l := byPath["/missing"]; l["response_flags"] != "NC" {
		t.Errorf("/missing log: %v", l)
	}
	// The router rewrites the stream's request headers in place: %REQ(:PATH)% is the forwarded
	// path, and headers the route adds are there.
	if l := byPath["/old/x?y=2"]; l["forwarded_path"] != "/new/x?y=2" {
		t.Errorf("/old/x log: %%REQ(:PATH)%% = %v, want the rewritten path", l["forwarded_path"])
	}
	if l := byPath["/hdr"]; l["route_added"] != "route" {
		t.Errorf("/hdr log: %%REQ(X-ROUTE-ADDED)%% = %v", l["route_added"])
	}
	if l := byPath["/old/x?y=2"]; l["route_name"] != "rewrite" || l["upstream_host"] != a.Listener.Addr().String() || l["response_flags"] != "-" ||
		l["protocol"] != "HTTP/1.1" || l["bytes_sent"] != float64(len("hello from a")) || l["mcp_method"] != nil ||
		!strings.HasPrefix(l["mixed"].(string), "code=200 host=127.0.0.1:") {
		t.Errorf("/old/x log: %v", l)
	}
}

func TestNoRouteIs404(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	l := listener(t, e.listen, nil, nil)
	e.push(l, routeConfig(l.Name, vhost("only", []string{"only.example"}, prefixRoute("r", "/", "a", nil))), staticCluster("a", a.Listener.Addr().String()))
	resp, body := do(t, "GET", e.url("/"), nil)
	if resp.StatusCode != 404 || body != "" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if l := e.logs(1)[0]; l["response_flags"] != "NR" || l["details"] != "route_not_found" {
		t.Errorf("log: %v", l)
	}
}

func TestStateOfTheWorldADS(t *testing.T) {
	e := newEnvADS(t, answer(nil), true)
	a := echo(t, "a")
	l := listener(t, e.listen, nil, nil)
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "a", nil))), staticCluster("a", a.Listener.Addr().String()))
	if resp, body := do(t, "GET", e.url("/"), nil); resp.StatusCode != 200 || body != "hello from a" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	// An update replaces the route over SotW too.
	r := prefixRoute("r", "/", "a", nil)
	r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 204}}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, r)), staticCluster("a", a.Listener.Addr().String()))
	if resp, _ := do(t, "GET", e.url("/"), nil); resp.StatusCode != 204 {
		t.Errorf("after the update: %d", resp.StatusCode)
	}
}
