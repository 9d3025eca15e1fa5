package translator_test

import (
	"bytes"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	statefulv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/contract"
	"github.com/mcpgate/mcpgate/translator"
)

func TestFieldError(t *testing.T) {
	e := translator.FieldError{Kind: "HTTPRoute", Namespace: "agentgateway-system", Name: "mcp", Field: "spec.rules[0].backendRefs[0]", Message: "not found"}
	if got, want := e.Error(), "HTTPRoute agentgateway-system/mcp: spec.rules[0].backendRefs[0]: not found"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	c := translator.FieldError{Kind: "GatewayClass", Name: "x", Message: "m"}
	if got, want := c.Error(), "GatewayClass x: m"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestNodeGroups(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/invalid-cel.in.yaml", "testdata/lab.in.yaml"), translator.Options{})
	groups := out.NodeGroups()
	if len(groups) != 4 {
		t.Fatalf("groups %d, want 3 gateways and *", len(groups))
	}
	lab := groups["agentgateway-system/agentgateway"]
	// the routes: the listener's, and the mux upstream listener's (contract.MuxUpstreamRoutes), always sent
	if len(lab[resourcev3.ListenerType]) != 1 || len(lab[resourcev3.RouteType]) != 2 || len(lab[resourcev3.ClusterType]) != 1 ||
		len(lab[contract.PolicyTypeURL]) != 1 {
		t.Fatalf("lab group: %d listeners, %d routes, %d clusters, %d policies", len(lab[resourcev3.ListenerType]),
			len(lab[resourcev3.RouteType]), len(lab[resourcev3.ClusterType]), len(lab[contract.PolicyTypeURL]))
	}
	all := groups[contract.AllGateways]
	if len(all) != 1 || len(all[contract.PolicyTypeURL]) != 1 {
		t.Fatalf("group *: %v, want the one policy (the invalid one yields none)", all)
	}
	if want := "type.googleapis.com/" + string(proto.MessageName(all[contract.PolicyTypeURL][0])); want != contract.PolicyTypeURL {
		t.Errorf("contract.PolicyTypeURL %q, want %q", contract.PolicyTypeURL, want)
	}
}

// TestHeaderSecretsRedacted: the values a RequestHeaderModifier sets for headers named like
// credentials (x-goog-api-key, X-Auth-Token) reach the route but not the printed output; other
// headers' values (X-Max-Tokens) print as they are.
func TestHeaderSecretsRedacted(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/filters.in.yaml"), translator.Options{})
	var routes strings.Builder
	for _, rc := range out.Gateways["default/gw"].Routes {
		routes.WriteString(rc.String())
	}
	for _, v := range []string{"goog-not-a-real-key", "tok-not-a-real-token"} {
		if !strings.Contains(routes.String(), v) {
			t.Fatalf("the route does not carry %s", v)
		}
	}
	y, err := out.Marshal("yaml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "not-a-real") || strings.Count(string(y), translator.RedactedValue) != 2 {
		t.Errorf("the printed output shows a credential header's value or lacks the two redactions:\n%s", y)
	}
	if !strings.Contains(string(y), "key: x-max-tokens\n                      value: \"5\"") {
		t.Error("X-Max-Tokens's value is not printed as it is")
	}
}

// TestSecretRedacted: the LLM key reaches the route but never the printed output.
func TestSecretRedacted(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/llm-backend.in.yaml"), translator.Options{})
	rc := out.Gateways["agentgateway-system/agentgateway"].Routes[0]
	if !strings.Contains(rc.String(), "Bearer sk-test-not-a-real-key") {
		t.Fatal("the route does not carry the Authorization header from the Secret")
	}
	y, err := out.Marshal("json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "sk-test") || !strings.Contains(string(y), translator.RedactedValue) {
		t.Fatal("the printed output shows the secret or lacks the redaction")
	}
	if !strings.Contains(rc.String(), "sk-test") {
		t.Fatal("printing changed the route itself")
	}
}

// TestSecretErrors: a Secret a backend names that could not be read (Resources.SecretErrors)
// refuses the backend with the reason when no copy of it is given, and, when one is (a copy read
// before), the backend uses it with a warning that says why.
func TestSecretErrors(t *testing.T) {
	backend := types.NamespacedName{Namespace: "agentgateway-system", Name: "openai-all-models"}
	secret := types.NamespacedName{Namespace: "agentgateway-system", Name: "openai-secret"}
	const why = "etcdserver: request timed out"
	accepted := func(res *translator.Resources) *metav1.Condition {
		t.Helper()
		st := translator.Translate(res, translator.Options{}).Status.Backends[backend]
		if st == nil || len(st.Conditions) == 0 {
			t.Fatalf("no status of AgentgatewayBackend %s", backend)
		}
		return &st.Conditions[0]
	}

	res := loadInputs(t, "testdata/llm-backend.in.yaml")
	res.SecretErrors = map[types.NamespacedName]string{secret: why}
	out := translator.Translate(res, translator.Options{})
	if rc := out.Gateways["agentgateway-system/agentgateway"].Routes[0]; !strings.Contains(rc.String(), "Bearer sk-test-not-a-real-key") {
		t.Error("the route lost the Authorization header of the copy of the Secret read before")
	}
	if c := accepted(res); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "Secret agentgateway-system/openai-secret could not be read ("+why+"): the copy read before is used") {
		t.Errorf("with a copy of the Secret: Accepted %s %q", c.Status, c.Message)
	}
	found := false
	for _, w := range out.Status.Warnings() {
		found = found || w.Object().String() == "AgentgatewayBackend "+backend.String() && w.Field == "spec.policies.auth.secretRef"
	}
	if !found {
		t.Errorf("no warning on spec.policies.auth.secretRef: %v", out.Status.Warnings())
	}

	res.Secrets = slices.DeleteFunc(res.Secrets, func(s *corev1.Secret) bool { return s.Name == secret.Name })
	if c := accepted(res); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Secret agentgateway-system/openai-secret could not be read: "+why) {
		t.Errorf("without a copy of the Secret: Accepted %s %q", c.Status, c.Message)
	}
	res.SecretErrors = nil
	if c := accepted(res); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Secret agentgateway-system/openai-secret not found") {
		t.Errorf("a Secret that does not exist: Accepted %s %q", c.Status, c.Message)
	}
}

// TestConfigMapErrors: a client CA ConfigMap that could not be read (Resources.ConfigMapErrors)
// is used as read before, with a warning, when a copy is given; without one its ref is refused
// with the reason (not as not found), and the listener whose only CA it was is not served.
func TestConfigMapErrors(t *testing.T) {
	gw := types.NamespacedName{Namespace: "default", Name: "gw"}
	ca := types.NamespacedName{Namespace: "default", Name: "client-ca"}
	const why = "configmaps \"client-ca\" is forbidden"
	const field = "spec.tls.frontend.perPort[0].tls.validation.caCertificateRefs[0]"
	res := loadInputs(t, "testdata/https-client-cert.in.yaml")
	res.ConfigMapErrors = map[types.NamespacedName]string{ca: why}
	out := translator.Translate(res, translator.Options{})
	if names := secretNames(out.Gateways[gw.String()]); !slices.Contains(names, "client-ca/default/gw/9443") {
		t.Errorf("with a copy of the ConfigMap: Secrets %q, want client-ca/default/gw/9443", names)
	}
	found := false
	for _, w := range out.Status.Warnings() {
		found = found || w.Field == field && strings.Contains(w.Message, "ConfigMap default/client-ca could not be read ("+why+"): the copy read before is used")
	}
	if !found {
		t.Errorf("no warning on %s: %v", field, out.Status.Warnings())
	}

	res.ConfigMaps = slices.DeleteFunc(slices.Clone(res.ConfigMaps), func(c *corev1.ConfigMap) bool { return c.Name == ca.Name })
	out = translator.Translate(res, translator.Options{})
	if names := secretNames(out.Gateways[gw.String()]); slices.Contains(names, "client-ca/default/gw/9443") {
		t.Errorf("without a copy of the ConfigMap: Secrets %q, want no client-ca/default/gw/9443", names)
	}
	var msgs []string
	for _, p := range out.Status.Problems() {
		if p.Field == field {
			msgs = append(msgs, p.Message)
		}
	}
	if want := "ConfigMap default/client-ca could not be read: " + why; !slices.Equal(msgs, []string{want}) {
		t.Errorf("without a copy of the ConfigMap: problems of %s %q, want %q", field, msgs, want)
	}
}

// secretNames lists the names of g's Secrets.
func secretNames(g *translator.GatewayConfig) []string {
	var out []string
	for _, s := range g.Secrets {
		out = append(out, s.Name)
	}
	return out
}

// TestJWKSQueryRedacted: a remote JWKS URL's query (an IdP's access key) reaches ext_proc's
// policy, but the printed output (translate, /debug/xds) shows it redacted.
func TestJWKSQueryRedacted(t *testing.T) {
	res := loadInputs(t, "testdata/lab.in.yaml")
	for _, p := range res.Policies {
		if j := p.Spec.Traffic; j != nil && j.JWTAuthentication != nil {
			j.JWTAuthentication.Providers[0].JWKS = v1alpha1.JWKS{Remote: &v1alpha1.RemoteJWKS{URL: "https://idp.example/jwks?api_key=jwks-secret"}}
		}
	}
	out := translator.Translate(res, translator.Options{})
	found := false
	for _, k := range out.GatewayKeys() {
		for _, p := range out.Gateways[k].Policies {
			for _, pv := range p.GetJwt().GetProviders() {
				found = found || pv.GetRemoteJwks().GetUrl() == "https://idp.example/jwks?api_key=jwks-secret"
			}
		}
	}
	if !found {
		t.Fatal("no policy carries the remote JWKS URL with its query")
	}
	y, err := out.Marshal("yaml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "jwks-secret") || !strings.Contains(string(y), "https://idp.example/jwks?REDACTED") {
		t.Fatal("the printed output shows the JWKS URL's query or lacks its redaction")
	}
}

// TestNeverSecretRedacted: an Authorization value a prefixMode Never route sets reaches the route
// and the resolver's metadata (contract.Mux.RequestHeaders; a weighted rule's on its weighted
// cluster), but none printed.
func TestNeverSecretRedacted(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/mux-never.in.yaml"), translator.Options{})
	var inRoute, inMetadata, inWeighted bool
	for _, rc := range out.Gateways["default/gw"].Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for _, h := range r.RequestHeadersToAdd {
					inRoute = inRoute || h.GetHeader().GetValue() == "Bearer never-secret"
				}
				if a := r.TypedPerFilterConfig[translator.ExtProcFilterName]; a != nil {
					inMetadata = inMetadata || bytes.Contains(a.Value, []byte(`"authorization","value":"Bearer never-secret"`))
				}
				for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
					if a := cw.TypedPerFilterConfig[translator.ExtProcFilterName]; a != nil {
						inWeighted = inWeighted || bytes.Contains(a.Value, []byte(`"authorization","value":"Bearer weighted-secret"`))
					}
				}
			}
		}
	}
	if !inRoute || !inMetadata || !inWeighted {
		t.Fatalf("the secret is in the route's headers: %v, in the Never metadata: %v, in a weighted cluster's: %v; want all", inRoute, inMetadata, inWeighted)
	}
	y, err := out.Marshal("yaml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "never-secret") || strings.Contains(string(y), "weighted-secret") || strings.Contains(string(y), "weighted-key") || !strings.Contains(string(y), `"authorization","value":"`+translator.RedactedValue+`"`) {
		t.Fatal("the printed output shows the secret or lacks the metadata's redaction")
	}
}

// TestNeverMetadataTooLong: a prefixMode Never rule whose header changes would make its ext_proc
// metadata longer than Envoy takes (which would refuse the Gateway's whole RouteConfiguration)
// is refused alone, naming its filters, and what is served passes Validate.
func TestNeverMetadataTooLong(t *testing.T) {
	res := loadInputs(t, "testdata/mux-never.in.yaml")
	var rule int
	for _, r := range res.HTTPRoutes {
		for i := range r.Spec.Rules {
			for _, f := range r.Spec.Rules[i].Filters {
				if f.RequestHeaderModifier != nil && len(f.RequestHeaderModifier.Remove) > 0 { // /never-headers
					rule = i
					for k := range 5 {
						f.RequestHeaderModifier.Set = append(f.RequestHeaderModifier.Set,
							gwv1.HTTPHeader{Name: gwv1.HTTPHeaderName("x-long-" + strconv.Itoa(k)), Value: strings.Repeat("v", 4000)})
					}
				}
			}
		}
	}
	out := translator.Translate(res, translator.Options{})
	want := "spec.rules[" + strconv.Itoa(rule) + "].filters"
	var found bool
	for _, p := range out.Status.Problems() {
		found = found || (p.Field == want && strings.Contains(p.Message, "over the 16384 Envoy takes"))
	}
	if !found {
		t.Errorf("no problem on %s about the metadata's length: %v", want, out.Status.Problems())
	}
	for k, g := range out.Gateways {
		if err := g.Validate(); err != nil {
			t.Errorf("gateway %s: %v", k, err)
		}
	}
}

// TestPolicyNameHashed: a merge of many sources gets a sha256: name.
func TestPolicyNameHashed(t *testing.T) {
	res := loadInputs(t, "testdata/policy-levels.in.yaml")
	for _, p := range res.Policies {
		p.Name += strings.Repeat("x", 60)
	}
	out := translator.Translate(res, translator.Options{})
	var hashed int
	for _, p := range out.Gateways["default/gw"].Policies {
		if strings.HasPrefix(p.Name, "sha256:") {
			hashed++
			if len(p.Name) != len("sha256:")+16 {
				t.Errorf("name %q: want sha256: and 16 hex digits", p.Name)
			}
		} else if len(p.Name) > 200 {
			t.Errorf("name of %d bytes is not hashed", len(p.Name))
		}
	}
	if hashed == 0 {
		t.Fatal("no policy name was hashed")
	}
}

// TestPolicyOnSeveralLevelsCountsOnce: a policy that targets both the Gateway and the route
// contributes once to the route's merged policy, whether few or many (a set then) policies
// merge there.
func TestPolicyOnSeveralLevelsCountsOnce(t *testing.T) {
	for _, onGateway := range []int{2, 40} {
		res := withGatewayPolicies(benchResources(1, false, 1), onGateway)
		both := res.Policies[len(res.Policies)-1] // targets the Gateway; now the route too, twice
		both.Spec.TargetRefs = append(both.Spec.TargetRefs, res.Policies[0].Spec.TargetRefs[0], res.Policies[0].Spec.TargetRefs[0])
		out := translator.Translate(res, translator.Options{})
		if p := out.Status.Problems(); len(p) > 0 {
			t.Fatalf("%d Gateway policies: %v", onGateway, p)
		}
		pols := out.Gateways["bench/gw"].Policies
		if len(pols) != 1 {
			t.Fatalf("%d Gateway policies: %d merged policies, want 1", onGateway, len(pols))
		}
		src := pols[0].GetSources()
		if len(src) != onGateway+1 || len(pols[0].GetTrafficRules()) != onGateway+1 {
			t.Errorf("%d Gateway policies: %d sources and %d rules, want %d (the route's and each Gateway policy once): %v",
				onGateway, len(src), len(pols[0].GetTrafficRules()), onGateway+1, src)
		}
		if n := len(slices.DeleteFunc(slices.Clone(src), func(s string) bool { return s != translator.KindAgentgatewayPolicy+"/bench/"+both.Name })); n != 1 {
			t.Errorf("%d Gateway policies: %s is a source %d times, want once", onGateway, both.Name, n)
		}
	}
}

// TestValidateCatches: Validate refuses what Envoy would refuse.
func TestValidateCatches(t *testing.T) {
	base := func() *translator.GatewayConfig {
		out := translator.Translate(loadInputs(t, "testdata/lab.in.yaml"), translator.Options{})
		g := out.Gateways["agentgateway-system/agentgateway"]
		if err := g.Validate(); err != nil {
			t.Fatalf("the lab does not validate: %v", err)
		}
		return g
	}
	cases := map[string]struct {
		mutate func(g *translator.GatewayConfig)
		want   string
	}{
		"full duplex fail-open": {func(g *translator.GatewayConfig) {
			rewriteExtProc(t, g, func(e *extprocv3.ExternalProcessor) {
				e.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
				e.FailureModeAllow = true
			})
		}, "FULL_DUPLEX_STREAMED"},
		"no grpc service": {func(g *translator.GatewayConfig) {
			rewriteExtProc(t, g, func(e *extprocv3.ExternalProcessor) { e.GrpcService = nil })
		}, "exactly one of grpc_service and http_service"},
		"unknown cluster": {func(g *translator.GatewayConfig) {
			// Routes[0] is the refusal of path parameters, a direct response
			g.Routes[0].VirtualHosts[0].Routes[1].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "nope"}
		}, `cluster "nope" does not exist`},
		"duplicate domain": {func(g *translator.GatewayConfig) {
			vh := proto.Clone(g.Routes[0].VirtualHosts[0]).(*routev3.VirtualHost)
			vh.Name += "2"
			g.Routes[0].VirtualHosts = append(g.Routes[0].VirtualHosts, vh)
		}, `domain "*" is in two virtual hosts`},
		"static with a name": {func(g *translator.GatewayConfig) {
			g.Clusters[0].ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		}, "is not an IP address"},
		"header value with a lone percent": {func(g *translator.GatewayConfig) {
			g.Routes[0].VirtualHosts[0].Routes[0].RequestHeadersToAdd = []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-quota", Value: "100%"}}}
		}, "value has a % that is not written %%"},
		"host on responses": {func(g *translator.GatewayConfig) {
			g.Routes[0].VirtualHosts[0].Routes[0].ResponseHeadersToAdd = []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "Host", Value: "example.com"}}}
		}, `header "Host" cannot be added`},
		"pseudo-header removed": {func(g *translator.GatewayConfig) {
			g.Routes[0].VirtualHosts[0].RequestHeadersToRemove = []string{":path"}
		}, `header ":path" cannot be removed`},
		"session state Envoy does not have": {func(g *translator.GatewayConfig) {
			pr := &statefulv3.StatefulSessionPerRoute{Override: &statefulv3.StatefulSessionPerRoute_StatefulSession{
				StatefulSession: &statefulv3.StatefulSession{SessionState: &corev3.TypedExtensionConfig{
					Name: "envoy.http.stateful_session.envelope", TypedConfig: anyOf(t, &statefulv3.StatefulSession{})}}}}
			g.Routes[0].VirtualHosts[0].Routes[0].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.stateful_session": anyOf(t, pr)}
		}, "want envoy.http.stateful_session.envelope with an EnvelopeSessionState"},
		"proto rule":                  {func(g *translator.GatewayConfig) { g.Clusters[0].Name = "" }, "Name"},
		"missing route configuration": {func(g *translator.GatewayConfig) { g.Routes = nil }, "RouteConfiguration"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := base()
			c.mutate(g)
			err := g.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// anyOf wraps m in an Any.
func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rewriteExtProc changes the ext_proc filter config of the first listener.
func rewriteExtProc(t *testing.T, g *translator.GatewayConfig, f func(*extprocv3.ExternalProcessor)) {
	t.Helper()
	filter := g.Listeners[0].FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := filter.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm = proto.Clone(hcm).(*hcmv3.HttpConnectionManager)
	i := slices.IndexFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.Name == translator.ExtProcFilterName })
	if i < 0 {
		t.Fatal("no ext_proc filter")
	}
	ep := &extprocv3.ExternalProcessor{}
	if err := hcm.HttpFilters[i].GetTypedConfig().UnmarshalTo(ep); err != nil {
		t.Fatal(err)
	}
	f(ep)
	a, err := anypb.New(ep)
	if err != nil {
		t.Fatal(err)
	}
	hcm.HttpFilters[i] = &hcmv3.HttpFilter{Name: hcm.HttpFilters[i].Name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
	ha, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	l := proto.Clone(g.Listeners[0]).(*listenerv3.Listener)
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: ha}
	g.Listeners[0] = l
}

// TestNoPanicOnSparseObjects: objects as a file or an API server without defaulting may hand
// them over (nil pointers, empty specs, nil list entries) are refused, never a panic.
func TestNoPanicOnSparseObjects(t *testing.T) {
	from := gwv1.NamespacesFromSelector
	typ := gwv1.HTTPRouteFilterURLRewrite
	res := &translator.Resources{
		GatewayClasses: []*gwv1.GatewayClass{nil, {}},
		Gateways: []*gwv1.Gateway{nil, {ObjectMeta: metav1.ObjectMeta{Name: "empty"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "gw"}, Spec: gwv1.GatewaySpec{Listeners: []gwv1.Listener{
				{Name: "a", Port: 80, Protocol: gwv1.HTTPProtocolType, AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &from}}},
				{Protocol: gwv1.HTTPProtocolType},
			}}}},
		HTTPRoutes: []*gwv1.HTTPRoute{nil, {ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{}, {Name: "gw"}}},
			Rules: []gwv1.HTTPRouteRule{{}, {
				Matches:     []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{}, Headers: []gwv1.HTTPHeaderMatch{{}}, QueryParams: []gwv1.HTTPQueryParamMatch{{}}}},
				Filters:     []gwv1.HTTPRouteFilter{{}, {Type: typ}, {Type: gwv1.HTTPRouteFilterRequestRedirect}},
				BackendRefs: []gwv1.HTTPBackendRef{{}},
			}},
		}}},
		Backends: []*v1alpha1.AgentgatewayBackend{nil, {ObjectMeta: metav1.ObjectMeta{Name: "b"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "mcp"}, Spec: v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{{}}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "sel"}, Spec: v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{{Name: "s", Selector: &v1alpha1.McpSelector{}}}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "ai"}, Spec: v1alpha1.AgentgatewayBackendSpec{AI: &v1alpha1.AIBackend{}, Policies: &v1alpha1.BackendPolicies{Auth: &v1alpha1.BackendAuth{}}}}},
		Policies: []*v1alpha1.AgentgatewayPolicy{nil, {ObjectMeta: metav1.ObjectMeta{Name: "p"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: v1alpha1.AgentgatewayPolicySpec{
				TargetRefs: []v1alpha1.PolicyTargetReference{{}},
				Traffic:    &v1alpha1.TrafficPolicy{JWTAuthentication: &v1alpha1.JWTAuthentication{Providers: []v1alpha1.JWTProvider{{}}}, Authorization: &v1alpha1.Authorization{}},
				Backend:    &v1alpha1.BackendPolicy{MCP: &v1alpha1.BackendMCP{}},
			}}},
		Services:       []*corev1.Service{nil, {ObjectMeta: metav1.ObjectMeta{Name: "s"}}},
		EndpointSlices: []*discoveryv1.EndpointSlice{nil, {}},
		Secrets:        []*corev1.Secret{nil},
		Namespaces:     []*corev1.Namespace{nil},
	}
	out := translator.Translate(res, translator.Options{})
	for _, k := range out.GatewayKeys() {
		if err := out.Gateways[k].Validate(); err != nil {
			t.Errorf("gateway %s: %v", k, err)
		}
	}
	if len(out.Status.Problems()) < 10 {
		t.Errorf("only %d problems reported for a pile of invalid objects: %v", len(out.Status.Problems()), out.Status.Problems())
	}
	for _, p := range out.Status.Problems() {
		t.Log(p)
	}
	if translator.Translate(nil, translator.Options{}) == nil {
		t.Error("Translate(nil) gave nil")
	}
}

// TestValidateEDSNeedsAssignment: an EDS cluster without its ClusterLoadAssignment is refused.
func TestValidateEDSNeedsAssignment(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/service-backend.in.yaml"), translator.Options{})
	for _, k := range out.GatewayKeys() {
		g := out.Gateways[k]
		if len(g.Endpoints) == 0 {
			continue
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("gateway %s: %v", k, err)
		}
		g.Endpoints = g.Endpoints[1:]
		if err := g.Validate(); err == nil || !strings.Contains(err.Error(), "EDS cluster without a ClusterLoadAssignment") {
			t.Fatalf("gateway %s without an assignment: Validate() = %v", k, err)
		}
		return
	}
	t.Fatal("no gateway with EDS endpoints")
}

// TestListenerIsAnEdge: every listener takes the client's address from the connection, not from
// an X-Forwarded-For the client wrote (source.address feeds cidr() rules and the session hash),
// drops headers with underscores, and bounds HTTP/2 streams; an HTTP/2 stream's window, which is
// Envoy's buffer limit of the stream (the codec's per-stream limit, where ext_proc's bodies are
// buffered), is the listener's buffer limit, as an HTTP/1 stream's: MCP bodies up to the limit
// pass over either.
func TestListenerIsAnEdge(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/lab.in.yaml", "testdata/weights.in.yaml"), translator.Options{})
	n := 0
	for _, k := range out.GatewayKeys() {
		for _, l := range out.Gateways[k].Listeners {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			n++
			if !hcm.GetUseRemoteAddress().GetValue() || hcm.GetXffNumTrustedHops() != 0 || hcm.GetSkipXffAppend() {
				t.Errorf("listener %s: use_remote_address %v, xff_num_trusted_hops %d, skip_xff_append %v",
					l.Name, hcm.GetUseRemoteAddress(), hcm.GetXffNumTrustedHops(), hcm.GetSkipXffAppend())
			}
			if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_DROP_HEADER {
				t.Errorf("listener %s: headers_with_underscores_action %v", l.Name, a)
			}
			h2 := hcm.GetHttp2ProtocolOptions()
			limit := l.GetPerConnectionBufferLimitBytes().GetValue()
			if h2.GetMaxConcurrentStreams().GetValue() != 100 || limit != translator.DefaultMaxBodyBytes+64<<10 ||
				h2.GetInitialStreamWindowSize().GetValue() != limit || h2.GetInitialConnectionWindowSize().GetValue() != limit {
				t.Errorf("listener %s: http2_protocol_options %v, per_connection_buffer_limit_bytes %d; want the stream window at the buffer limit", l.Name, h2, limit)
			}
		}
	}
	if n < 2 {
		t.Fatalf("%d listeners checked", n)
	}
}

// TestStreamClustersLiftCircuitBreakers: MCP and LLM clusters, whose streams each hold a request
// and a connection for as long as they last, get circuit breakers far above Envoy's 1024; a plain
// backend keeps Envoy's defaults.
func TestStreamClustersLiftCircuitBreakers(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/llm-backend.in.yaml", "testdata/service-backend.in.yaml"), translator.Options{})
	want := map[string]bool{ // cluster name: lifted
		"agentgatewaybackend/agentgateway-system/local-llm":              true,
		"agentgatewaybackend/agentgateway-system/openai-all-models":      true,
		"agentgatewaybackend/agentgateway-system/mcp-backend/mcp-target": true,
		"service/apps/fetcher/80":                                        true, // an MCP Service port
		"service/apps/web/80":                                            false,
	}
	seen := 0
	for _, k := range out.GatewayKeys() {
		for _, c := range out.Gateways[k].Clusters {
			lifted, ok := want[c.Name]
			if !ok {
				continue
			}
			seen++
			th := c.GetCircuitBreakers().GetThresholds()
			switch {
			case !lifted && c.GetCircuitBreakers() != nil:
				t.Errorf("%s: circuit breakers %v, want Envoy's defaults", c.Name, c.GetCircuitBreakers())
			case lifted && (len(th) != 1 || th[0].GetPriority() != corev3.RoutingPriority_DEFAULT ||
				th[0].GetMaxConnections().GetValue() < 1<<20 || th[0].GetMaxPendingRequests().GetValue() < 1<<20 || th[0].GetMaxRequests().GetValue() < 1<<20):
				t.Errorf("%s: circuit breakers %v, want connections, pending and requests of at least 2^20", c.Name, c.GetCircuitBreakers())
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("found %d of the %d clusters", seen, len(want))
	}
}

// TestUpstreamConnectionsCloseBeforeTheServer: every backend cluster speaks HTTP/1.1 (as Envoy
// does without protocol options) and closes an idle upstream connection before the 5 s after
// which Node's and uvicorn's servers close it: a request reusing a connection the server is
// closing gets 503 UC, which no retry policy recovers.
func TestUpstreamConnectionsCloseBeforeTheServer(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/llm-backend.in.yaml", "testdata/service-backend.in.yaml", "testdata/selector-targets.in.yaml"), translator.Options{})
	n := 0
	for _, k := range out.GatewayKeys() {
		for _, c := range out.Gateways[k].Clusters {
			n++
			a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
			opts := &upstreamhttpv3.HttpProtocolOptions{}
			if a == nil || a.UnmarshalTo(opts) != nil {
				t.Errorf("%s: no upstream HTTP protocol options", c.Name)
				continue
			}
			idle := opts.GetCommonHttpProtocolOptions().GetIdleTimeout()
			if idle == nil || idle.AsDuration() <= 0 || idle.AsDuration() >= 5*time.Second {
				t.Errorf("%s: idle_timeout %v, want above 0 and below 5 s", c.Name, idle)
			}
			if opts.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil {
				t.Errorf("%s: %v, want explicit HTTP/1.1", c.Name, opts.GetUpstreamProtocolOptions())
			}
		}
	}
	if n < 6 {
		t.Fatalf("%d clusters checked", n)
	}
}

// TestClusterDomain: a static target host in the cluster's own DNS domain names its Service (EDS
// of its endpoints); in the default domain, cluster.local, the same host keeps its DNS name.
func TestClusterDomain(t *testing.T) {
	in := loadInputs(t, "testdata/service-dns-targets.in.yaml")
	const (
		outside = "agentgatewaybackend/agentgateway-system/other-domain/outside" // host ...svc.example.com
		fqdn    = "agentgatewaybackend/agentgateway-system/fqdn/fetcher"         // host ...svc.cluster.local
		short   = "agentgatewaybackend/agentgateway-system/short/fetcher-short"  // host ...SVC. (no domain)
	)
	clusterType := func(opts translator.Options, name string) clusterv3.Cluster_DiscoveryType {
		out := translator.Translate(in, opts)
		for _, k := range out.GatewayKeys() {
			for _, c := range out.Gateways[k].Clusters {
				if c.Name == name {
					return c.GetType()
				}
			}
		}
		t.Fatalf("no cluster %s", name)
		return 0
	}
	if got := clusterType(translator.Options{}, outside); got != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("default domain: %s is %v, want STRICT_DNS (svc.example.com is not cluster.local)", outside, got)
	}
	if got := clusterType(translator.Options{}, fqdn); got != clusterv3.Cluster_EDS {
		t.Errorf("default domain: %s is %v, want EDS (svc.cluster.local)", fqdn, got)
	}
	for _, d := range []string{"example.com", "Example.COM."} {
		opts := translator.Options{ClusterDomain: d}
		if got := clusterType(opts, outside); got != clusterv3.Cluster_EDS {
			t.Errorf("ClusterDomain %q: %s is %v, want EDS (the Service's endpoints)", d, outside, got)
		}
		// cluster.local is no name in a cluster of another domain: the host keeps its DNS name
		if got := clusterType(opts, fqdn); got != clusterv3.Cluster_STRICT_DNS {
			t.Errorf("ClusterDomain %q: %s is %v, want STRICT_DNS (svc.cluster.local is not the cluster's domain)", d, fqdn, got)
		}
		if got := clusterType(opts, short); got != clusterv3.Cluster_EDS {
			t.Errorf("ClusterDomain %q: %s is %v, want EDS (NAME.NS.svc is in every domain)", d, short, got)
		}
	}
}

// TestOnlyMCPTargetsBalanceBySource: over every golden input, a cluster balances by ring hash
// exactly when it is an MCP target's (its metadata names the target): an MCP session lives on one
// server. Every other cluster, a plain Service's among them, leaves lb_policy unset (Envoy's
// ROUND_ROBIN, per request: hashing the source address would send all clients behind one NAT or
// L7 load balancer to one pod). A route hashes the client's source address exactly when one of
// its clusters is a ring hash's, and a weighted one then picks the cluster with that hash.
func TestOnlyMCPTargetsBalanceBySource(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// clusters whose policy must be seen, so that the test cannot pass on inputs without them
	want := map[string]clusterv3.Cluster_LbPolicy{
		"service/default/web/80":  clusterv3.Cluster_ROUND_ROBIN, // sessions: a plain Service
		"service/default/pods/80": clusterv3.Cluster_RING_HASH,   // sessions: an MCP Service port
		"service/apps/web/80":     clusterv3.Cluster_ROUND_ROBIN, // service-backend
		"service/apps/fetcher/80": clusterv3.Cluster_RING_HASH,   // service-backend: appProtocol mcp
	}
	seen := map[string]bool{}
	for _, in := range ins {
		out := translator.Translate(loadInputs(t, in), readOptions(t, in))
		for _, k := range out.GatewayKeys() {
			g := out.Gateways[k]
			lb := map[string]clusterv3.Cluster_LbPolicy{}
			for _, c := range g.Clusters {
				lb[c.Name] = c.GetLbPolicy()
				target := c.GetMetadata().GetFilterMetadata()[contract.MetadataNamespace].GetFields()[contract.FieldTarget].GetStringValue()
				if ring := c.GetLbPolicy() == clusterv3.Cluster_RING_HASH; ring != (target != "") {
					t.Errorf("%s: cluster %s (MCP target %q): lb_policy %v, want RING_HASH for an MCP target and none else", in, c.Name, target, c.GetLbPolicy())
				}
				if c.GetLbPolicy() != clusterv3.Cluster_RING_HASH && c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
					t.Errorf("%s: cluster %s: lb_policy %v", in, c.Name, c.GetLbPolicy())
				}
				if w, ok := want[c.Name]; ok {
					seen[c.Name] = true
					if c.GetLbPolicy() != w {
						t.Errorf("%s: cluster %s: lb_policy %v, want %v", in, c.Name, c.GetLbPolicy(), w)
					}
				}
			}
			for _, rc := range g.Routes {
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						ra := r.GetRoute()
						if ra == nil {
							continue
						}
						names := []string{ra.GetCluster()}
						for _, cw := range ra.GetWeightedClusters().GetClusters() {
							names = append(names, cw.GetName())
						}
						ring := slices.ContainsFunc(names, func(n string) bool { return lb[n] == clusterv3.Cluster_RING_HASH })
						// a multiplexed backend weighed with others is picked by the client too:
						// its session is the mux's, whose requests must all reach the mux
						ring = ring || ra.GetWeightedClusters() != nil && slices.Contains(names, contract.MuxCluster)
						hp := ra.GetHashPolicy()
						bySource := len(hp) == 1 && hp[0].GetConnectionProperties().GetSourceIp()
						if bySource != ring || (len(hp) > 0 && !bySource) {
							t.Errorf("%s: route %s to %v: hash_policy %v, want the source address exactly when a cluster is RING_HASH", in, r.GetName(), names, ra.GetHashPolicy())
						}
						if wc := ra.GetWeightedClusters(); wc != nil && wc.GetUseHashPolicy().GetValue() != ring {
							t.Errorf("%s: route %s to %v: use_hash_policy %v, want %v", in, r.GetName(), names, wc.GetUseHashPolicy(), ring)
						}
					}
				}
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("cluster %s is in no golden output", name)
		}
	}
}

// TestFrontendWithoutHTTPS: a Gateway whose spec.tls.frontend validates client certificates but
// that has no HTTPS listener still has its CA refs resolved: a ConfigMap whose ca.crt holds no
// certificate is refused naming the field, and the Gateway's Accepted condition says so; the HTTP
// listener that serves a route gets a warning that it does so without client certificates.
func TestFrontendWithoutHTTPS(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/https-client-cert-http-only.in.yaml"), translator.Options{})
	const refField = "spec.tls.frontend.default.validation.caCertificateRefs[0]"
	const refMsg = "ConfigMap default/bad-ca: ca.crt holds no PEM certificate"
	refused := false
	for _, p := range out.Status.Problems() {
		refused = refused || p.Field == refField && p.Message == refMsg
	}
	if !refused {
		t.Errorf("no refusal of %s: %v", refField, out.Status.Problems())
	}
	warned := false
	for _, w := range out.Status.Warnings() {
		warned = warned || w.Field == "spec.listeners[0]" &&
			w.Message == "listener http (HTTP) serves routes without client certificates although spec.tls.frontend asks for validation"
	}
	if !warned {
		t.Errorf("no warning on the HTTP listener: %v", out.Status.Warnings())
	}
	st := out.Status.Gateways[types.NamespacedName{Namespace: "default", Name: "gw"}]
	if st == nil || len(st.Conditions) == 0 {
		t.Fatal("no status of Gateway default/gw")
	}
	if c := st.Conditions[0]; c.Type != "Accepted" || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, refField+": "+refMsg+" (InvalidCACertificateRef)") {
		t.Errorf("Gateway %s %s %q, want Accepted True naming %s", c.Type, c.Status, c.Message, refField)
	}
	if c := st.Listeners[0].Conditions[0]; c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "without client certificates") {
		t.Errorf("listener http: Accepted %s %q, want True saying it serves without client certificates", c.Status, c.Message)
	}
}

// TestPerPortWithoutValidation: a perPort entry without validation (tls: {}) on an HTTPS port
// while the default validates turns validation off there, as the spec says, with a warning naming
// the entry and the port.
func TestPerPortWithoutValidation(t *testing.T) {
	out := translator.Translate(loadInputs(t, "testdata/https-client-cert.in.yaml"), translator.Options{})
	var got []string
	for _, w := range out.Status.Warnings() {
		if w.Field == "spec.tls.frontend.perPort[1]" {
			got = append(got, w.Message)
		}
	}
	const want = "port 10443: this entry has no validation, so it turns off the default's client certificate validation there: the port's HTTPS listeners accept clients without a certificate"
	if !slices.Equal(got, []string{want}) {
		t.Errorf("warnings on spec.tls.frontend.perPort[1]: %q, want %q", got, want)
	}
	for _, w := range out.Status.Warnings() {
		if w.Field == "spec.tls.frontend.perPort[0]" {
			t.Errorf("a warning on perPort[0], which validates: %s", w.Message)
		}
	}
}
