package xdsconf_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
)

const extProcName = "envoy.filters.http.ext_proc"

// perRouteMetadata is a typed_per_filter_config with an ExtProcPerRoute carrying only
// grpc_initial_metadata (key, value pairs).
func perRouteMetadata(t *testing.T, kv ...string) map[string]*anypb.Any {
	t.Helper()
	ov := &extprocv3.ExtProcOverrides{}
	for i := 0; i+1 < len(kv); i += 2 {
		ov.GrpcInitialMetadata = append(ov.GrpcInitialMetadata, &corev3.HeaderValue{Key: kv[i], Value: kv[i+1]})
	}
	a, err := anypb.New(&extprocv3.ExtProcPerRoute{Override: &extprocv3.ExtProcPerRoute_Overrides{Overrides: ov}})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*anypb.Any{extProcName: a}
}

// TestWeightedClusterInheritsRouteInitialMetadata: Envoy merges the ExtProcPerRoute of every level
// (route configuration, virtual host, route, weighted cluster) with FilterConfigPerRoute(less,
// more), whose mergeGrpcInitialMetadata starts from the less specific list and replaces or appends
// the more specific level's keys. A weighted cluster's config that lacks a key therefore keeps the
// route's value for it: setting only some keys on a cluster does not clear the others. The double
// must reproduce this, as the translator depends on it (a cluster-level config that omits the
// policy key leaves the route's policy in force).
func TestWeightedClusterInheritsRouteInitialMetadata(t *testing.T) {
	route := &routev3.Route{Name: "r", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		TypedPerFilterConfig: perRouteMetadata(t, "x-mcpgate-policy", "route-policy", "x-mcpgate-target", "route-target"),
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
			WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "a", Weight: wrapperspb.UInt32(1), TypedPerFilterConfig: perRouteMetadata(t, "x-mcpgate-target", "a")},
				{Name: "b", Weight: wrapperspb.UInt32(1)},
			}}}}}}
	vh := &routev3.VirtualHost{Name: "vh", Domains: []string{"*"}, Routes: []*routev3.Route{route},
		TypedPerFilterConfig: perRouteMetadata(t, "x-mcpgate-vhost", "vh")}
	rc := compileRC(t, &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh}})
	v := rc.VirtualHosts[0]
	r := v.Routes[0]
	for _, c := range []struct {
		cluster int
		want    map[string]string
	}{
		// Cluster a sets x-mcpgate-target only: the route's policy stays.
		{0, map[string]string{"x-mcpgate-vhost": "vh", "x-mcpgate-policy": "route-policy", "x-mcpgate-target": "a"}},
		// Cluster b has no config: the route's values.
		{1, map[string]string{"x-mcpgate-vhost": "vh", "x-mcpgate-policy": "route-policy", "x-mcpgate-target": "route-target"}},
	} {
		wc := r.Forward.Clusters[c.cluster]
		merged := xdsconf.MergePerRoute(rc.PerFilter.ExtProc[extProcName], v.PerFilter.ExtProc[extProcName], r.PerFilter.ExtProc[extProcName], wc.PerFilter.ExtProc[extProcName])
		got := map[string]string{}
		for _, kv := range merged.InitialMetadata {
			if _, dup := got[kv.Key]; dup {
				t.Errorf("cluster %s: key %s twice in %v", wc.Name, kv.Key, merged.InitialMetadata)
			}
			got[kv.Key] = kv.Value
		}
		if len(got) != len(c.want) {
			t.Errorf("cluster %s: metadata %v, want %v", wc.Name, got, c.want)
		}
		for k, w := range c.want {
			if got[k] != w {
				t.Errorf("cluster %s: %s = %q, want %q (metadata %v)", wc.Name, k, got[k], w, got)
			}
		}
	}
}
