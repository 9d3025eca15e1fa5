package translator_test

import (
	"strconv"
	"strings"
	"testing"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/translator"
)

// valuesRoute is testdata/invalid-values.in.yaml with its HTTPRoute "values" replaced by one rule
// that sends to backend app with the given filters and backendRefs (nil: one to app).
func valuesRoute(t *testing.T, filters []gwv1.HTTPRouteFilter, refs []gwv1.HTTPBackendRef) *translator.Resources {
	t.Helper()
	res := loadInputs(t, "testdata/invalid-values.in.yaml")
	if refs == nil {
		refs = []gwv1.HTTPBackendRef{backendRef("app", 1)}
	}
	for _, r := range res.HTTPRoutes {
		if r.Name == "values" {
			r.Spec.Rules = []gwv1.HTTPRouteRule{{Filters: filters, BackendRefs: refs}}
		}
	}
	return res
}

func backendRef(name string, weight int32) gwv1.HTTPBackendRef {
	g, k := gwv1.Group("agentgateway.dev"), gwv1.Kind("AgentgatewayBackend")
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{
		BackendObjectReference: gwv1.BackendObjectReference{Group: &g, Kind: &k, Name: gwv1.ObjectName(name)}, Weight: &weight}}
}

// translateValid translates res and fails when a generated resource would be refused by Envoy.
func translateValid(t *testing.T, res *translator.Resources) *translator.Output {
	t.Helper()
	out := translator.Translate(res, translator.Options{})
	for k, g := range out.Gateways {
		if err := g.Validate(); err != nil {
			t.Fatalf("gateway %s: %v", k, err)
		}
	}
	return out
}

// problemOn returns the message of the problem of HTTPRoute default/values on field, or "".
func problemOn(out *translator.Output, field string) string {
	for _, p := range out.Status.Problems() {
		if p.Kind == translator.KindHTTPRoute && p.Name == "values" && p.Field == field {
			return p.Message
		}
	}
	return ""
}

// TestHeaderValueLength: a header value is at most 16384 bytes as Envoy gets it, each "%" written
// "%%": one byte more refuses the rule (field named), never the RouteConfiguration.
func TestHeaderValueLength(t *testing.T) {
	for _, c := range []struct {
		value string
		ok    bool
	}{
		{strings.Repeat("v", 16384), true},
		{strings.Repeat("v", 16385), false},
		{"%" + strings.Repeat("v", 16382), true}, // 16384 once escaped
		{"%" + strings.Repeat("v", 16383), false},
	} {
		for _, typ := range []gwv1.HTTPRouteFilterType{gwv1.HTTPRouteFilterRequestHeaderModifier, gwv1.HTTPRouteFilterResponseHeaderModifier} {
			h := &gwv1.HTTPHeaderFilter{Add: []gwv1.HTTPHeader{{Name: "x-long", Value: c.value}}}
			f := gwv1.HTTPRouteFilter{Type: typ, RequestHeaderModifier: h}
			field := "spec.rules[0].filters[0].requestHeaderModifier.add[0].value"
			if typ == gwv1.HTTPRouteFilterResponseHeaderModifier {
				f = gwv1.HTTPRouteFilter{Type: typ, ResponseHeaderModifier: h}
				field = "spec.rules[0].filters[0].responseHeaderModifier.add[0].value"
			}
			out := translateValid(t, valuesRoute(t, []gwv1.HTTPRouteFilter{f}, nil))
			msg := problemOn(out, field)
			if c.ok != (msg == "") {
				t.Errorf("%s, %d bytes with %d %%: problem %q, want one: %v", typ, len(c.value), strings.Count(c.value, "%"), msg, !c.ok)
			}
			if !c.ok && !strings.Contains(msg, "over the 16384") {
				t.Errorf("%s: message %q does not name the limit", typ, msg)
			}
		}
	}
}

// TestWeightSum: Envoy refuses weighted clusters whose weights sum over MaxUint32 with the whole
// RouteConfiguration. Each weight is at most 1,000,000, and a rule whose weights, its invalid
// backendRefs' included, sum over MaxUint32 is refused, without the sum wrapping around.
func TestWeightSum(t *testing.T) {
	for _, c := range []struct {
		name, backend string
		n             int
		refused       bool
	}{
		{"valid refs under the limit", "app", 4294, false},
		{"valid refs over the limit", "app", 4295, true},
		{"invalid refs over the limit", "missing", 4295, true},
		{"invalid refs that wrapped to 1 as uint32", "missing", 4296, true}, // 4296e6 - 2^32 = 32704
	} {
		t.Run(c.name, func(t *testing.T) {
			refs := make([]gwv1.HTTPBackendRef, c.n)
			for i := range refs {
				refs[i] = backendRef(c.backend, 1_000_000)
			}
			out := translateValid(t, valuesRoute(t, nil, refs))
			msg := problemOn(out, "spec.rules[0].backendRefs")
			if c.refused != (msg != "") {
				t.Fatalf("problem %q, want one: %v", msg, c.refused)
			}
			if c.refused && !strings.Contains(msg, "over the 4294967295 Envoy takes") {
				t.Errorf("message %q", msg)
			}
			rc := out.Gateways["default/gw"].Routes[0]
			for _, vh := range rc.VirtualHosts {
				for _, r := range vh.Routes {
					if !strings.HasPrefix(r.Name, "httproute/default/values/") {
						continue
					}
					var sum uint64
					for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
						sum += uint64(cw.GetWeight().GetValue())
					}
					if c.refused && r.GetDirectResponse().GetStatus() != 500 {
						t.Errorf("route %s: not a 500", r.Name)
					}
					if !c.refused && sum != uint64(c.n)*1_000_000 {
						t.Errorf("route %s: weights sum to %d, want %d", r.Name, sum, c.n*1_000_000)
					}
				}
			}
		})
	}
	// one weight over Gateway API's maximum: the ref is refused, its share (1,000,000) answers 500
	out := translateValid(t, valuesRoute(t, nil, []gwv1.HTTPBackendRef{backendRef("app", 1), backendRef("other", 1_000_001)}))
	if msg := problemOn(out, "spec.rules[0].backendRefs[1].weight"); !strings.Contains(msg, "over the maximum of 1000000") {
		t.Errorf("weight 1000001: problem %q", msg)
	}
	var weights []string
	for _, vh := range out.Gateways["default/gw"].Routes[0].VirtualHosts {
		for _, r := range vh.Routes {
			for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
				weights = append(weights, cw.Name+"="+strconv.Itoa(int(cw.GetWeight().GetValue())))
			}
		}
	}
	if got, want := strings.Join(weights, " "), "agentgatewaybackend/default/app=1 mcpgate_invalid_backend=1000000"; got != want {
		t.Errorf("weighted clusters %s, want %s", got, want)
	}
}

// TestManyBackendRefs: a rule with more backendRefs than the room ruleTemplate keeps for their
// configs (4) is translated (it panicked on slicing that room).
func TestManyBackendRefs(t *testing.T) {
	var refs []gwv1.HTTPBackendRef
	for i := range 5 {
		refs = append(refs, backendRef([]string{"app", "other"}[i%2], int32(i+1)))
	}
	out := translateValid(t, valuesRoute(t, nil, refs))
	var n int
	for _, vh := range out.Gateways["default/gw"].Routes[0].VirtualHosts {
		for _, r := range vh.Routes {
			n += len(r.GetRoute().GetWeightedClusters().GetClusters())
		}
	}
	if n != 5 {
		t.Errorf("%d weighted clusters, want 5", n)
	}
}

// TestMuxHeaderLength: a multiplexed backend whose x-mcpgate-mux header (which names every
// target) would be longer than Envoy takes is refused, not sent.
func TestMuxHeaderLength(t *testing.T) {
	res := loadInputs(t, "testdata/invalid-mcp-targets.in.yaml")
	for _, b := range res.Backends {
		if b.Name != "fine" {
			continue
		}
		tg := b.Spec.MCP.Targets[0]
		for i := range 200 {
			tg.Name = gwv1.SectionName("target-" + strconv.Itoa(i))
			b.Spec.MCP.Targets = append(b.Spec.MCP.Targets, tg)
		}
	}
	out := translateValid(t, res)
	var msg string
	for _, p := range out.Status.Problems() {
		if p.Name == "fine" && p.Field == "spec.mcp.targets" {
			msg = p.Message
		}
	}
	if !strings.Contains(msg, "over the 16384 it takes") {
		t.Errorf("no refusal of the 202 targets: %q", msg)
	}
}
