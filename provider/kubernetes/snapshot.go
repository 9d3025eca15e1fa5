package kubernetes

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/mcpgate/mcpgate/api/v1alpha1"
	"github.com/mcpgate/mcpgate/api/v1alpha1/enterprise"
	"github.com/mcpgate/mcpgate/translator"
)

// snapshot is the cluster's objects at one translation: the translator's input plus the
// enterprise policies as they are (status is written to them in their own kind).
type snapshot struct {
	resources  *translator.Resources
	enterprise []*enterprise.EnterpriseAgentgatewayPolicy
}

// snapshot reads every watched object from the cache, and the Secrets that backends name from
// the API server.
func (p *Provider) snapshot(ctx context.Context) (*snapshot, error) {
	var (
		classes   gwv1.GatewayClassList
		gateways  gwv1.GatewayList
		routes    gwv1.HTTPRouteList
		grants    gwv1.ReferenceGrantList
		btls      gwv1.BackendTLSPolicyList
		backends  v1alpha1.AgentgatewayBackendList
		policies  v1alpha1.AgentgatewayPolicyList
		eps       enterprise.EnterpriseAgentgatewayPolicyList
		services  corev1.ServiceList
		endpoints discoveryv1.EndpointSliceList
		nsList    corev1.NamespaceList
	)
	lists := []client.ObjectList{&classes, &gateways, &routes, &backends, &policies, &services, &endpoints, &nsList}
	if !p.absent["ReferenceGrant"] {
		lists = append(lists, &grants)
	}
	if !p.absent["BackendTLSPolicy"] {
		lists = append(lists, &btls)
	}
	if !p.absent["EnterpriseAgentgatewayPolicy"] {
		lists = append(lists, &eps)
	}
	for _, l := range lists {
		if err := p.client.List(ctx, l); err != nil {
			return nil, fmt.Errorf("list %T: %w", l, err)
		}
	}
	res := &translator.Resources{
		GatewayClasses:     pointers(classes.Items),
		Gateways:           pointers(gateways.Items),
		HTTPRoutes:         pointers(routes.Items),
		ReferenceGrants:    pointers(grants.Items),
		Backends:           pointers(backends.Items),
		Policies:           pointers(policies.Items),
		Services:           pointers(services.Items),
		EndpointSlices:     pointers(endpoints.Items),
		Namespaces:         pointers(nsList.Items),
		BackendTLSPolicies: pointers(btls.Items),
	}
	snap := &snapshot{resources: res, enterprise: pointers(eps.Items)}
	for _, ep := range snap.enterprise {
		res.Policies = append(res.Policies, ep.AsAgentgatewayPolicy())
	}
	res.Secrets, res.SecretErrors = p.secrets.read(ctx, p, secretRefs(res, p.tr))
	cms := configMapRefs(res, p.tr)
	res.ConfigMaps, res.ConfigMapErrors = p.configMaps.read(ctx, p, cms)
	p.watchConfigMaps(ctx, cms)
	return snap, nil
}

// objectRef is a Secret or ConfigMap an object names: key, the object ("Kind ns/name") and the
// field.
type objectRef struct {
	key          types.NamespacedName
	owner, field string
}

// secretRefs lists the Secrets the translation of res may read, in the order of res: those the
// backends' and policies' auth names (in their own namespace), and the certificates of the
// Gateways served (opts: their classes), their HTTPS listeners' and their backend client
// certificate (spec.tls.backend.clientCertificateRef), one in another namespace only where a
// ReferenceGrant of res permits it (the translator refuses the others without reading them: a
// Gateway cannot make the controller read any Secret of the cluster).
func secretRefs(res *translator.Resources, opts translator.Options) []objectRef {
	var refs []objectRef
	for _, b := range res.Backends {
		if pol := b.Spec.Policies; pol != nil && pol.Auth != nil && pol.Auth.SecretRef != nil {
			refs = append(refs, objectRef{types.NamespacedName{Namespace: b.Namespace, Name: pol.Auth.SecretRef.Name},
				"AgentgatewayBackend " + b.Namespace + "/" + b.Name, "spec.policies.auth.secretRef"})
		}
	}
	for _, p := range res.Policies {
		if b := p.Spec.Backend; b != nil && b.Auth != nil && b.Auth.SecretRef != nil {
			kind := p.Kind
			if kind == "" {
				kind = translator.KindAgentgatewayPolicy
			}
			refs = append(refs, objectRef{types.NamespacedName{Namespace: p.Namespace, Name: b.Auth.SecretRef.Name},
				kind + " " + p.Namespace + "/" + p.Name, "spec.backend.auth.secretRef"})
		}
	}
	for _, g := range servedGateways(res, opts) {
		for i, l := range g.Spec.Listeners {
			if l.TLS == nil {
				continue
			}
			for j, ref := range l.TLS.CertificateRefs {
				refs = appendGatewaySecret(refs, res, g, ref, fmt.Sprintf("spec.listeners[%d].tls.certificateRefs[%d]", i, j))
			}
		}
		if tls := g.Spec.TLS; tls != nil && tls.Backend != nil && tls.Backend.ClientCertificateRef != nil {
			refs = appendGatewaySecret(refs, res, g, *tls.Backend.ClientCertificateRef, "spec.tls.backend.clientCertificateRef")
		}
	}
	return refs
}

// appendGatewaySecret appends the Secret that Gateway g's ref (at field) names, when it is a
// Secret that g may name (gatewayRef).
func appendGatewaySecret(refs []objectRef, res *translator.Resources, g *gwv1.Gateway, ref gwv1.SecretObjectReference, field string) []objectRef {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret") {
		return refs // not a Secret: the translator refuses it
	}
	if r, ok := gatewayRef(res, g, ref.Namespace, "Secret", string(ref.Name), field); ok {
		refs = append(refs, r)
	}
	return refs
}

// gatewayRef is the core object of kind that field of Gateway g names (name, in namespace refNS,
// else the Gateway's); ok is false when it is in another namespace and no ReferenceGrant of res
// permits Gateways of g's namespace to name it: the translator refuses it without reading it.
func gatewayRef(res *translator.Resources, g *gwv1.Gateway, refNS *gwv1.Namespace, kind, name, field string) (r objectRef, ok bool) {
	ns := g.Namespace
	if refNS != nil && *refNS != "" {
		ns = string(*refNS)
	}
	if ns != g.Namespace && !translator.Granted(res.ReferenceGrants, translator.KindGateway, g.Namespace, ns, "", kind, name) {
		return objectRef{}, false
	}
	return objectRef{types.NamespacedName{Namespace: ns, Name: name}, "Gateway " + g.Namespace + "/" + g.Name, field}, true
}

// servedGateways returns the Gateways of res of the classes served (opts), in the order of res.
func servedGateways(res *translator.Resources, opts translator.Options) []*gwv1.Gateway {
	classes := make(map[string]*gwv1.GatewayClass, len(res.GatewayClasses))
	for _, c := range res.GatewayClasses {
		classes[c.Name] = c
	}
	var out []*gwv1.Gateway
	for _, g := range res.Gateways {
		class := string(g.Spec.GatewayClassName)
		if opts.ServesClass(class, classes[class]) {
			out = append(out, g)
		}
	}
	return out
}

// referenced reads the objects of one kind (Secrets, ConfigMaps) that the translation's input
// names, by name: the controller may get them but holds no others (Secrets: it may not list or
// watch them; ConfigMaps: its cache holds only the data planes' own). Its fields are used by the
// loop's goroutine only.
type referenced[T client.Object] struct {
	kind   string
	newObj func() T
	// last are the objects as last read, for a pass whose read of one fails; logged are the
	// failed reads logged, by object
	last   map[types.NamespacedName]T
	logged map[types.NamespacedName]string
}

func newReferenced[T client.Object](kind string, newObj func() T) referenced[T] {
	return referenced[T]{kind: kind, newObj: newObj, logged: map[types.NamespacedName]string{}}
}

// read gets the objects refs name, each once. One that does not exist is left out; the
// translator refuses the objects that name it. A read that fails (forbidden, throttled, timed
// out, an API server error) fails for that object alone, and is in errs, by object, with why:
// the copy the last read that succeeded got is used when there is one, so that the objects naming
// it keep their configuration, else they are refused with the reason. Every other object is
// translated.
func (r *referenced[T]) read(ctx context.Context, p *Provider, refs []objectRef) (out []T, errs map[types.NamespacedName]string) {
	seen := map[types.NamespacedName]bool{}
	last := r.last
	r.last = map[types.NamespacedName]T{}
	for _, ref := range refs {
		key := ref.key
		if seen[key] {
			continue
		}
		seen[key] = true
		obj := r.newObj()
		err := p.reader.Get(ctx, key, obj)
		switch {
		case err == nil:
		case apierrors.IsNotFound(err):
			continue
		default:
			if errs == nil {
				errs = map[types.NamespacedName]string{}
			}
			errs[key] = err.Error()
			var ok bool
			if obj, ok = last[key]; !ok {
				r.logError(p, ref, err, "the objects naming it are refused")
				continue
			}
			r.logError(p, ref, err, "the copy read before is used")
		}
		out = append(out, obj)
		r.last[key] = obj
	}
	for key := range r.logged {
		if _, failing := errs[key]; !failing {
			delete(r.logged, key) // logged again when it fails again
		}
	}
	return out, errs
}

// logError logs a failed read of the object of ref (named by its first object) once, until it
// is read again or fails otherwise.
func (r *referenced[T]) logError(p *Provider, ref objectRef, err error, outcome string) {
	msg := err.Error() + ": " + outcome
	if r.logged[ref.key] == msg {
		return
	}
	r.logged[ref.key] = msg
	p.log.Warn(r.kind+" not read: "+outcome, strings.ToLower(r.kind), ref.key.String(),
		"object", ref.owner, "field", ref.field, "error", err)
}

// pointers returns pointers to the items, sorted by namespace and name.
func pointers[T any, PT interface {
	*T
	client.Object
}](items []T) []PT {
	out := make([]PT, len(items))
	for i := range items {
		out[i] = PT(&items[i])
	}
	slices.SortFunc(out, func(a, b PT) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	return out
}
