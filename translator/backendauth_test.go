package translator_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/test/envoydouble/headers"
	"github.com/mcpgate/mcpgate/test/envoydouble/xdsconf"
	"github.com/mcpgate/mcpgate/translator"
)

// TestBackendAuth: the credential of each backendRef of the backend-auth-passthrough golden
// reaches Envoy's configuration unredacted (the golden shows it redacted): an inline key as the
// Authorization header (a bare key with "Bearer " in front), the backend's own over a policy's;
// passthrough as the ext_proc metadata that keeps the caller's token, per weighted cluster where
// only one of a rule's backends has it; and the printed output holds neither key.
func TestBackendAuth(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/backend-auth-passthrough.in.yaml"), translator.Options{})
	routes := map[string]*routev3.Route{}
	for _, rc := range out.Gateways["default/gw"].Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				routes[r.Name] = r
			}
		}
	}
	route := func(name string) *routev3.Route {
		t.Helper()
		r := routes["httproute/default/"+name+"/match/0"]
		if r == nil {
			t.Fatalf("no route %s", name)
		}
		return r
	}
	for _, c := range []struct {
		route, auth string
		passthrough bool
	}{
		{"tools/rule/0", "", true},                                     // the backend's own passthrough
		{"tools/rule/1", "", false},                                    // none: ext_proc strips the validated token
		{"tools/rule/2", "Bearer sk-inline-not-a-real-key", false},     // the backend's own key
		{"by-policy/rule/0", "Bearer policy-key-not-real", false},      // the route's policy
		{"by-policy/rule/1", "", true},                                 // the rule's policy beats the route's
		{"by-policy/rule/2", "Bearer sk-inline-not-a-real-key", false}, // the backend's own beats the route's policy
	} {
		r := route(c.route)
		if got := authorization(r.RequestHeadersToAdd); got != c.auth {
			t.Errorf("%s: Authorization %q, want %q", c.route, got, c.auth)
		}
		if got := passthrough(t, r.TypedPerFilterConfig[translator.ExtProcFilterName]); got != c.passthrough {
			t.Errorf("%s: passthrough %v, want %v", c.route, got, c.passthrough)
		}
	}
	split := route("tools/rule/3")
	if passthrough(t, split.TypedPerFilterConfig[translator.ExtProcFilterName]) {
		t.Error("tools/rule/3: the route's own ext_proc config says passthrough, which its plain cluster would inherit")
	}
	wc := split.GetRoute().GetWeightedClusters().GetClusters()
	if len(wc) != 2 {
		t.Fatalf("tools/rule/3: %d weighted clusters, want 2", len(wc))
	}
	for i, want := range []bool{true, false} {
		if got := passthrough(t, wc[i].TypedPerFilterConfig[translator.ExtProcFilterName]); got != want {
			t.Errorf("tools/rule/3 cluster %s: passthrough %v, want %v", wc[i].Name, got, want)
		}
	}
	y, err := out.Marshal("yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"sk-inline", "policy-key"} {
		if strings.Contains(string(y), v) {
			t.Errorf("the printed output shows the key %s", v)
		}
	}
}

// authorization is the Authorization value of a route's headers to add, or "".
func authorization(h []*corev3.HeaderValueOption) string {
	for _, o := range h {
		if strings.EqualFold(o.GetHeader().GetKey(), "authorization") {
			return o.GetHeader().GetValue()
		}
	}
	return ""
}

// passthrough reports whether an ExtProcPerRoute's metadata says backend auth passthrough.
func passthrough(t *testing.T, a *anypb.Any) bool {
	t.Helper()
	if a == nil {
		return false
	}
	var pr extprocv3.ExtProcPerRoute
	if err := a.UnmarshalTo(&pr); err != nil {
		t.Fatal(err)
	}
	for _, hv := range pr.GetOverrides().GetGrpcInitialMetadata() {
		if hv.GetKey() == contract.MetadataPassthrough {
			if hv.GetValue() != contract.PassthroughOn {
				t.Errorf("%s: %q, want %q", contract.MetadataPassthrough, hv.GetValue(), contract.PassthroughOn)
			}
			return true
		}
	}
	return false
}

// TestBackendAuthSplitHeaderOrder: in the backend-auth-split golden, a rule whose
// RequestHeaderModifier removes or sets authorization leaves the backend's key on the request in
// a split as with one backend, as Envoy applies the headers (the envoydouble's compiled route
// configuration: the picked weighted cluster's operations, then the route's); a backend without
// auth gets the rule's changes alone; a prefixMode Never backend's resolver (contract.Mux
// RequestHeaders, applied to the client's headers) sees the key the call will bring.
func TestBackendAuthSplitHeaderOrder(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/backend-auth-split.in.yaml"), translator.Options{})
	routes := map[string]*xdsconf.Route{}
	for _, rc := range out.Gateways["default/gw"].Routes {
		c, err := xdsconf.CompileRouteConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		for _, vh := range c.VirtualHosts {
			for _, r := range vh.Routes {
				routes[r.Name] = r
			}
		}
	}
	const client = "Bearer client-token"
	for _, c := range []struct {
		rule    string
		cluster int // the weighted cluster picked; -1: the route's one cluster
		want    string
		mux     bool // the cluster's Never metadata must bring the same
	}{
		{"one", -1, "Bearer sk-split-not-real", false},
		{"split", 0, "Bearer sk-split-not-real", false},
		{"split", 1, "", false}, // the rule removes it, plain has no auth
		{"split-never", 0, "Bearer sk-never-split-not-real", true},
		{"split-never", 1, "Bearer rule-token-not-real", false}, // the rule's own value
	} {
		name := "httproute/default/tools/rule/" + map[string]string{"split": "0", "one": "1", "split-never": "2"}[c.rule] + "/match/0"
		r, ok := routes[name]
		if !ok || r.Forward == nil {
			t.Fatalf("no forwarding route %s", name)
		}
		var h headers.Map
		h.Set("authorization", client)
		if c.cluster >= 0 {
			wc := r.Forward.Clusters[c.cluster]
			wc.Headers.ApplyRequest(&h) // Envoy: the weighted cluster's first
		}
		r.Headers.ApplyRequest(&h)
		got, _ := h.Get("authorization")
		if got != c.want {
			t.Errorf("%s cluster %d: authorization %q, want %q", c.rule, c.cluster, got, c.want)
		}
		if !c.mux {
			continue
		}
		md := muxMetadata(t, out, name, c.cluster)
		var mx contract.Mux
		if err := json.Unmarshal([]byte(md), &mx); err != nil {
			t.Fatal(err)
		}
		hh := http.Header{"Authorization": {client}}
		mx.RequestHeaders.Apply(hh)
		if got := hh.Get("Authorization"); got != c.want {
			t.Errorf("%s cluster %d: the resolver's authorization %q, want %q", c.rule, c.cluster, got, c.want)
		}
	}
}

// muxMetadata is the x-mcpgate-mux metadata of weighted cluster i of route name.
func muxMetadata(t *testing.T, out *translator.Output, name string, i int) string {
	t.Helper()
	for _, rc := range out.Gateways["default/gw"].Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				if r.Name != name {
					continue
				}
				cw := r.GetRoute().GetWeightedClusters().GetClusters()[i]
				for _, m := range perRouteOf(t, cw.TypedPerFilterConfig).GetOverrides().GetGrpcInitialMetadata() {
					if m.GetKey() == contract.MetadataMux {
						return m.GetValue()
					}
				}
			}
		}
	}
	t.Fatalf("%s cluster %d: no %s metadata", name, i, contract.MetadataMux)
	return ""
}
