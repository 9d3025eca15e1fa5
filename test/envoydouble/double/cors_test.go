package double_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const corsName = "envoy.filters.http.cors"

// withCors puts the CORS filter first in the chain, as the translator does.
func withCors(t *testing.T) func(*hcmv3.HttpConnectionManager, *listenerv3.Listener) {
	return func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
		f := &hcmv3.HttpFilter{Name: corsName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, &corsv3.Cors{})}}
		h.HttpFilters = append([]*hcmv3.HttpFilter{f}, h.HttpFilters...)
	}
}

// withPolicy adds a CorsPolicy to a typed_per_filter_config.
func withPolicy(t *testing.T, m map[string]*anypb.Any, p *corsv3.CorsPolicy) map[string]*anypb.Any {
	out := map[string]*anypb.Any{corsName: any_(t, p)}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func regex(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
}

func (e *extProc) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.all)
}

// corsHeaders are the response's Access-Control-* headers, name: value, sorted.
func corsHeaders(h http.Header) []string {
	var out []string
	for k, vs := range h {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			out = append(out, strings.ToLower(k)+": "+strings.Join(vs, "|"))
		}
	}
	slices.Sort(out)
	return out
}

// TestCORSFilterAsEnvoy reproduces Envoy's CORS filter first in the chain, before ext_proc:
// a preflight from an allowed origin is answered by the filter (200 with the allow headers, the
// route's response headers not applied, ext_proc given only the answer's response headers on a
// route whose mode sends them, never the request); a preflight from another origin goes down
// the chain (ext_proc refuses it, or the upstream answers); every answer to a CORS request with
// an allowed origin gets Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers,
// ext_proc's immediate responses before the response headers included, a local reply after
// them not; routes without a policy, redirects and requests without Origin are untouched; a
// less specific level's policy fills what the route's leaves unset.
func TestCORSFilterAsEnvoy(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		unauthorized := func(h *extprocsvc.HeaderMutation) *extprocsvc.ProcessingResponse {
			return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}, Body: []byte("Jwt is missing"), Headers: h}}}
		}
		if rh := m.GetRequestHeaders(); rh != nil {
			if _, ok := header(rh.GetHeaders(), "authorization"); !ok {
				return unauthorized(&extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("www-authenticate", `Bearer realm="mcpgate"`, false)}})
			}
		}
		if rh := m.GetResponseHeaders(); rh != nil {
			if p, _ := header(rh.GetHeaders(), "x-seen-path"); p == "/mcp/late" {
				return unauthorized(nil) // a refusal at the response headers: sent directly to the codec
			}
		}
		return nil
	}))
	up := jsonUpstream(t)
	l := listener(t, e.listen, extProcFilter(5*time.Second), withCors(t))
	mcp := prefixRoute("mcp", "/mcp", "up", withPolicy(t, perRoute(t, mcpMode()), &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("http://localhost:6274"), regex(`https://([a-z0-9-]+\.)+example\.com`)},
		AllowMethods:           "GET, POST, DELETE", AllowHeaders: "Authorization, Content-Type, Mcp-Session-Id",
		ExposeHeaders: "Mcp-Session-Id, WWW-Authenticate", MaxAge: "600", AllowCredentials: wrapperspb.Bool(true)}))
	mcp.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-route-added", Value: "yes"}}}
	open := prefixRoute("open", "/open", "up", withPolicy(t, disabled(t), &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("*")}, AllowMethods: "*", AllowHeaders: "*", MaxAge: "5"}))
	plain := prefixRoute("plain", "/plain", "up", disabled(t))
	moved := &routev3.Route{Name: "moved", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/moved"}},
		Action:               &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{HostRedirect: "new.example.com"}},
		TypedPerFilterConfig: withPolicy(t, disabled(t), &corsv3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("*")}})}
	// An allow_credentials false on the route decides: the virtual host's true is not read.
	noCredentials := prefixRoute("no-credentials", "/no-credentials", "up", withPolicy(t, disabled(t),
		&corsv3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("http://localhost:6274")}, AllowCredentials: wrapperspb.Bool(false)}))
	layered := vhost("layered", []string{"layered.example"}, noCredentials, prefixRoute("layered", "/", "up", withPolicy(t, disabled(t),
		&corsv3.CorsPolicy{AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("http://localhost:6274")}, AllowMethods: "POST"})))
	layered.TypedPerFilterConfig = map[string]*anypb.Any{corsName: any_(t, &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("https://vhost.example")}, AllowMethods: "PUT", MaxAge: "30",
		ExposeHeaders: "x-from-vhost", AllowCredentials: wrapperspb.Bool(true)})}
	// forward_not_matching_preflights false on the virtual host (as mcpgate's translator sets it
	// on each route): a route that leaves it unset answers other origins' preflights itself; one
	// that sets it true forwards them (the first level that sets it decides).
	answering := prefixRoute("answering", "/", "up", withPolicy(t, perRoute(t, mcpMode()), &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("http://localhost:6274")}, AllowMethods: "POST", MaxAge: "60", AllowCredentials: wrapperspb.Bool(true)}))
	forwarding := prefixRoute("forwarding", "/forwarding", "up", withPolicy(t, perRoute(t, mcpMode()), &corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{exact("http://localhost:6274")}, ForwardNotMatchingPreflights: wrapperspb.Bool(true)}))
	strict := vhost("strict", []string{"strict.example"}, forwarding, answering)
	strict.TypedPerFilterConfig = map[string]*anypb.Any{corsName: any_(t, &corsv3.CorsPolicy{ForwardNotMatchingPreflights: wrapperspb.Bool(false)})}
	e.push(l, routeConfig(l.Name, layered, strict, vhost("vh", []string{"*"}, mcp, open, plain, moved)), staticCluster("up", up.addr))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	const origin = "http://localhost:6274"
	preflight := func(origin string, extra ...string) []string {
		return append([]string{"origin", origin, "access-control-request-method", "POST"}, extra...)
	}

	t.Run("preflight from an allowed origin is answered by the filter", func(t *testing.T) {
		streams, calls := e.ext.count(), up.count()
		resp, body := do(t, "OPTIONS", e.url("/mcp"), nil, preflight(origin, "access-control-request-headers", "authorization,content-type")...)
		want := []string{"access-control-allow-credentials: true", "access-control-allow-headers: Authorization, Content-Type, Mcp-Session-Id",
			"access-control-allow-methods: GET, POST, DELETE", "access-control-allow-origin: " + origin,
			"access-control-expose-headers: Mcp-Session-Id, WWW-Authenticate", "access-control-max-age: 600"}
		if resp.StatusCode != 200 || body != "" || !slices.Equal(corsHeaders(resp.Header), want) ||
			resp.Header.Get("content-length") != "0" || resp.Header.Get("server") != "envoy" || resp.Header.Get("x-route-added") != "" {
			t.Errorf("got %d %q %v\nwant 200 with %q, content-length 0, server envoy, no route response headers", resp.StatusCode, body, resp.Header, want)
		}
		if up.count() != calls {
			t.Error("the preflight reached the upstream")
		}
		// The answer passes ext_proc's encoder: the route's mode sends response headers, so a
		// stream carries them alone (the filter never saw the request).
		st := e.ext.streams(t, streams+1)[streams]
		if k := kinds(st.messages()); !slices.Equal(k, []string{"response_headers"}) {
			t.Errorf("ext_proc got %v, want [response_headers] only", k)
		}
		if s, _ := header(st.messages()[0].GetResponseHeaders().GetHeaders(), ":status"); s != "200" {
			t.Errorf("ext_proc saw status %q, want 200", s)
		}
		lines := e.logs(1)
		if last := lines[len(lines)-1]; last["details"] != "cors_response" || last["response_code"] != float64(200) || last["route_name"] != "mcp" {
			t.Errorf("access log %v, want details cors_response, 200, route mcp", last)
		}
	})

	t.Run("preflight from a subdomain origin", func(t *testing.T) {
		resp, _ := do(t, "OPTIONS", e.url("/mcp"), nil, preflight("https://a.b.example.com")...)
		if resp.StatusCode != 200 || resp.Header.Get("access-control-allow-origin") != "https://a.b.example.com" {
			t.Errorf("got %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("preflight from another origin goes down the chain", func(t *testing.T) {
		streams := e.ext.count()
		resp, body := do(t, "OPTIONS", e.url("/mcp"), nil, preflight("https://example.com")...)
		if resp.StatusCode != 401 || body != "Jwt is missing" || len(corsHeaders(resp.Header)) != 0 {
			t.Errorf("got %d %q %v, want ext_proc's 401 without CORS headers", resp.StatusCode, body, resp.Header)
		}
		if k := kinds(e.ext.streams(t, streams+1)[streams].messages()); len(k) == 0 || k[0] != "request_headers" {
			t.Errorf("ext_proc got %v, want the request headers", k)
		}
		resp, _ = do(t, "OPTIONS", e.url("/plain"), nil, preflight(origin)...)
		if resp.StatusCode != 200 || resp.Header.Get("x-seen-path") != "/plain" || len(corsHeaders(resp.Header)) != 0 {
			t.Errorf("route without a policy: got %d %v, want the upstream's answer untouched", resp.StatusCode, resp.Header)
		}
	})

	t.Run("forward_not_matching_preflights false answers another origin's preflight", func(t *testing.T) {
		streams, calls := e.ext.count(), up.count()
		resp, body := do(t, "OPTIONS", e.url("/mcp"), nil, append(preflight("https://evil.example"), "host", "strict.example")...)
		want := []string{"access-control-allow-credentials: true", "access-control-allow-methods: POST", "access-control-max-age: 60"}
		if resp.StatusCode != 200 || body != "" || !slices.Equal(corsHeaders(resp.Header), want) {
			t.Errorf("got %d %q %q, want 200 with %q and no Access-Control-Allow-Origin", resp.StatusCode, body, corsHeaders(resp.Header), want)
		}
		if up.count() != calls {
			t.Error("the preflight reached the upstream")
		}
		// As an allowed origin's: ext_proc sees only the filter's answer, going out.
		if k := kinds(e.ext.streams(t, streams+1)[streams].messages()); !slices.Equal(k, []string{"response_headers"}) {
			t.Errorf("ext_proc got %v, want [response_headers] only", k)
		}
		// The route's true decides over the virtual host's false: down the chain, to ext_proc.
		resp, body = do(t, "OPTIONS", e.url("/forwarding"), nil, append(preflight("https://evil.example"), "host", "strict.example")...)
		if resp.StatusCode != 401 || body != "Jwt is missing" || len(corsHeaders(resp.Header)) != 0 {
			t.Errorf("route's forward true: got %d %q %v, want ext_proc's 401 without CORS headers", resp.StatusCode, body, resp.Header)
		}
	})

	t.Run("answers to an allowed origin", func(t *testing.T) {
		want := []string{"access-control-allow-credentials: true", "access-control-allow-origin: " + origin,
			"access-control-expose-headers: Mcp-Session-Id, WWW-Authenticate"}
		resp, _ := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`), "origin", origin, "authorization", "Bearer t")
		if resp.StatusCode != 200 || resp.Header.Get("x-seen-path") != "/mcp" || !slices.Equal(corsHeaders(resp.Header), want) {
			t.Errorf("upstream answer: got %d %v, want %q", resp.StatusCode, resp.Header, want)
		}
		// ext_proc's immediate response is sent through the filter chain: it gets them too.
		resp, body := do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`), "origin", origin)
		if resp.StatusCode != 401 || body != "Jwt is missing" || !slices.Equal(corsHeaders(resp.Header), want) ||
			resp.Header.Get("www-authenticate") == "" || resp.Header.Get("x-route-added") != "yes" {
			t.Errorf("ext_proc's 401: got %d %q %v, want %q", resp.StatusCode, body, resp.Header, want)
		}
		// A local reply once the response headers exist goes straight to the codec.
		resp, _ = do(t, "POST", e.url("/mcp/late"), strings.NewReader(`{}`), "origin", origin, "authorization", "Bearer t")
		if resp.StatusCode != 401 || len(corsHeaders(resp.Header)) != 0 {
			t.Errorf("refusal at the response headers: got %d %v, want 401 without CORS headers", resp.StatusCode, resp.Header)
		}
		// Another origin, or none: nothing.
		for _, o := range []string{"https://example.com", ""} {
			resp, _ = do(t, "POST", e.url("/mcp"), strings.NewReader(`{}`), "origin", o, "authorization", "Bearer t")
			if resp.StatusCode != 200 || len(corsHeaders(resp.Header)) != 0 {
				t.Errorf("origin %q: got %d %v, want no CORS headers", o, resp.StatusCode, resp.Header)
			}
		}
	})

	t.Run("wildcards echo the request", func(t *testing.T) {
		streams := e.ext.count()
		resp, _ := do(t, "OPTIONS", e.url("/open"), nil, "origin", "https://anything.test", "access-control-request-method", "DELETE",
			"access-control-request-headers", "authorization", "access-control-request-headers", "mcp-session-id")
		want := []string{"access-control-allow-headers: authorization,mcp-session-id", "access-control-allow-methods: DELETE",
			"access-control-allow-origin: https://anything.test", "access-control-max-age: 5"}
		if resp.StatusCode != 200 || !slices.Equal(corsHeaders(resp.Header), want) {
			t.Errorf("got %d %q, want %q", resp.StatusCode, corsHeaders(resp.Header), want)
		}
		// Without Access-Control-Request-Headers the echo is an empty value.
		resp, _ = do(t, "OPTIONS", e.url("/open"), nil, "origin", "https://anything.test", "access-control-request-method", "GET")
		if v, ok := resp.Header["Access-Control-Allow-Headers"]; !ok || len(v) != 1 || v[0] != "" {
			t.Errorf("allow-headers %q (present %v), want one empty value", v, ok)
		}
		if e.ext.count() != streams {
			t.Error("ext_proc was called on a route where it is disabled")
		}
		// OPTIONS without Access-Control-Request-Method is no preflight: it is forwarded, and its
		// answer is a CORS answer.
		resp, _ = do(t, "OPTIONS", e.url("/open"), nil, "origin", "https://anything.test")
		if resp.Header.Get("x-seen-path") != "/open" || resp.Header.Get("access-control-allow-origin") != "https://anything.test" ||
			resp.Header.Get("access-control-allow-methods") != "" {
			t.Errorf("OPTIONS without a request method: got %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("no route entry, no CORS", func(t *testing.T) {
		resp, err := http.DefaultTransport.RoundTrip(mustRequest(t, "OPTIONS", e.url("/moved"), preflight(origin)...))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 301 || len(corsHeaders(resp.Header)) != 0 {
			t.Errorf("redirect route: got %d %v, want the redirect without CORS headers", resp.StatusCode, resp.Header)
		}
	})

	t.Run("less specific levels fill what the route leaves unset", func(t *testing.T) {
		resp, _ := do(t, "OPTIONS", e.url("/x"), nil, append(preflight(origin), "host", "layered.example")...)
		want := []string{"access-control-allow-credentials: true", "access-control-allow-methods: POST",
			"access-control-allow-origin: " + origin, "access-control-expose-headers: x-from-vhost", "access-control-max-age: 30"}
		if resp.StatusCode != 200 || !slices.Equal(corsHeaders(resp.Header), want) {
			t.Errorf("got %d %q, want %q", resp.StatusCode, corsHeaders(resp.Header), want)
		}
		// A setting the route sets, even false, is not taken from the virtual host.
		resp, _ = do(t, "OPTIONS", e.url("/no-credentials"), nil, append(preflight(origin), "host", "layered.example")...)
		want = []string{"access-control-allow-methods: PUT", "access-control-allow-origin: " + origin,
			"access-control-expose-headers: x-from-vhost", "access-control-max-age: 30"}
		if resp.StatusCode != 200 || !slices.Equal(corsHeaders(resp.Header), want) {
			t.Errorf("allow_credentials false on the route: got %d %q, want %q", resp.StatusCode, corsHeaders(resp.Header), want)
		}
		// The route's origins decide: the virtual host's are not tried.
		resp, _ = do(t, "GET", e.url("/x"), nil, "origin", "https://vhost.example", "host", "layered.example")
		if len(corsHeaders(resp.Header)) != 0 {
			t.Errorf("virtual host's origin: got %v, want no CORS headers", resp.Header)
		}
	})
}

// mustRequest builds a request with headers (pairs).
func mustRequest(t *testing.T, method, url string, hdr ...string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

// TestCORSNACKs: CorsPolicy fields the double does not reproduce, and a CORS filter anywhere but
// first in the chain, are refused naming the field.
func TestCORSNACKs(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := jsonUpstream(t)
	good := listener(t, e.listen, extProcFilter(time.Second), withCors(t))
	rc := routeConfig(good.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", disabled(t))))
	e.push(good, rc, staticCluster("up", up.addr))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	for _, c := range []struct {
		name   string
		policy *corsv3.CorsPolicy
		field  string
	}{
		{"filter_enabled", &corsv3.CorsPolicy{FilterEnabled: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 50}}}, "filter_enabled"},
		{"shadow_enabled", &corsv3.CorsPolicy{ShadowEnabled: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 50}}}, "shadow_enabled"},
		{"allow_private_network_access", &corsv3.CorsPolicy{AllowPrivateNetworkAccess: wrapperspb.Bool(true)}, "allow_private_network_access"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := routeConfig(good.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", withPolicy(t, disabled(t), c.policy))))
			e.push(good, bad, staticCluster("up", up.addr))
			if n := e.lastNACK(); !strings.Contains(n, `typed_per_filter_config["`+corsName+`"].`+c.field) || !strings.Contains(n, "not implemented") {
				t.Errorf("NACK %q, want one naming %s", n, c.field)
			}
		})
	}
	t.Run("after ext_proc", func(t *testing.T) {
		after := listener(t, e.listen, extProcFilter(time.Second), func(h *hcmv3.HttpConnectionManager, l *listenerv3.Listener) {
			withCors(t)(h, l)
			h.HttpFilters[0], h.HttpFilters[1] = h.HttpFilters[1], h.HttpFilters[0]
		})
		e.push(after, rc, staticCluster("up", up.addr))
		if n := e.lastNACK(); !strings.Contains(n, "http_filters[1]("+corsName+")") || !strings.Contains(n, "first in the chain") {
			t.Errorf("NACK %q, want one naming http_filters[1]", n)
		}
	})
}
