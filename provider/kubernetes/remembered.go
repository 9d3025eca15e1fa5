package kubernetes

import (
	"context"
	"reflect"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// rememberedKey names a remembered data plane object: its kind ("Secret",
// "PodDisruptionBudget") and key.
type rememberedKey struct {
	kind string
	key  types.NamespacedName
}

// rememberedObject is a Gateway's data plane Secret or PodDisruptionBudget as a pass read it and
// found it current (nothing to apply), under the Deployment of UID deployment.
type rememberedObject struct {
	obj        client.Object
	deployment types.UID
	gateway    gatewayKey
}

// readRemembered returns the data plane object kind key as a pass since the last full one
// remembered it under the Deployment of UID deployment (the one the cache holds now), else reads
// it from the API server into obj (readUncached); nil when there is none. The controller may get
// Secrets and PodDisruptionBudgets by name but neither list nor watch them (least privilege:
// deploy/controller/rbac.yaml), so no informer can keep them: remembering spares a change's pass
// one request per object and Gateway. What someone else changes in them is seen, and undone, at
// the next full pass (Options.ResyncPeriod), as a change of theirs causes no pass. A Deployment
// deleted or replaced since (another UID, or none) may have taken them with it (the garbage
// collector), so they are read again.
func (p *Provider) readRemembered(ctx context.Context, kind string, key types.NamespacedName, deployment types.UID, obj client.Object) (client.Object, error) {
	if r, ok := p.remembered[rememberedKey{kind, key}]; ok && deployment != "" && r.deployment == deployment {
		return r.obj, nil
	}
	found, err := p.readUncached(ctx, kind, key, obj)
	if !found {
		return nil, err
	}
	return obj, nil
}

// remember records obj (kind key, of Gateway gw, read under the Deployment of UID deployment) for
// readRemembered when keep is set and deployment is known; else it forgets what it held of it (an
// object applied, or that could not be, is read again).
func (p *Provider) remember(gw gatewayKey, kind string, key types.NamespacedName, obj client.Object, deployment types.UID, keep bool) {
	k := rememberedKey{kind, key}
	if !keep || deployment == "" || obj == nil || reflect.ValueOf(obj).IsNil() {
		delete(p.remembered, k)
		return
	}
	p.remembered[k] = rememberedObject{obj: obj, deployment: deployment, gateway: gw}
}

// forgetRemembered forgets every remembered object (full: the start of a full pass), or those of
// the Gateways not in served.
func (p *Provider) forgetRemembered(full bool, served map[gatewayKey]dataPlaneState) {
	for k, r := range p.remembered {
		if _, ok := served[r.gateway]; full || !ok {
			delete(p.remembered, k)
		}
	}
}
