package double_test

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cookiev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/stateful_session/cookie/v3"
	headerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/stateful_session/header/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/type/http/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestNACKsWhatItDoesNotReproduce: each refused resource is NACKed with a message naming the
// resource and the field, and the last good version keeps serving.
func TestNACKsWhatItDoesNotReproduce(t *testing.T) {
	e := newEnv(t, answer(nil))
	a := echo(t, "a")
	good := listener(t, e.listen, extProcFilter(time.Second), nil)
	rc := routeConfig(good.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "a", disabled(t))))
	e.push(good, rc, staticCluster("a", a.Listener.Addr().String()))
	if resp, _ := do(t, "GET", e.url("/"), nil); resp.StatusCode != 200 {
		t.Fatalf("good config: %d", resp.StatusCode)
	}

	cases := []struct {
		name string
		mod  func(*hcmv3.HttpConnectionManager, *listenerv3.Listener)
		rc   *routev3.RouteConfiguration
		want []string
	}{
		{name: "unknown HTTP filter", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{
				TypedConfig: any_(t, &structpb.Struct{})}}}, h.HttpFilters...)
		}, want: []string{good.Name, "http_filters[0](envoy.filters.http.cors)", "not implemented"}},
		{name: "ext_proc body mode the double does not implement", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			f := extProcFilter(time.Second)
			f.ProcessingMode.ResponseBodyMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
			f.ProcessingMode.ResponseTrailerMode = extprocv3.ProcessingMode_SEND
			h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, f)}
		}, want: []string{"processing_mode.response_body_mode", "FULL_DUPLEX_STREAMED"}},
		{name: "ext_proc BUFFERED_PARTIAL request body (reproduced for responses only)", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			f := extProcFilter(time.Second)
			f.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_BUFFERED_PARTIAL
			h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, f)}
		}, want: []string{"processing_mode.request_body_mode", "BUFFERED_PARTIAL", "not implemented"}},
		{name: "stateful session with the cookie session state", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{statefulFilter(t, &statefulv3.StatefulSession{SessionState: &corev3.TypedExtensionConfig{
				Name: "envoy.http.stateful_session.cookie", TypedConfig: any_(t, &cookiev3.CookieBasedSessionState{Cookie: &httpv3.Cookie{Name: "s"}})}})}, h.HttpFilters...)
		}, want: []string{"http_filters[0](" + statefulName + ").typed_config.session_state.name", "envoy.http.stateful_session.cookie", "not implemented"}},
		{name: "stateful session with the header session state", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{statefulFilter(t, &statefulv3.StatefulSession{SessionState: &corev3.TypedExtensionConfig{
				Name: "envoy.http.stateful_session.header", TypedConfig: any_(t, &headerv3.HeaderBasedSessionState{Name: "x-session"})}})}, h.HttpFilters...)
		}, want: []string{"session_state.name", "envoy.http.stateful_session.header", "not implemented"}},
		{name: "strict stateful session", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			cfg := envelopeSession(t, "mcp-session-id")
			cfg.Strict = true
			h.HttpFilters = append([]*hcmv3.HttpFilter{statefulFilter(t, cfg)}, h.HttpFilters...)
		}, want: []string{"http_filters[0](" + statefulName + ").typed_config.strict", "not implemented"}},
		{name: "second stateful session filter", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{statefulFilter(t, envelopeSession(t, "a")), statefulFilter(t, envelopeSession(t, "b"))}, h.HttpFilters...)
		}, want: []string{"http_filters[1]", "second stateful_session filter"}},
		{name: "per-route stateful session with the cookie session state", rc: routeConfig(good.Name, vhost("vh", []string{"*"},
			prefixRoute("r", "/", "a", statefulPerRoute(t, &statefulv3.StatefulSessionPerRoute{Override: &statefulv3.StatefulSessionPerRoute_StatefulSession{
				StatefulSession: &statefulv3.StatefulSession{SessionState: &corev3.TypedExtensionConfig{Name: "envoy.http.stateful_session.cookie",
					TypedConfig: any_(t, &cookiev3.CookieBasedSessionState{Cookie: &httpv3.Cookie{Name: "s"}})}}}})))),
			want: []string{`routes[0].typed_per_filter_config["` + statefulName + `"].stateful_session.session_state.name`, "cookie"}},
		{name: "unsupported HCM field", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.RequestTimeout = durationpb.New(time.Second)
		}, want: []string{good.Name, "request_timeout"}},
		{name: "HTTP protocol option that changes answers", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxStreamDuration: durationpb.New(time.Second)}
		}, want: []string{good.Name, "common_http_protocol_options.max_stream_duration"}},
		{name: "unimplemented attribute", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			f := extProcFilter(time.Second)
			f.RequestAttributes = append(f.RequestAttributes, "connection.requested_server_name")
			h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: any_(t, f)}
		}, want: []string{"request_attributes[1]", "connection.requested_server_name"}},
		{name: "access log operator the double does not write", mod: func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			f, _ := structpb.NewStruct(map[string]any{"x": "%UPSTREAM_TRANSPORT_FAILURE_REASON%"})
			h.AccessLog[0] = accessLogWith(t, f)
		}, want: []string{"access_log[0]", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"}},
		{name: "retry policy", rc: routeConfig(good.Name, vhost("vh", []string{"*"}, func() *routev3.Route {
			r := prefixRoute("r", "/", "a", disabled(t))
			r.GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(2)}
			return r
		}())), want: []string{`route_configuration "` + good.Name + `"`, "virtual_hosts[0](vh).routes[0].route.retry_policy"}},
		{name: "header value with a command operator", rc: routeConfig(good.Name, vhost("vh", []string{"*"}, func() *routev3.Route {
			r := prefixRoute("r", "/", "a", disabled(t))
			r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-client", Value: "%DOWNSTREAM_REMOTE_ADDRESS%"}}}
			return r
		}())), want: []string{"request_headers_to_add[0].header.value", "command operators"}},
		{name: "weighted cluster random value from a header", rc: routeConfig(good.Name, vhost("vh", []string{"*"}, func() *routev3.Route {
			r := weightedRoute("r", "/", &routev3.WeightedCluster_ClusterWeight{Name: "a", Weight: wrapperspb.UInt32(1)})
			r.GetRoute().GetWeightedClusters().RandomValueSpecifier = &routev3.WeightedCluster_HeaderName{HeaderName: "x-random"}
			return r
		}())), want: []string{"virtual_hosts[0](vh).routes[0].route.weighted_clusters.header_name"}},
		{name: "weighted clusters whose weights sum to 0", rc: routeConfig(good.Name, vhost("vh", []string{"*"},
			weightedRoute("r", "/", &routev3.WeightedCluster_ClusterWeight{Name: "a", Weight: wrapperspb.UInt32(0)}))),
			want: []string{"routes[0].route.weighted_clusters.clusters", "sum of the weights is 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, r := good, rc
			if c.mod != nil {
				l = listener(t, e.listen, extProcFilter(time.Second), c.mod)
			}
			if c.rc != nil {
				r = c.rc
			}
			e.push(l, r, staticCluster("a", a.Listener.Addr().String()))
			msg := e.lastNACK()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("NACK %q does not name %q", msg, w)
				}
			}
			// The last good version keeps serving.
			if resp, body := do(t, "GET", e.url("/"), nil); resp.StatusCode != 200 || body != "hello from a" {
				t.Errorf("after the NACK: %d %q", resp.StatusCode, body)
			}
			// Back to good before the next case.
			e.push(good, rc, staticCluster("a", a.Listener.Addr().String()))
		})
	}
}
