package kubernetes

import (
	"context"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/translator"
)

// Cache indexes that tell whether a Service or Namespace change can change the translation
// (serviceMatters, namespaceMatters). They are read from the informers' stores at the change, not
// from the last translation's input, so an HTTPRoute or AgentgatewayBackend that names a Service
// counts as soon as the cache holds it: a Service change seen before it is in the cache the
// route's own change reads.
const (
	// indexServiceRef indexes HTTPRoutes by the Services ("NS/NAME") their backendRefs name, and
	// AgentgatewayBackends by those their MCP static targets' hosts name (Options.ServiceOfHost).
	indexServiceRef = "mcpgate.dev/service-ref"
	// indexNamespaceLabels indexes Gateways with a listener whose allowedRoutes select namespaces
	// by label, and AgentgatewayBackends with an MCP selector target that does, under "true".
	indexNamespaceLabels = "mcpgate.dev/namespace-labels"
)

// routeServiceRefs returns the Services ("NS/NAME") r's backendRefs name, as the translator
// resolves them (group "" and kind Service, the defaults; the route's namespace unless the ref
// names another).
func routeServiceRefs(r *gwv1.HTTPRoute) []string {
	var out []string
	for _, rule := range r.Spec.Rules {
		for _, ref := range rule.BackendRefs {
			if (ref.Group == nil || *ref.Group == "") && (ref.Kind == nil || *ref.Kind == "Service") {
				ns := r.Namespace
				if ref.Namespace != nil {
					ns = string(*ref.Namespace)
				}
				out = append(out, ns+"/"+string(ref.Name))
			}
		}
	}
	return out
}

// backendServiceRefs returns the Services ("NS/NAME") that b's MCP static targets name by their
// cluster DNS host (opts.ServiceOfHost): the translator reads their ports and EndpointSlices.
func backendServiceRefs(b *v1alpha1.AgentgatewayBackend, opts translator.Options) []string {
	if b.Spec.MCP == nil {
		return nil
	}
	var out []string
	for _, t := range b.Spec.MCP.Targets {
		if t.Static != nil {
			if ns, name, ok := opts.ServiceOfHost(t.Static.Host); ok {
				out = append(out, ns+"/"+name)
			}
		}
	}
	return out
}

// readsNamespaceLabels reports whether the translation of obj (a Gateway or an
// AgentgatewayBackend) reads namespaces' labels: a listener's allowedRoutes from Selector, an MCP
// selector target's namespaces. Only these read them (the translator's namespaceLabels).
func readsNamespaceLabels(obj client.Object) bool {
	switch o := obj.(type) {
	case *gwv1.Gateway:
		for _, l := range o.Spec.Listeners {
			if ar := l.AllowedRoutes; ar != nil && ar.Namespaces != nil && ar.Namespaces.From != nil &&
				*ar.Namespaces.From == gwv1.NamespacesFromSelector {
				return true
			}
		}
	case *v1alpha1.AgentgatewayBackend:
		if o.Spec.MCP != nil {
			for _, t := range o.Spec.MCP.Targets {
				if t.Selector != nil && t.Selector.Namespaces != nil {
					return true
				}
			}
		}
	}
	return false
}

// indexes returns the cache indexes of kind obj (by index name), nil for a kind without any.
func (p *Provider) indexes(obj client.Object) map[string]client.IndexerFunc {
	labelled := func(o client.Object) []string {
		if readsNamespaceLabels(o) {
			return []string{"true"}
		}
		return nil
	}
	switch obj.(type) {
	case *gwv1.HTTPRoute:
		return map[string]client.IndexerFunc{indexServiceRef: func(o client.Object) []string {
			r, _ := o.(*gwv1.HTTPRoute)
			if r == nil {
				return nil
			}
			return routeServiceRefs(r)
		}}
	case *v1alpha1.AgentgatewayBackend:
		return map[string]client.IndexerFunc{
			indexServiceRef: func(o client.Object) []string {
				b, _ := o.(*v1alpha1.AgentgatewayBackend)
				if b == nil {
					return nil
				}
				return backendServiceRefs(b, p.tr)
			},
			indexNamespaceLabels: labelled,
		}
	case *gwv1.Gateway:
		return map[string]client.IndexerFunc{indexNamespaceLabels: labelled}
	}
	return nil
}

// indexed reports whether the cache holds an object of list's kind whose index field has value;
// true when it cannot tell (an index missing: not known to be harmless).
func (p *Provider) indexed(list client.ObjectList, field, value string) bool {
	if err := p.client.List(context.Background(), list, client.MatchingFields{field: value}, client.UnsafeDisableDeepCopy); err != nil {
		p.log.Warn("cache index not readable: the change causes a translation", "index", field, "error", err)
		return true
	}
	return meta.LenList(list) > 0
}

// serviceMatters reports whether a Service change can change the translation or what a pass
// writes: before the cache is synced; a Service an HTTPRoute backendRef or an MCP target's static
// host names (whether or not it existed); one with a port of an MCP appProtocol, which selector
// targets find (a change that adds or removes one is seen in the old or the new object); a
// Gateway's own Service (label LabelGatewayName: its address goes into the Gateway's status) or
// one mcpgate made (a data plane's, restored or deleted by a pass); and, when the controller
// deploys data planes, one named like a Gateway in its namespace (a Service mcpgate did not make
// keeps the data plane from being applied). Any other Service is read by no translation: selector
// targets skip Services without an MCP port.
func (p *Provider) serviceMatters(obj any) bool {
	s, ok := obj.(*corev1.Service)
	if !ok || !p.synced.Load() {
		return true // a deletion seen late (DeletedFinalStateUnknown), or the cache not yet read
	}
	if _, own := s.Labels[LabelGatewayName]; own || s.Labels[LabelManagedBy] == ManagedByValue {
		return true
	}
	for i := range s.Spec.Ports {
		if translator.IsMCPPort(&s.Spec.Ports[i]) {
			return true
		}
	}
	ref := s.Namespace + "/" + s.Name
	if p.indexed(&gwv1.HTTPRouteList{}, indexServiceRef, ref) || p.indexed(&v1alpha1.AgentgatewayBackendList{}, indexServiceRef, ref) {
		return true
	}
	if p.opts.DataPlane != nil {
		var gws gwv1.GatewayList
		if err := p.client.List(context.Background(), &gws, client.InNamespace(s.Namespace), client.UnsafeDisableDeepCopy); err != nil {
			return true
		}
		for i := range gws.Items {
			if gws.Items[i].Name == s.Name {
				return true
			}
		}
	}
	return false
}

// namespaceMatters reports whether a Namespace's addition or deletion can change the translation:
// the translator reads only namespaces' labels, and only for a Gateway listener whose
// allowedRoutes select namespaces by label or an MCP selector target that does (also before the
// cache is synced, or for a deletion seen late).
func (p *Provider) namespaceMatters(obj any) bool {
	if _, ok := obj.(*corev1.Namespace); !ok || !p.synced.Load() {
		return true
	}
	return p.indexed(&gwv1.GatewayList{}, indexNamespaceLabels, "true") ||
		p.indexed(&v1alpha1.AgentgatewayBackendList{}, indexNamespaceLabels, "true")
}

// namespaceChangeMatters reports whether a Namespace update can change the translation: its
// labels changed and some object reads namespaces' labels (namespaceMatters).
func (p *Provider) namespaceChangeMatters(old, cur any) bool {
	o, ok1 := old.(*corev1.Namespace)
	c, ok2 := cur.(*corev1.Namespace)
	if ok1 && ok2 && maps.Equal(o.Labels, c.Labels) {
		return false
	}
	return p.namespaceMatters(cur)
}
