package translator_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/translator"
)

// mcpgateFields returns the contract.MetadataNamespace fields of a route's or cluster's metadata.
func mcpgateFields(md *corev3.Metadata) map[string]string {
	out := map[string]string{}
	for k, v := range md.GetFilterMetadata()[contract.MetadataNamespace].GetFields() {
		out[k] = v.GetStringValue()
	}
	return out
}

// fieldsFrom lists the names of the contract fields set at source.
func fieldsFrom(source contract.MetadataSource) []string {
	var out []string
	for _, f := range contract.Fields() {
		if f.Source == source {
			out = append(out, f.Name)
		}
	}
	return out
}

// TestAccessLogFieldsOfRoutesAndClusters: the access log reads the fields that are constant per
// route (gateway, route) from the route's metadata and those constant per cluster (backend, MCP
// target) from the upstream cluster's, in every golden configuration. Every route has its
// gateway and rule, with or without ext_proc (direct responses and redirects too; the refusal of
// path parameters, which belongs to no rule, its gateway only); every cluster
// carries only cluster fields. Where ext_proc runs, the values are the ones its gRPC initial
// metadata gives it (after Envoy merges the route's and the weighted cluster's configs), so the
// access log and ext_proc's audit line name the same gateway, route, backend and target.
func TestAccessLogFieldsOfRoutesAndClusters(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routeFields, clusterFields := fieldsFrom(contract.FromRoute), fieldsFrom(contract.FromCluster)
	var routes, withoutExtProc, clustersWithFields, agreed int
	for _, in := range ins {
		out := translator.Translate(loadInputs(t, in), readOptions(t, in))
		for _, k := range out.GatewayKeys() {
			g := out.Gateways[k]
			clusters := map[string]*clusterv3.Cluster{}
			for _, c := range g.Clusters {
				clusters[c.Name] = c
				f := mcpgateFields(c.Metadata)
				for name := range f {
					if !slices.Contains(clusterFields, name) {
						t.Errorf("%s: cluster %s has metadata field %q, not a cluster field (%v)", in, c.Name, name, clusterFields)
					}
				}
				if len(f) > 0 {
					clustersWithFields++
				}
			}
			for _, rc := range g.Routes {
				for _, vh := range rc.VirtualHosts {
					for _, r := range vh.Routes {
						routes++
						f := mcpgateFields(r.Metadata)
						if r.Name == translator.RefuseAmbiguousPathsRoute || r.Name == translator.MisdirectedRequestRoute || rc.Name == contract.MuxUpstreamRoutes {
							// no HTTPRoute rule (the mux upstream listener's routes: the front
							// hop's line has it): the gateway only (its own test checks the rest)
							if len(f) != 1 || f[contract.FieldGateway] != k {
								t.Errorf("%s: route %s has metadata %v, want gateway %s only", in, r.Name, f, k)
							}
							continue
						}
						rule, _, _ := strings.Cut(strings.TrimPrefix(r.Name, "httproute/"), "/match/")
						if len(f) != len(routeFields) || f[contract.FieldGateway] != k || f[contract.FieldRoute] != rule {
							t.Errorf("%s: route %s has metadata %v, want gateway %s and route %s", in, r.Name, f, k, rule)
						}
						// What ext_proc gets on each cluster the route may send a request to.
						type pick struct {
							cluster string
							eff     effectivePerRoute
						}
						route := perRouteOf(t, r.TypedPerFilterConfig)
						var picks []pick
						if wc := r.GetRoute().GetWeightedClusters(); wc != nil {
							for _, cw := range wc.Clusters {
								picks = append(picks, pick{cw.Name, mergePerRoute(route, perRouteOf(t, cw.TypedPerFilterConfig))})
							}
						} else {
							picks = append(picks, pick{r.GetRoute().GetCluster(), mergePerRoute(route)})
						}
						for _, p := range picks {
							if p.eff.disabled || p.eff.md == nil {
								withoutExtProc++
								continue
							}
							if clusters[p.cluster] == nil {
								// The share of invalid backendRefs (500): no cluster, so the log
								// has no backend or target, while ext_proc, when the rule's
								// valid backends share one config, runs with theirs.
								continue
							}
							md, cf := p.eff.md, mcpgateFields(clusters[p.cluster].GetMetadata())
							if md[contract.MetadataGateway] != f[contract.FieldGateway] || md[contract.MetadataRoute] != f[contract.FieldRoute] ||
								md[contract.MetadataBackend] != cf[contract.FieldBackend] || md[contract.MetadataTarget] != cf[contract.FieldTarget] {
								t.Errorf("%s: route %s, cluster %s: ext_proc gets %v, the access log reads route %v and cluster %v", in, r.Name, p.cluster, md, f, cf)
							}
							agreed++
						}
					}
				}
			}
		}
	}
	if routes < 50 || withoutExtProc < 5 || clustersWithFields < 10 || agreed < 20 {
		t.Errorf("checked %d routes (%d cluster picks without ext_proc), %d clusters with fields, %d picks where ext_proc and the log agree: too few to mean anything",
			routes, withoutExtProc, clustersWithFields, agreed)
	}
}
