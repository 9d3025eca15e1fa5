package translator_test

import (
	"maps"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/translator"
)

// effectivePerRoute is what ext_proc gets on a request once Envoy has merged the per-route
// configs of its levels (route, then the chosen weighted cluster), as Envoy's ext_proc merges
// them: a more specific disabled wins; an override's processing_mode replaces the less specific
// one; grpc_initial_metadata merges key by key, the more specific value winning and a key set
// only at the less specific level staying.
type effectivePerRoute struct {
	disabled bool
	mode     *extprocv3.ProcessingMode
	md       map[string]string
}

func perRouteOf(t *testing.T, cfg map[string]*anypb.Any) *extprocv3.ExtProcPerRoute {
	t.Helper()
	a := cfg[translator.ExtProcFilterName]
	if a == nil {
		return nil
	}
	pr := &extprocv3.ExtProcPerRoute{}
	if err := a.UnmarshalTo(pr); err != nil {
		t.Fatal(err)
	}
	return pr
}

func mergePerRoute(levels ...*extprocv3.ExtProcPerRoute) effectivePerRoute {
	var e effectivePerRoute
	for _, pr := range levels {
		if pr == nil {
			continue
		}
		if pr.GetDisabled() {
			e = effectivePerRoute{disabled: true}
			continue
		}
		e.disabled = false
		if m := pr.GetOverrides().GetProcessingMode(); m != nil {
			e.mode = m
		}
		for _, h := range pr.GetOverrides().GetGrpcInitialMetadata() {
			if e.md == nil {
				e.md = map[string]string{}
			}
			e.md[h.GetKey()] = h.GetValue()
		}
	}
	return e
}

func (e effectivePerRoute) equal(o effectivePerRoute) bool {
	return e.disabled == o.disabled && proto.Equal(e.mode, o.mode) && maps.Equal(e.md, o.md)
}

// TestWeightedClustersGetExactlyTheirOwnExtProcConfig: when the backendRefs of a rule have
// different ext_proc configs, what ext_proc gets on a request sent to one weighted cluster is
// that cluster's own config, nothing inherited from the route: a plain backend next to an MCP
// one must not be processed as MCP (x-mcpgate-mcp would make ext_proc wait for a body Envoy
// never sends, so the traffic rules reading mcp.* would never run) nor under its policy or
// target. A cluster that has a config of its own must say everything; the share of a missing
// backend gets ext_proc disabled (it answers 500).
func TestWeightedClustersGetExactlyTheirOwnExtProcConfig(t *testing.T) {
	checked, plain := 0, 0
	for _, in := range []string{"testdata/weights-mixed.in.yaml", "testdata/weights.in.yaml"} {
		out := translator.Translate(loadInputs(t, in), translator.Options{})
		checkWeightedPerRoute(t, out, &checked, &plain)
	}
	if checked < 4 || plain != 2 {
		t.Fatalf("checked %d weighted clusters with their own config (%d plain), want at least 4 (2 plain)", checked, plain)
	}
}

// invalidBackendCluster is the cluster name of the weighted share of invalid backendRefs, which
// never exists (Envoy answers 500).
const invalidBackendCluster = "mcpgate_invalid_backend"

func checkWeightedPerRoute(t *testing.T, out *translator.Output, checked, plain *int) {
	for _, k := range out.GatewayKeys() {
		for _, rc := range out.Gateways[k].Routes {
			for _, vh := range rc.VirtualHosts {
				for _, r := range vh.Routes {
					wc := r.GetRoute().GetWeightedClusters()
					if wc == nil {
						continue
					}
					route := perRouteOf(t, r.TypedPerFilterConfig)
					for _, cw := range wc.Clusters {
						own := perRouteOf(t, cw.TypedPerFilterConfig)
						if cw.Name == invalidBackendCluster && !own.GetDisabled() {
							t.Errorf("route %s: the share of an invalid backend runs ext_proc (own config %v), which would audit a call that reaches nothing", r.Name, own)
						}
						if own == nil {
							if route == nil {
								t.Errorf("route %s, cluster %s: no ext_proc config at any level (ext_proc would get no route metadata)", r.Name, cw.Name)
							}
							continue
						}
						*checked++
						got, want := mergePerRoute(route, own), mergePerRoute(own)
						if !got.equal(want) {
							t.Errorf("route %s, cluster %s: ext_proc gets %+v, want the cluster's own %+v", r.Name, cw.Name, got, want)
						}
						if cw.Name == "agentgatewaybackend/default/web" {
							*plain++
							if _, ok := got.md[contract.MetadataMCP]; ok || got.mode.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE {
								t.Errorf("route %s: the plain backend is processed as MCP: %+v", r.Name, got)
							}
							if got.md[contract.MetadataTarget] != "" || got.md[contract.MetadataPolicy] != "AgentgatewayPolicy/default/list-only" {
								t.Errorf("route %s: the plain backend gets another backend's target or policy: %v", r.Name, got.md)
							}
						}
					}
					if route != nil && hasOwnConfigs(t, wc) {
						t.Errorf("route %s: a route-level ext_proc config under weighted clusters with their own lends them its keys", r.Name)
					}
				}
			}
		}
	}
}

// hasOwnConfigs reports whether a weighted cluster has an ext_proc config of its own that does
// not just disable ext_proc (a disabled config takes nothing from the route's).
func hasOwnConfigs(t *testing.T, wc *routev3.WeightedCluster) bool {
	for _, cw := range wc.Clusters {
		if pr := perRouteOf(t, cw.TypedPerFilterConfig); pr != nil && !pr.GetDisabled() {
			return true
		}
	}
	return false
}
