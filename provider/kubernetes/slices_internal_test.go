package kubernetes

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// TestSliceMatters: an EndpointSlice change causes a translation when its Service's slices may
// be read (a route's backendRef, an MCP target's static host, an MCP appProtocol port) or its
// Service is not in the last translation's input (made since); not for another Service's, nor
// for a slice of no Service.
func TestSliceMatters(t *testing.T) {
	svc := func(ns, name, appProtocol string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
		if appProtocol != "" {
			s.Spec.Ports[0].AppProtocol = &appProtocol
		}
		return s
	}
	routeNS := gwv1.Namespace("apps")
	res := &translator.Resources{
		Services: []*corev1.Service{svc("apps", "web", ""), svc("other", "api", ""), svc("apps", "fetcher", translator.AppProtocolMCP),
			svc("apps", "legacy", "kgateway.dev/mcp-sse"), svc("tools", "static", ""), svc("apps", "unused", "")},
		HTTPRoutes: []*gwv1.HTTPRoute{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "r"}, Spec: gwv1.HTTPRouteSpec{Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{
				{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "web"}}},
				{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "api", Namespace: ptrTo(gwv1.Namespace("other"))}}},
			}}}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "r"}, Spec: gwv1.HTTPRouteSpec{Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{
				{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "unused", Namespace: &routeNS,
					Group: ptrTo(gwv1.Group("agentgateway.dev")), Kind: ptrTo(gwv1.Kind("AgentgatewayBackend"))}}},
			}}}}},
		},
		Backends: []*v1alpha1.AgentgatewayBackend{{Spec: v1alpha1.AgentgatewayBackendSpec{MCP: &v1alpha1.MCPBackend{Targets: []v1alpha1.McpTargetSelector{
			{Name: "s", Static: &v1alpha1.McpTarget{Host: "static.tools.svc.cluster.local", Port: 80}},
		}}}}},
	}
	p := &Provider{}
	// The EndpointSlice informer asks sliceMatters (watch's handlers skip what does not matter).
	wired := false
	for _, k := range p.watchedKinds() {
		if _, ok := k.obj.(*discoveryv1.EndpointSlice); ok {
			wired = k.matters != nil && !k.matters(&discoveryv1.EndpointSlice{})
		}
	}
	if !wired {
		t.Error("the EndpointSlice kind is watched without sliceMatters")
	}
	slice := func(ns, svc string) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-x"}}
		if svc != "" {
			es.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
		}
		return es
	}
	if !p.sliceMatters(slice("apps", "unused")) {
		t.Error("before any translation: a slice does not matter")
	}
	services := endpointServices(res, translator.Options{})
	p.services.Store(&services)
	for _, c := range []struct {
		ns, svc string
		want    bool
	}{
		{"apps", "web", true}, {"other", "api", true}, {"apps", "fetcher", true}, {"apps", "legacy", true}, {"tools", "static", true},
		{"apps", "new", true}, // made since the last translation
		{"apps", "unused", false}, {"apps", "", false},
	} {
		if got := p.sliceMatters(slice(c.ns, c.svc)); got != c.want {
			t.Errorf("slice of %s/%s: matters %v, want %v", c.ns, c.svc, got, c.want)
		}
	}
	if !p.sliceMatters(toolscache.DeletedFinalStateUnknown{Key: "apps/unused-x"}) {
		t.Error("a deletion seen late does not matter")
	}
}

func ptrTo[T any](v T) *T { return &v }
