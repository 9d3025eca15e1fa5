package double_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// weightedRoute is a prefix route to weighted clusters.
func weightedRoute(name, prefix string, clusters ...*routev3.WeightedCluster_ClusterWeight) *routev3.Route {
	return &routev3.Route{Name: name, Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
			WeightedClusters: &routev3.WeightedCluster{Clusters: clusters}}}}}
}

func appendHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD}
}

// TestWeightedClustersUseHashPolicy: with use_hash_policy Envoy picks the weighted cluster with the
// route's hash_policy hash (xxHash64 of the header value) modulo the total weight, in the clusters'
// order, so a session sticks to one cluster; a request without the header still gets a cluster
// (the stream's random value).
func TestWeightedClustersUseHashPolicy(t *testing.T) {
	e := newEnv(t, answer(nil))
	a, b := echo(t, "a"), echo(t, "b")
	l := listener(t, e.listen, nil, nil)
	r := weightedRoute("split", "/",
		&routev3.WeightedCluster_ClusterWeight{Name: "a", Weight: wrapperspb.UInt32(1)},
		&routev3.WeightedCluster_ClusterWeight{Name: "b", Weight: wrapperspb.UInt32(3)})
	r.GetRoute().GetWeightedClusters().RandomValueSpecifier = &routev3.WeightedCluster_UseHashPolicy{UseHashPolicy: wrapperspb.Bool(true)}
	r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "mcp-session-id"}}}}
	e.push(l, routeConfig(l.Name, vhost("vh", []string{"*"}, r)),
		staticCluster("a", a.Listener.Addr().String()), staticCluster("b", b.Listener.Addr().String()))
	if n := e.lastNACK(); n != "" {
		t.Fatalf("NACK: %s", n)
	}
	used := map[string]int{}
	for s := 0; s < 24; s++ {
		session := fmt.Sprintf("session-%d", s)
		want := "b"
		if xxhash.Sum64String(session)%4 < 1 { // [0,1) is a, [1,4) is b
			want = "a"
		}
		for i := 0; i < 2; i++ {
			resp, _ := do(t, "GET", e.url("/"), nil, "mcp-session-id", session)
			if got := resp.Header.Get("x-upstream"); got != want {
				t.Errorf("session %s request %d went to %q, want %q (hash mod total weight)", session, i, got, want)
			}
		}
		used[want]++
	}
	if used["a"] == 0 || used["b"] == 0 {
		t.Fatalf("the sessions chosen map to %v: the test does not check both clusters", used)
	}
	if resp, _ := do(t, "GET", e.url("/"), nil); resp.StatusCode != 200 {
		t.Errorf("without the hash header: %d", resp.StatusCode)
	}
}

// TestWeightedClusterHeadersAndHostRewrite: a weighted cluster's header operations are applied
// before the route's, virtual host's and route configuration's (WeightedClusterEntry::
// finalizeRequestHeaders), whatever most_specific_header_mutations_wins says, on requests and
// responses; its host_rewrite_literal applies unless the route rewrites the host too (the route's
// is applied after it).
func TestWeightedClusterHeadersAndHostRewrite(t *testing.T) {
	e := newEnv(t, answer(nil))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-seen-order", strings.Join(r.Header.Values("x-order"), ","))
		w.Header().Set("x-seen-host", r.Host)
		w.Header().Set("x-seen-drop", r.Header.Get("x-drop"))
	})
	cluster := func() *routev3.WeightedCluster_ClusterWeight {
		return &routev3.WeightedCluster_ClusterWeight{Name: "up", Weight: wrapperspb.UInt32(1),
			HostRewriteSpecifier:   &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: "cluster.example"},
			RequestHeadersToAdd:    []*corev3.HeaderValueOption{appendHeader("x-order", "cluster")},
			RequestHeadersToRemove: []string{"x-drop"},
			ResponseHeadersToAdd:   []*corev3.HeaderValueOption{appendHeader("x-resp-order", "cluster")}}
	}
	plain := weightedRoute("plain", "/plain", cluster())
	hostRoute := weightedRoute("host", "/host", cluster())
	hostRoute.GetRoute().HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "route.example"}
	// auto_host_rewrite applies when the upstream connection is ready, only with a hostname: a
	// STATIC endpoint has none, so the cluster's literal stays.
	autoRoute := weightedRoute("auto", "/auto", cluster())
	autoRoute.GetRoute().HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
	for _, r := range []*routev3.Route{plain, hostRoute, autoRoute} {
		r.RequestHeadersToAdd = []*corev3.HeaderValueOption{appendHeader("x-order", "route")}
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{appendHeader("x-resp-order", "route")}
	}
	vh := vhost("vh", []string{"*"}, plain, hostRoute, autoRoute)
	vh.RequestHeadersToAdd = []*corev3.HeaderValueOption{appendHeader("x-order", "vhost")}
	vh.ResponseHeadersToAdd = []*corev3.HeaderValueOption{appendHeader("x-resp-order", "vhost")}
	l := listener(t, e.listen, nil, nil)
	for _, mostSpecificWins := range []bool{false, true} {
		rc := routeConfig(l.Name, vh)
		rc.RequestHeadersToAdd = []*corev3.HeaderValueOption{appendHeader("x-order", "config")}
		rc.ResponseHeadersToAdd = []*corev3.HeaderValueOption{appendHeader("x-resp-order", "config")}
		rc.MostSpecificHeaderMutationsWins = mostSpecificWins
		e.push(l, rc, staticCluster("up", up.addr))
		if n := e.lastNACK(); n != "" {
			t.Fatalf("NACK: %s", n)
		}
		want := "cluster,route,vhost,config"
		if mostSpecificWins {
			want = "cluster,config,vhost,route"
		}
		resp, _ := do(t, "GET", e.url("/plain"), nil, "x-drop", "client")
		if got := resp.Header.Get("x-seen-order"); got != want {
			t.Errorf("most_specific_header_mutations_wins=%v: request headers applied %s, want %s", mostSpecificWins, got, want)
		}
		if got := strings.Join(resp.Header.Values("x-resp-order"), ","); got != want {
			t.Errorf("most_specific_header_mutations_wins=%v: response headers applied %s, want %s", mostSpecificWins, got, want)
		}
		if got := resp.Header.Get("x-seen-host"); got != "cluster.example" {
			t.Errorf("host %q, want the weighted cluster's host_rewrite_literal", got)
		}
		if got := resp.Header.Get("x-seen-drop"); got != "" {
			t.Errorf("x-drop reached the upstream (%q): the weighted cluster removes it", got)
		}
		resp, _ = do(t, "GET", e.url("/host"), nil)
		if got := resp.Header.Get("x-seen-host"); got != "route.example" {
			t.Errorf("host %q, want the route's host_rewrite_literal, applied after the cluster's", got)
		}
		resp, _ = do(t, "GET", e.url("/auto"), nil)
		if got := resp.Header.Get("x-seen-host"); got != "cluster.example" {
			t.Errorf("host %q, want the cluster's host_rewrite_literal (auto_host_rewrite without hostname)", got)
		}
	}
}
