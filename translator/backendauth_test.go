package translator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

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

// TestBackendAuthSecretValue: a Secret's Authorization value is checked as the inline key is
// (1 to 2048 characters, no NUL, CR or LF): an AgentgatewayBackend and a policy naming a Secret
// whose value is 2049 characters long, white space only, or holds a NUL, are refused (Accepted=False, the
// message naming the Secret, the key and why), their routes carry no credential and answer 500,
// while the other backends keep serving; 2048 characters with the line break a file-made Secret
// ends with are accepted. No status message, problem or warning shows a value.
func TestBackendAuthSecretValue(t *testing.T) {
	long := strings.Repeat("k", 2049)
	maxVal := strings.Repeat("é", 2048)
	in := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: mcpgate
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Secret
metadata: {name: long}
stringData: {Authorization: "` + long + `"}
---
apiVersion: v1
kind: Secret
metadata: {name: max}
stringData: {Authorization: "` + maxVal + `\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: blank}
stringData: {Authorization: " \n"}
---
apiVersion: v1
kind: Secret
metadata: {name: nul}
stringData: {Authorization: "sk-nul\0after"}
`
	route := "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: tools}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n"
	for i, c := range []struct{ backend, secret string }{{"long-secret", "long"}, {"max-secret", "max"}, {"blank-secret", "blank"}, {"nul-secret", "nul"}, {"plain", ""}, {"by-policy", ""}} {
		auth := ""
		if c.secret != "" {
			auth = "  policies: {auth: {secretRef: {name: " + c.secret + "}}}\n"
		}
		in += fmt.Sprintf("---\napiVersion: agentgateway.dev/v1alpha1\nkind: AgentgatewayBackend\nmetadata: {name: %s}\nspec:\n  mcp: {targets: [{name: t, static: {host: 10.7.0.%d, port: 3000}}]}\n%s",
			c.backend, i+1, auth)
		route += fmt.Sprintf("  - name: %s\n    matches: [{path: {type: PathPrefix, value: /%s}}]\n    backendRefs: [{name: %s, group: agentgateway.dev, kind: AgentgatewayBackend}]\n",
			c.backend, c.backend, c.backend)
	}
	in += "---\n" + route + `---
apiVersion: agentgateway.dev/v1alpha1
kind: AgentgatewayPolicy
metadata: {name: long-policy}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: tools, sectionName: by-policy}]
  backend: {auth: {secretRef: {name: long}}}
`
	path := filepath.Join(t.TempDir(), "in.yaml")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	out := translator.Translate(loadInputs(t, path), translator.Options{})

	want := map[string]string{ // the backend's Accepted message, "" for True
		"long-secret":  "spec.policies.auth.secretRef: Secret default/long key Authorization: the value is 2049 characters long, over the 2048 allowed",
		"max-secret":   "",
		"blank-secret": "spec.policies.auth.secretRef: Secret default/blank key Authorization: the value is empty",
		"nul-secret":   "spec.policies.auth.secretRef: Secret default/nul key Authorization: the value has a NUL at byte 6",
		"plain":        "",
		"by-policy":    "",
	}
	for name, msg := range want {
		st := out.Status.Backends[types.NamespacedName{Namespace: "default", Name: name}]
		if st == nil {
			t.Fatalf("%s: no status", name)
		}
		c := meta.FindStatusCondition(st.Conditions, "Accepted")
		switch {
		case c == nil:
			t.Errorf("%s: no Accepted condition", name)
		case msg == "" && c.Status != metav1.ConditionTrue:
			t.Errorf("%s: Accepted %s %q, want True", name, c.Status, c.Message)
		case msg != "" && (c.Status != metav1.ConditionFalse || !strings.HasPrefix(c.Message, msg)):
			t.Errorf("%s: Accepted %s %q, want False %q", name, c.Status, c.Message, msg)
		}
	}
	pc := accepted(t, out.Status, translator.ObjectKey{Kind: translator.KindAgentgatewayPolicy, Namespace: "default", Name: "long-policy"})
	if wantMsg := "Secret default/long key Authorization: the value is 2049 characters long, over the 2048 allowed"; pc.Status != metav1.ConditionFalse || !strings.Contains(pc.Message, wantMsg) {
		t.Errorf("long-policy: Accepted %s %q, want False naming %q", pc.Status, pc.Message, wantMsg)
	}

	routes := map[string]*routev3.Route{}
	for _, rc := range out.Gateways["default/gw"].Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				routes[r.Name] = r
			}
		}
	}
	for i, c := range []struct {
		rule, auth string
		refused    bool
	}{ // in the order of the route's rules
		{"long-secret", "", true},
		{"max-secret", "Bearer " + maxVal, false},
		{"blank-secret", "", true},
		{"nul-secret", "", true},
		{"plain", "", false},
		{"by-policy", "", true}, // its policy is refused: the rule answers 500, without the key
	} {
		r := routes[fmt.Sprintf("httproute/default/tools/rule/%d/match/0", i)]
		if r == nil {
			t.Fatalf("no route for rule %d (%s)", i, c.rule)
		}
		if got := authorization(r.RequestHeadersToAdd); got != c.auth {
			t.Errorf("rule %s: Authorization of %d characters, want %d", c.rule, len(got), len(c.auth))
		}
		if refused := r.GetDirectResponse().GetStatus() == 500; refused != c.refused {
			t.Errorf("rule %s: answers 500 %v, want %v", c.rule, refused, c.refused)
		}
	}

	var text []string
	for _, o := range out.Status.Objects() {
		b, err := json.Marshal(o.Status)
		if err != nil {
			t.Fatal(err)
		}
		text = append(text, string(b))
	}
	for _, fe := range append(out.Status.Problems(), out.Status.Warnings()...) {
		text = append(text, fe.Error())
	}
	for _, s := range text {
		if strings.Contains(s, "kkkkkkkk") || strings.Contains(s, "éééé") || strings.Contains(s, "sk-nul") {
			t.Errorf("a status or message shows a Secret's value: %.200s", s)
		}
	}
}
