package kubernetes

import (
	"cmp"
	"context"
	"fmt"
	"slices"

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
	if !p.absent["EnterpriseAgentgatewayPolicy"] {
		lists = append(lists, &eps)
	}
	for _, l := range lists {
		if err := p.client.List(ctx, l); err != nil {
			return nil, fmt.Errorf("list %T: %w", l, err)
		}
	}
	res := &translator.Resources{
		GatewayClasses:  pointers(classes.Items),
		Gateways:        pointers(gateways.Items),
		HTTPRoutes:      pointers(routes.Items),
		ReferenceGrants: pointers(grants.Items),
		Backends:        pointers(backends.Items),
		Policies:        pointers(policies.Items),
		Services:        pointers(services.Items),
		EndpointSlices:  pointers(endpoints.Items),
		Namespaces:      pointers(nsList.Items),
	}
	snap := &snapshot{resources: res, enterprise: pointers(eps.Items)}
	for _, ep := range snap.enterprise {
		res.Policies = append(res.Policies, ep.AsAgentgatewayPolicy())
	}
	res.Secrets, res.SecretErrors = p.referencedSecrets(ctx, secretRefs(res, p.tr))
	return snap, nil
}

// secretRef is a Secret an object names: key, the object ("Kind ns/name") and the field.
type secretRef struct {
	key          types.NamespacedName
	owner, field string
}

// secretRefs lists the Secrets the translation of res may read, in the order of res: those the
// backends' and policies' auth names (in their own namespace), and the certificates of the
// Gateways served (opts: their classes), their HTTPS listeners' and their backend client
// certificate (spec.tls.backend.clientCertificateRef), one in another namespace only where a
// ReferenceGrant of res permits it (the translator refuses the others without reading them: a
// Gateway cannot make the controller read any Secret of the cluster).
func secretRefs(res *translator.Resources, opts translator.Options) []secretRef {
	var refs []secretRef
	for _, b := range res.Backends {
		if pol := b.Spec.Policies; pol != nil && pol.Auth != nil && pol.Auth.SecretRef != nil {
			refs = append(refs, secretRef{types.NamespacedName{Namespace: b.Namespace, Name: pol.Auth.SecretRef.Name},
				"AgentgatewayBackend " + b.Namespace + "/" + b.Name, "spec.policies.auth.secretRef"})
		}
	}
	for _, p := range res.Policies {
		if b := p.Spec.Backend; b != nil && b.Auth != nil && b.Auth.SecretRef != nil {
			kind := p.Kind
			if kind == "" {
				kind = translator.KindAgentgatewayPolicy
			}
			refs = append(refs, secretRef{types.NamespacedName{Namespace: p.Namespace, Name: b.Auth.SecretRef.Name},
				kind + " " + p.Namespace + "/" + p.Name, "spec.backend.auth.secretRef"})
		}
	}
	classes := make(map[string]*gwv1.GatewayClass, len(res.GatewayClasses))
	for _, c := range res.GatewayClasses {
		classes[c.Name] = c
	}
	for _, g := range res.Gateways {
		class := string(g.Spec.GatewayClassName)
		if !opts.ServesClass(class, classes[class]) {
			continue
		}
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
// Secret that g may name: of its namespace, or of one whose ReferenceGrant in res permits it.
func appendGatewaySecret(refs []secretRef, res *translator.Resources, g *gwv1.Gateway, ref gwv1.SecretObjectReference, field string) []secretRef {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Secret") {
		return refs // not a Secret: the translator refuses it
	}
	ns := g.Namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	if ns != g.Namespace && !translator.Granted(res.ReferenceGrants, translator.KindGateway, g.Namespace, ns, "", "Secret", string(ref.Name)) {
		return refs
	}
	return append(refs, secretRef{types.NamespacedName{Namespace: ns, Name: string(ref.Name)}, "Gateway " + g.Namespace + "/" + g.Name, field})
}

// referencedSecrets reads the Secrets refs name, by name: the controller may get a
// Secret but not list or watch them (least privilege), so it never holds the others. A Secret
// that does not exist is left out; the translator refuses the backend that names it. A read that
// fails (forbidden, throttled, timed out, an API server error) fails for that Secret alone, and is
// in errs, by Secret, with why: the copy of the Secret the last read that succeeded got (lastSecrets)
// is used when there is one, so that the objects naming it keep their configuration, else they
// are refused with the reason. Every other object is translated.
func (p *Provider) referencedSecrets(ctx context.Context, refs []secretRef) (out []*corev1.Secret, errs map[types.NamespacedName]string) {
	seen := map[types.NamespacedName]bool{}
	last := p.lastSecrets
	p.lastSecrets = map[types.NamespacedName]*corev1.Secret{}
	for _, ref := range refs {
		key := ref.key
		if seen[key] {
			continue
		}
		seen[key] = true
		s := &corev1.Secret{}
		err := p.reader.Get(ctx, key, s)
		switch {
		case err == nil:
		case apierrors.IsNotFound(err):
			continue
		default:
			if errs == nil {
				errs = map[types.NamespacedName]string{}
			}
			errs[key] = err.Error()
			if s = last[key]; s == nil {
				p.logSecretError(ref, err, "the objects naming it are refused")
				continue
			}
			p.logSecretError(ref, err, "the copy read before is used")
		}
		out = append(out, s)
		p.lastSecrets[key] = s
	}
	for key := range p.secretErrors {
		if _, failing := errs[key]; !failing {
			delete(p.secretErrors, key) // logged again when it fails again
		}
	}
	return out, errs
}

// logSecretError logs a failed read of the Secret of ref (named by its first object) once,
// until it is read again or fails otherwise.
func (p *Provider) logSecretError(ref secretRef, err error, outcome string) {
	msg := err.Error() + ": " + outcome
	if p.secretErrors[ref.key] == msg {
		return
	}
	p.secretErrors[ref.key] = msg
	p.log.Warn("Secret not read: "+outcome, "secret", ref.key.String(),
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
