package translator_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// benchJWKS is an RSA public key set; each policy gets its own kid, so every JWKS text is
// distinct and parsed on its own.
const benchJWKS = `{"keys":[{"kty":"RSA","kid":"%s","n":"vlmc5pb-jYaOq75Y4r91AC2iuS9B0sm6sxzRm3oOG7nIt2F1hHd4AKll2jd6BZg437qvsLdREnbnVrr8kU0drmJNPHL-xbsTz_cQa95GuKb6AI6osAaUAEL3dPjuoqkGNRe1sAJyOi48qtcbV0kPWcwFmCV0-OiqliCms12jrd1PSI_LYiNc3GcutpxY6BiHkbxxNeIuWDxE-i_Obq8EhhGkwha1KVUvLHV-EwD4M_AY8BegGsX-sjoChXOxyueu_ReqWV227I-FTKwMnjwWW0BQkeI6g1w1WqADmtKZ2sLamwGUJgWt4ZgIyhQ-iQfeN1WN2iupTWa5JAsw--CQJw","e":"AQAB","alg":"RS256","use":"sig"}]}`

// benchResources builds one Gateway with a listener per 1,000 routes (hostnames r0.example,
// r1.example, ...) and n HTTPRoutes, each with its own MCP backend (a static IP target) and
// its own policy: a JWT policy with a local JWKS when jwt is set, else an authorization
// policy with one of distinctCEL expressions.
func benchResources(n int, jwt bool, distinctCEL int) *translator.Resources {
	ns := "bench"
	res := &translator.Resources{}
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: ns}, Spec: gwv1.GatewaySpec{GatewayClassName: "mcpgate"}}
	for l := 0; l <= n/1000; l++ {
		h := gwv1.Hostname(fmt.Sprintf("r%d.example", l))
		gw.Spec.Listeners = append(gw.Spec.Listeners, gwv1.Listener{Name: gwv1.SectionName(fmt.Sprintf("l%d", l)), Port: 8080, Protocol: gwv1.HTTPProtocolType, Hostname: &h})
	}
	res.Gateways = append(res.Gateways, gw)
	group, kind := gwv1.Group("agentgateway.dev"), gwv1.Kind("AgentgatewayBackend")
	pathType := gwv1.PathMatchPathPrefix
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("r%d", i)
		res.Backends = append(res.Backends, &v1alpha1.AgentgatewayBackend{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{{
				Name: "t", Static: &v1alpha1.McpTarget{Host: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: 3000},
			}}}},
		})
		path := "/" + name
		sec := gwv1.SectionName(fmt.Sprintf("l%d", i/1000))
		res.HTTPRoutes = append(res.HTTPRoutes, &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw", SectionName: &sec}}},
				Rules: []gwv1.HTTPRouteRule{{
					Matches:     []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &pathType, Value: &path}}},
					BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Group: &group, Kind: &kind, Name: gwv1.ObjectName(name)}}}},
				}},
			},
		})
		pol := &v1alpha1.AgentgatewayPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.AgentgatewayPolicySpec{TargetRefs: []v1alpha1.PolicyTargetReference{{
				Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: gwv1.ObjectName(name)}}},
		}
		if jwt {
			jwks := fmt.Sprintf(benchJWKS, name)
			pol.Spec.Traffic = &v1alpha1.TrafficPolicy{JWTAuthentication: &v1alpha1.JWTAuthentication{
				Providers: []v1alpha1.JWTProvider{{Issuer: "https://issuer/" + name, JWKS: v1alpha1.JWKS{Inline: &jwks}}}}}
		} else {
			expr := v1alpha1.CELExpression(fmt.Sprintf(`jwt.team == "team-%d" && mcp.tool.name != "admin"`, i%distinctCEL))
			pol.Spec.Traffic = &v1alpha1.TrafficPolicy{Authorization: &v1alpha1.Authorization{
				Policy: v1alpha1.AuthorizationPolicy{MatchExpressions: []v1alpha1.CELExpression{expr}}}}
		}
		res.Policies = append(res.Policies, pol)
	}
	return res
}

// withHostnames puts res's routes on one listener without a hostname and gives each route its
// own hostname.
func withHostnames(res *translator.Resources) *translator.Resources {
	res.Gateways[0].Spec.Listeners = res.Gateways[0].Spec.Listeners[:1]
	res.Gateways[0].Spec.Listeners[0].Hostname = nil
	for i, r := range res.HTTPRoutes {
		r.Spec.ParentRefs[0].SectionName = nil
		r.Spec.Hostnames = []gwv1.Hostname{gwv1.Hostname(fmt.Sprintf("r%d.tenants.example", i))}
	}
	return res
}

// cpuTime is the CPU time (user and system) the process has used; on a shared machine it is
// steadier than wall time (docs/benchmarks.md).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchTranslate measures Translate of res. warm passes a Cache filled by one translation
// before the clock starts, as the file watcher and the controller translate again and again.
func benchTranslate(b *testing.B, res *translator.Resources, warm bool) {
	b.ReportAllocs()
	var opts translator.Options
	if warm {
		opts.Cache = translator.NewCache()
		translator.Translate(res, opts)
	}
	var out *translator.Output
	start := cpuTime(b)
	for b.Loop() {
		out = translator.Translate(res, opts)
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	if p := out.Status.Problems(); len(p) > 0 {
		b.Fatalf("the benchmark input has problems: %v", p[0])
	}
	if got := len(out.Gateways["bench/gw"].Clusters); got != len(res.HTTPRoutes) {
		b.Fatalf("%d clusters, want %d", got, len(res.HTTPRoutes))
	}
}

// BenchmarkTranslate translates n HTTPRoutes, each with its own MCP backend and authorization
// policy (16 distinct CEL expressions, as fleets reuse rules). The warm cases carry a Cache over
// from the translation before (Options.Cache).
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) { benchTranslate(b, benchResources(n, false, 16), false) })
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d/warm", n), func(b *testing.B) { benchTranslate(b, benchResources(n, false, 16), true) })
	}
	// one listener, every route with its own hostname: a virtual host per route
	b.Run("routes=1000/hostnames", func(b *testing.B) { benchTranslate(b, withHostnames(benchResources(1000, false, 16)), false) })
	// the worst case for CEL: every policy's expression differs
	b.Run("routes=1000/distinct-cel", func(b *testing.B) { benchTranslate(b, benchResources(1000, false, 1000), false) })
	b.Run("routes=1000/distinct-cel/warm", func(b *testing.B) { benchTranslate(b, benchResources(1000, false, 1000), true) })
}

// BenchmarkTranslateEGLarge is shaped like the "large" case of Envoy Gateway's
// BenchmarkGatewayAPItoXDS where it applies here: 500 HTTPRoutes and 500 JWT policies, each
// with its own local JWKS (EG's large case also has GRPC/UDP routes and two more policy kinds,
// which mcpgate has no equivalent of).
func BenchmarkTranslateEGLarge(b *testing.B) {
	b.Run("cold", func(b *testing.B) { benchTranslate(b, benchResources(500, true, 1), false) })
	b.Run("warm", func(b *testing.B) { benchTranslate(b, benchResources(500, true, 1), true) })
}
