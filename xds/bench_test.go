package xds_test

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/xds"
	"github.com/mcpgate/mcpgate/xds/internal/xdstest"
)

// BenchmarkUpdate measures Update for one gateway of n routes, n clusters and n policies where
// one route changes per call: building and hashing the snapshot, comparing it with the served
// one and setting it (no client connected; pushing is measured by cmd/mcpgate's
// BenchmarkFileEditToSnapshot).
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			base := xdstest.Gateway(gw, 9000, "/")
			rc := base[rds][0].(*routev3.RouteConfiguration)
			cl := base[cds][0].(*clusterv3.Cluster)
			route := rc.GetVirtualHosts()[0].GetRoutes()[0]
			var clusters, policies []proto.Message
			for i := range n {
				c := proto.CloneOf(cl)
				c.Name = fmt.Sprintf("cluster-%d", i)
				clusters = append(clusters, c)
				policies = append(policies, xdstest.Policy(fmt.Sprintf("policy-%d", i)))
			}
			build := func(edit int) map[string]map[string][]proto.Message {
				r := proto.CloneOf(rc)
				r.VirtualHosts[0].Routes = nil
				for i := range n {
					rt := proto.CloneOf(route)
					rt.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: fmt.Sprintf("/r%d", i)}
					if i == 0 {
						rt.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: fmt.Sprintf("/edit-%d", edit)}
					}
					rt.GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: fmt.Sprintf("cluster-%d", i)}
					r.VirtualHosts[0].Routes = append(r.VirtualHosts[0].Routes, rt)
				}
				g := map[string][]proto.Message{lds: base[lds], rds: {r}, cds: clusters, policy: policies}
				return map[string]map[string][]proto.Message{gw: g, contract.AllGateways: {policy: policies}}
			}
			srv := xds.New(nil)
			inputs := []map[string]map[string][]proto.Message{build(0), build(1)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := srv.Update(inputs[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
