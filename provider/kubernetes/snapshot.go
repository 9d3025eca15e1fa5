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
	secrets, err := p.referencedSecrets(ctx, res.Backends)
	if err != nil {
		return nil, err
	}
	res.Secrets = secrets
	return snap, nil
}

// referencedSecrets reads the Secrets that backends name, by name: the controller may get a
// Secret but not list or watch them (least privilege), so it never holds the others. A Secret
// that does not exist is left out; the translator refuses the backend that names it.
func (p *Provider) referencedSecrets(ctx context.Context, backends []*v1alpha1.AgentgatewayBackend) ([]*corev1.Secret, error) {
	seen := map[types.NamespacedName]bool{}
	var out []*corev1.Secret
	for _, b := range backends {
		pol := b.Spec.Policies
		if pol == nil || pol.Auth == nil || pol.Auth.SecretRef == nil {
			continue
		}
		key := types.NamespacedName{Namespace: b.Namespace, Name: pol.Auth.SecretRef.Name}
		if seen[key] {
			continue
		}
		seen[key] = true
		var s corev1.Secret
		switch err := p.reader.Get(ctx, key, &s); {
		case err == nil:
			out = append(out, &s)
		case apierrors.IsNotFound(err):
		case apierrors.IsForbidden(err):
			p.log.Warn("secret not readable", "secret", key.String(), "backend", b.Namespace+"/"+b.Name, "error", err)
		default:
			return nil, fmt.Errorf("get Secret %s (spec.policies.auth.secretRef of AgentgatewayBackend %s/%s): %w", key, b.Namespace, b.Name, err)
		}
	}
	return out, nil
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
