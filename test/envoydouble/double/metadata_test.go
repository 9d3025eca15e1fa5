package double_test

import (
	"fmt"
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// filterMetadata is a Metadata whose filter_metadata namespace ns holds fields.
func filterMetadata(t *testing.T, ns string, fields map[string]any) *corev3.Metadata {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{ns: s}}
}

// TestAccessLogRouteAndClusterMetadata: %METADATA(ROUTE:NS:KEY)% logs the matched route's
// metadata.filter_metadata and %METADATA(CLUSTER:NS:KEY)% the upstream cluster's (the cluster
// %UPSTREAM_CLUSTER% names), which Envoy
// takes when the route is picked (ActiveStream::setRoute: the route entry's cluster, for weighted
// clusters the picked one, if the cluster exists). So a direct response has route metadata but no
// cluster, a route to a cluster that does not exist (503 NC) none either, and a request no route
// matches (404 NR) neither; unavailable is null as a whole value, "-" inside text, and the
// requests ext_proc refuses before the router still have both. %METADATA(DYNAMIC:...)% is
// %DYNAMIC_METADATA(...)%.
func TestAccessLogRouteAndClusterMetadata(t *testing.T) {
	e := newEnv(t, answer(func(m *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		r := continueFor(m)
		if m.GetRequestHeaders() != nil {
			r.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"mcpgate": map[string]any{"method": "GET"}})
			if p, _ := header(m.GetRequestHeaders().GetHeaders(), ":path"); p == "/refused" {
				r.Response = &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}}}
			}
		}
		return r
	}))
	a, b := echo(t, "a"), echo(t, "b")
	format, err := structpb.NewStruct(map[string]any{
		"path": "%REQ(:PATH)%", "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%", "cluster": "%UPSTREAM_CLUSTER%",
		"route": "%METADATA(ROUTE:mcpgate:route)%", "target": "%METADATA(CLUSTER:mcpgate:target)%",
		"route_ns":  "%METADATA(ROUTE:mcpgate)%",
		"short":     "%METADATA(ROUTE:mcpgate:route):3%",
		"text":      "route=%METADATA(ROUTE:mcpgate:route)% target=%METADATA(CLUSTER:mcpgate:target)%",
		"other_key": "%METADATA(CLUSTER:mcpgate:backend)%", "no_ns": "%METADATA(ROUTE)%",
		"dynamic": "%METADATA(DYNAMIC:mcpgate:method)%", "dynamic_old": "%DYNAMIC_METADATA(mcpgate:method)%",
	})
	if err != nil {
		t.Fatal(err)
	}
	l := listener(t, e.listen, extProcFilter(5e9), func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
		h.AccessLog = []*accesslogv3.AccessLog{accessLogWith(t, format)}
	})
	withMD := func(r *routev3.Route, name string) *routev3.Route {
		r.Metadata = filterMetadata(t, "mcpgate", map[string]any{"route": name, "nested": map[string]any{"k": "v"}})
		return r
	}
	fwd := withMD(prefixRoute("fwd", "/fwd", "a", nil), "route-fwd")
	refused := withMD(prefixRoute("refused", "/refused", "a", nil), "route-refused")
	missing := withMD(prefixRoute("missing", "/missing", "nowhere", nil), "route-missing")
	direct := withMD(&routev3.Route{Name: "direct", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/direct"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}}, "route-direct")
	split := withMD(weightedRoute("split", "/split",
		&routev3.WeightedCluster_ClusterWeight{Name: "a", Weight: wrapperspb.UInt32(1)},
		&routev3.WeightedCluster_ClusterWeight{Name: "b", Weight: wrapperspb.UInt32(1)}), "route-split")
	clusterA, clusterB := staticCluster("a", a.Listener.Addr().String()), staticCluster("b", b.Listener.Addr().String())
	for _, c := range []*clusterv3.Cluster{clusterA, clusterB} {
		c.Metadata = filterMetadata(t, "mcpgate", map[string]any{"target": "target-" + c.Name})
	}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, fwd, refused, missing, direct, split)), clusterA, clusterB)
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}

	type want struct {
		code          int
		route, target any
	}
	cases := []struct {
		path string
		want want
	}{
		{"/fwd", want{200, "route-fwd", "target-a"}},
		{"/refused", want{403, "route-refused", "target-a"}}, // answered by ext_proc before the router
		{"/missing", want{503, "route-missing", nil}},        // cluster_not_found: no cluster info
		{"/direct", want{500, "route-direct", nil}},          // no route entry, no cluster
		{"/none", want{404, nil, nil}},                       // no route
	}
	for _, c := range cases {
		if resp, _ := do(t, "GET", e.url(c.path), nil); resp.StatusCode != c.want.code {
			t.Fatalf("GET %s: %d, want %d", c.path, resp.StatusCode, c.want.code)
		}
	}
	// The weighted route logs the cluster each request went to.
	const splits = 16
	upstreams := map[string]int{}
	for range splits {
		resp, _ := do(t, "GET", e.url("/split"), nil)
		upstreams[resp.Header.Get("x-upstream")]++
	}
	logs := e.logs(len(cases) + splits)
	for i, c := range cases {
		got := logs[i]
		if got["path"] != c.path || got["code"] != float64(c.want.code) || got["route"] != c.want.route || got["target"] != c.want.target {
			t.Errorf("GET %s logged %v, want code %d route %v target %v", c.path, got, c.want.code, c.want.route, c.want.target)
		}
		dash := func(v any) string {
			if v == nil {
				return "-"
			}
			return fmt.Sprint(v)
		}
		if text := fmt.Sprintf("route=%s target=%s", dash(c.want.route), dash(c.want.target)); got["text"] != text {
			t.Errorf("GET %s: text %q, want %q", c.path, got["text"], text)
		}
		if (got["cluster"] == nil) != (c.want.target == nil) {
			t.Errorf("GET %s: %%UPSTREAM_CLUSTER%% %v, and %%METADATA(CLUSTER:...)%% %v: both read the same cluster", c.path, got["cluster"], got["target"])
		}
		if got["other_key"] != nil || got["no_ns"] != nil {
			t.Errorf("GET %s: a missing key or namespace must be null: %v, %v", c.path, got["other_key"], got["no_ns"])
		}
		if c.want.route == nil {
			continue
		}
		if ns, _ := got["route_ns"].(map[string]any); ns["route"] != c.want.route || fmt.Sprint(ns["nested"]) != "map[k:v]" {
			t.Errorf("GET %s: the whole namespace is logged as JSON: %v", c.path, got["route_ns"])
		}
		if got["short"] != "rou" {
			t.Errorf("GET %s: a string is truncated to :3, got %v", c.path, got["short"])
		}
		if got["dynamic"] != "GET" || got["dynamic_old"] != "GET" {
			t.Errorf("GET %s: METADATA(DYNAMIC:...) %v and DYNAMIC_METADATA %v, want both GET", c.path, got["dynamic"], got["dynamic_old"])
		}
	}
	logged := map[string]int{}
	for _, got := range logs[len(cases):] {
		if got["route"] != "route-split" {
			t.Errorf("weighted route logged route %v", got["route"])
		}
		logged[fmt.Sprint(got["target"])]++
	}
	if upstreams["a"] == 0 || upstreams["b"] == 0 {
		t.Fatalf("the %d requests to the weighted route all went to one cluster (%v): the test does not check both", splits, upstreams)
	}
	if logged["target-a"] != upstreams["a"] || logged["target-b"] != upstreams["b"] {
		t.Errorf("weighted clusters: upstreams answered %v, the log's cluster targets are %v", upstreams, logged)
	}
}

// TestMetadataOperatorTypes: %METADATA()% types the double does not implement are refused (NACK
// naming the field), as Envoy refuses a type it does not know.
func TestMetadataOperatorTypes(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := echo(t, "up")
	push := func(op string) {
		format, _ := structpb.NewStruct(map[string]any{"x": op})
		l := listener(t, e.listen, nil, func(h *hcmv3.HttpConnectionManager, _ *listenerv3.Listener) {
			h.AccessLog = []*accesslogv3.AccessLog{accessLogWith(t, format)}
		})
		e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, prefixRoute("r", "/", "up", nil))), staticCluster("up", up.Listener.Addr().String()))
	}
	push("%METADATA(ROUTE:mcpgate:x)%")
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	for _, op := range []string{"%METADATA(LISTENER:mcpgate:x)%", "%METADATA(NOPE:mcpgate)%", "%METADATA()%"} {
		before := e.lastNACK()
		push(op)
		if n := e.lastNACK(); n == before || !strings.Contains(n, "json_format.x") {
			t.Errorf("%s: NACK %q, want one naming json_format.x", op, n)
		}
	}
}
